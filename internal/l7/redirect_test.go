package l7

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/waage/waage/internal/backend"
	"github.com/waage/waage/internal/config"
)

// TestPathModReplacePrefix holds replace_prefix to the Gateway API's table for ReplacePrefixMatch
// (HTTPPathModifier) and to whole-segment matching.
func TestPathModReplacePrefix(t *testing.T) {
	tests := []struct {
		name                  string
		path, prefix, replace string
		want                  string
	}{
		{"prefix replaced", "/foo/bar", "/foo", "/xyz", "/xyz/bar"},
		{"trailing slash in replacement", "/foo/bar", "/foo", "/xyz/", "/xyz/bar"},
		{"trailing slash in prefix", "/foo/bar", "/foo/", "/xyz", "/xyz/bar"},
		{"trailing slash in both", "/foo/bar", "/foo/", "/xyz/", "/xyz/bar"},
		{"whole path", "/foo", "/foo", "/xyz", "/xyz"},
		{"whole path with slash", "/foo/", "/foo", "/xyz", "/xyz/"},
		{"removed", "/foo/bar", "/foo", "/", "/bar"},
		{"removed, slash left", "/foo/", "/foo", "/", "/"},
		{"removed, nothing left", "/foo", "/foo", "/", "/"},
		{"root prefix", "/foo/bar", "/", "/xyz", "/xyz/foo/bar"},
		{"root prefix to root", "/foo", "/", "/", "/foo"},
		{"root prefix, root path", "/", "/", "/xyz", "/xyz/"},
		{"conformance prefix", "/prefix/one/two", "/prefix/one", "/one", "/one/two"},
		{"conformance strip", "/strip-prefix/three", "/strip-prefix", "/", "/three"},
		{"not a whole segment", "/foobar", "/foo", "/xyz", "/foobar"},
		{"not a path", "*", "/foo", "/xyz", "*"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := compilePathMod("", tt.replace, tt.prefix)
			head, rest := m.modify([]byte(tt.path))
			if got := head + string(rest); got != tt.want {
				t.Errorf("%s under %s replaced by %s = %q, want %q", tt.path, tt.prefix, tt.replace, got, tt.want)
			}
		})
	}
}

// syncBuffer is an access log sink the test reads while the server writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// routedFront is waage's l7 server with routes in front of one backend "b", serving HTTP/1.1 on
// one loopback listener and h2c with prior knowledge on another. protocol is the backend's
// (config backend protocol).
type routedFront struct {
	h1, h2 string
	s      *Server
	log    *AccessLog
}

func startRouted(t *testing.T, routes []config.Route, protocol, addr string) *routedFront {
	t.Helper()
	tr := NewTransport()
	t.Cleanup(tr.Close)
	bc := config.Backend{Name: "b", Algorithm: "round_robin", Protocol: protocol, Servers: []config.Server{{Name: "s1", Address: addr}}}
	b, err := NewBackend(bc, []*backend.Server{backend.NewServer("b", "s1", addr)}, tr)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := NewRouter(config.Frontend{Name: "f", Routes: routes}, map[string]*Backend{"b": b})
	if err != nil {
		t.Fatal(err)
	}
	f := &routedFront{log: NewAccessLog(&syncBuffer{}, "json")}
	f.s = NewServer(&Handler{Name: "f", Router: rt, Scheme: "http", IdleTimeout: 5 * time.Second, AccessLog: f.log})
	ln1, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go f.s.Serve(ln1)
	go func() {
		for {
			c, err := ln2.Accept()
			if err != nil {
				return
			}
			go f.s.ServeH2Conn(c)
		}
	}()
	t.Cleanup(func() {
		ln1.Close()
		ln2.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		f.s.Shutdown(ctx)
		f.log.Close()
	})
	f.h1, f.h2 = ln1.Addr().String(), ln2.Addr().String()
	return f
}

