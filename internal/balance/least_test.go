package balance

import (
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/waage/waage/internal/backend"
)

// setInFlight acquires s n times, as n requests in progress would.
func setInFlight(s *backend.Server, n int) {
	for range n {
		s.Acquire()
	}
}

func TestLeastConnectionsDeterministic(t *testing.T) {
	tests := []struct {
		name     string
		weights  []int
		inflight []int
		want     int
	}{
		{name: "fewest in flight", weights: []int{1, 1, 1}, inflight: []int{5, 0, 2}, want: 1},
		{name: "fewest in flight, last", weights: []int{1, 1, 1}, inflight: []int{5, 3, 2}, want: 2},
		// (1+1)/1 = 2 against (4+1)/4 = 1.25: the heavier server takes more connections.
		{name: "weight respected", weights: []int{1, 4}, inflight: []int{1, 4}, want: 1},
		// (0+1)/1 = 1 against (2+1)/4 = 0.75.
		{name: "busy heavy server beats idle light one", weights: []int{1, 4}, inflight: []int{0, 2}, want: 1},
		// (0+1)/1 = 1 against (4+1)/4 = 1.25.
		{name: "idle light server beats loaded heavy one", weights: []int{1, 4}, inflight: []int{0, 4}, want: 0},
		{name: "idle heavy server beats idle light one", weights: []int{1, 3}, inflight: []int{0, 0}, want: 1},
		{name: "huge weights", weights: []int{1 << 30, 1<<30 - 1}, inflight: []int{1 << 10, 1 << 10}, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ss := newServers(tt.weights...)
			for i, n := range tt.inflight {
				setInFlight(ss[i], n)
			}
			b := mustNew(t, LeastConnections, ss, Options{})
			for range 5 {
				if got := b.Pick(0, nil); got != ss[tt.want] {
					t.Fatalf("Pick = %v, want %v", got, ss[tt.want])
				}
			}
		})
	}
}

// TestLeastTies checks that ties are shared evenly, including when only some servers tie (a
// rotating start index alone would give one of two tied servers twice the other's share).
func TestLeastTies(t *testing.T) {
	tests := []struct {
		name     string
		weights  []int
		inflight []int
		want     []int
	}{
		{name: "all tie", weights: []int{1, 1, 1}, inflight: []int{0, 0, 0}, want: []int{100, 100, 100}},
		{name: "first two tie", weights: []int{1, 1, 1}, inflight: []int{0, 0, 5}, want: []int{150, 150, 0}},
		{name: "outer two tie", weights: []int{1, 1, 1}, inflight: []int{2, 3, 2}, want: []int{150, 0, 150}},
		{name: "weighted tie", weights: []int{1, 2, 1}, inflight: []int{1, 3, 4}, want: []int{150, 150, 0}},
	}
	for _, alg := range []string{LeastConnections, LeastResponseTime} {
		for _, tt := range tests {
			t.Run(alg+"/"+tt.name, func(t *testing.T) {
				ss := newServers(tt.weights...)
				for i, n := range tt.inflight {
					setInFlight(ss[i], n)
				}
				b := mustNew(t, alg, ss, Options{})
				got := counts(b, 300, nil)
				for i, s := range ss {
					if got[s] != tt.want[i] {
						t.Fatalf("picks = %v, want %v", names(got), tt.want)
					}
				}
			})
		}
	}
}

// TestLeastConnectionsWeightedLoad holds every picked connection open: in-flight counts then
// follow the weights exactly.
func TestLeastConnectionsWeightedLoad(t *testing.T) {
	ss := newServers(1, 2, 3)
	b := mustNew(t, LeastConnections, ss, Options{})
	for range 600 {
		b.Pick(0, nil).Acquire()
	}
	for i, want := range []int64{100, 200, 300} {
		if got := ss[i].InFlight(); got < want-1 || got > want+1 {
			t.Errorf("%s holds %d connections, want %d±1", ss[i].Name, got, want)
		}
	}
}

