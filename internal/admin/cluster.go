package admin

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/waage/waage/internal/adminapi"
)

// A node of a cluster (etcd: in the configuration) shows the cluster through GET /api/cluster
// and GET /api/nodes, and in the waage_cluster_* metrics. Its Source implements ClusterSource;
// a node on its own answers {"enabled": false} and an empty list.

// ClusterSource is implemented by the Source of a node that is part of a cluster.
type ClusterSource interface {
	ClusterStatus() ClusterStatus
	ClusterNodes() []ClusterNode
}

// ClusterStatus is the node's view of the cluster.
type ClusterStatus struct {
	Node      string
	Prefix    string
	Endpoints []string
	// Connected: registered in etcd, synced and watching. While false the node serves on with
	// the last configuration and state it had.
	Connected      bool
	Since          time.Time
	ConfigRevision int64
	LastError      string
	LastErrorAt    time.Time
	LastSync       time.Time
}

// ClusterNode is one live node of the cluster.
type ClusterNode struct {
	Name           string
	Admin          string
	Version        string
	State          string
	Started        time.Time
	ConfigRevision int64
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func (s *Server) clusterRoutes(mux *http.ServeMux) {
	mux.Handle("/api/cluster", s.read(http.MethodGet, s.getCluster))
	mux.Handle("/api/nodes", s.read(http.MethodGet, s.getNodes))
}

func (s *Server) getCluster(w http.ResponseWriter, r *http.Request) {
	cs, ok := s.opts.Source.(ClusterSource)
	if !ok {
		writeJSON(w, http.StatusOK, adminapi.Cluster{})
		return
	}
	st := cs.ClusterStatus()
	writeJSON(w, http.StatusOK, adminapi.Cluster{
		Enabled: true, Node: st.Node, Prefix: st.Prefix, Endpoints: st.Endpoints, Connected: st.Connected,
		Since: timePtr(st.Since), ConfigRevision: st.ConfigRevision, LastError: st.LastError,
		LastErrorAt: timePtr(st.LastErrorAt), LastSync: timePtr(st.LastSync), Nodes: len(cs.ClusterNodes()),
	})
}

func (s *Server) getNodes(w http.ResponseWriter, r *http.Request) {
	out := adminapi.ClusterNodes{Nodes: []adminapi.ClusterNode{}}
	if cs, ok := s.opts.Source.(ClusterSource); ok {
		self := cs.ClusterStatus().Node
		for _, n := range cs.ClusterNodes() {
			out.Nodes = append(out.Nodes, adminapi.ClusterNode{
				Name: n.Name, Admin: n.Admin, Version: n.Version, State: n.State, Started: n.Started,
				ConfigRevision: n.ConfigRevision, Self: n.Name == self,
			})
		}
	}
	writeJSON(w, http.StatusOK, out)
}

var (
	descClusterConnected = desc("cluster_connected", "1 while this node is connected to etcd (registered, synced, watching); 0 while it serves on with the last configuration and state it had.")
	descClusterRevision  = desc("cluster_config_revision", "The etcd revision of the cluster configuration this node runs (0: none yet).")
	descClusterNodes     = desc("cluster_nodes", "Live nodes of the cluster as this node last saw them (request rates are shared among them).")
)

// collectCluster adds the cluster metrics of a node that is part of one.
func (c *collector) collectCluster(ch chan<- prometheus.Metric) {
	cs, ok := c.src.(ClusterSource)
	if !ok {
		return
	}
	st := cs.ClusterStatus()
	connected := 0.0
	if st.Connected {
		connected = 1
	}
	ch <- prometheus.MustNewConstMetric(descClusterConnected, prometheus.GaugeValue, connected)
	ch <- prometheus.MustNewConstMetric(descClusterRevision, prometheus.GaugeValue, float64(st.ConfigRevision))
	ch <- prometheus.MustNewConstMetric(descClusterNodes, prometheus.GaugeValue, float64(len(cs.ClusterNodes())))
}
