package l7

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/waage/waage/internal/backend"
	"github.com/waage/waage/internal/balance"
	"github.com/waage/waage/internal/guard"
	"github.com/waage/waage/internal/proxyproto"
)

// exchange is the per-request scratch state, pooled so a request allocates nothing.
type exchange struct {
	req    request
	resp   response
	path   []byte // normalised path
	host   []byte // lower-case host without port
	tried  []*backend.Server
	key    uint64          // balancer key
	next   *backend.Server // server chosen for a retry on status
	log    accessEntry
	start  time.Time // when the request head was read
	now    time.Time // when the response head arrived
	status int       // status sent to the client
	sent   int64     // body bytes sent to the client
	route  *Route
	srv    *backend.Server
	// Facts about the request kept outside the read buffer, which the request body overwrites.
	isHead    bool
	stickyHit *backend.Server // server named by a valid sticky cookie
	// recv is the request body bytes sent to the server; written by the body sender, which runs
	// beside the response reader.
	recv atomic.Int64
}

var exchanges = sync.Pool{New: func() any {
	return &exchange{
		req:   request{message: message{headers: make([]hdr, 0, 32)}},
		resp:  response{message: message{headers: make([]hdr, 0, 32)}},
		path:  make([]byte, 0, 256),
		host:  make([]byte, 0, 64),
		tried: make([]*backend.Server, 0, 8),
	}
}}

func (ex *exchange) clear() {
	ex.route, ex.srv, ex.stickyHit, ex.next = nil, nil, nil, nil
	ex.isHead = false
	ex.status, ex.sent = 0, 0
	ex.recv.Store(0)
	ex.tried = ex.tried[:0]
	for i := range ex.req.headers {
		ex.req.headers[i] = hdr{}
	}
	for i := range ex.resp.headers {
		ex.resp.headers[i] = hdr{}
	}
	ex.req.headers, ex.resp.headers = ex.req.headers[:0], ex.resp.headers[:0]
	if cap(ex.req.headers) > 256 {
		ex.req.headers = make([]hdr, 0, 32)
	}
	if cap(ex.resp.headers) > 256 {
		ex.resp.headers = make([]hdr, 0, 32)
	}
}

// Short plain bodies that say why, one per status the proxy produces itself.
var statusText = map[int]string{
	400: "Bad Request",
	404: "Not Found",
	405: "Method Not Allowed",
	408: "Request Timeout",
	413: "Content Too Large",
	414: "URI Too Long",
	417: "Expectation Failed",
	431: "Request Header Fields Too Large",
	501: "Not Implemented",
	502: "Bad Gateway",
	503: "Service Unavailable",
	504: "Gateway Timeout",
	505: "HTTP Version Not Supported",
}

// handle serves one request; it returns whether the connection may carry another.
func (cc *clientConn) handle(h *Handler, ex *exchange) bool {
	if h.AccessLog != nil {
		ex.log.reset()
		ex.log.client = ex.log.keep(cc.remoteIP)
	}
	limit := h.maxHeader()
	head, err := cc.rd.scanHead(limit)
	if head == nil && err == nil {
		// The head did not arrive in one read: from now on it has HeaderTimeout to complete.
		cc.rdl = time.Time{}
		cc.c.SetReadDeadline(time.Now().Add(h.headerTimeout()))
		head, err = cc.rd.readHead(limit)
	}
	ex.start = time.Now()
	if err != nil {
		switch {
		case errors.Is(err, errHeadTooLarge):
			h.refuse(guard.TooLarge, cc.remote, ex.start)
			cc.respondError(h, ex, 431, "request head too large", true)
		case isTimeout(err):
			h.refuse(guard.HeaderTimeout, cc.remote, ex.start)
			cc.respondError(h, ex, 408, "request head not received in time", true)
		}
		return false
	}
	cc.served = true
	if cc.ticket != nil {
		cc.ticket.Source().Requests.Add(1)
	}
	req := &ex.req
	if err := parseRequest(head, req); err != nil {
		if h.AccessLog != nil {
			// Log what was received: the request line as it came, escaped.
			line, _, _ := nextLine(head)
			if len(line) > 1024 {
				line = line[:1024]
			}
			ex.log.target = ex.log.keep(line)
			ex.log.raw = true
		}
		var se *statusError
		if errors.As(err, &se) {
			h.logger().Debug("bad request", "frontend", h.Name, "client", cc.remote, "err", se.msg)
			cc.respondError(h, ex, se.status, se.msg, true)
		}
		return false
	}
	ex.isHead = string(req.method) == "HEAD"
	if h.AccessLog != nil {
		cc.startLog(h, ex)
	}
	if lim := h.Limits; lim != nil && lim.MaxURIBytes > 0 && len(req.target) > lim.MaxURIBytes {
		h.refuse(guard.TooLarge, cc.remote, ex.start)
		return cc.respondError(h, ex, 414, "request target longer than "+strconv.Itoa(lim.MaxURIBytes)+" bytes", true)
	}
	if req.asterisk {
		ex.path = append(ex.path[:0], '*')
	} else if pathIsNormal(req.path) {
		ex.path = append(ex.path[:0], req.path...)
	} else {
		var ok bool
		if ex.path, ok = normalizePath(ex.path[:0], req.path); !ok {
			cc.respondError(h, ex, 400, "invalid path", true)
			return false
		}
	}
	ex.host = hostname(ex.host, req.host)
	if h.ACMEHTTP01 != nil && cc.tls == nil && hasPathPrefix(ex.path, acmeChallengePrefix) {
		if keyAuth, ok := h.ACMEHTTP01(string(ex.path[len(acmeChallengePrefix):])); ok {
			return cc.respondText(h, ex, keyAuth)
		}
	}
	if h.RedirectHTTPS && !hasPathPrefix(ex.path, acmeChallengePrefix) {
		return cc.redirectHTTPS(h, ex)
	}
	in := matchInput{req: req, host: ex.host, path: ex.path, source: cc.remote}
	rt := h.Router.route(&in)
	if rt == nil {
		return cc.respondError(h, ex, 404, "no route matches this request", cc.hasUnreadBody(req))
	}
	ex.route = rt
	if ok, keep := cc.checkRequest(h, ex, rt); !ok {
		return keep
	}
	if rt.redirect != nil {
		return cc.redirect(h, ex, rt.redirect)
	}
	return cc.proxy(h, ex, rt)
}

