package l7

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/waage/waage/internal/backend"
	"github.com/waage/waage/internal/balance"
	"github.com/waage/waage/internal/h2srv"
	"github.com/waage/waage/internal/rawio"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// forward is one request on the net/http-based data path: streams of HTTP/2 clients, and
// requests of HTTP/1.1 clients to backends whose servers speak HTTP/2. Routing, balancing,
// retries of failed connects and header rewriting follow the HTTP/1.1 path's rules. Servers
// that speak HTTP/1.1 are reached over the backend's own connection pools (proxyPooled,
// h2_pool.go), servers that speak HTTP/2 through an http2.Transport (proxy).
type forward struct {
	h      *Handler
	s      *Server
	remote netip.Addr
	// src and dst are the client's address and the one it connected to, for PROXY headers.
	src, dst netip.AddrPort
	ip       string
	scheme   string          // for X-Forwarded-Proto and Forwarded: https on TLS connections
	r        *http.Request   // the client's request; r.Body streams; see header
	ctx      context.Context // the request's: the stream's for HTTP/2 clients, else r's
	// st is the HTTP/2 stream the request came on, nil for HTTP/1.1 clients. Its request has no
	// header map until header asks for one: the fields go to HTTP/1.1 servers from st's list.
	st    *h2srv.Stream
	start time.Time
	// path is the normalised path and rt the route, when the caller routed already (HTTP/1.1).
	path []byte
	rt   *Route
	srv  *backend.Server
	next *backend.Server // where a retry on the answer's status goes (retryStatus)
	// certSubject is the verified client certificate's subject on TLS frontends that ask for one.
	certSubject string
	// recv counts the request body bytes sent to servers (read by the transports' goroutines).
	recv atomic.Int64
	// done is when record counted the response (the pooled connection's idle time starts then).
	done time.Time
	// req is the request as the router matches it (requestFor).
	req request
	// hdrArr is room for the router's view of most of an HTTP/2 stream's fields (requestFor).
	hdrArr [10]hdr
	// Room for the path and the host name of most requests, allocated with the forward.
	pathBuf [96]byte
	hostBuf [48]byte
	// hook closes the server connection of an attempt when the client cancels (attempt).
	hook cancelHook
	// outbox writes requests to HTTP/1.1 servers in batches with those of the client
	// connection's other streams; nil for HTTP/1.1 clients.
	outbox *rawio.Outbox
	// shared is set when something that may outlive the forward holds parts of it.
	shared bool
}

// sink is where a forward writes its answer: an HTTP/2 stream or an HTTP/1.1 connection.
type sink interface {
	Header() http.Header
	// WriteHead sends the status and Header(); more is false when no body or trailers follow.
	// stream asks for every later WriteBody to go out at once (see streams).
	WriteHead(status int, more, stream bool) error
	// WriteBody sends p: at once on a stream, otherwise when buffers fill or the answer ends.
	WriteBody(p []byte) error
	// Finish ends the response with its trailers.
	Finish(trailer http.Header) error
	// Abort ends a response cut short so the client cannot take it for complete. It may not return.
	Abort()
	// Error answers with a proxy-made status and a short plain body, counted and logged.
	Error(f *forward, status int, msg string)
	// Reset ends an HTTP/2 stream with RST_STREAM code; false on an HTTP/1.1 connection.
	Reset(code http2.ErrCode) bool
	// Done records a relayed response's status and body size in stats and the access log.
	Done(f *forward, status int, sent int64)
}

// route normalises the path and finds the route; false when the request was answered.
func (f *forward) route(sk sink) bool {
	r := f.r
	raw := r.RequestURI
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		raw = raw[:i]
	}
	switch {
	case raw == "*" && r.Method == "OPTIONS":
		f.path = []byte("*")
	case !strings.HasPrefix(raw, "/"):
		raw = r.URL.EscapedPath()
		fallthrough
	default:
		if pathIsNormal([]byte(raw)) {
			f.path = append(f.pathBuf[:0], raw...)
		} else {
			p, ok := normalizePath(nil, []byte(raw))
			if !ok {
				sk.Error(f, 400, "invalid path")
				return false
			}
			f.path = p
		}
	}
	if r.Host != "" && !validHost([]byte(r.Host)) {
		sk.Error(f, 400, "invalid Host")
		return false
	}
	req := &f.req
	requestFor(req, r, f.fields(), f.hdrArr[:])
	host := hostname(f.hostBuf[:0], req.host)
	if f.h.RedirectHTTPS && !hasPathPrefix(f.path, acmeChallengePrefix) {
		f.redirectHTTPS(sk, host)
		return false
	}
	in := matchInput{req: req, host: host, path: f.path, source: f.remote}
	f.rt = f.h.Router.route(&in)
	if f.rt == nil {
		sk.Error(f, 404, "no route matches this request")
		return false
	}
	return true
}

