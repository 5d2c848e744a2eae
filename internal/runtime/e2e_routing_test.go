package runtime

import (
	"fmt"
	"strings"
	"testing"
)

// routingNames are the demo backends of TestE2ERouting, one per route, each answering with its name.
var routingNames = []string{
	"host", "wild", "path", "prefix", "regex", "method", "header", "headerre", "cookie", "ua",
	"query", "ten", "local", "first", "second", "admin", "strip", "default",
}

func routingConfig(addrs map[string]string) string {
	var sb strings.Builder
	sb.WriteString(`frontends:
  - name: web
    listen: ["127.0.0.1:0"]
    routes:
      - {name: host, match: {host: api.example.com}, backend: host}
      - {name: wild, match: {host: "*.wild.example.com"}, backend: wild}
      - {name: path, match: {host: p.test, path: /exact}, backend: path}
      - {name: prefix, match: {host: p.test, path_prefix: /pre/}, backend: prefix}
      - {name: regex, match: {host: p.test, path_regex: "^/v[0-9]+/"}, backend: regex}
      - {name: method, match: {host: m.test, methods: [POST, PUT]}, backend: method}
      - {name: header, match: {host: h.test, headers: {X-Canary: "true"}}, backend: header}
      - {name: headerre, match: {host: h.test, headers: {X-Version: "~^v[0-9]+$"}}, backend: headerre}
      - {name: cookie, match: {host: c.test, cookies: {beta: "1"}}, backend: cookie}
      - {name: ua, match: {host: u.test, user_agent: "~(?i)mobile"}, backend: ua}
      - {name: query, match: {host: q.test, query: {debug: "1"}}, backend: query}
      - {name: ten, match: {host: s.test, source: ["10.0.0.0/8"]}, backend: ten}
      - {name: local, match: {host: s.test, source: ["127.0.0.0/8"]}, backend: local}
      - {name: first, match: {host: f.test, path_prefix: /}, backend: first}
      - {name: second, match: {host: f.test}, backend: second}
      - {name: admin, match: {host: n.test, path: /admin}, backend: admin}
      - {name: strip, match: {host: strip.test, path_prefix: /api}, strip_prefix: /api, backend: strip}
    default_backend: default
  - name: nodefault
    listen: ["127.0.0.1:0"]
    routes:
      - {name: only, match: {host: only.test}, backend: default}
backends:
`)
	for _, n := range routingNames {
		fmt.Fprintf(&sb, "  - {name: %s, servers: [{name: s1, address: %q}]}\n", n, addrs[n])
	}
	return sb.String()
}

func startRouting(t *testing.T) *Runtime {
	bs := startDemo(t, routingNames...)
	addrs := map[string]string{}
	for _, b := range bs {
		addrs[b.Name] = b.Addr
	}
	return startWaage(t, routingConfig(addrs))
}

