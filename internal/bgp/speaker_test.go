package bgp

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitFor polls cond until it holds or 10s passed.
func waitFor(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// TestSpeakerLoopback runs two speakers over loopback: one announces as waage does, the other
// (passive, listening) plays the router and counts what it receives. Announce, tracking, drain,
// a reload that adds a prefix without a new session, and a stop that closes the session.
func TestSpeakerLoopback(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	lo := netip.MustParseAddr("127.0.0.1")
	port := freePort(t)
	router, err := Start(Config{
		LocalAS: 65000, RouterID: netip.MustParseAddr("10.0.0.1"), ListenPort: port,
		Peers: []Peer{{Address: lo, AS: 65001, Port: 179, HoldTime: 3 * time.Second, Keepalive: time.Second, Passive: true}},
	}, Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer router.Stop()

	var healthy atomic.Bool
	healthy.Store(true)
	vip := netip.MustParsePrefix("10.250.100.1/32")
	cfg := Config{
		LocalAS: 65001, RouterID: netip.MustParseAddr("10.0.0.2"),
		Peers:    []Peer{{Address: lo, AS: 65000, Port: uint16(port), HoldTime: 3 * time.Second, Keepalive: time.Second}},
		Announce: []netip.Prefix{vip}, TrackBackends: []string{"web"},
	}
	lb, err := Start(cfg, Options{Logger: quiet, BackendHealthy: func(string) bool { return healthy.Load() }, Poll: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Stop()

	received := func() uint64 {
		st := router.Status()
		if len(st.Peers) != 1 || st.Peers[0].State != "established" {
			return 1 << 63
		}
		return st.Peers[0].Received
	}
	if st := lb.Status(); st.Announcing || st.Reason != ReasonNotReady {
		t.Errorf("before SetServing: %v %q", st.Announcing, st.Reason)
	}
	lb.SetServing(true)
	took := waitFor(t, "the session and the route", func() bool { return received() == 1 })
	t.Logf("session up and route received %s after the start", took.Round(time.Millisecond))
	st := lb.Status()
	if !st.Announcing || st.Reason != ReasonServing || len(st.Prefixes) != 1 || !st.Prefixes[0].Announced ||
		len(st.Peers) != 1 || st.Peers[0].State != "established" || st.Peers[0].Advertised != 1 {
		t.Errorf("status: %+v", st)
	}
	since := st.Peers[0].Since

	healthy.Store(false)
	waitFor(t, "the withdrawal when the tracked backend fails", func() bool { return received() == 0 })
	if st := lb.Status(); st.Announcing || st.Reason != "backend web has no healthy server" || st.Trackers[0].Healthy {
		t.Errorf("tracking: %+v", st)
	}
	healthy.Store(true)
	waitFor(t, "the route when the backend is back", func() bool { return received() == 1 })

	lb.SetDrained(true)
	waitFor(t, "the withdrawal on drain", func() bool { return received() == 0 })
	if st := lb.Status(); !st.Drained || st.Reason != ReasonDrained {
		t.Errorf("drained: %+v", st)
	}
	lb.SetDrained(false)
	waitFor(t, "the route on undrain", func() bool { return received() == 1 })

	cfg.Announce = append(cfg.Announce, netip.MustParsePrefix("10.250.100.2/32"))
	if err := lb.Update(cfg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the added prefix", func() bool { return received() == 2 })
	if st := lb.Status(); !st.Peers[0].Since.Equal(since) {
		t.Errorf("the update restarted the session: up since %s, before %s", st.Peers[0].Since, since)
	}
	cfg.Announce = cfg.Announce[1:]
	lb.Update(cfg)
	waitFor(t, "the removed prefix's withdrawal", func() bool { return received() == 1 })

	lb.Stop()
	waitFor(t, "the session to close", func() bool {
		st := router.Status()
		return len(st.Peers) == 1 && st.Peers[0].State != "established"
	})
	if st := lb.Status(); st.Announcing || st.Reason != ReasonStopping {
		t.Errorf("after Stop: %+v", st)
	}
}