// redirectHTTPS answers 308 to the same URL on https, as clientConn.redirectHTTPS does.
func (f *forward) redirectHTTPS(sk sink, host []byte) {
	if len(host) == 0 {
		sk.Error(f, 400, "redirect to https needs a Host")
		return
	}
	loc := "https://" + string(host)
	if p := f.h.HTTPSPort; p > 0 && p != 443 {
		loc += ":" + strconv.Itoa(p)
	}
	if path, _, _ := strings.Cut(f.r.RequestURI, "?"); strings.HasPrefix(path, "/") {
		loc += path
	} else {
		loc += "/"
	}
	if f.r.URL.RawQuery != "" || f.r.URL.ForceQuery {
		loc += "?" + f.r.URL.RawQuery
	}
	const body = "308 Permanent Redirect: this site is served over https\n"
	hd := sk.Header()
	hd.Set("Location", loc)
	hd.Set("Content-Type", "text/plain; charset=utf-8")
	hd.Set("Content-Length", strconv.Itoa(len(body)))
	sent := 0
	if err := sk.WriteHead(308, f.r.Method != "HEAD", false); err == nil && f.r.Method != "HEAD" {
		if sk.WriteBody([]byte(body)) == nil {
			sent = len(body)
		}
	}
	sk.Finish(nil)
	sk.Done(f, 308, int64(sent))
}

// requestFor presents the request the way the matchers read HTTP/1.1 requests, in req: from the
// HTTP/2 stream's fields as they arrived when there are any (names already lower case, in
// order, with Host and Trailer left out as Request.Header has them), else from r.Header. The
// bytes are read-only views of the request's strings (bytesOf): the matchers only read them,
// and no field costs an allocation.
func requestFor(req *request, r *http.Request, fields []hpack.HeaderField, arr []hdr) {
	req.method, req.host = bytesOf(r.Method), bytesOf(r.Host)
	req.query = nil
	if r.URL.RawQuery != "" || r.URL.ForceQuery {
		req.query = bytesOf(r.URL.RawQuery)
		if req.query == nil {
			req.query = []byte{}
		}
	}
	if fields != nil {
		req.headers = arr[:0]
		for _, f := range fields {
			if f.Name == "host" || f.Name == "trailer" {
				continue
			}
			name := bytesOf(f.Name)
			req.headers = append(req.headers, hdr{name: name, value: bytesOf(f.Value), kind: classify(name)})
		}
		return
	}
	n := 0
	for _, vs := range r.Header {
		n += len(vs)
	}
	req.headers = make([]hdr, 0, n)
	for name, vs := range r.Header {
		lname := []byte(strings.ToLower(name))
		k := classify(lname)
		for _, v := range vs {
			req.headers = append(req.headers, hdr{name: lname, value: bytesOf(v), kind: k})
		}
	}
}

// header is the request's header map, made from the HTTP/2 stream's fields on the first call.
// The hot path (a stream to an HTTP/1.1 server) reads the fields instead and never calls it.
func (f *forward) header() http.Header {
	if f.r.Header == nil && f.st != nil {
		return f.st.RequestHeader()
	}
	return f.r.Header
}

// cookie is r.Cookie with the header map made first.
func (f *forward) cookie(name string) (*http.Cookie, error) {
	f.header()
	return f.r.Cookie(name)
}

// fields are the HTTP/2 stream's fields as they arrived (h2srv.Stream.Fields); nil for
// HTTP/1.1 clients.
func (f *forward) fields() []hpack.HeaderField {
	if f.st == nil {
		return nil
	}
	return f.st.Fields()
}

// field is the first value of a field, by its lower-case name, without making the header map.
func (f *forward) field(lower string) string {
	if f.r.Header == nil && f.st != nil {
		for _, hf := range f.st.Fields() {
			if hf.Name == lower {
				return hf.Value
			}
		}
		return ""
	}
	return f.r.Header.Get(lower)
}

