package runtime

// The dashboard end to end in headless Chromium (Debian's chromium, driven with chromedp): the
// page loads from the admin listener, shows a server DOWN once its real backend process is gone,
// its drain button drains the server (asking for the token first), the top sources panel lists
// the clients and blocks one, and the VRRP panel shows the instances' state.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/waage/waage/internal/admin"
	"github.com/waage/waage/internal/config"
	"github.com/waage/waage/internal/vrrp"
)

// chromiumPath finds Debian's chromium. Without it the test skips, except as root, where
// scripts/test-deps.sh could have installed it: a missing browser then fails the test.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if p := "/usr/bin/chromium"; fileExists(p) {
		return p
	}
	if os.Geteuid() == 0 {
		t.Fatal("chromium is not installed; run scripts/test-deps.sh (apt-get install chromium)")
	}
	t.Skip("chromium is not installed (apt-get install chromium, or run scripts/test-deps.sh as root)")
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// browser starts a headless Chromium with a fresh profile and returns a tab's context; the
// browser is stopped at cleanup. Uncaught page exceptions fail the test.
func browser(t *testing.T, width, height int) context.Context {
	t.Helper()
	path := chromiumPath(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(width, height),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
	})
	// The first Run starts the browser; it must not run under a timeout (that would stop it).
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	var mu sync.Mutex
	var exceptions []string
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.IsException() {
				mu.Lock()
				exceptions = append(exceptions, m.String())
				mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range exceptions {
			t.Errorf("page exception: %s", e)
		}
	})
	return ctx
}

// within runs steps with a time limit.
func within(t *testing.T, ctx context.Context, d time.Duration, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if err := chromedp.Do(tctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// pollJS waits until the JavaScript expression is truthy.
func pollJS(t *testing.T, ctx context.Context, d time.Duration, what, expr string) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, d+5*time.Second)
	defer cancel()
	if _, err := chromedp.Run(tctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(d))); err != nil {
		page, _ := chromedp.Run(tctx, chromedp.Evaluate[string](`document.body.innerText`))
		t.Fatalf("%s: %v\npage:\n%s", what, err, page)
	}
}

// cellText is the JavaScript for the text of a server row's cell.
func cellText(server, cls string) string {
	return fmt.Sprintf(`(document.querySelector('tr[data-server=%q] .%s') || {}).textContent`, server, cls)
}

