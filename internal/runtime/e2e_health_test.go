package runtime

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/waage/waage/internal/backend"
	"github.com/waage/waage/internal/config"
	"github.com/waage/waage/internal/demo"
)

// waitFor polls cond every 10ms until it holds or d passes, and returns how long it took.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// TestE2EHealthKillAndReturn is the first test: under a GET load, kill one of three
// backends. No client request fails, the dead server is DOWN (and gets no more attempts) within
// fall × interval + timeout, and once it runs again it is UP after rise checks and takes traffic.
// Outlier detection is off, so the active check alone must take it out.
func TestE2EHealthKillAndReturn(t *testing.T) {
	t.Parallel()
	bs := startDemo(t, "a", "b", "c")
	const interval, timeout, fall, rise = 200 * time.Millisecond, 150 * time.Millisecond, 2, 2
	rt, logs := startWaageLog(t, simpleConfig("", fmt.Sprintf(`    health_check: {type: http, path: /healthz, interval: %s, timeout: %s, fall: %d, rise: %d}
    outlier_detection: {consecutive_failures: 0}
`, interval, timeout, fall, rise), demoAddrs(bs)...))
	s2 := rt.Server("b", "s2")
	// Two keep-alive clients that never retry on their own: any failure reaches them.
	addr := feAddr(t, rt, "web")
	stops := []func() loadResult{backgroundLoad(addr, "load.test", "/", 200000), backgroundLoad(addr, "load.test", "/", 200000)}
	time.Sleep(300 * time.Millisecond)

	bs[1].Close()
	// The bound allows the ±10% jitter of each interval and the scheduler some slack.
	bound := time.Duration(fall)*interval*11/10 + timeout + 150*time.Millisecond
	took := waitFor(t, 3*time.Second, "s2 DOWN", func() bool { return !s2.Healthy() })
	t.Logf("s2 DOWN %s after the kill (fall × interval + timeout = %s)", took, time.Duration(fall)*interval+timeout)
	if took > bound {
		t.Errorf("s2 DOWN after %s, want within %s", took, bound)
	}
	// A request that picked s2 just before the verdict may still be failing over (its connect
	// attempt is counted when it ends): count from a moment later.
	time.Sleep(100 * time.Millisecond)
	attempts := s2.Failures.Load() + s2.Requests.Load()
	time.Sleep(500 * time.Millisecond)
	if n := s2.Failures.Load() + s2.Requests.Load(); n != attempts {
		t.Errorf("s2 got %d attempts while DOWN", n-attempts)
	}
	if !strings.Contains(logs.String(), "server b/s2 DOWN: http check: ") {
		t.Errorf("no DOWN line in the log:\n%s", logs)
	}

	back, err := demo.Start(context.Background(), []string{"b2"}, []string{bs[1].Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer back[0].Close()
	took = waitFor(t, 3*time.Second, "s2 UP", s2.Healthy)
	t.Logf("s2 UP %s after the restart (rise × interval = %s)", took, time.Duration(rise)*interval)
	if bound := time.Duration(rise)*interval*11/10 + timeout + 150*time.Millisecond; took > bound {
		t.Errorf("s2 UP after %s, want within %s", took, bound)
	}
	waitFor(t, 3*time.Second, "traffic on the restarted server", func() bool { return back[0].Requests() > 0 })
	for i, stop := range stops {
		if res := stop(); len(res.errs) > 0 {
			t.Errorf("client %d: %d failed requests (%d ok), e.g. %q", i, len(res.errs), res.ok, res.errs[:min(5, len(res.errs))])
		}
	}
	if !strings.Contains(logs.String(), "server b/s2 UP: http check passed, 2/2 succeeded") {
		t.Errorf("no UP line in the log:\n%s", logs)
	}
}

// healthServer is an HTTP server whose /healthz answer the test sets; other paths answer 200
// with X-Served-By.
type healthServer struct {
	*httpBackend
	mu     sync.Mutex
	status int
	body   string
}

func startHealthServer(t testing.TB, name string) *healthServer {
	hs := &healthServer{status: 200, body: "ok"}
	hs.httpBackend = startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			hs.mu.Lock()
			st, body := hs.status, hs.body
			hs.mu.Unlock()
			w.WriteHeader(st)
			io.WriteString(w, body)
			return
		}
		w.Header().Set("X-Served-By", name)
		io.WriteString(w, name)
	})
	return hs
}

