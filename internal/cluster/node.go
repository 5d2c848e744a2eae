package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/waage/waage/internal/config"
)

// Member is a node's membership entry (nodes/NAME), as GET /api/nodes lists it.
type Member struct {
	Name    string `json:"name"`
	Admin   string `json:"admin,omitempty"`
	Version string `json:"version"`
	// State is serving, or stopping during a shutdown.
	State   string    `json:"state"`
	Started time.Time `json:"started"`
	// ConfigRevision is the cluster configuration the node runs.
	ConfigRevision int64 `json:"config_revision"`
}

// ServerSetting is an operator's change to a server, shared by every node: a state (ready,
// drain, maintenance) or a weight; the other is empty or -1.
type ServerSetting struct {
	Backend, Server string
	State           string
	Weight          int
}

// Handler receives what the cluster decides. Its methods run on the node's goroutine, one at a
// time.
type Handler interface {
	// Config applies a cluster configuration; an error keeps the running one (and the node
	// reports it in its status).
	Config(r *Revision) error
	// Server applies an operator's change to a server.
	Server(s ServerSetting)
	// Deny blocks p until expires (zero: until lifted); Undeny lifts the block.
	Deny(p netip.Prefix, expires time.Time)
	Undeny(p netip.Prefix)
	// Members is called with the live nodes whenever the list changes.
	Members(ms []Member)
}

// Options configure a Node.
type Options struct {
	// Etcd is the node's etcd section, defaults applied.
	Etcd config.Etcd
	// Version and Admin fill the membership entry; Admin is read at each write.
	Version string
	Admin   func() string
	// Revision is the configuration revision the node already runs (from its local copy), so it
	// is not applied again.
	Revision int64
	Handler  Handler
	Logger   *slog.Logger
}

// Status is the node's view of the cluster, for GET /api/cluster and the metrics.
type Status struct {
	Node      string
	Prefix    string
	Endpoints []string
	// Connected: the node is registered, has read the cluster's state and watches it.
	Connected bool
	// ConfigRevision is the cluster configuration running here (0: none yet).
	ConfigRevision int64
	LastError      string
	LastErrorAt    time.Time
	// LastSync is when the node last read the whole state from etcd.
	LastSync time.Time
	// Since is when Connected last changed.
	Since time.Time
}

// Node is this process's membership of the cluster: it registers, watches the prefix and hands
// what changes to its Handler, and writes the operator's changes made here.
type Node struct {
	o       Options
	prefix  string
	cli     *clientv3.Client
	log     *slog.Logger
	started time.Time
	cancel  context.CancelFunc
	done    chan struct{}
	revoke  bool // Stop revokes the lease (a graceful stop); set before cancel
	stopped sync.Once

	mu      sync.Mutex
	status  Status
	lease   clientv3.LeaseID
	members map[string]Member
	servers map[string]ServerSetting // by "backend/server/field"
	denies  map[netip.Prefix]time.Time
}

// Start connects to etcd in the background and returns at once: a node serves whether or not
// etcd answers.
func Start(o Options) (*Node, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Admin == nil {
		o.Admin = func() string { return "" }
	}
	cli, err := Dial(o.Etcd)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{
		o: o, prefix: o.Etcd.Prefix, cli: cli, log: o.Logger.With("etcd_prefix", o.Etcd.Prefix),
		started: time.Now().UTC(), cancel: cancel, done: make(chan struct{}),
		members: map[string]Member{}, servers: map[string]ServerSetting{}, denies: map[netip.Prefix]time.Time{},
	}
	n.status = Status{Node: o.Etcd.NodeName, Prefix: n.prefix, Endpoints: slices.Clone(o.Etcd.Endpoints), ConfigRevision: o.Revision, Since: time.Now()}
	go n.run(ctx)
	return n, nil
}

// Client is the node's etcd client.
func (n *Node) Client() *clientv3.Client { return n.cli }

// Stop leaves the cluster: the membership entry is removed at once (a killed node's lasts until
// its lease ends). Later calls do nothing.
func (n *Node) Stop() { n.stop(true) }

func (n *Node) stop(revoke bool) {
	n.stopped.Do(func() {
		n.mu.Lock()
		n.revoke = revoke
		n.mu.Unlock()
		n.cancel()
		<-n.done
		n.cli.Close()
	})
}

// Status returns the node's view of the cluster.
func (n *Node) Status() Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.status
	s.Endpoints = slices.Clone(s.Endpoints)
	return s
}

// Members lists the live nodes by name (the last known list while disconnected).
func (n *Node) Members() []Member {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.memberList()
}