// bytesOf is s as a byte slice without a copy, for reading only.
func bytesOf(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

// serve routes (unless routed already) and proxies the request.
func (f *forward) serve(sk sink) {
	// HTTP/1.1 requests come routed and checked (clientConn.handle); HTTP/2 streams are routed
	// and held to the limits here.
	if f.rt == nil && (!f.route(sk) || !f.checkLimits(sk)) {
		return
	}
	if rd := f.rt.redirect; rd != nil {
		f.redirect(sk, rd)
		return
	}
	if f.rt.Backend.h2Up() == nil {
		// The servers speak HTTP/1.1: waage's own pooled connections (h2_pool.go).
		f.proxyPooled(sk)
		return
	}
	// The transport's goroutines may still hold the request's body (and f.recv) after the
	// answer: this forward is not to be reused (see h2Calls).
	f.shared = true
	f.proxy(sk)
}

// hashKey is clientConn.hashKey for an *http.Request.
func (f *forward) hashKey(b *Backend) uint64 {
	switch b.hashKind {
	case hashSource:
		return balance.HashAddr(f.remote)
	case hashURI:
		k := balance.HashBytes(f.path)
		if q := f.r.URL.RawQuery; q != "" || f.r.URL.ForceQuery {
			k ^= balance.HashBytes([]byte(q)) * 0x9e3779b97f4a7c15
		}
		return k
	case hashHeader:
		if v := f.header().Values(b.hashName); len(v) > 0 {
			return balance.HashBytes([]byte(v[0]))
		}
	case hashCookie:
		if c, err := f.cookie(b.hashName); err == nil {
			return balance.HashBytes([]byte(c.Value))
		}
	}
	return 0
}

// isHopFieldLower is isHopField for a lower-case name.
func isHopFieldLower(k string) bool {
	switch k {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer", "proxy-authenticate", "proxy-authorization":
		return true
	}
	return false
}

// isHopField reports whether a canonical field name is hop-by-hop (RFC 9110 7.6.1, and the proxy
// ones): never forwarded in either direction. A switch: it runs for every field of every request.
func isHopField(k string) bool {
	switch k {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade", "Te", "Trailer", "Proxy-Authenticate", "Proxy-Authorization":
		return true
	}
	return false
}

// copyEndToEnd copies src's end-to-end fields to dst: hop-by-hop fields and the fields
// Connection names are left out.
func copyEndToEnd(dst, src http.Header) {
	var named []string
	for _, v := range src["Connection"] {
		for _, t := range strings.Split(v, ",") {
			if t = textproto.TrimString(t); t != "" {
				named = append(named, http.CanonicalHeaderKey(t))
			}
		}
	}
next:
	for k, vs := range src {
		if isHopField(k) {
			continue
		}
		for _, n := range named {
			if k == n {
				continue next
			}
		}
		dst[k] = append([]string(nil), vs...)
	}
}

// applyOps applies a route's header changes.
func applyOps(hd http.Header, ops *headerOps) {
	for _, name := range ops.drop {
		hd.Del(name)
	}
	for _, kv := range ops.set {
		if !strings.EqualFold(kv.Key, "host") {
			hd.Add(kv.Key, kv.Value)
		}
	}
	for _, kv := range ops.add {
		hd.Add(kv.Key, kv.Value)
	}
}

// outHeader builds the header sent to servers, as writeRequestHead does for HTTP/1.1.
func (f *forward) outHeader() (http.Header, string) {
	r, rt := f.r, f.rt
	f.header()
	out := make(http.Header, len(r.Header)+5)
	copyEndToEnd(out, r.Header)
	out.Del("Host")
	// Servers trust this field because waage always sets or removes it (see ClientCertField).
	out.Del(ClientCertField)
	if f.certSubject != "" {
		out.Set(ClientCertField, f.certSubject)
	}
	// TE: trailers is the one TE value that passes: gRPC servers insist on it.
	for _, v := range r.Header.Values("Te") {
		if hasTrailersToken(v) {
			out.Set("Te", "trailers")
		}
	}
	ops := &rt.reqOps
	if !ops.removesName("x-forwarded-for") {
		xff := f.ip
		if prior := strings.Join(r.Header.Values("X-Forwarded-For"), ", "); prior != "" {
			xff = prior + ", " + f.ip
		}
		out.Set("X-Forwarded-For", xff)
	}
	if !ops.removesName("x-forwarded-proto") {
		out.Set("X-Forwarded-Proto", f.scheme)
	}
	out.Del("X-Forwarded-Host")
	if r.Host != "" && !ops.removesName("x-forwarded-host") {
		out.Set("X-Forwarded-Host", r.Host)
	}
	if !ops.removesName("forwarded") {
		var b strings.Builder
		if prior := strings.Join(r.Header.Values("Forwarded"), ", "); prior != "" {
			b.WriteString(prior)
			b.WriteString(", ")
		}
		b.WriteString(forwardedElement(f.remote.Is6(), f.ip, r.Host, f.scheme))
		out.Set("Forwarded", b.String())
	}
	if !ops.empty() {
		applyOps(out, ops)
	}
	// No User-Agent of our own: an empty value tells both transports to send none.
	if _, ok := out["User-Agent"]; !ok {
		out["User-Agent"] = []string{""}
	}
	host := r.Host
	if v, ok := ops.setsHost(); ok {
		host = v
	}
	return out, host
}

// forwardedElement is appendForwarded's RFC 7239 element as a string.
func forwardedElement(is6 bool, ip, host, scheme string) string {
	return string(appendForwarded(nil, is6, ip, host, scheme))
}

// upstreamPath is the path sent to the server: the normalised path rewritten or with the
// route's prefix stripped.
func (f *forward) upstreamPath() string {
	path := f.path
	if rw := f.rt.rewrite; rw != nil {
		head, rest := rw.modify(path)
		return head + string(rest)
	}
	if sp := f.rt.stripPrefix; sp != "" && hasPathPrefix(path, sp) {
		path = path[len(sp):]
		if len(path) == 0 || path[0] != '/' {
			return "/" + string(path)
		}
	}
	return string(path)
}

// respTimer bounds the wait for the response head to the backend's response timeout, counted
// from the end of the request body (a streaming upload has no response deadline while it lasts).
type respTimer struct {
	d        time.Duration
	cancel   context.CancelFunc
	mu       sync.Mutex
	t        *time.Timer
	stopped  bool
	timedOut atomic.Bool
}

func (rt *respTimer) start() {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.stopped || rt.t != nil {
		return
	}
	rt.t = time.AfterFunc(rt.d, func() { rt.timedOut.Store(true); rt.cancel() })
}

func (rt *respTimer) stop() {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.stopped = true
	if rt.t != nil {
		rt.t.Stop()
	}
}

// restart gives a retried request a new response timeout.
func (rt *respTimer) restart() {
	rt.mu.Lock()
	if rt.t != nil {
		rt.t.Stop()
		rt.t = nil
	}
	rt.stopped = false
	rt.mu.Unlock()
	rt.start()
}

// reqBody streams the client's request body to the server. Close does not close the client's
// side: a transport closes the body of a request that failed to connect, and the retry on another
// server still needs it.
type reqBody struct {
	r   io.Reader
	eof func()
	n   *atomic.Int64 // counts the bytes read
}

func (b *reqBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.n.Add(int64(n))
	if err == io.EOF {
		b.eof()
	}
	return n, err
}

func (b *reqBody) Close() error { return nil }

// proxy picks a server of a backend whose servers speak HTTP/2 (h2, h2c), sends the request
// through the backend's http2.Transport and relays the answer, retrying failed connects on other
// servers, and bodiless idempotent requests whose answer has a retry.on_status status. Backends of HTTP/1.1 servers go through proxyPooled instead.
func (f *forward) proxy(sk sink) {
	r, rt := f.r, f.rt
	b := rt.Backend
	up := b.h2Up()
	key, pinned, stickyHit := f.affinity(b)
	b.budget.Request(f.start.Unix())
	hdr, host := f.outHeader()
	path := f.upstreamPath()
	// WithCancel directly on the stream's context (which cancels its children through its
	// AfterFunc method), and the value on top: contexts derived from this one find the cancelCtx
	// through the value, so none of them needs a goroutine to follow the stream's cancellation.
	ctx, cancel := context.WithCancel(f.ctx)
	ctx = context.WithValue(ctx, clientAddrsKey{}, clientAddrs{f.src, f.dst})
	defer cancel()
	timer := &respTimer{d: b.responseTO, cancel: cancel}
	defer timer.stop()
	var body io.ReadCloser = http.NoBody
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		body = &reqBody{r: r.Body, eof: timer.start, n: &f.recv}
	} else {
		timer.start()
	}
	var tried []*backend.Server
	var lastErr error
	for {
		var srv *backend.Server
		switch {
		case pinned != nil:
			srv, pinned = pinned, nil
		case len(tried) >= b.maxAttempts:
		default:
			srv = b.Balancer.Pick(key, tried)
		}
		if srv == nil {
			f.noServer(sk, b, lastErr, false)
			return
		}
		if f.srv != nil {
			srv.Retries.Add(1)
		}
		f.srv = srv
		out := (&http.Request{
			Method:        r.Method,
			URL:           upstreamURL(up.scheme, srv.Address, path, r.URL.RawQuery),
			Proto:         "HTTP/1.1",
			ProtoMajor:    1,
			ProtoMinor:    1,
			Header:        hdr,
			Body:          body,
			ContentLength: r.ContentLength,
			Host:          host,
			Trailer:       r.Trailer,
		}).WithContext(ctx)
		if body == http.NoBody {
			out.ContentLength = 0
		}
		if out.Host == "" {
			out.Host = srv.Address
		}
		sentAt := time.Now()
		srv.Acquire()
		resp, err := up.rt.RoundTrip(out)
		if err != nil {
			srv.Release()
			switch {
			case isConnectErr(err):
				srv.ConnectErrors.Add(1)
				b.fail(srv, err)
				f.h.logger().Warn("connect to server failed", "frontend", f.h.Name, "backend", b.Name, "server", srv.Name, "err", err)
				tried = append(tried, srv)
				lastErr = err
				continue
			case timer.timedOut.Load():
				b.fail(srv, err)
				f.h.logger().Warn("server response timeout", "frontend", f.h.Name, "backend", b.Name, "server", srv.Name, "timeout", b.responseTO)
				sk.Error(f, 504, "the server did not answer in time")
			case f.ctx.Err() != nil:
				// The client canceled (RST_STREAM, deadline, gone): nobody to answer.
				sk.Done(f, 499, 0)
			case f.passReset(sk, err):
			default:
				b.fail(srv, err)
				f.h.logger().Warn("server request failed", "frontend", f.h.Name, "backend", b.Name, "server", srv.Name, "err", err)
				sk.Error(f, 502, "the server's response failed")
			}
			return
		}
		timer.stop()
		srv.ObserveLatency(time.Since(sentAt))
		b.Outlier.Status(srv, resp.StatusCode)
		if body == http.NoBody && isIdempotent([]byte(r.Method)) && b.retryOn(resp.StatusCode) &&
			f.retryStatus(b, srv, resp.StatusCode, key, tried) {
			resp.Body.Close()
			srv.Release()
			tried = append(tried, srv)
			pinned, f.next = f.next, nil
			timer.restart()
			continue
		}
		// Deferred: an HTTP/2 sink aborts a broken response by panicking out of the handler.
		defer srv.Release()
		f.relay(sk, resp, stickyHit)
		return
	}
}

