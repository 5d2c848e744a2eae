package balance

import (
	"cmp"
	"fmt"
	"math/big"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/waage/waage/internal/backend"
)

const (
	// DefaultMaglevTableSize is the lookup table size of maglev when none is configured: the
	// paper's (Eisenbud et al., "Maglev", NSDI 2016) default, a prime large enough that up to
	// 655 servers stay within 1% of their share (the table should have at least 100 entries
	// per server) while a table takes 128 KiB and builds in about a millisecond.
	DefaultMaglevTableSize = 65537
	// MaxMaglevTableSize bounds a table's memory (2 bytes an entry, so 8 MiB per tier) and its
	// build time.
	MaxMaglevTableSize = 1 << 22
	// maxMaglevServers is how many servers one tier may have: table entries are uint16
	// indexes, which halves the table (and its cache footprint) against int32.
	maxMaglevServers = 1<<16 - 1
)

// IsPrime reports whether n is a prime number. The maglev table size must be one: a server's
// permutation steps through the table by a skip between 1 and size-1, and only a prime size
// makes every such skip visit every entry.
func IsPrime(n int) bool {
	return n > 1 && big.NewInt(int64(n)).ProbablyPrime(0) // Baillie-PSW: exact below 2^64
}

// maglev is Maglev hashing: a lookup table of prime size whose entries name servers, filled so
// that each server owns a share of entries proportional to its weight and a key is one table
// lookup. Each server walks its own permutation of the table, starting at an offset and
// stepping by a skip that both come from hashing its name; servers take turns claiming the next
// free entry of their permutation until the table is full. Since a server's permutation
// depends on nothing but its name, two processes with the same servers (in any order) build the
// same table, and removing a server mostly frees its own entries: the others keep nearly all of
// theirs, because their permutations did not change. Only nearly: the turns after the removed
// server's first claim can land elsewhere, so a few keys of the remaining servers move too
// (0.1% to 0.4% of all keys when one of 5 to 50 servers goes, with the default size; the
// tests measure it).
//
// Unlike the hash ring, the table reflects the servers that are eligible now (usable, with
// their current weight): when that set changes, the next Pick that notices builds a new table
// and swaps it in. Every Pick checks the server its key maps to and one more server chosen by
// the key, in O(1): a server that leaves is noticed by the first Pick of a key it owned, one
// that returns or is reweighted after about as many picks as there are servers. A table is
// never rebuilt while the set stays the same. Only one Pick rebuilds at a
// time; the others keep using the old table meanwhile, walking past servers that are no longer
// candidates. Tried servers are walked past the same way: the walk visits the following
// entries of the table, which belong to the other servers in proportion to their shares, so a
// retry lands on the same server on every node too. Slow start is ignored, as by the ring.
type maglev struct {
	tiers [2]maglevTier
}

type maglevTier struct {
	servers []*backend.Server
	size    uint64
	// order lists indexes into servers sorted by name: the order servers take their turns, so
	// that the config's order does not matter.
	order []int32
	// offset and skip define each server's permutation of the table: entry j of it is
	// (offset + j*skip) mod size.
	offset, skip []uint64
	// mu lets one Pick rebuild the table while the others carry on with the old one.
	mu  sync.Mutex
	cur atomic.Pointer[maglevTable]
}

// maglevTable is one immutable table and the eligibility it was built from.
type maglevTable struct {
	// weights holds each server's weight when the table was built, 0 if it was not eligible
	// (and so owns no entry).
	weights []int32
	// entries maps each slot to an index into servers; nil when no server was eligible.
	entries []uint16
}

func newMaglev(t tiers, size int) (*maglev, error) {
	if size == 0 {
		size = DefaultMaglevTableSize
	}
	if !IsPrime(size) || size > MaxMaglevTableSize {
		return nil, fmt.Errorf("table size %d: must be a prime number no larger than %d", size, MaxMaglevTableSize)
	}
	b := &maglev{}
	for k, servers := range t {
		switch n := len(servers); {
		case n >= size:
			return nil, fmt.Errorf("%d servers: more than the table size %d allows (it must be larger than the number of servers)", n, size)
		case n > maxMaglevServers:
			return nil, fmt.Errorf("%d servers: more than the %d a table can name", n, maxMaglevServers)
		}
		b.tiers[k].init(servers, uint64(size))
	}
	return b, nil
}

