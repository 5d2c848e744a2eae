package h2srv

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"

	"golang.org/x/net/http2/hpack"
)

// Stream is one request and its response. Its handler runs in a goroutine of its own; the
// response methods may be called from one goroutine at a time, the request body may be read
// from another.
type Stream struct {
	c  *Conn
	id uint32

	// The request, as decoded; read-only once the handler runs.
	method, authority, path string
	fields                  []hpack.HeaderField
	fieldBuf                [10]hpack.HeaderField
	declLen                 int64 // content-length, -1 when absent
	noBody                  bool  // END_STREAM came with the request's HEADERS
	isHead                  bool
	bare                    http.Request  // BareRequest's: no context, Header made by RequestHeader
	full                    *http.Request // Request's, made on its first call
	dropExpect              bool          // Expect: 100-continue, which the server answers
	recycle                 bool          // see Recycle
	url                     url.URL       // the request's URL, when parseURL took the short way
	ctx                     streamCtx

	// State, under c.mu.
	remoteDone  bool // END_STREAM received
	localDone   bool // END_STREAM sent
	reset       bool // RST_STREAM sent or received
	closed      bool // out of the connection's table
	handlerDone bool
	zombie      bool // reset while the handler still runs
	resetCode   ErrCode
	remoteReset bool // the client reset the stream
	sendWin     int64
	recvWin     int64 // receive window the client has left on this stream
	recvUnacked int64
	rbuf        []byte // request body bytes received, unread from rbuf[rr:]
	rr          int
	gotLen      int64
	bodyClosed  bool
	trailers    []hpack.HeaderField
	gotTrailers bool
	needCont    bool // send 100 Continue on the first body read that has to wait
	rcond       sync.Cond

	// The response.
	hdr         http.Header
	added       addedFields // AddField's fields, sent after hdr's
	status      int
	wroteHeader bool
	headPending bool // HEADERS not emitted yet
	bodyless    bool // HEAD, 204, 304: no body goes out
	respLen     int64
	sent        int64
	lastData    int    // offset in c.wbuf of the last DATA frame header appended...
	lastGen     uint64 // ...while c.swaps had this value
	hasLast     bool
}

// StreamError is what reads and writes of a reset stream return.
type StreamError struct {
	Code ErrCode
	// Remote is true when the client reset the stream.
	Remote bool
}

func (e StreamError) Error() string {
	if e.Remote {
		return "h2srv: stream reset by the client: " + e.Code.String()
	}
	return "h2srv: stream reset: " + e.Code.String()
}

var (
	errStreamDone  = errors.New("h2srv: response already ended")
	errBodyClosed  = errors.New("h2srv: read on closed body")
	errShortBody   = errors.New("h2srv: response shorter than its Content-Length")
	errLongBody    = errors.New("h2srv: response longer than its Content-Length")
	errWroteHeader = errors.New("h2srv: WriteHeader called twice")
)

// ID is the stream's identifier.
func (s *Stream) ID() uint32 { return s.id }

// Fields are the request's fields as they arrived: lower-case names (no pseudo-fields), in
// order, the same strings as the request header's values. Valid until the handler returns; not
// to be modified.
func (s *Stream) Fields() []hpack.HeaderField { return s.fields }

// Request is the client's request as net/http's server gives it. Its context ends when the
// client resets the stream, the connection ends, or the handler returns. The first call makes
// the header map and the request with its context; a handler that reads the fields (Fields)
// and the stream's Context uses BareRequest instead and allocates neither.
func (s *Stream) Request() *http.Request {
	if s.full == nil {
		s.RequestHeader()
		s.c.mu.Lock() // mergeTrailers may run in a goroutine that reads the body
		if s.bare.Trailer == nil && !s.noBody {
			s.bare.Trailer = make(http.Header) // shared with full, filled by mergeTrailers
		}
		s.full = s.bare.WithContext(&s.ctx)
		s.c.mu.Unlock()
	}
	return s.full
}

// BareRequest is the request without its context (r.Context() is not the stream's: use
// Context) and with a nil Header until RequestHeader makes it. The handler owns it.
func (s *Stream) BareRequest() *http.Request { return &s.bare }

// Context is the request's context (see Request).
func (s *Stream) Context() context.Context { return &s.ctx }

