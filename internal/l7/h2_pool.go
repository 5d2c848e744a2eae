package l7

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/waage/waage/internal/backend"
	"github.com/waage/waage/internal/balance"
	"github.com/waage/waage/internal/h2srv"
	"github.com/waage/waage/internal/proxyproto"
)

// This file forwards requests of the net/http-based data path (HTTP/2 client streams) to servers
// that speak HTTP/1.1 over the backend's own pooled connections (upstream.go), synchronously in
// the stream's handler goroutine: request head and body out, response parsed with the HTTP/1.1
// parser, body relayed, connection back to the pool. net/http.Transport would hand each request
// to a write goroutine and a read goroutine through channels; on a 2-core machine those hand-offs
// cost more than everything else the request does (h2load: ~12k req/s through http.Transport,
// ~3 times as many this way).

// pooledResponses are the parsed response heads of pooled forwards.
var pooledResponses = sync.Pool{New: func() any {
	return &response{message: message{headers: make([]hdr, 0, 32)}}
}}

// errClientWrite marks a failure writing the answer to the client (as opposed to reading it from
// the server), so the server is not blamed for it.
type errClientWrite struct{ err error }

func (e errClientWrite) Error() string { return "write to client: " + e.err.Error() }
func (e errClientWrite) Unwrap() error { return e.err }

// proxyPooled is proxy for backends whose servers speak HTTP/1.1. Retries follow the HTTP/1.1
// path (clientConn.proxy): a failed connect goes to another server whatever the request; a
// bodiless idempotent request whose reused connection failed before any response byte is sent
// again on a fresh connection, and, when a fresh one fails too, on another server within the
// retry budget. Nothing is retried once a response byte went to the client.
func (f *forward) proxyPooled(sk sink) {
	r, rt := f.r, f.rt
	b := rt.Backend
	key, pinned, stickyHit := f.affinity(b)
	b.budget.Request(f.start.Unix())
	path := f.upstreamPath()
	if !validTarget(path) || !validTarget(r.URL.RawQuery) {
		// A space or control byte would break the request line on the way to the server.
		sk.Error(f, 400, "invalid request target")
		return
	}
	hasBody := r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
	// A streamed body cannot be replayed: only bodiless idempotent requests are sent twice.
	canRetry := !hasBody && isIdempotent([]byte(r.Method))
	now := f.start.Unix()
	var tried []*backend.Server
	var lastErr error
	fresh, sent := false, false
	for {
		var srv *backend.Server
		switch {
		case pinned != nil:
			srv, pinned = pinned, nil
		case fresh:
			srv = f.srv
		case len(tried) >= b.maxAttempts:
		default:
			srv = b.Balancer.Pick(key, tried)
			if srv != nil && sent && !b.budget.TryRetry(now) {
				b.budgetRefused(f.h)
				srv = nil
			}
		}
		if srv == nil {
			f.noServer(sk, b, lastErr, sent)
			return
		}
		// The first attempt starts as the stream did, microseconds ago: one clock reading less.
		sentAt := f.start
		if f.srv != nil {
			srv.Retries.Add(1)
			sentAt = time.Now()
		}
		f.srv = srv
		srv.Acquire()
		uc, err := b.conn(srv, !canRetry, fresh, sentAt)
		fresh = false
		if err == nil && b.proxyProto != 0 && !uc.reused {
			if err = f.startProxied(uc, b); err != nil {
				uc.close()
			}
		}
		if err != nil {
			srv.Release()
			srv.ConnectErrors.Add(1)
			b.fail(srv, err)
			f.warn("connect to server failed", srv, "err", err)
			tried = append(tried, srv)
			lastErr, sent = err, false
			continue
		}
		switch f.attempt(sk, b, srv, uc, sentAt, canRetry, hasBody, stickyHit, key, tried) {
		case outRetryFresh:
			fresh = true
			continue
		case outRetryOther:
			tried = append(tried, srv)
			lastErr, sent = errors.New("server closed the connection"), true
			continue
		case outRetryStatus:
			tried = append(tried, srv)
			pinned, f.next = f.next, nil
			continue
		}
		return
	}
}

