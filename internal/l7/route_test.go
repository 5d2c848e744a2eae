package l7

import (
	"net/netip"
	"testing"

	"github.com/waage/waage/internal/config"
)

// matchCase is one request against one match block.
type matchCase struct {
	name  string
	req   string // request head; "\r\n\r\n" is appended
	src   string // client address; default 127.0.0.1
	match bool
}

func runMatchTable(t *testing.T, m config.Match, cases []matchCase) {
	t.Helper()
	b := &Backend{Name: "b"}
	r, err := compileRoute(config.Route{Name: "r", Match: m, Backend: "b"}, map[string]*Backend{"b": b})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ex := &exchange{}
			if err := parseRequest([]byte(tc.req+"\r\n\r\n"), &ex.req); err != nil {
				t.Fatalf("parse: %v", err)
			}
			path, ok := normalizePath(nil, ex.req.path)
			if !ok {
				t.Fatal("bad path")
			}
			src := tc.src
			if src == "" {
				src = "127.0.0.1"
			}
			in := matchInput{req: &ex.req, host: hostname(nil, ex.req.host), path: path, source: netip.MustParseAddr(src).Unmap()}
			if got := r.match(&in); got != tc.match {
				t.Errorf("match = %v, want %v", got, tc.match)
			}
		})
	}
}

func TestMatchHost(t *testing.T) {
	runMatchTable(t, config.Match{Host: config.StringList{"api.example.com", "*.example.org"}}, []matchCase{
		{"exact", "GET / HTTP/1.1\r\nHost: api.example.com", "", true},
		{"exact with port", "GET / HTTP/1.1\r\nHost: api.example.com:8080", "", true},
		{"case insensitive", "GET / HTTP/1.1\r\nHost: API.Example.COM", "", true},
		{"trailing dot", "GET / HTTP/1.1\r\nHost: api.example.com.", "", true},
		{"other", "GET / HTTP/1.1\r\nHost: www.example.com", "", false},
		{"wildcard", "GET / HTTP/1.1\r\nHost: a.example.org", "", true},
		{"wildcard deep", "GET / HTTP/1.1\r\nHost: a.b.example.org", "", true},
		{"wildcard apex", "GET / HTTP/1.1\r\nHost: example.org", "", false},
		{"wildcard suffix trick", "GET / HTTP/1.1\r\nHost: evilexample.org", "", false},
		{"absolute form wins", "GET http://api.example.com/ HTTP/1.1\r\nHost: other", "", true},
	})
}

func TestMatchPath(t *testing.T) {
	runMatchTable(t, config.Match{PathPrefix: "/admin"}, []matchCase{
		{"prefix", "GET /admin/x HTTP/1.1\r\nHost: a", "", true},
		{"dotdot", "GET /api/../admin HTTP/1.1\r\nHost: a", "", true},
		{"double slash", "GET //admin HTTP/1.1\r\nHost: a", "", true},
		{"encoded", "GET /%61dmin HTTP/1.1\r\nHost: a", "", true},
		{"other", "GET /api HTTP/1.1\r\nHost: a", "", false},
		{"query not path", "GET /x?/admin HTTP/1.1\r\nHost: a", "", false},
	})
	runMatchTable(t, config.Match{Path: "/exact"}, []matchCase{
		{"exact", "GET /exact HTTP/1.1\r\nHost: a", "", true},
		{"with query", "GET /exact?a=1 HTTP/1.1\r\nHost: a", "", true},
		{"longer", "GET /exact/x HTTP/1.1\r\nHost: a", "", false},
	})
	runMatchTable(t, config.Match{PathRegex: "^/v[0-9]+/"}, []matchCase{
		{"v1", "GET /v1/users HTTP/1.1\r\nHost: a", "", true},
		{"v22", "GET /v22/ HTTP/1.1\r\nHost: a", "", true},
		{"vx", "GET /vx/ HTTP/1.1\r\nHost: a", "", false},
		{"normalised first", "GET /a/../v2/ HTTP/1.1\r\nHost: a", "", true},
	})
}

