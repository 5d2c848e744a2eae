package l7

import (
	"bytes"
	"fmt"
)

// statusError is a request problem answered with an HTTP status; msg becomes the short plain body.
type statusError struct {
	status int
	msg    string
}

func (e *statusError) Error() string { return fmt.Sprintf("%d %s", e.status, e.msg) }

func bad(msg string) error { return &statusError{400, msg} }

// hdrKind classifies the header fields the proxy treats specially, so that it compares names once.
type hdrKind uint8

const (
	hOther hdrKind = iota
	hHost
	hContentLength
	hTransferEncoding
	hConnection
	hKeepAlive
	hProxyConnection
	hUpgrade
	hTE
	hExpect
	hXFF
	hXFProto
	hXFHost
	hForwarded
	hCookie
	hUserAgent
	hReferer
	hTrailer
	hProxyAuthz
	hProxyAuthn
	hSetCookie
)

var kindNames = [...]hdrKindName{
	{"host", hHost}, {"content-length", hContentLength}, {"transfer-encoding", hTransferEncoding},
	{"connection", hConnection}, {"keep-alive", hKeepAlive}, {"proxy-connection", hProxyConnection},
	{"upgrade", hUpgrade}, {"te", hTE}, {"expect", hExpect}, {"x-forwarded-for", hXFF},
	{"x-forwarded-proto", hXFProto}, {"x-forwarded-host", hXFHost}, {"forwarded", hForwarded},
	{"cookie", hCookie}, {"user-agent", hUserAgent}, {"referer", hReferer}, {"trailer", hTrailer},
	{"proxy-authorization", hProxyAuthz}, {"proxy-authenticate", hProxyAuthn}, {"set-cookie", hSetCookie},
}

// kindsByLen holds kindNames' entries by the length of their names: classify, run for every
// field of every request and response, compares a name with the two or three of its length.
var kindsByLen = func() (t [20][]hdrKindName) {
	for _, k := range kindNames {
		t[len(k.name)] = append(t[len(k.name)], k)
	}
	return t
}()

type hdrKindName = struct {
	name string
	kind hdrKind
}

func classify(name []byte) hdrKind {
	if len(name) < len(kindsByLen) {
		for _, k := range kindsByLen[len(name)] {
			if eqFold(name, k.name) {
				return k.kind
			}
		}
	}
	return hOther
}

// hdr is one header field; name and value point into the read buffer.
type hdr struct {
	name, value []byte
	kind        hdrKind
	drop        bool // named in Connection, or otherwise not forwarded
}

// message holds what requests and responses share: header fields and framing.
type message struct {
	minor         int // HTTP/1.minor
	headers       []hdr
	contentLength int64 // -1 when absent
	chunked       bool
	close         bool // Connection: close, or HTTP/1.0 without keep-alive
	keepAlive     bool // explicit Connection: keep-alive (matters for HTTP/1.0)
	upgrade       bool // Connection: upgrade with an Upgrade field
}

// request is a parsed request head. Slices point into the connection's read buffer and stay valid
// only until the request body is read.
type request struct {
	message
	method    []byte
	target    []byte // as received
	path      []byte // raw path of the target (origin-form), before normalisation
	query     []byte // raw query without '?', nil when absent
	host      []byte // authority: absolute-form target, else Host field; port kept
	expect100 bool
	asterisk  bool // OPTIONS *
}

// response is a parsed response head.
type response struct {
	message
	status int
	reason []byte
}

func (m *message) reset() {
	m.minor = 1
	m.headers = m.headers[:0]
	m.contentLength = -1
	m.chunked, m.close, m.keepAlive, m.upgrade = false, false, false, false
}

// findHeadEnd returns the length of the head in buf including its final empty line, or -1. from
// is where a previous search stopped; a line ends in LF, optionally preceded by CR.
func findHeadEnd(buf []byte, from int) int {
	if from > 2 {
		from -= 2
	} else {
		from = 0
	}
	for {
		i := bytes.IndexByte(buf[from:], '\n')
		if i < 0 {
			return -1
		}
		i += from
		if i+1 < len(buf) && buf[i+1] == '\n' {
			return i + 2
		}
		if i+2 < len(buf) && buf[i+1] == '\r' && buf[i+2] == '\n' {
			return i + 3
		}
		from = i + 1
	}
}

