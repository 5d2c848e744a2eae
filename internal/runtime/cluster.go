package runtime

import (
	"errors"
	"net/netip"
	"strconv"
	"time"

	"github.com/waage/waage/internal/admin"
	"github.com/waage/waage/internal/backend"
	"github.com/waage/waage/internal/cluster"
	"github.com/waage/waage/internal/config"
)

// A runtime that is a node of a cluster (etcd: in its file) shares the operators' changes with
// the other nodes: the admin API's changes go to etcd as well as to this runtime, and what any
// node changed arrives through the cluster's watch and applies here. The request rates become
// this node's share of them. The cluster configuration itself goes through the caller, which
// merges it with the node's own file (Options.Config).

// ClusterOptions configure JoinCluster.
type ClusterOptions struct {
	// Etcd is the node's etcd section, defaults applied.
	Etcd config.Etcd
	// Version and Admin (the admin API's address, read at each registration) fill the node's
	// membership entry.
	Version string
	Admin   func() string
	// Revision is the cluster configuration the runtime already runs (from the local copy).
	Revision int64
	// Config applies a cluster configuration; an error keeps the running one.
	Config func(r *cluster.Revision) error
}

// Cluster is the runtime's membership of a cluster.
type Cluster struct {
	r    *Runtime
	node *cluster.Node
	cfg  func(*cluster.Revision) error
}

// JoinCluster makes r a node of the cluster o names. It returns at once; the node connects,
// and reconnects, in the background.
func (r *Runtime) JoinCluster(o ClusterOptions) (*Cluster, error) {
	c := &Cluster{r: r, cfg: o.Config}
	node, err := cluster.Start(cluster.Options{
		Etcd: o.Etcd, Version: o.Version, Admin: o.Admin, Revision: o.Revision,
		Handler: clusterHandler{c}, Logger: r.logger,
	})
	if err != nil {
		return nil, err
	}
	c.node = node
	return c, nil
}

// Node is the cluster membership.
func (c *Cluster) Node() *cluster.Node { return c.node }

// Stop leaves the cluster; the runtime serves on with what it has.
func (c *Cluster) Stop() { c.node.Stop() }

// Source is the runtime as the admin API of a node sees it: changes are shared through etcd,
// and GET /api/cluster and /api/nodes answer.
func (c *Cluster) Source() admin.Source { return &clusterSource{Runtime: c.r, c: c} }

// Reapply applies the shared server changes again: after a configuration that brought servers
// this node did not have when the change was made.
func (c *Cluster) Reapply() {
	for _, s := range c.node.ServerSettings() {
		c.r.applyShared(s)
	}
}

// SetRateShare makes every frontend's request rates the share of one node of n (see
// guard.Guard.SetShare).
func (r *Runtime) SetRateShare(n int) {
	r.guards.mu.Lock()
	defer r.guards.mu.Unlock()
	if n == r.guards.share {
		return
	}
	r.guards.share = n
	for _, g := range r.guards.m {
		g.SetShare(n)
	}
	r.logger.Info("request rates shared among the cluster's nodes", "nodes", n)
}

// applyShared applies a server change made on another node (or this one, seen again).
func (r *Runtime) applyShared(s cluster.ServerSetting) {
	srv, err := r.findServer(s.Backend, s.Server)
	if err != nil {
		return // not (yet) in this node's configuration; Reapply catches up
	}
	if s.State != "" {
		st, err := backend.ParseState(s.State)
		if err != nil {
			return
		}
		if old := srv.State(); old != st {
			srv.SetState(st)
			srv.Event("state", old.String(), st.String(), "", "cluster")
			r.logger.Info("server state set through the cluster", "backend", s.Backend, "server", s.Server, "from", old.String(), "to", st.String())
		}
	}
	if s.Weight >= 0 {
		if old := srv.Weight(); old != s.Weight {
			srv.SetWeight(s.Weight)
			srv.Event("weight", strconv.Itoa(old), strconv.Itoa(srv.Weight()), "", "cluster")
			r.logger.Info("server weight set through the cluster", "backend", s.Backend, "server", s.Server, "from", old, "to", srv.Weight())
		}
	}
}

// clusterHandler applies what the cluster decides to the runtime.
type clusterHandler struct{ c *Cluster }

