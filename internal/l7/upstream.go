package l7

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/waage/waage/internal/backend"
	"github.com/waage/waage/internal/balance"
	"github.com/waage/waage/internal/config"
	"github.com/waage/waage/internal/health"
	"github.com/waage/waage/internal/rawio"
)

// Backend is one compiled backend: its servers, balancer, stickiness and connection pools.
type Backend struct {
	Name     string
	Servers  []*backend.Server
	Balancer balance.Balancer
	// Outlier ejects servers that fail real requests; nil when outlier detection is off.
	Outlier *health.Outlier

	hashKind    hashKind
	hashName    string // header (lower case) or cookie name for hashKind
	stickyName  string // cookie name; empty: no stickiness
	stickyIdx   *balance.CookieIndex
	pools       map[*backend.Server]*pool
	connectTO   time.Duration
	responseTO  time.Duration
	maxAttempts int
	budget      *backend.RetryBudget
	proxyProto  int          // PROXY protocol version sent on each new server connection; 0: none
	budgetLog   atomic.Int64 // when budgetRefused last logged (Unix nanoseconds)
	retryStatus [6]uint64    // bit (status%100) of word status/100: retry on this status
	// up is how net/http-based forwarding reaches the servers: requests of HTTP/2 clients, and
	// all requests when the servers speak h2 or h2c (protocol).
	up *httpUpstream
}

// retryOn reports whether the backend retries requests that got this status.
func (b *Backend) retryOn(status int) bool {
	return status >= 100 && status < 600 && b.retryStatus[status/100]&(1<<(status%100)) != 0
}

// budgetRefused logs that the retry budget refused a retry, at most every 5 seconds: refusals
// come in floods, exactly when the log matters most.
func (b *Backend) budgetRefused(h *Handler) {
	now := time.Now().UnixNano()
	last := b.budgetLog.Load()
	if now-last < int64(5*time.Second) || !b.budgetLog.CompareAndSwap(last, now) {
		return
	}
	h.logger().Warn("retry budget exhausted; failures are answered without retrying", "frontend", h.Name, "backend", b.Name)
}

// fail counts a failed attempt against srv and tells outlier detection.
func (b *Backend) fail(srv *backend.Server, err error) {
	srv.Failures.Add(1)
	b.Outlier.Failure(srv, err)
}

type hashKind uint8

const (
	hashNone hashKind = iota
	hashSource
	hashURI
	hashHeader
	hashCookie
)

// NewBackend compiles a backend over servers (state shared through the registry) and takes its
// connection pools from t, so pooled connections survive a reload.
func NewBackend(bc config.Backend, servers []*backend.Server, t *Transport) (*Backend, error) {
	bal, err := balance.New(bc.Algorithm, servers, balance.Options{MaglevTableSize: bc.MaglevTableSize})
	if err != nil {
		return nil, fmt.Errorf("backend %q: %w", bc.Name, err)
	}
	b := &Backend{
		Name:       bc.Name,
		Servers:    servers,
		Balancer:   bal,
		pools:      make(map[*backend.Server]*pool, len(servers)),
		connectTO:  bc.Timeouts.Connect.D(),
		responseTO: bc.Timeouts.Response.D(),
	}
	if b.connectTO <= 0 {
		b.connectTO = 5 * time.Second
	}
	if b.responseTO <= 0 {
		b.responseTO = 60 * time.Second
	}
	b.maxAttempts = bc.MaxAttempts()
	if bc.Retry.Budget.Percent != nil && bc.Retry.Budget.MinPerSecond != nil {
		b.budget = backend.NewRetryBudget(*bc.Retry.Budget.Percent, *bc.Retry.Budget.MinPerSecond)
	}
	for _, st := range bc.Retry.OnStatus {
		if st >= 100 && st < 600 {
			b.retryStatus[st/100] |= 1 << (st % 100)
		}
	}
	switch bc.Algorithm {
	case balance.SourceIPHash:
		b.hashKind = hashSource
	case balance.Hash, balance.Maglev:
		switch k := bc.HashKey; {
		case k == "" || k == "uri":
			b.hashKind = hashURI
		case strings.HasPrefix(k, "header:"):
			b.hashKind, b.hashName = hashHeader, strings.ToLower(k[len("header:"):])
		case strings.HasPrefix(k, "cookie:"):
			b.hashKind, b.hashName = hashCookie, k[len("cookie:"):]
		default:
			return nil, fmt.Errorf("backend %q: hash_key %q: want uri, header:NAME or cookie:NAME", bc.Name, k)
		}
	}
	if bc.Sticky != nil && bc.Sticky.Cookie != "" {
		b.stickyName = bc.Sticky.Cookie
		b.stickyIdx = balance.NewCookieIndex(servers)
	}
	maxIdle := bc.Pool.MaxIdle
	if maxIdle == 0 {
		maxIdle = 256 // config default (defaults.go) for configs built without it
	}
	b.proxyProto = config.ProxyProtocolVersion(bc.ProxyProtocol)
	if b.proxyProto != 0 {
		// A PROXY header names one client for the connection's whole life, so a connection
		// cannot be shared between clients: no pooling (HAProxy makes such connections private).
		maxIdle = -1
	}
	idleTO := bc.Pool.IdleTimeout.D()
	if idleTO <= 0 {
		idleTO = 30 * time.Second
	}
	tlsCfg, tlsKey, err := upstreamTLS(bc)
	if err != nil {
		return nil, err
	}
	for _, s := range servers {
		b.pools[s] = t.pool(s, maxIdle, idleTO, tlsCfg, tlsKey, b.proxyProto != 0)
	}
	if b.up, err = newHTTPUpstream(bc, b.connectTO); err != nil {
		return nil, err
	}
	return b, nil
}

