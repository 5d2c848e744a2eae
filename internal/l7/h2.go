package l7

import (
	"bytes"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/waage/waage/internal/guard"
	"github.com/waage/waage/internal/h2srv"
	"github.com/waage/waage/internal/rawio"
	"golang.org/x/net/http2"
)

// h2Preface is what every HTTP/2 client sends first (RFC 9113 section 3.4). A plaintext
// connection that starts with it speaks h2c with prior knowledge; no HTTP/1.1 request can start
// with "PRI * HTTP/2.0", since the parser refuses that version with 505.
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// HTTP/2 server limits. MaxConcurrentStreams is what browsers and gRPC clients get from common
// servers (Go, nginx's http2_max_concurrent_streams is 128); enough for a multiplexing client
// without letting one connection take every upstream connection of a backend.
const (
	h2MaxStreams = 250
	// h2PingAfter sends a PING on a connection silent for this long, and h2PingTimeout closes it
	// when the PING is not answered: dead peers of long gRPC streams, which send nothing while
	// they wait, are found without cutting the streams themselves short.
	h2PingAfter   = 30 * time.Second
	h2PingTimeout = 15 * time.Second
)

// isH2CPreface reports whether the connection starts with the HTTP/2 client preface. It looks at
// the bytes the reader has buffered (at least one, after awaitRequest) and reads more only while
// they are a proper prefix of the preface, within the header timeout, so an HTTP/1.1 request
// costs one comparison. The bytes stay buffered: serveH2 replays them.
//
// server.go's serve calls it before parsing a request on plaintext frontends with h2c on. Only a
// connection's first bytes can be a preface in practice; later requests fail the comparison on
// their first or second byte, so the check costs nothing worth a per-connection flag.
func (cc *clientConn) isH2CPreface(h *Handler) bool {
	rd := &cc.rd
	for {
		n := rd.buffered()
		if n == 0 {
			return false
		}
		b := (*rd.bp)[rd.r:rd.w]
		if n >= len(h2Preface) {
			return string(b[:len(h2Preface)]) == h2Preface
		}
		if string(b) != h2Preface[:n] {
			return false
		}
		cc.rdl = time.Time{}
		cc.c.SetReadDeadline(time.Now().Add(h.headerTimeout()))
		if err := rd.fill(maxHeadBytes); err != nil {
			return false
		}
	}
}

// serveH2 serves an HTTP/2 connection: c after ALPN chose h2, or a plaintext connection that
// started with the HTTP/2 preface (h2c). Bytes that cc's reader has buffered are replayed as c's
// first bytes. It takes the connection over: when it returns, c is closed and the connection is
// unregistered from the server (cc.close), so the caller just returns.
//
// Streams go through the same router, balancers and servers as HTTP/1.1 requests; the handler
// and its routes are loaded for each stream, so a reload applies to the next stream. The HTTP/2
// server is waage's own (internal/h2srv): one goroutine reads the connection, one per stream
// serves it, and the frames of all streams go out through one buffer, many in one write.
func (cc *clientConn) serveH2(c net.Conn, h *Handler) {
	if n := cc.rd.buffered(); n > 0 {
		pre := bytes.Clone((*cc.rd.bp)[cc.rd.r:cc.rd.w])
		cc.rd.r = cc.rd.w
		c = &replayConn{Conn: c, pre: pre}
	}
	cc.rd.release()
	cc.releaseWriter()
	// The connection is busy for the server's Shutdown as long as it lives: Shutdown must not cut
	// its reads (that would kill every stream in flight); it asks for a GOAWAY instead (below).
	cc.busy.Store(true)
	cc.rdl, cc.wdl = time.Time{}, time.Time{}
	c.SetDeadline(time.Time{})

	hh := newH2Handler(cc)
	sc := h2srv.NewConn(c, &h2srv.Config{
		MaxConcurrentStreams: h2MaxStreams,
		MaxHeaderListSize:    uint32(h.maxHeader()),
		IdleTimeout:          h.idleTimeout(),
		PingAfter:            h2PingAfter,
		PingTimeout:          h2PingTimeout,
		// A client that stops reading cannot pin the connection's writes forever.
		WriteTimeout:  h.idleTimeout(),
		HeaderTimeout: h.headerTimeout(),
		Stats:         &H2Stats,
		Logger:        h.logger(),
		OnAbuse: func(string) {
			// Rapid reset, CONTINUATION, PING or SETTINGS floods: the frontend's protection
			// counts (and logs) them as h2_abuse.
			if g := h.Guard; g != nil {
				g.Refuse(guard.H2Abuse, cc.remote, time.Now())
			}
		},
	}, hh)
	done := make(chan struct{})
	go cc.watchShutdown(sc, done)
	sc.Serve()
	hh.outbox.Close()
	close(done)
	c.Close()
	cc.close()
}

