package runtime

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// captured is what a capturing backend saw of one request.
type captured struct {
	host   string
	uri    string
	proto  string
	header http.Header
}

// captureBackend records every request head it receives and answers 200 "ok". respHeaders are
// added to every response.
func captureBackend(t *testing.T, respHeaders http.Header) (*httpBackend, func() []captured) {
	var mu sync.Mutex
	var got []captured
	b := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, captured{host: r.Host, uri: r.RequestURI, proto: r.Proto, header: r.Header.Clone()})
		mu.Unlock()
		for k, vs := range respHeaders {
			for _, v := range vs {
				w.Header().Add(k, v)
			}
		}
		w.Write([]byte("ok"))
	})
	return b, func() []captured {
		mu.Lock()
		defer mu.Unlock()
		return append([]captured(nil), got...)
	}
}

func TestE2EHopByHopAndForwarded(t *testing.T) {
	t.Parallel()
	b, seen := captureBackend(t, nil)
	rt := startWaage(t, `
frontends:
  - name: web
    listen: ["127.0.0.1:0", "[::1]:0"]
    default_backend: b
backends:
  - name: b
    servers: [{name: s1, address: "`+b.addr+`"}]
`)
	v4 := feAddrFamily(t, rt, "web", false)
	v6 := feAddrFamily(t, rt, "web", true)

	tests := []struct {
		name    string
		addr    string
		headers []string
		want    map[string][]string // header -> exact values at the server; nil value = absent
		host    string
	}{
		{
			name: "hop-by-hop removed",
			addr: v4,
			headers: []string{
				"Connection: keep-alive, X-Hop, x-other-hop",
				"X-Hop: secret",
				"X-Other-Hop: secret2",
				"Keep-Alive: timeout=5",
				"Proxy-Connection: keep-alive",
				"TE: trailers, deflate",
				"Upgrade: h2c",
				"Proxy-Authorization: Basic Zm9vOmJhcg==",
				"X-Keep: yes",
			},
			want: map[string][]string{
				"Connection":          nil,
				"Keep-Alive":          nil,
				"Proxy-Connection":    nil,
				"X-Hop":               nil,
				"X-Other-Hop":         nil,
				"Upgrade":             nil,
				"Proxy-Authorization": nil,
				"Te":                  {"trailers"},
				"X-Keep":              {"yes"},
			},
			host: "hdr.test",
		},
		{
			name:    "TE without trailers removed",
			addr:    v4,
			headers: []string{"TE: deflate, gzip"},
			want:    map[string][]string{"Te": nil},
			host:    "hdr.test",
		},
		{
			name: "forwarding fields from scratch",
			addr: v4,
			want: map[string][]string{
				"X-Forwarded-For":   {"127.0.0.1"},
				"X-Forwarded-Proto": {"http"},
				"X-Forwarded-Host":  {"hdr.test"},
				"Forwarded":         {"for=127.0.0.1;host=hdr.test;proto=http"},
			},
			host: "hdr.test",
		},
		{
			name: "forwarding fields appended or replaced",
			addr: v4,
			headers: []string{
				"X-Forwarded-For: 203.0.113.9",
				"X-Forwarded-For: 198.51.100.7, 192.0.2.1",
				"X-Forwarded-Proto: https",
				"X-Forwarded-Host: evil.test",
				"Forwarded: for=203.0.113.9;proto=https",
			},
			want: map[string][]string{
				"X-Forwarded-For":   {"203.0.113.9, 198.51.100.7, 192.0.2.1, 127.0.0.1"},
				"X-Forwarded-Proto": {"http"},
				"X-Forwarded-Host":  {"hdr.test:8080"},
				"Forwarded":         {`for=203.0.113.9;proto=https, for=127.0.0.1;host="hdr.test:8080";proto=http`},
			},
			host: "hdr.test:8080",
		},
		{
			name: "IPv6 client",
			addr: v6,
			want: map[string][]string{
				"X-Forwarded-For": {"::1"},
				"Forwarded":       {`for="[::1]";host=hdr.test;proto=http`},
			},
			host: "hdr.test",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(seen())
			rc := dialRaw(t, tc.addr)
			resp, body := rc.mustDo(t, get("/h?q=1", tc.host, tc.headers...))
			if resp.StatusCode != 200 {
				t.Fatalf("status %d %q", resp.StatusCode, body)
			}
			all := seen()
			if len(all) != before+1 {
				t.Fatalf("backend saw %d requests, want 1", len(all)-before)
			}
			got := all[len(all)-1]
			if got.host != tc.host {
				t.Errorf("Host = %q, want the original %q", got.host, tc.host)
			}
			if got.uri != "/h?q=1" {
				t.Errorf("request URI = %q", got.uri)
			}
			for name, want := range tc.want {
				vals := got.header.Values(name)
				if want == nil {
					if len(vals) > 0 {
						t.Errorf("%s reached the server: %q", name, vals)
					}
					continue
				}
				if fmt.Sprint(vals) != fmt.Sprint(want) {
					t.Errorf("%s = %q, want %q", name, vals, want)
				}
			}
		})
	}
}