func (hs *healthServer) set(status int, body string) {
	hs.mu.Lock()
	hs.status, hs.body = status, body
	hs.mu.Unlock()
}

// TestE2EHealthHTTPExpectations: a check that starts answering 500 takes the server out, and
// expect_status and expect_body (a regex) are both enforced; each change is logged once with its
// reason.
func TestE2EHealthHTTPExpectations(t *testing.T) {
	t.Parallel()
	h1, h2 := startHealthServer(t, "one"), startHealthServer(t, "two")
	rt, logs := startWaageLog(t, simpleConfig("", `    health_check: {type: http, path: /healthz, expect_status: [200], expect_body: "~^ok$", interval: 100ms, timeout: 100ms, fall: 2, rise: 2}
`, h1.addr, h2.addr))
	s1 := rt.Server("b", "s1")
	addr := feAddr(t, rt, "web")

	h1.set(500, "ok")
	waitFor(t, 3*time.Second, "s1 DOWN on status 500", func() bool { return !s1.Healthy() })
	for i := 0; i < 10; i++ {
		resp, body := dialRaw(t, addr).mustDo(t, get("/", "h.test"))
		if resp.StatusCode != 200 || string(body) != "two" {
			t.Fatalf("request %d while s1 is DOWN: %d %q", i, resp.StatusCode, body)
		}
	}
	h1.set(200, "ok")
	waitFor(t, 3*time.Second, "s1 UP", s1.Healthy)
	h1.set(200, "degraded")
	waitFor(t, 3*time.Second, "s1 DOWN on the body", func() bool { return !s1.Healthy() })
	h1.set(200, "ok")
	waitFor(t, 3*time.Second, "s1 UP again", s1.Healthy)

	log := logs.String()
	for want, times := range map[string]int{
		"server b/s1 DOWN: http check: status 500 (expected 200), 2/2 failed": 1,
		"server b/s1 UP: http check passed, 2/2 succeeded":                    2,
		`server b/s1 DOWN: http check: body does not match ~^ok$, 2/2 failed`: 1,
	} {
		if n := strings.Count(log, want); n != times {
			t.Errorf("log has %d lines %q, want %d:\n%s", n, want, times, log)
		}
	}
	if strings.Contains(log, "b/s2 DOWN") {
		t.Errorf("s2 went DOWN:\n%s", log)
	}
}

// TestE2EHealthInitialDown: with initial: down a server takes no traffic before it passed rise
// checks; a server whose check port differs from its traffic port is checked there.
func TestE2EHealthInitialDown(t *testing.T) {
	t.Parallel()
	good := startHealthServer(t, "one")
	checkOnly := startHealthServer(t, "check")
	_, checkPort, _ := strings.Cut(checkOnly.addr, ":")
	rt := startWaage(t, simpleConfig("", fmt.Sprintf(`    health_check: {type: http, path: /healthz, interval: 2s, timeout: 500ms, rise: 1, initial: down, port: %s}
`, checkPort), good.addr))
	s1 := rt.Server("b", "s1")
	if s1.Healthy() {
		// The first check runs within a quarter interval; it may have passed already.
		t.Log("s1 already UP")
	}
	waitFor(t, 2*time.Second, "s1 UP after its first check", s1.Healthy)
	if good.reqs.Load() != 0 {
		t.Errorf("the traffic port got %d requests from checks; want them on the check port", good.reqs.Load())
	}
	if checkOnly.reqs.Load() == 0 {
		t.Errorf("the check port got no check")
	}
}

