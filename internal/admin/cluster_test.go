package admin

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/waage/waage/internal/config"
)

// clusterFake is a Source of a node of a cluster.
type clusterFake struct {
	*fakeSource
	st    ClusterStatus
	nodes []ClusterNode
}

func (c *clusterFake) ClusterStatus() ClusterStatus { return c.st }
func (c *clusterFake) ClusterNodes() []ClusterNode  { return c.nodes }

func TestClusterEndpoints(t *testing.T) {
	// A waage on its own: disabled, no nodes, no cluster metrics.
	alone := newTestServer(t, newFakeSource(), config.Admin{Listen: "127.0.0.1:0"}, nil)
	if w := do(alone, local, http.MethodGet, "/api/cluster", "", ""); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"enabled": false`) {
		t.Errorf("GET /api/cluster alone: %d %s", w.Code, w.Body)
	}
	if w := do(alone, local, http.MethodGet, "/api/nodes", "", ""); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"nodes": []`) {
		t.Errorf("GET /api/nodes alone: %d %s", w.Code, w.Body)
	}
	if w := do(alone, local, http.MethodGet, "/metrics", "", ""); strings.Contains(w.Body.String(), "waage_cluster_") {
		t.Errorf("cluster metrics without a cluster")
	}

	started := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
	src := &clusterFake{
		fakeSource: newFakeSource(),
		st:         ClusterStatus{Node: "lb1", Prefix: "/waage/prod/", Endpoints: []string{"10.0.0.11:2379"}, ConfigRevision: 42, LastError: "probe: context deadline exceeded", LastErrorAt: started},
		nodes: []ClusterNode{
			{Name: "lb1", Admin: "127.0.0.1:9900", Version: "test", State: "serving", Started: started, ConfigRevision: 42},
			{Name: "lb2", Version: "test", State: "serving", Started: started, ConfigRevision: 41},
		},
	}
	s := newTestServer(t, src, config.Admin{Listen: "127.0.0.1:0"}, nil)
	w := do(s, local, http.MethodGet, "/api/cluster", "", "")
	var st map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil || w.Code != http.StatusOK {
		t.Fatalf("GET /api/cluster: %d %s", w.Code, w.Body)
	}
	if st["enabled"] != true || st["connected"] != false || st["config_revision"] != 42.0 || st["nodes"] != 2.0 || st["last_error"] == nil || st["since"] != nil {
		t.Errorf("GET /api/cluster: %s", w.Body)
	}
	w = do(s, local, http.MethodGet, "/api/nodes", "", "")
	var ns struct {
		Nodes []struct {
			Name string `json:"name"`
			Self bool   `json:"self"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &ns); err != nil || len(ns.Nodes) != 2 || !ns.Nodes[0].Self || ns.Nodes[1].Self {
		t.Errorf("GET /api/nodes: %s", w.Body)
	}
	body := do(s, local, http.MethodGet, "/metrics", "", "").Body.String()
	for _, want := range []string{"waage_cluster_connected 0", "waage_cluster_config_revision 42", "waage_cluster_nodes 2"} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if w := do(s, remote, http.MethodGet, "/api/nodes", "", ""); w.Code != http.StatusForbidden {
		t.Errorf("GET /api/nodes from off the host without a token: %d", w.Code)
	}
}