// RequestHeader makes the request's header map from the fields once, as x/net's server does
// (canonical names, cookie fields joined, no Host or Trailer), sets it in the bare request and
// returns it. For the handler's goroutine.
func (s *Stream) RequestHeader() http.Header {
	if s.bare.Header != nil {
		return s.bare.Header
	}
	hdr := make(http.Header, len(s.fields))
	// One backing array for the values of all fields: one allocation instead of one per name.
	vals := make([]string, len(s.fields))
	for i := range s.fields {
		f := &s.fields[i]
		switch f.Name {
		case "host", "trailer":
			continue
		case "expect":
			if s.dropExpect {
				continue
			}
		}
		k := canonicalKey(f.Name)
		if vv, ok := hdr[k]; ok {
			hdr[k] = append(vv, f.Value)
		} else {
			vals[i] = f.Value
			hdr[k] = vals[i : i+1 : i+1]
		}
	}
	if ck := hdr["Cookie"]; len(ck) > 1 {
		hdr["Cookie"] = []string{strings.Join(ck, "; ")}
	}
	s.bare.Header = hdr
	if s.full != nil {
		s.full.Header = hdr
	}
	return hdr
}

// Recycle tells the server that once the handler returns, nothing it started holds the stream,
// its request, the request's body or context: the stream's memory then serves a later stream.
// For the handler's goroutine; a handler that gave any of them to goroutines that may outlive
// it must not call it.
func (s *Stream) Recycle() { s.recycle = true }

// streams holds recycled streams (see Recycle). A stream is nearly two kilobytes with its arrays
// for the usual request and response fields; with streams and l7's forwards reused, h2load
// through waage to HTTP/1.1 servers ran the garbage collector 2 times per 300,000 requests
// instead of 32.
var streams = sync.Pool{New: func() any { return new(Stream) }}

// runStream runs the handler of a stream and closes what it left open.
func (c *Conn) runStream(s *Stream) {
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				buf := make([]byte, 16<<10)
				buf = buf[:runtime.Stack(buf, false)]
				c.cfg.Logger.Error("h2srv: handler panic", "stream", s.id, "panic", p, "stack", string(buf))
			}
			s.Reset(ErrCodeInternal)
		}
		s.finish()
		if s.recycle && s.ctx.release() {
			streams.Put(s)
		}
	}()
	if err := s.initRequest(); err != nil {
		c.stats.StreamErrors.Add(1)
		s.Reset(ErrCodeProtocol)
		return
	}
	c.h.ServeH2(s)
}

// initRequest fills the bare request from the pseudo-fields and the fields that change its
// meaning (host, expect, trailer), as x/net's server does; the header map waits for
// RequestHeader. It runs in the stream's goroutine, not the reader's.
func (s *Stream) initRequest() error {
	host := s.authority
	var trailer http.Header
	expects, cont := 0, false
	for i := range s.fields {
		f := &s.fields[i]
		switch f.Name {
		case "host":
			if host == "" {
				host = f.Value
			}
		case "expect":
			expects++
			cont = strings.EqualFold(f.Value, "100-continue")
		case "trailer":
			for _, key := range strings.Split(f.Value, ",") {
				switch key = canonicalKey(strings.ToLower(strings.TrimSpace(key))); key {
				case "", "Transfer-Encoding", "Trailer", "Content-Length":
				default:
					if trailer == nil {
						trailer = make(http.Header)
					}
					trailer[key] = nil
				}
			}
		}
	}
	if expects == 1 && cont {
		// The server sends 100 Continue itself (requestBody.Read); the field does not go on.
		s.dropExpect, s.needCont = true, !s.noBody
	}
	var u *url.URL
	var uri string
	if s.method == "CONNECT" {
		u, uri = &url.URL{Host: host}, host
	} else {
		var err error
		if u, err = s.parseURL(); err != nil {
			return err
		}
		uri = s.path
	}
	var body io.ReadCloser = http.NoBody
	var length int64
	if !s.noBody {
		body, length = (*requestBody)(s), s.declLen
	}
	s.bare = http.Request{
		Method:        s.method,
		URL:           u,
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		Body:          body,
		ContentLength: length,
		Host:          host,
		RequestURI:    uri,
		RemoteAddr:    s.c.remoteAddr,
		TLS:           s.c.tlsState,
		Trailer:       trailer,
	}
	return nil
}