// passReset passes a gRPC server's RST_STREAM on to an HTTP/2 client as it came: a server ends a
// call past its deadline with CANCEL, which the client's library reads as DeadlineExceeded once
// its own deadline has passed (a 502 would turn it into Unavailable), and a server that cancels
// calls is doing its job, not failing.
func (f *forward) passReset(sk sink, err error) bool {
	var se http2.StreamError
	if !errors.As(err, &se) || !isGRPC(f.header()) || !sk.Reset(se.Code) {
		return false
	}
	if se.Code != http2.ErrCodeCancel {
		f.rt.Backend.fail(f.srv, err)
		f.h.logger().Warn("server reset the stream", "frontend", f.h.Name, "backend", f.rt.Backend.Name, "server", f.srv.Name, "code", se.Code)
	}
	sk.Done(f, 502, 0)
	return true
}

// isGRPC reports whether a request is a gRPC call (Content-Type application/grpc or
// application/grpc+proto, ...), whose errors travel in grpc-status rather than HTTP statuses.
func isGRPC(h http.Header) bool {
	ct := h.Get("Content-Type")
	return len(ct) >= 16 && strings.EqualFold(ct[:16], "application/grpc") &&
		(len(ct) == 16 || ct[16] == '+' || ct[16] == ';')
}