func (n *Node) memberList() []Member {
	out := make([]Member, 0, len(n.members))
	for _, m := range n.members {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// ServerSettings lists the operators' shared server changes, to apply again after a
// configuration brought new servers.
func (n *Node) ServerSettings() []ServerSetting {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]ServerSetting, 0, len(n.servers))
	for _, s := range n.servers {
		out = append(out, s)
	}
	return out
}

func (n *Node) failed(err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.status.LastError, n.status.LastErrorAt = err.Error(), time.Now()
	if n.status.Connected {
		n.status.Connected, n.status.Since = false, time.Now()
		n.log.Warn("etcd unreachable; serving on with the last configuration and state", "err", err)
	}
}

// run keeps the node connected to etcd until Stop, connecting again whenever etcd fails it.
func (n *Node) run(ctx context.Context) {
	defer close(n.done)
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		err := n.follow(ctx)
		if ctx.Err() != nil {
			return
		}
		if n.Status().Connected {
			backoff = 200 * time.Millisecond // it had joined: try again soon
		}
		n.failed(err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

func opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, opTimeout)
}

// follow registers the node, reads the whole state, and follows the changes, until etcd fails
// it or ctx ends.
func (n *Node) follow(ctx context.Context) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c, cc := opCtx(sctx)
	lease, err := n.cli.Grant(c, int64(LeaseTTL/time.Second))
	cc()
	if err != nil {
		return fmt.Errorf("lease: %w", err)
	}
	n.mu.Lock()
	n.lease = lease.ID
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		revoke := n.revoke
		n.lease = 0
		n.mu.Unlock()
		if revoke && ctx.Err() != nil {
			c, cc := context.WithTimeout(context.Background(), time.Second)
			n.cli.Revoke(c, lease.ID)
			cc()
		}
	}()
	if err := n.register(sctx); err != nil {
		return err
	}
	ka, err := n.cli.KeepAlive(sctx, lease.ID)
	if err != nil {
		return fmt.Errorf("lease keep-alive: %w", err)
	}
	c, cc = opCtx(sctx)
	resp, err := n.cli.Get(c, n.prefix, clientv3.WithPrefix())
	cc()
	if err != nil {
		return fmt.Errorf("read %s: %w", n.prefix, err)
	}
	n.sync(resp.Kvs)
	n.mu.Lock()
	n.status.LastSync = time.Now()
	if !n.status.Connected {
		n.status.Connected, n.status.Since = true, time.Now()
		n.log.Info("joined the cluster", "node", n.o.Etcd.NodeName, "revision", resp.Header.Revision, "nodes", len(n.members))
	}
	n.mu.Unlock()
	wch := n.cli.Watch(clientv3.WithRequireLeader(sctx), n.prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
	probe := time.NewTicker(time.Second)
	defer probe.Stop()
	for {
		select {
		case <-sctx.Done():
			return sctx.Err()
		case _, ok := <-ka:
			if !ok {
				return errors.New("lease keep-alive lost")
			}
		case wr, ok := <-wch:
			if !ok {
				return errors.New("watch ended")
			}
			if err := wr.Err(); err != nil {
				return fmt.Errorf("watch: %w", err)
			}
			for _, ev := range wr.Events {
				n.event(ev)
			}
		case <-probe.C:
			// A linearizable read needs a quorum: it fails when this node's side of etcd has
			// none, which a watch alone would not tell.
			c, cc := context.WithTimeout(sctx, time.Second)
			_, err := n.cli.Get(c, n.prefix+keyConfig, clientv3.WithCountOnly())
			cc()
			if err != nil {
				return fmt.Errorf("probe: %w", err)
			}
		}
	}
}

// register writes the node's membership entry under its lease.
func (n *Node) register(ctx context.Context) error {
	n.mu.Lock()
	lease := n.lease
	m := Member{Name: n.o.Etcd.NodeName, Admin: n.o.Admin(), Version: n.o.Version, State: "serving", Started: n.started, ConfigRevision: n.status.ConfigRevision}
	if n.revoke {
		m.State = "stopping"
	}
	n.mu.Unlock()
	if lease == 0 {
		return nil
	}
	data, _ := json.Marshal(m)
	c, cc := opCtx(ctx)
	defer cc()
	if _, err := n.cli.Put(c, n.prefix+dirNodes+m.Name, string(data), clientv3.WithLease(lease)); err != nil {
		return fmt.Errorf("register node %s: %w", m.Name, err)
	}
	return nil
}