// parseURL is url.ParseRequestURI(s.path), with the URL in the stream and without parsing for
// the common path: only characters that url.URL keeps as they are (so RawPath stays empty), and
// a query without control bytes.
func (s *Stream) parseURL() (*url.URL, error) {
	path, query, hasQuery := strings.Cut(s.path, "?")
	if !plainPath(path) || hasCTL(query) {
		return url.ParseRequestURI(s.path)
	}
	s.url = url.URL{Path: path, RawQuery: query, ForceQuery: hasQuery && query == ""}
	return &s.url, nil
}

// plainPath reports whether p is an absolute path of unreserved characters and the delimiters
// that url.URL leaves unescaped in a path.
func plainPath(p string) bool {
	if len(p) == 0 || p[0] != '/' {
		return false
	}
	for i := 1; i < len(p); i++ {
		if !plainPathChar[p[i]] {
			return false
		}
	}
	return true
}

var plainPathChar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "-_.~$&+,/:;=@" {
		t[c] = true
	}
	return t
}()

func hasCTL(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// requestBody is the stream as the request's Body.
type requestBody Stream

// Read reads the request body as it arrives. Consumed bytes are credited back to the client's
// windows, batched (see creditLocked).
func (b *requestBody) Read(p []byte) (int, error) {
	s := (*Stream)(b)
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if s.bodyClosed {
			return 0, errBodyClosed
		}
		if s.rr < len(s.rbuf) {
			n := copy(p, s.rbuf[s.rr:])
			s.rr += n
			if s.rr == len(s.rbuf) {
				s.rbuf, s.rr = s.rbuf[:0], 0
			}
			s.creditLocked(int64(n))
			c.ensureFlushLocked()
			return n, nil
		}
		switch {
		case s.reset:
			if s.remoteDone && s.resetCode == ErrCodeNo {
				return 0, io.EOF // our NO_ERROR reset after a complete request
			}
			return 0, StreamError{Code: s.resetCode, Remote: s.remoteReset}
		case s.remoteDone:
			s.mergeTrailers()
			return 0, io.EOF
		case c.dead:
			return 0, io.ErrUnexpectedEOF
		case len(p) == 0:
			return 0, nil
		}
		if s.needCont {
			s.needCont = false
			if !s.wroteHeader && !s.localDone {
				c.beginBlockLocked()
				c.hbuf = appendStatus(c.hbuf, 100)
				c.writeHeadersLocked(s.id, c.hbuf, false)
				c.ensureFlushLocked()
				continue
			}
		}
		s.rcond.Wait()
	}
}

// mergeTrailers fills the request's Trailer map with the trailers received, once, when the body
// ends (net/http's rule: Trailer is read after the body).
func (s *Stream) mergeTrailers() {
	if s.gotTrailers || len(s.trailers) == 0 {
		return
	}
	s.gotTrailers = true
	if s.bare.Trailer == nil {
		s.bare.Trailer = make(http.Header, len(s.trailers))
	}
	for _, f := range s.trailers {
		k := canonicalKey(f.Name)
		s.bare.Trailer[k] = append(s.bare.Trailer[k], f.Value)
	}
	s.trailers = nil
}

// Close stops reading the body: a blocked Read returns, and what arrives later is dropped (and
// credited back to the connection window).
func (b *requestBody) Close() error {
	s := (*Stream)(b)
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.bodyClosed {
		return nil
	}
	s.bodyClosed = true
	if unread := len(s.rbuf) - s.rr; unread > 0 && !s.closed {
		c.creditConnLocked(int64(unread))
	}
	s.rbuf, s.rr = nil, 0
	s.rcond.Broadcast()
	c.ensureFlushLocked()
	return nil
}

// creditLocked gives n consumed body bytes back to the stream's and the connection's windows.
// A stream's WINDOW_UPDATE waits until half its window is consumed: one per 512 KiB by default
// instead of one per DATA frame.
func (s *Stream) creditLocked(n int64) {
	c := s.c
	if !s.remoteDone && !s.reset {
		s.recvUnacked += n
		if s.recvUnacked >= int64(c.cfg.StreamWindow)/2 && c.werr == nil {
			c.wbuf = appendWindowUpdate(c.wbuf, s.id, uint32(s.recvUnacked))
			s.recvWin += s.recvUnacked
			s.recvUnacked = 0
		}
	}
	if !s.closed {
		c.creditConnLocked(n)
	}
}

