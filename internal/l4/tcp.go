package l4

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/waage/waage/internal/guard"
	"github.com/waage/waage/internal/listener"
	"github.com/waage/waage/internal/proxyproto"
	"github.com/waage/waage/internal/relay"
	"github.com/waage/waage/internal/tlsx"
)

// Route sends connections whose ClientHello (or source) matches to a backend. Empty lists match
// everything.
type Route struct {
	Name    string
	Backend *Backend
	// SNI names: exact ("a.example.com") or wildcard ("*.example.com"), lower case.
	SNI []string
	// ALPN matches when the client offers any of these protocols.
	ALPN []string
	// Source matches the client's address.
	Source []netip.Prefix
}

func (r *Route) matches(h *ClientHello, client netip.Addr) bool {
	if len(r.Source) > 0 && !inPrefixes(r.Source, client) {
		return false
	}
	if len(r.SNI) > 0 {
		if h == nil || !matchSNI(r.SNI, h.ServerName) {
			return false
		}
	}
	if len(r.ALPN) > 0 {
		if h == nil || !anyIn(r.ALPN, h.ALPN) {
			return false
		}
	}
	return true
}

func inPrefixes(ps []netip.Prefix, a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// matchSNI matches name against exact names and "*.suffix" wildcards, which (as in TLS
// certificates) cover exactly one more label.
func matchSNI(patterns []string, name string) bool {
	for _, p := range patterns {
		if p == name {
			return true
		}
		if len(p) > 2 && p[0] == '*' && p[1] == '.' {
			suffix := p[1:]
			if len(name) > len(suffix) && name[len(name)-len(suffix):] == suffix {
				label := name[:len(name)-len(suffix)]
				if label != "" && !containsByte(label, '.') {
					return true
				}
			}
		}
	}
	return false
}

func containsByte(s string, c byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return true
		}
	}
	return false
}

func anyIn(want, have []string) bool {
	for _, w := range want {
		for _, h := range have {
			if w == h {
				return true
			}
		}
	}
	return false
}

// TCPHandler is one tcp frontend's compiled configuration. A reload swaps it; connections
// already proxied keep the backend they started with.
type TCPHandler struct {
	Name string
	// Routes are tried in order; Default takes the rest (nil: close the connection).
	Routes  []*Route
	Default *Backend
	// TLS terminates TLS when set; routes then match the negotiated SNI and ALPN.
	TLS *tls.Config
	// Peek reads the ClientHello without terminating, for routes on SNI or ALPN.
	Peek bool
	// ProxyTrusted, when set, makes every connection start with a PROXY header and accepts
	// connections only from these sources.
	ProxyTrusted []netip.Prefix
	// HandshakeTimeout bounds the PROXY header, the ClientHello peek and the TLS handshake.
	HandshakeTimeout time.Duration
	// IdleTimeout closes a connection when no byte moved either way for this long.
	IdleTimeout time.Duration
	Logger      *slog.Logger
	// AccessLog receives one Session per connection when it ends; nil: none.
	AccessLog SessionLog
	// Guard admits connections (access lists, per-source caps and rates, max_connections) and
	// counts refusals; nil: none.
	Guard *guard.Guard
}

// TCPStats counts what happened to a tcp frontend's connections.
type TCPStats struct {
	Active    atomic.Int64  // open connections
	BytesIn   atomic.Uint64 // from clients to servers, counted when a connection ends
	BytesOut  atomic.Uint64 // from servers to clients, counted when a connection ends
	Accepted  atomic.Uint64
	Proxied   atomic.Uint64
	NotTLS    atomic.Uint64 // first bytes were not a TLS ClientHello (peek mode)
	BadHello  atomic.Uint64 // a malformed ClientHello
	Rejected  atomic.Uint64 // untrusted source or bad PROXY header
	NoBackend atomic.Uint64 // no route matched and no default, or no server available
	TLSFailed atomic.Uint64 // TLS handshake failed (terminating mode)
	Timeouts  atomic.Uint64 // the ClientHello did not arrive within the handshake timeout
}

// TCPServer serves tcp frontends: it accepts on any number of listeners and proxies each
// connection with the current TCPHandler.
type TCPServer struct {
	handler atomic.Pointer[TCPHandler]
	Stats   TCPStats

	listeners listener.Set
	closing   atomic.Bool
	stop      chan struct{} // closed by Shutdown: ends waits for a place under max_connections
	stopOnce  sync.Once
	mu        sync.Mutex
	conns     map[*tcpConn]struct{}
	wg        sync.WaitGroup
}

// NewTCPServer returns a server using h.
func NewTCPServer(h *TCPHandler) *TCPServer {
	s := &TCPServer{conns: map[*tcpConn]struct{}{}, stop: make(chan struct{})}
	s.handler.Store(h)
	return s
}

// SetHandler swaps the configuration for new connections.
func (s *TCPServer) SetHandler(h *TCPHandler) { s.handler.Store(h) }

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = listener.ErrClosed