// upstreamURL builds the URL of the request to a server without re-escaping the normalised path:
// Opaque goes out exactly as given.
func upstreamURL(scheme, host, path, query string) *url.URL {
	return &url.URL{Scheme: scheme, Host: host, Opaque: path, RawQuery: query}
}

// relay sends the response head, streams the body and passes the trailers.
func (f *forward) relay(sk sink, resp *http.Response, stickyHit *backend.Server) {
	defer resp.Body.Close()
	b := f.rt.Backend
	hd := sk.Header()
	copyEndToEnd(hd, resp.Header)
	hd.Del("Content-Length")
	if resp.ContentLength >= 0 && resp.StatusCode != 204 && resp.StatusCode != 304 {
		hd.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}
	if ops := &f.rt.respOps; !ops.empty() {
		applyOps(hd, ops)
	}
	if b.stickyName != "" && stickyHit != f.srv {
		hd.Add("Set-Cookie", b.stickyName+"="+balance.CookieValue(f.srv)+"; Path=/; HttpOnly; SameSite=Lax")
	}
	// A head that ends the response (no body; gRPC's Trailers-Only answers carry grpc-status
	// in it) must not be sent ahead as an open stream's head.
	more := resp.Body != http.NoBody && resp.ContentLength != 0 && resp.Header.Get("Grpc-Status") == ""
	if err := sk.WriteHead(resp.StatusCode, more, streams(resp)); err != nil {
		sk.Done(f, resp.StatusCode, 0)
		return
	}
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	var sent int64
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if werr := sk.WriteBody(buf[:n]); werr != nil {
				// The client is gone; the deferred cancel tells the server.
				sk.Done(f, resp.StatusCode, sent)
				return
			}
			sent += int64(n)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			if f.ctx.Err() == nil {
				b.fail(f.srv, err)
				f.h.logger().Warn("server response body failed", "frontend", f.h.Name, "backend", b.Name, "server", f.srv.Name, "err", err)
			}
			sk.Done(f, resp.StatusCode, sent)
			sk.Abort()
			return
		}
	}
	sk.Finish(resp.Trailer)
	sk.Done(f, resp.StatusCode, sent)
}