// scanHead returns the next message head if it is already buffered, or nil, skipping empty lines
// before it as RFC 9112 section 2.2 allows. It never reads from the connection.
func (rd *reader) scanHead(limit int) ([]byte, error) {
	if rd.bp == nil {
		return nil, nil
	}
	buf := (*rd.bp)[rd.r:rd.w]
	for len(buf) > 0 && (buf[0] == '\n' || buf[0] == '\r' && len(buf) > 1 && buf[1] == '\n') {
		skip := 1
		if buf[0] == '\r' {
			skip = 2
		}
		rd.r += skip
		buf = buf[skip:]
	}
	if n := findHeadEnd(buf, 0); n >= 0 {
		if n > limit {
			return nil, errHeadTooLarge
		}
		rd.r += n
		return buf[:n], nil
	}
	if len(buf) >= limit {
		return nil, errHeadTooLarge
	}
	return nil, nil
}

// readHead returns the next message head, reading until it is complete. The slice is valid until
// the next read.
func (rd *reader) readHead(limit int) ([]byte, error) {
	for {
		head, err := rd.scanHead(limit)
		if head != nil || err != nil {
			return head, err
		}
		if err := rd.fill(limit); err != nil {
			return nil, err
		}
	}
}

// nextLine splits the first line off head (LF or CRLF terminated; a CR anywhere else is an error).
func nextLine(head []byte) (line, rest []byte, err error) {
	i := bytes.IndexByte(head, '\n')
	if i < 0 {
		return nil, nil, bad("malformed head")
	}
	line, rest = head[:i], head[i+1:]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, rest, nil
}

// parseRequest parses a complete request head as returned by readHead. It enforces RFC 9112's
// message framing strictly: anything a downstream parser could read differently is rejected.
func parseRequest(head []byte, req *request) error {
	req.reset()
	req.method, req.target, req.path, req.query, req.host = nil, nil, nil, nil, nil
	req.expect100, req.asterisk = false, false

	line, rest, err := nextLine(head)
	if err != nil {
		return err
	}
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return bad("malformed request line")
	}
	req.method = line[:sp1]
	if !isToken(req.method) {
		return bad("invalid method")
	}
	line = line[sp1+1:]
	sp2 := bytes.IndexByte(line, ' ')
	if sp2 <= 0 {
		return bad("malformed request line")
	}
	req.target = line[:sp2]
	proto := line[sp2+1:]
	if len(proto) != 8 || string(proto[:7]) != "HTTP/1." {
		if len(proto) >= 5 && string(proto[:5]) == "HTTP/" {
			return &statusError{505, "HTTP version not supported"}
		}
		return bad("malformed request line")
	}
	switch proto[7] {
	case '0':
		req.minor = 0
	case '1':
		req.minor = 1
	default:
		return &statusError{505, "HTTP version not supported"}
	}
	if err := req.parseTarget(); err != nil {
		return err
	}
	if err := req.parseHeaders(rest, true); err != nil {
		return err
	}
	return req.finishRequest()
}

func (req *request) parseTarget() error {
	t := req.target
	for _, c := range t {
		if c <= ' ' || c >= 0x7f {
			return bad("invalid character in request target")
		}
	}
	switch {
	case t[0] == '/':
		req.path = t
	case len(t) == 1 && t[0] == '*':
		if string(req.method) != "OPTIONS" {
			return bad("asterisk-form target is only for OPTIONS")
		}
		req.asterisk = true
		return nil
	case string(req.method) == "CONNECT":
		return &statusError{405, "CONNECT is not supported"}
	default:
		// absolute-form: scheme://authority[path]; the authority replaces Host (RFC 9112 3.2.2).
		i := bytes.Index(t, []byte("://"))
		if i <= 0 {
			return bad("invalid request target")
		}
		scheme := t[:i]
		if !eqFold(scheme, "http") && !eqFold(scheme, "https") {
			return bad("unsupported scheme in request target")
		}
		rest := t[i+3:]
		j := bytes.IndexAny(rest, "/?")
		if j < 0 {
			j = len(rest)
		}
		req.host = rest[:j]
		if len(req.host) == 0 || bytes.IndexByte(req.host, '@') >= 0 {
			return bad("invalid authority in request target")
		}
		p := rest[j:]
		if len(p) == 0 || p[0] == '?' {
			// An empty path means "/"; keep the query.
			req.path = nil
			if len(p) > 0 {
				req.query = p[1:]
			}
			req.path = slash
			return nil
		}
		req.path = p
	}
	if q := bytes.IndexByte(req.path, '?'); q >= 0 {
		req.query = req.path[q+1:]
		req.path = req.path[:q]
	}
	if f := bytes.IndexByte(req.path, '#'); f >= 0 {
		return bad("fragment in request target")
	}
	return nil
}