// affinity returns the balancer key and the server a valid sticky cookie names (pinned only
// when that server takes pinned requests now).
func (f *forward) affinity(b *Backend) (key uint64, pinned, stickyHit *backend.Server) {
	if b.hashKind != hashNone {
		key = f.hashKey(b)
	}
	if b.stickyName != "" {
		if c, err := f.cookie(b.stickyName); err == nil {
			if s := b.stickyIdx.Server(c.Value); s != nil {
				stickyHit = s
				if s.AcceptsPinned() {
					pinned = s
				}
			}
		}
	}
	return key, pinned, stickyHit
}

// warn logs a failure of a server. It is a function of its own so that the attempt's frame does
// not hold the logger's argument arrays: every stream starts on a small goroutine stack, and a
// bigger frame costs a stack copy per request.
func (f *forward) warn(msg string, srv *backend.Server, key string, val any) {
	f.h.logger().Warn(msg, "frontend", f.h.Name, "backend", f.rt.Backend.Name, "server", srv.Name, key, val)
}

// validTarget reports whether s can go into a request line as it is: no spaces, no controls.
func validTarget(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// startProxied begins a new connection of a PROXY-protocol backend: the PROXY header naming this
// client, then the TLS handshake when the server speaks TLS. Both count as the connect, as they
// do for the net/http transports (see newHTTPUpstream): nothing of the request reached the server.
func (f *forward) startProxied(uc *upConn, b *Backend) error {
	hdr := proxyproto.For(b.proxyProto, f.src, f.dst)
	var buf [64]byte
	p, err := hdr.AppendBinary(buf[:0])
	if err != nil {
		return &connectErr{fmt.Errorf("PROXY header: %w", err)}
	}
	uc.bw.Write(p)
	if uc.pendingTLS != nil {
		if err := uc.startTLS(b.connectTO); err != nil {
			return &connectErr{err}
		}
	}
	return nil
}

// attempt sends the request over uc and relays the answer. It returns outDone once the client was
// answered (or is gone), or a retry outcome when nothing came back and the request may go again.
// uc is returned to the pool or closed, and srv released, before it returns, also when the sink
// aborts the stream by panicking.
func (f *forward) attempt(sk sink, b *Backend, srv *backend.Server, uc *upConn, sentAt time.Time, canRetry, hasBody bool, stickyHit *backend.Server, key uint64, tried []*backend.Server) outcome {
	r := f.r
	a := pooledAttempt{f: f, b: b, srv: srv, uc: uc}
	// The client's cancellation (RST_STREAM, connection gone) closes the server connection: a
	// blocked read or write returns at once, and the connection is not reused.
	f.hook.start(f.ctx, uc)
	defer a.end()
	resp := pooledResponses.Get().(*response)
	defer putResponse(resp)
	a.resp = resp

	chunked := hasBody && (r.ContentLength < 0 || len(r.Trailer) > 0)
	f.writeHead(uc.bw, b, srv, hasBody, chunked)
	var respDeadline time.Time
	if hasBody {
		// The body streams beside the response reader, so early answers and full-duplex
		// servers work; the response timeout starts when the body is complete (sendBody).
		uc.rdl = time.Time{}
		uc.conn.SetReadDeadline(uc.rdl)
		a.bodyDone = make(chan error, 1)
		go f.sendBody(uc, chunked, b.responseTO, a.bodyDone)
	} else {
		if err := uc.sendHead(f.outbox); err != nil {
			return a.beforeResponse(sk, canRetry, err)
		}
		now := sentAt // a pooled connection was taken microseconds ago
		if !uc.reused {
			now = time.Now() // after the connect
		}
		respDeadline = now.Add(b.responseTO)
		uc.armRead(now, b.responseTO)
	}
	for {
		head, err := uc.rd.readHead(maxHeadBytes)
		if err != nil && isTimeout(err) && !respDeadline.IsZero() && time.Now().Before(respDeadline) {
			// The lazily armed deadline fired early (see upConn.armRead): wait for the rest.
			uc.rdl = respDeadline
			uc.conn.SetReadDeadline(respDeadline)
			continue
		}
		if err != nil {
			received := uc.rd.w > 0 // part of a head arrived before the failure
			berr := a.abortBody()
			switch {
			case f.ctx.Err() != nil:
				// The client canceled (RST_STREAM, deadline, gone): nobody to answer.
				sk.Done(f, 499, 0)
			case berr != nil && clientSide(berr):
				var se *statusError
				if errors.As(berr, &se) {
					sk.Error(f, se.status, se.msg)
				} else {
					sk.Error(f, 400, "the request body could not be read")
				}
			case isTimeout(err):
				b.fail(srv, err)
				f.warn("server response timeout", srv, "timeout", b.responseTO)
				sk.Error(f, 504, "the server did not answer in time")
			case !received && !hasBody:
				return a.beforeResponse(sk, canRetry, err)
			default:
				b.fail(srv, err)
				f.warn("server response failed", srv, "err", err)
				sk.Error(f, 502, "the server's response failed")
			}
			return outDone
		}
		if err := parseResponse(head, resp); err != nil {
			a.abortBody()
			b.fail(srv, err)
			f.warn("invalid response from server", srv, "err", err)
			sk.Error(f, 502, "the server's response was invalid")
			return outDone
		}
		if resp.status >= 200 {
			break
		}
		if resp.status == 101 {
			a.abortBody()
			b.fail(srv, errors.New("101 Switching Protocols without an upgrade request"))
			sk.Error(f, 502, "the server switched protocols unasked")
			return outDone
		}
		// Other 1xx answers (100 Continue, 103 Early Hints) are the server's business with us.
	}
	srv.ObserveLatency(time.Since(sentAt))
	b.Outlier.Status(srv, resp.status)
	if canRetry && b.retryOn(resp.status) && f.retryStatus(b, srv, resp.status, key, tried) {
		return outRetryStatus // a.end closes the connection: the answer's body is not read
	}
	a.relay(sk, stickyHit)
	return outDone
}

func putResponse(resp *response) {
	for i := range resp.headers {
		resp.headers[i] = hdr{}
	}
	resp.headers = resp.headers[:0]
	if cap(resp.headers) > 256 {
		return
	}
	resp.reason = nil
	pooledResponses.Put(resp)
}

// pooledAttempt is the state of one attempt that its deferred end cleans up.
type pooledAttempt struct {
	f        *forward
	b        *Backend
	srv      *backend.Server
	uc       *upConn
	resp     *response
	bodyDone chan error // the request body transfer's result; nil when none runs
	reuse    bool
}

// end runs when the attempt ends, normally or by the sink's abort panic: it stops the request
// body transfer, pools or closes the connection, and releases the server.
func (a *pooledAttempt) end() {
	if a.bodyDone != nil {
		if a.abortBody() != nil {
			a.reuse = false
		}
	}
	if !a.f.hook.stop() {
		a.reuse = false // the client canceled: the hook closed the connection
	}
	if a.reuse {
		at := a.f.done // when the response was counted, if it was
		if at.IsZero() {
			at = time.Now()
		}
		a.uc.p.put(a.uc, at)
	} else {
		a.uc.close()
	}
	a.srv.Release()
}

// abortBody stops a request body transfer still running and returns its error (errBodyAborted
// when it had to be cut); nil when none ran or it had completed.
func (a *pooledAttempt) abortBody() error {
	done := a.bodyDone
	if done == nil {
		return nil
	}
	a.bodyDone = nil
	select {
	case err := <-done:
		return err
	default:
	}
	// Closing the server connection ends a blocked write to the server; closing the client's
	// body ends a blocked read from the client.
	a.uc.tcp.Close()
	a.uc.conn.Close()
	a.f.r.Body.Close()
	<-done
	return errBodyAborted
}

// finishBody waits briefly for a request body transfer still running when the response ended
// (full-duplex servers read the last byte just before they answer the last byte), then cuts it.
func (a *pooledAttempt) finishBody() error {
	if a.bodyDone == nil {
		return nil
	}
	select {
	case err := <-a.bodyDone:
		a.bodyDone = nil
		return err
	default:
	}
	t := time.NewTimer(bodyGrace)
	defer t.Stop()
	select {
	case err := <-a.bodyDone:
		a.bodyDone = nil
		return err
	case <-t.C:
		return a.abortBody()
	}
}

// retryStatus decides whether an answer with this status is retried on another server instead of
// relayed, as clientConn.retryStatus does on the HTTP/1.1 path: attempts and budget allow, and
// another server is there to take it (kept in f.next, so the retry cannot find the backend empty
// and turn a real answer into a 502).
func (f *forward) retryStatus(b *Backend, srv *backend.Server, status int, key uint64, tried []*backend.Server) bool {
	if len(tried)+1 >= b.maxAttempts {
		return false
	}
	next := b.Balancer.Pick(key, append(tried[:len(tried):len(tried)], srv))
	if next == nil {
		return false
	}
	if !b.budget.TryRetry(f.start.Unix()) {
		b.budgetRefused(f.h)
		return false
	}
	f.h.logger().Debug("retrying on another server", "frontend", f.h.Name, "backend", b.Name, "server", srv.Name, "status", status, "next", next.Name)
	f.next = next
	return true
}

// beforeResponse handles a failure after the request was (perhaps) sent but before any response
// byte came back: clientConn.beforeResponseFailure's rule.
func (a *pooledAttempt) beforeResponse(sk sink, canRetry bool, err error) outcome {
	f, b, srv := a.f, a.b, a.srv
	if f.ctx.Err() != nil {
		sk.Done(f, 499, 0)
		return outDone
	}
	if canRetry {
		if a.uc.reused {
			// The common case: the server closed the idle connection as we took it.
			return outRetryFresh
		}
		b.fail(srv, err)
		f.warn("server closed the connection before responding; retrying", srv, "err", err)
		return outRetryOther
	}
	b.fail(srv, err)
	f.warn("server closed the connection before responding", srv, "err", err)
	sk.Error(f, 502, "the server closed the connection without a response")
	return outDone
}

// relay sends the parsed response head to the client, streams the body, passes the trailers, and
// decides about reusing the server connection.
func (a *pooledAttempt) relay(sk sink, stickyHit *backend.Server) {
	f, b, uc, resp := a.f, a.b, a.uc, a.resp
	status := resp.status
	bodyless := resp.bodyless(f.r.Method == "HEAD")
	untilClose := !bodyless && !resp.chunked && resp.contentLength < 0
	// The length the client is told, as net/http reports it: a HEAD answer keeps the server's
	// Content-Length, 204 and 304 have none, chunked and until-close bodies are of unknown length.
	var length int64
	switch {
	case f.r.Method == "HEAD":
		length = resp.contentLength
	case status == 204 || status == 304:
		length = 0
	default:
		length = resp.contentLength // -1 when chunked or absent
	}
	withLength := length >= 0 && status != 204 && status != 304
	var eventStream, grpcStatus bool
	var sticky string
	if b.stickyName != "" && stickyHit != f.srv {
		sticky = b.stickyName + "=" + balance.CookieValue(f.srv) + "; Path=/; HttpOnly; SameSite=Lax"
	}
	if fa, ok := sk.(fieldAdder); ok && f.rt.respOps.empty() {
		// The fields go to the stream as bytes: no header map to build and read back.
		eventStream, grpcStatus = addFields(fa, resp.headers, withLength, length)
		if sticky != "" {
			fa.AddField([]byte("set-cookie"), []byte(sticky))
		}
	} else {
		hd := sk.Header()
		var contentType string
		contentType, grpcStatus = fillHeader(hd, resp.headers, withLength, length)
		eventStream = isEventStream(contentType)
		if ops := &f.rt.respOps; !ops.empty() {
			applyOps(hd, ops)
		}
		if sticky != "" {
			hd.Add("Set-Cookie", sticky)
		}
	}
	// A head that ends the response (no body; gRPC's Trailers-Only answers carry grpc-status
	// in it) must not be sent ahead as an open stream's head.
	more := !bodyless && length != 0 && !grpcStatus
	if err := sk.WriteHead(status, more, length < 0 || eventStream); err != nil {
		sk.Done(f, status, 0)
		return
	}
	var sent int64
	var trailer http.Header
	var err error
	switch {
	case bodyless:
	case resp.chunked:
		sent, trailer, err = relayChunked(sk, uc, b.responseTO)
	case length >= 0:
		sent, err = relayN(sk, uc, length, b.responseTO)
	default:
		sent, err = relayToEOF(sk, uc, b.responseTO)
	}
	// A request body that did not complete (or was cut) leaves the connection unusable; the
	// response itself may still be whole.
	hadBody := a.bodyDone != nil
	bodyOK := a.finishBody() == nil
	a.reuse = bodyOK && err == nil && !resp.close && !untilClose
	if hadBody {
		// The request body transfer set a read deadline of its own: re-arm on next use. Otherwise
		// uc.rdl is the deadline set, and the next request keeps it when it is far enough off.
		uc.rdl = time.Time{}
	}
	if err != nil {
		var cw errClientWrite
		if errors.As(err, &cw) {
			// The client is gone; the server connection closes (see end).
			sk.Done(f, status, sent)
			return
		}
		if f.ctx.Err() == nil {
			b.fail(f.srv, err)
			f.warn("server response body failed", f.srv, "err", err)
		}
		sk.Done(f, status, sent)
		sk.Abort()
		return
	}
	sk.Finish(trailer)
	sk.Done(f, status, sent)
}

// fillHeader adds a response's fields (not Content-Length, Trailer, or those dropped) to hd, and
// Content-Length: length when withLength. Streams whose route changes no response field take the
// fields as bytes instead (addFields); this is for the routes that do.
func fillHeader(hd http.Header, fields []hdr, withLength bool, length int64) (contentType string, grpcStatus bool) {
	for i := range fields {
		h := &fields[i]
		if h.drop || h.kind == hContentLength || h.kind == hTrailer {
			continue
		}
		k, v := http.CanonicalHeaderKey(string(h.name)), string(h.value)
		hd[k] = append(hd[k], v)
		switch {
		case k == "Content-Type" && contentType == "":
			contentType = v
		case k == "Grpc-Status":
			grpcStatus = true
		}
	}
	if withLength {
		hd["Content-Length"] = []string{strconv.FormatInt(length, 10)}
	}
	return contentType, grpcStatus
}

// isEventStream reports whether a Content-Type is text/event-stream (server-sent events).
func isEventStream[T string | []byte](ct T) bool {
	const want = "text/event-stream"
	i, j := 0, len(ct)
	for k := 0; k < j; k++ {
		if ct[k] == ';' {
			j = k
		}
	}
	for i < j && (ct[i] == ' ' || ct[i] == '\t') {
		i++
	}
	for j > i && (ct[j-1] == ' ' || ct[j-1] == '\t') {
		j--
	}
	if j-i != len(want) {
		return false
	}
	for k := range len(want) {
		if lower(ct[i+k]) != want[k] {
			return false
		}
	}
	return true
}

// fieldAdder is a sink that takes response fields as bytes (an HTTP/2 stream, see
// h2srv.Stream.AddField).
type fieldAdder interface {
	AddField(name, value []byte)
	SetContentLength(n int64)
}

// addFields is fillHeader for a fieldAdder. It reports whether the response is server-sent
// events and whether it carries grpc-status.
func addFields(fa fieldAdder, fields []hdr, withLength bool, length int64) (eventStream, grpcStatus bool) {
	ctSeen := false
	for i := range fields {
		h := &fields[i]
		if h.drop || h.kind == hContentLength || h.kind == hTrailer {
			continue
		}
		fa.AddField(h.name, h.value)
		switch {
		case !ctSeen && len(h.name) == 12 && eqFold(h.name, "content-type"):
			ctSeen, eventStream = true, isEventStream(h.value)
		case len(h.name) == 11 && eqFold(h.name, "grpc-status"):
			grpcStatus = true
		}
	}
	if withLength {
		fa.SetContentLength(length)
	}
	return eventStream, grpcStatus
}

// readWithin reads more of the response from the server, which gets d of inactivity.
func (uc *upConn) readWithin(d time.Duration) error {
	uc.rdl = time.Now().Add(d)
	uc.conn.SetReadDeadline(uc.rdl)
	return uc.rd.fill(maxHeadBytes)
}

// relayN passes n body bytes from the server to the client, straight from the read buffer.
func relayN(sk sink, uc *upConn, n int64, d time.Duration) (int64, error) {
	rd := &uc.rd
	var sent int64
	for n > 0 {
		if k := rd.buffered(); k > 0 {
			if int64(k) > n {
				k = int(n)
			}
			if err := sk.WriteBody((*rd.bp)[rd.r : rd.r+k]); err != nil {
				return sent, errClientWrite{err}
			}
			rd.r += k
			n -= int64(k)
			sent += int64(k)
			continue
		}
		if err := uc.readWithin(d); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return sent, errPeerRead{err}
		}
	}
	return sent, nil
}