func TestMatchMethods(t *testing.T) {
	runMatchTable(t, config.Match{Methods: []string{"GET", "POST"}}, []matchCase{
		{"get", "GET / HTTP/1.1\r\nHost: a", "", true},
		{"post", "POST / HTTP/1.1\r\nHost: a", "", true},
		{"delete", "DELETE / HTTP/1.1\r\nHost: a", "", false},
		{"case matters", "get / HTTP/1.1\r\nHost: a", "", false},
	})
}

func TestMatchHeaders(t *testing.T) {
	runMatchTable(t, config.Match{Headers: config.StringMap{{Key: "X-Canary", Value: "true"}, {Key: "X-Ver", Value: "~^v[12]$"}}}, []matchCase{
		{"both", "GET / HTTP/1.1\r\nHost: a\r\nx-canary: true\r\nX-Ver: v2", "", true},
		{"regex fails", "GET / HTTP/1.1\r\nHost: a\r\nX-Canary: true\r\nX-Ver: v3", "", false},
		{"exact is case sensitive in value", "GET / HTTP/1.1\r\nHost: a\r\nX-Canary: TRUE\r\nX-Ver: v1", "", false},
		{"missing", "GET / HTTP/1.1\r\nHost: a\r\nX-Ver: v1", "", false},
		{"any of repeated fields", "GET / HTTP/1.1\r\nHost: a\r\nX-Canary: no\r\nX-Canary: true\r\nX-Ver: v1", "", true},
	})
}

func TestMatchCookies(t *testing.T) {
	runMatchTable(t, config.Match{Cookies: config.StringMap{{Key: "beta", Value: "1"}}}, []matchCase{
		{"set", "GET / HTTP/1.1\r\nHost: a\r\nCookie: a=b; beta=1", "", true},
		{"quoted", "GET / HTTP/1.1\r\nHost: a\r\nCookie: beta=\"1\"", "", true},
		{"second field", "GET / HTTP/1.1\r\nHost: a\r\nCookie: a=b\r\nCookie: beta=1", "", true},
		{"other value", "GET / HTTP/1.1\r\nHost: a\r\nCookie: beta=2", "", false},
		{"name is case sensitive", "GET / HTTP/1.1\r\nHost: a\r\nCookie: Beta=1", "", false},
		{"prefix trick", "GET / HTTP/1.1\r\nHost: a\r\nCookie: xbeta=1", "", false},
		{"none", "GET / HTTP/1.1\r\nHost: a", "", false},
	})
}

func TestMatchUserAgent(t *testing.T) {
	runMatchTable(t, config.Match{UserAgent: "~(?i)mobile"}, []matchCase{
		{"mobile", "GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: Foo Mobile Safari", "", true},
		{"desktop", "GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: Foo Desktop", "", false},
		{"absent", "GET / HTTP/1.1\r\nHost: a", "", false},
	})
	runMatchTable(t, config.Match{UserAgent: "curl/8.0"}, []matchCase{
		{"exact", "GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: curl/8.0", "", true},
		{"not exact", "GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: curl/8.0.1", "", false},
	})
}

func TestMatchQuery(t *testing.T) {
	runMatchTable(t, config.Match{Query: config.StringMap{{Key: "debug", Value: "1"}, {Key: "q", Value: "~^a b"}}}, []matchCase{
		{"both", "GET /?debug=1&q=a+b+c HTTP/1.1\r\nHost: a", "", true},
		{"encoded", "GET /?%64ebug=%31&q=a%20b HTTP/1.1\r\nHost: a", "", true},
		{"wrong value", "GET /?debug=0&q=a+b HTTP/1.1\r\nHost: a", "", false},
		{"missing", "GET /?q=a+b HTTP/1.1\r\nHost: a", "", false},
		{"no query", "GET / HTTP/1.1\r\nHost: a", "", false},
	})
}

