package kube

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/waage/waage/internal/config"
	"github.com/waage/waage/internal/runtime"
)

// The tests here run HTTPRoutes with URLRewrite and RequestRedirect filters through Translate and a
// real waage runtime, and check what a client and the backend see, after the Gateway API
// conformance cases httproute-rewrite-path, httproute-rewrite-host, httproute-request-redirect,
// httproute-redirect-path and httproute-redirect-port-and-scheme.

// seen is what the echo backend reports about the request it got.
type seen struct {
	URI    string
	Host   string
	Header http.Header
}

// serveRoutes translates the routes on the world's Gateway (port 80), with Services a and b both
// pointing at one echo backend, serves the Gateway's frontend on a loopback port with a real
// runtime and returns its address.
func serveRoutes(t *testing.T, routes ...*gwv1.HTTPRoute) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	echo := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(seen{URI: r.RequestURI, Host: r.Host, Header: r.Header})
	})}
	go echo.Serve(ln)
	t.Cleanup(func() { echo.Close() })
	port := int32(ln.Addr().(*net.TCPAddr).Port)

	objs := world(routes...)
	for _, es := range objs.EndpointSlices {
		es.Ports[0].Port = ptr(port)
		for i := range es.Endpoints {
			es.Endpoints[i].Addresses = []string{"127.0.0.1"}
		}
	}
	r := Translate(objs, opts())
	for _, hr := range routes {
		for _, ps := range r.Status.HTTPRoutes[nn(hr.Namespace, hr.Name)] {
			if c := condOf(ps.Conditions, string(gwv1.RouteConditionAccepted)); c == nil || c.Reason != string(gwv1.RouteReasonAccepted) {
				t.Fatalf("route %s not accepted: %+v", hr.Name, ps.Conditions)
			}
		}
	}
	fe := frontend(t, r, "kubernetes/gateway-80")
	fe.Listen = []string{"127.0.0.1:0"}
	r.Frontends = []config.Frontend{fe}
	cfg := Merge(&config.Config{Log: config.Log{Access: "off"}}, &r)
	cfg.ApplyDefaults()
	rt := runtime.New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := rt.Apply(cfg); err != nil {
		t.Fatalf("apply: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		rt.Shutdown(ctx)
	})
	return rt.Addrs(fe.Name)[0].String()
}

