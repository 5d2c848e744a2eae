// Package l4 balances TCP connections and UDP flows: a TCP proxy that splices bytes between
// client and server (zero copy where the kernel allows it), optionally terminating TLS or routing
// encrypted connections by the SNI of their ClientHello, and a UDP proxy with a flow table. It
// shares the balancers (internal/balance), server state (internal/backend) and health checks
// (internal/health) with the HTTP proxy: nothing here is specific to a protocol above TCP/UDP.
package l4

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/waage/waage/internal/backend"
	"github.com/waage/waage/internal/balance"
	"github.com/waage/waage/internal/config"
	"github.com/waage/waage/internal/health"
)

// Backend is one compiled backend as the L4 proxies use it.
type Backend struct {
	Name     string
	Servers  []*backend.Server
	Balancer balance.Balancer
	// Outlier is shared with the HTTP side of the same backend; nil when off.
	Outlier *health.Outlier

	keyKind    keyKind
	connectTO  time.Duration
	attempts   int
	proxyProto int // 0 none, 1 or 2: the PROXY protocol version sent to servers
	maxConns   int64
	queue      *queue
	dialer     net.Dialer
	udpAddrs   sync.Map // *backend.Server -> netip.AddrPort, see udpAddr
}

type keyKind uint8

const (
	keyNone     keyKind = iota
	keySourceIP         // source_ip_hash: the client's address
	keySource           // hash and maglev: the client's address and port
)

// NewBackend compiles bc over servers (shared through the registry with the HTTP side).
func NewBackend(bc config.Backend, servers []*backend.Server, outlier *health.Outlier) (*Backend, error) {
	bal, err := balance.New(bc.Algorithm, servers, balance.Options{MaglevTableSize: bc.MaglevTableSize})
	if err != nil {
		return nil, fmt.Errorf("backend %q: %w", bc.Name, err)
	}
	b := &Backend{
		Name: bc.Name, Servers: servers, Balancer: bal, Outlier: outlier,
		connectTO:  bc.Timeouts.Connect.D(),
		attempts:   bc.MaxAttempts(),
		maxConns:   int64(bc.MaxConnections),
		proxyProto: config.ProxyProtocolVersion(bc.ProxyProtocol),
	}
	if b.connectTO <= 0 {
		b.connectTO = 5 * time.Second
	}
	switch bc.Algorithm {
	case balance.SourceIPHash:
		b.keyKind = keySourceIP
	case balance.Hash, balance.Maglev:
		// Address and port: connections and flows of one client spread over the servers, and
		// a UDP flow keeps its key (so, with maglev, its server) on whichever node ECMP sends
		// it to.
		b.keyKind = keySource
	}
	if b.maxConns > 0 {
		b.queue = &queue{size: int64(bc.Queue.Size), timeout: bc.Queue.Timeout.D(), ch: make(chan struct{})}
		if b.queue.timeout <= 0 {
			b.queue.timeout = 5 * time.Second
		}
	}
	return b, nil
}

// key is the balancer key for a client.
func (b *Backend) key(client netip.AddrPort) uint64 {
	switch b.keyKind {
	case keySourceIP:
		return balance.HashAddr(client.Addr().Unmap())
	case keySource:
		a := client.Addr().Unmap().As16()
		var buf [18]byte
		copy(buf[:], a[:])
		buf[16], buf[17] = byte(client.Port()>>8), byte(client.Port())
		return balance.HashBytes(buf[:])
	}
	return 0
}

// errNoServer means no server is usable (all down, ejected, drained or full).
var errNoServer = errors.New("no server available")

// pick chooses a usable server that has room for one more connection, skipping tried, and takes
// the slot. When every usable server is at max_connections it waits in the queue.
func (b *Backend) pick(ctx context.Context, key uint64, tried []*backend.Server, queue bool) (*backend.Server, error) {
	full := tried
	var deadline time.Time
	for {
		s := b.Balancer.Pick(key, full)
		if s == nil {
			if len(full) == len(tried) {
				return nil, errNoServer
			}
			// Every usable server was full: wait for a slot, then pick again. The deadline is
			// the first wait's, so losing the race for a freed slot does not wait longer.
			if !queue {
				return nil, errQueueFull
			}
			if deadline.IsZero() && b.queue != nil {
				deadline = time.Now().Add(b.queue.timeout)
			}
			if err := b.queue.wait(ctx, deadline); err != nil {
				return nil, err
			}
			full = tried
			continue
		}
		if s.TryAcquire(b.maxConns) {
			return s, nil
		}
		if len(full) == len(tried) {
			full = append(full[:len(full):len(full)], s)
		} else {
			full = append(full, s)
		}
	}
}

// release gives back the slot pick took.
func (b *Backend) release(s *backend.Server) {
	s.Release()
	if b.queue != nil {
		b.queue.notify()
	}
}

// queue is where connections wait while every server is at max_connections. Waiters block on a
// channel that is closed (and replaced) whenever a connection ends, then race for the slot; the
// loser waits again. Connections end rarely compared to the cost of that wakeup.
type queue struct {
	size    int64
	timeout time.Duration
	waiting atomic.Int64
	mu      sync.Mutex
	ch      chan struct{}
}

var (
	errQueueFull    = errors.New("all servers are at max_connections and the queue is full")
	errQueueTimeout = errors.New("all servers stayed at max_connections for the queue timeout")
)

func (q *queue) wait(ctx context.Context, deadline time.Time) error {
	if q == nil {
		return errNoServer
	}
	if q.waiting.Add(1) > q.size {
		q.waiting.Add(-1)
		return errQueueFull
	}
	defer q.waiting.Add(-1)
	q.mu.Lock()
	ch := q.ch
	q.mu.Unlock()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-ch:
		return nil
	case <-t.C:
		return errQueueTimeout
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (q *queue) notify() {
	if q.waiting.Load() == 0 {
		return
	}
	q.mu.Lock()
	close(q.ch)
	q.ch = make(chan struct{})
	q.mu.Unlock()
}

// dial connects to a server of the backend, retrying failed connects on other servers (nothing
// was sent, so any connection may be retried). It returns the server with its slot taken.
func (b *Backend) dial(ctx context.Context, network string, client netip.AddrPort, logf func(msg string, args ...any)) (net.Conn, *backend.Server, error) {
	key := b.key(client)
	var tried [4]*backend.Server
	triedS := tried[:0]
	var lastErr error
	for attempt := 0; attempt < b.attempts; attempt++ {
		// UDP flows do not queue: one waiting flow would hold up the socket's every client.
		s, err := b.pick(ctx, key, triedS, network == "tcp")
		if err != nil {
			if lastErr != nil {
				return nil, nil, fmt.Errorf("%w (last connect error: %v)", err, lastErr)
			}
			return nil, nil, err
		}
		if attempt > 0 {
			s.Retries.Add(1)
		}
		dctx, cancel := context.WithTimeout(ctx, b.connectTO)
		c, err := b.dialer.DialContext(dctx, network, s.Address)
		cancel()
		if err == nil {
			// A UDP "connect" succeeds without the server; only a reply counts for UDP.
			if network == "tcp" {
				b.Outlier.Success(s)
			}
			return c, s, nil
		}
		b.release(s)
		s.Failures.Add(1)
		s.ConnectErrors.Add(1)
		b.Outlier.Failure(s, err)
		logf("connect to server failed", "backend", b.Name, "server", s.Name, "err", err)
		lastErr = err
		triedS = append(triedS, s)
	}
	return nil, nil, fmt.Errorf("could not connect to a server: %w", lastErr)
}