// streams reports whether a response must reach the client piece by piece, as the server sends
// it: a body of unknown length (gRPC, chunked streams) or server-sent events. A response of known
// length is written as buffers fill and flushed when it ends: on HTTP/2 every flush is a TLS
// record and a system call of its own, and flushing the head and each piece of short answers
// separately cost five times the throughput of batching them (h2load, bench/tls.sh).
func streams(resp *http.Response) bool {
	return resp.ContentLength < 0 || isEventStream(resp.Header.Get("Content-Type"))
}

// errorBody is the short plain body of a proxy-made answer, as respondError writes it.
func errorBody(status int, msg string) string {
	return strconv.Itoa(status) + " " + statusText[status] + ": " + msg + "\n"
}

// Error answers a stream with a proxy-made status; a gRPC call gets it as a Trailers-Only
// answer (see grpcError).
func (hw *h2Writer) Error(f *forward, status int, msg string) {
	hw.status = 0 // a head still waiting gives way to the error
	if isGRPC(f.header()) {
		hw.grpcError(f, status, msg)
		return
	}
	body := errorBody(status, msg)
	hd := hw.w.Header()
	hd.Set("Content-Type", "text/plain; charset=utf-8")
	hd.Set("Cache-Control", "no-store")
	hd.Set("Content-Length", strconv.Itoa(len(body)))
	hw.w.WriteHeader(status)
	n := 0
	if f.r.Method != "HEAD" {
		n, _ = io.WriteString(hw.w, body)
	}
	hw.Done(f, status, int64(n))
}