func (cc *clientConn) hasUnreadBody(req *request) bool {
	return req.chunked || req.contentLength > 0
}

func (cc *clientConn) startLog(h *Handler, ex *exchange) {
	e := &ex.log
	req := &ex.req
	e.method = e.keep(req.method)
	e.target = e.keep(req.target)
	e.host = e.keep(req.host)
	e.minor = req.minor
	for i := range req.headers {
		switch req.headers[i].kind {
		case hReferer:
			e.referer = e.keep(req.headers[i].value)
		case hUserAgent:
			e.userAgent = e.keep(req.headers[i].value)
		}
	}
	e.frontend = h.Name
}

func (cc *clientConn) finishLog(h *Handler, ex *exchange) {
	d := time.Since(ex.start)
	st := &cc.s.Stats
	st.Requests.Add(1)
	in := ex.recv.Load()
	if in > 0 {
		st.BytesIn.Add(uint64(in))
	}
	if ex.sent > 0 {
		st.BytesOut.Add(uint64(ex.sent))
	}
	st.Duration.Observe(d)
	if ex.srv != nil {
		ex.srv.RecordResponse(ex.status, in, ex.sent, d)
	}
	if h.AccessLog == nil {
		return
	}
	e := &ex.log
	e.start = ex.start
	e.status = ex.status
	e.bytes = ex.sent
	e.duration = d
	if ex.route != nil {
		e.route = ex.route.Name
		if b := ex.route.Backend; b != nil {
			e.backend = b.Name
		}
	}
	if ex.srv != nil {
		e.server = ex.srv.Name
	}
	h.AccessLog.write(e)
}

// respondError answers with status and a short plain body; it returns whether the connection may
// stay open.
func (cc *clientConn) respondError(h *Handler, ex *exchange, status int, msg string, closeConn bool) bool {
	w := cc.writer()
	cc.armWrite(time.Now(), h.idleTimeout())
	text := statusText[status]
	w.WriteString("HTTP/1.1 ")
	w.WriteString(strconv.Itoa(status))
	w.WriteByte(' ')
	w.WriteString(text)
	w.WriteString("\r\nCache-Control: no-store")
	return cc.finishSimple(h, ex, status, "text/plain; charset=utf-8", strconv.Itoa(status)+" "+text+": "+msg+"\n", closeConn)
}

func isIdempotent(m []byte) bool {
	switch string(m) {
	case "GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE":
		return true
	}
	return false
}

// hashKey computes the balancer key for backends that hash.
func (cc *clientConn) hashKey(b *Backend, ex *exchange) uint64 {
	switch b.hashKind {
	case hashSource:
		return balance.HashAddr(cc.remote)
	case hashURI:
		k := balance.HashBytes(ex.path)
		if ex.req.query != nil {
			k ^= balance.HashBytes(ex.req.query) * 0x9e3779b97f4a7c15
		}
		return k
	case hashHeader:
		for i := range ex.req.headers {
			if eqFold(ex.req.headers[i].name, b.hashName) {
				return balance.HashBytes(ex.req.headers[i].value)
			}
		}
	case hashCookie:
		if v, ok := cookieValue(&ex.req, b.hashName); ok {
			return balance.HashBytes(v)
		}
	}
	return 0
}

// outcome of one attempt against one server.
type outcome uint8

const (
	outDone        outcome = iota // a response went to the client
	outRetryFresh                 // a reused connection failed before anything was received: redial
	outRetryOther                 // the server failed before anything was received: try another
	outRetryStatus                // the server answered with a status to retry: try ex.next
)

