package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/waage/waage/internal/admin"
	"github.com/waage/waage/internal/backend"
	"github.com/waage/waage/internal/cluster"
	"github.com/waage/waage/internal/cluster/etcdtest"
	"github.com/waage/waage/internal/config"
)

// clusterNode is one in-process node of a test cluster: a runtime, its membership and its admin
// API.
type clusterNode struct {
	name string
	rt   *Runtime
	c    *Cluster
	api  *apiClient
}

const clusterToken = "cluster-test-token"

// startClusterNode starts a node named name under prefix: its own file has only the admin
// section, the rest comes from the cluster, applied as `waage run` applies it (merged with the
// file).
func startClusterNode(t *testing.T, ec *etcdtest.Cluster, prefix, name string) *clusterNode {
	t.Helper()
	local, err := config.Parse(name+".yaml", []byte("admin: {listen: \"127.0.0.1:0\", token: "+clusterToken+"}\nlog: {access: \"off\"}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	out := io.Discard
	if os.Getenv("WAAGE_E2E_LOG") != "" {
		out = os.Stderr
	}
	logger := slog.New(slog.NewTextHandler(out, nil)).With("node", name)
	rt := New(logger)
	if err := rt.Apply(local); err != nil {
		t.Fatal(err)
	}
	e := config.Etcd{Endpoints: ec.Endpoints(), Prefix: prefix, NodeName: name, StateDir: t.TempDir()}.WithDefaults()
	c, err := rt.JoinCluster(ClusterOptions{
		Etcd: e, Version: "test",
		Config: func(r *cluster.Revision) error {
			cl, err := config.Parse(r.Name(prefix), []byte(r.YAML), nil)
			if err != nil {
				return err
			}
			return rt.Apply(config.MergeCluster(cl, local))
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := admin.New(admin.Options{Source: c.Source(), Version: "test", Logger: logger})
	if err := srv.Apply(local.Admin); err != nil {
		t.Fatal(err)
	}
	n := &clusterNode{name: name, rt: rt, c: c, api: &apiClient{t: t, base: "http://" + srv.Addr().String(), http: &http.Client{Timeout: ioTimeout}}}
	t.Cleanup(func() {
		srv.Close()
		c.Stop()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		rt.Shutdown(ctx)
	})
	return n
}

// clusterWait polls cond for up to d and returns how long it took.
func clusterWait(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// clusterStatus is GET /api/cluster.
func (n *clusterNode) clusterStatus(t *testing.T) (connected bool, rev int64, lastErr string) {
	code, body := n.api.do(http.MethodGet, "/api/cluster", "", "")
	if code != http.StatusOK {
		t.Fatalf("GET /api/cluster: %d %s", code, body)
	}
	var st struct {
		Enabled        bool   `json:"enabled"`
		Connected      bool   `json:"connected"`
		ConfigRevision int64  `json:"config_revision"`
		LastError      string `json:"last_error"`
	}
	if err := json.Unmarshal(body, &st); err != nil || !st.Enabled {
		t.Fatalf("GET /api/cluster: %s", body)
	}
	return st.Connected, st.ConfigRevision, st.LastError
}

// serverState is the state of server s1 of backend b on a node ("" while it has none).
func (n *clusterNode) serverState() string {
	if s := n.rt.Server("b", "s1"); s != nil {
		return s.State().String()
	}
	return ""
}

// TestClusterNodes runs three nodes in one etcd cluster of three members: a push reaches every
// node within a second, an operator's drain and deny made through one node's admin API apply on
// all, the request rate is shared among the live nodes, and the nodes serve on when etcd goes
// away, say so, and take up what changed when it is back.
func TestClusterNodes(t *testing.T) {
	ec, err := etcdtest.Start(3)
	if err == etcdtest.ErrNoEtcd {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer ec.Close()
	cli, err := ec.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	be := startDemo(t, "app1", "app2")
	const prefix = "/waage/test/"
	nodes := []*clusterNode{
		startClusterNode(t, ec, prefix, "lb1"),
		startClusterNode(t, ec, prefix, "lb2"),
		startClusterNode(t, ec, prefix, "lb3"),
	}
	d := clusterWait(t, 5*time.Second, "three members on every node", func() bool {
		for _, n := range nodes {
			if n.rt.rateShare() != 3 {
				return false
			}
		}
		return true
	})
	t.Logf("three nodes joined after %v", d)
	code, body := nodes[0].api.do(http.MethodGet, "/api/nodes", "", "")
	if code != http.StatusOK || strings.Count(string(body), `"name"`) != 3 || !strings.Contains(string(body), `"self": true`) {
		t.Errorf("GET /api/nodes: %d %s", code, body)
	}

	ctx := context.Background()
	cfgText := func(rate int, extra string) string {
		return fmt.Sprintf("frontends:\n  - name: web\n    listen: [\"127.0.0.1:0\"]\n    default_backend: b\n"+
			"    limits: {request_rate: {rate: %d, per: 1s, burst: %d}}\n"+
			"backends:\n  - name: b\n    servers:\n      - {name: s1, address: %q}\n      - {name: s2, address: %q}\n%s",
			rate, rate, be[0].Addr, be[1].Addr, extra)
	}
	push := func(yaml string) int64 {
		t.Helper()
		rev, err := cluster.Push(ctx, cli, prefix, cluster.Envelope{YAML: yaml, By: "test"})
		if err != nil {
			t.Fatal(err)
		}
		return rev
	}
	onAll := func(rev int64) func() bool {
		return func() bool {
			for _, n := range nodes {
				if n.c.Node().Status().ConfigRevision != rev {
					return false
				}
			}
			return true
		}
	}

	t.Run("push reaches every node", func(t *testing.T) {
		var worst time.Duration
		for i := range 3 {
			start := time.Now()
			rev := push(cfgText(10, fmt.Sprintf("# push %d\n", i)))
			clusterWait(t, time.Second, "push on all nodes", onAll(rev))
			took := time.Since(start)
			worst = max(worst, took)
			t.Logf("push %d (revision %d) running on all 3 nodes %v after the push started", i, rev, took.Round(time.Microsecond))
		}
		t.Logf("push to all nodes: worst %v", worst.Round(time.Microsecond))
		for _, n := range nodes {
			resp, err := http.Get("http://" + feAddr(t, n.rt, "web") + "/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s: GET / = %d", n.name, resp.StatusCode)
			}
		}
	})

	t.Run("drain through one node applies on all", func(t *testing.T) {
		code, body := nodes[0].api.do(http.MethodPost, "/api/backends/b/servers/s1/drain", clusterToken, "")
		if code != http.StatusOK {
			t.Fatalf("drain: %d %s", code, body)
		}
		d := clusterWait(t, time.Second, "drain on all", func() bool {
			for _, n := range nodes {
				if n.serverState() != "drain" {
					return false
				}
			}
			return true
		})
		t.Logf("drain on all nodes after %v", d)
		code, body = nodes[2].api.do(http.MethodPut, "/api/backends/b/servers/s2/weight", clusterToken, `{"weight": 4}`)
		if code != http.StatusOK {
			t.Fatalf("weight: %d %s", code, body)
		}
		clusterWait(t, time.Second, "weight on all", func() bool {
			for _, n := range nodes {
				if s := n.rt.Server("b", "s2"); s == nil || s.Weight() != 4 {
					return false
				}
			}
			return true
		})
		// The events say where the change came from.
		ev := nodes[1].rt.Events().Since(0, 0)
		if len(ev) == 0 || ev[len(ev)-1].Source != "cluster" {
			t.Errorf("events on lb2: %+v", ev)
		}
		// A configuration pushed later keeps the operator's drain (and applies it to servers
		// that come with it).
		rev := push(cfgText(10, "# after the drain\n"))
		clusterWait(t, time.Second, "push", onAll(rev))
		for _, n := range nodes {
			if n.serverState() != "drain" {
				t.Errorf("%s: s1 is %s after a push, want drain", n.name, n.serverState())
			}
		}
		nodes[1].api.do(http.MethodPost, "/api/backends/b/servers/s1/ready", clusterToken, "")
		clusterWait(t, time.Second, "ready on all", func() bool {
			for _, n := range nodes {
				if n.serverState() != backend.Ready.String() {
					return false
				}
			}
			return true
		})
	})

	t.Run("deny with a ttl applies on all and expires", func(t *testing.T) {
		p := netip.MustParsePrefix("127.0.0.77/32")
		code, body := nodes[1].api.do(http.MethodPost, "/api/deny", clusterToken, `{"cidr": "127.0.0.77", "ttl": "2s"}`)
		if code != http.StatusOK {
			t.Fatalf("deny: %d %s", code, body)
		}
		denied := func(n *clusterNode) bool {
			for _, e := range n.rt.Denied() {
				if e.Prefix == p {
					return true
				}
			}
			return false
		}
		d := clusterWait(t, time.Second, "deny on all", func() bool { return denied(nodes[0]) && denied(nodes[1]) && denied(nodes[2]) })
		t.Logf("deny on all nodes after %v", d)
		rc, err := dialFromE("127.0.0.77", feAddr(t, nodes[2].rt, "web"))
		if err != nil {
			t.Fatal(err)
		}
		if !refusedAtOnce(rc) {
			t.Errorf("lb3 served a source denied through lb2")
		}
		rc.c.Close()
		d = clusterWait(t, 4*time.Second, "deny expired on all", func() bool { return !denied(nodes[0]) && !denied(nodes[1]) && !denied(nodes[2]) })
		t.Logf("the 2s deny was gone from all nodes %v later", d)
		_, body = nodes[0].api.do(http.MethodGet, "/api/deny", "", "")
		if strings.Contains(string(body), "127.0.0.77") {
			t.Errorf("GET /api/deny after the ttl: %s", body)
		}
	})

	t.Run("request rate shared among the nodes", func(t *testing.T) {
		// lb3 leaves: two nodes share a rate of 10/s, 5/s (burst 5) each.
		nodes[2].c.Stop()
		clusterWait(t, 2*time.Second, "share of two", func() bool {
			return nodes[0].rt.rateShare() == 2 && nodes[1].rt.rateShare() == 2
		})
		count := func(n *clusterNode, src string, reqs int) int {
			rc, err := dialFromE(src, feAddr(t, n.rt, "web"))
			if err != nil {
				t.Fatal(err)
			}
			defer rc.c.Close()
			ok := 0
			for range reqs {
				resp, _, err := rc.do(get("/", "r.test"))
				if err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode == http.StatusOK {
					ok++
				}
			}
			return ok
		}
		// A fresh source: the burst (5), then 5 per second.
		first := count(nodes[0], "127.0.0.88", 20)
		time.Sleep(time.Second)
		second := count(nodes[0], "127.0.0.88", 20)
		t.Logf("request_rate 10/s over 2 nodes: %d of 20 at once, %d of 20 a second later", first, second)
		if first < 5 || first > 6 || second < 4 || second > 6 {
			t.Errorf("allowed %d, then %d; want about 5 and 5", first, second)
		}
		// The other node enforces its share too.
		if ok := count(nodes[1], "127.0.0.88", 20); ok < 5 || ok > 6 {
			t.Errorf("lb2 allowed %d of 20, want about 5", ok)
		}
	})
	nodes = nodes[:2]

	t.Run("etcd member down, then all", func(t *testing.T) {
		ec.StopMember(0)
		rev := push(cfgText(10, "# one member down\n"))
		d := clusterWait(t, 5*time.Second, "push with a member down", onAll(rev))
		t.Logf("push with one etcd member down on all nodes after %v", d)

		ec.StopAll()
		d = clusterWait(t, 5*time.Second, "disconnected", func() bool {
			c0, _, _ := nodes[0].clusterStatus(t)
			c1, _, _ := nodes[1].clusterStatus(t)
			return !c0 && !c1
		})
		_, gotRev, lastErr := nodes[0].clusterStatus(t)
		t.Logf("nodes noticed etcd gone after %v: %s", d, lastErr)
		if gotRev != rev || lastErr == "" {
			t.Errorf("GET /api/cluster while disconnected: revision %d (want %d), last error %q", gotRev, rev, lastErr)
		}
		code, body := nodes[0].api.do(http.MethodGet, "/metrics", "", "")
		if code != http.StatusOK || !strings.Contains(string(body), "waage_cluster_connected 0") ||
			!strings.Contains(string(body), fmt.Sprintf("waage_cluster_config_revision %d", rev)) {
			t.Errorf("metrics while disconnected:\n%s", grepLines(string(body), "waage_cluster"))
		}
		// Traffic goes on, and so do the admin API's changes, on this node only.
		for _, n := range nodes {
			resp, err := http.Get("http://" + feAddr(t, n.rt, "web") + "/")
			if err != nil {
				t.Fatalf("%s while etcd is down: %v", n.name, err)
			}
			resp.Body.Close()
		}
		if code, body := nodes[0].api.do(http.MethodPost, "/api/backends/b/servers/s2/maintenance", clusterToken, ""); code != http.StatusOK {
			t.Errorf("maintenance while etcd is down: %d %s", code, body)
		}

		back := time.Now()
		if err := ec.StartAll(); err != nil {
			t.Fatal(err)
		}
		clusterWait(t, 10*time.Second, "reconnected", func() bool {
			c0, _, _ := nodes[0].clusterStatus(t)
			c1, _, _ := nodes[1].clusterStatus(t)
			return c0 && c1
		})
		t.Logf("nodes reconnected %v after etcd was started again (its start included)", time.Since(back).Round(time.Millisecond))
		rev = push(cfgText(10, "# etcd back\n"))
		clusterWait(t, 2*time.Second, "push after the outage", onAll(rev))
		code, body = nodes[0].api.do(http.MethodGet, "/metrics", "", "")
		if code != http.StatusOK || !strings.Contains(string(body), "waage_cluster_connected 1") {
			t.Errorf("metrics after the outage:\n%s", grepLines(string(body), "waage_cluster"))
		}
	})
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// rateShare is the number of nodes the request rates are shared among.
func (r *Runtime) rateShare() int {
	r.guards.mu.Lock()
	defer r.guards.mu.Unlock()
	return r.guards.share
}
