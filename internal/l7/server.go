// Package l7 is waage's HTTP/1.1 data path: a strict request parser, the router and its matchers,
// header rewriting, and the proxy loop that moves requests and bodies between clients and pooled
// server connections.
//
// The hot path is hand-written rather than net/http + httputil.ReverseProxy, which measured at
// about a third of HAProxy's throughput on the same machine: one goroutine per client connection
// parses heads in place (no per-request allocation), forwards over pooled keep-alive connections,
// and moves large bodies with splice. Idle connections give their buffers back to a pool.
package l7

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/waage/waage/internal/backend"
	"github.com/waage/waage/internal/guard"
	"github.com/waage/waage/internal/listener"
	"github.com/waage/waage/internal/proxyproto"
	"github.com/waage/waage/internal/rawio"
	"github.com/waage/waage/internal/tlsx"
)

// Handler is one HTTP frontend's compiled, immutable configuration. A reload builds a new Handler
// and swaps it into the Server; requests already running finish on the one they started with.
type Handler struct {
	Name   string
	Router *Router
	// HeaderTimeout bounds reading a request head once its first byte arrived (408 after).
	HeaderTimeout time.Duration
	// IdleTimeout bounds the wait for the next request on a keep-alive connection, and each gap
	// while a request body streams in or a response streams out to the client.
	IdleTimeout time.Duration
	// TunnelTimeout bounds inactivity on upgraded (WebSocket) connections.
	TunnelTimeout time.Duration
	// MaxHeaderBytes bounds a request head (431 beyond it).
	MaxHeaderBytes int
	// Scheme is "http" or "https", for X-Forwarded-Proto and Forwarded.
	Scheme string
	// TLS, when not nil, terminates TLS on every connection (after the PROXY header, if any)
	// before HTTP is read. Its NextProtos decide whether HTTP/2 is offered (see ALPN).
	TLS *tls.Config
	// ClientSubject, when not nil, names the verified client certificate of a TLS connection;
	// the name goes to servers in X-Client-Cert-Subject. nil: no client certificates asked.
	ClientSubject func(*tls.ConnectionState) string
	// RedirectHTTPS answers every request with 308 to the same URL on https, except ACME
	// HTTP-01 challenges (/.well-known/acme-challenge/), which are routed as usual.
	RedirectHTTPS bool
	// HTTPSPort is the port redirect_https points to; 0 or 443 leaves it out of the URL.
	HTTPSPort int
	// AccessLog receives one entry per request; nil disables it.
	AccessLog *AccessLog
	// Logger receives errors (upstream failures, bad requests at debug level).
	Logger *slog.Logger
	// H2C serves HTTP/2 with prior knowledge beside HTTP/1.1 on a plaintext frontend.
	H2C bool
	// ACMEHTTP01, when set, answers ACME HTTP-01 challenges on plaintext connections: it returns
	// the key authorization for a token under /.well-known/acme-challenge/, or false for a token
	// that is not pending (the request is then routed as usual).
	ACMEHTTP01 func(token string) (string, bool)
	// Guard admits connections (access lists, per-source caps and rates, max_connections) and
	// counts every refusal; nil: none (tests that build a Handler themselves).
	Guard *guard.Guard
	// Limits are the frontend's per-request limits; a route's Limits replace them. nil: none.
	Limits *RequestLimits
	// ProxyTrusted, when not nil, makes every connection start with a PROXY protocol header
	// (v1 or v2) whose client address then stands for the connection's (X-Forwarded-For,
	// source matching, hashing). Connections from other sources are closed at once.
	ProxyTrusted []netip.Prefix
}

func (h *Handler) headerTimeout() time.Duration {
	if h.HeaderTimeout > 0 {
		return h.HeaderTimeout
	}
	return 10 * time.Second
}

func (h *Handler) idleTimeout() time.Duration {
	if h.IdleTimeout > 0 {
		return h.IdleTimeout
	}
	return 60 * time.Second
}

func (h *Handler) tunnelTimeout() time.Duration {
	if h.TunnelTimeout > 0 {
		return h.TunnelTimeout
	}
	return time.Hour
}

func (h *Handler) maxHeader() int {
	if h.MaxHeaderBytes > 0 && h.MaxHeaderBytes <= maxHeadBytes {
		return h.MaxHeaderBytes
	}
	return maxHeadBytes
}