// proxy sends the request to a server of the route's backend, retrying where that is safe, and
// relays the response. It returns whether the client connection may carry another request.
func (cc *clientConn) proxy(h *Handler, ex *exchange, rt *Route) bool {
	if rt.Backend.h2Up() != nil {
		// The servers speak HTTP/2 (protocol h2 or h2c): see h2_h1.go.
		return cc.proxyHTTP(h, ex, rt)
	}
	req := &ex.req
	b := rt.Backend
	var key uint64
	if b.hashKind != hashNone {
		key = cc.hashKey(b, ex)
	}
	var pinned *backend.Server
	if b.stickyName != "" {
		if v, ok := cookieValue(req, b.stickyName); ok {
			if s := b.stickyIdx.Server(string(v)); s != nil {
				ex.stickyHit = s
				if s.AcceptsPinned() {
					pinned = s
				}
			}
		}
	}
	hasBody := req.chunked || req.contentLength > 0
	// A streamed body cannot be replayed, so only bodiless idempotent requests are retried after
	// they were sent; everything is retried when the connect itself fails.
	canRetry := !hasBody && isIdempotent(req.method)
	ex.key = key
	now := ex.start.Unix()
	b.budget.Request(now)
	fresh := false
	var lastErr error
	connectTimeout := false
	// sent is whether the last failed attempt had sent the request. Only such retries draw on the
	// retry budget: a failed connect did no work on any server, so retrying it elsewhere adds no
	// load, and refusing it would fail a request that costs the backend nothing.
	sent := false
	retry := false // the next attempt retries a failed one
	for {
		var srv *backend.Server
		switch {
		case pinned != nil:
			srv, pinned = pinned, nil
		case fresh:
			srv = ex.srv
		case len(ex.tried) >= b.maxAttempts:
		default:
			srv = b.Balancer.Pick(key, ex.tried)
			if srv != nil && sent && !b.budget.TryRetry(now) {
				b.budgetRefused(h)
				srv = nil
			}
		}
		if srv != nil && retry {
			srv.Retries.Add(1)
		}
		retry = true
		if srv == nil {
			if lastErr != nil {
				switch {
				case sent:
					return cc.respondError(h, ex, 502, "the server closed the connection without a response", hasBody)
				case connectTimeout:
					return cc.respondError(h, ex, 504, "no server answered in time", hasBody)
				}
				return cc.respondError(h, ex, 502, "could not connect to a server", hasBody)
			}
			return cc.respondError(h, ex, 503, "backend "+b.Name+" has no healthy server", hasBody)
		}
		ex.srv = srv
		uc, err := b.conn(srv, !canRetry, fresh, ex.start)
		fresh = false
		if err != nil {
			srv.ConnectErrors.Add(1)
			b.fail(srv, err)
			lastErr = err
			connectTimeout, sent = isTimeout(err), false
			h.logger().Warn("connect to server failed", "frontend", h.Name, "backend", b.Name, "server", srv.Name, "err", err)
			ex.tried = append(ex.tried, srv)
			continue
		}
		srv.Acquire()
		out, keep := cc.roundTrip(h, ex, rt, b, srv, uc, canRetry, hasBody)
		srv.Release()
		switch out {
		case outRetryFresh:
			fresh = true
			continue
		case outRetryOther:
			ex.tried = append(ex.tried, srv)
			lastErr = errors.New("server closed the connection")
			connectTimeout, sent = false, true
			continue
		case outRetryStatus:
			ex.tried = append(ex.tried, srv)
			pinned, ex.next = ex.next, nil
			continue
		}
		return keep
	}
}

// retryStatus decides whether a response with this status is retried on another server instead
// of relayed: the backend retries on the status, the request can be replayed, attempts and budget
// allow, and another server is there to take it (picked now and kept in ex.next, so the retry
// cannot find the backend empty and turn a real answer into a 502).
func (cc *clientConn) retryStatus(h *Handler, ex *exchange, b *Backend, srv *backend.Server, status int, canRetry bool) bool {
	if !canRetry || !b.retryOn(status) || len(ex.tried)+1 >= b.maxAttempts {
		return false
	}
	tried := append(ex.tried, srv)
	next := b.Balancer.Pick(ex.key, tried)
	if next == nil {
		return false
	}
	if !b.budget.TryRetry(ex.start.Unix()) {
		b.budgetRefused(h)
		return false
	}
	h.logger().Debug("retrying on another server", "frontend", h.Name, "backend", b.Name, "server", srv.Name, "status", status, "next", next.Name)
	ex.next = next
	return true
}

// conn returns a pooled connection to srv, or a new one (fresh forces a new one). live asks the
// pool to check a pooled connection first.
func (b *Backend) conn(srv *backend.Server, live, fresh bool, now time.Time) (*upConn, error) {
	p := b.pools[srv]
	if !fresh {
		if uc := p.get(live, now); uc != nil {
			return uc, nil
		}
	}
	return p.dial(context.Background(), b.connectTO)
}