// Serve accepts connections on ln until it fails, Detach(ln) (nil) or Shutdown
// (ErrServerClosed).
func (s *TCPServer) Serve(ln net.Listener) error {
	return s.listeners.Serve(ln, s.closing.Load, s.serveConn, func(err error, retryIn time.Duration) {
		h := s.handler.Load()
		h.Logger.Warn("accept failed; retrying", "frontend", h.Name, "err", err, "retry_in", retryIn)
	})
}

func (s *TCPServer) serveConn(c net.Conn) {
	s.Stats.Accepted.Add(1)
	tc := &tcpConn{srv: s, c: c}
	h := s.handler.Load()
	if g := h.Guard; g != nil {
		// A place under max_connections first: waiting here holds up the accept loop, so the
		// kernel's backlog takes the rest. Then, unless a PROXY header is still to name the
		// client, the access lists and per-source limits.
		if tc.slot = g.Slot(s.stop); tc.slot == nil {
			c.Close()
			return
		}
		if h.ProxyTrusted == nil && !tc.admit(g, addrPort(c.RemoteAddr()).Addr()) {
			c.Close()
			return
		}
	}
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		tc.release()
		c.Close()
		return
	}
	s.conns[tc] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go tc.serve(s.handler.Load())
}

// Detach stops serving ln without closing it, so another server can take it over (a reload
// that moves an address to another frontend). It returns once the accept loop let go.
func (s *TCPServer) Detach(ln net.Listener) { s.listeners.Detach(ln) }

// Shutdown stops accepting, waits for the connections to finish until ctx ends, then closes
// the rest.
func (s *TCPServer) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing.Store(true)
	s.mu.Unlock()
	s.stopOnce.Do(func() { close(s.stop) })
	s.listeners.CloseAll()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for tc := range s.conns {
		tc.closeAll()
	}
	s.mu.Unlock()
	<-done
	return ctx.Err()
}

// tcpConn is one proxied connection.
type tcpConn struct {
	srv      *TCPServer
	c        net.Conn // the client connection (a *tls.Conn when terminating)
	mu       sync.Mutex
	upstream net.Conn
	session  *relay.Session // once relay took the sockets over
	closed   bool
	// ticket and slot are what the frontend's guard gave the connection.
	ticket *guard.Ticket
	slot   func()
}

// admit applies the guard's access lists and per-source limits to client; false: refused.
func (tc *tcpConn) admit(g *guard.Guard, client netip.Addr) bool {
	t, r := g.Admit(client, time.Now())
	if r != guard.Admitted {
		tc.release()
		return false
	}
	tc.ticket = t
	return true
}

// release gives back what the guard gave the connection.
func (tc *tcpConn) release() {
	tc.ticket.Done()
	tc.ticket = nil
	if tc.slot != nil {
		tc.slot()
		tc.slot = nil
	}
}

func (tc *tcpConn) isClosed() bool {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return tc.closed
}

func (tc *tcpConn) closeAll() {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	tc.closed = true
	tc.c.Close()
	if tc.upstream != nil {
		tc.upstream.Close()
	}
	if tc.session != nil {
		tc.session.Close()
	}
}

// setSession records that relay took the sockets over, so closeAll ends the session.
func (tc *tcpConn) setSession(s *relay.Session) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	tc.session = s
	if tc.closed {
		s.Close()
	}
}

func (tc *tcpConn) done() {
	tc.release()
	tc.srv.mu.Lock()
	delete(tc.srv.conns, tc)
	tc.srv.mu.Unlock()
	tc.srv.wg.Done()
}