func (h *Handler) logger() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return slog.Default()
}

// Stats are a frontend's request counters. They are atomics recorded once per request (see
// clientConn.finishLog) and read by the metrics scrape, so metrics cost the data path no lock.
type Stats struct {
	Connections atomic.Int64     // open client connections
	Accepted    atomic.Uint64    // client connections accepted
	Requests    atomic.Uint64    // requests answered (by a server or by waage)
	Status      [6]atomic.Uint64 // by class: index 1 = 1xx ... 5 = 5xx
	// BytesIn and BytesOut count request and response body bytes.
	BytesIn, BytesOut atomic.Uint64
	// Duration is the request duration, from the request head to the last response byte.
	Duration backend.Histogram
	// ProxyRejected counts connections closed for an untrusted source or a bad PROXY header.
	ProxyRejected atomic.Uint64
}

// Server serves HTTP/1.1 client connections for one frontend.
type Server struct {
	h     atomic.Pointer[Handler]
	Stats Stats

	mu        sync.Mutex
	conns     map[*clientConn]struct{}
	listeners listener.Set
	closing   atomic.Bool
	stop      chan struct{} // closed by Shutdown: ends waits for a place under max_connections
	stopOnce  sync.Once
	wg        sync.WaitGroup
}

// NewServer returns a server that uses h until SetHandler replaces it.
func NewServer(h *Handler) *Server {
	s := &Server{conns: make(map[*clientConn]struct{}), stop: make(chan struct{})}
	s.h.Store(h)
	return s
}

// SetHandler swaps the configuration; the next request on every connection uses it.
func (s *Server) SetHandler(h *Handler) { s.h.Store(h) }

// Handler returns the current configuration.
func (s *Server) Handler() *Handler { return s.h.Load() }

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = listener.ErrClosed

// Detach stops accepting on ln without closing it, and returns once Serve(ln) has returned, so a
// reload can hand the listening socket to another frontend without refusing a connection.
func (s *Server) Detach(ln net.Listener) { s.listeners.Detach(ln) }

// Serve accepts connections on ln until the listener fails, Detach(ln) (nil) or Shutdown
// (ErrServerClosed).
func (s *Server) Serve(ln net.Listener) error {
	return s.listeners.Serve(ln, s.closing.Load, s.ServeConn, func(err error, retryIn time.Duration) {
		// Out of file descriptors and the like: back off instead of spinning.
		h := s.h.Load()
		h.logger().Warn("accept failed; retrying", "frontend", h.Name, "err", err, "retry_in", retryIn)
	})
}

// ServeConn serves one accepted connection in its own goroutine.
func (s *Server) ServeConn(c net.Conn) {
	cc := &clientConn{s: s, c: c}
	cc.rd.conn = c
	cc.rd.pool = &smallBufs
	cc.w.conn = c
	if s.h.Load().TLS == nil {
		// Raw system calls only on plaintext: a TLS connection is read and written through
		// its tls.Conn (see handshake).
		cc.rd.raw = rawio.New(c)
		cc.w.raw = cc.rd.raw
	}
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		cc.remote, cc.remotePort = ap.Addr().Unmap(), ap.Port()
	}
	if !cc.admit(s.h.Load()) {
		c.Close()
		return
	}
	cc.remoteIP = cc.remote.AppendTo(nil)
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		cc.release()
		c.Close()
		return
	}
	s.conns[cc] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	s.Stats.Connections.Add(1)
	s.Stats.Accepted.Add(1)
	cc.busy.Store(true)
	go cc.serve()
}