func TestE2ERouting(t *testing.T) {
	t.Parallel()
	rt := startRouting(t)
	addr := feAddr(t, rt, "web")
	tests := []struct {
		name    string
		req     string
		backend string
		path    string // path as the server saw it; "" = not checked
	}{
		{"host exact", get("/", "api.example.com"), "host", "/"},
		{"host exact with port", get("/", "api.example.com:8080"), "host", ""},
		{"host exact case-insensitive", get("/", "API.Example.COM"), "host", ""},
		{"host exact trailing dot", get("/", "api.example.com."), "host", ""},
		{"host other goes to default", get("/", "web.example.com"), "default", ""},
		{"host wildcard one label", get("/", "a.wild.example.com"), "wild", ""},
		{"host wildcard two labels", get("/", "a.b.wild.example.com"), "wild", ""},
		{"host wildcard apex does not match", get("/", "wild.example.com"), "default", ""},
		{"host wildcard suffix only at label boundary", get("/", "xwild.example.com"), "default", ""},
		{"path exact", get("/exact", "p.test"), "path", "/exact"},
		{"path exact not prefix", get("/exact/more", "p.test"), "default", ""},
		{"path_prefix", get("/pre/x/y", "p.test"), "prefix", "/pre/x/y"},
		{"path_prefix needs the slash", get("/pre", "p.test"), "default", ""},
		{"path_regex", get("/v2/users", "p.test"), "regex", "/v2/users"},
		{"path_regex no match", get("/vx/users", "p.test"), "default", ""},
		{"method GET not listed", get("/", "m.test"), "default", ""},
		{"method POST", request("POST", "/", "m.test", "x"), "method", ""},
		{"method PUT", request("PUT", "/", "m.test", "x"), "method", ""},
		{"method lower-case is another method", request("post", "/", "m.test", "x"), "default", ""},
		{"header exact", get("/", "h.test", "X-Canary: true"), "header", ""},
		{"header exact name case-insensitive", get("/", "h.test", "x-canary: true"), "header", ""},
		{"header exact wrong value", get("/", "h.test", "X-Canary: TRUE"), "default", ""},
		{"header regex", get("/", "h.test", "X-Version: v12"), "headerre", ""},
		{"header regex no match", get("/", "h.test", "X-Version: v12b"), "default", ""},
		{"header first route wins", get("/", "h.test", "X-Canary: true", "X-Version: v1"), "header", ""},
		{"cookie", get("/", "c.test", "Cookie: a=b; beta=1; c=d"), "cookie", ""},
		{"cookie in second field", get("/", "c.test", "Cookie: a=b", "Cookie: beta=1"), "cookie", ""},
		{"cookie wrong value", get("/", "c.test", "Cookie: beta=11"), "default", ""},
		{"cookie name is not a value", get("/", "c.test", "Cookie: x=beta=1"), "default", ""},
		{"user_agent regex", get("/", "u.test", "User-Agent: Foo MOBILE Safari"), "ua", ""},
		{"user_agent no match", get("/", "u.test", "User-Agent: desktop"), "default", ""},
		{"user_agent absent", get("/", "u.test"), "default", ""},
		{"query", get("/?a=2&debug=1", "q.test"), "query", "/?a=2&debug=1"},
		{"query encoded", get("/?%64ebug=%31", "q.test"), "query", ""},
		{"query wrong value", get("/?debug=10", "q.test"), "default", ""},
		{"query absent", get("/", "q.test"), "default", ""},
		{"source 127/8 not 10/8", get("/", "s.test"), "local", ""},
		{"first match wins", get("/x", "f.test"), "first", ""},
		{"admin exact", get("/admin", "n.test"), "admin", "/admin"},
		{"normalised dot-dot", get("/api/../admin", "n.test"), "admin", "/admin"},
		{"normalised double slash", get("//admin", "n.test"), "admin", "/admin"},
		{"normalised dot segment", get("/./admin", "n.test"), "admin", "/admin"},
		{"normalised percent-encoded unreserved", get("/%61dmin", "n.test"), "admin", "/admin"},
		{"normalised dot-dot above root", get("/../../admin", "n.test"), "admin", "/admin"},
		{"normalised encoded dots", get("/x/%2e%2e/admin", "n.test"), "admin", "/admin"},
		{"absolute-form target", get("http://n.test/admin", "other.test"), "admin", "/admin"},
		{"strip_prefix", get("/api/users?x=1", "strip.test"), "strip", "/users?x=1"},
		{"strip_prefix whole path", get("/api", "strip.test"), "strip", "/"},
		{"strip_prefix after normalising", get("//api/./v1/../users", "strip.test"), "strip", "/users"},
		{"default backend", get("/anything", "nomatch.test"), "default", "/anything"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, addr)
			resp, body := rc.mustDo(t, tc.req)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d, body %q", resp.StatusCode, body)
			}
			info := demoInfo(body)
			if got := resp.Header.Get("X-Served-By"); got != tc.backend {
				t.Errorf("served by %q, want %q", got, tc.backend)
			}
			if tc.path != "" && info["path"] != tc.path {
				t.Errorf("server saw path %q, want %q", info["path"], tc.path)
			}
		})
	}
}

func TestE2ERoutingRejectsEncodedTraversal(t *testing.T) {
	t.Parallel()
	rt := startRouting(t)
	addr := feAddr(t, rt, "web")
	for _, tc := range []struct {
		name, path string
	}{
		{"encoded slash dot-dot", "/api%2F..%2Fadmin"},
		{"encoded slash dot-dot lower", "/api%2f..%2fadmin"},
		{"encoded backslash dot-dot", "/api%5C..%5Cadmin"},
		{"encoded NUL", "/adm%00in"},
		{"malformed escape", "/adm%zzin"},
		{"truncated escape", "/admin%2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, addr)
			resp, body := rc.mustDo(t, get(tc.path, "n.test"))
			checkErrorBody(t, resp, body, 400)
		})
	}
}

func TestE2ERoutingNoMatch404(t *testing.T) {
	t.Parallel()
	rt := startRouting(t)
	addr := feAddr(t, rt, "nodefault")
	rc := dialRaw(t, addr)
	resp, body := rc.mustDo(t, get("/", "elsewhere.test"))
	checkErrorBody(t, resp, body, 404)
	// A 404 without a request body keeps the connection usable.
	resp, body = rc.mustDo(t, get("/", "only.test"))
	if resp.StatusCode != 200 || resp.Header.Get("X-Served-By") != "default" {
		t.Errorf("after 404: status %d served by %q, body %q", resp.StatusCode, resp.Header.Get("X-Served-By"), body)
	}
	// A 404 for a request with a body it did not read still answers properly.
	rc2 := dialRaw(t, addr)
	resp, body = rc2.mustDo(t, request("POST", "/", "elsewhere.test", "some body"))
	checkErrorBody(t, resp, body, 404)
}