func TestE2ERouteHeaderOps(t *testing.T) {
	t.Parallel()
	respHdr := http.Header{
		"X-Resp-Set":    {"old"},
		"X-Resp-Remove": {"gone"},
		"X-Resp-Keep":   {"kept"},
	}
	b, seen := captureBackend(t, respHdr)
	rt := startWaage(t, `
frontends:
  - name: web
    listen: ["127.0.0.1:0"]
    routes:
      - name: ops
        match: {host: ops.test}
        backend: b
        request_headers:
          set: {X-Set: new, Host: internal.test}
          add: {X-Add: added}
          remove: [X-Remove, X-Forwarded-For]
        response_headers:
          set: {X-Resp-Set: new}
          add: {X-Resp-Add: added}
          remove: [X-Resp-Remove]
    default_backend: b
backends:
  - name: b
    servers: [{name: s1, address: "`+b.addr+`"}]
`)
	rc := dialRaw(t, feAddr(t, rt, "web"))
	resp, body := rc.mustDo(t, get("/", "ops.test",
		"X-Set: client", "x-set: client2", "X-Add: client", "X-Remove: bye", "X-Forwarded-For: 192.0.2.1"))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d %q", resp.StatusCode, body)
	}
	all := seen()
	if len(all) != 1 {
		t.Fatalf("backend saw %d requests", len(all))
	}
	got := all[0]
	checks := []struct {
		name string
		got  []string
		want []string
	}{
		{"X-Set", got.header.Values("X-Set"), []string{"new"}},
		{"X-Add", got.header.Values("X-Add"), []string{"client", "added"}},
		{"X-Remove", got.header.Values("X-Remove"), nil},
		{"X-Forwarded-For", got.header.Values("X-Forwarded-For"), nil},
		{"X-Forwarded-Host", got.header.Values("X-Forwarded-Host"), []string{"ops.test"}},
		{"Host", []string{got.host}, []string{"internal.test"}},
		{"resp X-Resp-Set", resp.Header.Values("X-Resp-Set"), []string{"new"}},
		{"resp X-Resp-Add", resp.Header.Values("X-Resp-Add"), []string{"added"}},
		{"resp X-Resp-Remove", resp.Header.Values("X-Resp-Remove"), nil},
		{"resp X-Resp-Keep", resp.Header.Values("X-Resp-Keep"), []string{"kept"}},
	}
	for _, c := range checks {
		if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	// Without the route's ops (default route), nothing is changed.
	resp, _ = rc.mustDo(t, get("/", "plain.test", "X-Set: client"))
	all = seen()
	if last := all[len(all)-1]; last.host != "plain.test" || last.header.Get("X-Set") != "client" {
		t.Errorf("default route changed the request: host %q X-Set %q", last.host, last.header.Get("X-Set"))
	}
	if resp.Header.Get("X-Resp-Set") != "old" || resp.Header.Get("X-Resp-Remove") != "gone" {
		t.Errorf("default route changed the response: %v", resp.Header)
	}
}