// Transport owns the upstream connection pools, keyed by server identity, across reloads.
type Transport struct {
	mu    sync.Mutex
	pools map[backend.Key]*pool
	stop  chan struct{}
	once  sync.Once
}

// NewTransport starts a transport with a janitor that closes expired idle connections.
func NewTransport() *Transport {
	t := &Transport{pools: make(map[backend.Key]*pool), stop: make(chan struct{})}
	go t.janitor()
	return t
}

// pool returns the server's pool with these settings. When tlsKey differs from the pool's,
// tlsCfg (nil: plaintext) replaces its TLS configuration and the idle connections made under the
// old one are closed, since a reload changed what the server speaks or how it is verified.
// deferTLS puts the handshake after the PROXY header (see upConn.startTLS).
func (t *Transport) pool(s *backend.Server, maxIdle int, idleTO time.Duration, tlsCfg *tls.Config, tlsKey string, deferTLS bool) *pool {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.pools[s.Key]
	if !ok {
		p = &pool{addr: s.Address}
		t.pools[s.Key] = p
	}
	p.mu.Lock()
	p.maxIdle, p.idleTimeout = maxIdle, idleTO
	changed := p.tlsKey != tlsKey
	if changed {
		p.tls, p.tlsKey, p.tlsGen = serverTLS(tlsCfg, s.Address), tlsKey, tlsGens.Add(1)
	}
	p.deferTLS = deferTLS
	p.mu.Unlock()
	if changed && ok {
		p.closeIdle(0)
	}
	return p
}

// Retain closes and forgets the pools of servers not in keep (after a reload removed them).
func (t *Transport) Retain(keep map[backend.Key]bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, p := range t.pools {
		if !keep[k] {
			p.closeIdle(0)
			delete(t.pools, k)
		}
	}
}

// Close closes every idle pooled connection and stops the janitor.
func (t *Transport) Close() {
	t.once.Do(func() { close(t.stop) })
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range t.pools {
		p.closeIdle(0)
		p.mu.Lock()
		p.maxIdle = -1
		p.mu.Unlock()
	}
}

func (t *Transport) janitor() {
	tk := time.NewTicker(2 * time.Second)
	defer tk.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tk.C:
		}
		t.mu.Lock()
		ps := make([]*pool, 0, len(t.pools))
		for _, p := range t.pools {
			ps = append(ps, p)
		}
		t.mu.Unlock()
		for _, p := range ps {
			p.closeIdle(-1)
		}
	}
}

// pool keeps idle keep-alive connections to one server, most recently used first.
type pool struct {
	addr        string
	mu          sync.Mutex
	idle        []*upConn
	maxIdle     int
	idleTimeout time.Duration
	tls         *tls.Config // nil: plaintext
	tlsKey      string      // identifies tls's settings (see upstreamTLS)
	tlsGen      uint64      // number of tls (see tlsGens)
	deferTLS    bool        // handshake after the PROXY header, not in dial
}

// upConn is one connection to a server with its buffers.
type upConn struct {
	conn net.Conn // what HTTP is read from and written to: tcp, or a tls.Conn over it
	tcp  net.Conn // the TCP connection
	// pendingTLS is the configuration of a TLS handshake still to run, after the PROXY header.
	pendingTLS *tls.Config
	tlsGen     uint64 // the pool's tlsGen when dialed
	rd         reader
	bw         *writer
	w          writer
	p          *pool
	idleAt     time.Time
	rdl        time.Time // read deadline currently set
	reused     bool
}