// Header is the response header, sent by the first Write, Flush or Close after WriteHeader (or
// by WriteHeader itself when it ends the stream). Connection-specific fields are left out.
func (s *Stream) Header() http.Header {
	if s.hdr == nil {
		s.hdr = make(http.Header, 8)
	}
	return s.hdr
}

// writableLocked is nil while the response may still be written.
func (s *Stream) writableLocked() error {
	switch {
	case s.reset:
		return StreamError{Code: s.resetCode, Remote: s.remoteReset}
	case s.c.werr != nil:
		return s.c.werr
	case s.localDone:
		return errStreamDone
	}
	return nil
}

// WriteHeader sets the response status. The HEADERS frame goes out with the first Write, Flush
// or Close, so that a short response leaves in one write; with endStream it goes out now and
// ends the response (no body, no trailers). A 1xx status is sent at once and WriteHeader may be
// called again.
func (s *Stream) WriteHeader(status int, endStream bool) error {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := s.writableLocked(); err != nil {
		return err
	}
	if s.wroteHeader {
		return errWroteHeader
	}
	if status >= 100 && status < 200 {
		if status == 101 {
			return errors.New("h2srv: 101 Switching Protocols is not allowed in HTTP/2")
		}
		c.beginBlockLocked()
		c.hbuf = appendStatus(c.hbuf, status)
		c.encodeFieldsLocked(s.hdr)
		c.writeHeadersLocked(s.id, c.hbuf, false)
		c.ensureFlushLocked()
		return c.werr
	}
	s.setStatusLocked(status)
	if endStream {
		s.emitHeadLocked(true)
		s.localEndLocked()
		c.ensureFlushLocked()
	}
	return nil
}

func (s *Stream) setStatusLocked(status int) {
	s.status, s.wroteHeader, s.headPending = status, true, true
	s.bodyless = s.isHead || status == 204 || status == 304
	if cl := s.hdr["Content-Length"]; len(cl) == 1 {
		if n, ok := parseContentLength(cl[0]); ok {
			s.respLen = n
		}
	}
	if s.added.length >= 0 {
		s.respLen = s.added.length
	}
}

// emitHeadLocked appends the response's HEADERS frame if it is still pending.
func (s *Stream) emitHeadLocked(end bool) {
	if !s.headPending {
		return
	}
	s.headPending = false
	c := s.c
	c.beginBlockLocked()
	c.hbuf = appendStatus(c.hbuf, s.status)
	c.encodeFieldsLocked(s.hdr)
	c.hbuf = append(c.hbuf, s.added.block...)
	c.writeHeadersLocked(s.id, c.hbuf, end)
}

// localEndLocked notes that END_STREAM went out.
func (s *Stream) localEndLocked() {
	s.localDone = true
	if s.remoteDone {
		s.c.closeStreamLocked(s)
	}
}

// Write sends p as DATA frames, within the peer's frame size and both flow-control windows; it
// blocks while a window is exhausted until a WINDOW_UPDATE, a reset or the connection's end. The
// bytes are buffered: they go out with the next Flush or Close, once enough are buffered, or
// with another stream's flush.
func (s *Stream) Write(p []byte) (int, error) {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := s.writableLocked(); err != nil {
		return 0, err
	}
	return s.writeLocked(p)
}

// WriteHeaderData is WriteHeader(status, false) and Write(p) in one: the connection's lock is
// taken once, which matters for the many short answers a proxy relays.
func (s *Stream) WriteHeaderData(status int, p []byte) (int, error) {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := s.writableLocked(); err != nil {
		return 0, err
	}
	if s.wroteHeader {
		return 0, errWroteHeader
	}
	if status < 200 {
		return 0, errors.New("h2srv: WriteHeaderData with an informational status")
	}
	s.setStatusLocked(status)
	return s.writeLocked(p)
}

