package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/waage/waage/internal/cluster/etcdtest"
	"github.com/waage/waage/internal/config"
)

// etcd is the three-member cluster the tests share (each test under its own prefix); nil when
// etcd is not installed.
var etcd *etcdtest.Cluster

func TestMain(m *testing.M) {
	var err error
	etcd, err = etcdtest.Start(3)
	if err != nil && !errors.Is(err, etcdtest.ErrNoEtcd) {
		fmt.Fprintln(os.Stderr, "etcd:", err)
		os.Exit(1)
	}
	code := m.Run()
	if etcd != nil {
		etcd.Close()
	}
	os.Exit(code)
}

func needEtcd(t *testing.T) *etcdtest.Cluster {
	t.Helper()
	if etcd == nil {
		t.Skip(etcdtest.ErrNoEtcd)
	}
	return etcd
}

func client(t *testing.T, c *etcdtest.Cluster) *clientv3.Client {
	t.Helper()
	cli, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// recorder is a Handler that remembers what the cluster told it.
type recorder struct {
	mu      sync.Mutex
	configs []int64
	servers []ServerSetting
	denied  map[netip.Prefix]time.Time
	members []string
	refuse  bool
}

func (r *recorder) Config(rev *Revision) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.refuse {
		return errors.New("refused")
	}
	r.configs = append(r.configs, rev.Rev)
	return nil
}

func (r *recorder) Server(s ServerSetting) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.servers = append(r.servers, s)
}

func (r *recorder) Deny(p netip.Prefix, exp time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.denied == nil {
		r.denied = map[netip.Prefix]time.Time{}
	}
	r.denied[p] = exp
}

func (r *recorder) Undeny(p netip.Prefix) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.denied, p)
}

func (r *recorder) Members(ms []Member) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.members = r.members[:0]
	for _, m := range ms {
		r.members = append(r.members, m.Name)
	}
}

func (r *recorder) lastConfig() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.configs) == 0 {
		return 0
	}
	return r.configs[len(r.configs)-1]
}

func (r *recorder) memberNames() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.members)
}

func etcdSection(t *testing.T, c *etcdtest.Cluster, name string, endpoints ...string) config.Etcd {
	if len(endpoints) == 0 {
		endpoints = c.Endpoints()
	}
	return config.Etcd{Endpoints: endpoints, Prefix: "/test/" + t.Name() + "/", NodeName: name, StateDir: t.TempDir()}.WithDefaults()
}

