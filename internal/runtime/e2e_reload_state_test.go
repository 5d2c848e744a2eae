package runtime

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/waage/waage/internal/listener"
)

// TestE2EReloadListenersAndState: reloads add a frontend's listener and remove another's without a
// restart, the listener that stays refuses nothing meanwhile, and servers keep their state by
// identity: the same live object, request counters, an in-flight request, a DOWN verdict and the
// sticky cookie's server.
func TestE2EReloadListenersAndState(t *testing.T) {
	t.Parallel()
	bs := startDemo(t, "A", "B", "C")
	conf := func(frontends string, w1 int) string {
		return fmt.Sprintf(`frontends:
%sbackends:
  - name: b
    sticky: {cookie: WAAGE_SRV}
    servers:
      - {name: s1, address: %q, weight: %d}
      - {name: s2, address: %q}
      - {name: s3, address: %q}
`, frontends, bs[0].Addr, w1, bs[1].Addr, bs[2].Addr)
	}
	one := "  - {name: one, listen: [\"127.0.0.1:0\"], default_backend: b}\n"
	two := "  - {name: two, listen: [\"127.0.0.1:0\"], default_backend: b}\n"
	rt := startWaage(t, conf(one, 1))
	addrOne := feAddr(t, rt, "one")

	rc := dialRaw(t, addrOne)
	resp, _ := rc.mustDo(t, get("/", "st.test"))
	cookie := stickyCookie(resp)
	pinned := resp.Header.Get("X-Served-By")
	if cookie == "" || pinned == "" {
		t.Fatalf("no sticky cookie or server: %q %q", cookie, pinned)
	}
	names := map[string]string{"A": "s1", "B": "s2", "C": "s3"}
	pinnedSrv := rt.Server("b", names[pinned])
	// Another server goes DOWN (as a health check would decide).
	var downName string
	for _, n := range []string{"s1", "s2", "s3"} {
		if n != names[pinned] {
			downName = n
			break
		}
	}
	rt.Server("b", downName).SetHealthy(false)
	for i := 0; i < 5; i++ {
		rc.mustDo(t, get("/", "st.test", "Cookie: WAAGE_SRV="+cookie))
	}
	before := pinnedSrv.Requests.Load()

	// A slow request on the pinned server stays in flight across the reload.
	slow := dialRaw(t, addrOne)
	slowDone := make(chan string, 1)
	go func() {
		resp, _, err := slow.do(get("/slow?ms=500", "st.test", "Cookie: WAAGE_SRV="+cookie))
		if err != nil {
			slowDone <- err.Error()
			return
		}
		slowDone <- fmt.Sprint(resp.StatusCode, " ", resp.Header.Get("X-Served-By"))
	}()
	deadline := time.Now().Add(3 * time.Second)
	for pinnedSrv.InFlight() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}

	load := backgroundLoad(addrOne, "st.test", "/", 100000)
	time.Sleep(50 * time.Millisecond)
	apply(t, rt, conf(one+two, 3)) // adds frontend two, changes s1's weight
	time.Sleep(50 * time.Millisecond)
	res := load()
	if len(res.errs) > 0 || res.ok == 0 {
		t.Errorf("load on the listener that stayed: %d ok, errors %v", res.ok, countBy(res.errs))
	}
	if got := feAddr(t, rt, "one"); got != addrOne {
		t.Errorf("listener of the unchanged frontend moved: %s -> %s", addrOne, got)
	}
	addrTwo := feAddr(t, rt, "two")
	if s := rt.Server("b", names[pinned]); s != pinnedSrv {
		t.Errorf("the server's live state was replaced on reload")
	}
	if n := pinnedSrv.InFlight(); n < 1 {
		t.Errorf("in-flight count after the reload: %d, want the slow request's", n)
	}
	if pinnedSrv.Requests.Load() < before {
		t.Errorf("request counter went back: %d -> %d", before, pinnedSrv.Requests.Load())
	}
	if rt.Server("b", downName).Healthy() {
		t.Errorf("the DOWN verdict of %s was lost on reload", downName)
	}
	if w := rt.Server("b", "s1").Weight(); w != 3 {
		t.Errorf("s1 weight after reload: %d, want 3", w)
	}
	// The sticky cookie keeps its server, on the old listener and the new one.
	for _, addr := range []string{addrOne, addrTwo} {
		resp, _ := dialRaw(t, addr).mustDo(t, get("/", "st.test", "Cookie: WAAGE_SRV="+cookie))
		if got := resp.Header.Get("X-Served-By"); got != pinned {
			t.Errorf("sticky request on %s after the reload: served by %s, want %s", addr, got, pinned)
		}
	}
	if got := <-slowDone; got != "200 "+pinned {
		t.Errorf("request in flight across the reload: %s, want 200 %s", got, pinned)
	}
	// The count drops once the proxy is done with the exchange, just after the client has the
	// response.
	deadline = time.Now().Add(3 * time.Second)
	for pinnedSrv.InFlight() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := pinnedSrv.InFlight(); n != 0 {
		t.Errorf("in-flight count after the request: %d, want 0", n)
	}

	apply(t, rt, conf(two, 3)) // removes frontend one
	if c, err := net.DialTimeout("tcp", addrOne, time.Second); err == nil {
		c.Close()
		t.Errorf("the removed frontend's address still accepts")
	}
	if got := feAddr(t, rt, "two"); got != addrTwo {
		t.Errorf("listener of frontend two moved: %s -> %s", addrTwo, got)
	}
	if resp, _ := dialRaw(t, addrTwo).mustDo(t, get("/", "st.test")); resp.StatusCode != 200 {
		t.Errorf("frontend two after removing one: %d", resp.StatusCode)
	}
}