var slash = []byte("/")

// parseHeaders parses field lines. isReq selects request-only rules.
func (m *message) parseHeaders(rest []byte, isReq bool) error {
	for len(rest) > 0 {
		line, r, err := nextLine(rest)
		if err != nil {
			return err
		}
		rest = r
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return bad("obsolete line folding")
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return bad("malformed header field")
		}
		name := line[:colon]
		if !isToken(name) {
			// Includes whitespace between name and colon (RFC 9112 5.1).
			return bad("invalid header field name")
		}
		value := trimOWS(line[colon+1:])
		for _, c := range value {
			if c < ' ' && c != '\t' || c == 0x7f {
				return bad("invalid character in header field value")
			}
		}
		h := hdr{name: name, value: value, kind: classify(name)}
		if err := m.noteHeader(&h, isReq); err != nil {
			return err
		}
		m.headers = append(m.headers, h)
	}
	return nil
}

// noteHeader records framing-relevant fields and marks hop-by-hop fields as dropped.
func (m *message) noteHeader(h *hdr, isReq bool) error {
	switch h.kind {
	case hContentLength:
		if m.contentLength >= 0 {
			return bad("duplicate Content-Length")
		}
		n, ok := parseLength(h.value)
		if !ok {
			return bad("invalid Content-Length")
		}
		m.contentLength = n
	case hTransferEncoding:
		if m.chunked {
			return bad("duplicate Transfer-Encoding")
		}
		if !eqFold(h.value, "chunked") {
			return &statusError{501, "only the chunked transfer coding is supported"}
		}
		m.chunked = true
		h.drop = true // re-emitted by the writer for the framing it uses
	case hConnection:
		h.drop = true
		if err := forEachToken(h.value, func(tok []byte) {
			switch {
			case eqFold(tok, "close"):
				m.close = true
			case eqFold(tok, "keep-alive"):
				m.keepAlive = true
			case eqFold(tok, "upgrade"):
				m.upgrade = true
			}
		}); err != nil {
			return err
		}
	case hKeepAlive, hProxyConnection, hTE, hUpgrade, hProxyAuthn:
		h.drop = true
	case hProxyAuthz:
		if isReq {
			h.drop = true
		}
	}
	return nil
}

// finishRequest applies the rules that need all fields: Host, framing conflicts, Connection.
func (req *request) finishRequest() error {
	hosts := 0
	hasUpgrade := false
	for i := range req.headers {
		h := &req.headers[i]
		switch h.kind {
		case hHost:
			hosts++
			if req.host == nil {
				req.host = h.value
			}
		case hExpect:
			if !eqFold(h.value, "100-continue") {
				return &statusError{417, "unsupported expectation"}
			}
			req.expect100 = true
		case hUpgrade:
			hasUpgrade = true
		}
	}
	if hosts > 1 {
		return bad("more than one Host field")
	}
	if hosts == 0 && req.minor == 1 {
		return bad("missing Host field")
	}
	if !validHost(req.host) {
		return bad("invalid Host")
	}
	if req.chunked && req.contentLength >= 0 {
		return bad("both Content-Length and Transfer-Encoding")
	}
	if req.chunked && req.minor == 0 {
		return bad("Transfer-Encoding in an HTTP/1.0 request")
	}
	if req.minor == 0 && !req.keepAlive {
		req.close = true
	}
	req.upgrade = req.upgrade && hasUpgrade && req.minor == 1
	req.dropConnectionNamed()
	if req.expect100 && !req.chunked && req.contentLength <= 0 {
		req.expect100 = false
	}
	return nil
}

// dropConnectionNamed marks the fields that Connection names as hop-by-hop (RFC 9110 7.6.1).
func (m *message) dropConnectionNamed() {
	for i := range m.headers {
		if m.headers[i].kind != hConnection {
			continue
		}
		_ = forEachToken(m.headers[i].value, func(tok []byte) {
			for j := range m.headers {
				if eqFoldBytes(m.headers[j].name, tok) && m.headers[j].kind != hUpgrade {
					m.headers[j].drop = true
				}
			}
		})
	}
}

