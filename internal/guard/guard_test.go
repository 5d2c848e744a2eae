package guard

import (
	"bytes"
	"log/slog"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/waage/waage/internal/config"
)

var t0 = time.Unix(1_800_000_000, 0)

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestLimiterTokenBucket(t *testing.T) {
	l := NewLimiter[string](10, time.Second, 20, 1000)
	allowed := 0
	for i := 0; i < 100; i++ {
		if ok, _ := l.Allow("a", t0); ok {
			allowed++
		}
	}
	if allowed != 20 {
		t.Fatalf("burst: %d allowed, want 20", allowed)
	}
	ok, wait := l.Allow("a", t0)
	if ok || wait != 100*time.Millisecond {
		t.Fatalf("empty bucket: ok %v, wait %v; want false, 100ms", ok, wait)
	}
	// Another key has its own bucket.
	if ok, _ := l.Allow("b", t0); !ok {
		t.Fatal("key b refused")
	}
	// 10 per second: after 1.05 s, ten more.
	allowed = 0
	for i := 0; i < 20; i++ {
		if ok, _ := l.Allow("a", t0.Add(1050*time.Millisecond)); ok {
			allowed++
		}
	}
	if allowed != 10 {
		t.Fatalf("after 1.05s: %d allowed, want 10", allowed)
	}
	// Per a minute: 1 per 6 s.
	m := NewLimiter[string](10, time.Minute, 1, 10)
	m.Allow("x", t0)
	if ok, wait := m.Allow("x", t0); ok || wait != 6*time.Second {
		t.Fatalf("per minute: ok %v, wait %v", ok, wait)
	}
}

// TestLimiterMemoryBounded: a million distinct keys leave at most the cap in the table, and the
// heap does not grow with them.
func TestLimiterMemoryBounded(t *testing.T) {
	const keys, capKeys = 1_000_000, 10_000
	l := NewLimiter[netip.Addr](5, time.Second, 5, capKeys)
	var before, after runtime.MemStats
	fill := func(from, to int) {
		for i := from; i < to; i++ {
			a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
			l.Allow(a, t0)
		}
	}
	fill(0, 2*capKeys) // the table is full from here on
	runtime.GC()
	runtime.ReadMemStats(&before)
	fill(2*capKeys, keys)
	runtime.GC()
	runtime.ReadMemStats(&after)
	if n := l.Len(); n > capKeys {
		t.Fatalf("%d keys held, cap %d", n, capKeys)
	}
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 1<<20 {
		t.Fatalf("heap grew by %d bytes over %d new keys", grew, keys-2*capKeys)
	}
	// The most recent key is still known: its bucket is empty after 5 more requests.
	const k = keys - 1
	last := netip.AddrFrom4([4]byte{10, k >> 16, k >> 8 & 0xff, k & 0xff})
	for i := 0; i < 4; i++ {
		l.Allow(last, t0)
	}
	if ok, _ := l.Allow(last, t0); ok {
		t.Fatal("the most recent key was forgotten")
	}
}

func TestLimiterConcurrent(t *testing.T) {
	l := NewLimiter[int](1000, time.Second, 100, 64*shards) // room for the 3 keys in any shard
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 0
			for i := 0; i < 1000; i++ {
				if ok, _ := l.Allow(i%3, t0); ok {
					n++
				}
			}
			mu.Lock()
			total += n
			mu.Unlock()
		}()
	}
	wg.Wait()
	if total != 300 {
		t.Fatalf("%d allowed across 3 keys of burst 100, want 300", total)
	}
}

func TestPrefixSet(t *testing.T) {
	s := NewPrefixSet([]netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.7/32"),
		netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("::ffff:198.51.100.0/120"),
	})
	for a, want := range map[string]bool{
		"10.1.2.3": true, "11.0.0.1": false, "192.0.2.7": true, "192.0.2.8": false,
		"2001:db8::1": true, "2001:db9::1": false, "198.51.100.9": true, "::ffff:10.9.9.9": true,
		"::ffff:11.0.0.1": false,
	} {
		if got := s.Contains(addr(a)); got != want {
			t.Errorf("Contains(%s) = %v, want %v", a, got, want)
		}
	}
	var empty *PrefixSet
	if empty.Contains(addr("10.0.0.1")) || !empty.Empty() {
		t.Error("nil set")
	}
}

func TestDenyListTTL(t *testing.T) {
	d := NewDenyList()
	d.Add(netip.MustParsePrefix("198.51.100.0/24"), time.Minute, t0)
	d.Add(netip.MustParsePrefix("203.0.113.5/32"), 0, t0)
	if !d.Denied(addr("198.51.100.77"), t0.Add(59*time.Second)) || !d.Denied(addr("203.0.113.5"), t0) {
		t.Fatal("not denied")
	}
	if d.Denied(addr("198.51.100.77"), t0.Add(61*time.Second)) {
		t.Fatal("denied after its ttl")
	}
	if es := d.Entries(t0.Add(61 * time.Second)); len(es) != 1 || es[0].Prefix.String() != "203.0.113.5/32" || !es[0].Expires.IsZero() {
		t.Fatalf("entries: %+v", es)
	}
	if !d.Remove(netip.MustParsePrefix("203.0.113.5/32"), t0) || d.Denied(addr("203.0.113.5"), t0) {
		t.Fatal("Remove")
	}
	if d.Remove(netip.MustParsePrefix("203.0.113.5/32"), t0) {
		t.Fatal("Remove of an absent prefix reported true")
	}
}