// sendHead sends the buffered request head of a request without a body. To a plain TCP server
// the head goes with the first read of the answer, in one poller call (rawio.Conn.WriteRead), so
// that read does not first fail with EAGAIN; with an outbox, the outbox writes it together with
// the requests of other streams of the same client (rawio.Outbox). The writer's buffer holds the
// bytes until that read, and write errors come back from it. Otherwise it is a Flush.
func (uc *upConn) sendHead(out *rawio.Outbox) error {
	w := &uc.w
	if w.raw == nil || uc.rd.raw != w.raw || uc.bw != w || uc.rd.buffered() > 0 || w.err != nil || w.n == 0 {
		return uc.bw.Flush()
	}
	uc.rd.send, uc.rd.outbox = (*w.bp)[:w.n], out
	w.n = 0
	return nil
}

// armRead makes sure a read deadline no earlier than now+d/2 and no later than now+d is set,
// touching the timer only when the current one is too close. Callers re-arm exactly when an early
// deadline fires, so the timeout is still exact while most requests skip the timer update.
func (uc *upConn) armRead(now time.Time, d time.Duration) {
	if uc.rdl.Sub(now) < d/2 || uc.rdl.Sub(now) > d {
		uc.rdl = now.Add(d)
		uc.conn.SetReadDeadline(uc.rdl)
	}
}

// get returns an idle connection, or nil. live asks for a liveness check (one non-blocking peek),
// used for requests that must not be retried on a connection the server has closed meanwhile.
func (p *pool) get(live bool, now time.Time) *upConn {
	for {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			return nil
		}
		uc := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		to := p.idleTimeout
		p.mu.Unlock()
		if now.Sub(uc.idleAt) >= to || live && !uc.alive() {
			uc.close()
			continue
		}
		uc.reused = true
		return uc
	}
}

// dial opens a new connection to the server, with the TLS handshake when the server speaks TLS
// (within the same connect timeout), unless the handshake must wait for a PROXY header.
func (p *pool) dial(ctx context.Context, timeout time.Duration) (*upConn, error) {
	p.mu.Lock()
	cfg, gen, deferTLS := p.tls, p.tlsGen, p.deferTLS
	p.mu.Unlock()
	start := time.Now()
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, err
	}
	uc := &upConn{conn: c, tcp: c, p: p, tlsGen: gen}
	uc.rd.conn = c
	uc.rd.pool = &upBufs
	uc.w.conn = c
	uc.bw = &uc.w
	switch {
	case cfg == nil:
		uc.rd.raw = rawio.New(c)
		uc.w.raw = uc.rd.raw
	case deferTLS:
		uc.pendingTLS = cfg
	default:
		tc, err := clientHandshake(c, cfg, timeout-time.Since(start))
		if err != nil {
			c.Close()
			return nil, err
		}
		uc.useTLS(tc)
	}
	return uc, nil
}

// put returns a connection for reuse, or closes it when the pool is full.
func (p *pool) put(uc *upConn, now time.Time) {
	if uc.rd.buffered() > 0 || uc.rd.send != nil || uc.rd.raw != nil && !uc.rd.raw.Reusable() {
		uc.close() // the server sent more than the response: not safe to reuse
		return
	}
	uc.idleAt = now
	// Idle pooled connections keep no buffers.
	uc.rd.release()
	uc.w.release()
	p.mu.Lock()
	if len(p.idle) < p.maxIdle && uc.tlsGen == p.tlsGen {
		p.idle = append(p.idle, uc)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	uc.close()
}

// closeIdle closes idle connections older than the pool's idle timeout (age < 0) or all (age 0).
func (p *pool) closeIdle(age time.Duration) {
	now := time.Now()
	p.mu.Lock()
	if age < 0 {
		age = p.idleTimeout
	}
	var closing []*upConn
	kept := p.idle[:0]
	for _, uc := range p.idle {
		if age == 0 || now.Sub(uc.idleAt) >= age {
			closing = append(closing, uc)
		} else {
			kept = append(kept, uc)
		}
	}
	for i := len(kept); i < len(p.idle); i++ {
		p.idle[i] = nil
	}
	p.idle = kept
	p.mu.Unlock()
	for _, uc := range closing {
		uc.close()
	}
}

func (uc *upConn) close() {
	uc.conn.Close()
	uc.rd.send, uc.rd.outbox = nil, nil
	uc.w.n = 0
	uc.w.release()
	uc.rd.r, uc.rd.w = 0, 0
	uc.rd.release()
}

// Cancel closes the connection for a client that canceled its request: a blocked read or write
// returns at once, and the connection is not reused.
func (uc *upConn) Cancel() {
	uc.tcp.Close()
	uc.conn.Close()
}

// alive peeks at the socket without blocking: a closed or chatty idle connection is not reusable.
// On TLS it peeks at the TCP socket too: a pending close_notify counts as chatty.
func (uc *upConn) alive() bool {
	sc, ok := uc.tcp.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	ok = false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, e := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ok = n < 0 && (errors.Is(e, syscall.EAGAIN) || errors.Is(e, syscall.EWOULDBLOCK))
		return true
	})
	return err == nil && ok
}
