package l7

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"time"

	"golang.org/x/net/http2"
)

// proxyHTTP serves an HTTP/1.1 request whose backend speaks HTTP/2 (protocol h2 or h2c): the
// parsed request becomes an *http.Request for the same upstream code HTTP/2 clients use, and the
// answer goes back as HTTP/1.1 (chunked when its length is unknown, trailers in the last chunk).
// It returns whether the client connection may carry another request.
func (cc *clientConn) proxyHTTP(h *Handler, ex *exchange, rt *Route) bool {
	req := &ex.req
	r := &http.Request{
		Method:     string(req.method),
		Host:       string(req.host),
		RequestURI: string(req.target),
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: req.minor,
		Header:     make(http.Header, len(req.headers)),
		URL:        &url.URL{Path: string(ex.path)},
	}
	if req.query != nil {
		r.URL.RawQuery = string(req.query)
		r.URL.ForceQuery = len(req.query) == 0
	}
	teTrailers := false
	for i := range req.headers {
		f := &req.headers[i]
		if f.kind == hTE {
			_ = forEachToken(f.value, func(t []byte) {
				if eqFold(t, "trailers") {
					teTrailers = true
				}
			})
		}
		if f.drop {
			continue
		}
		k := http.CanonicalHeaderKey(string(f.name))
		r.Header[k] = append(r.Header[k], string(f.value))
	}
	if teTrailers {
		r.Header.Set("Te", "trailers")
	}
	hasBody := req.chunked || req.contentLength > 0
	var done chan error
	var pr *io.PipeReader
	if hasBody {
		if req.expect100 {
			// The server is reached through a transport that does not relay 100 Continue:
			// invite the body at once.
			w := cc.writer()
			w.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
			if w.Flush() != nil {
				return false
			}
		}
		var pw *io.PipeWriter
		pr, pw = io.Pipe()
		done = make(chan error, 1)
		cc.rdl = time.Time{}
		go cc.readBody(h, req, pw, done)
		r.Body = pr
		r.ContentLength = req.contentLength
		if req.chunked {
			r.ContentLength = -1
		}
	} else {
		r.Body = http.NoBody
	}
	f := &forward{h: h, s: cc.s, remote: cc.remote, scheme: cc.scheme(h), src: netip.AddrPortFrom(cc.remote, cc.remotePort), dst: cc.localAddr(), ip: string(cc.remoteIP), r: r, ctx: r.Context(), start: ex.start, path: ex.path, rt: rt, certSubject: string(cc.certSubject)}
	sk := &h1Sink{cc: cc, ex: ex, h: h, keep: !req.close && !req.upgrade, closeOnError: hasBody}
	f.serve(sk)
	if done != nil {
		// A server may answer before it read the whole body; give the body a moment, then cut it.
		t := time.NewTimer(bodyGrace)
		select {
		case err := <-done:
			if err != nil {
				sk.keep = false
			}
		case <-t.C:
			cc.c.SetReadDeadline(time.Now())
			pr.CloseWithError(errBodyAborted)
			<-done
			cc.linger = true
			sk.keep = false
		}
		t.Stop()
		cc.rdl = time.Time{}
	}
	return sk.keep && !cc.s.closing.Load()
}

// readBody streams the request body from the client into pw, de-chunked.
func (cc *clientConn) readBody(h *Handler, req *request, pw *io.PipeWriter, done chan<- error) {
	pc := &pipeConn{pw: pw}
	w := &writer{conn: pc}
	p := pipe{src: &cc.rd, dst: pc, dw: w, timeout: h.idleTimeout()}
	var err error
	if req.chunked {
		err = p.copyChunked(false)
	} else {
		err = p.copyN(req.contentLength)
	}
	if err == nil {
		err = w.Flush()
	}
	w.n = 0
	w.release()
	pw.CloseWithError(err) // nil: the reader sees io.EOF
	done <- err
}

// pipeConn lets the body pipe (which writes to connections) write into an io.Pipe.
type pipeConn struct{ pw *io.PipeWriter }