// redirectRoutes are the routes of TestRouteRedirect and TestRouteRewrite, after the Gateway API
// conformance cases httproute-request-redirect, httproute-redirect-path,
// httproute-redirect-port-and-scheme and httproute-rewrite-path.
var redirectRoutes = []config.Route{
	{Name: "old", Match: config.Match{PathPrefix: "/old/"}, Redirect: &config.Redirect{Scheme: "https", Host: "www.example.com", Port: 8443, Path: "/new", Status: 301}},
	{Name: "shop", Match: config.Match{PathPrefix: "/shop"}, Redirect: &config.Redirect{ReplacePrefix: "/store"}},
	{Name: "strip", Match: config.Match{PathPrefix: "/strip-prefix"}, Redirect: &config.Redirect{ReplacePrefix: "/", Scheme: "https"}},
	{Name: "hostname", Match: config.Match{Path: "/hostname"}, Redirect: &config.Redirect{Host: "example.org"}},
	{Name: "host-and-status", Match: config.Match{Path: "/host-and-status"}, Redirect: &config.Redirect{Host: "example.org", Status: 301}},
	{Name: "port-80", Match: config.Match{Path: "/scheme-nil-and-port-80"}, Redirect: &config.Redirect{Port: 80}},
	{Name: "https-8443", Match: config.Match{Path: "/scheme-https-and-port-8443"}, Redirect: &config.Redirect{Scheme: "https", Port: 8443}},
	{Name: "ipv6", Match: config.Match{Path: "/ipv6"}, Redirect: &config.Redirect{Host: "::1", Status: 308}},
	{Name: "full", Match: config.Match{PathPrefix: "/full"}, Rewrite: &config.Rewrite{Path: "/one"}, Backend: "b"},
	{Name: "prefix", Match: config.Match{PathPrefix: "/prefix/one"}, Rewrite: &config.Rewrite{ReplacePrefix: "/one"}, Backend: "b"},
	{Name: "api", Match: config.Match{PathPrefix: "/api/"}, Rewrite: &config.Rewrite{ReplacePrefix: "/v2"}, Backend: "b"},
	{Name: "s", Match: config.Match{PathPrefix: "/s"}, Rewrite: &config.Rewrite{ReplacePrefix: "/"}, Backend: "b"},
	{Name: "users", Match: config.Match{PathPrefix: "/users/"}, StripPrefix: "/users", Backend: "b"},
	{Name: "rest", Backend: "b"},
}

// clients returns an HTTP/1.1 and an HTTP/2 client of f that do not follow redirects.
func (f *routedFront) clients() map[string]struct {
	c    *http.Client
	addr string
} {
	noFollow := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	h1 := &http.Client{Timeout: 10 * time.Second, CheckRedirect: noFollow}
	h2 := h2cClient()
	h2.CheckRedirect = noFollow
	return map[string]struct {
		c    *http.Client
		addr string
	}{"HTTP/1.1": {h1, f.h1}, "HTTP/2": {h2, f.h2}}
}

// TestRouteRedirect: a route with redirect answers with the status, the Location built from the
// request's URL and the redirect's parts, and an empty body, over HTTP/1.1 and HTTP/2; the answer
// is counted and logged as a response, and the HTTP/1.1 connection stays open.
func TestRouteRedirect(t *testing.T) {
	f := startRouted(t, redirectRoutes, "", h1Backend(t, "s1"))
	tests := []struct {
		name, target, host string
		status             int
		location           string
	}{
		{"all parts", "/old/x?q=1", "a.example", 301, "https://www.example.com:8443/new?q=1"},
		{"prefix replaced", "/shop/item?x=%2F", "a.example:8080", 302, "http://a.example:8080/store/item?x=%2F"},
		{"prefix alone", "/shop", "a.example:8080", 302, "http://a.example:8080/store"},
		{"prefix with slash", "/shop/", "a.example:8080", 302, "http://a.example:8080/store/"},
		{"prefix not a whole segment", "/shopping", "a.example", 302, "http://a.example/shopping"},
		{"prefix removed", "/strip-prefix/three", "a.example:8080", 302, "https://a.example/three"},
		{"prefix removed, nothing left", "/strip-prefix", "a.example", 302, "https://a.example/"},
		{"hostname", "/hostname", "gw.example", 302, "http://example.org/hostname"},
		{"hostname keeps the request's port", "/hostname", "gw.example:8080", 302, "http://example.org:8080/hostname"},
		{"host and status", "/host-and-status", "gw.example", 301, "http://example.org/host-and-status"},
		{"port 80 left out", "/scheme-nil-and-port-80", "gw.example:8080", 302, "http://gw.example/scheme-nil-and-port-80"},
		{"scheme and port", "/scheme-https-and-port-8443", "gw.example", 302, "https://gw.example:8443/scheme-https-and-port-8443"},
		{"normalised path, empty query kept", "/a/../ipv6?", "gw.example", 308, "http://[::1]/ipv6?"},
	}
	for proto, cl := range f.clients() {
		for _, tt := range tests {
			t.Run(proto+"/"+tt.name, func(t *testing.T) {
				req, _ := http.NewRequest("GET", "http://"+cl.addr+tt.target, nil)
				req.Host = tt.host
				resp, err := cl.c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tt.status || resp.Header.Get("Location") != tt.location {
					t.Fatalf("got %d Location %q, want %d %q", resp.StatusCode, resp.Header.Get("Location"), tt.status, tt.location)
				}
				if len(body) != 0 || resp.ContentLength != 0 || resp.Header.Get("Content-Type") != "" {
					t.Errorf("body %q, Content-Length %d, Content-Type %q: want an empty body and no type", body, resp.ContentLength, resp.Header.Get("Content-Type"))
				}
			})
		}
	}
	// The count follows the answer (it is taken once the response went out).
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		n := f.s.Stats.Status[3].Load()
		if n == uint64(2*len(tests)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("3xx counted %d, want %d", n, 2*len(tests))
		}
	}

	// One HTTP/1.1 connection carries a redirect and then a proxied request.
	c, err := net.Dial("tcp", f.h1)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /hostname HTTP/1.1\r\nHost: a\r\n\r\nGET /users/42 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	got, _ := io.ReadAll(c)
	want := "HTTP/1.1 302 Found\r\nLocation: http://example.org/hostname\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK"
	if !strings.HasPrefix(string(got), want) || !strings.Contains(string(got), "HTTP/1.1 GET /42 ") {
		t.Errorf("keep-alive after a redirect: got\n%s\nwant it to start with\n%s\nand the second request proxied as /42", got, want)
	}

	// A request without a Host (HTTP/1.0) cannot be redirected to its own host.
	c2, err := net.Dial("tcp", f.h1)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c2, "GET /shop HTTP/1.0\r\n\r\n")
	if got, _ := io.ReadAll(c2); !strings.HasPrefix(string(got), "HTTP/1.1 400 ") {
		t.Errorf("redirect without Host: got %q, want 400", got)
	}

	f.log.Close()
	log := f.log.out.(*syncBuffer).String()
	for _, w := range []string{`"status":301,`, `"route":"old"`, `"status":308,`, `"route":"ipv6"`} {
		if !strings.Contains(log, w) {
			t.Errorf("access log lacks %s:\n%s", w, log)
		}
	}
}

