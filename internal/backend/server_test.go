package backend

import (
	"math"
	"sync"
	"testing"
	"time"
)

func TestParseState(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    State
		wantErr bool
	}{
		{name: "empty is ready", in: "", want: Ready},
		{name: "ready", in: "ready", want: Ready},
		{name: "drain", in: "drain", want: Drain},
		{name: "maintenance", in: "maintenance", want: Maintenance},
		{name: "unknown", in: "Ready", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseState(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseState(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Errorf("ParseState(%q) = %v, want %v", tt.in, got, tt.want)
			}
			if err == nil && tt.in != "" && got.String() != tt.in {
				t.Errorf("String() = %q, want the config spelling %q", got.String(), tt.in)
			}
		})
	}
	if got := State(7).String(); got != "state(7)" {
		t.Errorf("State(7).String() = %q", got)
	}
}

func TestUsable(t *testing.T) {
	tests := []struct {
		name       string
		setup      func(*Server)
		usable     bool
		pinnedOK   bool
		wantWeight int
	}{
		{name: "new server", setup: func(*Server) {}, usable: true, pinnedOK: true, wantWeight: 1},
		{name: "unhealthy", setup: func(s *Server) { s.SetHealthy(false) }, usable: false, pinnedOK: false, wantWeight: 1},
		{name: "healthy again", setup: func(s *Server) { s.SetHealthy(false); s.SetHealthy(true) }, usable: true, pinnedOK: true, wantWeight: 1},
		{name: "drain keeps pinned", setup: func(s *Server) { s.SetState(Drain) }, usable: false, pinnedOK: true, wantWeight: 1},
		{name: "maintenance", setup: func(s *Server) { s.SetState(Maintenance) }, usable: false, pinnedOK: false, wantWeight: 1},
		{name: "weight 0", setup: func(s *Server) { s.SetWeight(0) }, usable: false, pinnedOK: true, wantWeight: 0},
		{name: "negative weight clamps to 0", setup: func(s *Server) { s.SetWeight(-5) }, usable: false, pinnedOK: true, wantWeight: 0},
		{name: "huge weight clamps, does not wrap", setup: func(s *Server) { s.SetWeight(1 << 32) }, usable: true, pinnedOK: true, wantWeight: math.MaxInt32},
		{name: "weight 2^31 clamps, does not go negative", setup: func(s *Server) { s.SetWeight(1 << 31) }, usable: true, pinnedOK: true, wantWeight: math.MaxInt32},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewServer("web", "s1", "127.0.0.1:1")
			tt.setup(s)
			if got := s.Usable(); got != tt.usable {
				t.Errorf("Usable() = %v, want %v", got, tt.usable)
			}
			if got := s.AcceptsPinned(); got != tt.pinnedOK {
				t.Errorf("AcceptsPinned() = %v, want %v", got, tt.pinnedOK)
			}
			if got := s.Weight(); got != tt.wantWeight {
				t.Errorf("Weight() = %d, want %d", got, tt.wantWeight)
			}
		})
	}
}

func TestServerString(t *testing.T) {
	if got := NewServer("web", "s1", "x").String(); got != "web/s1" {
		t.Errorf("String() = %q", got)
	}
}

func TestInFlightConcurrent(t *testing.T) {
	s := NewServer("web", "s1", "x")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				s.Acquire()
				s.Release()
			}
		})
	}
	wg.Wait()
	if got := s.InFlight(); got != 0 {
		t.Errorf("InFlight() = %d after balanced Acquire/Release, want 0", got)
	}
	if got := s.Requests.Load(); got != 8000 {
		t.Errorf("Requests = %d, want 8000", got)
	}
}

func TestObserveLatency(t *testing.T) {
	tests := []struct {
		name    string
		samples []time.Duration
		want    time.Duration
	}{
		{name: "no sample", want: 0},
		{name: "first sample is taken as is", samples: []time.Duration{800}, want: 800},
		{name: "second sample moves by 1/8", samples: []time.Duration{800, 1600}, want: 900},
		{name: "downward", samples: []time.Duration{1600, 800}, want: 1500},
		{name: "zero sample counts as 1ns, not as no sample", samples: []time.Duration{0}, want: 1},
		{name: "negative sample counts as 1ns", samples: []time.Duration{-5}, want: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewServer("web", "s1", "x")
			for _, d := range tt.samples {
				s.ObserveLatency(d)
			}
			if got := s.Latency(); got != tt.want {
				t.Errorf("Latency() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestObserveLatencyConverges(t *testing.T) {
	s := NewServer("web", "s1", "x")
	s.ObserveLatency(time.Second)
	for range 200 {
		s.ObserveLatency(time.Millisecond)
	}
	if got := s.Latency(); got < time.Millisecond || got > time.Millisecond+time.Microsecond {
		t.Errorf("Latency() = %v after 200 samples of 1ms, want about 1ms", got)
	}
}

func TestObserveLatencyConcurrent(t *testing.T) {
	s := NewServer("web", "s1", "x")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				s.ObserveLatency(time.Millisecond)
			}
		})
	}
	wg.Wait()
	if got := s.Latency(); got != time.Millisecond {
		t.Errorf("Latency() = %v, want 1ms", got)
	}
}