func (c *pipeConn) Read([]byte) (int, error)         { return 0, errors.New("pipeConn: not readable") }
func (c *pipeConn) Write(p []byte) (int, error)      { return c.pw.Write(p) }
func (c *pipeConn) Close() error                     { return c.pw.Close() }
func (c *pipeConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *pipeConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *pipeConn) SetDeadline(time.Time) error      { return nil }
func (c *pipeConn) SetReadDeadline(time.Time) error  { return nil }
func (c *pipeConn) SetWriteDeadline(time.Time) error { return nil }

// h1Sink writes a forward's answer to an HTTP/1.1 client.
type h1Sink struct {
	cc           *clientConn
	ex           *exchange
	h            *Handler
	hd           http.Header
	keep         bool
	closeOnError bool // a request body may be unread: an error answer closes the connection
	chunked      bool
	bodyless     bool
	stream       bool // flush every write (see streams)
}

func (s *h1Sink) Header() http.Header {
	if s.hd == nil {
		s.hd = make(http.Header)
	}
	return s.hd
}

func (s *h1Sink) WriteHead(status int, more, stream bool) error {
	s.stream = stream
	cc, ex := s.cc, s.ex
	ex.status = status
	hd := s.Header()
	s.bodyless = ex.isHead || status < 200 || status == 204 || status == 304
	if !s.bodyless && hd.Get("Content-Length") == "" {
		if ex.req.minor == 1 {
			s.chunked = true
		} else {
			s.keep = false // HTTP/1.0: the close ends the body
		}
	}
	if cc.s.closing.Load() {
		s.keep = false
	}
	w := cc.writer()
	cc.armWrite(time.Now(), s.h.idleTimeout())
	w.WriteString("HTTP/1.1 ")
	w.WriteString(strconv.Itoa(status))
	w.WriteByte(' ')
	w.WriteString(http.StatusText(status))
	w.WriteString("\r\n")
	for k, vs := range hd {
		for _, v := range vs {
			writeFieldString(w, k, v)
		}
	}
	if s.chunked {
		w.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if !s.keep {
		w.WriteString("Connection: close\r\n")
	} else if ex.req.minor == 0 {
		w.WriteString("Connection: keep-alive\r\n")
	}
	w.WriteString("\r\n")
	if !more || !stream {
		return nil // Finish flushes
	}
	return w.Flush()
}

func (s *h1Sink) WriteBody(p []byte) error {
	if s.bodyless {
		return nil
	}
	w := s.cc.writer()
	s.cc.armWrite(time.Now(), s.h.idleTimeout())
	if s.chunked {
		w.WriteString(strconv.FormatInt(int64(len(p)), 16))
		w.WriteString("\r\n")
		w.Write(p)
		w.WriteString("\r\n")
	} else {
		w.Write(p)
	}
	if !s.stream {
		return nil // the writer flushes when full, Finish at the end
	}
	// Streams (gRPC-Web, server-sent events) must flow: every piece goes out as it comes.
	return w.Flush()
}

func (s *h1Sink) Finish(trailer http.Header) error {
	w := s.cc.writer()
	if s.chunked {
		w.WriteString("0\r\n")
		for k, vs := range trailer {
			for _, v := range vs {
				writeFieldString(w, k, v)
			}
		}
		w.WriteString("\r\n")
	}
	return w.Flush()
}

// Abort closes the connection after what was sent: without the last chunk (or the full length)
// the client knows the response is incomplete.
// Reset is for HTTP/2 streams; an HTTP/1.1 client gets a status instead.
func (s *h1Sink) Reset(http2.ErrCode) bool { return false }

func (s *h1Sink) Abort() {
	s.cc.writer().Flush()
	s.keep = false
}

func (s *h1Sink) Error(f *forward, status int, msg string) {
	s.ex.srv = f.srv
	s.ex.recv.Store(f.recv.Load())
	if !s.cc.respondError(s.h, s.ex, status, msg, s.closeOnError) {
		s.keep = false
	}
}

func (s *h1Sink) Done(f *forward, status int, sent int64) {
	ex := s.ex
	if err := s.cc.writer().Flush(); err != nil {
		s.keep = false
	}
	ex.status, ex.sent, ex.srv = status, sent, f.srv
	ex.recv.Store(f.recv.Load())
	s.cc.s.Stats.Status[min(status/100, 5)].Add(1)
	s.cc.finishLog(s.h, ex)
}