// TestDashboard: the page loads and lists the servers; killing a server's backend process shows
// it DOWN (an active http check notices); the drain button asks for the token once, drains the
// server (as the API confirms), and the ready button then needs no second prompt.
func TestDashboard(t *testing.T) {
	bs := startDemo(t, "a", "b", "c")
	rt := startWaage(t, simpleConfig("", `    health_check: {type: http, path: /healthz, interval: 100ms, timeout: 300ms, fall: 1, rise: 1}
    outlier_detection: {consecutive_failures: 0}
`, demoAddrs(bs)...))
	api := startAdminAPI(t, rt, "dash-token", nil)
	addr := feAddr(t, rt, "web")
	stop := backgroundLoad(addr, "app.test", "/", 1<<30)
	defer stop()
	ctx := browser(t, 1400, 900)

	within(t, ctx, 20*time.Second, "load the page", chromedp.Navigate(api.base+"/"))
	pollJS(t, ctx, 10*time.Second, "three servers listed, UP", `document.querySelectorAll('tr.server').length === 3 &&
		[...document.querySelectorAll('tr.server .health')].every(e => e.textContent === 'UP')`)
	title, err := chromedp.Run(ctx, chromedp.Title())
	if err != nil || title != "waage" {
		t.Errorf("title %q, %v", title, err)
	}
	pollJS(t, ctx, 10*time.Second, "live indicator and rates", `document.querySelector('#conn').textContent === 'live' &&
		parseFloat(document.querySelector('#sum-rps').textContent) > 0`)

	// The backend of s2 dies: its active check fails and the page shows it DOWN.
	bs[1].Close()
	pollJS(t, ctx, 10*time.Second, "s2 DOWN", cellText("b/s2", "health")+` === 'DOWN'`)
	pollJS(t, ctx, 10*time.Second, "the DOWN event", `[...document.querySelectorAll('#events li')].some(li => li.textContent.includes('b/s2') && li.textContent.includes('DOWN'))`)
	if rt.Server("b", "s2").Healthy() {
		t.Error("the page says DOWN but the server is healthy")
	}

	// Drain s1: the first change asks for the token.
	within(t, ctx, 10*time.Second, "click drain", chromedp.Click(chromedp.CSS(`tr[data-server="b/s1"] button[data-action="drain"]`)))
	within(t, ctx, 10*time.Second, "the token dialog", chromedp.WaitVisible(chromedp.ID("token-input")))
	within(t, ctx, 10*time.Second, "enter the token",
		chromedp.SendKeys(chromedp.ID("token-input"), "dash-token"),
		chromedp.Click(chromedp.ID("token-save")))
	waitFor(t, 10*time.Second, "s1 drained through the API", func() bool { return rt.Server("b", "s1").State().String() == "drain" })
	if s := api.servers()["b/s1"]; s.State != "drain" {
		t.Errorf("API: s1 is %s, want drain", s.State)
	}
	pollJS(t, ctx, 10*time.Second, "the state badge says drain", cellText("b/s1", "state")+` === 'drain'`)
	tok, err := chromedp.Run(ctx, chromedp.Evaluate[string](`sessionStorage.getItem('waage-token')`))
	if err != nil || tok != "dash-token" {
		t.Errorf("token in sessionStorage: %q, %v", tok, err)
	}

	// Ready again: the token is kept, no second prompt.
	within(t, ctx, 10*time.Second, "click ready", chromedp.Click(chromedp.CSS(`tr[data-server="b/s1"] button[data-action="ready"]`)))
	waitFor(t, 10*time.Second, "s1 ready through the API", func() bool { return rt.Server("b", "s1").State().String() == "ready" })
	open, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector('#token-dialog').open`))
	if err != nil || open {
		t.Errorf("the token dialog opened again: %v, %v", open, err)
	}
	pollJS(t, ctx, 10*time.Second, "state events listed", `[...document.querySelectorAll('#events li')].filter(li => li.dataset.kind === 'state').length === 2`)

	// Top sources: the background load (127.0.0.1) shows with its rate once the sampler ran, and
	// a source that sent a few requests is listed too. Its Block button asks for a TTL (10m by
	// default) and blocks it through the API; Unblock lifts it.
	for range 3 {
		if !servedFrom(t, "127.0.0.77", addr) {
			t.Fatal("127.0.0.77 was not served")
		}
	}
	const loadRow = `document.querySelector('tr.source[data-source="127.0.0.1"][data-frontend="web"]')`
	pollJS(t, ctx, 10*time.Second, "the load's source with its rate", loadRow+` && parseFloat(`+loadRow+`.querySelector('.rps').textContent) > 0`)
	const row77 = `tr.source[data-source="127.0.0.77"]`
	pollJS(t, ctx, 10*time.Second, "127.0.0.77 listed", `!!document.querySelector('`+row77+`')`)
	if v, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector('#vrrp').hidden`)); err != nil || !v {
		t.Errorf("the VRRP panel shows without VRRP instances: %v, %v", v, err)
	}
	within(t, ctx, 10*time.Second, "click block", chromedp.Click(chromedp.CSS(row77+` button[data-action="block"]`)))
	within(t, ctx, 10*time.Second, "the block dialog", chromedp.WaitVisible(chromedp.ID("block-ttl")))
	ttl, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('#block-ttl').value + ' ' + document.querySelector('#block-cidr').value`))
	if err != nil || ttl != "10m 127.0.0.77" {
		t.Errorf("the block dialog offers %q, %v; want 10m for 127.0.0.77", ttl, err)
	}
	within(t, ctx, 10*time.Second, "confirm the block", chromedp.Click(chromedp.ID("block-save")))
	var blocks struct {
		Denied []struct {
			CIDR             string `json:"cidr"`
			RemainingSeconds *int64 `json:"remaining_seconds"`
		} `json:"denied"`
	}
	waitFor(t, 10*time.Second, "the API to list the block", func() bool {
		api.json("GET", "/api/deny", "", "", 200, &blocks)
		return len(blocks.Denied) == 1
	})
	if b := blocks.Denied[0]; b.CIDR != "127.0.0.77/32" || b.RemainingSeconds == nil || *b.RemainingSeconds < 590 || *b.RemainingSeconds > 600 {
		t.Errorf("the block: %+v", b)
	}
	if servedFrom(t, "127.0.0.77", addr) {
		t.Error("127.0.0.77 is still served after the block")
	}
	pollJS(t, ctx, 10*time.Second, "the block listed, the source marked", `!!document.querySelector('li.block[data-cidr="127.0.0.77/32"]') &&
		document.querySelector('`+row77+`').classList.contains('denied')`)
	within(t, ctx, 10*time.Second, "click unblock", chromedp.Click(chromedp.CSS(`li.block[data-cidr="127.0.0.77/32"] button[data-action="unblock"]`)))
	waitFor(t, 10*time.Second, "the block lifted", func() bool { return len(rt.Denied()) == 0 })
	pollJS(t, ctx, 10*time.Second, "no blocks listed", `document.querySelectorAll('li.block').length === 0 && !document.querySelector('#no-blocks').hidden`)
}

// servedFrom sends one request from the loopback address src and reports whether it was answered
// 200.
func servedFrom(t *testing.T, src, addr string) bool {
	t.Helper()
	rc, err := dialFromE(src, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.c.Close()
	resp, _, err := rc.do(get("/", "app.test"))
	return err == nil && resp.StatusCode == 200
}

// vrrpSource is the runtime with made-up VRRP instances (a real one needs an interface of its own;
// TestAdminVRRP runs one in a network namespace).
type vrrpSource struct {
	*Runtime
	mu sync.Mutex
	st []vrrp.Status
}

func (v *vrrpSource) VRRPStatus() []vrrp.Status {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.st)
}

// TestDashboardVRRP: the VRRP panel shows each instance's state (the master highlighted), its
// priority (effective of configured when a tracker fails), master address and last transition,
// and follows a change.
func TestDashboardVRRP(t *testing.T) {
	bs := startDemo(t, "a")
	rt := startWaage(t, simpleConfig("", "", demoAddrs(bs)...))
	src := &vrrpSource{Runtime: rt, st: []vrrp.Status{
		{
			Name: "web-vip", Interface: "eth0", VRID: 51, State: "master", Priority: 150, EffectivePriority: 150,
			AdvertInterval: time.Second, MasterAddr: netip.MustParseAddr("192.0.2.1"), VirtualIPs: []string{"192.0.2.10/24"},
			Transitions: 2, LastTransition: time.Now().Add(-2 * time.Minute), LastReason: "master 192.0.2.2 silent for the master down interval",
		},
		{
			Name: "db-vip", Interface: "eth1", VRID: 52, State: "backup", Priority: 100, EffectivePriority: 50,
			MasterAddr: netip.MustParseAddr("192.0.2.2"), VirtualIPs: []string{"192.0.2.20/24"},
			Transitions: 1, LastTransition: time.Now().Add(-time.Hour), LastReason: "advert of higher priority 150 from 192.0.2.2",
			Trackers: []vrrp.TrackerStatus{{Kind: "backend", Name: "db", Weight: 50, Failing: true}},
		},
	}}
	srv := admin.New(admin.Options{Source: src, Version: "test", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := srv.Apply(config.Admin{Listen: "127.0.0.1:0"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	ctx := browser(t, 1400, 900)
	within(t, ctx, 20*time.Second, "load the page", chromedp.Navigate("http://"+srv.Addr().String()+"/"))
	pollJS(t, ctx, 10*time.Second, "two instances", `!document.querySelector('#vrrp').hidden && document.querySelectorAll('.vrrp-card').length === 2`)
	card := func(name, sel string) string {
		return fmt.Sprintf(`(document.querySelector('.vrrp-card[data-instance=%q] %s') || {}).textContent`, name, sel)
	}
	got, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[`+strings.Join([]string{
		card("web-vip", ".state"), card("web-vip", ".priority"), card("web-vip", ".master"), card("web-vip", ".last"),
		card("db-vip", ".state"), card("db-vip", ".priority"), card("db-vip", ".master"), card("db-vip", ".failing"),
	}, ",")+`]`))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"master", "150", "192.0.2.1", "2m ago · master 192.0.2.2 silent for the master down interval",
		"backup", "50 / 100", "192.0.2.2", "backend db (−50)"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("the cards:\n got %q\nwant %q", got, want)
	}
	highlight, err := chromedp.Run(ctx, chromedp.Evaluate[[]bool](`['web-vip', 'db-vip'].map(n => document.querySelector('.vrrp-card[data-instance="' + n + '"]').classList.contains('master'))`))
	if err != nil || len(highlight) != 2 || !highlight[0] || highlight[1] {
		t.Errorf("highlighted as master: %v, %v; want web-vip only", highlight, err)
	}
	// A failover: the page follows within a poll or two.
	src.mu.Lock()
	src.st[0].State, src.st[0].MasterAddr, src.st[0].Transitions = "backup", netip.MustParseAddr("192.0.2.2"), 3
	src.st[1].State, src.st[1].MasterAddr = "master", netip.MustParseAddr("192.0.2.1")
	src.mu.Unlock()
	pollJS(t, ctx, 10*time.Second, "the failover shown", `document.querySelector('.vrrp-card[data-instance="db-vip"]').classList.contains('master') &&
		!document.querySelector('.vrrp-card[data-instance="web-vip"]').classList.contains('master') &&
		`+card("web-vip", ".master")+` === '192.0.2.2'`)
}