// TestE2EPassiveEjection: without active checks, a server that refuses connections is ejected
// after consecutive_failures, for base_ejection_time, then longer on the next ejection; clients
// see no failure. No more than max_ejection_percent of the servers are ejected at once.
func TestE2EPassiveEjection(t *testing.T) {
	t.Parallel()
	// steady sends GETs for d and fails the test on any non-200 answer.
	steady := func(t *testing.T, addr string, d time.Duration, each func()) int {
		rc := dialRaw(t, addr)
		n := 0
		for end := time.Now().Add(d); time.Now().Before(end); n++ {
			resp, body := rc.mustDo(t, get("/", "p.test"))
			if resp.StatusCode != 200 {
				t.Fatalf("request %d: %d %q", n, resp.StatusCode, body)
			}
			if each != nil {
				each()
			}
			time.Sleep(2 * time.Millisecond)
		}
		return n
	}
	t.Run("backoff", func(t *testing.T) {
		t.Parallel()
		bs := startDemo(t, "a", "c")
		rt, logs := startWaageLog(t, simpleConfig("", `    outlier_detection: {consecutive_failures: 3, base_ejection_time: 300ms, max_ejection_time: 2s}
`, bs[0].Addr, closedAddr(t), bs[1].Addr))
		s2 := rt.Server("b", "s2")
		n := steady(t, feAddr(t, rt, "web"), 1500*time.Millisecond, nil)
		log := logs.String()
		for _, want := range []string{
			"server b/s2 DOWN: ejected for 300ms: 3 consecutive failures (last: dial tcp ",
			"server b/s2 UP: ejection ended after 300ms",
			"server b/s2 DOWN: ejected for 600ms: 3 consecutive failures",
		} {
			if !strings.Contains(log, want) {
				t.Errorf("log lacks %q:\n%s", want, log)
			}
		}
		// Three failures per ejection (two or three ejections), not one per request.
		if f := s2.Failures.Load(); f > 9 {
			t.Errorf("%d connect failures in %d requests: ejection did not spare them", f, n)
		}
		t.Logf("%d requests, %d connect failures on the dead server", n, s2.Failures.Load())
	})
	t.Run("max_ejection_percent", func(t *testing.T) {
		t.Parallel()
		bs := startDemo(t, "good")
		rt, logs := startWaageLog(t, simpleConfig("", `    outlier_detection: {consecutive_failures: 3, base_ejection_time: 300ms, max_ejection_percent: 34}
`, bs[0].Addr, closedAddr(t), closedAddr(t)))
		s2, s3 := rt.Server("b", "s2"), rt.Server("b", "s3")
		both := false
		steady(t, feAddr(t, rt, "web"), time.Second, func() { both = both || (s2.Ejected() && s3.Ejected()) })
		if both {
			t.Errorf("both dead servers were ejected at once; 34%% of three servers is one")
		}
		if !strings.Contains(logs.String(), "not ejected: 1 of 3 servers already ejected (max_ejection_percent 34)") {
			t.Errorf("the refused ejection is not logged:\n%s", logs)
		}
	})
}

// TestE2EPassive5xx: with consecutive_5xx set, a server that answers 500 is ejected; without
// it (the default) 5xx answers are relayed and eject nothing.
func TestE2EPassive5xx(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		extra  string
		ejects bool
	}{
		{"opt-in", "    outlier_detection: {consecutive_5xx: 3, base_ejection_time: 10s}\n", true},
		{"default", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			bad := startHealthServer(t, "bad")
			bad.httpBackend.srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(500)
			})
			good := startHealthServer(t, "good")
			rt := startWaage(t, simpleConfig("", tc.extra, bad.addr, good.addr))
			rc := dialRaw(t, feAddr(t, rt, "web"))
			var fives int
			for i := 0; i < 30; i++ {
				resp, _ := rc.mustDo(t, get("/", "x.test"))
				if resp.StatusCode == 500 {
					fives++
				}
			}
			if got := rt.Server("b", "s1").Ejected(); got != tc.ejects {
				t.Errorf("ejected = %v, want %v", got, tc.ejects)
			}
			if tc.ejects && fives != 3 {
				t.Errorf("%d answers were 500, want 3 (then the server is ejected)", fives)
			}
			if !tc.ejects && fives != 15 {
				t.Errorf("%d answers were 500, want 15 (every second one)", fives)
			}
		})
	}
}