func startNode(t *testing.T, e config.Etcd, h Handler) *Node {
	t.Helper()
	n, err := Start(Options{Etcd: e, Version: "test", Handler: h, Admin: func() string { return "127.0.0.1:1" }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	return n
}

// eventually polls cond for up to d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not after %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

func TestPushHistoryRollback(t *testing.T) {
	c := needEtcd(t)
	cli := client(t, c)
	ctx := context.Background()
	prefix := "/test/" + t.Name() + "/"
	if r, err := Get(ctx, cli, prefix, 0); err != nil || r != nil {
		t.Fatalf("empty prefix: %v, %v", r, err)
	}
	var revs []int64
	for i := range 3 {
		rev, err := Push(ctx, cli, prefix, Envelope{YAML: fmt.Sprintf("# v%d\n", i), By: "t@h", Source: "f.yaml"})
		if err != nil {
			t.Fatal(err)
		}
		revs = append(revs, rev)
	}
	hist, err := History(ctx, cli, prefix, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 3 {
		t.Fatalf("history has %d revisions, want 3", len(hist))
	}
	for i, r := range hist {
		if want := revs[2-i]; r.Rev != want || r.YAML != fmt.Sprintf("# v%d\n", 2-i) {
			t.Errorf("history[%d] = %d %q, want %d", i, r.Rev, r.YAML, want)
		}
	}
	if h, _ := History(ctx, cli, prefix, 2); len(h) != 2 {
		t.Errorf("History(limit 2) = %d revisions", len(h))
	}
	old, err := Get(ctx, cli, prefix, revs[0])
	if err != nil || old.YAML != "# v0\n" {
		t.Fatalf("Get(%d) = %+v, %v", revs[0], old, err)
	}
	if _, err := Get(ctx, cli, prefix, revs[2]+100); err == nil {
		t.Errorf("Get of a future revision: no error")
	}
	// Once etcd compacted the older revisions away, the history ends where they were.
	if _, err := cli.Compact(ctx, revs[2]); err != nil {
		t.Fatal(err)
	}
	if h, err := History(ctx, cli, prefix, 10); err != nil || len(h) != 1 || h[0].Rev != revs[2] {
		t.Errorf("history after compaction: %+v, %v", h, err)
	}
	if _, err := Get(ctx, cli, prefix, revs[0]); !errors.Is(err, ErrCompacted) {
		t.Errorf("Get of a compacted revision: %v", err)
	}
}

func TestConfigSharedStateAndMembership(t *testing.T) {
	c := needEtcd(t)
	cli := client(t, c)
	ctx := context.Background()
	var ha, hb recorder
	ea, eb := etcdSection(t, c, "a"), etcdSection(t, c, "b")
	a := startNode(t, ea, &ha)
	b := startNode(t, eb, &hb)
	eventually(t, 5*time.Second, "both nodes see both", func() bool {
		return slices.Equal(ha.memberNames(), []string{"a", "b"}) && slices.Equal(hb.memberNames(), []string{"a", "b"})
	})

	start := time.Now()
	rev, err := Push(ctx, cli, ea.Prefix, Envelope{YAML: "frontends: []\n"})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, "push applied on both nodes", func() bool { return ha.lastConfig() == rev && hb.lastConfig() == rev })
	t.Logf("push to both nodes: %v", time.Since(start))
	if st := a.Status(); !st.Connected || st.ConfigRevision != rev {
		t.Errorf("status %+v", st)
	}
	// The local copy is the applied revision.
	eventually(t, time.Second, "local copy", func() bool {
		lc, err := LoadLocalCopy(ea)
		return err == nil && lc != nil && lc.Rev == rev && lc.YAML == "frontends: []\n"
	})
	// The members' entries show the revision they run.
	eventually(t, 2*time.Second, "entries show the revision", func() bool {
		ms, _ := ListMembers(ctx, cli, ea.Prefix)
		return len(ms) == 2 && ms[0].ConfigRevision == rev && ms[1].ConfigRevision == rev && ms[0].Admin == "127.0.0.1:1"
	})

	// Changes made through one node reach the other.
	if err := a.SetServerState("web", "s1", "drain"); err != nil {
		t.Fatal(err)
	}
	if err := a.SetServerWeight("web", "s2", 7); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, "server changes on b", func() bool {
		hb.mu.Lock()
		defer hb.mu.Unlock()
		return slices.Contains(hb.servers, ServerSetting{Backend: "web", Server: "s1", State: "drain", Weight: -1}) &&
			slices.Contains(hb.servers, ServerSetting{Backend: "web", Server: "s2", Weight: 7})
	})
	p := netip.MustParsePrefix("198.51.100.0/24")
	if err := a.Deny(p, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	forever := netip.MustParsePrefix("203.0.113.9/32")
	if err := a.Deny(forever, 0); err != nil {
		t.Fatal(err)
	}
	denied := func(p netip.Prefix) bool {
		hb.mu.Lock()
		defer hb.mu.Unlock()
		_, ok := hb.denied[p]
		return ok
	}
	eventually(t, time.Second, "deny on b", func() bool { return denied(p) && denied(forever) })
	// etcd ends the entry with its lease (rounded up to the second, and lease expiry is checked
	// every 500ms by etcd).
	d := eventually(t, 6*time.Second, "ttl deny lifted on b", func() bool { return !denied(p) })
	t.Logf("deny with a 2s ttl lifted %v after it was seen", d)
	if ok, err := b.Undeny(forever); err != nil || !ok {
		t.Fatalf("Undeny = %v, %v", ok, err)
	}
	eventually(t, time.Second, "undeny on b", func() bool { return !denied(forever) })

	// A killed node (its lease not revoked) drops out after the lease's TTL.
	killed := time.Now()
	b.stop(false)
	gone := eventually(t, LeaseTTL+3*time.Second, "killed node gone", func() bool { return slices.Equal(ha.memberNames(), []string{"a"}) })
	t.Logf("killed node left the list after %v (lease TTL %v)", gone, LeaseTTL)
	if gone < LeaseTTL-2*time.Second {
		t.Errorf("killed node gone after %v, before its lease could end", time.Since(killed))
	}
}

func TestStopLeavesAtOnce(t *testing.T) {
	c := needEtcd(t)
	var ha, hb recorder
	startNode(t, etcdSection(t, c, "a"), &ha)
	b, err := Start(Options{Etcd: etcdSection(t, c, "b"), Handler: &hb})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "both", func() bool { return len(ha.memberNames()) == 2 })
	b.Stop()
	d := eventually(t, time.Second, "stopped node gone", func() bool { return slices.Equal(ha.memberNames(), []string{"a"}) })
	t.Logf("stopped node left after %v", d)
}

func TestLocalCopy(t *testing.T) {
	e := config.Etcd{Prefix: "/waage/prod/", StateDir: filepath.Join(t.TempDir(), "state")}
	if r, err := LoadLocalCopy(e); r != nil || err != nil {
		t.Fatalf("no copy: %v, %v", r, err)
	}
	if err := SaveLocalCopy(e, &Revision{Rev: 9, Envelope: Envelope{YAML: "x: 1\n"}}); err != nil {
		t.Fatal(err)
	}
	r, err := LoadLocalCopy(e)
	if err != nil || r.Rev != 9 || r.YAML != "x: 1\n" {
		t.Fatalf("copy %+v, %v", r, err)
	}
	if filepath.Base(LocalCopyPath(e)) != "cluster-waage-prod.json" {
		t.Errorf("path %s", LocalCopyPath(e))
	}
	other := e
	other.Prefix = "/waage/staging/"
	if r, _ := LoadLocalCopy(other); r != nil {
		t.Errorf("another prefix reads this copy")
	}
}

// TestOutageAndResync takes etcd members away: with one member gone the cluster keeps working;
// a node cut off from etcd says so, keeps what it has, and takes up what changed meanwhile when
// etcd is back.
func TestOutageAndResync(t *testing.T) {
	if etcd == nil {
		t.Skip(etcdtest.ErrNoEtcd)
	}
	c, err := etcdtest.Start(3)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cli := client(t, c)
	var ha, hb recorder
	// b reaches etcd through member 2 only, so stopping that member cuts b off alone.
	ea, eb := etcdSection(t, c, "a", c.Endpoints()[:2]...), etcdSection(t, c, "b", c.Endpoints()[2])
	a := startNode(t, ea, &ha)
	b := startNode(t, eb, &hb)
	eventually(t, 5*time.Second, "both", func() bool { return len(ha.memberNames()) == 2 && len(hb.memberNames()) == 2 })
	ctx := context.Background()
	rev1, err := Push(ctx, cli, ea.Prefix, Envelope{YAML: "# 1\n"})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, "rev1", func() bool { return ha.lastConfig() == rev1 && hb.lastConfig() == rev1 })

	// One member of three down: a quorum is left, a keeps working.
	c.StopMember(0)
	rev2, err := Push(ctx, cli, ea.Prefix, Envelope{YAML: "# 2\n"})
	if err != nil {
		t.Fatal(err)
	}
	d := eventually(t, 5*time.Second, "rev2 with a member down", func() bool { return ha.lastConfig() == rev2 && hb.lastConfig() == rev2 })
	t.Logf("push with one member down applied after %v", d)
	eventually(t, 5*time.Second, "a connected", func() bool { return a.Status().Connected })

	// b's member goes too: b is cut off (and the cluster has no quorum).
	c.StopMember(2)
	d = eventually(t, 5*time.Second, "b disconnected", func() bool { return !b.Status().Connected })
	t.Logf("b noticed the outage after %v: %s", d, b.Status().LastError)
	if st := b.Status(); st.ConfigRevision != rev2 || st.LastError == "" {
		t.Errorf("b while cut off: %+v", st)
	}
	// Member 0 back: a quorum again, but b's member is still down; a change is made meanwhile.
	if err := c.StartMember(0); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	rev3, err := Push(ctx, cli, ea.Prefix, Envelope{YAML: "# 3\n"})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.SetServerState("web", "s1", "maintenance"); err != nil {
		eventually(t, 5*time.Second, "a back", func() bool { return a.Status().Connected })
		if err := a.SetServerState("web", "s1", "maintenance"); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if hb.lastConfig() != rev2 || b.Status().Connected {
		t.Fatalf("b should be cut off still: rev %d, %+v", hb.lastConfig(), b.Status())
	}
	// b's member back: b catches up.
	back := time.Now()
	if err := c.StartMember(2); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "b resynced", func() bool {
		if !b.Status().Connected || hb.lastConfig() != rev3 {
			return false
		}
		hb.mu.Lock()
		defer hb.mu.Unlock()
		return slices.Contains(hb.servers, ServerSetting{Backend: "web", Server: "s1", State: "maintenance", Weight: -1})
	})
	t.Logf("b resynced %v after its etcd member came back (member start included)", time.Since(back).Round(time.Millisecond))
}

// TestSameNameTakeover: in a binary upgrade the new process registers under the old one's name
// before the old one leaves; the old one's leaving must not take the node out of the list.
func TestSameNameTakeover(t *testing.T) {
	c := needEtcd(t)
	var hw, hOld, hNew recorder
	startNode(t, etcdSection(t, c, "watcher"), &hw)
	old, err := Start(Options{Etcd: etcdSection(t, c, "lb1"), Handler: &hOld})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "old registered", func() bool { return slices.Equal(hw.memberNames(), []string{"lb1", "watcher"}) })
	startNode(t, etcdSection(t, c, "lb1"), &hNew)
	eventually(t, 5*time.Second, "new synced", func() bool { return len(hNew.memberNames()) == 2 })
	old.Stop()
	time.Sleep(200 * time.Millisecond)
	eventually(t, time.Second, "lb1 listed after the old process left", func() bool {
		return slices.Equal(hw.memberNames(), []string{"lb1", "watcher"})
	})
	ms, err := ListMembers(context.Background(), client(t, c), "/test/"+t.Name()+"/")
	if err != nil || len(ms) != 2 {
		t.Errorf("entries in etcd: %v, %v", ms, err)
	}
}