func (t *maglevTier) init(servers []*backend.Server, size uint64) {
	t.servers, t.size = servers, size
	t.order = make([]int32, len(servers))
	t.offset = make([]uint64, len(servers))
	t.skip = make([]uint64, len(servers))
	for i, s := range servers {
		t.order[i] = int32(i)
		h1, h2 := maglevHashes(ringName(s))
		t.offset[i] = h1 % size
		t.skip[i] = h2%(size-1) + 1
	}
	// Names are unique within a backend; the address and then the position only break ties
	// for servers built outside the config's validation.
	slices.SortStableFunc(t.order, func(a, b int32) int {
		sa, sb := servers[a], servers[b]
		if c := cmp.Compare(ringName(sa), ringName(sb)); c != 0 {
			return c
		}
		return cmp.Compare(sa.Address, sb.Address)
	})
	weights := make([]int32, len(servers))
	for i, s := range servers {
		weights[i] = eligibleWeight(s)
	}
	t.cur.Store(t.build(weights))
}

// maglevHashes returns the two independent hashes of a server name that place its
// permutation: the second hashes the name after a fixed prefix, so the two share nothing but
// the name.
func maglevHashes(name string) (offset, skip uint64) {
	return HashString(name), mix(fnvString(fnvString(fnvOffset, "maglev skip\x00"), name))
}

// eligibleWeight is the weight s owns table entries with: its configured weight if it may
// take new traffic, else 0. Slow start is left out on purpose: a ramp changes the effective
// weight every few seconds, and each change would rebuild the table and move keys.
func eligibleWeight(s *backend.Server) int32 {
	if !s.Usable() {
		return 0
	}
	return int32(s.Weight())
}

// build fills a table for the servers with a weight above 0: the paper's Listing 1, in rounds
// of turns. In the weighted form (as in Envoy's and Katran's weighted Maglev) a server earns
// its weight in credit each round and takes a turn whenever its credit reaches the largest
// weight, which it then pays; so the heaviest servers take a turn every round and each server
// claims entries in proportion to its weight. Servers of equal weight take their turns in the
// same rounds, so the rounds step through the distinct weights rather than through every
// server; within a round the heavier go first, and equal weights go in name order. With equal
// weights this is exactly the paper's round robin of turns in name order.
func (t *maglevTier) build(weights []int32) *maglevTable {
	tab := &maglevTable{weights: weights}
	live := make([]int32, 0, len(t.order))
	for _, i := range t.order {
		if weights[i] > 0 {
			live = append(live, i)
		}
	}
	if len(live) == 0 {
		return tab
	}
	slices.SortStableFunc(live, func(a, b int32) int { return cmp.Compare(weights[b], weights[a]) })
	type class struct {
		weight, credit int64
		from, to       int // the class's servers are live[from:to]
	}
	var classes []class
	for k, i := range live {
		if w := int64(weights[i]); len(classes) == 0 || classes[len(classes)-1].weight != w {
			classes = append(classes, class{weight: w, from: k, to: k + 1})
		} else {
			classes[len(classes)-1].to = k + 1
		}
	}
	top := classes[0].weight

	m := uint32(t.size)
	entries := make([]uint16, m)
	// filled marks the claimed entries: 8 KiB for the default size, so the probing that
	// dominates the build stays in the L1 cache.
	filled := make([]uint64, (m+63)/64)
	// next and skip walk each live server's permutation: next is the entry to try next.
	next := make([]uint32, len(live))
	skip := make([]uint32, len(live))
	for k, i := range live {
		next[k], skip[k] = uint32(t.offset[i]), uint32(t.skip[i])
	}
	claimed := uint32(0)
	for claimed < m {
		for ci := range classes {
			cl := &classes[ci]
			if cl.credit += cl.weight; cl.credit < top {
				continue
			}
			cl.credit -= top
			for k := cl.from; k < cl.to && claimed < m; k++ {
				c, s := next[k], skip[k]
				for filled[c>>6]&(1<<(c&63)) != 0 {
					if c += s; c >= m {
						c -= m
					}
				}
				filled[c>>6] |= 1 << (c & 63)
				entries[c] = uint16(live[k])
				if c += s; c >= m {
					c -= m
				}
				next[k] = c
				claimed++
			}
		}
	}
	tab.entries = entries
	return tab
}

