package l7

import (
	"errors"
	"strings"
	"testing"
)

func parseReqString(t testing.TB, s string) (*request, error) {
	t.Helper()
	req := &request{}
	return req, parseRequest([]byte(s), req)
}

func statusOf(err error) int {
	var se *statusError
	if errors.As(err, &se) {
		return se.status
	}
	if err != nil {
		return -1
	}
	return 0
}

func TestParseRequestValid(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		method string
		path   string
		query  string
		host   string
		cl     int64
		chunk  bool
		close  bool
		upg    bool
		exp100 bool
	}{
		{name: "simple", in: "GET / HTTP/1.1\r\nHost: a\r\n\r\n", method: "GET", path: "/", host: "a", cl: -1},
		{name: "query", in: "GET /x?a=1&b=2 HTTP/1.1\r\nHost: a\r\n\r\n", method: "GET", path: "/x", query: "a=1&b=2", host: "a", cl: -1},
		{name: "bare LF lines", in: "GET / HTTP/1.1\nHost: a\n\n", method: "GET", path: "/", host: "a", cl: -1},
		{name: "content length", in: "POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n", method: "POST", path: "/u", host: "a", cl: 12},
		{name: "chunked", in: "POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n", method: "POST", path: "/u", host: "a", cl: -1, chunk: true},
		{name: "http10 closes", in: "GET / HTTP/1.0\r\n\r\n", method: "GET", path: "/", cl: -1, close: true},
		{name: "http10 keep-alive", in: "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", method: "GET", path: "/", cl: -1},
		{name: "connection close", in: "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", method: "GET", path: "/", host: "a", cl: -1, close: true},
		{name: "upgrade", in: "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n", method: "GET", path: "/ws", host: "a", cl: -1, upg: true},
		{name: "connection upgrade without Upgrade field", in: "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n", method: "GET", path: "/", host: "a", cl: -1},
		{name: "expect", in: "PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n", method: "PUT", path: "/", host: "a", cl: 5, exp100: true},
		{name: "expect without body ignored", in: "PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n", method: "PUT", path: "/", host: "a", cl: -1},
		{name: "absolute form", in: "GET http://Example.com:8080/p?q HTTP/1.1\r\nHost: other\r\n\r\n", method: "GET", path: "/p", query: "q", host: "Example.com:8080", cl: -1},
		{name: "absolute form no path", in: "GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n", method: "GET", path: "/", host: "example.com", cl: -1},
		{name: "options asterisk", in: "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", method: "OPTIONS", host: "a", cl: -1},
		{name: "ipv6 host", in: "GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", method: "GET", path: "/", host: "[::1]:80", cl: -1},
		{name: "ows around value", in: "GET / HTTP/1.1\r\nHost: \t a \t\r\n\r\n", method: "GET", path: "/", host: "a", cl: -1},
		{name: "obs-text in value", in: "GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\n\r\n", method: "GET", path: "/", host: "a", cl: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := parseReqString(t, tt.in)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if string(req.method) != tt.method || string(req.path) != tt.path || string(req.query) != tt.query || string(req.host) != tt.host {
				t.Errorf("got method %q path %q query %q host %q", req.method, req.path, req.query, req.host)
			}
			if req.contentLength != tt.cl || req.chunked != tt.chunk || req.close != tt.close || req.upgrade != tt.upg || req.expect100 != tt.exp100 {
				t.Errorf("got cl %d chunked %v close %v upgrade %v expect100 %v", req.contentLength, req.chunked, req.close, req.upgrade, req.expect100)
			}
		})
	}
}