// sync reconciles with the whole state read from etcd: after a start or a reconnection, so
// changes made while the node was cut off apply, deletions included.
func (n *Node) sync(kvs []*mvccpb.KeyValue) {
	members := map[string]Member{}
	servers := map[string]ServerSetting{}
	denies := map[netip.Prefix]time.Time{}
	var cfg *mvccpb.KeyValue
	for _, kv := range kvs {
		key := strings.TrimPrefix(string(kv.Key), n.prefix)
		switch {
		case key == keyConfig:
			cfg = kv
		case strings.HasPrefix(key, dirNodes):
			if m, ok := n.member(kv); ok {
				members[m.Name] = m
			}
		case strings.HasPrefix(key, dirServers):
			if s, ok := parseServer(key, string(kv.Value)); ok {
				servers[key] = s
			}
		case strings.HasPrefix(key, dirDeny):
			if p, exp, ok := parseDeny(kv.Value); ok {
				denies[p] = exp
			}
		}
	}
	if cfg != nil {
		n.config(cfg)
	}
	n.mu.Lock()
	changed := !maps(n.members, members)
	n.members = members
	oldDenies := n.denies
	n.servers, n.denies = servers, denies
	list := n.memberList()
	n.mu.Unlock()
	if changed {
		n.o.Handler.Members(list)
	}
	for _, s := range servers {
		n.o.Handler.Server(s)
	}
	for p := range oldDenies {
		if _, ok := denies[p]; !ok {
			n.o.Handler.Undeny(p)
		}
	}
	for p, exp := range denies {
		n.o.Handler.Deny(p, exp)
	}
}

func maps(a, b map[string]Member) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || v != w {
			return false
		}
	}
	return true
}

// event applies one change seen by the watch.
func (n *Node) event(ev *clientv3.Event) {
	kv := ev.Kv
	key := strings.TrimPrefix(string(kv.Key), n.prefix)
	del := ev.Type == clientv3.EventTypeDelete
	switch {
	case key == keyConfig:
		if del {
			n.log.Warn("the cluster configuration was deleted from etcd; serving on with the last one")
			return
		}
		n.config(kv)
	case strings.HasPrefix(key, dirNodes):
		name := strings.TrimPrefix(key, dirNodes)
		n.mu.Lock()
		if del {
			delete(n.members, name)
		} else if m, ok := n.member(kv); ok {
			n.members[m.Name] = m
		}
		list := n.memberList()
		n.mu.Unlock()
		n.o.Handler.Members(list)
		if del && name == n.o.Etcd.NodeName {
			// Another process of this node's name removed the entry (the old process of a
			// binary upgrade revoking its lease as it leaves): this one is still here.
			go n.register(context.Background())
		}
	case strings.HasPrefix(key, dirServers):
		if del {
			n.mu.Lock()
			delete(n.servers, key)
			n.mu.Unlock()
			return
		}
		if s, ok := parseServer(key, string(kv.Value)); ok {
			n.mu.Lock()
			n.servers[key] = s
			n.mu.Unlock()
			n.o.Handler.Server(s)
		}
	case strings.HasPrefix(key, dirDeny):
		if del {
			p, err := netip.ParsePrefix(strings.ReplaceAll(strings.TrimPrefix(key, dirDeny), "_", "/"))
			if err != nil {
				return
			}
			n.mu.Lock()
			delete(n.denies, p)
			n.mu.Unlock()
			n.o.Handler.Undeny(p)
			return
		}
		if p, exp, ok := parseDeny(kv.Value); ok {
			n.mu.Lock()
			n.denies[p] = exp
			n.mu.Unlock()
			n.o.Handler.Deny(p, exp)
		}
	}
}

func (n *Node) member(kv *mvccpb.KeyValue) (Member, bool) {
	var m Member
	if err := json.Unmarshal(kv.Value, &m); err != nil || m.Name == "" {
		n.log.Warn("ignoring a membership entry that is not one", "key", string(kv.Key))
		return m, false
	}
	return m, true
}

// config applies the configuration in kv unless it runs already.
func (n *Node) config(kv *mvccpb.KeyValue) {
	n.mu.Lock()
	cur := n.status.ConfigRevision
	n.mu.Unlock()
	if kv.ModRevision == cur {
		return
	}
	r := &Revision{Rev: kv.ModRevision}
	if err := json.Unmarshal(kv.Value, &r.Envelope); err != nil {
		n.failed(fmt.Errorf("%s: not a waage configuration envelope: %w", r.Name(n.prefix), err))
		return
	}
	start := time.Now()
	if err := n.o.Handler.Config(r); err != nil {
		n.mu.Lock()
		n.status.LastError, n.status.LastErrorAt = fmt.Sprintf("configuration revision %d refused: %v", r.Rev, err), time.Now()
		n.mu.Unlock()
		n.log.Error("cluster configuration refused; the running one stays", "revision", r.Rev, "err", err)
		return
	}
	n.mu.Lock()
	n.status.ConfigRevision = r.Rev
	n.mu.Unlock()
	if err := SaveLocalCopy(n.o.Etcd, r); err != nil {
		n.log.Warn("local copy of the cluster configuration not saved", "err", err)
	}
	n.log.Info("cluster configuration applied", "revision", r.Rev, "pushed", r.Time, "by", r.By, "took", time.Since(start).Round(time.Microsecond))
	go n.register(context.Background()) // the entry shows the revision this node runs
}