// roundTrip runs one attempt: request head and body to the server, response back to the client.
func (cc *clientConn) roundTrip(h *Handler, ex *exchange, rt *Route, b *Backend, srv *backend.Server, uc *upConn, canRetry, hasBody bool) (outcome, bool) {
	req := &ex.req
	if b.proxyProto != 0 && !uc.reused {
		cc.writeProxyHeader(uc.bw, b.proxyProto)
		if uc.pendingTLS != nil {
			// TLS to the server starts after the PROXY header. A failed handshake counts as a
			// server that closed before answering: retried where that is safe, else 502.
			if err := uc.startTLS(b.connectTO); err != nil {
				uc.close()
				return cc.beforeResponseFailure(h, ex, b, srv, uc, canRetry, err)
			}
		}
	}
	cc.writeRequestHead(uc.bw, h, ex, rt, srv)
	var bodyDone chan error
	if !hasBody || req.expect100 {
		var err error
		if hasBody {
			err = uc.bw.Flush()
		} else {
			err = uc.sendHead(nil)
		}
		if err != nil {
			uc.close()
			return cc.beforeResponseFailure(h, ex, b, srv, uc, canRetry, err)
		}
	}
	// The response timeout runs once the whole request is sent. Without a body that is now
	// (counted from the request's arrival, a few microseconds ago); the deadline is moved lazily
	// (see upConn.armRead) and re-armed below when it fires early. With a body, the body sender
	// sets it when it is done; until then the client's inactivity timeout bounds the upload.
	sentAt := ex.start
	var respDeadline time.Time
	if hasBody {
		uc.rdl = time.Time{}
		uc.conn.SetReadDeadline(uc.rdl)
		cc.rdl = time.Time{}
		bodyDone = make(chan error, 1)
		go cc.sendBody(h, ex, uc, b.responseTO, bodyDone)
	} else {
		respDeadline = sentAt.Add(b.responseTO)
		uc.armRead(sentAt, b.responseTO)
	}
	resp := &ex.resp
	client11 := req.minor == 1
	for {
		head, err := uc.rd.readHead(maxHeadBytes)
		if err != nil && isTimeout(err) && !respDeadline.IsZero() && time.Now().Before(respDeadline) {
			uc.rdl = respDeadline
			uc.conn.SetReadDeadline(respDeadline)
			continue
		}
		if err != nil {
			received := uc.rd.w > 0 // part of a head arrived before the failure
			if bodyDone != nil {
				// A failure on the client's side answers for itself (400, 408); a server that
				// neither read the body nor answered in time is a 504 below.
				if berr := cc.abortBody(uc, bodyDone); berr != nil && (clientSide(berr) || !isTimeout(err)) {
					uc.close()
					return cc.bodyFailure(h, ex, berr)
				}
			}
			uc.close()
			if isTimeout(err) {
				b.fail(srv, err)
				h.logger().Warn("server response timeout", "frontend", h.Name, "backend", b.Name, "server", srv.Name, "timeout", b.responseTO)
				return outDone, cc.respondError(h, ex, 504, "the server did not answer in time", true)
			}
			if !received && !hasBody {
				return cc.beforeResponseFailure(h, ex, b, srv, uc, canRetry, err)
			}
			b.fail(srv, err)
			h.logger().Warn("server response failed", "frontend", h.Name, "backend", b.Name, "server", srv.Name, "err", err)
			return outDone, cc.respondError(h, ex, 502, "the server's response was incomplete", true)
		}
		if err := parseResponse(head, resp); err != nil {
			if bodyDone != nil {
				cc.abortBody(uc, bodyDone)
			}
			uc.close()
			b.fail(srv, err)
			h.logger().Warn("invalid response from server", "frontend", h.Name, "backend", b.Name, "server", srv.Name, "err", err)
			return outDone, cc.respondError(h, ex, 502, "the server's response was invalid", true)
		}
		if resp.status >= 200 || resp.status == 101 {
			break
		}
		// 1xx interim responses (100 Continue, 103 Early Hints) go to HTTP/1.1 clients as they come.
		if client11 {
			w := cc.writer()
			cc.armWrite(time.Now(), h.idleTimeout())
			cc.writeResponseHead(w, ex, rt, b, srv, true, false, false)
			if err := w.Flush(); err != nil {
				if bodyDone != nil {
					cc.abortBody(uc, bodyDone)
				}
				uc.close()
				return outDone, false
			}
		}
	}
	ex.now = time.Now()
	srv.ObserveLatency(ex.now.Sub(sentAt))
	b.Outlier.Status(srv, resp.status)
	if b.retryOn(resp.status) && cc.retryStatus(h, ex, b, srv, resp.status, canRetry) {
		uc.close()
		return outRetryStatus, false
	}
	if resp.status == 101 {
		if !req.upgrade {
			if bodyDone != nil {
				cc.abortBody(uc, bodyDone)
			}
			uc.close()
			b.fail(srv, errors.New("101 Switching Protocols without an upgrade request"))
			return outDone, cc.respondError(h, ex, 502, "the server switched protocols unasked", true)
		}
		return outDone, cc.upgrade(h, ex, rt, b, srv, uc, bodyDone)
	}
	return outDone, cc.relayResponse(h, ex, rt, b, srv, uc, bodyDone)
}