// Shutdown stops accepting, closes idle connections, lets requests in flight finish and closes
// their connections after them. When ctx ends first, the remaining connections are closed.
func (s *Server) Shutdown(ctx context.Context) error {
	// Under mu: a ServeConn that saw closing false has done its wg.Add before Wait starts.
	s.mu.Lock()
	s.closing.Store(true)
	s.mu.Unlock()
	s.stopOnce.Do(func() { close(s.stop) })
	s.listeners.CloseAll()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		idleParker.closeServer(s)
		s.mu.Lock()
		for cc := range s.conns {
			if !cc.busy.Load() {
				cc.c.SetReadDeadline(time.Now()) // wake the idle wait
			}
		}
		s.mu.Unlock()
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			// Cut the clients off. A goroutine still waiting on its server ends by itself when
			// that answers or times out; its write to the closed client fails.
			s.mu.Lock()
			for cc := range s.conns {
				cc.c.Close()
			}
			s.mu.Unlock()
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// clientConn is one client connection. Its buffers are held only while a request is in progress
// or arrives; a connection idle for longer than idleGrace holds none.
type clientConn struct {
	s      *Server
	c      net.Conn
	rd     reader
	w      writer
	remote netip.Addr
	// remotePort and local complete the connection's addresses for PROXY headers sent to servers
	// (from the client's own PROXY header when there was one).
	remotePort uint16
	local      netip.AddrPort
	started    bool   // the connection's start (PROXY header, TLS handshake) is done
	remoteIP   []byte // remote in text form, for X-Forwarded-For and logs
	// tls is the TLS connection when the frontend terminates TLS (then also c, once the
	// handshake is done); nil on plaintext.
	tls *tls.Conn
	// certSubject is the verified client certificate's subject, sent to servers in
	// X-Client-Cert-Subject; nil without one.
	certSubject []byte
	one         [1]byte
	// rdl is the read deadline currently set (zero: none or unknown); waitStart is when the
	// current idle wait began (zero while a request is in progress).
	rdl       time.Time
	waitStart time.Time
	resumed   bool // set by the parker: the socket is readable
	// linger asks close to drain what the client may still be sending (a request body nobody
	// read) before closing, so its unread bytes do not turn the close into a reset that destroys
	// the response in flight.
	linger bool
	wdl    time.Time // write deadline currently set
	busy   atomic.Bool
	// ticket and slot are what the frontend's guard gave the connection (admit); served is
	// set once a request was read, so that only the first waits at most the header timeout.
	ticket *guard.Ticket
	slot   func()
	served bool
}

// idleGrace is how long an idle keep-alive connection keeps its buffers before giving them back.
const idleGrace = time.Second

func (cc *clientConn) writer() *writer { return &cc.w }

func (cc *clientConn) releaseWriter() { cc.w.release() }

// armWrite sets the write deadline to idle from now, lazily: only when less than half of it is left,
// which saves a timer update per request on busy connections.
func (cc *clientConn) armWrite(now time.Time, idle time.Duration) {
	if cc.wdl.Sub(now) < idle/2 {
		cc.wdl = now.Add(idle)
		cc.c.SetWriteDeadline(cc.wdl)
	}
}

// serve runs the connection's request loop. It returns without closing the connection when the
// connection was parked; the parker calls serve again when the next request arrives.
func (cc *clientConn) serve() {
	// serve runs again when a parked connection wakes up; the start happens once.
	if !cc.started {
		cc.started = true
		switch cc.start(cc.s.h.Load()) {
		case startClose:
			cc.close()
			return
		case startTaken:
			return
		}
	}
	for {
		switch cc.awaitRequest(cc.s.h.Load()) {
		case waitParked:
			return
		case waitClosed:
			cc.close()
			return
		}
		// Load the configuration only now: a reload during the idle wait applies to this request.
		h := cc.s.h.Load()
		// h2c (HTTP/2 with prior knowledge, plaintext only) is recognised here, on the first
		// bytes of the connection's first request, before they are parsed as HTTP/1.1.
		if h.H2C && cc.tls == nil && cc.isH2CPreface(h) {
			cc.serveH2(cc.c, h) // takes the connection over and closes it
			return
		}
		ex := exchanges.Get().(*exchange)
		keep := cc.handle(h, ex)
		ex.clear()
		exchanges.Put(ex)
		if !keep || cc.s.closing.Load() {
			cc.close()
			return
		}
	}
}

type startResult uint8

const (
	startHTTP1 startResult = iota // serve HTTP/1.1 requests
	startClose                    // close the connection
	startTaken                    // another protocol served the connection and closed it
)

// start runs what comes before the first request, in this order: the PROXY header (the client's
// address, sent in plaintext before anything else), the TLS handshake, then the choice of HTTP
// version by ALPN.
func (cc *clientConn) start(h *Handler) startResult {
	if h.ProxyTrusted != nil {
		if !cc.readProxyHeader(h) {
			cc.s.Stats.ProxyRejected.Add(1)
			return startClose
		}
		// The access lists and per-source limits apply to the client the header names.
		if h.Guard != nil {
			t, r := h.Guard.Admit(cc.remote, time.Now())
			if r != guard.Admitted {
				return startClose
			}
			cc.ticket = t
		}
	}
	if h.TLS == nil {
		return startHTTP1
	}
	if !cc.handshake(h) {
		return startClose
	}
	switch cc.tls.ConnectionState().NegotiatedProtocol {
	case "h2":
		// serveH2 takes the connection over and closes it (cc.close) when it is done.
		cc.serveH2(cc.tls, h)
		return startTaken
	case tlsx.ACMETLS1Protocol:
		// An ACME tls-alpn-01 validation: the handshake was all it wanted.
		return startClose
	}
	return startHTTP1
}

// readProxyHeader reads the PROXY protocol header that a trusted source must send first, and
// takes the client address from it. Bytes that came with the header start the first request.
func (cc *clientConn) readProxyHeader(h *Handler) bool {
	local, _ := netip.ParseAddrPort(cc.c.LocalAddr().String())
	cc.c.SetReadDeadline(time.Now().Add(h.headerTimeout()))
	var buf [256]byte
	client, dst, rest, err := proxyproto.Accept(cc.c, buf[:], h.ProxyTrusted, netip.AddrPortFrom(cc.remote, cc.remotePort), local)
	if err != nil {
		h.logger().Debug("PROXY header refused; closed", "frontend", h.Name, "client", cc.remote, "err", err)
		return false
	}
	cc.remote, cc.remotePort, cc.local = client.Addr(), client.Port(), dst
	cc.remoteIP = cc.remote.AppendTo(cc.remoteIP[:0])
	if len(rest) > 0 {
		if h.TLS != nil {
			// The bytes after the header start the TLS ClientHello: the handshake reads them
			// first. They are copied, since buf lives on this stack.
			cc.setConn(&prefixConn{Conn: cc.c, pre: append([]byte(nil), rest...)})
			return true
		}
		cc.rd.acquire()
		cc.rd.w += copy((*cc.rd.bp)[cc.rd.w:], rest)
	}
	return true
}

func (cc *clientConn) close() {
	cc.w.Flush()
	if cc.linger {
		cc.lingerClose()
	}
	cc.c.Close()
	cc.w.n = 0
	cc.w.release()
	cc.rd.r, cc.rd.w = 0, 0
	cc.rd.release()
	cc.s.Stats.Connections.Add(-1)
	cc.release()
	cc.s.mu.Lock()
	delete(cc.s.conns, cc)
	cc.s.mu.Unlock()
	cc.s.wg.Done()
}

// admit asks the frontend's guard to let the new connection in: it waits for a place under
// max_connections (holding up the accept loop, so the kernel's backlog takes the rest), then,
// unless a PROXY header is still to name the real client, applies the access lists and the
// per-source limits. False: close the connection at once.
func (cc *clientConn) admit(h *Handler) bool {
	g := h.Guard
	if g == nil {
		return true
	}
	if cc.slot = g.Slot(cc.s.stop); cc.slot == nil {
		return false
	}
	if h.ProxyTrusted != nil {
		return true
	}
	t, r := g.Admit(cc.remote, time.Now())
	if r != guard.Admitted {
		cc.release()
		return false
	}
	cc.ticket = t
	return true
}

// release gives back what admit took.
func (cc *clientConn) release() {
	cc.ticket.Done()
	cc.ticket = nil
	if cc.slot != nil {
		cc.slot()
		cc.slot = nil
	}
}

// Lingering close, as nginx's lingering_close: after the response, half-close, then discard what
// the client still sends for at most lingerTime, giving up after lingerQuiet without a byte.
const (
	lingerTime  = 2 * time.Second
	lingerQuiet = 500 * time.Millisecond
)

func (cc *clientConn) lingerClose() {
	c := cc.c
	if cc.tls != nil {
		// close_notify first, then the TCP half-close; what the client still sends is discarded
		// undecrypted from the socket.
		if cc.tls.CloseWrite() != nil {
			return
		}
		c = cc.tls.NetConn()
	}
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	end := time.Now().Add(lingerTime)
	bp := smallBufs.Get().(*[]byte)
	defer smallBufs.Put(bp)
	for {
		now := time.Now()
		if !now.Before(end) {
			return
		}
		d := now.Add(lingerQuiet)
		if d.After(end) {
			d = end
		}
		c.SetReadDeadline(d)
		if _, err := c.Read(*bp); err != nil {
			return
		}
	}
}

type waitResult uint8

const (
	waitReady  waitResult = iota // request bytes are buffered
	waitParked                   // handed to the parker; the goroutine must end
	waitClosed                   // closed, timed out or shutting down
)

// maxGraceHolders bounds how many idle connections may keep their read buffer and goroutine during
// idleGrace (about 20 KiB each). Beyond it, idle connections park at once, so memory stays flat
// with any number of idle clients while busy keep-alive connections skip the parking round trip.
const maxGraceHolders = 256

var graceHolders atomic.Int32

// awaitRequest waits for the first bytes of the next request. A connection that stays idle past
// idleGrace (or at once, when too many are already waiting) gives its buffers back and is parked:
// its goroutine ends, and the parker resumes it when data arrives or closes it at the idle timeout.
func (cc *clientConn) awaitRequest(h *Handler) waitResult {
	if cc.rd.buffered() > 0 {
		return waitReady
	}
	cc.busy.Store(false)
	if cc.s.closing.Load() {
		return waitClosed
	}
	idle := h.idleTimeout()
	if !cc.served {
		// A new connection has the header timeout for its whole first request head, from
		// its start, as HAProxy's timeout http-request: slow or silent connections cannot pin
		// the server for the longer keep-alive wait.
		idle = min(idle, h.headerTimeout())
	}
	now := time.Now()
	if cc.waitStart.IsZero() {
		cc.waitStart = now
	}
	if cc.resumed {
		// The parker saw the socket readable: read now (data or EOF is waiting).
		cc.resumed = false
		cc.rdl = cc.waitStart.Add(idle)
		cc.c.SetReadDeadline(cc.rdl)
		if err := cc.rd.fill(maxHeadBytes); err != nil {
			return waitClosed
		}
		cc.busy.Store(true)
		cc.waitStart = time.Time{}
		return waitReady
	}
	// The write buffer is empty between responses; only the read buffer waits with the connection.
	cc.releaseWriter()
	if graceHolders.Add(1) <= maxGraceHolders {
		grace := idleGrace
		if idle < grace {
			grace = idle
		}
		// The deadline is moved only when less than half the grace is left; a deadline that fires
		// early just parks the connection a little sooner.
		if cc.rdl.Sub(now) < grace/2 {
			cc.rdl = now.Add(grace)
			cc.c.SetReadDeadline(cc.rdl)
		}
		err := cc.rd.fill(maxHeadBytes)
		graceHolders.Add(-1)
		if err == nil {
			cc.busy.Store(true)
			cc.waitStart = time.Time{}
			return waitReady
		}
		if !isTimeout(err) || cc.s.closing.Load() {
			return waitClosed
		}
	} else {
		graceHolders.Add(-1)
	}
	cc.rd.release()
	cc.releaseWriter()
	deadline := cc.waitStart.Add(idle)
	if !deadline.After(time.Now()) {
		return waitClosed
	}
	// A TLS connection is never parked: the parker waits on the socket, but the tls.Conn may
	// already hold the next request, decrypted, with nothing more to come on the socket.
	if cc.tls == nil {
		// Deadlines are the parker's business now; clear ours so the resumed read is not cut short.
		cc.rdl = time.Time{}
		cc.c.SetReadDeadline(cc.rdl)
		if idleParker.park(cc, deadline) {
			return waitParked
		}
	}
	// No parking here: wait in this goroutine, without buffers, with a one-byte read (on TLS,
	// the tls.Conn keeps the rest of the record it decrypted for the next read).
	cc.rdl = time.Time{}
	cc.c.SetReadDeadline(deadline)
	if n, _ := cc.c.Read(cc.one[:]); n == 0 {
		return waitClosed
	}
	cc.busy.Store(true)
	cc.waitStart = time.Time{}
	cc.rd.acquire()
	(*cc.rd.bp)[0] = cc.one[0]
	cc.rd.w = 1
	return waitReady
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
