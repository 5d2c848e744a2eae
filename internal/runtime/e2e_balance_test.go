package runtime

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/waage/waage/internal/backend"
)

// servedBy sends n requests (one keep-alive connection, or a new connection each when fresh) and
// returns which backend answered each.
func servedBy(t *testing.T, addr string, n int, fresh bool, headers ...string) []string {
	t.Helper()
	var out []string
	var rc *rawConn
	for i := 0; i < n; i++ {
		if rc == nil || fresh {
			if rc != nil {
				rc.c.Close()
			}
			rc = dialRaw(t, addr)
		}
		resp, body := rc.mustDo(t, get("/", "bal.test", headers...))
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d %q", i, resp.StatusCode, body)
		}
		out = append(out, resp.Header.Get("X-Served-By"))
	}
	return out
}

func TestE2ERoundRobin(t *testing.T) {
	t.Parallel()
	bs := startDemo(t, "a", "b", "c")
	rt := startWaage(t, simpleConfig("", "    algorithm: round_robin\n", demoAddrs(bs)...))
	addr := feAddr(t, rt, "web")
	for _, fresh := range []bool{false, true} {
		t.Run(fmt.Sprintf("fresh=%v", fresh), func(t *testing.T) {
			got := countBy(servedBy(t, addr, 30, fresh))
			want := map[string]int{"a": 10, "b": 10, "c": 10}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("share %v, want %v", got, want)
			}
		})
	}
}

func TestE2EWeights(t *testing.T) {
	t.Parallel()
	for _, algo := range []string{"round_robin", "weighted_round_robin"} {
		t.Run(algo, func(t *testing.T) {
			t.Parallel()
			bs := startDemo(t, "w1", "w2", "w3", "w0")
			rt := startWaage(t, fmt.Sprintf(`
frontends:
  - name: web
    listen: ["127.0.0.1:0"]
    default_backend: b
backends:
  - name: b
    algorithm: %s
    servers:
      - {name: s1, address: %q, weight: 1}
      - {name: s2, address: %q, weight: 2}
      - {name: s3, address: %q, weight: 3}
      - {name: s0, address: %q, weight: 0}
`, algo, bs[0].Addr, bs[1].Addr, bs[2].Addr, bs[3].Addr))
			got := countBy(servedBy(t, feAddr(t, rt, "web"), 60, false))
			want := map[string]int{"w1": 10, "w2": 20, "w3": 30}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("share %v, want %v (weight 0 gets nothing)", got, want)
			}
			if n := bs[3].Requests(); n != 0 {
				t.Errorf("weight-0 server got %d requests", n)
			}
		})
	}
}

func TestE2EStickyCookie(t *testing.T) {
	t.Parallel()
	bs := startDemo(t, "a", "b", "c")
	rt := startWaage(t, simpleConfig("", "    sticky: {cookie: WAAGE_SRV}\n", demoAddrs(bs)...))
	addr := feAddr(t, rt, "web")
	rc := dialRaw(t, addr)

	// First visit: a cookie naming the server.
	resp, _ := rc.mustDo(t, get("/", "bal.test"))
	first := resp.Header.Get("X-Served-By")
	cookie := stickyCookie(resp)
	if cookie == "" {
		t.Fatalf("no sticky cookie set: %v", resp.Header.Values("Set-Cookie"))
	}
	// Pinned: every request with the cookie goes to the same server, without a new cookie.
	for i := 0; i < 12; i++ {
		c := dialRaw(t, addr)
		resp, _ := c.mustDo(t, get("/", "bal.test", "Cookie: other=1; WAAGE_SRV="+cookie))
		if got := resp.Header.Get("X-Served-By"); got != first {
			t.Fatalf("request %d with cookie went to %q, want %q", i, got, first)
		}
		if sc := stickyCookie(resp); sc != "" {
			t.Errorf("cookie set again on a pinned request: %q", sc)
		}
	}
	// An unknown cookie value is ignored (balanced, new cookie).
	resp, _ = rc.mustDo(t, get("/", "bal.test", "Cookie: WAAGE_SRV=0000000000000000"))
	if resp.StatusCode != 200 || stickyCookie(resp) == "" {
		t.Errorf("bogus cookie: status %d, Set-Cookie %q", resp.StatusCode, resp.Header.Values("Set-Cookie"))
	}

	name := map[string]string{"a": "s1", "b": "s2", "c": "s3"}[first]
	srv := rt.Server("b", name)
	if srv == nil {
		t.Fatalf("rt.Server(b, %s) = nil", name)
	}
	// Draining keeps pinned sessions.
	srv.SetState(backend.Drain)
	resp, _ = rc.mustDo(t, get("/", "bal.test", "Cookie: WAAGE_SRV="+cookie))
	if got := resp.Header.Get("X-Served-By"); got != first {
		t.Errorf("draining server lost its pinned session: went to %q, want %q", got, first)
	}
	// Maintenance: fall back to another server, and re-pin there.
	srv.SetState(backend.Maintenance)
	for i := 0; i < 6; i++ {
		resp, body := rc.mustDo(t, get("/", "bal.test", "Cookie: WAAGE_SRV="+cookie))
		if resp.StatusCode != 200 {
			t.Fatalf("fallback: status %d %q", resp.StatusCode, body)
		}
		got := resp.Header.Get("X-Served-By")
		if got == first {
			t.Fatalf("request went to %q in maintenance", got)
		}
		nc := stickyCookie(resp)
		if nc == "" || nc == cookie {
			t.Errorf("fallback did not re-pin: Set-Cookie %q", resp.Header.Values("Set-Cookie"))
		}
	}
	srv.SetState(backend.Ready)
	resp, _ = rc.mustDo(t, get("/", "bal.test", "Cookie: WAAGE_SRV="+cookie))
	if got := resp.Header.Get("X-Served-By"); got != first {
		t.Errorf("back to ready: went to %q, want %q", got, first)
	}
}

