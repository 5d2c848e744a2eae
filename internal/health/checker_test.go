package health

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/waage/waage/internal/backend"
	"github.com/waage/waage/internal/config"
)

// scripted is a Prober whose verdict the test sets.
type scripted struct {
	fail  atomic.Bool
	calls atomic.Int64
}

func (p *scripted) Probe(ctx context.Context, t Target) error {
	p.calls.Add(1)
	if p.fail.Load() {
		return errors.New("scripted failure")
	}
	return nil
}

// syncBuf is a bytes.Buffer safe for the checker goroutines' log writes.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestCheckerRiseFall(t *testing.T) {
	s := backend.NewServer("web", "s1", "127.0.0.1:80")
	hc := &config.HealthCheck{Type: "tcp", Interval: config.Duration(20 * time.Millisecond),
		Timeout: config.Duration(10 * time.Millisecond), Rise: 2, Fall: 3, Initial: "up"}
	var logs syncBuf
	p := &scripted{}
	c := newChecker(s, hc, p, slog.New(slog.NewTextHandler(&logs, nil)))
	ctx := context.Background()
	step := func(fail bool) {
		p.fail.Store(fail)
		c.check(ctx)
	}
	step(true)
	step(true)
	if !s.Healthy() {
		t.Fatal("DOWN after 2 failures with fall 3")
	}
	step(false) // a pass resets the failure count
	step(true)
	step(true)
	if !s.Healthy() {
		t.Fatal("DOWN although the failures were not consecutive")
	}
	step(true)
	if s.Healthy() {
		t.Fatal("still UP after 3 consecutive failures")
	}
	step(false)
	if s.Healthy() {
		t.Fatal("UP after 1 pass with rise 2")
	}
	step(false)
	if !s.Healthy() {
		t.Fatal("still DOWN after 2 passes")
	}
	out := logs.String()
	for _, want := range []string{
		"server web/s1 DOWN: tcp check: scripted failure, 3/3 failed",
		"server web/s1 UP: tcp check passed, 2/2 succeeded",
	} {
		if strings.Count(out, want) != 1 {
			t.Errorf("want one %q in the log:\n%s", want, out)
		}
	}
	if s.Checks.Load() != 8 || s.LastCheck() == nil || s.LastCheck().Err != "" {
		t.Errorf("checks %d, last %+v", s.Checks.Load(), s.LastCheck())
	}
}

func TestCheckTarget(t *testing.T) {
	for _, tc := range []struct {
		name, server string
		hc           config.HealthCheck
		want         string
	}{
		{"server address", "10.0.0.1:80", config.HealthCheck{}, "10.0.0.1:80"},
		{"port", "10.0.0.1:80", config.HealthCheck{Port: 8081}, "10.0.0.1:8081"},
		{"address host", "10.0.0.1:80", config.HealthCheck{Address: "10.0.0.9"}, "10.0.0.9:80"},
		{"address host:port", "10.0.0.1:80", config.HealthCheck{Address: "10.0.0.9:9"}, "10.0.0.9:9"},
		{"address and port", "10.0.0.1:80", config.HealthCheck{Address: "h.example", Port: 7}, "h.example:7"},
		{"ipv6", "[2001:db8::1]:80", config.HealthCheck{Port: 81}, "[2001:db8::1]:81"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := backend.NewServer("b", "s", tc.server)
			if got := CheckTarget(s, &tc.hc).Address; got != tc.want {
				t.Errorf("target %q, want %q", got, tc.want)
			}
		})
	}
}

func TestManagerSync(t *testing.T) {
	var logs syncBuf
	m := NewManager(slog.New(slog.NewTextHandler(&logs, nil)))
	defer m.Stop()
	s := backend.NewServer("web", "s1", "127.0.0.1:1") // nothing listens on port 1
	hc := &config.HealthCheck{Type: "tcp", Interval: config.Duration(20 * time.Millisecond),
		Timeout: config.Duration(50 * time.Millisecond), Rise: 1, Fall: 1, Initial: "up"}
	if err := m.Sync([]Spec{{Server: s, Check: hc}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for s.Healthy() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if s.Healthy() {
		t.Fatal("a server refusing connections stayed UP")
	}
	// The same spec again keeps the running check (and its state).
	m.mu.Lock()
	r := m.runs[s]
	m.mu.Unlock()
	same := *hc
	if err := m.Sync([]Spec{{Server: s, Check: &same}}); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	kept := m.runs[s] == r
	m.mu.Unlock()
	if !kept {
		t.Error("an unchanged check was restarted")
	}
	// Removing the check stops it and gives the server back.
	if err := m.Sync([]Spec{{Server: s}}); err != nil {
		t.Fatal(err)
	}
	if !s.Healthy() {
		t.Error("server still DOWN after its check was removed")
	}
	if !strings.Contains(logs.String(), "server web/s1 UP: health check removed") {
		t.Errorf("log: %s", logs.String())
	}
	// initial: down holds a new server out until it passes.
	s2 := backend.NewServer("web", "s2", "127.0.0.1:1")
	down := *hc
	down.Initial = "down"
	if err := m.Sync([]Spec{{Server: s2, Check: &down}}); err != nil {
		t.Fatal(err)
	}
	if s2.Healthy() {
		t.Error("initial: down, but the new server is UP before any check")
	}
}
