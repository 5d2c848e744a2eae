package vrrp

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// bus is an in-memory network segment: every advert a port sends reaches every other open,
// connected port, encoded and checksummed as on the wire.
type bus struct {
	mu    sync.Mutex
	ports []*fakePort
}

type wire struct {
	b   []byte
	src netip.Addr
}

// fakePort is one router's Transport on a bus.
type fakePort struct {
	bus    *bus
	addr   netip.Addr
	rx     chan wire
	closed chan struct{}
	once   sync.Once
	// cut drops everything the port sends and receives, as a crashed host would.
	cut atomic.Bool
}

func (b *bus) open(addr netip.Addr) *fakePort {
	p := &fakePort{bus: b, addr: addr, rx: make(chan wire, 64), closed: make(chan struct{})}
	b.mu.Lock()
	b.ports = append(b.ports, p)
	b.mu.Unlock()
	return p
}

func (p *fakePort) Send(a *Advert) error {
	if p.cut.Load() {
		return nil
	}
	b, err := a.Marshal(p.addr, MulticastGroup)
	if err != nil {
		return err
	}
	p.bus.mu.Lock()
	defer p.bus.mu.Unlock()
	for _, q := range p.bus.ports {
		if q == p || q.cut.Load() {
			continue
		}
		select {
		case <-q.closed:
		case q.rx <- wire{b, p.addr}:
		default:
		}
	}
	return nil
}

func (p *fakePort) Receive() (*Advert, netip.Addr, error) {
	select {
	case w := <-p.rx:
		a, err := Parse(w.b, w.src, MulticastGroup, TTL)
		return a, w.src, err
	case <-p.closed:
		return nil, netip.Addr{}, net.ErrClosed
	}
}

func (p *fakePort) LocalAddr() netip.Addr { return p.addr }

func (p *fakePort) Close() error {
	p.once.Do(func() { close(p.closed) })
	p.bus.mu.Lock()
	defer p.bus.mu.Unlock()
	p.bus.ports = slices.DeleteFunc(p.bus.ports, func(q *fakePort) bool { return q == p })
	return nil
}

// fakeAddrs records the addresses on one router's interface.
type fakeAddrs struct {
	mu        sync.Mutex
	have      map[netip.Addr]bool
	announced int
}

func newFakeAddrs(initial ...netip.Prefix) *fakeAddrs {
	f := &fakeAddrs{have: map[netip.Addr]bool{}}
	for _, p := range initial {
		f.have[p.Addr()] = true
	}
	return f
}

func (f *fakeAddrs) Add(vips []netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range vips {
		f.have[p.Addr()] = true
	}
	return nil
}

func (f *fakeAddrs) Remove(vips []netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range vips {
		delete(f.have, p.Addr())
	}
	return nil
}

func (f *fakeAddrs) Announce(vips []netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.announced += len(vips)
	return nil
}

func (f *fakeAddrs) Present(vips []netip.Prefix) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range vips {
		if !f.have[p.Addr()] {
			return false, nil
		}
	}
	return len(vips) > 0, nil
}

func (f *fakeAddrs) holds(a netip.Addr) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.have[a]
}

func (f *fakeAddrs) announces() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.announced
}

var testVIP = netip.MustParsePrefix("10.0.0.100/24")

