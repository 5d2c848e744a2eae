// Package guard protects frontends against floods and slow clients: token-bucket rate limits
// keyed by source (or a header or cookie), per-source connection caps, access lists and a live
// deny list. Its tables are bounded: a flood from a million spoofed keys evicts the least
// recently used keys instead of growing memory.
package guard

import (
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// shards splits each table, so that connections and requests of different keys rarely wait for
// one another's lock.
const shards = 64

var seed = maphash.MakeSeed()

// Limiter is a set of token buckets, one per key, holding at most a fixed number of keys: when a
// new key arrives at a full table, the key unused for longest is forgotten (its next request
// starts with a full bucket, which errs on the client's side). Safe for concurrent use.
type Limiter[K comparable] struct {
	rate  float64 // tokens per second
	burst float64
	per   float64 // seconds of the configured period
	// share, when set, is this node's part of rate and burst in a cluster (see Share): one
	// atomic load per request, no lock beyond the shard's.
	share atomic.Pointer[limits]
	sh    [shards]lruShard[K, bucket]
}

// limits are a rate in tokens per second and a burst.
type limits struct{ rate, burst float64 }

type bucket struct {
	tokens float64
	last   int64 // unix nanoseconds of the last refill
}

// NewLimiter returns a limiter of rate tokens per per, with bursts up to burst, remembering at most
// maxKeys keys.
func NewLimiter[K comparable](rate int, per time.Duration, burst, maxKeys int) *Limiter[K] {
	if per <= 0 {
		per = time.Second
	}
	l := &Limiter[K]{rate: float64(rate) / per.Seconds(), burst: float64(max(burst, 1)), per: per.Seconds()}
	for i := range l.sh {
		l.sh[i].init(max(maxKeys/shards, 1))
	}
	return l
}

// Allow takes a token from key's bucket at now. When none is left it returns false and how long
// until the next token.
func (l *Limiter[K]) Allow(key K, now time.Time) (bool, time.Duration) {
	rate, burst := l.rate, l.burst
	if s := l.share.Load(); s != nil {
		rate, burst = s.rate, s.burst
	}
	sh := &l.sh[maphash.Comparable(seed, key)%shards]
	t := now.UnixNano()
	sh.mu.Lock()
	b, fresh := sh.get(key)
	if fresh {
		b.tokens, b.last = burst, t
	} else if dt := t - b.last; dt > 0 {
		b.tokens = min(burst, b.tokens+float64(dt)*rate/1e9)
		b.last = t
	} else {
		b.tokens = min(burst, b.tokens)
	}
	if b.tokens >= 1 {
		b.tokens--
		sh.mu.Unlock()
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / rate * 1e9)
	sh.mu.Unlock()
	return false, wait
}

// Share makes the limiter enforce its part of a limit that n nodes enforce together: rate and
// burst divided by n, each at least one token per period, so that a source sending to every node
// of a cluster gets about the configured rate in all. n <= 1 restores the whole limit. Buckets
// keep their tokens; a bucket above the new burst is cut to it at its next request.
func (l *Limiter[K]) Share(n int) {
	if n <= 1 {
		l.share.Store(nil)
		return
	}
	perPeriod := max(l.rate*l.per/float64(n), 1)
	l.share.Store(&limits{rate: perPeriod / l.per, burst: max(math.Floor(l.burst/float64(n)), 1)})
}

// Len returns how many keys the limiter holds.
func (l *Limiter[K]) Len() int {
	n := 0
	for i := range l.sh {
		l.sh[i].mu.Lock()
		n += len(l.sh[i].m)
		l.sh[i].mu.Unlock()
	}
	return n
}

// lruShard is one shard of a bounded map: the entries in a doubly linked list, most recently used
// first, and a map to find them. Callers hold mu.
type lruShard[K comparable, V any] struct {
	mu   sync.Mutex
	m    map[K]*lruEntry[K, V]
	head lruEntry[K, V] // sentinel: head.next is the most recent, head.prev the least
	cap  int
}

type lruEntry[K comparable, V any] struct {
	key        K
	val        V
	prev, next *lruEntry[K, V]
}

func (s *lruShard[K, V]) init(capacity int) {
	s.m = make(map[K]*lruEntry[K, V])
	s.head.prev, s.head.next = &s.head, &s.head
	s.cap = capacity
}

// get returns key's value, made most recent; fresh reports a new (zero) value, which may have
// evicted the least recently used entry.
func (s *lruShard[K, V]) get(key K) (v *V, fresh bool) {
	if e := s.m[key]; e != nil {
		if s.head.next != e {
			s.unlink(e)
			s.pushFront(e)
		}
		return &e.val, false
	}
	var e *lruEntry[K, V]
	if len(s.m) >= s.cap {
		// Reuse the oldest entry: a full table allocates nothing.
		e = s.head.prev
		s.unlink(e)
		delete(s.m, e.key)
		var zero V
		e.val = zero
	} else {
		e = new(lruEntry[K, V])
	}
	e.key = key
	s.m[key] = e
	s.pushFront(e)
	return &e.val, true
}

func (s *lruShard[K, V]) unlink(e *lruEntry[K, V]) {
	e.prev.next, e.next.prev = e.next, e.prev
}

func (s *lruShard[K, V]) pushFront(e *lruEntry[K, V]) {
	e.prev, e.next = &s.head, s.head.next
	s.head.next.prev = e
	s.head.next = e
}
