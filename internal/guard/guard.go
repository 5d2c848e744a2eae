package guard

import (
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/waage/waage/internal/config"
)

// DefaultMaxKeys bounds each table of a guard (sources, request-rate keys, packet-rate keys).
const DefaultMaxKeys = 100_000

// Guard is one frontend's protection: its access lists and limits (swapped on reload), the live
// deny list of the process, the table of its sources and its refusal counters. A frontend keeps
// its Guard across reloads, so connections admitted before a reload are still counted after it.
type Guard struct {
	name string
	dyn  *DenyList
	src  *Sources
	p    atomic.Pointer[params]
	log  atomic.Pointer[slog.Logger]

	// Refused counts refusals by reason.
	Refused [NumReasons]atomic.Uint64
	lastLog [NumReasons]atomic.Int64  // unix nanoseconds of the last log line per reason
	quiet   [NumReasons]atomic.Uint64 // refusals not logged since that line

	rlMu  sync.Mutex
	rl    map[string]*RequestLimiter // by scope
	share int                        // nodes sharing the request rates (SetShare); under rlMu
}

// params are the compiled limits of one configuration.
type params struct {
	allow, deny  *PrefixSet
	maxPerSource int64
	connRate     float64
	slots        chan struct{} // max_connections; nil: none
	maxConns     int
	packets      *Limiter[netip.Addr]
	packetRate   int
}

// New returns the guard of frontend name, sharing the process's live deny list dyn.
func New(name string, dyn *DenyList, log *slog.Logger) *Guard {
	g := &Guard{name: name, dyn: dyn, src: NewSources(DefaultMaxKeys)}
	g.p.Store(&params{})
	g.SetLogger(log)
	return g
}

// SetLogger replaces the logger of refusal lines.
func (g *Guard) SetLogger(l *slog.Logger) {
	if l == nil {
		l = slog.Default()
	}
	g.log.Store(l)
}

// Update applies a frontend's limits and access lists. Counters, sources and open connections
// carry over; a changed max_connections starts a new gate (connections admitted by the old one
// give their slot back to it).
func (g *Guard) Update(l config.Limits, a config.Access) error {
	allow, err := parsePrefixes(a.Allow)
	if err != nil {
		return err
	}
	deny, err := parsePrefixes(a.Deny)
	if err != nil {
		return err
	}
	old := g.p.Load()
	p := &params{maxPerSource: int64(l.MaxConnectionsPerSource), connRate: float64(l.ConnectionRatePerSource), maxConns: l.MaxConnections}
	if len(allow) > 0 {
		p.allow = NewPrefixSet(allow)
	}
	if len(deny) > 0 {
		p.deny = NewPrefixSet(deny)
	}
	if l.MaxConnections > 0 {
		if old.maxConns == l.MaxConnections {
			p.slots = old.slots
		} else {
			p.slots = make(chan struct{}, l.MaxConnections)
		}
	}
	if l.PacketRatePerSource > 0 {
		if old.packetRate == l.PacketRatePerSource {
			p.packets = old.packets
		} else {
			p.packets = NewLimiter[netip.Addr](l.PacketRatePerSource, time.Second, l.PacketRatePerSource, DefaultMaxKeys)
		}
		p.packetRate = l.PacketRatePerSource
	}
	g.p.Store(p)
	return nil
}

func parsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		p, err := config.ParsePrefix(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// Allowed reports whether the access lists and the live deny list let addr in; the refusal is
// counted and logged (sampled).
func (g *Guard) Allowed(addr netip.Addr, now time.Time) bool {
	p := g.p.Load()
	addr = addr.Unmap()
	if p.deny.Contains(addr) || (p.allow != nil && !p.allow.Contains(addr)) || g.dyn.Denied(addr, now) {
		g.Refuse(Deny, addr, now)
		return false
	}
	return true
}

// Ticket is an admitted connection; Done gives back what it holds.
type Ticket struct {
	g   *Guard
	src *Source
}

// Source is the connection's source entry, whose Requests counter the connection counts on.
func (t *Ticket) Source() *Source { return t.src }

// Admit decides about a new connection from addr: access lists and deny list, then the
// per-source open-connection cap and connection rate. On refusal the connection should be closed
// at once; the reason is counted and logged (sampled).
func (g *Guard) Admit(addr netip.Addr, now time.Time) (*Ticket, Reason) {
	if !g.Allowed(addr, now) {
		return nil, Deny
	}
	p := g.p.Load()
	e, r := g.src.admit(addr.Unmap(), now.UnixNano(), p.maxPerSource, p.connRate)
	if r != Admitted {
		g.Refuse(r, addr, now)
		return nil, r
	}
	return &Ticket{g: g, src: e}, Admitted
}

// Done releases the ticket's connection.
func (t *Ticket) Done() {
	if t != nil {
		t.g.src.release(t.src)
	}
}

// Slot waits for a place under max_connections, so the accept loop stops taking connections
// while the frontend is full and the kernel's backlog holds the rest. It returns the function that
// gives the place back, or nil when stop is closed first. Without max_connections it returns at
// once.
func (g *Guard) Slot(stop <-chan struct{}) func() {
	slots := g.p.Load().slots
	if slots == nil {
		return func() {}
	}
	select {
	case slots <- struct{}{}:
	case <-stop:
		return nil
	}
	return func() { <-slots }
}

// Packet decides about a datagram from addr: access lists, deny list and packet_rate_per_source.
// A datagram dropped for its rate counts against the source in the source table.
func (g *Guard) Packet(addr netip.Addr, now time.Time) bool {
	if !g.Allowed(addr, now) {
		return false
	}
	p := g.p.Load()
	if p.packets == nil {
		return true
	}
	if ok, _ := p.packets.Allow(addr.Unmap(), now); !ok {
		g.Refuse(PacketRate, addr, now)
		g.src.see(addr.Unmap(), now.UnixNano()).Rejected.Add(1)
		return false
	}
	return true
}

// OpenFlow counts a new UDP flow of addr in the source table, as Admit counts a connection but
// without a limit (udp frontends limit datagrams, not flows). The flow's datagrams are counted
// on the ticket's Source as its requests; Done ends the flow.
func (g *Guard) OpenFlow(addr netip.Addr, now time.Time) *Ticket {
	e, _ := g.src.admit(addr.Unmap(), now.UnixNano(), 0, 0)
	return &Ticket{g: g, src: e}
}

// Sources returns the frontend's source table.
func (g *Guard) Sources() *Sources { return g.src }

// logEvery is the most often one frontend logs refusals of one reason.
const logEvery = 10 * time.Second

// Refuse counts a refusal and logs it, at most once per logEvery per reason, with the number of
// refusals not logged since.
func (g *Guard) Refuse(r Reason, addr netip.Addr, now time.Time) {
	g.Refused[r].Add(1)
	t := now.UnixNano()
	last := g.lastLog[r].Load()
	if t-last < int64(logEvery) || !g.lastLog[r].CompareAndSwap(last, t) {
		g.quiet[r].Add(1)
		return
	}
	g.log.Load().Warn("refused", "frontend", g.name, "reason", r.String(), "source", addr.String(),
		"not_logged_before", g.quiet[r].Swap(0), "total", g.Refused[r].Load())
}

// RequestLimiter is the state of one request_rate: token buckets by source address, or by the
// value of a header or cookie.
type RequestLimiter struct {
	Rate     config.RequestRate
	BySource *Limiter[netip.Addr]
	ByKey    *Limiter[string] // header:NAME and cookie:NAME; requests without one use BySource
}

// RequestLimiter returns the limiter of rr for scope (a route's name, "" for the frontend): the
// same one across reloads while rr stays the same, so a reload does not refill every bucket.
func (g *Guard) RequestLimiter(scope string, rr config.RequestRate) *RequestLimiter {
	g.rlMu.Lock()
	defer g.rlMu.Unlock()
	if l := g.rl[scope]; l != nil && l.Rate == rr {
		return l
	}
	l := &RequestLimiter{Rate: rr, BySource: NewLimiter[netip.Addr](rr.Rate, rr.Per.D(), rr.Burst, DefaultMaxKeys)}
	if rr.Key != "" && rr.Key != config.RateKeySource {
		l.ByKey = NewLimiter[string](rr.Rate, rr.Per.D(), rr.Burst, DefaultMaxKeys)
	}
	l.share(g.share)
	if g.rl == nil {
		g.rl = map[string]*RequestLimiter{}
	}
	g.rl[scope] = l
	return l
}

// RetainLimiters forgets the request limiters of scopes not in keep (routes that are gone).
func (g *Guard) RetainLimiters(keep map[string]bool) {
	g.rlMu.Lock()
	defer g.rlMu.Unlock()
	for k := range g.rl {
		if !keep[k] {
			delete(g.rl, k)
		}
	}
}

// SetShare makes the frontend's request rates (its own and its routes') the share of one node of
// n that enforce them together: each node allows rate/n and burst/n (at least 1). n <= 1: the
// whole rate. Limiters made later get the same share.
func (g *Guard) SetShare(n int) {
	g.rlMu.Lock()
	defer g.rlMu.Unlock()
	g.share = n
	for _, l := range g.rl {
		l.share(n)
	}
}

func (l *RequestLimiter) share(n int) {
	l.BySource.Share(n)
	if l.ByKey != nil {
		l.ByKey.Share(n)
	}
}