// router is one instance on a bus with its fake interface.
type router struct {
	inst     *Instance
	port     *fakePort
	addrs    *fakeAddrs
	healthy  atomic.Bool
	linkDown atomic.Bool // the instance's own interface
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func startRouter(t *testing.T, b *bus, name string, addr netip.Addr, prio uint8, mutate func(*Config)) *router {
	t.Helper()
	r := &router{addrs: newFakeAddrs()}
	r.healthy.Store(true)
	cfg := Config{
		Name: name, Interface: "eth0", VRID: 51, Priority: prio, AdvertInterval: 100 * time.Millisecond,
		Preempt: true, VIPs: []netip.Prefix{testVIP}, GARPRepeat: 2, GARPDelay: time.Second,
		TrackBackends: []Tracker{{Name: "app", Weight: 100}},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	inst, err := Start(cfg, Options{
		Logger:         testLogger(t).With("router", name),
		BackendHealthy: func(string) bool { return r.healthy.Load() },
		LinkUp:         func(string) bool { return !r.linkDown.Load() },
		OpenTransport: func(Config) (Transport, error) {
			r.port = b.open(addr)
			return r.port, nil
		},
		Addresses: r.addrs,
	})
	if err != nil {
		t.Fatal(err)
	}
	r.inst = inst
	return r
}

// startPair starts lb1 (priority 150) and lb2 (100) on one bus, waits for lb1 to be master,
// and stops both when the test ends.
func startPair(t *testing.T) (lb1, lb2 *router) {
	t.Helper()
	b := &bus{}
	lb1 = startRouter(t, b, "lb1", lb1Addr, 150, nil)
	lb2 = startRouter(t, b, "lb2", lb2Addr, 100, nil)
	t.Cleanup(lb1.stop)
	t.Cleanup(lb2.stop)
	waitState(t, lb1, Master, time.Second)
	return lb1, lb2
}

func (r *router) stop() {
	r.inst.Stop(context.Background())
}

// waitState sleeps in steps of 10ms (fake time) until the router is in state, and returns how
// long that took; it fails after limit.
func waitState(t *testing.T, r *router, state State, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) <= limit {
		if r.inst.Status().State == state.String() {
			return time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: not %s within %v (status %+v)", r.inst.Name(), state, limit, r.inst.Status())
	return 0
}

var (
	lb1Addr = netip.MustParseAddr("10.0.0.1")
	lb2Addr = netip.MustParseAddr("10.0.0.2")
)

func TestInstancePairFailover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &bus{}
		lb1 := startRouter(t, b, "lb1", lb1Addr, 150, nil)
		lb2 := startRouter(t, b, "lb2", lb2Addr, 100, nil)
		defer lb2.stop()

		waitState(t, lb1, Master, time.Second)
		time.Sleep(500 * time.Millisecond)
		if lb1.addrs.announces() != 2 {
			t.Errorf("gratuitous ARPs %d, want garp_repeat 2", lb1.addrs.announces())
		}
		time.Sleep(700 * time.Millisecond) // the second round, garp_delay after the first
		if lb1.addrs.announces() != 4 {
			t.Errorf("gratuitous ARPs %d after garp_delay, want 4", lb1.addrs.announces())
		}
		s1, s2 := lb1.inst.Status(), lb2.inst.Status()
		if s1.State != "master" || s2.State != "backup" {
			t.Fatalf("states %s/%s, want master/backup", s1.State, s2.State)
		}
		if !lb1.addrs.holds(testVIP.Addr()) || lb2.addrs.holds(testVIP.Addr()) {
			t.Fatal("the VIP is not on the master alone")
		}
		if s1.Transitions != 2 || s1.MasterAddr != lb1Addr || s1.EffectivePriority != 150 || s1.LocalAddr != lb1Addr {
			t.Errorf("lb1 status %+v", s1)
		}
		if s2.MasterAddr != lb1Addr || s2.MasterPriority != 150 || s2.MasterAdvertInterval != 100*time.Millisecond {
			t.Errorf("lb2 does not know its master: %+v", s2)
		}
		if s2.AdvertsReceived < 9 || s1.AdvertsSent < 10 {
			t.Errorf("adverts sent %d, received %d in over a second at 100ms", s1.AdvertsSent, s2.AdvertsReceived)
		}

		// lb1's host dies: it goes silent, and lb2 takes over within Master_Down_Interval.
		lb1.port.cut.Store(true)
		took := waitState(t, lb2, Master, 2*time.Second)
		down := MasterDownInterval(100, 100*time.Millisecond)
		t.Logf("silent master: failover after %v (master down interval %v)", took, down)
		if took > down+10*time.Millisecond || took < down-100*time.Millisecond-10*time.Millisecond {
			t.Errorf("failover after %v, want within one advert interval below %v", took, down)
		}
		if !lb2.addrs.holds(testVIP.Addr()) {
			t.Error("the new master did not add the VIP")
		}
		lb1.port.cut.Store(false)
		// lb1 comes back and preempts: lb2 hears its higher priority and steps down.
		waitState(t, lb2, Backup, time.Second)
		if !lb1.addrs.holds(testVIP.Addr()) || lb2.addrs.holds(testVIP.Addr()) {
			t.Error("after lb1 came back the VIP is not on lb1 alone")
		}

		// Clean stop: priority 0, lb2 takes over after its Skew_Time.
		time.Sleep(500 * time.Millisecond)
		lb1.stop()
		if lb1.addrs.holds(testVIP.Addr()) {
			t.Error("stopped master kept the VIP")
		}
		if st := lb1.inst.Status(); st.State != "initialize" || st.LastReason != "shutdown" {
			t.Errorf("stopped status %+v", st)
		}
		took = waitState(t, lb2, Master, time.Second)
		skew := SkewTime(100, 100*time.Millisecond)
		t.Logf("clean stop: failover after %v (skew time %v)", took, skew)
		if took > skew+10*time.Millisecond {
			t.Errorf("failover after a clean stop took %v, want the skew time %v", took, skew)
		}
		if reason := lb2.inst.Status().LastReason; !strings.Contains(reason, "priority 0") {
			t.Errorf("reason %q", reason)
		}
	})
}