// TestDashboardWrongToken: a wrong token shows the API's error and changes nothing.
func TestDashboardWrongToken(t *testing.T) {
	bs := startDemo(t, "a")
	rt := startWaage(t, simpleConfig("", "", demoAddrs(bs)...))
	api := startAdminAPI(t, rt, "right", nil)
	ctx := browser(t, 1200, 800)
	within(t, ctx, 20*time.Second, "load the page", chromedp.Navigate(api.base+"/"))
	pollJS(t, ctx, 10*time.Second, "the server listed", `document.querySelectorAll('tr.server').length === 1`)
	within(t, ctx, 10*time.Second, "drain with a wrong token",
		chromedp.Click(chromedp.CSS(`tr[data-server="b/s1"] button[data-action="drain"]`)),
		chromedp.WaitVisible(chromedp.ID("token-input")),
		chromedp.SendKeys(chromedp.ID("token-input"), "wrong"),
		chromedp.Click(chromedp.ID("token-save")))
	pollJS(t, ctx, 10*time.Second, "the error toast", `!document.querySelector('#toast').hidden && document.querySelector('#toast').textContent.includes('wrong token')`)
	if st := rt.Server("b", "s1").State().String(); st != "ready" {
		t.Errorf("s1 is %s after a wrong token", st)
	}
}