func (s *Stream) writeLocked(p []byte) (int, error) {
	c := s.c
	if !s.wroteHeader {
		s.setStatusLocked(200)
	}
	if s.bodyless {
		if s.isHead {
			return len(p), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	if s.respLen >= 0 && s.sent+int64(len(p)) > s.respLen {
		return 0, errLongBody
	}
	n := 0
	for len(p) > 0 {
		if err := s.writableLocked(); err != nil {
			return n, err
		}
		if len(c.wbuf) >= maxBuffered {
			if !c.flushing {
				c.flushLocked()
			} else {
				c.cond.Wait()
			}
			continue
		}
		k := int64(min(len(p), c.peerMaxFrame))
		k = min(k, s.sendWin, c.sendWin)
		if k <= 0 {
			// Out of window: what is buffered must reach the client, or it will never
			// send the WINDOW_UPDATE this write waits for.
			s.emitHeadLocked(false)
			if !c.flushing && len(c.wbuf) > 0 {
				c.flushLocked()
			} else {
				c.cond.Wait()
			}
			continue
		}
		s.emitHeadLocked(false)
		s.lastData, s.lastGen, s.hasLast = len(c.wbuf), c.swaps, true
		c.wbuf = appendFrameHeader(c.wbuf, int(k), frameData, 0, s.id)
		c.wbuf = append(c.wbuf, p[:k]...)
		s.sendWin -= k
		c.sendWin -= k
		s.sent += k
		p = p[k:]
		n += int(k)
	}
	if len(c.wbuf) >= flushAt && !c.flushing {
		c.flushLocked()
	}
	return n, nil
}

// Flush sends the response head (200 if no status was set) and everything written so far, and
// returns once it is on the socket.
func (s *Stream) Flush() error {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.reset {
		return s.writableLocked()
	}
	if !s.localDone {
		if !s.wroteHeader {
			s.setStatusLocked(200)
		}
		s.emitHeadLocked(false)
	}
	return c.flushWaitLocked()
}

// Close ends the response: END_STREAM on the last DATA frame when it is still buffered, else on
// an empty DATA frame, or on a HEADERS frame with the trailer fields (empty values left out). A
// response shorter than its Content-Length is reset instead, so the client cannot take it for
// complete. Close after Close does nothing.
func (s *Stream) Close(trailer http.Header) error {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.localDone && !s.reset && c.werr == nil {
		return nil
	}
	if err := s.writableLocked(); err != nil {
		return err
	}
	return s.closeLocked(trailer)
}

func (s *Stream) closeLocked(trailer http.Header) error {
	c := s.c
	if !s.wroteHeader {
		s.setStatusLocked(200)
	}
	if s.respLen >= 0 && !s.bodyless && s.sent < s.respLen {
		c.resetStreamLocked(s, ErrCodeInternal, true)
		c.ensureFlushLocked()
		return errShortBody
	}
	switch {
	case hasValues(trailer):
		s.emitHeadLocked(false)
		c.beginBlockLocked()
		c.encodeFieldsLocked(trailer)
		c.writeHeadersLocked(s.id, c.hbuf, true)
	case s.headPending:
		s.emitHeadLocked(true)
	case s.hasLast && s.lastGen == c.swaps:
		// The last DATA frame is still in the buffer: it carries END_STREAM.
		c.wbuf[s.lastData+4] |= flagEndStream
	default:
		c.wbuf = appendFrameHeader(c.wbuf, 0, frameData, flagEndStream, s.id)
	}
	s.localEndLocked()
	c.ensureFlushLocked()
	if c.werr != nil {
		return c.werr
	}
	return nil
}

func hasValues(h http.Header) bool {
	for _, vs := range h {
		if len(vs) > 0 {
			return true
		}
	}
	return false
}

// Reset ends the stream with RST_STREAM code: the client sees the response cut short.
func (s *Stream) Reset(code ErrCode) {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.reset || s.closed {
		return
	}
	c.resetStreamLocked(s, code, true)
	c.ensureFlushLocked()
}

// finish runs when the handler returned: the response is ended (500 if nothing was written), a
// request still arriving is cut with RST_STREAM NO_ERROR (RFC 9113 section 8.1), and the
// request's context ends.
func (s *Stream) finish() {
	c := s.c
	c.mu.Lock()
	if !s.reset && !s.localDone && c.werr == nil {
		if !s.wroteHeader {
			s.hdr = nil
			s.setStatusLocked(500)
			s.emitHeadLocked(true)
			s.localEndLocked()
		} else {
			s.closeLocked(nil)
		}
	}
	s.handlerDone = true
	if s.zombie {
		s.zombie = false
		c.zombies--
	}
	if !s.closed {
		c.resetStreamLocked(s, ErrCodeNo, true)
	}
	s.rbuf, s.rr = nil, 0
	s.fields = nil
	clear(s.fieldBuf[:])
	c.ensureFlushLocked()
	c.handlers--
	if c.handlers == 0 && c.dead {
		c.cond.Broadcast() // Serve waits for the last handler
	}
	c.mu.Unlock()
	s.ctx.cancel(nil)
}