func TestInstanceTracking(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lb1, lb2 := startPair(t)

		lb1.healthy.Store(false)
		took := waitState(t, lb2, Master, 2*time.Second)
		t.Logf("tracked backend down: lb2 master after %v", took)
		waitState(t, lb1, Backup, time.Second)
		s := lb1.inst.Status()
		if s.EffectivePriority != 50 || len(s.Trackers) != 1 || !s.Trackers[0].Failing {
			t.Errorf("lb1 status with a failing tracker: %+v", s)
		}
		if lb1.addrs.holds(testVIP.Addr()) || !lb2.addrs.holds(testVIP.Addr()) {
			t.Error("the VIP did not move to lb2")
		}

		lb1.healthy.Store(true)
		took = waitState(t, lb1, Master, 2*time.Second)
		t.Logf("tracked backend back: lb1 master after %v", took)
		waitState(t, lb2, Backup, time.Second)
		if s := lb1.inst.Status(); s.EffectivePriority != 150 || s.Trackers[0].Failing {
			t.Errorf("lb1 status after recovery: %+v", s)
		}
	})
}

// TestInstanceFault: the master's interface goes down: it enters fault and gives up the VIP,
// the backup takes over after its master down interval; when the interface is up again the
// first router comes back as a backup and preempts.
func TestInstanceFault(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lb1, lb2 := startPair(t)

		lb1.linkDown.Store(true)
		lb1.port.cut.Store(true) // nothing goes out or comes in on a link that is down
		waitState(t, lb1, Fault, time.Second)
		if lb1.addrs.holds(testVIP.Addr()) {
			t.Error("lb1 kept the VIP in fault")
		}
		took := waitState(t, lb2, Master, 2*time.Second)
		t.Logf("lb1's interface down: lb2 master after %v", took)
		if s := lb1.inst.Status(); s.LastReason != "interface eth0 is down" {
			t.Errorf("lb1 status in fault: %+v", s)
		}

		lb1.linkDown.Store(false)
		lb1.port.cut.Store(false)
		waitState(t, lb1, Backup, time.Second)
		took = waitState(t, lb1, Master, 2*time.Second)
		t.Logf("lb1's interface up: lb1 master again after %v", took)
		waitState(t, lb2, Backup, time.Second)
		if !lb1.addrs.holds(testVIP.Addr()) || lb2.addrs.holds(testVIP.Addr()) {
			t.Error("the VIP did not come back to lb1")
		}
	})
}

func TestInstanceNoPreempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &bus{}
		lb2 := startRouter(t, b, "lb2", lb2Addr, 100, nil)
		defer lb2.stop()
		waitState(t, lb2, Master, time.Second)
		lb1 := startRouter(t, b, "lb1", lb1Addr, 150, func(c *Config) { c.Preempt = false })
		defer lb1.stop()
		time.Sleep(3 * time.Second)
		if lb1.inst.Status().State != "backup" || lb2.inst.Status().State != "master" {
			t.Errorf("with preempt off the running master must stay: lb1 %s, lb2 %s", lb1.inst.Status().State, lb2.inst.Status().State)
		}
	})
}

func TestInstanceStaleVIPRemovedAtStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &bus{}
		other := startRouter(t, b, "other", lb2Addr, 200, nil)
		defer other.stop()
		waitState(t, other, Master, time.Second)
		r := &router{addrs: newFakeAddrs(testVIP)} // a crash left the VIP behind
		inst, err := Start(Config{Name: "lb1", Interface: "eth0", VRID: 51, Priority: 100, AdvertInterval: 100 * time.Millisecond,
			Preempt: true, VIPs: []netip.Prefix{testVIP}}, Options{
			Logger:        testLogger(t),
			LinkUp:        func(string) bool { return true },
			OpenTransport: func(Config) (Transport, error) { return b.open(lb1Addr), nil },
			Addresses:     r.addrs,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer inst.Stop(context.Background())
		time.Sleep(500 * time.Millisecond)
		if r.addrs.holds(testVIP.Addr()) {
			t.Error("a backup kept the stale VIP")
		}
	})
}

func TestInstanceUpdate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lb1, lb2 := startPair(t)

		// New VIP list on the master: the difference is added and removed.
		extra := netip.MustParsePrefix("10.0.0.101/24")
		cfg := Config{Name: "lb1-renamed", Interface: "eth0", VRID: 51, Priority: 150, AdvertInterval: 200 * time.Millisecond,
			Preempt: true, VIPs: []netip.Prefix{extra}, TrackBackends: []Tracker{{Name: "app", Weight: 100}}}
		if err := lb1.inst.Update(cfg); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		if lb1.addrs.holds(testVIP.Addr()) || !lb1.addrs.holds(extra.Addr()) {
			t.Error("VIPs not swapped on the master")
		}
		s := lb1.inst.Status()
		if s.Name != "lb1-renamed" || s.AdvertInterval != 200*time.Millisecond || s.State != "master" || s.Transitions != 2 {
			t.Errorf("status after update %+v", s)
		}
		time.Sleep(time.Second)
		if got := lb2.inst.Status().MasterAdvertInterval; got != 200*time.Millisecond {
			t.Errorf("backup learnt %v, want the new 200ms", got)
		}
		// Lowering the priority below the backup's hands over.
		cfg.Priority = 90
		if err := lb1.inst.Update(cfg); err != nil {
			t.Fatal(err)
		}
		waitState(t, lb2, Master, 2*time.Second)
		waitState(t, lb1, Backup, time.Second)
	})
}

func TestInstanceUpgradeHandover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &bus{}
		old := startRouter(t, b, "lb1", lb1Addr, 150, nil)
		lb2 := startRouter(t, b, "lb2", lb2Addr, 100, nil)
		defer lb2.stop()
		waitState(t, old, Master, time.Second)
		time.Sleep(300 * time.Millisecond)

		// The new process of a binary upgrade: same interface (the same addresses), same source.
		cfg := Config{Name: "lb1", Interface: "eth0", VRID: 51, Priority: 150, AdvertInterval: 100 * time.Millisecond,
			Preempt: true, VIPs: []netip.Prefix{testVIP}, GARPRepeat: 1}
		inst, err := Start(cfg, Options{
			Logger:        testLogger(t).With("router", "lb1-new"),
			LinkUp:        func(string) bool { return true },
			OpenTransport: func(Config) (Transport, error) { return b.open(lb1Addr), nil },
			Addresses:     old.addrs,
			Adopt:         true,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer inst.Stop(context.Background())
		time.Sleep(10 * time.Millisecond)
		if s := inst.Status(); s.State != "master" || !strings.Contains(s.LastReason, "adopted") {
			t.Fatalf("new process: %+v", s)
		}
		old.inst.Release(context.Background())
		for range 50 {
			time.Sleep(20 * time.Millisecond)
			if !old.addrs.holds(testVIP.Addr()) {
				t.Fatal("the VIP left the interface during the handover")
			}
			if st := lb2.inst.Status().State; st != "backup" {
				t.Fatalf("the peer noticed the handover: %s", st)
			}
		}
		if s := old.inst.Status(); s.LastReason != "handed over to the new process" {
			t.Errorf("old process status %+v", s)
		}
	})
}