// TestE2EBackupServers: backups take no traffic while a primary is usable (DOWN or in
// maintenance: not usable), all of it when none is, and with nothing left the answer is a 503
// that says so; primaries that return take the traffic back.
func TestE2EBackupServers(t *testing.T) {
	t.Parallel()
	bs := startDemo(t, "p1", "p2", "bk")
	yaml := "frontends:\n  - name: web\n    listen: [\"127.0.0.1:0\"]\n    default_backend: b\nbackends:\n  - name: b\n    servers:\n" +
		fmt.Sprintf("      - {name: p1, address: %q}\n      - {name: p2, address: %q}\n      - {name: bk, address: %q, backup: true}\n", bs[0].Addr, bs[1].Addr, bs[2].Addr)
	rt := startWaage(t, yaml)
	addr := feAddr(t, rt, "web")
	served := func(n int) map[string]int { return countBy(servedBy(t, addr, n, true)) }
	if m := served(10); m["bk"] != 0 || m["p1"] != 5 || m["p2"] != 5 {
		t.Errorf("with both primaries up: %v", m)
	}
	rt.Server("b", "p1").SetHealthy(false)
	if m := served(6); m["p2"] != 6 {
		t.Errorf("with p1 down: %v", m)
	}
	rt.Server("b", "p2").SetState(backend.Maintenance)
	if m := served(6); m["bk"] != 6 {
		t.Errorf("with no primary: %v", m)
	}
	rt.Server("b", "bk").SetHealthy(false)
	for i := 0; i < 2; i++ {
		resp, body := dialRaw(t, addr).mustDo(t, get("/", "b.test"))
		if got := strings.TrimSpace(string(body)); resp.StatusCode != 503 || got != "503 Service Unavailable: backend b has no healthy server" {
			t.Errorf("with nothing healthy: %d %q", resp.StatusCode, got)
		}
	}
	rt.Server("b", "p1").SetHealthy(true)
	if m := served(4); m["p1"] != 4 {
		t.Errorf("with p1 back: %v", m)
	}
	rt.Server("b", "p2").SetState(backend.Ready)
	if m := served(4); m["p1"] != 2 || m["p2"] != 2 {
		t.Errorf("with p2 back from maintenance: %v", m)
	}
}

// TestE2ESlowStart: a server that leaves maintenance gets a small share of the traffic at first
// and its full share once slow_start has passed.
func TestE2ESlowStart(t *testing.T) {
	t.Parallel()
	bs := startDemo(t, "old", "new")
	rt := startWaage(t, simpleConfig("", "    slow_start: 2s\n", demoAddrs(bs)...))
	s2 := rt.Server("b", "s2")
	s2.SetState(backend.Maintenance)
	addr := feAddr(t, rt, "web")
	share := func(d time.Duration) float64 {
		var n, fresh int
		rc := dialRaw(t, addr)
		for end := time.Now().Add(d); time.Now().Before(end); n++ {
			resp, _ := rc.mustDo(t, get("/", "s.test"))
			if resp.Header.Get("X-Served-By") == "new" {
				fresh++
			}
			time.Sleep(time.Millisecond)
		}
		return float64(fresh) / float64(n)
	}
	s2.SetState(backend.Ready)
	if !s2.Ramping() {
		t.Fatal("s2 is not ramping after leaving maintenance")
	}
	early := share(300 * time.Millisecond)
	time.Sleep(1800 * time.Millisecond)
	if s2.Ramping() {
		t.Error("s2 still ramping after slow_start")
	}
	late := share(300 * time.Millisecond)
	t.Logf("s2's share: %.2f in its first 300ms, %.2f after slow start", early, late)
	if early > 0.15 || late < 0.45 || late > 0.55 {
		t.Errorf("s2's share %.2f early (want <= 0.15), %.2f late (want 0.5)", early, late)
	}
}