// relayToEOF passes the body of a response that ends when the server closes.
func relayToEOF(sk sink, uc *upConn, d time.Duration) (int64, error) {
	rd := &uc.rd
	var sent int64
	for {
		if k := rd.buffered(); k > 0 {
			if err := sk.WriteBody((*rd.bp)[rd.r:rd.w]); err != nil {
				return sent, errClientWrite{err}
			}
			rd.r = rd.w
			sent += int64(k)
		}
		if err := uc.readWithin(d); err != nil {
			if err == io.EOF {
				return sent, nil
			}
			return sent, errPeerRead{err}
		}
	}
}

// relayChunked passes a chunked body de-chunked (HTTP/2 frames it itself) and returns its
// trailer fields. Framing is checked as strictly as pipe.copyChunked checks it.
func relayChunked(sk sink, uc *upConn, d time.Duration) (int64, http.Header, error) {
	rd := &uc.rd
	var sent int64
	for {
		uc.rdl = time.Now().Add(d)
		uc.conn.SetReadDeadline(uc.rdl)
		line, err := rd.readLine(maxChunkLine)
		if err != nil {
			return sent, nil, chunkErr(err)
		}
		size, ok := parseChunkSize(line)
		if !ok {
			return sent, nil, bad("invalid chunk size")
		}
		if size == 0 {
			break
		}
		k, err := relayN(sk, uc, size, d)
		sent += k
		if err != nil {
			return sent, nil, err
		}
		line, err = rd.readLine(2)
		if err != nil || len(line) != 0 {
			return sent, nil, bad("chunk data not followed by CRLF")
		}
	}
	var trailer http.Header
	total := 0
	for {
		line, err := rd.readLine(maxChunkLine * 2)
		if err != nil {
			return sent, nil, chunkErr(err)
		}
		if len(line) == 0 {
			return sent, trailer, nil
		}
		total += len(line)
		if total > maxHeadBytes {
			return sent, nil, bad("trailer section too large")
		}
		colon := strings.IndexByte(string(line), ':')
		if colon <= 0 || !isToken(line[:colon]) {
			return sent, nil, bad("malformed trailer field")
		}
		value := trimOWS(line[colon+1:])
		for _, c := range value {
			if c < ' ' && c != '\t' || c == 0x7f {
				return sent, nil, bad("invalid character in trailer field")
			}
		}
		if trailer == nil {
			trailer = make(http.Header)
		}
		k := http.CanonicalHeaderKey(string(line[:colon]))
		trailer[k] = append(trailer[k], string(value))
	}
}