// parseResponse parses a response head from a server.
func parseResponse(head []byte, resp *response) error {
	resp.reset()
	line, rest, err := nextLine(head)
	if err != nil {
		return err
	}
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || line[8] != ' ' {
		return bad("malformed status line")
	}
	switch line[7] {
	case '0':
		resp.minor = 0
	case '1':
		resp.minor = 1
	default:
		return bad("unsupported HTTP version")
	}
	s := line[9:12]
	if s[0] < '1' || s[0] > '5' || s[1] < '0' || s[1] > '9' || s[2] < '0' || s[2] > '9' {
		return bad("invalid status code")
	}
	resp.status = int(s[0]-'0')*100 + int(s[1]-'0')*10 + int(s[2]-'0')
	resp.reason = nil
	if len(line) > 12 {
		if line[12] != ' ' {
			return bad("malformed status line")
		}
		resp.reason = line[13:]
		for _, c := range resp.reason {
			if c < ' ' && c != '\t' || c == 0x7f {
				return bad("invalid reason phrase")
			}
		}
	}
	if err := resp.parseHeaders(rest, false); err != nil {
		return err
	}
	if resp.chunked && resp.contentLength >= 0 {
		// RFC 9112 6.3: Transfer-Encoding overrides; the length must not be forwarded.
		for i := range resp.headers {
			if resp.headers[i].kind == hContentLength {
				resp.headers[i].drop = true
			}
		}
		resp.contentLength = -1
	}
	if resp.minor == 0 && !resp.keepAlive {
		resp.close = true
	}
	resp.dropConnectionNamed()
	return nil
}

// bodyless reports whether a response to method with this status has no body (RFC 9112 6.3).
func (resp *response) bodyless(head bool) bool {
	return head || resp.status < 200 || resp.status == 204 || resp.status == 304
}

func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// forEachToken calls fn for each element of a comma-separated list of tokens.
func forEachToken(v []byte, fn func([]byte)) error {
	for len(v) > 0 {
		i := bytes.IndexByte(v, ',')
		var el []byte
		if i < 0 {
			el, v = v, nil
		} else {
			el, v = v[:i], v[i+1:]
		}
		el = trimOWS(el)
		if len(el) == 0 {
			continue
		}
		if !isToken(el) {
			return bad("invalid token in list")
		}
		fn(el)
	}
	return nil
}

// tokenChars marks RFC 9110 tchar.
var tokenChars = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-32] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return
}()

func isToken[T string | []byte](b T) bool {
	if len(b) == 0 {
		return false
	}
	for i := 0; i < len(b); i++ {
		if !tokenChars[b[i]] {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 32
	}
	return c
}

// eqFold compares b with the lower-case ASCII string s, ignoring case in b.
func eqFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		if lower(b[i]) != s[i] {
			return false
		}
	}
	return true
}

func eqFoldBytes(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

// validHost accepts an RFC 3986 authority without userinfo: reg-name, IPv4, or [IPv6], with an
// optional port. Empty is valid (HTTP/1.0 without Host).
func validHost(h []byte) bool {
	if len(h) == 0 {
		return true
	}
	if h[0] == '[' {
		i := bytes.IndexByte(h, ']')
		if i < 0 {
			return false
		}
		for _, c := range h[1:i] {
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == ':' || c == '.') {
				return false
			}
		}
		h = h[i+1:]
		if len(h) == 0 {
			return true
		}
		if h[0] != ':' {
			return false
		}
		return validPort(h[1:])
	}
	if i := bytes.LastIndexByte(h, ':'); i >= 0 {
		if !validPort(h[i+1:]) {
			return false
		}
		h = h[:i]
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' || c == '%' || c == '!' || c == '$' || c == '&' || c == '\'' || c == '(' || c == ')' || c == '*' || c == '+' || c == ',' || c == ';' || c == '=') {
			return false
		}
	}
	return true
}

func validPort(p []byte) bool {
	if len(p) > 5 {
		return false
	}
	for _, c := range p {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// hostname returns the host without port, lower-cased into dst, and without a trailing dot.
func hostname(dst, authority []byte) []byte {
	h := authority
	if len(h) > 0 && h[0] == '[' {
		if i := bytes.IndexByte(h, ']'); i >= 0 {
			h = h[:i+1]
		}
	} else if i := bytes.LastIndexByte(h, ':'); i >= 0 {
		h = h[:i]
	}
	if n := len(h); n > 0 && h[n-1] == '.' {
		h = h[:n-1]
	}
	dst = dst[:0]
	for _, c := range h {
		dst = append(dst, lower(c))
	}
	return dst
}
