package runtime

import (
	"fmt"
	"testing"
	"time"

	"github.com/waage/waage/internal/backend"
	"github.com/waage/waage/internal/config"
)

func reloadConfig(def string, a, b string) string {
	return fmt.Sprintf(`
frontends:
  - name: web
    listen: ["127.0.0.1:0"]
    default_backend: %s
backends:
  - name: a
    servers: [{name: s1, address: %q}, {name: s2, address: %q}]
  - name: b
    servers: [{name: s1, address: %q}]
`, def, a, b, b)
}

// TestE2EReload: a reload keeps the listener and the client's keep-alive connection, lets a
// request in flight finish on the old configuration, sends the next request by the new one, and
// keeps server state.
func TestE2EReload(t *testing.T) {
	t.Parallel()
	bs := startDemo(t, "A", "B")
	rt := startWaage(t, reloadConfig("a", bs[0].Addr, bs[1].Addr))
	addr := feAddr(t, rt, "web")
	// a/s2 is B; put it in maintenance so backend a is only A.
	rt.Server("a", "s2").SetState(backend.Maintenance)

	rc := dialRaw(t, addr)
	if resp, _ := rc.mustDo(t, get("/", "r.test")); resp.Header.Get("X-Served-By") != "A" {
		t.Fatalf("before reload: served by %q", resp.Header.Get("X-Served-By"))
	}
	slow := dialRaw(t, addr)
	slowDone := make(chan string, 1)
	go func() {
		resp, _, err := slow.do(get("/slow?ms=400", "r.test"))
		if err != nil {
			slowDone <- err.Error()
			return
		}
		slowDone <- fmt.Sprint(resp.StatusCode, " ", resp.Header.Get("X-Served-By"))
	}()
	time.Sleep(100 * time.Millisecond)

	cfg, err := config.Parse("e2e.yaml", []byte("log: {access: \"off\"}\n"+reloadConfig("b", bs[0].Addr, bs[1].Addr)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if got := feAddr(t, rt, "web"); got != addr {
		t.Errorf("listener changed on reload: %s -> %s", addr, got)
	}
	// The first request after the reload on a connection that was idle during it already uses the
	// new configuration; so do a new connection and the request after.
	if resp, _ := rc.mustDo(t, get("/", "r.test")); resp.Header.Get("X-Served-By") != "B" {
		t.Errorf("first request after reload on an idle keep-alive connection: served by %q, want B (new default_backend)", resp.Header.Get("X-Served-By"))
	}
	if resp, _ := dialRaw(t, addr).mustDo(t, get("/", "r.test")); resp.Header.Get("X-Served-By") != "B" {
		t.Errorf("after reload, new connection: served by %q, want B", resp.Header.Get("X-Served-By"))
	}
	if resp, _ := rc.mustDo(t, get("/", "r.test")); resp.Header.Get("X-Served-By") != "B" {
		t.Errorf("second request after reload on the old connection: served by %q, want B", resp.Header.Get("X-Served-By"))
	}
	if got := <-slowDone; got != "200 A" {
		t.Errorf("request in flight during reload: %s, want 200 A", got)
	}
	if st := rt.Server("a", "s2").State(); st != backend.Maintenance {
		t.Errorf("server state after reload: %v, want maintenance", st)
	}
	// A bad config is refused and the running one keeps serving.
	bad := reloadConfig("b", bs[0].Addr, bs[1].Addr)
	if cfg, err := config.Parse("e2e.yaml", []byte(bad), nil); err == nil {
		cfg.Frontends[0].DefaultBackend = "missing"
		if err := rt.Apply(cfg); err == nil {
			t.Errorf("Apply accepted a default_backend that does not exist")
		}
	}
	if resp, _ := rc.mustDo(t, get("/", "r.test")); resp.Header.Get("X-Served-By") != "B" {
		t.Errorf("after a refused reload: served by %q, want B", resp.Header.Get("X-Served-By"))
	}
}
