package runtime

// End-to-end tests of the admin API and /metrics against a running runtime with real backends:
// the API reads the live servers, changes them, and reloads; the metrics count what went through.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	dto "github.com/prometheus/client_model/go"

	"github.com/waage/waage/internal/admin"
	"github.com/waage/waage/internal/adminapi"
	"github.com/waage/waage/internal/config"
)

// startAdminAPI serves rt's admin API on a loopback port with token ("" = read-only) and returns
// a client for it.
func startAdminAPI(t testing.TB, rt *Runtime, token string, reload func() error) *apiClient {
	t.Helper()
	srv := admin.New(admin.Options{Source: rt, Reload: reload, Version: "test", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := srv.Apply(config.Admin{Listen: "127.0.0.1:0", Token: token}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return &apiClient{t: t, base: "http://" + srv.Addr().String(), http: &http.Client{Timeout: ioTimeout}}
}

type apiClient struct {
	t    testing.TB
	base string
	http *http.Client
}

// do sends one request (token "" sends none) and returns the status and body.
func (c *apiClient) do(method, path, token, body string) (int, []byte) {
	c.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp.StatusCode, data
}

// json sends one request that must answer want, and decodes the answer into v.
func (c *apiClient) json(method, path, token, body string, want int, v any) {
	c.t.Helper()
	status, data := c.do(method, path, token, body)
	if status != want {
		c.t.Fatalf("%s %s: %d, want %d: %s", method, path, status, want, data)
	}
	if v != nil {
		if err := json.Unmarshal(data, v); err != nil {
			c.t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
}

// The answers' shapes as a client reads them.
type apiServer struct {
	Name            string            `json:"name"`
	Backend         string            `json:"backend"`
	Address         string            `json:"address"`
	State           string            `json:"state"`
	Health          string            `json:"health"`
	Ejected         bool              `json:"ejected"`
	Weight          int               `json:"weight"`
	EffectiveWeight float64           `json:"effective_weight"`
	InFlight        int64             `json:"in_flight"`
	Requests        uint64            `json:"requests"`
	Responses       map[string]uint64 `json:"responses"`
	ConnectErrors   uint64            `json:"connect_errors"`
	Retries         uint64            `json:"retries"`
	BytesIn         uint64            `json:"bytes_in"`
	BytesOut        uint64            `json:"bytes_out"`
	LatencyMs       float64           `json:"latency_ms"`
	LastCheck       *struct {
		OK         bool      `json:"ok"`
		Error      string    `json:"error"`
		At         time.Time `json:"at"`
		DurationMs float64   `json:"duration_ms"`
	} `json:"last_check"`
}

type apiBackends struct {
	Backends []struct {
		Name      string      `json:"name"`
		Mode      string      `json:"mode"`
		Algorithm string      `json:"algorithm"`
		Servers   []apiServer `json:"servers"`
	} `json:"backends"`
}

func (c *apiClient) servers() map[string]apiServer {
	c.t.Helper()
	var out apiBackends
	c.json("GET", "/api/backends", "", "", 200, &out)
	m := map[string]apiServer{}
	for _, b := range out.Backends {
		for _, s := range b.Servers {
			m[b.Name+"/"+s.Name] = s
		}
	}
	return m
}

// servedBy sends n GETs of path on one connection and counts the answers by X-Served-By.
func servedByCount(t testing.TB, addr, path string, n int) map[string]int {
	t.Helper()
	rc := dialRaw(t, addr)
	defer rc.c.Close()
	got := map[string]int{}
	for range n {
		resp, _ := rc.mustDo(t, get(path, "app.test"))
		got[resp.Header.Get("X-Served-By")]++
	}
	return got
}

// TestAdminAPI: the API shows the live servers with their counters, changes state and weight
// (with the token only), and the data path follows at once.
func TestAdminAPI(t *testing.T) {
	t.Parallel()
	bs := startDemo(t, "a", "b")
	rt := startWaage(t, simpleConfig("", `    health_check: {type: tcp, interval: 100ms, timeout: 500ms}
    outlier_detection: {consecutive_failures: 0}
`, demoAddrs(bs)...))
	api := startAdminAPI(t, rt, "s3cret", nil)
	addr := feAddr(t, rt, "web")

	got := servedByCount(t, addr, "/bytes/100", 10)
	if got["a"] != 5 || got["b"] != 5 {
		t.Fatalf("round robin over two: %v", got)
	}
	waitFor(t, 5*time.Second, "a health check of each server", func() bool {
		ss := api.servers()
		return ss["b/s1"].LastCheck != nil && ss["b/s2"].LastCheck != nil
	})
	var bes apiBackends
	api.json("GET", "/api/backends", "", "", 200, &bes)
	if len(bes.Backends) != 1 || bes.Backends[0].Name != "b" || bes.Backends[0].Mode != "http" || bes.Backends[0].Algorithm != "round_robin" || len(bes.Backends[0].Servers) != 2 {
		t.Fatalf("backends: %+v", bes)
	}
	for i, s := range bes.Backends[0].Servers {
		name := fmt.Sprintf("s%d", i+1)
		if s.Name != name || s.Backend != "b" || s.Address != bs[i].Addr || s.State != "ready" || s.Health != "up" || s.Ejected ||
			s.Weight != 1 || s.EffectiveWeight != 1 || s.InFlight != 0 {
			t.Errorf("%s: %+v", name, s)
		}
		if s.Requests != 5 || s.Responses["2xx"] != 5 || s.Responses["5xx"] != 0 || s.BytesOut != 500 || s.BytesIn != 0 || s.LatencyMs <= 0 {
			t.Errorf("%s counters: %+v", name, s)
		}
		if lc := s.LastCheck; lc == nil || !lc.OK || lc.Error != "" || time.Since(lc.At) > 5*time.Second || lc.DurationMs <= 0 {
			t.Errorf("%s last check: %+v", name, lc)
		}
	}

	// Changes need the token.
	drain := "/api/backends/b/servers/s2/drain"
	for _, tok := range []string{"", "wrong", "S3CRET", "s3cret2"} {
		if status, body := api.do("POST", drain, tok, ""); status != 401 || !bytes.Contains(body, []byte(`"error"`)) {
			t.Errorf("drain with token %q: %d %s", tok, status, body)
		}
	}
	if rt.Server("b", "s2").State().String() != "ready" {
		t.Fatal("a refused change changed the server")
	}
	var s apiServer
	api.json("POST", drain, "s3cret", "", 200, &s)
	if s.Name != "s2" || s.State != "drain" || s.Health != "up" {
		t.Errorf("drain answer: %+v", s)
	}
	if got := servedByCount(t, addr, "/", 6); got["a"] != 6 {
		t.Errorf("with s2 drained: %v, want all on a", got)
	}
	api.json("PUT", "/api/backends/b/servers/s1/weight", "s3cret", `{"weight": 3}`, 200, &s)
	if s.Weight != 3 || rt.Server("b", "s1").Weight() != 3 {
		t.Errorf("weight answer: %+v", s)
	}
	api.json("POST", "/api/backends/b/servers/s2/maintenance", "s3cret", "", 200, &s)
	api.json("POST", "/api/backends/b/servers/s2/ready", "s3cret", "", 200, &s)
	if s.State != "ready" {
		t.Errorf("ready answer: %+v", s)
	}
	// Smooth weighted round robin: s1 (weight 3) takes 6 of 8, s2 2.
	got = servedByCount(t, addr, "/", 8)
	if got["a"] != 6 || got["b"] != 2 {
		t.Errorf("with s2 ready again: %v, want a 6, b 2", got)
	}
	api.json("GET", "/api/backends/b/servers/s2", "", "", 200, &s)
	if s.State != "ready" || s.Requests != uint64(5+got["b"]) {
		t.Errorf("s2: %+v, want %d requests", s, 5+got["b"])
	}
	if status, _ := api.do("POST", "/api/backends/b/servers/nope/drain", "s3cret", ""); status != 404 {
		t.Errorf("unknown server: %d", status)
	}
	if status, _ := api.do("POST", "/api/backends/nope/servers/s1/drain", "s3cret", ""); status != 404 {
		t.Errorf("unknown backend: %d", status)
	}
	if status, _ := api.do("PUT", "/api/backends/b/servers/s1/weight", "s3cret", `{"weight": "heavy"}`); status != 400 {
		t.Errorf("bad weight: %d", status)
	}

	// The events name every change and who made it.
	var evs struct {
		Events []struct {
			ID                                      uint64
			Backend, Server, Kind, From, To, Source string
		} `json:"events"`
		Last uint64 `json:"last"`
	}
	api.json("GET", "/api/events", "", "", 200, &evs)
	var lines []string
	for _, e := range evs.Events {
		lines = append(lines, fmt.Sprintf("%s/%s %s %s->%s by %s", e.Backend, e.Server, e.Kind, e.From, e.To, e.Source))
	}
	want := []string{"b/s2 state ready->drain by api", "b/s1 weight 1->3 by api", "b/s2 state drain->maintenance by api", "b/s2 state maintenance->ready by api"}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	api.json("GET", fmt.Sprintf("/api/events?since=%d", evs.Last-1), "", "", 200, &evs)
	if len(evs.Events) != 1 || evs.Events[0].To != "ready" {
		t.Errorf("events since the one before last: %+v", evs.Events)
	}

	var fes struct {
		Frontends []struct {
			Name, Mode        string
			Addresses         []string
			DefaultBackend    string            `json:"default_backend"`
			ActiveConnections int64             `json:"active_connections"`
			Connections       uint64            `json:"connections"`
			Requests          uint64            `json:"requests"`
			Responses         map[string]uint64 `json:"responses"`
			BytesOut          uint64            `json:"bytes_out"`
		} `json:"frontends"`
	}
	api.json("GET", "/api/frontends", "", "", 200, &fes)
	if len(fes.Frontends) != 1 {
		t.Fatalf("frontends: %+v", fes)
	}
	fe := fes.Frontends[0]
	if fe.Name != "web" || fe.Mode != "http" || len(fe.Addresses) != 1 || fe.Addresses[0] != addr || fe.DefaultBackend != "b" ||
		fe.Requests != 24 || fe.Responses["2xx"] != 24 || fe.Connections != 3 || fe.BytesOut < 1000 {
		t.Errorf("frontend: %+v", fe)
	}

	var cfg struct {
		Backends []struct {
			Name    string `json:"name"`
			Servers []struct {
				Name  string `json:"name"`
				State string `json:"state"`
			} `json:"servers"`
		} `json:"backends"`
	}
	api.json("GET", "/api/config", "", "", 200, &cfg)
	if len(cfg.Backends) != 1 || len(cfg.Backends[0].Servers) != 2 || cfg.Backends[0].Servers[1].State != "ready" {
		t.Errorf("config: %+v", cfg)
	}
}

// TestAdminReadOnly: without a token the API answers reads and refuses every change.
func TestAdminReadOnly(t *testing.T) {
	t.Parallel()
	bs := startDemo(t, "a")
	rt := startWaage(t, simpleConfig("", "", demoAddrs(bs)...))
	api := startAdminAPI(t, rt, "", func() error { return nil })
	if len(api.servers()) != 1 {
		t.Fatal("no server")
	}
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/api/backends/b/servers/s1/drain", ""},
		{"PUT", "/api/backends/b/servers/s1/weight", `{"weight": 2}`},
		{"POST", "/api/reload", ""},
	} {
		if status, body := api.do(c.method, c.path, "any", c.body); status != 403 || !bytes.Contains(body, []byte("read-only")) {
			t.Errorf("%s %s: %d %s", c.method, c.path, status, body)
		}
	}
	if s := rt.Server("b", "s1"); s.State().String() != "ready" || s.Weight() != 1 {
		t.Error("a read-only API changed the server")
	}
}

// TestAdminStateSurvivesReload pins the rule for operator changes across reloads: a state or
// weight set through the API stays until the configuration changes that server's own value (or
// its address, which makes it another server).
func TestAdminStateSurvivesReload(t *testing.T) {
	t.Parallel()
	bs := startDemo(t, "a", "b", "c")
	cfgText := func(s2, s1weight, s2addr string) string {
		return fmt.Sprintf(`log: {access: "off"}
frontends:
  - {name: web, listen: ["127.0.0.1:0"], default_backend: b}
backends:
  - name: b
    servers:
      - {name: s1, address: %q%s}
      - {name: s2, address: %q%s}
`, bs[0].Addr, s1weight, s2addr, s2)
	}
	rt := startWaage(t, cfgText("", "", bs[1].Addr))
	api := startAdminAPI(t, rt, "t", nil)
	apply := func(text string) {
		t.Helper()
		cfg, err := parseForTest(text)
		if err != nil {
			t.Fatal(err)
		}
		if err := rt.Apply(cfg); err != nil {
			t.Fatal(err)
		}
	}
	check := func(when, s2state string, s1weight int) {
		t.Helper()
		ss := api.servers()
		if ss["b/s2"].State != s2state || ss["b/s1"].Weight != s1weight {
			t.Errorf("%s: s2 %s, s1 weight %d; want %s and %d", when, ss["b/s2"].State, ss["b/s1"].Weight, s2state, s1weight)
		}
	}
	api.json("POST", "/api/backends/b/servers/s2/drain", "t", "", 200, nil)
	api.json("PUT", "/api/backends/b/servers/s1/weight", "t", `{"weight": 5}`, 200, nil)
	apply(cfgText("", "", bs[1].Addr))
	check("reload of the same file", "drain", 5)
	apply(cfgText(", state: ready", ", weight: 1", bs[1].Addr))
	check("reload that spells out the same values", "drain", 5)
	apply(cfgText(", state: maintenance", ", weight: 2", bs[1].Addr))
	check("reload that changes both", "maintenance", 2)
	api.json("POST", "/api/backends/b/servers/s2/ready", "t", "", 200, nil)
	apply(cfgText(", state: maintenance", ", weight: 2", bs[1].Addr))
	check("reload after the API set it again", "ready", 2)
	api.json("POST", "/api/backends/b/servers/s2/drain", "t", "", 200, nil)
	apply(cfgText("", ", weight: 2", bs[2].Addr))
	check("reload that moves s2 to another address", "ready", 2)
}

// TestAdminReloadEndpoint: POST /api/reload loads the file again; a broken file is refused with
// its errors (422) and the running configuration stays.
func TestAdminReloadEndpoint(t *testing.T) {
	t.Parallel()
	bs := startDemo(t, "a", "b")
	path := filepath.Join(t.TempDir(), "waage.yaml")
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	text := "log: {access: \"off\"}\n" + simpleConfig("", "", bs[0].Addr)
	write(text)
	rt := startWaage(t, text)
	var mu sync.Mutex
	reload := func() error {
		mu.Lock()
		defer mu.Unlock()
		cfg, err := config.Load(path)
		if err != nil {
			return err
		}
		return rt.Apply(cfg)
	}
	api := startAdminAPI(t, rt, "t", reload)
	if status, _ := api.do("POST", "/api/reload", "", ""); status != 401 {
		t.Errorf("reload without the token: %d", status)
	}
	write("log: {access: \"off\"}\n" + simpleConfig("", "", bs[0].Addr, bs[1].Addr))
	api.json("POST", "/api/reload", "t", "", 200, nil)
	if ss := api.servers(); len(ss) != 2 || ss["b/s2"].Address != bs[1].Addr {
		t.Fatalf("after the reload: %+v", ss)
	}
	write("frontends: [\n  bogus")
	status, body := api.do("POST", "/api/reload", "t", "")
	var e struct{ Error string }
	json.Unmarshal(body, &e)
	if status != 422 || !strings.Contains(e.Error, path) || !strings.Contains(e.Error, "the running configuration stays") {
		t.Errorf("broken file: %d %s", status, body)
	}
	if got := servedByCount(t, feAddr(t, rt, "web"), "/", 4); got["a"] != 2 || got["b"] != 2 {
		t.Errorf("after the refused reload: %v", got)
	}
}

// scrape reads /metrics and parses it with Prometheus' own text parser.
func scrape(t testing.TB, api *apiClient) map[string]*dto.MetricFamily {
	t.Helper()
	status, body := api.do("GET", "/metrics", "", "")
	if status != 200 {
		t.Fatalf("/metrics: %d %s", status, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, body)
	}
	return fams
}

// metricValue is the value of the sample of name with (at least) these labels: a counter's or
// gauge's value, a histogram's count. -1 when there is none.
func metricValue(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
next:
	for _, m := range f.GetMetric() {
		n := 0
		for _, lp := range m.GetLabel() {
			if v, ok := want[lp.GetName()]; ok {
				if v != lp.GetValue() {
					continue next
				}
				n++
			}
		}
		if n != len(want) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

// TestMetricsCounts: after a known set of requests and sessions, /metrics shows exactly those
// counts per frontend, backend and server.
func TestMetricsCounts(t *testing.T) {
	t.Parallel()
	bs := startDemo(t, "a")
	echo := startTCPEcho(t, "e")
	dead := closedAddr(t)
	rt := startWaage(t, fmt.Sprintf(`frontends:
  - {name: web, listen: ["127.0.0.1:0"], default_backend: b}
  - {name: tcp, mode: tcp, listen: ["127.0.0.1:0"], backend: echo}
backends:
  - name: b
    outlier_detection: {consecutive_failures: 0}
    servers:
      - {name: live, address: %q}
      - {name: dead, address: %q}
  - name: echo
    servers:
      - {name: e1, address: %q}
`, bs[0].Addr, dead, echo.addr()))
	api := startAdminAPI(t, rt, "", nil)
	addr := feAddr(t, rt, "web")
	rc := dialRaw(t, addr)
	for range 10 {
		if resp, body := rc.mustDo(t, get("/bytes/100", "app.test")); resp.StatusCode != 200 || len(body) != 100 {
			t.Fatalf("GET /bytes/100: %d, %d bytes", resp.StatusCode, len(body))
		}
	}
	const body503 = "a\nstatus: 503\n"
	for range 3 {
		if resp, body := rc.mustDo(t, get("/status/503", "app.test")); resp.StatusCode != 503 || string(body) != body503 {
			t.Fatalf("GET /status/503: %d %q", resp.StatusCode, body)
		}
	}
	for range 2 {
		if resp, body := rc.mustDo(t, request("POST", "/echo", "app.test", "hello")); resp.StatusCode != 200 || string(body) != "hello" {
			t.Fatalf("POST /echo: %d %q", resp.StatusCode, body)
		}
	}
	tcpAddr := feAddr(t, rt, "tcp")
	for range 2 {
		echoSession(t, tcpAddr, "ping")
	}
	// A session is counted when it ends, just after the client saw EOF.
	waitFor(t, 5*time.Second, "the tcp sessions to end", func() bool {
		return metricValue(scrape(t, api), "waage_frontend_active_connections", "frontend", "tcp") == 0
	})
	fams := scrape(t, api)
	// Bytes of one echo session: "ping\n" in; greeting, echo and goodbye out.
	const tcpIn, tcpOut float64 = float64(len("ping\n")), float64(len("e\n") + len("e ping\n") + len("e bye\n"))
	httpOut := 10*100 + 3*len(body503) + 2*len("hello")
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"waage_frontend_requests_total", []string{"frontend", "web"}, 15},
		{"waage_frontend_responses_total", []string{"frontend", "web", "code", "2xx"}, 12},
		{"waage_frontend_responses_total", []string{"frontend", "web", "code", "5xx"}, 3},
		{"waage_frontend_responses_total", []string{"frontend", "web", "code", "4xx"}, 0},
		{"waage_frontend_bytes_in_total", []string{"frontend", "web"}, 10},
		{"waage_frontend_bytes_out_total", []string{"frontend", "web"}, float64(httpOut)},
		{"waage_frontend_request_duration_seconds", []string{"frontend", "web"}, 15},
		{"waage_frontend_connections_total", []string{"frontend", "web"}, 1},
		{"waage_frontend_active_connections", []string{"frontend", "web"}, 1},
		{"waage_frontend_connections_total", []string{"frontend", "tcp"}, 2},
		{"waage_frontend_requests_total", []string{"frontend", "tcp"}, 2},
		{"waage_frontend_bytes_in_total", []string{"frontend", "tcp"}, 2 * tcpIn},
		{"waage_frontend_bytes_out_total", []string{"frontend", "tcp"}, 2 * tcpOut},
		{"waage_server_requests_total", []string{"backend", "b", "server", "live"}, 15},
		{"waage_server_requests_total", []string{"backend", "b", "server", "dead"}, 0},
		{"waage_server_responses_total", []string{"backend", "b", "server", "live", "code", "2xx"}, 12},
		{"waage_server_responses_total", []string{"backend", "b", "server", "live", "code", "5xx"}, 3},
		{"waage_server_bytes_in_total", []string{"backend", "b", "server", "live"}, 10},
		{"waage_server_bytes_out_total", []string{"backend", "b", "server", "live"}, float64(httpOut)},
		{"waage_server_request_duration_seconds", []string{"backend", "b", "server", "live"}, 15},
		{"waage_server_up", []string{"backend", "b", "server", "live"}, 1},
		{"waage_server_state", []string{"backend", "b", "server", "live", "state", "ready"}, 1},
		{"waage_server_weight", []string{"backend", "b", "server", "live"}, 1},
		{"waage_server_active_connections", []string{"backend", "b", "server", "live"}, 0},
		{"waage_backend_requests_total", []string{"backend", "b"}, 15},
		{"waage_backend_responses_total", []string{"backend", "b", "code", "2xx"}, 12},
		{"waage_backend_responses_total", []string{"backend", "b", "code", "5xx"}, 3},
		{"waage_backend_request_duration_seconds", []string{"backend", "b"}, 15},
		{"waage_backend_servers", []string{"backend", "b"}, 2},
		{"waage_server_requests_total", []string{"backend", "echo", "server", "e1"}, 2},
		{"waage_server_bytes_in_total", []string{"backend", "echo", "server", "e1"}, 2 * tcpIn},
		{"waage_server_bytes_out_total", []string{"backend", "echo", "server", "e1"}, 2 * tcpOut},
		{"waage_backend_bytes_out_total", []string{"backend", "echo"}, 2 * tcpOut},
	} {
		if got := metricValue(fams, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %g, want %g", c.name, c.labels, got, c.want)
		}
	}
	// Every request that tried the dead server first was retried on the live one.
	connErrs := metricValue(fams, "waage_server_connect_errors_total", "backend", "b", "server", "dead")
	retries := metricValue(fams, "waage_server_retries_total", "backend", "b", "server", "live")
	if connErrs < 1 || retries != connErrs || metricValue(fams, "waage_backend_retries_total", "backend", "b") != retries ||
		metricValue(fams, "waage_backend_connect_errors_total", "backend", "b") != connErrs {
		t.Errorf("connect errors %g on dead, retries %g on live; want equal and > 0", connErrs, retries)
	}
	for _, name := range []string{"waage_build_info", "waage_process_resident_memory_bytes", "waage_process_open_fds", "go_goroutines", "go_memstats_heap_alloc_bytes"} {
		if fams[name] == nil {
			t.Errorf("no %s", name)
		}
	}
	// The histograms' buckets add up to their count, cumulative.
	h := fams["waage_frontend_request_duration_seconds"].GetMetric()[0].GetHistogram()
	var last uint64
	for _, b := range h.GetBucket() {
		if b.GetCumulativeCount() < last {
			t.Errorf("bucket %g: %d after %d", b.GetUpperBound(), b.GetCumulativeCount(), last)
		}
		last = b.GetCumulativeCount()
	}
	if last > h.GetSampleCount() || h.GetSampleSum() <= 0 {
		t.Errorf("histogram: last bucket %d of %d, sum %g", last, h.GetSampleCount(), h.GetSampleSum())
	}
}

// TestAdminDeny: POST /api/deny blocks a source on a running http frontend at once (its new
// connections are closed without a response, other sources are served), GET lists it, DELETE
// lifts it, a ttl ends it by itself; changes need the token and bad input is a 400. /metrics
// counts the refusals, and GET /api/top-sources shows the sources with their rates once the
// sampler ran.
func TestAdminDeny(t *testing.T) {
	t.Parallel()
	bs := startDemo(t, "a")
	rt := startWaage(t, simpleConfig("", "", demoAddrs(bs)...))
	api := startAdminAPI(t, rt, "s3cret", nil)
	addr := feAddr(t, rt, "web")
	served := func(src string) bool {
		t.Helper()
		rc, err := dialFromE(src, addr)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.c.Close()
		resp, _, err := rc.do(get("/", "app.test"))
		return err == nil && resp.StatusCode == 200
	}
	refused := func(src string) bool {
		t.Helper()
		rc, err := dialFromE(src, addr)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.c.Close()
		return refusedAtOnce(rc)
	}
	type denyEntry struct {
		CIDR             string     `json:"cidr"`
		Expires          *time.Time `json:"expires"`
		RemainingSeconds *int64     `json:"remaining_seconds"`
	}
	listed := func() []string {
		var out struct {
			Denied []denyEntry `json:"denied"`
		}
		api.json("GET", "/api/deny", "", "", 200, &out)
		var cidrs []string
		for _, d := range out.Denied {
			cidrs = append(cidrs, d.CIDR)
		}
		return cidrs
	}

	if !served("127.0.0.71") || !served("127.0.0.72") {
		t.Fatal("not served before any block")
	}
	if status, body := api.do("POST", "/api/deny", "", `{"cidr": "127.0.0.71"}`); status != 401 || !bytes.Contains(body, []byte(`"error"`)) {
		t.Errorf("deny without the token: %d %s", status, body)
	}
	if status, _ := api.do("POST", "/api/deny", "wrong", `{"cidr": "127.0.0.71"}`); status != 401 {
		t.Errorf("deny with a wrong token: %d", status)
	}
	if !served("127.0.0.71") {
		t.Fatal("a refused change blocked the source")
	}
	var e denyEntry
	api.json("POST", "/api/deny", "s3cret", `{"cidr": "127.0.0.71"}`, 200, &e)
	if e.CIDR != "127.0.0.71/32" || e.Expires != nil || e.RemainingSeconds != nil {
		t.Errorf("deny answer: %+v", e)
	}
	if !refused("127.0.0.71") || !refused("127.0.0.71") {
		t.Fatal("a connection from the denied source was not closed at once")
	}
	if !served("127.0.0.72") {
		t.Fatal("another source is not served while 127.0.0.71 is denied")
	}
	if got := listed(); len(got) != 1 || got[0] != "127.0.0.71/32" {
		t.Errorf("GET /api/deny: %v", got)
	}
	fams := scrape(t, api)
	if got := metricValue(fams, "waage_frontend_refused_total", "frontend", "web", "reason", "deny"); got != 2 {
		t.Errorf(`waage_frontend_refused_total{reason="deny"} = %g, want 2`, got)
	}
	if got := metricValue(fams, "waage_frontend_refused_total", "frontend", "web", "reason", "rate"); got != 0 {
		t.Errorf(`waage_frontend_refused_total{reason="rate"} = %g, want 0`, got)
	}
	if got := metricValue(fams, "waage_denied_sources"); got != 1 {
		t.Errorf("waage_denied_sources = %g, want 1", got)
	}

	for _, c := range []struct{ method, path, body string }{
		{"POST", "/api/deny", `{"cidr": "127.0.0.300"}`},
		{"POST", "/api/deny", `{"cidr": "127.0.0.73", "ttl": "forever"}`},
		{"POST", "/api/deny", `{"ttl": "10m"}`},
		{"DELETE", "/api/deny?cidr=nope", ""},
	} {
		status, body := api.do(c.method, c.path, "s3cret", c.body)
		var e struct{ Error string }
		if json.Unmarshal(body, &e); status != 400 || e.Error == "" {
			t.Errorf("%s %s %s: %d %s", c.method, c.path, c.body, status, body)
		}
	}

	if status, body := api.do("DELETE", "/api/deny", "", `{"cidr": "127.0.0.71"}`); status != 401 {
		t.Errorf("undeny without the token: %d %s", status, body)
	}
	api.json("DELETE", "/api/deny", "s3cret", `{"cidr": "127.0.0.71"}`, 200, nil)
	if !served("127.0.0.71") {
		t.Fatal("127.0.0.71 not served after DELETE /api/deny")
	}
	if status, _ := api.do("DELETE", "/api/deny?cidr=127.0.0.71", "s3cret", ""); status != 404 {
		t.Errorf("undeny of a source not denied: %d", status)
	}
	if got := listed(); len(got) != 0 {
		t.Errorf("GET /api/deny after the block was lifted: %v", got)
	}

	// A block with a ttl ends by itself; a prefix covers its addresses.
	api.json("POST", "/api/deny", "s3cret", `{"cidr": "127.0.0.72/31", "ttl": "500ms"}`, 200, &e)
	if e.CIDR != "127.0.0.72/31" || e.RemainingSeconds == nil || *e.RemainingSeconds != 1 {
		t.Errorf("deny with a ttl: %+v", e)
	}
	if !refused("127.0.0.73") {
		t.Fatal("127.0.0.73 in the denied 127.0.0.72/31 was served")
	}
	waitFor(t, 5*time.Second, "the block to expire", func() bool { return len(listed()) == 0 })
	if !served("127.0.0.72") || !served("127.0.0.73") {
		t.Fatal("not served after the ttl")
	}

	// The busiest sources: 127.0.0.74 opens a connection for each request, so both of its rates
	// show once the 2 s sampler has run.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for end := time.Now().Add(15 * time.Second); time.Now().Before(end); {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if rc, err := dialFromE("127.0.0.74", addr); err == nil {
				rc.do(get("/", "app.test"))
				rc.c.Close()
			}
		}
	}()
	defer func() {
		close(stop)
		<-done
	}()
	var busiest adminapi.TopSource
	waitFor(t, 10*time.Second, "127.0.0.74 with its rates in GET /api/top-sources", func() bool {
		var out struct {
			Sources []adminapi.TopSource `json:"sources"`
		}
		api.json("GET", "/api/top-sources?limit=10", "", "", 200, &out)
		for _, s := range out.Sources {
			if s.Source == "127.0.0.74" && s.RequestRate > 0 && s.ConnectionRate > 0 {
				busiest = s
				return true
			}
		}
		return false
	})
	if busiest.Frontend != "web" || busiest.Requests < 1 || busiest.Connections < 1 || busiest.Denied || busiest.RequestRate > 100 {
		t.Errorf("127.0.0.74: %+v", busiest)
	}
	var top struct {
		Sources []adminapi.TopSource `json:"sources"`
	}
	api.json("GET", "/api/top-sources", "", "", 200, &top)
	seen := map[string]adminapi.TopSource{}
	for _, s := range top.Sources {
		seen[s.Source] = s
	}
	// 127.0.0.71 made three requests on three connections, two more were refused by the deny
	// list (not counted per source: the source table only sees admitted connections).
	if s, ok := seen["127.0.0.71"]; !ok || s.Requests != 3 || s.Connections != 3 || s.Refused != 0 || s.OpenConnections != 0 {
		t.Errorf("127.0.0.71: %+v (listed %v)\n%+v", s, ok, top.Sources)
	}
	if top.Sources[0].Source != "127.0.0.74" {
		t.Errorf("the busiest source is %s, want 127.0.0.74: %+v", top.Sources[0].Source, top.Sources)
	}
	api.json("POST", "/api/deny", "s3cret", `{"cidr": "127.0.0.74", "ttl": "1m"}`, 200, nil)
	api.json("GET", "/api/top-sources?limit=1", "", "", 200, &top)
	if len(top.Sources) != 1 || !top.Sources[0].Denied {
		t.Errorf("top sources after denying 127.0.0.74: %+v", top.Sources)
	}
	if status, _ := api.do("GET", "/api/top-sources?limit=1001", "", ""); status != 400 {
		t.Errorf("limit=1001: %d", status)
	}
}

// adminVRRPInner names the environment variable that makes TestAdminVRRP the run inside the
// network namespace.
const adminVRRPInner = "WAAGE_TEST_ADMIN_VRRP_NETNS"

// TestAdminVRRP runs a VRRP instance on a real interface and reads it through GET /api/vrrp and
// /metrics: it becomes master, and its effective priority drops while its tracked backend has no
// usable server. The interface is a veth inside a network namespace the test makes (the host's
// interfaces are never touched): the test binary runs this test again inside it with `ip netns
// exec`, and deletes the namespace at the end. It needs root and the ip tool, and skips without
// them.
func TestAdminVRRP(t *testing.T) {
	if os.Getenv(adminVRRPInner) != "" {
		adminVRRPInNetns(t)
		return
	}
	if testing.Short() {
		t.Skip("skipped in -short mode: network-namespace test")
	}
	if os.Geteuid() != 0 {
		t.Skip("skipped: a VRRP instance needs an interface of its own, in a network namespace, which needs root")
	}
	ipTool, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("skipped: the ip tool (iproute2) is not installed")
	}
	ns := fmt.Sprintf("wadmin%d", os.Getpid()%100000)
	ip := func(args ...string) error {
		out, err := exec.Command(ipTool, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := ip("netns", "add", ns); err != nil {
		t.Skipf("skipped: cannot make a network namespace: %v", err)
	}
	t.Cleanup(func() {
		if err := ip("netns", "del", ns); err != nil {
			t.Errorf("removing the namespace: %v", err)
		}
	})
	for _, args := range [][]string{
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1"},
		{"-n", ns, "link", "set", "eth0", "up"},
		{"-n", ns, "link", "set", "eth1", "up"},
		{"-n", ns, "addr", "add", "10.97.0.1/24", "dev", "eth0"},
	} {
		if err := ip(args...); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ipTool, "netns", "exec", ns, os.Args[0], "-test.run=^TestAdminVRRP$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), adminVRRPInner+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS: TestAdminVRRP")) {
		t.Fatalf("the test inside the namespace: %v\n%s", err, out)
	}
	t.Logf("inside the namespace %s:\n%s", ns, out)
}

// adminVRRPInNetns is TestAdminVRRP inside the namespace: eth0 (10.97.0.1/24) is a veth whose peer
// eth1 has nothing behind it, so the instance hears no other router.
func adminVRRPInNetns(t *testing.T) {
	bs := startDemo(t, "a")
	rt := startWaage(t, simpleConfig("", "", demoAddrs(bs)...)+`vrrp:
  - name: lab-vip
    interface: eth0
    virtual_router_id: 77
    priority: 200
    advert_interval: 100ms
    virtual_ips: ["10.97.0.100/24"]
    track_backends: [{backend: b, weight: 50}]
    garp_delay: 0s
`)
	api := startAdminAPI(t, rt, "t", nil)
	get := func() adminapi.VRRPInstance {
		var out adminapi.VRRP
		api.json("GET", "/api/vrrp", "", "", 200, &out)
		if len(out.Instances) != 1 {
			t.Fatalf("GET /api/vrrp: %+v", out)
		}
		return out.Instances[0]
	}
	var in adminapi.VRRPInstance
	waitFor(t, 10*time.Second, "the instance to become master", func() bool {
		in = get()
		return in.State == "master"
	})
	if in.Name != "lab-vip" || in.Interface != "eth0" || in.VirtualRouterID != 77 || in.Priority != 200 || in.EffectivePriority != 200 ||
		in.MasterAddress == nil || *in.MasterAddress != "10.97.0.1" || len(in.VirtualIPs) != 1 || in.VirtualIPs[0] != "10.97.0.100/24" ||
		in.Transitions < 1 || in.LastTransition == nil || time.Since(*in.LastTransition) > 10*time.Second || in.LastReason == "" ||
		len(in.Trackers) != 1 || in.Trackers[0].Name != "b" || in.Trackers[0].Failing || in.LastError != "" {
		t.Errorf("master: %+v", in)
	}
	fams := scrape(t, api)
	for state, want := range map[string]float64{"master": 1, "backup": 0, "initialize": 0, "fault": 0} {
		if got := metricValue(fams, "waage_vrrp_state", "vrrp_instance", "lab-vip", "state", state); got != want {
			t.Errorf(`waage_vrrp_state{state=%q} = %g, want %g`, state, got, want)
		}
	}
	if got := metricValue(fams, "waage_vrrp_priority", "vrrp_instance", "lab-vip"); got != 200 {
		t.Errorf("waage_vrrp_priority = %g, want 200", got)
	}
	if got := metricValue(fams, "waage_vrrp_transitions_total", "vrrp_instance", "lab-vip"); got != float64(in.Transitions) {
		t.Errorf("waage_vrrp_transitions_total = %g, want %d", got, in.Transitions)
	}

	// Without a usable server the tracker fails: the advertised priority drops by its weight.
	api.json("POST", "/api/backends/b/servers/s1/maintenance", "t", "", 200, nil)
	waitFor(t, 5*time.Second, "the effective priority to drop to 150", func() bool {
		in = get()
		return in.EffectivePriority == 150
	})
	if in.Priority != 200 || !in.Trackers[0].Failing || in.State != "master" {
		t.Errorf("with the tracker failing: %+v", in)
	}
	if got := metricValue(scrape(t, api), "waage_vrrp_priority", "vrrp_instance", "lab-vip"); got != 150 {
		t.Errorf("waage_vrrp_priority with the tracker failing = %g, want 150", got)
	}
}