// sendBody streams the client's request body to the server: as it is with a known length,
// otherwise chunked with the client's trailers in the last chunk. It runs beside the response
// reader. Every piece goes out as it arrives, so uploads that the server answers while they last
// (streams) flow.
func (f *forward) sendBody(uc *upConn, chunked bool, responseTO time.Duration, done chan<- error) {
	w := uc.bw
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	var sizeBuf [20]byte
	var err error
	for err == nil {
		n, rerr := f.r.Body.Read(buf)
		if n > 0 {
			f.recv.Add(int64(n))
			if chunked {
				sz := strconv.AppendInt(sizeBuf[:0], int64(n), 16)
				w.Write(append(sz, '\r', '\n'))
				w.Write(buf[:n])
				w.WriteString("\r\n")
			} else {
				w.Write(buf[:n])
			}
			err = w.Flush()
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil && err == nil {
			err = errPeerRead{rerr}
		}
	}
	if err == nil && chunked {
		w.WriteString("0\r\n")
		for k, vs := range f.r.Trailer {
			for _, v := range vs {
				writeFieldString(w, k, v)
			}
		}
		w.WriteString("\r\n")
	}
	if err == nil {
		err = w.Flush()
	}
	if err == nil || !clientSide(err) {
		// The request is complete (or the server stopped reading it, perhaps after an early
		// answer that the reader must still get): the server has the response timeout to answer.
		uc.conn.SetReadDeadline(time.Now().Add(responseTO))
	}
	done <- err
	if err != nil && clientSide(err) {
		// The server will never see a complete request: unblock the response reader.
		uc.tcp.Close()
		uc.conn.Close()
	}
}

// writeHead writes the request line and fields for the server, as writeRequestHead does on the
// HTTP/1.1 path and outHeader on the net/http one: hop-by-hop fields removed, X-Forwarded-*,
// Forwarded and X-Client-Cert-Subject set by waage alone, the route's header changes applied,
// framing of waage's own.
func (f *forward) writeHead(w *writer, b *Backend, srv *backend.Server, hasBody, chunked bool) {
	r, rt := f.r, f.rt
	w.WriteString(r.Method)
	w.WriteByte(' ')
	w.WriteString(f.upstreamPath())
	if q := r.URL.RawQuery; q != "" || r.URL.ForceQuery {
		w.WriteByte('?')
		w.WriteString(q)
	}
	w.WriteString(" HTTP/1.1\r\nHost: ")
	ops := &rt.reqOps
	if v, ok := ops.setsHost(); ok {
		w.WriteString(v)
	} else if r.Host != "" {
		w.WriteString(r.Host)
	} else {
		w.WriteString(srv.Address)
	}
	w.WriteString("\r\n")
	hasOps := !ops.empty()
	var teTrailers bool
	if r.Header == nil {
		teTrailers = f.writeFields(w, ops, hasOps)
	} else {
		teTrailers = writeHeaderMap(w, r.Header, ops, hasOps)
	}
	if teTrailers && !(hasOps && ops.removesName("te")) {
		// The one TE value that passes: gRPC servers insist on it.
		w.WriteString("Te: trailers\r\n")
	}
	if f.certSubject != "" && !(hasOps && ops.removesName(clientCertLower)) {
		// Servers trust this field because waage always sets or removes it.
		writeFieldString(w, ClientCertField, f.certSubject)
	}
	if !ops.removesName("x-forwarded-for") {
		w.WriteString("X-Forwarded-For: ")
		f.writePrior(w, "x-forwarded-for", "X-Forwarded-For")
		w.WriteString(f.ip)
		w.WriteString("\r\n")
	}
	if !ops.removesName("x-forwarded-proto") {
		writeFieldString(w, "X-Forwarded-Proto", f.scheme)
	}
	if r.Host != "" && !ops.removesName("x-forwarded-host") {
		writeFieldString(w, "X-Forwarded-Host", r.Host)
	}
	if !ops.removesName("forwarded") {
		w.WriteString("Forwarded: ")
		f.writePrior(w, "forwarded", "Forwarded")
		writeForwarded(w, f.remote.Is6(), f.ip, r.Host, f.scheme)
		w.WriteString("\r\n")
	}
	if hasOps {
		for _, kv := range ops.set {
			if !strings.EqualFold(kv.Key, "host") {
				writeFieldString(w, kv.Key, kv.Value)
			}
		}
		for _, kv := range ops.add {
			writeFieldString(w, kv.Key, kv.Value)
		}
	}
	switch {
	case chunked:
		if len(r.Trailer) > 0 {
			w.WriteString("Trailer: ")
			first := true
			for k := range r.Trailer {
				if !first {
					w.WriteString(", ")
				}
				first = false
				w.WriteString(k)
			}
			w.WriteString("\r\n")
		}
		w.WriteString("Transfer-Encoding: chunked\r\n")
	case hasBody:
		w.WriteString("Content-Length: ")
		var nb [20]byte
		w.Write(strconv.AppendInt(nb[:0], r.ContentLength, 10))
		w.WriteString("\r\n")
	case r.Method == "POST" || r.Method == "PUT" || r.Method == "PATCH":
		// As net/http sends it: servers may insist on a length for these methods.
		w.WriteString("Content-Length: 0\r\n")
	}
	w.WriteString("\r\n")
}

// writeHeaderMap writes a request's header map for the server (writeHead): hop-by-hop fields,
// those named in Connection (HTTP/2 forbids Connection; an HTTP/1.1 request that reaches this
// path may carry it), framing and the forwarding fields (written by writeHead) left out, the
// route's removals applied. It reports whether TE asked for trailers.
func writeHeaderMap(w *writer, hd http.Header, ops *headerOps, hasOps bool) (teTrailers bool) {
	var named []string
	for _, v := range hd["Connection"] {
		for t := range strings.SplitSeq(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				named = append(named, t)
			}
		}
	}
next:
	for k, vs := range hd {
		switch k {
		case "Host", "Content-Length", ClientCertField, "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded":
			// Framing is waage's own; the forwarding fields are rewritten below.
			continue
		case "Te":
			for _, v := range vs {
				teTrailers = teTrailers || hasTrailersToken(v)
			}
			continue
		case "User-Agent":
			if len(vs) == 1 && vs[0] == "" {
				continue
			}
		}
		if isHopField(k) {
			continue
		}
		for _, n := range named {
			if strings.EqualFold(k, n) {
				continue next
			}
		}
		if hasOps && removesString(ops, k) {
			continue
		}
		for _, v := range vs {
			writeFieldString(w, k, v)
		}
	}
	return teTrailers
}

