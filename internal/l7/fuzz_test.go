package l7

import (
	"bytes"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/waage/waage/internal/config"
)

var requestSeeds = []string{
	"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST /u?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
	"GET http://a.b:80/c HTTP/1.1\r\nHost: x\r\nConnection: close, X\r\nX: 1\r\n\r\n",
	"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nCookie: a=1; b=\"2\"\r\n\r\n",
	"OPTIONS * HTTP/1.0\r\n\r\n",
	"GET /a/../%2e%2E/b%2F..%2F HTTP/1.1\r\nHost: [::1]:8\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
	"\r\n\nGET / HTTP/1.1\nHost: a\n\n",
}

// FuzzParseRequest checks that no input crashes the parser and that an accepted request obeys the
// framing rules the proxy relies on.
func FuzzParseRequest(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req := &request{}
		if err := parseRequest(data, req); err != nil {
			return
		}
		if req.chunked && req.contentLength >= 0 {
			t.Fatal("accepted both Content-Length and chunked")
		}
		if !validHost(req.host) {
			t.Fatalf("accepted invalid host %q", req.host)
		}
		if !isToken(req.method) {
			t.Fatalf("accepted invalid method %q", req.method)
		}
		for _, h := range req.headers {
			if !isToken(h.name) || bytes.ContainsAny(h.value, "\r\n\x00") {
				t.Fatalf("accepted invalid field %q: %q", h.name, h.value)
			}
		}
		if !req.asterisk {
			p, ok := normalizePath(nil, req.path)
			if ok && (len(p) == 0 || p[0] != '/') {
				t.Fatalf("normalised path %q", p)
			}
		}
	})
}

// FuzzNormalizePath checks the normal form: rooted, no empty or dot segments, idempotent.
func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{"/", "/a/../b", "//x//y/", "/%61/%2e%2e/", "/a%2F..%2Fb", "/..", "/a/.", "/%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		if !strings.HasPrefix(in, "/") {
			in = "/" + in
		}
		out, ok := normalizePath(nil, []byte(in))
		if !ok {
			return
		}
		s := string(out)
		if !strings.HasPrefix(s, "/") || strings.Contains(s, "//") || strings.Contains(s, "/./") || strings.Contains(s, "/../") || strings.HasSuffix(s, "/..") || strings.HasSuffix(s, "/.") {
			t.Fatalf("%q -> %q is not normal", in, s)
		}
		again, ok := normalizePath(nil, out)
		if !ok || string(again) != s {
			t.Fatalf("%q -> %q -> %q", in, s, again)
		}
		if pathIsNormal([]byte(in)) && s != in {
			t.Fatalf("pathIsNormal(%q) but normalised to %q", in, s)
		}
	})
}

// FuzzMatch runs arbitrary requests through a router with every kind of matcher.
func FuzzMatch(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add([]byte(s), "10.1.2.3")
	}
	b := map[string]*Backend{"b": {Name: "b"}}
	rt, err := NewRouter(config.Frontend{Name: "f", DefaultBackend: "b", Routes: []config.Route{{
		Name:    "all",
		Backend: "b",
		Match: config.Match{
			Host: config.StringList{"a", "*.b.c"}, PathPrefix: "/", PathRegex: "^/[a-z]*", Methods: []string{"GET"},
			Headers: config.StringMap{{Key: "X", Value: "~."}}, Cookies: config.StringMap{{Key: "a", Value: "1"}},
			UserAgent: "~x", Query: config.StringMap{{Key: "q", Value: "~^"}}, Source: []string{"10.0.0.0/8"},
		},
	}}}, b)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte, src string) {
		ex := &exchange{}
		if parseRequest(data, &ex.req) != nil {
			return
		}
		path, ok := normalizePath(nil, ex.req.path)
		if !ok {
			return
		}
		addr, _ := netip.ParseAddr(src)
		in := matchInput{req: &ex.req, host: hostname(nil, ex.req.host), path: path, source: addr}
		if rt.route(&in) == nil {
			t.Fatal("default backend not used")
		}
	})
}

// FuzzChunked feeds arbitrary bodies to the chunked decoder: no crash, and whatever it accepts it
// re-emits as well-formed chunked data that decodes to the same bytes.
func FuzzChunked(f *testing.F) {
	for _, s := range []string{"0\r\n\r\n", "5\r\nhello\r\n0\r\n\r\n", "3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n", "5\nhello\n0\n\n", "ffffffffffffffff\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		out, plain, err := dechunk(data, true)
		if err != nil {
			return
		}
		_, plain2, err := dechunk(out, false)
		if err != nil {
			t.Fatalf("re-chunked output %q rejected: %v", out, err)
		}
		if !bytes.Equal(plain, plain2) {
			t.Fatalf("content changed: %q vs %q", plain, plain2)
		}
	})
}

// dechunk runs copyChunked over data: with rechunk it returns the re-framed output and, decoded
// again without rechunking, the plain content.
func dechunk(data []byte, rechunk bool) (out, plain []byte, err error) {
	var buf bytes.Buffer
	dst := &captureConn{w: &buf}
	w := &writer{conn: dst}
	p := pipe{src: &reader{conn: &fakeConn{data: data, step: 7}}, dst: dst, dw: w}
	if err := p.copyChunked(rechunk); err != nil {
		return nil, nil, err
	}
	w.Flush()
	if !rechunk {
		return nil, buf.Bytes(), nil
	}
	out = append([]byte(nil), buf.Bytes()...)
	_, plain, err = dechunk(out, false)
	return out, plain, err
}

// captureConn is a net.Conn destination that records what is written to it.
type captureConn struct {
	fakeConn
	w *bytes.Buffer
}

func (c *captureConn) Write(p []byte) (int, error) { return c.w.Write(p) }

var _ net.Conn = &captureConn{}