// TestDashboardFiftyServers renders 50 servers in three backends under load, with some DOWN,
// drained and in maintenance, and takes a full-page screenshot (kept in WAAGE_DASHBOARD_SHOT when
// set, to look at). The layout must keep the page readable: one row per server, all rows as tall
// as the first, the table no wider than the window.
func TestDashboardFiftyServers(t *testing.T) {
	names := make([]string, 50)
	for i := range names {
		names[i] = fmt.Sprintf("n%02d", i+1)
	}
	bs := startDemo(t, names...)
	var sb strings.Builder
	sb.WriteString("log: {access: \"off\"}\nfrontends:\n  - {name: web, listen: [\"127.0.0.1:0\"], default_backend: web}\n")
	sb.WriteString("  - {name: api, listen: [\"127.0.0.1:0\"], default_backend: api}\n")
	sb.WriteString("  - {name: imap, mode: tcp, listen: [\"127.0.0.1:0\"], backend: imap}\nbackends:\n")
	group := func(name, algo string, from, to int) {
		fmt.Fprintf(&sb, "  - name: %s\n    algorithm: %s\n    health_check: {type: tcp, interval: 200ms, timeout: 1s, fall: 2, rise: 1}\n    outlier_detection: {consecutive_failures: 0}\n    servers:\n", name, algo)
		for i := from; i < to; i++ {
			fmt.Fprintf(&sb, "      - {name: %s-%02d, address: %q, weight: %d}\n", name, i-from+1, bs[i].Addr, 1+i%3)
		}
	}
	group("web", "weighted_round_robin", 0, 24)
	group("api", "least_connections", 24, 42)
	group("imap", "source_ip_hash", 42, 50)
	rt := startWaage(t, sb.String())
	api := startAdminAPI(t, rt, "t", nil)
	api.json("POST", "/api/backends/web/servers/web-03/drain", "t", "", 200, nil)
	api.json("POST", "/api/backends/api/servers/api-07/maintenance", "t", "", 200, nil)
	bs[9].Close()  // web-10
	bs[30].Close() // api-07
	bs[45].Close() // imap-04

	ctx := browser(t, 1920, 1080)
	within(t, ctx, 20*time.Second, "load the page", chromedp.Navigate(api.base+"/"))
	pollJS(t, ctx, 10*time.Second, "fifty rows", `document.querySelectorAll('tr.server').length === 50`)
	pollJS(t, ctx, 10*time.Second, "three DOWN", `[...document.querySelectorAll('tr.server .health')].filter(e => e.textContent === 'DOWN').length === 3`)
	// Every row fits, at every common window width: nothing sticks out of the table or under
	// the events, and the page does not scroll sideways.
	for _, width := range []int64{1920, 1600, 1440, 1280, 1024} {
		within(t, ctx, 5*time.Second, "resize", chromedp.EmulateViewport(width, 1000))
		time.Sleep(100 * time.Millisecond)
		layout, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]float64](`(() => {
			const rows = [...document.querySelectorAll('tr.server')];
			const hs = rows.map(r => r.getBoundingClientRect().height);
			const btns = rows.map(r => r.querySelector('button[data-action=maintenance]').getBoundingClientRect());
			const ev = document.querySelector('.events').getBoundingClientRect();
			const table = document.querySelector('.servers').getBoundingClientRect();
			// A button under the events panel, when that sits beside the table, is covered.
			const covered = btns.filter(b => ev.left > table.left && b.right > ev.left).length;
			return {
				minH: Math.min(...hs), maxH: Math.max(...hs),
				tableW: document.querySelector('#servers').getBoundingClientRect().width,
				pageW: document.documentElement.scrollWidth, winW: window.innerWidth,
				buttonsRight: Math.max(...btns.map(b => b.right)), boxRight: table.right, covered,
			};
		})()`))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("layout at %dpx: %v", width, layout)
		if layout["maxH"] > layout["minH"]+1 || layout["maxH"] > 40 {
			t.Errorf("%dpx: rows of uneven or large height: %v", width, layout)
		}
		if layout["pageW"] > layout["winW"] {
			t.Errorf("%dpx: the page scrolls sideways: %v", width, layout)
		}
		if layout["buttonsRight"] > layout["boxRight"] || layout["covered"] > 0 {
			t.Errorf("%dpx: the action buttons stick out of the table: %v", width, layout)
		}
	}
	within(t, ctx, 5*time.Second, "resize", chromedp.EmulateViewport(1920, 1080))
	// A few seconds of traffic (some of it answered 500) for the charts.
	var stops []func() loadResult
	for range 2 {
		stops = append(stops, backgroundLoad(feAddr(t, rt, "web"), "app.test", "/", 1<<30))
	}
	stops = append(stops, backgroundLoad(feAddr(t, rt, "api"), "app.test", "/status/500", 1<<30))
	stops = append(stops, backgroundLoad(feAddr(t, rt, "api"), "app.test", "/", 1<<30))
	defer func() {
		for _, s := range stops {
			s()
		}
	}()
	time.Sleep(8 * time.Second)
	// The header stays on top while scrolling.
	within(t, ctx, 5*time.Second, "scroll", chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 800)`))
	top, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`document.querySelector('thead th').getBoundingClientRect().top`))
	if err != nil || top < 0 || top > 120 {
		t.Errorf("the table header scrolled away: top %g, %v", top, err)
	}
	within(t, ctx, 5*time.Second, "scroll back", chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`))
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	path := os.Getenv("WAAGE_DASHBOARD_SHOT")
	if path == "" {
		path = filepath.Join(t.TempDir(), "dashboard.png")
	}
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(shot))
	// The dark scheme, for a look at it too.
	if err := chromedp.Do(ctx, func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}},
		})
		return chromedp.Void{}, err
	}); err != nil {
		t.Fatalf("dark scheme: %v", err)
	}
	time.Sleep(1500 * time.Millisecond) // a poll redraws the charts in the dark colors
	if shot, err = chromedp.Run(ctx, chromedp.FullScreenshot(100)); err != nil {
		t.Fatal(err)
	}
	dark := strings.TrimSuffix(path, ".png") + "-dark.png"
	if err := os.WriteFile(dark, shot, 0o644); err != nil {
		t.Fatal(err)
	}
}