func TestRegistry(t *testing.T) {
	r := NewRegistry()
	k1 := Key{Backend: "web", Name: "s1", Address: "127.0.0.1:1"}
	k2 := Key{Backend: "web", Name: "s2", Address: "127.0.0.1:2"}

	s1, fresh := r.Server(k1)
	if !fresh || s1.Key != k1 || !s1.Usable() || s1.Weight() != 1 {
		t.Fatalf("first Server(k1) = %+v, fresh %v; want a fresh, usable, weight-1 server", s1.Key, fresh)
	}
	s1.SetWeight(5)
	s1.Acquire()
	again, fresh := r.Server(k1)
	if fresh || again != s1 {
		t.Fatalf("second Server(k1) returned fresh=%v, same=%v; want the same server", fresh, again == s1)
	}
	if again.Weight() != 5 || again.InFlight() != 1 {
		t.Errorf("state did not carry over: weight %d, in-flight %d", again.Weight(), again.InFlight())
	}
	// A changed address is a different identity.
	moved, fresh := r.Server(Key{Backend: "web", Name: "s1", Address: "127.0.0.1:9"})
	if !fresh || moved == s1 {
		t.Errorf("a new address must give a new server")
	}

	s2, _ := r.Server(k2)
	r.Retain(map[Key]bool{k2: true})
	if got, fresh := r.Server(k2); fresh || got != s2 {
		t.Errorf("Retain dropped a kept server")
	}
	if got, fresh := r.Server(k1); !fresh || got == s1 {
		t.Errorf("Retain kept a dropped server")
	}
}

func TestRegistryConcurrent(t *testing.T) {
	r := NewRegistry()
	k := Key{Backend: "web", Name: "s1", Address: "a"}
	got := make([]*Server, 8)
	var wg sync.WaitGroup
	for i := range got {
		wg.Go(func() { got[i], _ = r.Server(k) })
	}
	wg.Wait()
	for i, s := range got {
		if s != got[0] {
			t.Fatalf("goroutine %d got a different server for the same key", i)
		}
	}
}

func TestStateConcurrent(t *testing.T) {
	s := NewServer("web", "s1", "x")
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			s.SetHealthy(i%2 == 0)
			s.SetState(State(i % 3))
			s.SetWeight(i % 4)
		}
	})
	for range 4 {
		wg.Go(func() {
			for range 5000 {
				_ = s.Usable()
				_ = s.AcceptsPinned()
				_ = s.Weight()
			}
		})
	}
	time.Sleep(10 * time.Millisecond)
	close(stop)
	wg.Wait()
}

func TestRetryBudget(t *testing.T) {
	for _, tc := range []struct {
		name         string
		percent, min int
		reqs         int
		wantRetries  int
	}{
		{name: "min only", percent: 0, min: 1, reqs: 0, wantRetries: 10},
		{name: "percent of requests", percent: 20, min: 0, reqs: 100, wantRetries: 20},
		{name: "both", percent: 10, min: 2, reqs: 50, wantRetries: 25},
		{name: "none", percent: 0, min: 0, reqs: 1000, wantRetries: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := NewRetryBudget(tc.percent, tc.min)
			const now = 1_000_000
			for range tc.reqs {
				b.Request(now)
			}
			n := 0
			for b.TryRetry(now) {
				n++
				if n > 10000 {
					t.Fatal("unbounded")
				}
			}
			if n != tc.wantRetries {
				t.Errorf("%d retries allowed, want %d", n, tc.wantRetries)
			}
			// Ten seconds later the window has forgotten them.
			if tc.min > 0 && !b.TryRetry(now+10) {
				t.Errorf("no retry allowed after the window moved on")
			}
		})
	}
	var nilBudget *RetryBudget
	nilBudget.Request(1)
	if !nilBudget.TryRetry(1) {
		t.Error("a nil budget refused a retry")
	}
}

func TestSlowStartRamp(t *testing.T) {
	s := NewServer("b", "s", "127.0.0.1:1")
	s.SetWeight(3)
	if w := s.EffectiveWeight(); w != 3*WeightScale {
		t.Fatalf("effective weight %d, want %d", w, 3*WeightScale)
	}
	s.SetSlowStart(400 * time.Millisecond)
	// Health coming back starts a ramp; the first verdict of a healthy server does not.
	if s.SetHealthy(true) || s.Ramping() {
		t.Fatal("a server that was never down ramps")
	}
	s.SetHealthy(false)
	if !s.SetHealthy(true) || !s.Ramping() {
		t.Fatal("no ramp after coming back")
	}
	first := s.EffectiveWeight()
	if first < 1 || first > 3*WeightScale/10 {
		t.Errorf("effective weight %d right after coming back, want a small share of %d", first, 3*WeightScale)
	}
	time.Sleep(200 * time.Millisecond)
	mid := s.EffectiveWeight()
	if mid <= first || mid >= 3*WeightScale {
		t.Errorf("effective weight %d halfway, want between %d and %d", mid, first, 3*WeightScale)
	}
	time.Sleep(250 * time.Millisecond)
	if w := s.EffectiveWeight(); w != 3*WeightScale || s.Ramping() {
		t.Errorf("effective weight %d after the ramp, want %d", w, 3*WeightScale)
	}
	// Leaving maintenance ramps too; an ejection ending does as well.
	s.SetState(Maintenance)
	s.SetState(Ready)
	if !s.Ramping() {
		t.Error("no ramp after maintenance")
	}
	s.SetSlowStart(0)
	if s.Ramping() {
		t.Error("turning slow start off did not end the ramp")
	}
	s.SetSlowStart(time.Second)
	s.SetEjected(true)
	if s.Usable() || s.AcceptsPinned() {
		t.Error("an ejected server is usable")
	}
	s.SetEjected(false)
	if !s.Ramping() || !s.Usable() {
		t.Error("no ramp after an ejection ended")
	}
	// Weight 1 still ramps in steps thanks to the scale.
	s1 := NewServer("b", "one", "127.0.0.1:2")
	s1.SetSlowStart(time.Hour)
	s1.SetState(Maintenance)
	s1.SetState(Ready)
	if w := s1.EffectiveWeight(); w < 1 || w >= WeightScale {
		t.Errorf("weight-1 server starts its ramp at %d, want 1..%d", w, WeightScale-1)
	}
}
