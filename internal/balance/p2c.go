package balance

import (
	"math/rand/v2"

	"github.com/waage/waage/internal/backend"
)

// p2c is random_two_choices ("the power of two choices", Mitzenmacher): pick two distinct
// candidates at random and take the one with the lower (InFlight()+1)/Weight(). It needs no
// shared mutable state, so it scales across cores where least_connections' full scan and tie
// counter do not, and it avoids the herd that a pure least-loaded choice causes when many
// balancers (or a stale view of in-flight counts) all pick the same idle server.
type p2c struct {
	tiers tiers
	rand  func() uint64
	lc    least // cost function and comparison shared with least_connections
}

func newP2C(t tiers, r func() uint64) *p2c {
	if r == nil {
		r = rand.Uint64
	}
	return &p2c{tiers: t, rand: r}
}

// reduce maps a uniform 32-bit value to [0, n) without division (Lemire's multiply-shift).
func reduce(x uint32, n int) int {
	return int((uint64(x) * uint64(n)) >> 32)
}

// Pick implements Balancer.
func (b *p2c) Pick(_ uint64, tried []*backend.Server) *backend.Server {
	if s := b.pick(b.tiers[0], tried); s != nil {
		return s
	}
	return b.pick(b.tiers[1], tried)
}

func (b *p2c) pick(servers []*backend.Server, tried []*backend.Server) *backend.Server {
	n := len(servers)
	if n == 0 {
		return nil
	}
	if n >= 2 {
		// Fast path, O(1): two distinct servers of the whole tier; done if both are candidates,
		// which is the case whenever the tier is healthy and nothing was tried.
		i, j := b.two(n)
		ca, oka := b.lc.cost(servers[i], tried)
		cb, okb := b.lc.cost(servers[j], tried)
		if oka && okb {
			if compareCost(cb, ca) < 0 {
				return servers[j]
			}
			return servers[i]
		}
	}
	// Slow path: count the candidates, then draw two of them.
	count := 0
	var only *backend.Server
	for _, s := range servers {
		if candidateWeight(s, tried) != 0 {
			count++
			if only == nil {
				only = s
			}
		}
	}
	if count <= 1 {
		return only
	}
	i, j := b.two(count)
	var a, c *backend.Server
	var ca, cc cost
	k := 0
	for _, s := range servers {
		cs, ok := b.lc.cost(s, tried)
		if !ok {
			continue
		}
		switch k {
		case i:
			a, ca = s, cs
		case j:
			c, cc = s, cs
		}
		k++
	}
	switch {
	case a == nil && c == nil: // state changed between the passes
		return only
	case a == nil:
		return c
	case c == nil:
		return a
	case compareCost(cc, ca) < 0:
		return c
	}
	return a
}

// two returns two distinct indexes in [0, n), n >= 2, from one random value.
func (b *p2c) two(n int) (int, int) {
	r := b.rand()
	i := reduce(uint32(r), n)
	j := reduce(uint32(r>>32), n-1)
	if j >= i {
		j++
	}
	return i, j
}