// writeProxyHeader starts a new server connection with a PROXY protocol header naming the
// client. When the addresses cannot be told (families differ), it sends a LOCAL header, which
// servers treat as "use the connection's own addresses".
func (cc *clientConn) writeProxyHeader(w *writer, version int) {
	local := cc.local
	if !local.IsValid() {
		if ap, err := netip.ParseAddrPort(cc.c.LocalAddr().String()); err == nil {
			local = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
			cc.local = local
		}
	}
	hdr := proxyproto.For(version, netip.AddrPortFrom(cc.remote, cc.remotePort), local)
	var buf [64]byte
	if b, err := hdr.AppendBinary(buf[:0]); err == nil {
		w.Write(b)
	}
}

// beforeResponseFailure handles a failure after the request was (perhaps) sent but before any
// response byte came back: retry where safe, else 502.
func (cc *clientConn) beforeResponseFailure(h *Handler, ex *exchange, b *Backend, srv *backend.Server, uc *upConn, canRetry bool, err error) (outcome, bool) {
	if canRetry {
		if uc.reused {
			return outRetryFresh, false
		}
		b.fail(srv, err)
		h.logger().Warn("server closed the connection before responding; retrying", "frontend", h.Name, "backend", b.Name, "server", srv.Name, "err", err)
		return outRetryOther, false
	}
	b.fail(srv, err)
	h.logger().Warn("server closed the connection before responding", "frontend", h.Name, "backend", b.Name, "server", srv.Name, "err", err)
	return outDone, cc.respondError(h, ex, 502, "the server closed the connection without a response", true)
}

// bodyFailure answers when streaming the request body failed before a response head arrived.
func (cc *clientConn) bodyFailure(h *Handler, ex *exchange, err error) (outcome, bool) {
	var se *statusError
	if errors.As(err, &se) {
		switch se.status {
		case 413:
			h.refuse(guard.TooLarge, cc.remote, time.Now())
		case 408:
			h.refuse(guard.BodyTimeout, cc.remote, time.Now())
		}
		return outDone, cc.respondError(h, ex, se.status, se.msg, true)
	}
	var pe errPeerRead
	if errors.As(err, &pe) {
		if isTimeout(pe.err) {
			return outDone, cc.respondError(h, ex, 408, "request body not received in time", true)
		}
		// The client went away mid-body: nobody to answer.
		ex.status = 499
		cc.finishLog(h, ex)
		return outDone, false
	}
	return outDone, cc.respondError(h, ex, 502, "sending the request body to the server failed", true)
}

// sendBody streams the request body to the server; it runs beside the response reader so that
// 100-continue, early responses and full-duplex servers work.
func (cc *clientConn) sendBody(h *Handler, ex *exchange, uc *upConn, responseTO time.Duration, done chan<- error) {
	lim := h.limits(ex.route)
	p := pipe{src: &cc.rd, dst: uc.conn, dw: uc.bw, timeout: h.idleTimeout(), limit: lim.MaxBodyBytes, minRate: lim.MinBodyRate, start: ex.start}
	p.refresh() // the connection still has the short idle-wait deadline
	var err error
	if ex.req.chunked {
		err = p.copyChunked(true)
	} else {
		err = p.copyN(ex.req.contentLength)
	}
	ex.recv.Store(p.n)
	if err == nil {
		err = uc.bw.Flush()
	}
	if err == nil {
		// The request is complete: from now on the server has the response timeout to answer.
		uc.conn.SetReadDeadline(time.Now().Add(responseTO))
	}
	if p.touched {
		// A pooled connection must not keep this transfer's write deadline.
		uc.conn.SetWriteDeadline(time.Time{})
	}
	// Report first, then, when the client side failed (gone, too slow, bad framing), unblock the
	// response reader: the server will never see a complete request. When writing to the server
	// failed, the server closed on its own, perhaps after an early answer (413) that the reader
	// must still get; the server's close ends the reader's wait.
	done <- err
	switch {
	case err == nil:
	case clientSide(err):
		uc.conn.Close()
	default:
		// A server that stopped reading without closing gets the response timeout to answer.
		uc.conn.SetReadDeadline(time.Now().Add(responseTO))
	}
}

// clientSide reports whether a body transfer failed on the client's side: the client went away,
// was too slow, or framed the body wrongly.
func clientSide(err error) bool {
	var se *statusError
	var pe errPeerRead
	return errors.As(err, &se) || errors.As(err, &pe)
}

// abortBody stops a body transfer still in progress and returns its error (nil if it had
// completed).
func (cc *clientConn) abortBody(uc *upConn, done chan error) error {
	select {
	case err := <-done:
		return err
	default:
	}
	cc.c.SetReadDeadline(time.Now())
	uc.conn.Close()
	<-done
	cc.linger = true
	return errBodyAborted
}