// H2Stats counts what the HTTP/2 server's limits cut, over all frontends: refused streams,
// resets, floods, timeouts (see h2srv.Stats).
var H2Stats h2srv.Stats

// watchShutdown sends the connection a GOAWAY once the server is shutting down, so clients
// finish their streams and open no new ones; the connection closes after its last stream.
func (cc *clientConn) watchShutdown(sc *h2srv.Conn, done <-chan struct{}) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			if cc.s.closing.Load() {
				sc.Shutdown()
				return
			}
		}
	}
}

// replayConn returns pre before reading from the connection: the bytes a detection already read.
type replayConn struct {
	net.Conn
	mu  sync.Mutex
	pre []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		c.mu.Unlock()
		return n, nil
	}
	c.mu.Unlock()
	return c.Conn.Read(p)
}

// ServeH2Conn serves c as an HTTP/2 connection from its first byte (h2 chosen by ALPN
// elsewhere, or h2c with prior knowledge), with the server's current handler. It returns at once;
// the connection is served in its own goroutine and counts among the server's connections.
func (s *Server) ServeH2Conn(c net.Conn) {
	cc := s.register(c)
	if cc == nil {
		return
	}
	go cc.serveH2(c, s.h.Load())
}

// register makes a clientConn for c, as ServeConn does, and counts it; nil when the server is
// shutting down (c is closed then).
func (s *Server) register(c net.Conn) *clientConn {
	cc := &clientConn{s: s, c: c}
	cc.rd.conn = c
	cc.rd.pool = &smallBufs
	cc.w.conn = c
	if ap, err := netipAddrPort(c.RemoteAddr()); err == nil {
		cc.remote, cc.remotePort = ap.Addr().Unmap(), ap.Port()
	}
	cc.remoteIP = cc.remote.AppendTo(nil)
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		c.Close()
		return nil
	}
	s.conns[cc] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	s.Stats.Connections.Add(1)
	cc.busy.Store(true)
	return cc
}

// h2Handler serves the streams of one HTTP/2 client connection. What is the same for every
// stream of the connection is worked out once.
type h2Handler struct {
	cc     *clientConn
	ip     string
	dst    netip.AddrPort
	cert   string
	outbox rawio.Outbox
}

func newH2Handler(cc *clientConn) *h2Handler {
	return &h2Handler{cc: cc, ip: string(cc.remoteIP), dst: cc.localAddr(), cert: string(cc.certSubject)}
}

// h2Call is a stream's forward and its sink, allocated together.
type h2Call struct {
	f forward
	w h2Writer
}

// h2Calls recycles the calls of streams served through waage's own server connections. Nothing
// holds a call once ServeH2 returns then: the cancellation hook is unregistered, the request
// body's copy has finished, and the sink's calls are synchronous. A forward that went through
// an http2.Transport is left to the collector (forward.shared): the transport's goroutines may
// still read the request body. Reusing calls saves the larger half of the memory allocated per
// proxied HTTP/2 request, and with it about half of the garbage collector's cycles.
var h2Calls = sync.Pool{New: func() any { return new(h2Call) }}