func newGuard(t *testing.T, l config.Limits, a config.Access) (*Guard, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	g := New("web", NewDenyList(), slog.New(slog.NewTextHandler(&buf, nil)))
	if err := g.Update(l, a); err != nil {
		t.Fatal(err)
	}
	return g, &buf
}

func TestAdmitAccessAndPerSourceLimits(t *testing.T) {
	g, logs := newGuard(t, config.Limits{MaxConnectionsPerSource: 2, ConnectionRatePerSource: 3},
		config.Access{Allow: []string{"127.0.0.0/8"}, Deny: []string{"127.0.0.66"}})
	if _, r := g.Admit(addr("10.0.0.1"), t0); r != Deny {
		t.Fatalf("outside allow: %v", r)
	}
	if _, r := g.Admit(addr("127.0.0.66"), t0); r != Deny {
		t.Fatalf("in deny: %v", r)
	}
	a := addr("127.0.0.50")
	t1, r1 := g.Admit(a, t0)
	t2, r2 := g.Admit(a, t0)
	if r1 != Admitted || r2 != Admitted {
		t.Fatal(r1, r2)
	}
	if _, r := g.Admit(a, t0); r != ConnLimit {
		t.Fatalf("third open connection: %v, want conn_limit", r)
	}
	t1.Done()
	// The third token of the second is gone; the fourth connection in one second is over the rate.
	if _, r := g.Admit(a, t0); r != ConnRate {
		t.Fatalf("fourth connection in a second: %v, want conn_rate", r)
	}
	t3, r := g.Admit(a, t0.Add(400*time.Millisecond))
	if r != Admitted {
		t.Fatalf("after a token came back: %v", r)
	}
	t2.Done()
	t3.Done()
	if g.Refused[Deny].Load() != 2 || g.Refused[ConnLimit].Load() != 1 || g.Refused[ConnRate].Load() != 1 {
		t.Fatalf("counters: deny %d conn_limit %d conn_rate %d", g.Refused[Deny].Load(), g.Refused[ConnLimit].Load(), g.Refused[ConnRate].Load())
	}
	// One line per reason within logEvery, however many refusals.
	if n := strings.Count(logs.String(), "reason=deny"); n != 1 {
		t.Fatalf("%d deny lines:\n%s", n, logs)
	}
	// The live deny list refuses too.
	g.dyn.Add(netip.MustParsePrefix("127.0.0.0/24"), time.Minute, t0)
	if _, r := g.Admit(a, t0.Add(time.Second)); r != Deny {
		t.Fatalf("live deny: %v", r)
	}
}

func TestSlotBackpressure(t *testing.T) {
	g, _ := newGuard(t, config.Limits{MaxConnections: 2}, config.Access{})
	stop := make(chan struct{})
	r1, r2 := g.Slot(stop), g.Slot(stop)
	got := make(chan func(), 1)
	go func() { got <- g.Slot(stop) }()
	select {
	case <-got:
		t.Fatal("a third slot was given while two are taken")
	case <-time.After(50 * time.Millisecond):
	}
	r1()
	select {
	case r3 := <-got:
		r3()
	case <-time.After(time.Second):
		t.Fatal("the waiting slot was not given after a release")
	}
	r2()
	go func() { got <- g.Slot(stop) }()
	(<-got)()
	g.Slot(stop)
	g.Slot(stop)
	go func() { got <- g.Slot(stop) }()
	close(stop)
	if r := <-got; r != nil {
		t.Fatal("Slot after stop returned a release function")
	}
}

func TestPacketRate(t *testing.T) {
	g, _ := newGuard(t, config.Limits{PacketRatePerSource: 100}, config.Access{Deny: []string{"127.0.0.9"}})
	n := 0
	for i := 0; i < 500; i++ {
		if g.Packet(addr("127.0.0.50"), t0) {
			n++
		}
	}
	if n != 100 || g.Refused[PacketRate].Load() != 400 {
		t.Fatalf("%d of 500 datagrams passed, %d refused; want 100, 400", n, g.Refused[PacketRate].Load())
	}
	if !g.Packet(addr("127.0.0.51"), t0) || g.Packet(addr("127.0.0.9"), t0) {
		t.Fatal("another source or the deny list")
	}
}

func TestSourcesTopAndEviction(t *testing.T) {
	s := NewSources(shards) // one idle entry per shard
	now := t0.UnixNano()
	busy, _ := s.admit(addr("127.0.0.10"), now, 0, 0)
	for i := 0; i < 50; i++ {
		busy.Requests.Add(1)
	}
	for i := 0; i < 5000; i++ {
		e, _ := s.admit(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), now, 0, 0)
		s.release(e)
	}
	if n := s.Len(); n > 2*shards+1 {
		t.Fatalf("%d entries held for 5000 idle sources, cap %d", n, shards)
	}
	s.Sample(t0.Add(2 * time.Second))
	top := s.Top(3)
	if top[0].Addr != addr("127.0.0.10") || top[0].Open != 1 || top[0].RequestRate != 25 {
		t.Fatalf("top: %+v", top)
	}
	s.release(busy)
}
