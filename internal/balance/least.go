package balance

import (
	"math"
	"math/bits"
	"sync/atomic"

	"github.com/waage/waage/internal/backend"
)

// least is least_connections and, with byLatency, least_response_time. Both choose the candidate
// with the lowest cost/weight, where the cost is InFlight()+1 (least_connections: the +1 counts
// the request being placed, so an idle weight-3 server beats an idle weight-1 one) or
// Latency()*(InFlight()+1) (least_response_time: the expected wait if requests queue). Costs are
// compared by cross multiplication in 128 bits, so no floats and no overflow.
//
// Ties are shared round robin: when several candidates share the lowest cost, the pick takes the
// (n mod ties)-th of them, where n comes from an atomic counter. A plain rotating start index
// (HAProxy-like) is fair only when every server ties; when two of three tie, it sends 2/3 of the
// picks to one of them. Counting the ties costs a second pass, taken only when there is a tie.
type least struct {
	tiers     tiers
	byLatency bool
	rr        atomic.Uint64
}

// cost is num/w, compared exactly with compareCost.
type cost struct{ num, w uint64 }

// compareCost returns -1, 0 or +1 as a/b's ratio is lower than, equal to or higher than c's.
func compareCost(a, c cost) int {
	ah, al := bits.Mul64(a.num, c.w)
	ch, cl := bits.Mul64(c.num, a.w)
	switch {
	case ah < ch || (ah == ch && al < cl):
		return -1
	case ah == ch && al == cl:
		return 0
	}
	return 1
}

// cost returns the cost of s for this Pick, or ok false if s is not a candidate.
func (b *least) cost(s *backend.Server, tried []*backend.Server) (c cost, ok bool) {
	w := candidateWeight(s, tried)
	if w == 0 {
		return c, false
	}
	n := s.InFlight()
	if n < 0 { // an unbalanced Release must not make a server look better than idle
		n = 0
	}
	num := uint64(n) + 1
	if b.byLatency {
		// No sample yet counts as the lowest latency ObserveLatency can record (1ns), so a new
		// server is tried at once, and several new servers still spread by in-flight count.
		lat := int64(s.Latency())
		if lat <= 0 {
			lat = 1
		}
		hi, lo := bits.Mul64(uint64(lat), num)
		if hi != 0 {
			lo = math.MaxUint64 // saturate: hours of latency times billions in flight
		}
		num = lo
	}
	return cost{num, w}, true
}

// Pick implements Balancer.
func (b *least) Pick(_ uint64, tried []*backend.Server) *backend.Server {
	if s := b.pick(b.tiers[0], tried); s != nil {
		return s
	}
	return b.pick(b.tiers[1], tried)
}

func (b *least) pick(servers []*backend.Server, tried []*backend.Server) *backend.Server {
	var best *backend.Server
	var min cost
	ties := 0
	for _, s := range servers {
		c, ok := b.cost(s, tried)
		if !ok {
			continue
		}
		if best == nil {
			best, min, ties = s, c, 1
			continue
		}
		switch compareCost(c, min) {
		case -1:
			best, min, ties = s, c, 1
		case 0:
			ties++
		}
	}
	if ties <= 1 {
		return best
	}
	// Second pass: take the k-th server whose cost still equals the minimum. State may have
	// moved since the first pass; if fewer ties remain, the first minimum found is still a
	// sound answer.
	k := int(b.rr.Add(1) % uint64(ties))
	for _, s := range servers {
		c, ok := b.cost(s, tried)
		if !ok || compareCost(c, min) != 0 {
			continue
		}
		if k == 0 {
			return s
		}
		k--
	}
	return best
}