// parseServer reads servers/BACKEND/SERVER/state or .../weight.
func parseServer(key, value string) (ServerSetting, bool) {
	parts := strings.Split(strings.TrimPrefix(key, dirServers), "/")
	if len(parts) != 3 {
		return ServerSetting{}, false
	}
	s := ServerSetting{Backend: parts[0], Server: parts[1], Weight: -1}
	switch parts[2] {
	case "state":
		s.State = value
	case "weight":
		w, err := strconv.Atoi(value)
		if err != nil || w < 0 {
			return s, false
		}
		s.Weight = w
	default:
		return s, false
	}
	return s, true
}

func parseDeny(value []byte) (netip.Prefix, time.Time, bool) {
	var v denyValue
	if json.Unmarshal(value, &v) != nil {
		return netip.Prefix{}, time.Time{}, false
	}
	p, err := netip.ParsePrefix(v.CIDR)
	if err != nil {
		return p, time.Time{}, false
	}
	var exp time.Time
	if v.Expires != nil {
		exp = *v.Expires
	}
	return p, exp, true
}

// ErrDisconnected is returned for a shared change while etcd cannot be reached: it applied on
// this node only.
var ErrDisconnected = errors.New("etcd is unreachable: the change applies on this node only")

// SetServerState shares an operator's state change of a server with every node.
func (n *Node) SetServerState(backendName, serverName, state string) error {
	return n.put(dirServers+backendName+"/"+serverName+"/state", state, 0)
}

// SetServerWeight shares an operator's weight change of a server with every node.
func (n *Node) SetServerWeight(backendName, serverName string, weight int) error {
	return n.put(dirServers+backendName+"/"+serverName+"/weight", strconv.Itoa(weight), 0)
}

// Deny shares a block of p for ttl (0: until lifted). The entry lives under a lease of the same
// TTL, so etcd removes it when the block ends and every node lifts it (each also lets it expire
// by itself).
func (n *Node) Deny(p netip.Prefix, ttl time.Duration) error {
	if !n.Status().Connected {
		return ErrDisconnected
	}
	v := denyValue{CIDR: p.String()}
	var lease clientv3.LeaseID
	if ttl > 0 {
		exp := time.Now().Add(ttl).UTC()
		v.Expires = &exp
		c, cc := opCtx(context.Background())
		l, err := n.cli.Grant(c, int64(math.Ceil(ttl.Seconds())))
		cc()
		if err != nil {
			return n.writeFailed(err)
		}
		lease = l.ID
	}
	data, _ := json.Marshal(v)
	return n.put(strings.TrimPrefix(denyKey(n.prefix, p), n.prefix), string(data), lease)
}

// Undeny shares the lifting of a block; it reports whether the cluster had it.
func (n *Node) Undeny(p netip.Prefix) (bool, error) {
	if !n.Status().Connected {
		return false, ErrDisconnected
	}
	c, cc := opCtx(context.Background())
	defer cc()
	resp, err := n.cli.Delete(c, denyKey(n.prefix, p))
	if err != nil {
		return false, n.writeFailed(err)
	}
	return resp.Deleted > 0, nil
}

func (n *Node) put(key, value string, lease clientv3.LeaseID) error {
	if !n.Status().Connected {
		return ErrDisconnected
	}
	var opts []clientv3.OpOption
	if lease != 0 {
		opts = append(opts, clientv3.WithLease(lease))
	}
	c, cc := opCtx(context.Background())
	defer cc()
	if _, err := n.cli.Put(c, n.prefix+key, value, opts...); err != nil {
		return n.writeFailed(err)
	}
	return nil
}

func (n *Node) writeFailed(err error) error {
	return fmt.Errorf("%w (%v)", ErrDisconnected, err)
}

// Refresh writes the node's membership entry again, in the background: after its admin address
// changed.
func (n *Node) Refresh() {
	go n.register(context.Background())
}