// Pick implements Balancer. The key goes through the splitmix64 finalizer first, as for the
// ring, so keys that are not uniformly spread still cover the whole table.
func (b *maglev) Pick(key uint64, tried []*backend.Server) *backend.Server {
	h := mix(key)
	if s := b.tiers[0].pick(h, tried); s != nil {
		return s
	}
	return b.tiers[1].pick(h, tried)
}

func (t *maglevTier) pick(h uint64, tried []*backend.Server) *backend.Server {
	n := uint64(len(t.servers))
	if n == 0 {
		return nil
	}
	tab := t.cur.Load()
	// Check one server, chosen by the key's low bits, against the table: a server that came
	// back or was reweighted is noticed after about n picks, at the cost of one load per pick.
	// An empty table is checked in full, since no lookup would notice anything.
	if p := (h & 0xffffffff) * n >> 32; tab.entries == nil || eligibleWeight(t.servers[p]) != tab.weights[p] {
		if tab = t.refresh(); tab.entries == nil {
			return nil
		}
	}
	// The slot comes from the key's high bits: (h * size) >> 64 is uniform over the table and
	// cheaper than a modulo.
	slot, _ := bits.Mul64(h, t.size)
	i := tab.entries[slot]
	if eligibleWeight(t.servers[i]) != tab.weights[i] {
		if tab = t.refresh(); tab.entries == nil {
			return nil
		}
		i = tab.entries[slot]
	}
	if s := t.servers[i]; candidateWeight(s, tried) != 0 {
		return s
	}
	return t.walk(tab, slot, i, tried)
}

// refresh returns a table built from the servers' current eligibility, building it if the
// current one is out of date. If another Pick is building one right now it returns the current
// table instead of waiting: Pick never blocks, and the walk copes with stale entries.
func (t *maglevTier) refresh() *maglevTable {
	tab := t.cur.Load()
	if t.upToDate(tab) || !t.mu.TryLock() {
		return tab
	}
	defer t.mu.Unlock()
	if tab = t.cur.Load(); t.upToDate(tab) {
		return tab
	}
	weights := make([]int32, len(t.servers))
	for i, s := range t.servers {
		weights[i] = eligibleWeight(s)
	}
	tab = t.build(weights)
	t.cur.Store(tab)
	return tab
}

func (t *maglevTier) upToDate(tab *maglevTable) bool {
	for i, s := range t.servers {
		if eligibleWeight(s) != tab.weights[i] {
			return false
		}
	}
	return true
}

// walk finds a candidate for a key whose own entry names a server that is tried (or, while
// another Pick rebuilds, no longer usable): the first candidate among the following entries.
func (t *maglevTier) walk(tab *maglevTable, slot uint64, last uint16, tried []*backend.Server) *backend.Server {
	if !anyCandidate(t.servers, tried) {
		return nil
	}
	for range t.size - 1 {
		if slot++; slot == t.size {
			slot = 0
		}
		i := tab.entries[slot]
		if i == last {
			continue
		}
		last = i
		if s := t.servers[i]; candidateWeight(s, tried) != 0 {
			return s
		}
	}
	// The only candidate owns no entry: it became usable after this table was built and
	// another Pick is building the next one.
	for _, i := range t.order {
		if s := t.servers[i]; candidateWeight(s, tried) != 0 {
			return s
		}
	}
	return nil
}
