package balance

import (
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/waage/waage/internal/backend"
)

// pairRand returns the random value for which p2c draws candidates i and j (i != j) out of n.
func pairRand(i, j, n int) uint64 {
	ceilDiv := func(k, m int) uint64 { return (uint64(k)<<32 + uint64(m) - 1) / uint64(m) }
	if j > i {
		j--
	}
	return ceilDiv(j, n-1)<<32 | ceilDiv(i, n)
}

// seq returns a Rand that replays vals in order and counts its calls.
func seq(vals ...uint64) (func() uint64, *int) {
	calls := 0
	return func() uint64 {
		v := vals[calls%len(vals)]
		calls++
		return v
	}, &calls
}

func TestPairRand(t *testing.T) {
	b := &p2c{}
	for n := 2; n <= 7; n++ {
		for i := range n {
			for j := range n {
				if i == j {
					continue
				}
				b.rand, _ = seq(pairRand(i, j, n))
				if gi, gj := b.two(n); gi != i || gj != j {
					t.Fatalf("n=%d: pairRand(%d, %d) draws %d, %d", n, i, j, gi, gj)
				}
			}
		}
	}
}

func TestRandomTwoChoices(t *testing.T) {
	tests := []struct {
		name      string
		weights   []int
		inflight  []int
		setup     func(ss []*backend.Server)
		tried     []int
		rand      []uint64
		want      int
		wantCalls int
	}{
		{name: "lower in-flight of the two", weights: []int{1, 1, 1}, inflight: []int{5, 0, 2}, rand: []uint64{pairRand(0, 2, 3)}, want: 2, wantCalls: 1},
		{name: "the idle one when drawn", weights: []int{1, 1, 1}, inflight: []int{5, 0, 2}, rand: []uint64{pairRand(2, 1, 3)}, want: 1, wantCalls: 1},
		{name: "order of the draw does not matter", weights: []int{1, 1, 1}, inflight: []int{5, 0, 2}, rand: []uint64{pairRand(1, 2, 3)}, want: 1, wantCalls: 1},
		{name: "tie goes to the first draw", weights: []int{1, 1, 1}, inflight: []int{1, 1, 1}, rand: []uint64{pairRand(2, 0, 3)}, want: 2, wantCalls: 1},
		// (3+1)/4 = 1 against (1+1)/1 = 2.
		{name: "weight divides", weights: []int{4, 1}, inflight: []int{3, 1}, rand: []uint64{pairRand(1, 0, 2)}, want: 0, wantCalls: 1},
		{name: "single candidate needs no randomness", weights: []int{1}, rand: []uint64{0}, want: 0, wantCalls: 0},
		{name: "single usable candidate among many", weights: []int{1, 1, 1},
			setup: func(ss []*backend.Server) { ss[0].SetHealthy(false); ss[2].SetState(backend.Drain) },
			rand:  []uint64{pairRand(0, 2, 3)}, want: 1, wantCalls: 1},
		// The first draw (s1, s2) hits the unhealthy s1, so it draws again among the candidates
		// s2, s3, s4: indexes 2 and 0 of those are s4 and s2.
		{name: "redraw among candidates", weights: []int{1, 1, 1, 1}, inflight: []int{0, 7, 9, 3},
			setup: func(ss []*backend.Server) { ss[0].SetHealthy(false) },
			rand:  []uint64{pairRand(0, 1, 4), pairRand(2, 0, 3)}, want: 3, wantCalls: 2},
		{name: "tried is redrawn", weights: []int{1, 1, 1}, inflight: []int{0, 4, 2}, tried: []int{0},
			rand: []uint64{pairRand(0, 1, 3), pairRand(0, 1, 2)}, want: 2, wantCalls: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ss := newServers(tt.weights...)
			for i, n := range tt.inflight {
				setInFlight(ss[i], n)
			}
			if tt.setup != nil {
				tt.setup(ss)
			}
			var tried []*backend.Server
			for _, i := range tt.tried {
				tried = append(tried, ss[i])
			}
			r, calls := seq(tt.rand...)
			b := mustNew(t, RandomTwoChoices, ss, Options{Rand: r})
			if got := b.Pick(0, tried); got != ss[tt.want] {
				t.Errorf("Pick = %v, want %v", got, ss[tt.want])
			}
			if *calls != tt.wantCalls {
				t.Errorf("Rand called %d times, want %d", *calls, tt.wantCalls)
			}
		})
	}
}

// TestRandomTwoChoicesSpread checks the statistics with a seeded generator: equal servers share
// evenly, and the most loaded of n servers is never chosen (it always loses its pair).
func TestRandomTwoChoicesSpread(t *testing.T) {
	ss := newServers(1, 1, 1, 1)
	rng := rand.New(rand.NewPCG(7, 11))
	b := mustNew(t, RandomTwoChoices, ss, Options{Rand: rng.Uint64})
	got := counts(b, 40000, nil)
	for _, s := range ss {
		if got[s] < 9000 || got[s] > 11000 {
			t.Errorf("idle equal servers: %v, want about 10000 each", names(got))
		}
	}
	setInFlight(ss[3], 10)
	setInFlight(ss[0], 5)
	got = counts(b, 30000, nil)
	if got[ss[3]] != 0 {
		t.Errorf("the most loaded server got %d picks", got[ss[3]])
	}
	// s1 wins only against s4: 1 pair of 6 is (s1, s4).
	if got[ss[0]] < 4000 || got[ss[0]] > 6000 {
		t.Errorf("s1 got %d picks, want about 5000", got[ss[0]])
	}
}

// TestRandomTwoChoicesDefaultRand checks that nil Rand uses a working, concurrency-safe source.
func TestRandomTwoChoicesDefaultRand(t *testing.T) {
	ss := newServers(1, 1, 1)
	b := mustNew(t, RandomTwoChoices, ss, Options{})
	var mu sync.Mutex
	got := make(map[*backend.Server]int)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			local := counts(b, 3000, nil)
			mu.Lock()
			for s, n := range local {
				got[s] += n
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	for _, s := range ss {
		if got[s] < 3000 || got[s] > 5000 {
			t.Errorf("picks = %v, want about 4000 each", names(got))
		}
	}
}
