package health

import (
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/waage/waage/internal/config"
)

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count file descriptors: %v", err)
	}
	return len(ents)
}

// TestProbersDoNotLeak runs many checks of every kind, passing and failing, and then expects
// the goroutines and file descriptors to be back where they were.
func TestProbersDoNotLeak(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(ts.Close)
	httpAddr := ts.Listener.Addr().String()
	udpEcho := serveUDP(t, func(b []byte) []byte { return append([]byte{}, b...) })
	udpSilent := serveUDP(t, func([]byte) []byte { return nil })
	tcpSilent := serveTCP(t, listenTCP(t), waitClosed)
	refused := freeAddr(t)

	type check struct {
		hc      config.HealthCheck
		addr    string
		timeout time.Duration
	}
	checks := []check{
		{config.HealthCheck{Type: "tcp"}, httpAddr, time.Second},
		{config.HealthCheck{Type: "tcp"}, refused, time.Second},
		{config.HealthCheck{Type: "tcp", Expect: "x"}, tcpSilent, 20 * time.Millisecond},
		{config.HealthCheck{Type: "http", ExpectBody: "ok"}, httpAddr, time.Second},
		{config.HealthCheck{Type: "http"}, tcpSilent, 20 * time.Millisecond},
		{config.HealthCheck{Type: "udp", Send: "x"}, udpEcho, time.Second},
		{config.HealthCheck{Type: "udp", Send: "x"}, udpSilent, 20 * time.Millisecond},
		{config.HealthCheck{Type: "exec", Command: []string{"sh", "-c", "echo x; exit 1"}}, "", time.Second},
		{config.HealthCheck{Type: "exec", Command: []string{"sleep", "10"}}, "", 20 * time.Millisecond},
		{config.HealthCheck{Type: "icmp"}, "127.0.0.1", time.Second},
	}
	probers := make([]Prober, len(checks))
	for i, c := range checks {
		p, err := NewProber(&c.hc)
		if err != nil {
			t.Fatal(err)
		}
		probers[i] = p
	}
	run := func() {
		for i, c := range checks {
			_, _ = probeOnce(probers[i], Target{Address: c.addr}, c.timeout)
		}
	}
	run() // warm up: lazily started runtime goroutines and files count as the baseline
	time.Sleep(50 * time.Millisecond)
	fds, goroutines := openFDs(t), runtime.NumGoroutine()
	for range 20 {
		run()
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		nf, ng := openFDs(t), runtime.NumGoroutine()
		if nf <= fds && ng <= goroutines {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("file descriptors %d -> %d, goroutines %d -> %d\n%s", fds, nf, goroutines, ng, buf)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