// TestE2EDrainKeepsOpenRequests: a reload that sets a server to drain lets its running requests
// finish and sends it nothing new; maintenance takes it out at once too.
func TestE2EDrainKeepsOpenRequests(t *testing.T) {
	t.Parallel()
	bs := startDemo(t, "a", "b")
	base := simpleConfig("", "", demoAddrs(bs)...)
	rt := startWaage(t, base)
	addr := feAddr(t, rt, "web")
	// Round robin starts at s1: the first slow request goes to a.
	type result struct {
		status int
		by     string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		rc, err := dialRawE(addr)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer rc.c.Close()
		resp, _, err := rc.do(get("/slow?ms=800", "d.test"))
		if err != nil {
			done <- result{err: err}
			return
		}
		done <- result{status: resp.StatusCode, by: resp.Header.Get("X-Served-By")}
	}()
	waitFor(t, 2*time.Second, "the slow request on s1", func() bool { return rt.Server("b", "s1").InFlight() == 1 })
	drained := strings.Replace(base, `{name: s1, address: "`+bs[0].Addr+`"}`, `{name: s1, address: "`+bs[0].Addr+`", state: drain}`, 1)
	if drained == base {
		t.Fatal("could not set s1 to drain in the config")
	}
	cfg, err := config.Parse("drain.yaml", []byte("log: {access: \"off\"}\n"+drained), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	before := bs[0].Requests()
	for i := 0; i < 10; i++ {
		resp, _ := dialRaw(t, addr).mustDo(t, get("/", "d.test"))
		if by := resp.Header.Get("X-Served-By"); resp.StatusCode != 200 || by != "b" {
			t.Errorf("request %d during drain: %d from %q, want 200 from b", i, resp.StatusCode, by)
		}
	}
	r := <-done
	if r.err != nil || r.status != 200 || r.by != "a" {
		t.Errorf("the request open on the draining server: %+v, want 200 from a", r)
	}
	if n := bs[0].Requests() - before; n != 0 {
		t.Errorf("the draining server got %d new requests", n)
	}
}

// TestE2ERetryOnStatus: with on_status, idempotent requests that got a 503 are retried on
// another server; a POST is not; and the retry budget caps how many retries happen.
func TestE2ERetryOnStatus(t *testing.T) {
	t.Parallel()
	var unavailable atomic.Int64
	bad := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {
		unavailable.Add(1)
		w.WriteHeader(503)
	})
	good := startDemo(t, "good")
	for _, tc := range []struct {
		name, extra string
		retries     int64 // how many of the bad server's 503s may be retried; -1: all
	}{
		{"no retry by default", "", 0},
		{"on_status", "    retry: {on_status: [503]}\n", -1},
		// percent 0 and 1 per second: 10 retries in the 10 s window, then the 503s go through.
		{"budget", "    retry: {on_status: [503], budget: {percent: 0, min_per_second: 1}}\n", 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			extra := tc.extra + "    outlier_detection: {consecutive_failures: 0}\n"
			rt := startWaage(t, simpleConfig("", extra, bad.addr, good[0].Addr))
			rc := dialRaw(t, feAddr(t, rt, "web"))
			before := unavailable.Load()
			fails := int64(0)
			for i := 0; i < 40; i++ {
				resp, _ := rc.mustDo(t, get("/", "r.test"))
				if resp.StatusCode != 200 {
					fails++
				}
			}
			hits := unavailable.Load() - before
			want := hits - tc.retries
			if tc.retries < 0 {
				want = 0
			}
			if hits < 12 || fails != want {
				t.Errorf("%d of 40 GETs failed after %d hits on the 503 server, want %d", fails, hits, want)
			}
			if tc.name == "on_status" {
				before := unavailable.Load()
				posts := int64(0)
				for i := 0; i < 4; i++ {
					resp, _ := rc.mustDo(t, request("POST", "/", "r.test", "x"))
					if resp.StatusCode == 503 {
						posts++
					}
				}
				if posts != unavailable.Load()-before || posts == 0 {
					t.Errorf("POST: %d 503s for %d bad-server hits: a POST was retried", posts, unavailable.Load()-before)
				}
			}
		})
	}
}

// TestE2EHealthSurvivesReload: a reload keeps a DOWN server DOWN (its check keeps running with
// its counters), and a reload that removes the check gives the server back.
func TestE2EHealthSurvivesReload(t *testing.T) {
	t.Parallel()
	h1, h2 := startHealthServer(t, "one"), startHealthServer(t, "two")
	h1.set(503, "down")
	yaml := simpleConfig("", `    health_check: {type: http, path: /healthz, interval: 100ms, timeout: 100ms, fall: 1, rise: 3}
`, h1.addr, h2.addr)
	rt := startWaage(t, yaml)
	s1 := rt.Server("b", "s1")
	waitFor(t, 3*time.Second, "s1 DOWN", func() bool { return !s1.Healthy() })
	apply := func(text string) {
		t.Helper()
		cfg, err := config.Parse("reload.yaml", []byte("log: {access: \"off\"}\n"+text), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := rt.Apply(cfg); err != nil {
			t.Fatal(err)
		}
	}
	// The frontend keeps its port only if the listen address is the same; 127.0.0.1:0 is kept
	// while the entry stays, so the same text reloads in place.
	apply(yaml)
	if rt.Server("b", "s1") != s1 || s1.Healthy() {
		t.Fatal("the reload reset s1's health")
	}
	addr := feAddr(t, rt, "web")
	for i := 0; i < 6; i++ {
		resp, body := dialRaw(t, addr).mustDo(t, get("/", "r.test"))
		if string(body) != "two" {
			t.Fatalf("request %d after the reload: %d %q, want it on s2", i, resp.StatusCode, body)
		}
	}
	apply(simpleConfig("", "", h1.addr, h2.addr))
	if !s1.Healthy() {
		t.Error("s1 still DOWN after its check was removed")
	}
}