func TestParseRequestRejects(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		status int
	}{
		{"CL and TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"TE and CL", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400},
		{"duplicate CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", 400},
		{"CL list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n", 400},
		{"CL sign", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\n", 400},
		{"CL huge", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 400},
		{"TE gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
		{"TE chunked twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"TE with space trick", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", 400},
		{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400},
		{"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400},
		{"NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400},
		{"CR in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400},
		{"missing host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"bad host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"host with userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400},
		{"http2 line", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
		{"http 1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505},
		{"garbage proto", "GET / FOO\r\nHost: a\r\n\r\n", 400},
		{"lower case proto", "GET / http/1.1\r\nHost: a\r\n\r\n", 400},
		{"two spaces", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"bad method", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"space in target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"8bit target", "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"fragment", "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"asterisk for GET", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"CONNECT", "CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", 405},
		{"bad expect", "GET / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n", 417},
		{"empty header name", "GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n", 400},
		{"bad connection token", "GET / HTTP/1.1\r\nHost: a\r\nConnection: a b\r\n\r\n", 400},
		{"absolute form with userinfo", "GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"unknown scheme", "GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseReqString(t, tt.in)
			if got := statusOf(err); got != tt.status {
				t.Fatalf("status %d (%v), want %d", got, err, tt.status)
			}
		})
	}
}

func TestHopByHopDropped(t *testing.T) {
	req, err := parseReqString(t, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nProxy-Connection: x\r\nTE: trailers\r\nX-Keep: 1\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range req.headers {
		want := string(h.name) == "Host" || string(h.name) == "X-Keep"
		if h.drop == want {
			t.Errorf("%s: drop=%v", h.name, h.drop)
		}
	}
}

func TestParseResponse(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		status int
		cl     int64
		chunk  bool
		close  bool
		err    bool
	}{
		{name: "ok", in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", status: 200, cl: 5},
		{name: "no reason", in: "HTTP/1.1 204\r\n\r\n", status: 204, cl: -1},
		{name: "empty reason", in: "HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", status: 200, cl: 0},
		{name: "chunked wins over length", in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", status: 200, cl: -1, chunk: true},
		{name: "http10", in: "HTTP/1.0 200 OK\r\n\r\n", status: 200, cl: -1, close: true},
		{name: "close", in: "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", status: 200, cl: -1, close: true},
		{name: "100", in: "HTTP/1.1 100 Continue\r\n\r\n", status: 100, cl: -1},
		{name: "garbage", in: "hello\r\n\r\n", err: true},
		{name: "bad status", in: "HTTP/1.1 2x0 OK\r\n\r\n", err: true},
		{name: "status 600", in: "HTTP/1.1 600 OK\r\n\r\n", err: true},
		{name: "duplicate length", in: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", err: true},
		{name: "bad field", in: "HTTP/1.1 200 OK\r\nBad Field: 1\r\n\r\n", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := &response{}
			err := parseResponse([]byte(tt.in), resp)
			if tt.err {
				if err == nil {
					t.Fatal("want error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if resp.status != tt.status || resp.contentLength != tt.cl || resp.chunked != tt.chunk || resp.close != tt.close {
				t.Errorf("got status %d cl %d chunked %v close %v", resp.status, resp.contentLength, resp.chunked, resp.close)
			}
		})
	}
}

func TestFindHeadEnd(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int
	}{
		{"GET / HTTP/1.1\r\n\r\n", 18},
		{"GET / HTTP/1.1\n\n", 16},
		{"GET / HTTP/1.1\r\nA: b\r\n", -1},
		{"GET / HTTP/1.1\r\nA: b\r\n\r\nbody", 24},
	} {
		if got := findHeadEnd([]byte(tt.in), 0); got != tt.want {
			t.Errorf("%q: %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestParseChunkSize(t *testing.T) {
	for _, tt := range []struct {
		in string
		n  int64
		ok bool
	}{
		{"0", 0, true}, {"a", 10, true}, {"FF", 255, true}, {"10;ext=1", 16, true}, {"10 ;ext", 16, true},
		{"", 0, false}, {"g", 0, false}, {"-1", 0, false}, {"0x10", 0, false}, {"10 x", 0, false},
		{"1234567890abcdef0", 0, false}, {"10;a\x00", 0, false},
	} {
		n, ok := parseChunkSize([]byte(tt.in))
		if ok != tt.ok || ok && n != tt.n {
			t.Errorf("%q: %d %v, want %d %v", tt.in, n, ok, tt.n, tt.ok)
		}
	}
}

func TestHostname(t *testing.T) {
	for in, want := range map[string]string{
		"Example.COM:8080": "example.com", "example.com.": "example.com", "[::1]:80": "[::1]", "": "", "a": "a",
	} {
		if got := string(hostname(nil, []byte(in))); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

func TestReadHeadLimits(t *testing.T) {
	big := "GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("a", 70000) + "\r\n\r\n"
	rd := &reader{conn: &fakeConn{data: []byte(big)}}
	if _, err := rd.readHead(maxHeadBytes); !errors.Is(err, errHeadTooLarge) {
		t.Fatalf("got %v, want errHeadTooLarge", err)
	}
	// Leading empty lines are skipped.
	rd = &reader{conn: &fakeConn{data: []byte("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")}}
	head, err := rd.readHead(maxHeadBytes)
	if err != nil || !strings.HasPrefix(string(head), "GET") {
		t.Fatalf("got %q %v", head, err)
	}
}

// TestClassify: every known field name is recognised in any case, others are hOther.
func TestClassify(t *testing.T) {
	for _, k := range kindNames {
		if got := classify([]byte(strings.ToUpper(k.name))); got != k.kind {
			t.Errorf("classify(%q) = %v, want %v", strings.ToUpper(k.name), got, k.kind)
		}
	}
	for _, n := range []string{"", "x", "hosts", "content-lengths", "x-very-long-field-name-beyond-any-known"} {
		if got := classify([]byte(n)); got != hOther {
			t.Errorf("classify(%q) = %v, want hOther", n, got)
		}
	}
}