func (tc *tcpConn) serve(h *TCPHandler) {
	defer tc.done()
	st := &tc.srv.Stats
	st.Active.Add(1)
	client := addrPort(tc.c.RemoteAddr())
	sess := Session{Start: time.Now(), Transport: "tcp", Client: client, Frontend: h.Name, Termination: TermError}
	defer tc.finish(h, &sess)
	defer func() {
		if p := recover(); p != nil {
			h.Logger.Error("tcp connection panicked", "frontend", h.Name, "panic", p, "stack", string(debug.Stack()))
		}
	}()
	defer tc.c.Close()
	local := addrPort(tc.c.LocalAddr())
	var prefix []byte // bytes read from the client that the server must get first
	deadline := time.Now().Add(h.HandshakeTimeout)

	if h.ProxyTrusted != nil {
		tc.c.SetReadDeadline(deadline)
		var err error
		client, local, prefix, err = proxyproto.Accept(tc.c, make([]byte, 256), h.ProxyTrusted, client, local)
		sess.Client = client
		if err != nil {
			st.Rejected.Add(1)
			sess.Termination = TermRejected
			h.Logger.Debug("PROXY header refused", "frontend", h.Name, "client", client, "err", err)
			return
		}
		if g := h.Guard; g != nil && !tc.admit(g, client.Addr()) {
			sess.Termination = TermRejected
			return
		}
	}

	var hello *ClientHello
	var plainSrc net.Conn = tc.c
	switch {
	case h.TLS != nil:
		if len(prefix) > 0 {
			plainSrc = &prefixConn{Conn: tc.c, prefix: prefix}
			prefix = nil
		}
		tlsConn := tls.Server(plainSrc, h.TLS)
		tlsConn.SetDeadline(deadline)
		if err := tlsConn.Handshake(); err != nil {
			st.TLSFailed.Add(1)
			sess.Termination = TermTLSFailed
			h.Logger.Debug("TLS handshake failed", "frontend", h.Name, "client", client, "err", err)
			return
		}
		tlsConn.SetDeadline(time.Time{})
		cs := tlsConn.ConnectionState()
		if cs.NegotiatedProtocol == tlsx.ACMETLS1Protocol {
			sess.Termination = TermACME
			return // an ACME tls-alpn-01 validation: the handshake was all it wanted
		}
		hello = &ClientHello{ServerName: strings.ToLower(cs.ServerName)} // as PeekClientHello; crypto/tls keeps the case
		if cs.NegotiatedProtocol != "" {
			hello.ALPN = []string{cs.NegotiatedProtocol}
		}
		tc.mu.Lock()
		tc.c = tlsConn
		tc.mu.Unlock()
	case h.Peek:
		tc.c.SetReadDeadline(deadline)
		var r io.Reader = tc.c
		if len(prefix) > 0 {
			r = io.MultiReader(bytes.NewReader(prefix), tc.c)
		}
		ch, raw, err := PeekClientHello(r)
		if err != nil {
			switch {
			case errors.Is(err, ErrNotTLS):
				st.NotTLS.Add(1)
				sess.Termination = TermNotTLS
			case errors.Is(err, os.ErrDeadlineExceeded):
				st.Timeouts.Add(1)
				sess.Termination = TermHandshakeTimeout
			default:
				st.BadHello.Add(1)
				sess.Termination = TermBadHello
			}
			h.Logger.Debug("not a TLS ClientHello; closed", "frontend", h.Name, "client", client, "err", err)
			return
		}
		hello = &ch
		prefix = raw
		tc.c.SetReadDeadline(time.Time{})
	default:
		if h.ProxyTrusted != nil {
			tc.c.SetReadDeadline(time.Time{})
		}
	}

	b := h.Default
	for _, r := range h.Routes {
		if r.matches(hello, client.Addr()) {
			b = r.Backend
			break
		}
	}
	if b == nil {
		st.NoBackend.Add(1)
		sess.Termination = TermNoRoute
		h.Logger.Debug("no route for connection; closed", "frontend", h.Name, "client", client)
		return
	}
	sess.Backend = b.Name
	logf := func(msg string, args ...any) {
		h.Logger.Warn(msg, append([]any{"frontend", h.Name}, args...)...)
	}
	up, srv, err := b.dial(context.Background(), "tcp", client, logf)
	if err != nil {
		st.NoBackend.Add(1)
		sess.Termination = dialTermination(err)
		h.Logger.Warn("connection not proxied", "frontend", h.Name, "backend", b.Name, "client", client, "err", err)
		return
	}
	defer b.release(srv)
	sess.Server = srv.Name
	tc.mu.Lock()
	tc.upstream = up
	tc.mu.Unlock()
	defer up.Close()
	// The client's bytes read ahead (a peeked ClientHello) count as sent; the PROXY header not.
	sess.BytesIn = int64(len(prefix))
	defer func() {
		srv.BytesIn.Add(uint64(sess.BytesIn))
		srv.BytesOut.Add(uint64(sess.BytesOut))
	}()
	if b.proxyProto != 0 {
		hdr := proxyproto.For(b.proxyProto, client, local)
		buf, err := hdr.AppendBinary(make([]byte, 0, 64+len(prefix)))
		if err == nil {
			prefix = append(buf, prefix...)
		}
	}
	if len(prefix) > 0 {
		up.SetWriteDeadline(time.Now().Add(h.IdleTimeout))
		if _, err := up.Write(prefix); err != nil {
			srv.Failures.Add(1)
			return
		}
		up.SetWriteDeadline(time.Time{})
	}
	st.Proxied.Add(1)
	tc.mu.Lock()
	cl := tc.c
	tc.mu.Unlock()
	upN, downN, term := proxyCopy(tc, cl, up, h.IdleTimeout)
	sess.BytesIn += upN
	sess.BytesOut = downN
	sess.Termination = term
}

// finish counts a connection that ended in the frontend's stats and writes its access log line.
func (tc *tcpConn) finish(h *TCPHandler, sess *Session) {
	st := &tc.srv.Stats
	st.Active.Add(-1)
	st.BytesIn.Add(uint64(sess.BytesIn))
	st.BytesOut.Add(uint64(sess.BytesOut))
	if h.AccessLog != nil {
		sess.Duration = time.Since(sess.Start)
		h.AccessLog.LogSession(sess)
	}
}

// addrPort converts a net.Addr from a TCP or UDP socket.
func addrPort(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort()
	case *net.UDPAddr:
		return a.AddrPort()
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap
	}
	return netip.AddrPort{}
}

// prefixConn is a net.Conn whose first reads return prefix (bytes already read from it).
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}