func (hh *h2Handler) ServeH2(st *h2srv.Stream) {
	cc := hh.cc
	h := cc.s.h.Load()
	call := h2Calls.Get().(*h2Call)
	f := &call.f
	f.h, f.s = h, cc.s
	f.remote, f.scheme = cc.remote, cc.scheme(h)
	f.src, f.dst = netip.AddrPortFrom(cc.remote, cc.remotePort), hh.dst
	f.ip, f.certSubject = hh.ip, hh.cert
	f.outbox = &hh.outbox
	f.r, f.ctx, f.st, f.start = st.BareRequest(), st.Context(), st, time.Now()
	call.w.w, call.w.s = h2Response{st}, st
	f.serve(&call.w)
	if call.w.status != 0 {
		st.WriteHeader(call.w.status, false) // a head without a body, still waiting
	}
	if call.w.finished && len(call.w.trailer) > 0 {
		// The response ends only now, after the forward's deferred work (the server connection
		// back in its pool, the server released): a client that sends its next request on
		// seeing the end finds the connection there to reuse. Without trailers the stream's
		// end (when ServeH2 returns) closes it the same way.
		st.Close(call.w.trailer)
	}
	if !f.shared {
		st.Recycle() // as the call: nothing holds the stream, its request or context now
		*call = h2Call{}
		h2Calls.Put(call)
	}
}

// h2Writer answers a stream.
type h2Writer struct {
	w        h2Response // the stream as Error writes to it
	s        *h2srv.Stream
	stream   bool        // flush every write (see streams)
	status   int         // a status WriteHead left for the first WriteBody (or ServeH2) to send
	finished bool        // Finish was called: ServeH2 ends the stream with trailer
	trailer  http.Header // from Finish
}

// h2Response is a stream as a net/http-style response writer: a status without END_STREAM,
// the body written after it.
type h2Response struct{ s *h2srv.Stream }

func (r h2Response) Header() http.Header         { return r.s.Header() }
func (r h2Response) WriteHeader(status int)      { r.s.WriteHeader(status, false) }
func (r h2Response) Write(p []byte) (int, error) { return r.s.Write(p) }

func (hw *h2Writer) Header() http.Header { return hw.s.Header() }

// AddField adds a response field as bytes (see addFields).
func (hw *h2Writer) AddField(name, value []byte) { hw.s.AddField(name, value) }

// SetContentLength adds content-length: n (see addFields).
func (hw *h2Writer) SetContentLength(n int64) { hw.s.SetContentLength(n) }

func (hw *h2Writer) WriteHead(status int, more, stream bool) error {
	hw.stream = stream
	// The HEADERS frame waits for the body, the trailers or the end: a gRPC Trailers-Only answer
	// (grpc-status in the one HEADERS frame) stays a single frame with END_STREAM, and a head of
	// known length leaves with its body. The status itself waits for the first piece of the
	// body, so that both take the stream's connection lock once (WriteHeaderData).
	if !more || !stream {
		hw.status = status
		return nil
	}
	if err := hw.s.WriteHeader(status, false); err != nil {
		return err
	}
	return hw.s.Flush()
}

func (hw *h2Writer) WriteBody(p []byte) error {
	var err error
	if hw.status != 0 {
		_, err = hw.s.WriteHeaderData(hw.status, p)
		hw.status = 0
	} else {
		_, err = hw.s.Write(p)
	}
	if err != nil {
		return err
	}
	if !hw.stream {
		return nil
	}
	return hw.s.Flush() // gRPC and server-sent events depend on it
}

// Finish notes the trailers; the stream ends when the handler returns (see ServeH2).
func (hw *h2Writer) Finish(trailer http.Header) error {
	hw.finished, hw.trailer = true, trailer
	return nil
}

// Abort resets the stream, so the client sees the response was cut short rather than complete.
func (hw *h2Writer) Abort() { hw.s.Reset(h2srv.ErrCodeInternal) }

// Reset ends the stream with RST_STREAM code.
func (hw *h2Writer) Reset(code http2.ErrCode) bool {
	hw.s.Reset(h2srv.ErrCode(code))
	return true
}

// HTTPS frontends offer h2 by ALPN only once serveH2 serves it (see h2Served in tls.go).
func init() { h2Served = true }

// localAddr is the address the client connected to: from its PROXY header when it sent one.
func (cc *clientConn) localAddr() netip.AddrPort {
	if cc.local.IsValid() {
		return cc.local
	}
	ap, _ := netipAddrPort(cc.c.LocalAddr())
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