// writeFields is writeHeaderMap for an HTTP/2 stream's fields as they arrived: in the client's
// order, with their lower-case names (field names are case-insensitive; HAProxy and nginx pass
// HTTP/2 names on so too), cookie fields joined into one as RFC 9113 section 8.2.3 asks, Expect:
// 100-continue left out (the HTTP/2 server answers it).
func (f *forward) writeFields(w *writer, ops *headerOps, hasOps bool) (teTrailers bool) {
	cookies := false
	fields := f.fields()
	for i, hf := range fields {
		switch hf.Name {
		case "host", "content-length", clientCertLower, "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded":
			continue
		case "te":
			teTrailers = teTrailers || hasTrailersToken(hf.Value)
			continue
		case "user-agent":
			if hf.Value == "" {
				continue
			}
		case "expect":
			if strings.EqualFold(hf.Value, "100-continue") {
				continue
			}
		case "cookie":
			if cookies || hasOps && ops.removesName("cookie") {
				continue
			}
			cookies = true
			w.WriteString("cookie: ")
			for j, c := range fields[i:] {
				if c.Name == "cookie" {
					if j > 0 {
						w.WriteString("; ")
					}
					w.WriteString(c.Value)
				}
			}
			w.WriteString("\r\n")
			continue
		}
		if isHopFieldLower(hf.Name) || hasOps && ops.removesName(hf.Name) {
			continue
		}
		writeFieldString(w, hf.Name, hf.Value)
	}
	return teTrailers
}