// TestLeastSlowAndFast runs clients against one fast and two slow servers (each request on a
// slow server takes 10x longer). Least connections must notice the slow servers' pile-up and
// send the fast server clearly more; round robin, which cannot tell, is the control. Time is
// synctest's fake clock, so the run is exact and instant however loaded the machine is.
func TestLeastSlowAndFast(t *testing.T) {
	const (
		clients = 12
		fast    = time.Millisecond
		slow    = 10 * time.Millisecond
		run     = 2 * time.Second
	)
	simulate := func(t *testing.T, alg string) map[*backend.Server]int {
		var got map[*backend.Server]int
		synctest.Test(t, func(t *testing.T) {
			ss := newServers(1, 1, 1)
			hold := map[*backend.Server]time.Duration{ss[0]: slow, ss[1]: fast, ss[2]: slow}
			var mu sync.Mutex
			rng := rand.New(rand.NewPCG(1, 2))
			b := mustNew(t, alg, ss, Options{Rand: func() uint64 {
				mu.Lock()
				defer mu.Unlock()
				return rng.Uint64()
			}})
			got = make(map[*backend.Server]int)
			deadline := time.Now().Add(run)
			var wg sync.WaitGroup
			for range clients {
				wg.Go(func() {
					for time.Now().Before(deadline) {
						s := b.Pick(0, nil)
						s.Acquire()
						mu.Lock()
						got[s]++
						mu.Unlock()
						time.Sleep(hold[s])
						s.ObserveLatency(hold[s])
						s.Release()
					}
				})
			}
			wg.Wait()
		})
		return got
	}
	rr := simulate(t, RoundRobin)
	t.Logf("round_robin: %v", names(rr))
	for _, tt := range []struct {
		alg      string
		minRatio int
	}{
		// Measured: 10x, ~100x (it also knows the latency), ~3.7x (two random choices see
		// only part of the picture).
		{alg: LeastConnections, minRatio: 5},
		{alg: LeastResponseTime, minRatio: 5},
		{alg: RandomTwoChoices, minRatio: 2},
	} {
		t.Run(tt.alg, func(t *testing.T) {
			alg := tt.alg
			got := simulate(t, alg)
			t.Logf("%s: %v", alg, names(got))
			var fastS *backend.Server
			for s := range got {
				if s.Name == "s2" {
					fastS = s
				}
			}
			for s, n := range got {
				if s != fastS && got[fastS] < tt.minRatio*n {
					t.Errorf("fast server got %d picks, slow %s %d: want at least %dx", got[fastS], s.Name, n, tt.minRatio)
				}
			}
		})
	}
	// The control: round robin gives every server the same number of turns, so the slow servers
	// set the pace and the fast server gets no more than its third.
	for s, n := range rr {
		for s2, n2 := range rr {
			if n > n2+clients {
				t.Errorf("round_robin: %s %d vs %s %d, want equal turns", s.Name, n, s2.Name, n2)
			}
		}
	}
}

func TestLeastResponseTime(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name     string
		weights  []int
		latency  []time.Duration
		inflight []int
		want     int
	}{
		{name: "lowest latency", weights: []int{1, 1, 1}, latency: []time.Duration{10 * ms, ms, 5 * ms}, want: 1},
		// 1ms * (9+1) = 10ms against 5ms * (0+1) = 5ms.
		{name: "in-flight spreads load off the fastest", weights: []int{1, 1}, latency: []time.Duration{ms, 5 * ms}, inflight: []int{9, 0}, want: 1},
		// 1ms * 3 = 3ms against 5ms * 1 = 5ms.
		{name: "fastest while not too loaded", weights: []int{1, 1}, latency: []time.Duration{ms, 5 * ms}, inflight: []int{2, 0}, want: 0},
		{name: "no sample yet is tried first", weights: []int{1, 1, 1}, latency: []time.Duration{ms, 0, 2 * ms}, inflight: []int{0, 3, 0}, want: 1},
		// 4ms/4 = 1ms against 2ms/1.
		{name: "weight divides", weights: []int{4, 1}, latency: []time.Duration{4 * ms, 2 * ms}, want: 0},
		// 2h * 2^16 * 2^30 needs more than 64 bits.
		{name: "hours of latency and huge weights", weights: []int{1 << 30, 1<<30 - 1}, latency: []time.Duration{2 * time.Hour, 2 * time.Hour}, inflight: []int{1 << 16, 1 << 16}, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ss := newServers(tt.weights...)
			for i, d := range tt.latency {
				if d > 0 {
					ss[i].ObserveLatency(d)
				}
			}
			for i, n := range tt.inflight {
				setInFlight(ss[i], n)
			}
			b := mustNew(t, LeastResponseTime, ss, Options{})
			if got := b.Pick(0, nil); got != ss[tt.want] {
				t.Fatalf("Pick = %v, want %v", got, ss[tt.want])
			}
		})
	}
}

// TestLeastResponseTimeSpreads holds every picked request open: a server twice as fast ends up
// with twice the requests in flight, not all of them.
func TestLeastResponseTimeSpreads(t *testing.T) {
	ss := newServers(1, 1)
	ss[0].ObserveLatency(time.Millisecond)
	ss[1].ObserveLatency(2 * time.Millisecond)
	b := mustNew(t, LeastResponseTime, ss, Options{})
	for range 300 {
		b.Pick(0, nil).Acquire()
	}
	if got := ss[0].InFlight(); got < 199 || got > 201 {
		t.Errorf("fast server holds %d of 300, want 200±1", got)
	}
}

func TestCompareCost(t *testing.T) {
	tests := []struct {
		name string
		a, b cost
		want int
	}{
		{name: "less", a: cost{1, 2}, b: cost{1, 1}, want: -1},
		{name: "equal ratios", a: cost{2, 4}, b: cost{1, 2}, want: 0},
		{name: "greater", a: cost{3, 1}, b: cost{5, 2}, want: 1},
		{name: "128-bit products", a: cost{1 << 63, 1 << 62}, b: cost{1<<63 - 1, 1 << 62}, want: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := compareCost(tt.a, tt.b); got != tt.want {
				t.Errorf("compareCost(%v, %v) = %d, want %d", tt.a, tt.b, got, tt.want)
			}
			if got := compareCost(tt.b, tt.a); got != -tt.want {
				t.Errorf("compareCost(%v, %v) = %d, want %d", tt.b, tt.a, got, -tt.want)
			}
		})
	}
}