// TestRouteRewrite: a route with rewrite forwards the request with the path replaced, whole or
// its path_prefix, over HTTP/1.1 and HTTP/2; the query is kept and strip_prefix still works.
func TestRouteRewrite(t *testing.T) {
	f := startRouted(t, redirectRoutes, "", h1Backend(t, "s1"))
	tests := []struct {
		name, target, want string
	}{
		{"full path", "/full/one/two?q=1", "/one?q=1"},
		{"full path, exact", "/full", "/one"},
		{"prefix", "/prefix/one/two", "/one/two"},
		{"prefix alone", "/prefix/one", "/one"},
		{"prefix with slash", "/prefix/one/", "/one/"},
		{"prefix not a whole segment", "/prefix/onetwo?a=b", "/prefix/onetwo?a=b"},
		{"prefix with slash in config", "/api/x", "/v2/x"},
		{"prefix with slash in config, alone", "/api/", "/v2/"},
		{"removed", "/s/three", "/three"},
		{"removed, nothing left", "/s", "/"},
		{"removed, slash left", "/s/?x", "/?x"},
		{"after normalisation", "/a/..//prefix/one/%7Ex", "/one/~x"},
		{"strip_prefix", "/users/42?x=1", "/42?x=1"},
		{"no rewrite", "/other", "/other"},
	}
	for proto, cl := range f.clients() {
		for _, tt := range tests {
			t.Run(proto+"/"+tt.name, func(t *testing.T) {
				resp, err := cl.c.Get("http://" + cl.addr + tt.target)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				// The backend answers "<proto> <method> <request-uri> ...".
				fields := strings.Fields(string(body))
				if resp.StatusCode != 200 || len(fields) < 3 || fields[2] != tt.want {
					t.Fatalf("got %d %q, want the backend to see %s", resp.StatusCode, body, tt.want)
				}
			})
		}
	}
}

// TestRouteRewriteH2CBackend: the rewritten path also reaches servers that speak HTTP/2, from
// HTTP/1.1 and HTTP/2 clients.
func TestRouteRewriteH2CBackend(t *testing.T) {
	f := startRouted(t, redirectRoutes, "h2c", h2cBackend(t))
	for proto, cl := range f.clients() {
		t.Run(proto, func(t *testing.T) {
			resp, err := cl.c.Get("http://" + cl.addr + "/prefix/one/two?q=1")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			// The backend answers "HTTP/2.0 tls=no <method> <request-uri> ...".
			if fields := strings.Fields(string(body)); resp.StatusCode != 200 || len(fields) < 4 || fields[3] != "/one/two?q=1" {
				t.Fatalf("got %d %q, want the backend to see /one/two?q=1", resp.StatusCode, body)
			}
		})
	}
}