// writePrior writes the values a forwarding field (its lower-case and canonical names) arrived
// with, each followed by ", ", before writeHead appends waage's own element.
func (f *forward) writePrior(w *writer, lower, canonical string) {
	if f.r.Header == nil {
		for _, hf := range f.fields() {
			if hf.Name == lower && hf.Value != "" {
				w.WriteString(hf.Value)
				w.WriteString(", ")
			}
		}
		return
	}
	for _, v := range f.r.Header[canonical] {
		if v != "" {
			w.WriteString(v)
			w.WriteString(", ")
		}
	}
}

// hasTrailersToken reports whether a TE value lists "trailers".
func hasTrailersToken(v string) bool {
	for t := range strings.SplitSeq(v, ",") {
		if strings.EqualFold(textproto.TrimString(t), "trailers") {
			return true
		}
	}
	return false
}

// removesString is headerOps.removes for a string name.
func removesString(o *headerOps, name string) bool {
	for _, r := range o.drop {
		if strings.EqualFold(name, r) {
			return true
		}
	}
	return false
}

// cancelHook runs a Canceler when a request's context ends: through the HTTP/2 stream context's
// own Hook, which allocates nothing, or context.AfterFunc for other contexts.
type cancelHook struct {
	h        h2srv.Hook
	fallback func() bool // context.AfterFunc's stop; nil with the stream's Hook
}

type hookContext interface {
	AddHook(*h2srv.Hook, h2srv.Canceler)
}

func (k *cancelHook) start(ctx context.Context, x h2srv.Canceler) {
	if hc, ok := ctx.(hookContext); ok {
		k.fallback = nil
		hc.AddHook(&k.h, x)
		return
	}
	k.fallback = context.AfterFunc(ctx, x.Cancel)
}

// stop ends the hook; false when the Canceler ran (or is about to).
func (k *cancelHook) stop() bool {
	if k.fallback != nil {
		return k.fallback()
	}
	return k.h.Stop()
}
