package balance

import (
	"cmp"
	"slices"
	"strconv"

	"github.com/waage/waage/internal/backend"
)

const (
	// pointsPerWeight is how many ring points one unit of weight gets. Ketama and nginx use 160,
	// but a server's share of the ring then has a standard deviation of 1/sqrt(160) = 8%, and in
	// a measurement over random five-server name sets 60% had a server more than 10% off its
	// share. 1024 points give 3%. It is a constant, not derived from the other servers, so that
	// removing a server leaves every other server's points exactly where they were: only the
	// removed server's keys move.
	pointsPerWeight = 1024
	// maxRingPoints bounds a ring's memory (12 bytes a point, so 12 MiB). Rings whose weights
	// sum past maxRingPoints/pointsPerWeight (1024) first divide the weights by their greatest
	// common divisor (weight 100 everywhere is weight 1 everywhere); if that is not enough they
	// are scaled down to fit. Only in that last case does removing a server rescale the others,
	// so that about twice its share of the keys move instead of exactly its share.
	maxRingPoints = 1 << 20
)

// consistent is source_ip_hash and hash: a ketama-style consistent hash ring. Each server owns
// points at HashString(name + "#" + i); a key belongs to the first point at or after it,
// walking clockwise past points whose server is not a candidate. So a server going down, being
// tried, or being removed moves only the keys it owned, each to the next server on the ring,
// and the server gets them back when it returns. Backups have their own ring.
//
// The ring's shape (points per server) is fixed when the Balancer is built, from the weights
// then; later weight changes matter only as 0 (unusable, skipped) or not, until the next reload
// rebuilds the ring. A server whose weight is 0 at build time gets the points of weight 1, so
// an operator's temporary weight 0 during a reload does not exile it from the ring for good.
type consistent struct {
	rings [2]ring
}

type ring struct {
	servers []*backend.Server
	hashes  []uint64 // sorted
	owner   []int32  // owner[i] indexes servers for hashes[i]
}

func newConsistent(t tiers) *consistent {
	return &consistent{rings: [2]ring{newRing(t[0]), newRing(t[1])}}
}

// ringName is the identity a server's points are hashed from: its name, which survives address
// changes, or its address when it has no name.
func ringName(s *backend.Server) string {
	if s.Name != "" {
		return s.Name
	}
	return s.Address
}

func newRing(servers []*backend.Server) ring {
	weights := make([]int64, len(servers))
	var sum int64
	for i, s := range servers {
		weights[i] = int64(max(s.Weight(), 1))
		sum += weights[i]
	}
	if sum*pointsPerWeight > maxRingPoints {
		var g int64
		for _, w := range weights {
			g = gcd(g, w)
		}
		for i := range weights {
			weights[i] /= g
		}
		sum /= g
	}
	total := sum * pointsPerWeight
	type point struct {
		hash  uint64
		owner int32
	}
	points := make([]point, 0, min(total, maxRingPoints+int64(len(servers))))
	var buf []byte
	for i, s := range servers {
		n := weights[i] * pointsPerWeight
		if total > maxRingPoints {
			n = max(1, n*maxRingPoints/total)
		}
		buf = append(append(buf[:0], ringName(s)...), '#')
		prefix := len(buf)
		for j := range n {
			buf = strconv.AppendInt(buf[:prefix], j, 10)
			points = append(points, point{HashBytes(buf), int32(i)})
		}
	}
	// Colliding points are ordered by server name, not config position, so reordering the
	// config moves no key.
	slices.SortFunc(points, func(a, b point) int {
		if c := cmp.Compare(a.hash, b.hash); c != 0 {
			return c
		}
		return cmp.Compare(ringName(servers[a.owner]), ringName(servers[b.owner]))
	})
	r := ring{
		servers: servers,
		hashes:  make([]uint64, len(points)),
		owner:   make([]int32, len(points)),
	}
	for i, p := range points {
		r.hashes[i], r.owner[i] = p.hash, p.owner
	}
	return r
}

// Pick implements Balancer. The key is passed through the splitmix64 finalizer first, so keys
// that are not uniformly spread (small integers, sequential IDs) still cover the whole ring;
// keys from HashString, HashBytes and HashAddr lose nothing by it, as it is a bijection.
func (b *consistent) Pick(key uint64, tried []*backend.Server) *backend.Server {
	key = mix(key)
	if s := b.rings[0].pick(key, tried); s != nil {
		return s
	}
	return b.rings[1].pick(key, tried)
}

func (r *ring) pick(key uint64, tried []*backend.Server) *backend.Server {
	n := len(r.hashes)
	if n == 0 {
		return nil
	}
	i, _ := slices.BinarySearch(r.hashes, key)
	if i == n {
		i = 0
	}
	last := r.owner[i]
	if s := r.servers[last]; candidateWeight(s, tried) != 0 {
		return s
	}
	// Walk only if some server can take the key; otherwise the walk would visit every point.
	if !anyCandidate(r.servers, tried) {
		return nil
	}
	for range n - 1 {
		if i++; i == n {
			i = 0
		}
		o := r.owner[i]
		if o == last {
			continue
		}
		last = o
		if s := r.servers[o]; candidateWeight(s, tried) != 0 {
			return s
		}
	}
	return nil // the only candidate went away during the walk
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