func TestInstanceInvalidPackets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &bus{}
		lb1 := startRouter(t, b, "lb1", lb1Addr, 150, nil)
		defer lb1.stop()
		waitState(t, lb1, Master, time.Second)
		// A packet with a bad checksum claiming priority 254 must not unseat the master.
		a := advert(254, 100*time.Millisecond)
		bad, _ := a.Marshal(lb2Addr, MulticastGroup)
		bad[7] ^= 0xff
		lb1.port.rx <- wire{bad, lb2Addr}
		time.Sleep(100 * time.Millisecond)
		s := lb1.inst.Status()
		if s.State != "master" || s.InvalidReceived != 1 || s.AdvertsReceived != 0 {
			t.Errorf("status after a bad packet: %+v", s)
		}
	})
}

func TestInstanceOpenRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &bus{}
		var tries atomic.Int32
		inst, err := Start(Config{Name: "lb1", Interface: "eth9", VRID: 51, Priority: 100, AdvertInterval: 100 * time.Millisecond,
			VIPs: []netip.Prefix{testVIP}}, Options{
			Logger: testLogger(t),
			LinkUp: func(string) bool { return true },
			OpenTransport: func(Config) (Transport, error) {
				if tries.Add(1) < 3 {
					return nil, fmt.Errorf("no such interface")
				}
				return b.open(lb1Addr), nil
			},
			Addresses: newFakeAddrs(),
		})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond)
		if s := inst.Status(); s.State != "initialize" || !strings.Contains(s.LastError, "no such interface") {
			t.Errorf("status while the socket fails: %+v", s)
		}
		time.Sleep(2 * time.Second)
		if s := inst.Status(); s.State != "master" || s.LastError != "" {
			t.Errorf("status after the socket opened: %+v", s)
		}
		inst.Stop(context.Background())
	})
}

func TestNotify(t *testing.T) {
	// Real time and a real program: the notify script appends its arguments and environment.
	dir := t.TempDir()
	out := filepath.Join(dir, "calls")
	script := filepath.Join(dir, "notify.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$1 $2 $3 $WAAGE_VRRP_PREVIOUS_STATE $WAAGE_VRRP_PRIORITY\" >> "+out+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	b := &bus{}
	r := &router{addrs: newFakeAddrs()}
	inst, err := Start(Config{Name: "vi1", Interface: "eth0", VRID: 51, Priority: 120, AdvertInterval: 10 * time.Millisecond,
		Preempt: true, VIPs: []netip.Prefix{testVIP}, Notify: []string{script, "first"}, NotifyTimeout: 5 * time.Second}, Options{
		Logger:        testLogger(t),
		LinkUp:        func(string) bool { return true },
		OpenTransport: func(Config) (Transport, error) { return b.open(lb1Addr), nil },
		Addresses:     r.addrs,
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for inst.Status().State != "master" && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	inst.Stop(ctx) // waits for the notify calls
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want := "first backup vi1 initialize 120\nfirst master vi1 backup 120\nfirst initialize vi1 master 120\n"
	if string(data) != want {
		t.Errorf("notify calls:\n%s\nwant:\n%s", data, want)
	}
}

func TestNotifyTimeout(t *testing.T) {
	n := newNotifier(testLogger(t))
	start := time.Now()
	n.enqueue(notifyCall{cfg: Config{Name: "x", Notify: []string{"sh", "-c", "sleep 10"}, NotifyTimeout: 100 * time.Millisecond}, state: Master})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n.close(ctx)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("a notify program past its timeout held the notifier for %v", took)
	}
}