// TestE2EHandoverSockets: a second runtime adopts the first one's sockets (as the new process of a
// binary upgrade does) instead of binding: the same addresses, port 0 included, for http, tcp and
// udp; the first one then shuts down, and a client load across it all sees no error.
func TestE2EHandoverSockets(t *testing.T) {
	t.Parallel()
	bs := startDemo(t, "A")
	echo := startTCPEcho(t, "t")
	uecho := startUDPEcho(t, "u")
	text := fmt.Sprintf(`log: {access: "off"}
frontends:
  - {name: web, listen: ["127.0.0.1:0"], default_backend: h}
  - {name: tcp, mode: tcp, listen: ["127.0.0.1:0"], backend: t}
  - {name: udp, mode: udp, listen: ["127.0.0.1:0"], backend: u}
backends:
  - {name: h, servers: [{name: s, address: %q}]}
  - {name: t, servers: [{name: s, address: %q}]}
  - {name: u, servers: [{name: s, address: %q}]}
`, bs[0].Addr, echo.addr(), uecho.addr())
	old := startWaage(t, text)
	web, tcp, udp := feAddr(t, old, "web"), feAddr(t, old, "tcp"), feAddr(t, old, "udp")
	// Closing idle keep-alive connections races with a request the client sends at that moment;
	// clients retry such requests (RFC 9112, 9.3.1), so this load uses one that does.
	load := clientLoad(t, "http://"+web+"/", 4)
	time.Sleep(50 * time.Millisecond)

	socks, err := old.Sockets()
	if err != nil {
		t.Fatal(err)
	}
	if len(socks) != 3 {
		t.Fatalf("Sockets: %d, want 3: %v", len(socks), socks)
	}
	in := listener.NewInherited(socks)
	cfg, err := parseForTest(text)
	if err != nil {
		t.Fatal(err)
	}
	next := New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	next.Inherit(in)
	if err := next.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		next.Shutdown(ctx)
	})
	if n := in.Len(); n != 0 {
		t.Errorf("%d inherited sockets not adopted", n)
	}
	for name, want := range map[string]string{"web": web, "tcp": tcp, "udp": udp} {
		if got := feAddr(t, next, name); got != want {
			t.Errorf("frontend %s: the new runtime listens on %s, want the inherited %s", name, got, want)
		}
	}
	time.Sleep(50 * time.Millisecond)
	// As the old process does: stop accepting, give connections it accepted a moment to send
	// their first request, then shut down.
	old.StopAccepting()
	time.Sleep(200 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := old.Shutdown(ctx); err != nil {
		t.Errorf("old runtime shutdown: %v", err)
	}
	time.Sleep(50 * time.Millisecond)
	res := load()
	if len(res.errs) > 0 || res.ok < 10 {
		t.Errorf("load across the hand-over: %d ok, errors %v", res.ok, countBy(res.errs))
	}
	if resp, _ := dialRaw(t, web).mustDo(t, get("/", "ho.test")); resp.Header.Get("X-Served-By") != "A" {
		t.Errorf("http after the hand-over: %d %q", resp.StatusCode, resp.Header.Get("X-Served-By"))
	}
	if got := echoSession(t, tcp, "after"); got != "t" {
		t.Errorf("tcp after the hand-over: %q", got)
	}
	ua, _ := net.ResolveUDPAddr("udp", udp)
	c, err := net.DialUDP("udp", nil, ua)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := udpAsk(t, c, "after"); got != "u" {
		t.Errorf("udp after the hand-over: %q", got)
	}
}

// clientLoad sends GET requests to url from workers goroutines until stop is called (at most 20
// s): half of them on keep-alive connections of a net/http client (which retries an idempotent
// request whose reused connection the server closed), half on a new connection each time. Every
// failure (transport error or status != 200) is reported.
func clientLoad(t testing.TB, url string, workers int) (stop func() loadResult) {
	quit := make(chan struct{})
	results := make(chan loadResult, workers)
	for i := 0; i < workers; i++ {
		client := newHTTPClient(t, i%2 == 0)
		go func() {
			var res loadResult
			defer func() { results <- res }()
			deadline := time.Now().Add(20 * time.Second)
			for time.Now().Before(deadline) {
				select {
				case <-quit:
					return
				default:
				}
				resp, err := client.Get(url)
				if err != nil {
					res.errs = append(res.errs, err.Error())
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					res.errs = append(res.errs, resp.Status)
					continue
				}
				res.ok++
			}
		}()
	}
	return func() loadResult {
		close(quit)
		var all loadResult
		for i := 0; i < workers; i++ {
			r := <-results
			all.ok += r.ok
			all.errs = append(all.errs, r.errs...)
		}
		return all
	}
}