// stickyCookie returns the WAAGE_SRV value from Set-Cookie, or "".
func stickyCookie(resp *http.Response) string {
	for _, c := range resp.Cookies() {
		if c.Name == "WAAGE_SRV" {
			if c.Path != "/" || !c.HttpOnly {
				return "bad-attributes:" + c.Raw
			}
			return c.Value
		}
	}
	return ""
}

func TestE2ESourceIPHash(t *testing.T) {
	t.Parallel()
	bs := startDemo(t, "a", "b", "c")
	rt := startWaage(t, simpleConfig("", "    algorithm: source_ip_hash\n", demoAddrs(bs)...))
	got := countBy(servedBy(t, feAddr(t, rt, "web"), 20, true))
	if len(got) != 1 {
		t.Errorf("one client address went to several servers: %v", got)
	}
}

func TestE2EHashHeader(t *testing.T) {
	t.Parallel()
	bs := startDemo(t, "a", "b", "c")
	rt := startWaage(t, simpleConfig("", "    algorithm: hash\n    hash_key: header:X-User\n", demoAddrs(bs)...))
	addr := feAddr(t, rt, "web")
	used := map[string]bool{}
	for u := 0; u < 24; u++ {
		h := fmt.Sprintf("X-User: user-%d", u)
		got := countBy(servedBy(t, addr, 5, u%2 == 0, h))
		if len(got) != 1 {
			t.Fatalf("%s went to several servers: %v", h, got)
		}
		for k := range got {
			used[k] = true
		}
	}
	if len(used) < 2 {
		t.Errorf("24 distinct keys all went to %v", used)
	}
	// The header name matches case-insensitively.
	a := servedBy(t, addr, 1, true, "X-User: user-3")
	b := servedBy(t, addr, 1, true, "x-user: user-3")
	if a[0] != b[0] {
		t.Errorf("header name case changed the server: %s vs %s", a[0], b[0])
	}
}

func TestE2ELeastConnections(t *testing.T) {
	t.Parallel()
	bs := startDemo(t, "a", "b")
	slow := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(50 * time.Millisecond)
		w.Header().Set("X-Served-By", "slow")
		w.Write([]byte("slow"))
	})
	rt := startWaage(t, simpleConfig("", "    algorithm: least_connections\n", bs[0].Addr, bs[1].Addr, slow.addr))
	addr := feAddr(t, rt, "web")
	// Sequential: every server is idle each time, and ties are shared round robin.
	if got := countBy(servedBy(t, addr, 30, false)); fmt.Sprint(got) != fmt.Sprint(map[string]int{"a": 10, "b": 10, "slow": 10}) {
		t.Errorf("sequential least_connections share %v, want 10 each", got)
	}
	// Concurrent: "slow" holds its requests long, so it gets far fewer than a third.
	before := slow.reqs.Load()
	ok, errs := runLoad(addr, 6, 25, "/", nil)
	if len(errs) > 0 || ok != 150 {
		t.Fatalf("%d ok, errors: %q", ok, errs[:min(5, len(errs))])
	}
	if n := slow.reqs.Load() - before; n > 25 {
		t.Errorf("the slow server got %d of 150 concurrent requests, want far fewer than 50", n)
	}
}

func TestE2EOtherAlgorithmsServe(t *testing.T) {
	t.Parallel()
	for _, algo := range []string{"least_connections", "random_two_choices", "least_response_time", "hash"} {
		t.Run(algo, func(t *testing.T) {
			t.Parallel()
			bs := startDemo(t, "a", "b", "c")
			rt := startWaage(t, simpleConfig("", "    algorithm: "+algo+"\n", demoAddrs(bs)...))
			ok, errs := runLoad(feAddr(t, rt, "web"), 4, 25, "/", nil)
			if len(errs) > 0 || ok != 100 {
				t.Errorf("%d ok, errors %q", ok, errs[:min(5, len(errs))])
			}
		})
	}
}