// grpcError answers a gRPC call the way gRPC servers and proxies do: HTTP 200 with grpc-status
// and grpc-message in the one HEADERS frame (Trailers-Only), so the client gets the proxy's
// reason instead of a bare HTTP status. The status counted and logged stays the HTTP one.
func (hw *h2Writer) grpcError(f *forward, status int, msg string) {
	hd := hw.s.Header()
	hd.Set("Content-Type", "application/grpc")
	hd.Set("Grpc-Status", strconv.Itoa(grpcCode(status)))
	hd.Set("Grpc-Message", grpcEscape(statusText[status]+": "+msg))
	hw.s.WriteHeader(200, true)
	hw.Done(f, status, 0)
}

// grpcCode maps a proxy-made HTTP status to a gRPC status code, after gRPC's "HTTP to gRPC
// Status Code Mapping", except that a timeout is DEADLINE_EXCEEDED (4) and a rate limit
// RESOURCE_EXHAUSTED (8): the client must not retry those as if nothing had happened.
func grpcCode(status int) int {
	switch status {
	case 400:
		return 13 // INTERNAL
	case 401:
		return 16 // UNAUTHENTICATED
	case 403:
		return 7 // PERMISSION_DENIED
	case 404:
		return 12 // UNIMPLEMENTED
	case 408, 504:
		return 4 // DEADLINE_EXCEEDED
	case 413, 414, 429, 431:
		return 8 // RESOURCE_EXHAUSTED
	case 502, 503:
		return 14 // UNAVAILABLE
	}
	return 2 // UNKNOWN
}

// grpcEscape percent-encodes a grpc-message value as the gRPC protocol asks: printable ASCII
// except '%' stays, everything else becomes %XX of its UTF-8 bytes.
func grpcEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c <= 0x7e && c != '%' {
			b.WriteByte(c)
			continue
		}
		b.WriteString("%" + strings.ToUpper(strconv.FormatUint(uint64(c)|0x100, 16)[1:]))
	}
	return b.String()
}

// Done counts the stream's status and writes its access log entry.
func (hw *h2Writer) Done(f *forward, status int, sent int64) {
	f.s.Stats.Status[min(status/100, 5)].Add(1)
	f.record(status, sent)
	if f.h.AccessLog != nil {
		hw.log(f, status, sent)
	}
}

// record counts a finished request in the frontend's and the server's counters, as
// clientConn.finishLog does for HTTP/1.1 requests.
func (f *forward) record(status int, sent int64) {
	f.done = time.Now()
	d := f.done.Sub(f.start)
	in := f.recv.Load()
	st := &f.s.Stats
	st.Requests.Add(1)
	if in > 0 {
		st.BytesIn.Add(uint64(in))
	}
	if sent > 0 {
		st.BytesOut.Add(uint64(sent))
	}
	st.Duration.Observe(d)
	if f.srv != nil {
		f.srv.RecordResponse(status, in, sent, d)
	}
}

// log writes the stream's access log entry; a function of its own, so that Done's frame, on the
// stack of every stream, does not hold the entry. The entry's bytes are read-only views of the
// request's strings (bytesOf): the line is formatted before write returns.
func (hw *h2Writer) log(f *forward, status int, sent int64) {
	h, r := f.h, f.r
	e := &accessEntry{
		start:     f.start,
		client:    bytesOf(f.ip),
		method:    bytesOf(r.Method),
		target:    bytesOf(r.RequestURI),
		host:      bytesOf(r.Host),
		minor:     r.ProtoMinor,
		h2:        r.ProtoMajor == 2,
		status:    status,
		bytes:     sent,
		referer:   bytesOf(f.field("referer")),
		userAgent: bytesOf(f.field("user-agent")),
		frontend:  h.Name,
		duration:  f.done.Sub(f.start), // record ran first
	}
	if f.rt != nil {
		e.route = f.rt.Name
		if b := f.rt.Backend; b != nil {
			e.backend = b.Name
		}
	}
	if f.srv != nil {
		e.server = f.srv.Name
	}
	h.AccessLog.write(e)
}

// noServer answers a request that found no server to take it: none healthy (503), or the last
// attempt failed; sent tells that the request reached a server that closed without answering.
func (f *forward) noServer(sk sink, b *Backend, lastErr error, sent bool) {
	switch {
	case lastErr == nil:
		sk.Error(f, 503, "backend "+b.Name+" has no healthy server")
	case sent:
		sk.Error(f, 502, "the server closed the connection without a response")
	case isTimeout(lastErr):
		sk.Error(f, 504, "no server answered in time")
	default:
		sk.Error(f, 502, "could not connect to a server")
	}
}
