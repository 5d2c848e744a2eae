package guard

import (
	"hash/maphash"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Sources tracks the client addresses of one frontend: open connections, new-connection rate and
// request counts, for the per-source limits and for the busiest-sources list. Entries of sources
// with open connections stay; the others are kept up to a cap, least recently seen forgotten first.
type Sources struct {
	sh      [shards]srcShard
	started time.Time
}

// Source is one client address's entry. Its counters may be read at any time.
type Source struct {
	Addr     netip.Addr
	Conns    atomic.Uint64 // connections admitted
	Requests atomic.Uint64
	Rejected atomic.Uint64

	// Guarded by the shard's lock.
	open       int64
	tokens     float64 // connection-rate bucket; -1 until first used
	last       int64
	prev, next *Source // in the shard's idle list while open == 0
	// Rates from the last two samples (Sample).
	sampledReq, sampledConn uint64
	sampledAt               int64
	reqRate, connRate       float64
}

type srcShard struct {
	mu   sync.Mutex
	m    map[netip.Addr]*Source
	idle Source // sentinel of the idle list: idle.next most recent
	cap  int
}

// NewSources returns a table that remembers up to maxIdle sources without open connections.
func NewSources(maxIdle int) *Sources {
	s := &Sources{started: time.Now()}
	for i := range s.sh {
		sh := &s.sh[i]
		sh.m = map[netip.Addr]*Source{}
		sh.idle.prev, sh.idle.next = &sh.idle, &sh.idle
		sh.cap = max(maxIdle/shards, 1)
	}
	return s
}

// Reason is why the guard refused a connection, request or datagram.
type Reason uint8

// The reasons, as metrics and logs name them.
const (
	Admitted      Reason = iota
	Deny                 // access.deny, a source outside access.allow, or the live deny list
	ConnLimit            // max_connections_per_source
	ConnRate             // connection_rate_per_source
	Rate                 // request_rate (429)
	HeaderTimeout        // the request head did not arrive in time (408)
	BodyTimeout          // the body fell below min_body_rate (408)
	TooLarge             // max_header_bytes, max_uri_bytes, max_body_bytes (431, 414, 413)
	PacketRate           // packet_rate_per_source (udp)
	FlowLimit            // the udp flow table is full
	H2Abuse              // HTTP/2 stream resets, CONTINUATION, SETTINGS or PING floods
	NumReasons
)

var reasonNames = [NumReasons]string{"", "deny", "conn_limit", "conn_rate", "rate", "header_timeout", "body_timeout", "too_large", "packet_rate", "flow_limit", "h2_abuse"}

func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Reasons lists every refusal reason, for metrics.
func Reasons() []Reason {
	out := make([]Reason, 0, NumReasons-1)
	for r := Deny; r < NumReasons; r++ {
		out = append(out, r)
	}
	return out
}

// admit counts a new connection of addr against maxOpen open connections and a bucket of rate
// connections per second (0: no limit). Admitted connections must be given back with release.
func (s *Sources) admit(addr netip.Addr, now int64, maxOpen int64, rate float64) (*Source, Reason) {
	sh := &s.sh[maphash.Comparable(seed, addr)%shards]
	sh.mu.Lock()
	e := sh.get(addr, now)
	if rate > 0 {
		burst := max(rate, 1)
		if e.tokens < 0 { // a new entry: a full bucket
			e.tokens = burst
		} else if dt := now - e.last; dt > 0 {
			e.tokens = min(burst, e.tokens+float64(dt)*rate/1e9)
		}
		e.last = now
		if e.tokens < 1 {
			sh.mu.Unlock()
			e.Rejected.Add(1)
			return e, ConnRate
		}
		e.tokens--
	}
	if maxOpen > 0 && e.open >= maxOpen {
		sh.mu.Unlock()
		e.Rejected.Add(1)
		return e, ConnLimit
	}
	e.open++
	if e.open == 1 {
		unlinkSource(e)
	}
	sh.mu.Unlock()
	e.Conns.Add(1)
	return e, Admitted
}

// release gives back a connection admit counted.
func (s *Sources) release(e *Source) {
	sh := &s.sh[maphash.Comparable(seed, e.Addr)%shards]
	sh.mu.Lock()
	e.open--
	if e.open == 0 {
		sh.pushIdle(e)
	}
	sh.mu.Unlock()
}

// see returns addr's entry without opening a connection (for counting datagrams and requests of
// sources seen otherwise).
func (s *Sources) see(addr netip.Addr, now int64) *Source {
	sh := &s.sh[maphash.Comparable(seed, addr)%shards]
	sh.mu.Lock()
	e := sh.get(addr, now)
	sh.mu.Unlock()
	return e
}

// get finds or makes addr's entry; a new one may evict the least recently seen idle entry.
func (sh *srcShard) get(addr netip.Addr, now int64) *Source {
	if e := sh.m[addr]; e != nil {
		if e.open == 0 && sh.idle.next != e {
			unlinkSource(e)
			sh.pushIdle(e)
		}
		return e
	}
	if len(sh.m) >= sh.cap && sh.idle.prev != &sh.idle {
		old := sh.idle.prev
		unlinkSource(old)
		delete(sh.m, old.Addr)
	}
	e := &Source{Addr: addr, tokens: -1, last: now, sampledAt: now}
	sh.m[addr] = e
	sh.pushIdle(e)
	return e
}

func (sh *srcShard) pushIdle(e *Source) {
	e.prev, e.next = &sh.idle, sh.idle.next
	sh.idle.next.prev = e
	sh.idle.next = e
}

func unlinkSource(e *Source) {
	if e.prev != nil {
		e.prev.next, e.next.prev = e.next, e.prev
		e.prev, e.next = nil, nil
	}
}

// SourceStat is one line of the busiest-sources list.
type SourceStat struct {
	Addr        netip.Addr
	Open        int64
	Conns       uint64
	Requests    uint64
	Rejected    uint64
	RequestRate float64 // per second, between the last two samples
	ConnRate    float64
}

// Sample updates every entry's rates from its counters since the previous sample; call it at a
// steady interval (the runtime does, every 2 s).
func (s *Sources) Sample(now time.Time) {
	t := now.UnixNano()
	for i := range s.sh {
		sh := &s.sh[i]
		sh.mu.Lock()
		for _, e := range sh.m {
			dt := float64(t-e.sampledAt) / 1e9
			if dt <= 0 {
				continue
			}
			req, conn := e.Requests.Load(), e.Conns.Load()
			e.reqRate = float64(req-e.sampledReq) / dt
			e.connRate = float64(conn-e.sampledConn) / dt
			e.sampledReq, e.sampledConn, e.sampledAt = req, conn, t
		}
		sh.mu.Unlock()
	}
}

// Top returns the n busiest sources: by request rate, then connection rate, then open
// connections, then totals.
func (s *Sources) Top(n int) []SourceStat {
	var all []SourceStat
	for i := range s.sh {
		sh := &s.sh[i]
		sh.mu.Lock()
		for _, e := range sh.m {
			all = append(all, SourceStat{Addr: e.Addr, Open: e.open, Conns: e.Conns.Load(), Requests: e.Requests.Load(),
				Rejected: e.Rejected.Load(), RequestRate: e.reqRate, ConnRate: e.connRate})
		}
		sh.mu.Unlock()
	}
	sort.Slice(all, func(i, j int) bool { return Busier(all[i], all[j]) })
	if len(all) > n {
		all = all[:n]
	}
	return all
}

// Busier orders sources for the busiest-sources list: by request rate, then connection rate,
// then open connections, then totals, then address.
func Busier(a, b SourceStat) bool {
	switch {
	case a.RequestRate != b.RequestRate:
		return a.RequestRate > b.RequestRate
	case a.ConnRate != b.ConnRate:
		return a.ConnRate > b.ConnRate
	case a.Open != b.Open:
		return a.Open > b.Open
	case a.Requests+a.Conns != b.Requests+b.Conns:
		return a.Requests+a.Conns > b.Requests+b.Conns
	}
	return a.Addr.Less(b.Addr)
}

// Len returns how many sources the table holds.
func (s *Sources) Len() int {
	n := 0
	for i := range s.sh {
		s.sh[i].mu.Lock()
		n += len(s.sh[i].m)
		s.sh[i].mu.Unlock()
	}
	return n
}