// get sends GET target with the Host and headers to addr without following redirects.
func get(t *testing.T, addr, host, target string, headers map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+addr+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	c := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func backendSaw(t *testing.T, resp *http.Response) seen {
	t.Helper()
	var s seen
	if resp.StatusCode != 200 {
		t.Fatalf("status %d, want 200 from the backend", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

func prefixRule(path string, filters ...gwv1.HTTPRouteFilter) gwv1.HTTPRouteRule {
	r := gwv1.HTTPRouteRule{Filters: filters, BackendRefs: []gwv1.HTTPBackendRef{backendRef("a", 1)}}
	if path != "" {
		r.Matches = []gwv1.HTTPRouteMatch{pathMatch(gwv1.PathMatchPathPrefix, path)}
	}
	return r
}

func rewritePath(typ gwv1.HTTPPathModifierType, v string) gwv1.HTTPRouteFilter {
	m := &gwv1.HTTPPathModifier{Type: typ}
	if typ == gwv1.FullPathHTTPPathModifier {
		m.ReplaceFullPath = ptr(v)
	} else {
		m.ReplacePrefixMatch = ptr(v)
	}
	return gwv1.HTTPRouteFilter{Type: gwv1.HTTPRouteFilterURLRewrite, URLRewrite: &gwv1.HTTPURLRewriteFilter{Path: m}}
}

func rewriteHost(h string) gwv1.HTTPRouteFilter {
	return gwv1.HTTPRouteFilter{Type: gwv1.HTTPRouteFilterURLRewrite, URLRewrite: &gwv1.HTTPURLRewriteFilter{Hostname: ptr(gwv1.PreciseHostname(h))}}
}

var modifyHeaders = gwv1.HTTPRouteFilter{Type: gwv1.HTTPRouteFilterRequestHeaderModifier, RequestHeaderModifier: &gwv1.HTTPHeaderFilter{
	Set:    []gwv1.HTTPHeader{{Name: "X-Header-Set", Value: "set-overwrites-values"}},
	Add:    []gwv1.HTTPHeader{{Name: "X-Header-Add", Value: "header-val-1"}, {Name: "X-Header-Add-Append", Value: "header-val-2"}},
	Remove: []string{"X-Header-Remove"},
}}

var headersIn = map[string]string{"X-Header-Remove": "remove-val", "X-Header-Add-Append": "append-val-1", "X-Header-Set": "set-val"}

// checkModifiedHeaders checks what modifyHeaders did to headersIn.
func checkModifiedHeaders(t *testing.T, h http.Header) {
	t.Helper()
	if h.Get("X-Header-Add") != "header-val-1" || h.Get("X-Header-Set") != "set-overwrites-values" ||
		len(h.Values("X-Header-Add-Append")) != 2 || h.Get("X-Header-Remove") != "" {
		t.Errorf("headers %v: want X-Header-Add, X-Header-Set replaced, X-Header-Add-Append twice, no X-Header-Remove", h)
	}
}

// TestURLRewritePath ports httproute-rewrite-path, with more paths around the prefixes.
func TestURLRewritePath(t *testing.T) {
	addr := serveRoutes(t, route("rewrite-path", 0, nil,
		prefixRule("/prefix/one", rewritePath(gwv1.PrefixMatchHTTPPathModifier, "/one")),
		prefixRule("/strip-prefix", rewritePath(gwv1.PrefixMatchHTTPPathModifier, "/")),
		prefixRule("/empty-prefix", rewritePath(gwv1.PrefixMatchHTTPPathModifier, "")),
		prefixRule("/slash-prefix/", rewritePath(gwv1.PrefixMatchHTTPPathModifier, "/xyz/")),
		prefixRule("/full/one", rewritePath(gwv1.FullPathHTTPPathModifier, "/one")),
		prefixRule("/full/rewrite-path-and-modify-headers", rewritePath(gwv1.FullPathHTTPPathModifier, "/test"), modifyHeaders),
		prefixRule("/prefix/rewrite-path-and-modify-headers", rewritePath(gwv1.PrefixMatchHTTPPathModifier, "/prefix"), modifyHeaders),
		gwv1.HTTPRouteRule{Matches: []gwv1.HTTPRouteMatch{pathMatch(gwv1.PathMatchExact, "/exact")}, Filters: []gwv1.HTTPRouteFilter{rewritePath(gwv1.FullPathHTTPPathModifier, "/exact-replaced")},
			BackendRefs: []gwv1.HTTPBackendRef{backendRef("a", 1)}},
		prefixRule("", rewritePath(gwv1.PrefixMatchHTTPPathModifier, "/root")),
	))
	tests := []struct {
		name, path, want string
		headers          bool
	}{
		{name: "prefix", path: "/prefix/one/two", want: "/one/two"},
		{name: "prefix alone", path: "/prefix/one", want: "/one"},
		{name: "prefix with slash", path: "/prefix/one/", want: "/one/"},
		{name: "query kept", path: "/prefix/one/two?a=1&b", want: "/one/two?a=1&b"},
		{name: "strip prefix", path: "/strip-prefix/three", want: "/three"},
		{name: "strip prefix alone", path: "/strip-prefix", want: "/"},
		{name: "strip prefix with slash", path: "/strip-prefix/", want: "/"},
		{name: "empty replacement", path: "/empty-prefix/x", want: "/x"},
		{name: "empty replacement alone", path: "/empty-prefix", want: "/"},
		{name: "trailing slashes", path: "/slash-prefix/bar", want: "/xyz/bar"},
		{name: "trailing slashes alone", path: "/slash-prefix", want: "/xyz"},
		{name: "full", path: "/full/one/two", want: "/one"},
		{name: "full alone", path: "/full/one", want: "/one"},
		{name: "full with headers", path: "/full/rewrite-path-and-modify-headers/test", want: "/test", headers: true},
		{name: "prefix with headers", path: "/prefix/rewrite-path-and-modify-headers/one", want: "/prefix/one", headers: true},
		{name: "exact match, full path", path: "/exact?q", want: "/exact-replaced?q"},
		{name: "prefix / replaced", path: "/other/x", want: "/root/other/x"},
		{name: "prefix / replaced, root", path: "/", want: "/root/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hdrs map[string]string
			if tt.headers {
				hdrs = headersIn
			}
			s := backendSaw(t, get(t, addr, "gw.example", tt.path, hdrs))
			if s.URI != tt.want {
				t.Errorf("backend saw %s, want %s", s.URI, tt.want)
			}
			if tt.headers {
				checkModifiedHeaders(t, s.Header)
			}
		})
	}
}

// TestURLRewriteHost ports httproute-rewrite-host.
func TestURLRewriteHost(t *testing.T) {
	addr := serveRoutes(t, route("rewrite-host", 0, []string{"rewrite.example"},
		prefixRule("/one", rewriteHost("one.example.org")),
		prefixRule("", rewriteHost("example.org")),
		prefixRule("/rewrite-host-and-modify-headers", rewriteHost("test.example.org"), modifyHeaders),
	))
	tests := []struct {
		name, path, host string
		headers          bool
	}{
		{name: "prefix", path: "/one", host: "one.example.org"},
		{name: "everything else", path: "/", host: "example.org"},
		{name: "with headers", path: "/rewrite-host-and-modify-headers", host: "test.example.org", headers: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hdrs map[string]string
			if tt.headers {
				hdrs = headersIn
			}
			s := backendSaw(t, get(t, addr, "rewrite.example", tt.path, hdrs))
			if s.Host != tt.host || s.URI != tt.path {
				t.Errorf("backend saw Host %s, %s; want %s, %s", s.Host, s.URI, tt.host, tt.path)
			}
			if tt.headers {
				checkModifiedHeaders(t, s.Header)
			}
		})
	}
}

func redirectRule(path string, rr gwv1.HTTPRequestRedirectFilter) gwv1.HTTPRouteRule {
	return gwv1.HTTPRouteRule{Matches: []gwv1.HTTPRouteMatch{pathMatch(gwv1.PathMatchPathPrefix, path)},
		Filters: []gwv1.HTTPRouteFilter{{Type: gwv1.HTTPRouteFilterRequestRedirect, RequestRedirect: &rr}}}
}

func fullPath(p string) *gwv1.HTTPPathModifier {
	return &gwv1.HTTPPathModifier{Type: gwv1.FullPathHTTPPathModifier, ReplaceFullPath: ptr(p)}
}

func prefixPath(p string) *gwv1.HTTPPathModifier {
	return &gwv1.HTTPPathModifier{Type: gwv1.PrefixMatchHTTPPathModifier, ReplacePrefixMatch: ptr(p)}
}

// TestRequestRedirect ports httproute-request-redirect, httproute-redirect-path and the cases of
// httproute-redirect-port-and-scheme on an http listener (on port 80, and on 8080 by the Host the
// client sends).
func TestRequestRedirect(t *testing.T) {
	addr := serveRoutes(t, route("request-redirect", 0, nil,
		redirectRule("/hostname", gwv1.HTTPRequestRedirectFilter{Hostname: ptr(gwv1.PreciseHostname("example.org"))}),
		redirectRule("/status-code-301", gwv1.HTTPRequestRedirectFilter{StatusCode: ptr(301)}),
		redirectRule("/host-and-status", gwv1.HTTPRequestRedirectFilter{StatusCode: ptr(301), Hostname: ptr(gwv1.PreciseHostname("example.org"))}),
		redirectRule("/original-prefix", gwv1.HTTPRequestRedirectFilter{Path: prefixPath("/replacement-prefix")}),
		redirectRule("/full", gwv1.HTTPRequestRedirectFilter{Path: fullPath("/full-path-replacement")}),
		redirectRule("/path-and-host", gwv1.HTTPRequestRedirectFilter{Hostname: ptr(gwv1.PreciseHostname("example.org")), Path: prefixPath("/replacement-prefix")}),
		redirectRule("/path-and-status", gwv1.HTTPRequestRedirectFilter{Path: prefixPath("/replacement-prefix"), StatusCode: ptr(301)}),
		redirectRule("/full-path-and-host", gwv1.HTTPRequestRedirectFilter{Hostname: ptr(gwv1.PreciseHostname("example.org")), Path: fullPath("/replacement-full")}),
		redirectRule("/strip", gwv1.HTTPRequestRedirectFilter{Path: prefixPath("/")}),
		redirectRule("/scheme-nil-and-port-nil", gwv1.HTTPRequestRedirectFilter{Hostname: ptr(gwv1.PreciseHostname("example.org"))}),
		redirectRule("/scheme-nil-and-port-80", gwv1.HTTPRequestRedirectFilter{Hostname: ptr(gwv1.PreciseHostname("example.org")), Port: ptr(gwv1.PortNumber(80))}),
		redirectRule("/scheme-nil-and-port-8080", gwv1.HTTPRequestRedirectFilter{Hostname: ptr(gwv1.PreciseHostname("example.org")), Port: ptr(gwv1.PortNumber(8080))}),
		redirectRule("/scheme-https-and-port-nil", gwv1.HTTPRequestRedirectFilter{Hostname: ptr(gwv1.PreciseHostname("example.org")), Scheme: ptr("https")}),
		redirectRule("/scheme-https-and-port-443", gwv1.HTTPRequestRedirectFilter{Hostname: ptr(gwv1.PreciseHostname("example.org")), Scheme: ptr("https"), Port: ptr(gwv1.PortNumber(443))}),
		redirectRule("/scheme-https-and-port-8443", gwv1.HTTPRequestRedirectFilter{Hostname: ptr(gwv1.PreciseHostname("example.org")), Scheme: ptr("https"), Port: ptr(gwv1.PortNumber(8443))}),
	))
	tests := []struct {
		name, host, path string
		status           int
		location         string
	}{
		{"hostname", "gw.example", "/hostname", 302, "http://example.org/hostname"},
		{"status 301", "gw.example", "/status-code-301", 301, "http://gw.example/status-code-301"},
		{"host and status", "gw.example", "/host-and-status", 301, "http://example.org/host-and-status"},
		{"prefix", "gw.example", "/original-prefix/lemon", 302, "http://gw.example/replacement-prefix/lemon"},
		{"prefix alone", "gw.example", "/original-prefix", 302, "http://gw.example/replacement-prefix"},
		{"prefix with slash, query", "gw.example", "/original-prefix/?q=1", 302, "http://gw.example/replacement-prefix/?q=1"},
		{"full path", "gw.example", "/full/path/original", 302, "http://gw.example/full-path-replacement"},
		{"path and host", "gw.example", "/path-and-host", 302, "http://example.org/replacement-prefix"},
		{"path and status", "gw.example", "/path-and-status", 301, "http://gw.example/replacement-prefix"},
		{"full path and host", "gw.example", "/full-path-and-host", 302, "http://example.org/replacement-full"},
		{"prefix removed", "gw.example", "/strip/x", 302, "http://gw.example/x"},
		{"prefix removed, nothing left", "gw.example", "/strip", 302, "http://gw.example/"},
		{"80: scheme nil, port nil", "gw.example", "/scheme-nil-and-port-nil", 302, "http://example.org/scheme-nil-and-port-nil"},
		{"80: scheme nil, port 80", "gw.example", "/scheme-nil-and-port-80", 302, "http://example.org/scheme-nil-and-port-80"},
		{"80: scheme nil, port 8080", "gw.example", "/scheme-nil-and-port-8080", 302, "http://example.org:8080/scheme-nil-and-port-8080"},
		{"80: scheme https, port nil", "gw.example", "/scheme-https-and-port-nil", 302, "https://example.org/scheme-https-and-port-nil"},
		{"80: scheme https, port 443", "gw.example", "/scheme-https-and-port-443", 302, "https://example.org/scheme-https-and-port-443"},
		{"80: scheme https, port 8443", "gw.example", "/scheme-https-and-port-8443", 302, "https://example.org:8443/scheme-https-and-port-8443"},
		{"8080: scheme nil, port nil", "gw.example:8080", "/scheme-nil-and-port-nil", 302, "http://example.org:8080/scheme-nil-and-port-nil"},
		{"8080: scheme nil, port 80", "gw.example:8080", "/scheme-nil-and-port-80", 302, "http://example.org/scheme-nil-and-port-80"},
		{"8080: scheme https, port nil", "gw.example:8080", "/scheme-https-and-port-nil", 302, "https://example.org/scheme-https-and-port-nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := get(t, addr, tt.host, tt.path, nil)
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status || resp.Header.Get("Location") != tt.location {
				t.Errorf("got %d Location %q, want %d %q", resp.StatusCode, resp.Header.Get("Location"), tt.status, tt.location)
			}
			if len(body) != 0 || resp.Header.Get("Content-Length") != strconv.Itoa(0) {
				t.Errorf("body %q, Content-Length %q: want empty", body, resp.Header.Get("Content-Length"))
			}
		})
	}
}