var errBodyAborted = errors.New("request body not fully sent")

// bodyGrace is how long a complete response waits for the request body still streaming beside it
// (full-duplex servers read the last byte just before they answer the last byte).
const bodyGrace = 50 * time.Millisecond

// finishBody waits briefly for a request body transfer that was still running when the response
// ended, then aborts it. It returns the transfer's error, or errBodyAborted.
func (cc *clientConn) finishBody(uc *upConn, done chan error) error {
	t := time.NewTimer(bodyGrace)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return cc.abortBody(uc, done)
	}
}

// relayResponse sends the response head and body to the client and decides about reuse of both
// connections.
func (cc *clientConn) relayResponse(h *Handler, ex *exchange, rt *Route, b *Backend, srv *backend.Server, uc *upConn, bodyDone chan error) bool {
	req, resp := &ex.req, &ex.resp
	bodyless := resp.bodyless(ex.isHead)
	untilClose := !bodyless && !resp.chunked && resp.contentLength < 0
	client11 := req.minor == 1
	// Keep the client connection when the response is framed for it and the client wants it.
	keep := !req.close && !cc.s.closing.Load() && !untilClose
	chunkOut := false
	if resp.chunked && !bodyless {
		if client11 {
			chunkOut = true
		} else {
			keep = false // HTTP/1.0 client: de-chunk and close to delimit
		}
	}
	bodyFailed := false
	if bodyDone != nil {
		select {
		case err := <-bodyDone:
			bodyDone = nil
			bodyFailed = err != nil
		default:
			// Still streaming: full-duplex servers answer while they read. Decided at the end.
		}
	}
	if bodyFailed {
		keep = false
	}
	w := cc.writer()
	cc.armWrite(ex.now, h.idleTimeout())
	cc.writeResponseHead(w, ex, rt, b, srv, keep, chunkOut, false)
	ex.status = resp.status
	p := pipe{src: &uc.rd, dst: cc.c, dw: w, timeout: b.responseTO}
	var err error
	switch {
	case bodyless:
	case resp.chunked:
		err = p.copyChunked(chunkOut)
	case resp.contentLength >= 0:
		err = p.copyN(resp.contentLength)
	default:
		err = p.copyToEOF()
	}
	if p.touched {
		uc.rdl = time.Time{}
		cc.wdl = time.Time{}
	}
	reuse := err == nil && !resp.close && !untilClose && !req.upgrade && !bodyFailed
	if bodyDone != nil && cc.finishBody(uc, bodyDone) != nil {
		keep, reuse = false, false
	}
	// The server's part is over: its connection goes back to the pool before the last bytes go to
	// the client, so the client's next request (on any connection) finds it there.
	if reuse {
		uc.p.put(uc, ex.now)
	} else {
		uc.close()
	}
	if err == nil {
		err = w.Flush()
	}
	ex.sent = p.n
	if err != nil {
		keep = false
		var pe errPeerRead
		if errors.As(err, &pe) || isBadFraming(err) {
			b.fail(srv, err)
			h.logger().Warn("server response body failed", "frontend", h.Name, "backend", b.Name, "server", srv.Name, "err", err)
		}
	}
	cc.s.Stats.Status[resp.status/100].Add(1)
	cc.finishLog(h, ex)
	return keep
}

func isBadFraming(err error) bool {
	var se *statusError
	return errors.As(err, &se)
}

// upgrade relays a 101 response and then tunnels bytes both ways until both sides are done.
func (cc *clientConn) upgrade(h *Handler, ex *exchange, rt *Route, b *Backend, srv *backend.Server, uc *upConn, bodyDone chan error) bool {
	if bodyDone != nil {
		if err := cc.abortBody(uc, bodyDone); err != nil {
			uc.close()
			return false
		}
	}
	w := cc.writer()
	cc.armWrite(time.Now(), h.idleTimeout())
	cc.writeResponseHead(w, ex, rt, b, srv, true, false, true)
	ex.status = 101
	if err := w.Flush(); err != nil {
		uc.close()
		return false
	}
	cc.s.Stats.Status[1].Add(1)
	cc.finishLog(h, ex)
	var zero time.Time
	cc.c.SetDeadline(zero)
	uc.conn.SetDeadline(zero)
	tunnel(cc.c, &cc.rd, uc.conn, &uc.rd, h.tunnelTimeout())
	uc.close()
	return false
}