// TestE2EResponseHopByHop checks that hop-by-hop fields of a response do not reach the client.
func TestE2EResponseHopByHop(t *testing.T) {
	t.Parallel()
	srv := rawHTTPServer(t, func(c net.Conn, r *http.Request, _ []byte) bool {
		c.Write([]byte("HTTP/1.1 200 OK\r\n" +
			"Content-Length: 2\r\n" +
			"Connection: X-Internal, keep-alive\r\n" +
			"X-Internal: secret\r\n" +
			"Keep-Alive: timeout=5\r\n" +
			"Upgrade: h2c\r\n" +
			"Proxy-Authenticate: Basic\r\n" +
			"X-Public: yes\r\n" +
			"\r\nok"))
		return true
	})
	rt := startWaage(t, simpleConfig("", "", srv.addr))
	rc := dialRaw(t, feAddr(t, rt, "web"))
	for i := 0; i < 2; i++ {
		resp, body := rc.mustDo(t, get("/", "x.test"))
		if resp.StatusCode != 200 || string(body) != "ok" {
			t.Fatalf("status %d body %q", resp.StatusCode, body)
		}
		for _, h := range []string{"X-Internal", "Keep-Alive", "Upgrade", "Proxy-Authenticate"} {
			if v := resp.Header.Values(h); len(v) > 0 {
				t.Errorf("response field %s reached the client: %q", h, v)
			}
		}
		if v := resp.Header.Get("Connection"); strings.Contains(strings.ToLower(v), "x-internal") {
			t.Errorf("Connection = %q", v)
		}
		if resp.Header.Get("X-Public") != "yes" {
			t.Errorf("X-Public missing: %v", resp.Header)
		}
	}
}

// TestE2ERouteOwnsForwardedFields: a route that sets X-Forwarded-Proto/-Host (waage behind a TLS
// terminator) or removes them replaces waage's own values instead of sending two fields.
func TestE2ERouteOwnsForwardedFields(t *testing.T) {
	t.Parallel()
	b, seen := captureBackend(t, nil)
	rt := startWaage(t, `
frontends:
  - name: web
    listen: ["127.0.0.1:0"]
    routes:
      - name: tls-behind
        match: {host: set.test}
        backend: b
        request_headers:
          set: {X-Forwarded-Proto: https, X-Forwarded-Host: www.example.com}
      - name: bare
        match: {host: rm.test}
        backend: b
        request_headers:
          remove: [X-Forwarded-Proto, X-Forwarded-Host, Forwarded]
backends:
  - name: b
    servers: [{name: s1, address: "`+b.addr+`"}]
`)
	rc := dialRaw(t, feAddr(t, rt, "web"))
	rc.mustDo(t, get("/", "set.test"))
	rc.mustDo(t, get("/", "rm.test", "X-Forwarded-Proto: spoofed"))
	all := seen()
	if len(all) != 2 {
		t.Fatalf("backend saw %d requests", len(all))
	}
	if v := all[0].header.Values("X-Forwarded-Proto"); len(v) != 1 || v[0] != "https" {
		t.Errorf("set X-Forwarded-Proto: server saw %q", v)
	}
	if v := all[0].header.Values("X-Forwarded-Host"); len(v) != 1 || v[0] != "www.example.com" {
		t.Errorf("set X-Forwarded-Host: server saw %q", v)
	}
	for _, f := range []string{"X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded"} {
		if v := all[1].header.Values(f); len(v) != 0 {
			t.Errorf("removed %s: server saw %q", f, v)
		}
	}
}
