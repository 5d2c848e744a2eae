package h2srv

import (
	"net/textproto"
	"strconv"
	"strings"
	"unsafe"
)

// Field names as they arrive (lower case) and as net/http keys them (canonical). Common names are
// looked up in two static maps, which saves an allocation per field both ways: a request's
// fields are canonicalised for http.Header and a response's are lower-cased for HPACK.
var commonNames = []string{
	"accept", "accept-charset", "accept-encoding", "accept-language", "accept-ranges", "age",
	"access-control-allow-credentials", "access-control-allow-headers",
	"access-control-allow-methods", "access-control-allow-origin", "access-control-expose-headers",
	"access-control-max-age", "access-control-request-headers", "access-control-request-method",
	"allow", "authorization", "cache-control", "content-disposition", "content-encoding",
	"content-language", "content-length", "content-location", "content-range", "content-type",
	"cookie", "date", "etag", "expect", "expires", "forwarded", "from", "grpc-accept-encoding",
	"grpc-encoding", "grpc-message", "grpc-status", "grpc-timeout", "host", "if-match",
	"if-modified-since", "if-none-match", "if-range", "if-unmodified-since", "last-modified",
	"link", "location", "max-forwards", "origin", "pragma", "priority", "proxy-authenticate",
	"proxy-authorization", "range", "referer", "refresh", "retry-after", "sec-fetch-dest",
	"sec-fetch-mode", "sec-fetch-site", "sec-fetch-user", "server", "set-cookie",
	"strict-transport-security", "te", "trailer", "upgrade-insecure-requests", "user-agent",
	"vary", "via", "www-authenticate", "x-content-type-options", "x-forwarded-for",
	"x-forwarded-host", "x-forwarded-proto", "x-frame-options", "x-real-ip", "x-request-id",
	"x-requested-with", "x-xss-protection", "x-client-cert-subject",
}

var (
	canonOf = make(map[string]string, len(commonNames)) // lower -> canonical
	lowerOf = make(map[string]string, len(commonNames)) // canonical -> lower
)

func init() {
	for _, n := range commonNames {
		c := textproto.CanonicalMIMEHeaderKey(n)
		canonOf[n] = c
		lowerOf[c] = n
	}
}

// canonicalKey is http.CanonicalHeaderKey for a lower-case field name.
func canonicalKey(lower string) string {
	if c, ok := canonOf[lower]; ok {
		return c
	}
	return textproto.CanonicalMIMEHeaderKey(lower)
}

// lowerName returns the HPACK name of a response field: lower case, or false when the name is
// not a valid token (such a field is not sent).
func lowerName(k string) (string, bool) {
	if l, ok := lowerOf[k]; ok {
		return l, true
	}
	upper := false
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !isTokenByte(c) {
			return "", false
		}
		if 'A' <= c && c <= 'Z' {
			upper = true
		}
	}
	if len(k) == 0 {
		return "", false
	}
	if !upper {
		return k, true
	}
	return strings.ToLower(k), true
}

// tokenTable marks the bytes allowed in a field name (RFC 9110 tchar).
var tokenTable = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func isTokenByte(c byte) bool { return tokenTable[c] }

// validRequestName reports whether a request field name is a lower-case token (RFC 9113
// section 8.2.1: upper case makes the request malformed).
func validRequestName(n string) bool {
	if n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !tokenTable[c] || 'A' <= c && c <= 'Z' {
			return false
		}
	}
	return true
}

// validValue reports whether a field value is free of control bytes other than HTAB (NUL, CR
// and LF make a request malformed by RFC 9113 section 8.2.1; the HTTP/1.1 path refuses the
// other controls too).
func validValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// connectionSpecific reports whether a lower-case field name is one that HTTP/2 forbids
// (RFC 9113 section 8.2.2). TE is checked apart: "trailers" is allowed.
func connectionSpecific(n string) bool {
	switch n {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		return true
	}
	return false
}

// parseContentLength parses a content-length value: digits only.
func parseContentLength(v string) (int64, bool) {
	if v == "" || len(v) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// statusStrings are the :status values of 100..599, made once.
var statusStrings = func() (s [600]string) {
	for i := 100; i < 600; i++ {
		s[i] = strconv.Itoa(i)
	}
	return s
}()

func statusString(code int) string {
	if code >= 100 && code < 600 {
		return statusStrings[code]
	}
	return strconv.Itoa(code)
}

// validToken reports whether s is a non-empty token (a method).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tokenTable[s[i]] {
			return false
		}
	}
	return true
}

// addedFields holds the response fields given as bytes (Stream.AddField), HPACK-encoded as
// they come (hpackenc.go), in the stream's own array for the usual few fields.
type addedFields struct {
	block  []byte
	length int64 // a content-length among them, -1 when none (set by the stream's creation)
	arr    [320]byte
}

// AddField adds a response field given as bytes, for proxies that parsed it from another
// connection: the name in any case, the value as it is; both are copied. Such fields go out
// after Header()'s, in the order added; a content-length among them counts as Header's would.
// Invalid names and values, and fields HTTP/2 forbids (connection-specific), are left out. It
// must be called before WriteHeader.
func (s *Stream) AddField(name, value []byte) {
	a := &s.added
	if len(name) == 0 || len(name) > 1<<16 || !validValue(unsafe.String(unsafe.SliceData(value), len(value))) {
		return
	}
	var arr [32]byte
	lname := arr[:0]
	if len(name) > len(arr) {
		lname = make([]byte, 0, len(name))
	}
	for _, c := range name {
		if !isTokenByte(c) {
			return
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		lname = append(lname, c)
	}
	if connectionSpecific(string(lname)) {
		return
	}
	if string(lname) == "content-length" {
		if n, ok := parseContentLength(unsafe.String(unsafe.SliceData(value), len(value))); ok {
			a.length = n
		}
	}
	if a.block == nil {
		a.block = a.arr[:0]
	}
	a.block = appendField(a.block, lname, value)
}

// SetContentLength adds content-length: n as AddField would.
func (s *Stream) SetContentLength(n int64) {
	var num [20]byte
	s.AddField(contentLengthName, strconv.AppendInt(num[:0], n, 10))
}

var contentLengthName = []byte("content-length")