func TestMatchSource(t *testing.T) {
	runMatchTable(t, config.Match{Source: []string{"10.0.0.0/8", "192.0.2.7", "2001:db8::/32"}}, []matchCase{
		{"in cidr", "GET / HTTP/1.1\r\nHost: a", "10.1.2.3", true},
		{"single", "GET / HTTP/1.1\r\nHost: a", "192.0.2.7", true},
		{"single other", "GET / HTTP/1.1\r\nHost: a", "192.0.2.8", false},
		{"loopback", "GET / HTTP/1.1\r\nHost: a", "127.0.0.1", false},
		{"mapped v4", "GET / HTTP/1.1\r\nHost: a", "::ffff:10.0.0.1", true},
		{"v6", "GET / HTTP/1.1\r\nHost: a", "2001:db8::1", true},
	})
}

func TestMatchAllMustHold(t *testing.T) {
	runMatchTable(t, config.Match{Host: config.StringList{"a.com"}, PathPrefix: "/x", Methods: []string{"GET"}}, []matchCase{
		{"all", "GET /x HTTP/1.1\r\nHost: a.com", "", true},
		{"wrong host", "GET /x HTTP/1.1\r\nHost: b.com", "", false},
		{"wrong path", "GET /y HTTP/1.1\r\nHost: a.com", "", false},
		{"wrong method", "PUT /x HTTP/1.1\r\nHost: a.com", "", false},
	})
	runMatchTable(t, config.Match{}, []matchCase{{"empty matches all", "DELETE /anything HTTP/1.1\r\nHost: z", "", true}})
}

func TestRouterFirstMatchAndDefault(t *testing.T) {
	reg := map[string]*Backend{"a": {Name: "a"}, "b": {Name: "b"}, "d": {Name: "d"}}
	fe := config.Frontend{Name: "f", Routes: []config.Route{
		{Name: "one", Match: config.Match{PathPrefix: "/x"}, Backend: "a"},
		{Name: "two", Match: config.Match{PathPrefix: "/"}, Backend: "b"},
	}, DefaultBackend: "d"}
	rt, err := NewRouter(fe, reg)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{"/x/1": "a", "/y": "b"} {
		ex := &exchange{}
		parseRequest([]byte("GET "+path+" HTTP/1.1\r\nHost: h\r\n\r\n"), &ex.req)
		r := rt.route(&matchInput{req: &ex.req, path: ex.req.path})
		if r == nil || r.Backend.Name != want {
			t.Errorf("%s: got %v, want %s", path, r, want)
		}
	}
	fe.Routes = fe.Routes[:1]
	rt, _ = NewRouter(fe, reg)
	ex := &exchange{}
	parseRequest([]byte("GET /z HTTP/1.1\r\nHost: h\r\n\r\n"), &ex.req)
	if r := rt.route(&matchInput{req: &ex.req, path: ex.req.path}); r == nil || r.Backend.Name != "d" {
		t.Errorf("default: got %v", r)
	}
	fe.DefaultBackend = ""
	rt, _ = NewRouter(fe, reg)
	if r := rt.route(&matchInput{req: &ex.req, path: ex.req.path}); r != nil {
		t.Errorf("no default: got %v, want nil", r)
	}
	if _, err := NewRouter(config.Frontend{Name: "f", DefaultBackend: "missing"}, reg); err == nil {
		t.Error("missing default backend accepted")
	}
}

func TestHasPathPrefix(t *testing.T) {
	for _, tt := range []struct {
		path, prefix string
		want         bool
	}{
		{"/api/x", "/api", true}, {"/api", "/api", true}, {"/apix", "/api", false}, {"/api/", "/api/", true},
	} {
		if got := hasPathPrefix([]byte(tt.path), tt.prefix); got != tt.want {
			t.Errorf("%q %q: %v", tt.path, tt.prefix, got)
		}
	}
}