// writeRequestHead writes the request line and fields for the server: hop-by-hop fields removed,
// the route's header changes applied, X-Forwarded-* and Forwarded set, framing re-emitted.
func (cc *clientConn) writeRequestHead(w *writer, h *Handler, ex *exchange, rt *Route, srv *backend.Server) {
	req := &ex.req
	w.Write(req.method)
	w.WriteByte(' ')
	if req.asterisk {
		w.WriteByte('*')
	} else {
		path := ex.path
		if rw := rt.rewrite; rw != nil {
			head, rest := rw.modify(path)
			w.WriteString(head)
			path = rest
		} else if sp := rt.stripPrefix; sp != "" && hasPathPrefix(path, sp) {
			path = path[len(sp):]
			if len(path) == 0 || path[0] != '/' {
				w.WriteByte('/')
			}
		}
		w.Write(path)
		if req.query != nil {
			w.WriteByte('?')
			w.Write(req.query)
		}
	}
	w.WriteString(" HTTP/1.1\r\nHost: ")
	if v, ok := rt.reqOps.setsHost(); ok {
		w.WriteString(v)
	} else if len(req.host) > 0 {
		w.Write(req.host)
	} else {
		w.WriteString(srv.Address)
	}
	w.WriteString("\r\n")
	ops := &rt.reqOps
	hasOps := !ops.empty()
	var xff, fwd []byte
	var upgradeVal []byte
	teTrailers := false
	for i := range req.headers {
		f := &req.headers[i]
		switch f.kind {
		case hHost, hXFProto, hXFHost:
			continue
		case hOther:
			// Only waage names the client certificate: a client's own claim never passes. One
			// length comparison for most fields.
			if len(f.name) == len(clientCertLower) && eqFold(f.name, clientCertLower) {
				continue
			}
		case hXFF:
			xff = appendList(xff, f.value)
			continue
		case hForwarded:
			fwd = appendList(fwd, f.value)
			continue
		case hUpgrade:
			if upgradeVal == nil {
				upgradeVal = f.value
			}
		case hTE:
			_ = forEachToken(f.value, func(t []byte) {
				if eqFold(t, "trailers") {
					teTrailers = true
				}
			})
		}
		if f.drop || hasOps && ops.removes(f.name) {
			continue
		}
		writeField(w, f.name, f.value)
	}
	// X-Forwarded-For appends the client to what earlier proxies said; the -Proto and -Host fields
	// are ours to set, since waage is where the client's connection ends.
	ip := cc.remoteIP
	if !ops.removesName("x-forwarded-for") {
		w.WriteString("X-Forwarded-For: ")
		if len(xff) > 0 {
			w.Write(xff)
			w.WriteString(", ")
		}
		w.Write(ip)
		w.WriteString("\r\n")
	}
	// A route that sets or removes one of these fields owns it (say, behind a TLS terminator).
	if !ops.removesName("x-forwarded-proto") {
		w.WriteString("X-Forwarded-Proto: ")
		w.WriteString(cc.scheme(h))
		w.WriteString("\r\n")
	}
	if len(req.host) > 0 && !ops.removesName("x-forwarded-host") {
		w.WriteString("X-Forwarded-Host: ")
		w.Write(req.host)
		w.WriteString("\r\n")
	}
	if !ops.removesName("forwarded") {
		w.WriteString("Forwarded: ")
		if len(fwd) > 0 {
			w.Write(fwd)
			w.WriteString(", ")
		}
		writeForwarded(w, cc.remote.Is6(), ip, req.host, cc.scheme(h))
		w.WriteString("\r\n")
	}
	if cc.certSubject != nil {
		w.WriteString(ClientCertField + ": ")
		w.Write(cc.certSubject)
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
	if req.chunked {
		w.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if req.upgrade && upgradeVal != nil {
		w.WriteString("Connection: Upgrade\r\nUpgrade: ")
		w.Write(upgradeVal)
		w.WriteString("\r\n")
	} else if teTrailers {
		w.WriteString("TE: trailers\r\n")
	}
	w.WriteString("\r\n")
}

// writeForwarded writes this hop's RFC 7239 element: for= the client (IPv6 quoted in brackets),
// host= the Host the client asked for (quoted when it is not a token), proto= the scheme.
func writeForwarded[T string | []byte](w *writer, is6 bool, ip, host T, scheme string) {
	w.commit(appendForwarded(w.room(), is6, ip, host, scheme))
}

// appendForwarded appends the element writeForwarded writes.
func appendForwarded[T string | []byte](b []byte, is6 bool, ip, host T, scheme string) []byte {
	b = append(b, "for="...)
	if is6 {
		b = append(b, "\"["...)
		b = append(b, ip...)
		b = append(b, "]\""...)
	} else {
		b = append(b, ip...)
	}
	if len(host) > 0 {
		b = append(b, ";host="...)
		if isToken(host) {
			b = append(b, host...)
		} else {
			b = append(b, '"')
			for i := 0; i < len(host); i++ {
				if c := host[i]; c == '"' || c == '\\' {
					b = append(b, '\\')
				}
				b = append(b, host[i])
			}
			b = append(b, '"')
		}
	}
	b = append(b, ";proto="...)
	return append(b, scheme...)
}

// writeResponseHead writes the status line and fields for the client.
func (cc *clientConn) writeResponseHead(w *writer, ex *exchange, rt *Route, b *Backend, srv *backend.Server, keep, chunkOut, upgraded bool) {
	req, resp := &ex.req, &ex.resp
	w.WriteString("HTTP/1.1 ")
	st := resp.status
	w.WriteByte(byte('0' + st/100))
	w.WriteByte(byte('0' + st/10%10))
	w.WriteByte(byte('0' + st%10))
	w.WriteByte(' ')
	w.Write(resp.reason)
	w.WriteString("\r\n")
	ops := &rt.respOps
	hasOps := !ops.empty()
	var upgradeVal []byte
	for i := range resp.headers {
		f := &resp.headers[i]
		if f.kind == hUpgrade && upgradeVal == nil {
			upgradeVal = f.value
		}
		if f.drop || hasOps && ops.removes(f.name) {
			continue
		}
		writeField(w, f.name, f.value)
	}
	if resp.status < 200 && resp.status != 101 {
		w.WriteString("\r\n")
		return
	}
	if hasOps {
		for _, kv := range ops.set {
			writeFieldString(w, kv.Key, kv.Value)
		}
		for _, kv := range ops.add {
			writeFieldString(w, kv.Key, kv.Value)
		}
	}
	if b.stickyName != "" && srv != nil && ex.stickyHit != srv {
		w.WriteString("Set-Cookie: ")
		w.WriteString(b.stickyName)
		w.WriteByte('=')
		w.WriteString(balance.CookieValue(srv))
		w.WriteString("; Path=/; HttpOnly; SameSite=Lax\r\n")
	}
	switch {
	case upgraded:
		w.WriteString("Connection: Upgrade\r\n")
		if upgradeVal != nil {
			w.WriteString("Upgrade: ")
			w.Write(upgradeVal)
			w.WriteString("\r\n")
		}
	case chunkOut:
		w.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if !upgraded {
		if !keep {
			w.WriteString("Connection: close\r\n")
		} else if req.minor == 0 {
			w.WriteString("Connection: keep-alive\r\n")
		}
	}
	w.WriteString("\r\n")
}

func writeField(w *writer, name, value []byte) {
	w.Write(name)
	w.WriteString(": ")
	w.Write(value)
	w.WriteString("\r\n")
}

func writeFieldString(w *writer, name, value string) {
	w.WriteString(name)
	w.WriteString(": ")
	w.WriteString(value)
	w.WriteString("\r\n")
}

func appendList(dst, v []byte) []byte {
	if len(v) == 0 {
		return dst
	}
	if len(dst) > 0 {
		dst = append(dst, ", "...)
	}
	return append(dst, v...)
}

// hasPathPrefix reports whether path starts with prefix at a segment boundary.
func hasPathPrefix(path []byte, prefix string) bool {
	if len(path) < len(prefix) || string(path[:len(prefix)]) != prefix {
		return false
	}
	return len(path) == len(prefix) || path[len(prefix)] == '/' || prefix[len(prefix)-1] == '/'
}

// tunnel copies bytes both ways between an upgraded client and server connection until both
// directions end, passing half-closes through. Bytes already buffered on either side go first.
// Inactivity longer than timeout in both directions closes the tunnel.
func tunnel(client net.Conn, crd *reader, server net.Conn, srd *reader, timeout time.Duration) {
	var last atomicTime
	last.touch()
	errc := make(chan error, 2)
	go func() { errc <- tunnelCopy(server, client, crd, timeout, &last) }()
	go func() { errc <- tunnelCopy(client, server, srd, timeout, &last) }()
	err := <-errc
	if err != nil {
		// One side failed: tear down both so the other direction ends too.
		client.Close()
		server.Close()
	}
	<-errc
	client.Close()
	server.Close()
}

// atomicTime is a timestamp shared by the two directions of a tunnel.
type atomicTime struct{ ns atomic.Int64 }

func (t *atomicTime) touch() { t.ns.Store(time.Now().UnixNano()) }

func (t *atomicTime) since() time.Duration { return time.Duration(time.Now().UnixNano() - t.ns.Load()) }

// tunnelCopy moves src to dst, first what src's reader has buffered, then straight from src, and
// half-closes dst at EOF.
func tunnelCopy(dst, src net.Conn, rd *reader, timeout time.Duration, last *atomicTime) error {
	if n := rd.buffered(); n > 0 {
		if _, err := dst.Write((*rd.bp)[rd.r:rd.w]); err != nil {
			return err
		}
		rd.r = rd.w
	}
	bp := smallBufs.Get().(*[]byte)
	defer putBuf(bp)
	buf := *bp
	for {
		src.SetReadDeadline(time.Now().Add(timeout))
		n, err := src.Read(buf)
		if n > 0 {
			last.touch()
			dst.SetWriteDeadline(time.Now().Add(timeout))
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err != nil {
			if err == io.EOF {
				if cw, ok := dst.(interface{ CloseWrite() error }); ok {
					cw.CloseWrite()
				}
				return nil
			}
			if isTimeout(err) && last.since() < timeout {
				continue // the other direction is active
			}
			return err
		}
	}
}
