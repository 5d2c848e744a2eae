package health

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/waage/waage/internal/backend"
	"github.com/waage/waage/internal/config"
)

// fakeTimers replaces time.AfterFunc so tests end ejections when they choose.
type fakeTimers struct {
	mu    sync.Mutex
	durs  []time.Duration
	funcs []func()
}

func (f *fakeTimers) after(d time.Duration, fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.durs = append(f.durs, d)
	f.funcs = append(f.funcs, fn)
}

func (f *fakeTimers) fire(i int) { f.funcs[i]() }

func newTestOutlier(t *testing.T, od config.OutlierDetection, n int) (*Outlier, []*backend.Server, *fakeTimers, *bytes.Buffer) {
	t.Helper()
	servers := make([]*backend.Server, n)
	for i := range servers {
		servers[i] = backend.NewServer("web", "s"+string(rune('1'+i)), "127.0.0.1:1")
	}
	var buf bytes.Buffer
	o := NewOutlier("web", od, servers, slog.New(slog.NewTextHandler(&buf, nil)))
	ft := &fakeTimers{}
	if o != nil {
		o.afterFunc = ft.after
	}
	return o, servers, ft, &buf
}

func intp(n int) *int { return &n }

func TestOutlierConsecutiveFailures(t *testing.T) {
	od := config.OutlierDetection{ConsecutiveFailures: intp(3), BaseEjectionTime: config.Duration(time.Second),
		MaxEjectionTime: config.Duration(2500 * time.Millisecond), MaxEjectionPercent: intp(50)}
	o, ss, ft, logs := newTestOutlier(t, od, 3)
	s := ss[0]
	boom := errors.New("connect: connection refused")
	o.Failure(s, boom)
	o.Failure(s, boom)
	o.Success(s) // a success in between starts the count again
	o.Failure(s, boom)
	o.Failure(s, boom)
	if s.Ejected() {
		t.Fatal("ejected after 2 consecutive failures")
	}
	o.Failure(s, boom)
	if !s.Ejected() || s.Usable() {
		t.Fatal("not ejected after 3 consecutive failures")
	}
	if !strings.Contains(logs.String(), "server web/s1 DOWN: ejected for 1s: 3 consecutive failures (last: connect: connection refused)") {
		t.Errorf("log: %s", logs)
	}
	ft.fire(0)
	if s.Ejected() {
		t.Fatal("still ejected after the ejection time")
	}
	if !strings.Contains(logs.String(), "server web/s1 UP: ejection ended after 1s") {
		t.Errorf("log: %s", logs)
	}
	// Each ejection in a row lasts longer, capped at the maximum.
	for range 3 {
		o.Failure(s, boom)
	}
	for range 3 {
		ft.fire(len(ft.funcs) - 1)
		for range 3 {
			o.Failure(s, boom)
		}
	}
	want := []time.Duration{time.Second, 2 * time.Second, 2500 * time.Millisecond, 2500 * time.Millisecond, 2500 * time.Millisecond}
	if len(ft.durs) != len(want) {
		t.Fatalf("ejections %v, want %v", ft.durs, want)
	}
	for i := range want {
		if ft.durs[i] != want[i] {
			t.Errorf("ejection %d lasted %s, want %s (all: %v)", i, ft.durs[i], want[i], ft.durs)
		}
	}
	// A stale timer (from an ejection that a later one replaced) changes nothing.
	ft.fire(1)
	if !s.Ejected() {
		t.Error("a stale timer ended the current ejection")
	}
}

func TestOutlierMaxEjectionPercent(t *testing.T) {
	for _, tc := range []struct {
		name      string
		servers   int
		percent   int
		wantEject int
	}{
		{"one server is never ejected", 1, 100, 0},
		{"at least one of two", 2, 10, 1},
		{"half of four", 4, 50, 2},
		{"all of three", 3, 100, 3},
		{"34% of three", 3, 34, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			od := config.OutlierDetection{ConsecutiveFailures: intp(1), BaseEjectionTime: config.Duration(time.Minute),
				MaxEjectionTime: config.Duration(time.Minute), MaxEjectionPercent: intp(tc.percent)}
			o, ss, _, _ := newTestOutlier(t, od, tc.servers)
			for _, s := range ss {
				o.Failure(s, errors.New("x"))
			}
			n := 0
			for _, s := range ss {
				if s.Ejected() {
					n++
				}
			}
			if n != tc.wantEject {
				t.Errorf("%d of %d ejected, want %d", n, tc.servers, tc.wantEject)
			}
		})
	}
}

func TestOutlier5xx(t *testing.T) {
	od := config.OutlierDetection{ConsecutiveFailures: intp(0), Consecutive5xx: 2, BaseEjectionTime: config.Duration(time.Second),
		MaxEjectionTime: config.Duration(time.Second), MaxEjectionPercent: intp(100)}
	o, ss, _, logs := newTestOutlier(t, od, 2)
	o.Status(ss[0], 503)
	o.Status(ss[0], 200)
	o.Status(ss[0], 500)
	if ss[0].Ejected() {
		t.Fatal("ejected although the 5xx answers were not consecutive")
	}
	o.Status(ss[0], 502)
	if !ss[0].Ejected() {
		t.Fatal("not ejected after 2 consecutive 5xx")
	}
	if !strings.Contains(logs.String(), "2 consecutive 5xx answers (last: 502)") {
		t.Errorf("log: %s", logs)
	}
	// 4xx answers are the client's business.
	for range 5 {
		o.Status(ss[1], 404)
	}
	if ss[1].Ejected() {
		t.Error("ejected on 404s")
	}
	// Off: nil, and the nil detector ignores everything.
	off := NewOutlier("web", config.OutlierDetection{ConsecutiveFailures: intp(0)}, ss, nil)
	if off != nil {
		t.Fatal("both triggers off, but a detector was made")
	}
	off.Failure(ss[1], errors.New("x"))
	off.Status(ss[1], 500)
	off.Success(ss[1])
}