func (h clusterHandler) Config(rev *cluster.Revision) error {
	if h.c.cfg == nil {
		return errors.New("this node takes no configuration from the cluster")
	}
	if err := h.c.cfg(rev); err != nil {
		return err
	}
	h.c.Reapply()
	return nil
}

func (h clusterHandler) Server(s cluster.ServerSetting) { h.c.r.applyShared(s) }

func (h clusterHandler) Deny(p netip.Prefix, expires time.Time) {
	var ttl time.Duration
	if !expires.IsZero() {
		if ttl = time.Until(expires); ttl <= 0 {
			h.c.r.guards.denyList().Remove(p, time.Now())
			return
		}
	}
	dl := h.c.r.guards.denyList()
	for _, e := range dl.Entries(time.Now()) {
		if e.Prefix == p.Masked() && e.Expires.IsZero() == expires.IsZero() && e.Expires.Sub(expires).Abs() < time.Second {
			return // this node made it (its clock read a moment earlier), or saw it already
		}
	}
	dl.Add(p, ttl, time.Now())
	h.c.r.logger.Warn("sources denied through the cluster", "cidr", p.Masked().String(), "ttl", ttl.Round(time.Second))
}

func (h clusterHandler) Undeny(p netip.Prefix) {
	if h.c.r.guards.denyList().Remove(p, time.Now()) {
		h.c.r.logger.Info("sources no longer denied (through the cluster)", "cidr", p.Masked().String())
	}
}

func (h clusterHandler) Members(ms []cluster.Member) {
	h.c.r.SetRateShare(max(len(ms), 1))
}

// clusterSource is the admin API's Source of a node: the runtime, with the changes shared.
type clusterSource struct {
	*Runtime
	c *Cluster
}

var _ admin.ClusterSource = (*clusterSource)(nil)

// warnLocal logs a change that could not reach etcd: it applies on this node only.
func (s *clusterSource) warnLocal(what string, err error, args ...any) {
	if err != nil {
		s.logger.Warn(what+" applied on this node only: the cluster could not be told", append(args, "err", err)...)
	}
}

func (s *clusterSource) SetServerState(backendName, serverName string, st backend.State) (*backend.Server, error) {
	srv, err := s.Runtime.SetServerState(backendName, serverName, st)
	if err != nil {
		return nil, err
	}
	s.warnLocal("server state", s.c.node.SetServerState(backendName, serverName, st.String()), "backend", backendName, "server", serverName)
	return srv, nil
}

func (s *clusterSource) SetServerWeight(backendName, serverName string, weight int) (*backend.Server, error) {
	srv, err := s.Runtime.SetServerWeight(backendName, serverName, weight)
	if err != nil {
		return nil, err
	}
	s.warnLocal("server weight", s.c.node.SetServerWeight(backendName, serverName, weight), "backend", backendName, "server", serverName)
	return srv, nil
}

func (s *clusterSource) Deny(p netip.Prefix, ttl time.Duration) {
	s.Runtime.Deny(p, ttl)
	s.warnLocal("deny", s.c.node.Deny(p.Masked(), ttl), "cidr", p.Masked().String())
}

func (s *clusterSource) Undeny(p netip.Prefix) bool {
	local := s.Runtime.Undeny(p)
	shared, err := s.c.node.Undeny(p.Masked())
	s.warnLocal("undeny", err, "cidr", p.Masked().String())
	return local || shared
}

func (s *clusterSource) ClusterStatus() admin.ClusterStatus {
	st := s.c.node.Status()
	return admin.ClusterStatus{
		Node: st.Node, Prefix: st.Prefix, Endpoints: st.Endpoints, Connected: st.Connected, Since: st.Since,
		ConfigRevision: st.ConfigRevision, LastError: st.LastError, LastErrorAt: st.LastErrorAt, LastSync: st.LastSync,
	}
}

func (s *clusterSource) ClusterNodes() []admin.ClusterNode {
	ms := s.c.node.Members()
	out := make([]admin.ClusterNode, len(ms))
	for i, m := range ms {
		out[i] = admin.ClusterNode{Name: m.Name, Admin: m.Admin, Version: m.Version, State: m.State, Started: m.Started, ConfigRevision: m.ConfigRevision}
	}
	return out
}
