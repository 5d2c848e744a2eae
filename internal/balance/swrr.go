package balance

import (
	"sync"

	"github.com/waage/waage/internal/backend"
)

// swrr is nginx's smooth weighted round robin, used for both round_robin and
// weighted_round_robin (with equal weights it is plain round robin). Each pick adds every
// candidate's weight to its current value, chooses the highest (the first on ties, as nginx) and
// subtracts the round's total from it. Over sum(weights) picks each server gets exactly its
// weight, interleaved rather than in runs: weights 5,1,1 give a,a,b,a,c,a,a.
//
// The state is small and each step touches all of it, so one mutex guards it; the critical
// section is a loop of atomic loads and additions.
type swrr struct {
	mu    sync.Mutex
	tiers [2]swrrTier
}

type swrrTier struct {
	servers []*backend.Server
	current []int64
	// weight is each server's weight as seen at the last pick, 0 if it was unusable. When any
	// of them changes (a server leaves, returns, or is reweighted) every current value restarts
	// at 0: they were earned under the old weights and would otherwise pay out as a burst (a
	// server reweighted from 100 to 1 leaves the others owed dozens of turns) or a drought. A
	// fresh start is smooth from the first pick. Tried servers are skipped for one request
	// without counting as a change.
	weight []int64
}

func newSWRR(t tiers) *swrr {
	b := &swrr{}
	for i, servers := range t {
		b.tiers[i] = swrrTier{
			servers: servers,
			current: make([]int64, len(servers)),
			weight:  make([]int64, len(servers)),
		}
	}
	return b
}

// Pick implements Balancer.
func (b *swrr) Pick(_ uint64, tried []*backend.Server) *backend.Server {
	b.mu.Lock()
	s := b.tiers[0].pick(tried)
	if s == nil {
		s = b.tiers[1].pick(tried)
	}
	b.mu.Unlock()
	return s
}

func (t *swrrTier) pick(tried []*backend.Server) *backend.Server {
	changed := false
	for i, s := range t.servers {
		var w int64
		if s.Usable() {
			w = max(s.EffectiveWeight(), 0)
		}
		if w != t.weight[i] {
			t.weight[i] = w
			changed = true
		}
	}
	if changed {
		clear(t.current)
	}
	var total int64
	best := -1
	for i, w := range t.weight {
		if w == 0 || isTried(t.servers[i], tried) {
			continue
		}
		t.current[i] += w
		total += w
		if best < 0 || t.current[i] > t.current[best] {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	t.current[best] -= total
	return t.servers[best]
}
