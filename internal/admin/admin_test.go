package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

	"github.com/waage/waage/internal/adminapi"
	"github.com/waage/waage/internal/backend"
	"github.com/waage/waage/internal/config"
	"github.com/waage/waage/internal/guard"
	"github.com/waage/waage/internal/h2srv"
	"github.com/waage/waage/internal/vrrp"
)

// fakeSource is a Source over a registry's servers, for tests of the API's rules. Its deny list
// and guard are the real ones; the busiest sources and VRRP instances are what a test sets.
type fakeSource struct {
	mu       sync.Mutex
	cfg      *config.Config
	reg      *backend.Registry
	backends []Backend
	deny     *guard.DenyList
	guards   map[string]*guard.Guard
	top      []TopSource
	vrrp     []vrrp.Status
}

func newFakeSource() *fakeSource {
	reg := backend.NewRegistry()
	var servers []*backend.Server
	for i, addr := range []string{"127.0.0.1:1", "127.0.0.1:2"} {
		s, _ := reg.Server(backend.Key{Backend: "web", Name: fmt.Sprintf("s%d", i+1), Address: addr})
		s.ApplyConfig(1, backend.Ready)
		servers = append(servers, s)
	}
	cfg := &config.Config{
		Admin: config.Admin{Listen: "127.0.0.1:9900", Token: "hunter2"},
		Frontends: []config.Frontend{{
			Name: "web", Mode: "http", Listen: []string{"127.0.0.1:8080"}, DefaultBackend: "web",
			TLS: &config.FrontendTLS{Certificates: []config.Certificate{{Cert: "c.pem", Key: "/etc/secret/k.pem"}}},
			Routes: []config.Route{{Name: "api", Backend: "web", RequestHeaders: config.HeaderOps{
				Set: config.StringMap{{Key: "Authorization", Value: "Bearer upstream-secret"}, {Key: "X-Env", Value: "prod"}},
			}}},
		}},
		Backends: []config.Backend{{Name: "web", Algorithm: "round_robin", HashKey: "uri",
			TLS: &config.ClientTLS{Cert: "client.pem", Key: "client.key"}}},
	}
	deny := guard.NewDenyList()
	return &fakeSource{cfg: cfg, reg: reg, backends: []Backend{{Name: "web", Mode: "http", Algorithm: "round_robin", Servers: servers}},
		deny: deny, guards: map[string]*guard.Guard{"web": guard.New("web", deny, quiet)}}
}

func (f *fakeSource) Deny(p netip.Prefix, ttl time.Duration) { f.deny.Add(p, ttl, time.Now()) }
func (f *fakeSource) Undeny(p netip.Prefix) bool             { return f.deny.Remove(p, time.Now()) }
func (f *fakeSource) Denied() []guard.DenyEntry              { return f.deny.Entries(time.Now()) }
func (f *fakeSource) Guards() map[string]*guard.Guard        { return f.guards }

func (f *fakeSource) BusiestSources(n int) []TopSource {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.top[:min(n, len(f.top))])
}

func (f *fakeSource) VRRPStatus() []vrrp.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.vrrp)
}

func (f *fakeSource) Config() *config.Config    { return f.cfg }
func (f *fakeSource) Backends() []Backend       { return f.backends }
func (f *fakeSource) Events() *backend.EventLog { return f.reg.Events() }
func (f *fakeSource) Frontends() []Frontend {
	h := backend.HistogramSnapshot{Count: 1}
	return []Frontend{{Name: "web", Mode: "http", Listen: []string{"127.0.0.1:8080"}, Addrs: []string{"127.0.0.1:8080"},
		DefaultBackend: "web", Stats: FrontendStats{Requests: 1, Responses: [6]uint64{0, 0, 1}, Duration: &h}}}
}

func (f *fakeSource) find(b, s string) (*backend.Server, error) {
	for _, be := range f.backends {
		if be.Name != b {
			continue
		}
		for _, srv := range be.Servers {
			if srv.Name == s {
				return srv, nil
			}
		}
		return nil, fmt.Errorf("backend %q: server %q: %w", b, s, ErrNotFound)
	}
	return nil, fmt.Errorf("backend %q: %w", b, ErrNotFound)
}

func (f *fakeSource) SetServerState(b, s string, st backend.State) (*backend.Server, error) {
	srv, err := f.find(b, s)
	if err == nil {
		srv.SetState(st)
	}
	return srv, err
}

func (f *fakeSource) SetServerWeight(b, s string, w int) (*backend.Server, error) {
	srv, err := f.find(b, s)
	if err == nil {
		srv.SetWeight(w)
	}
	return srv, err
}

// newTestServer returns a Server with the settings of admin a; its listener (if any) is on
// loopback whatever a.Listen says, so that the rules for other addresses can be tested here.
func newTestServer(t *testing.T, src Source, a config.Admin, reload func() error) *Server {
	t.Helper()
	s := New(Options{Source: src, Reload: reload, Version: "test", Logger: quiet, Listen: func(string) (net.Listener, error) {
		return net.Listen("tcp", "127.0.0.1:0")
	}})
	if err := s.Apply(a); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// do runs one request through the handler from remote (host:port).
func do(s *Server, remote, method, target, token, body string) *httptest.ResponseRecorder {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r := httptest.NewRequest(method, target, rd)
	r.RemoteAddr = remote
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, r)
	return w
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

const (
	local  = "127.0.0.1:40000"
	local6 = "[::1]:40000"
	remote = "192.0.2.10:40000"
)

// TestAuthRules pins who may read and change what.
func TestAuthRules(t *testing.T) {
	drain := "/api/backends/web/servers/s1/drain"
	tests := []struct {
		name   string
		admin  config.Admin
		from   string
		method string
		target string
		token  string
		want   int
	}{
		{"no token: loopback reads", config.Admin{Listen: "127.0.0.1:9900"}, local, "GET", "/api/backends", "", 200},
		{"no token: IPv6 loopback reads", config.Admin{Listen: "127.0.0.1:9900"}, local6, "GET", "/api/backends", "", 200},
		{"no token: metrics from loopback", config.Admin{Listen: "127.0.0.1:9900"}, local, "GET", "/metrics", "", 200},
		{"no token: dashboard from loopback", config.Admin{Listen: "127.0.0.1:9900"}, local, "GET", "/", "", 200},
		{"no token: read-only", config.Admin{Listen: "127.0.0.1:9900"}, local, "POST", drain, "", 403},
		{"no token: read-only, whatever the token", config.Admin{Listen: "127.0.0.1:9900"}, local, "POST", drain, "x", 403},
		{"no token: reload refused", config.Admin{Listen: "127.0.0.1:9900"}, local, "POST", "/api/reload", "", 403},
		{"no token: others refused", config.Admin{Listen: "127.0.0.1:9900"}, remote, "GET", "/api/backends", "", 403},
		{"no token: others get no dashboard", config.Admin{Listen: "127.0.0.1:9900"}, remote, "GET", "/", "", 403},
		{"no token: others get no metrics", config.Admin{Listen: "127.0.0.1:9900"}, remote, "GET", "/metrics", "", 403},
		{"token: loopback listen reads freely", config.Admin{Listen: "127.0.0.1:9900", Token: "t0k"}, local, "GET", "/api/backends", "", 200},
		{"token: change without it", config.Admin{Listen: "127.0.0.1:9900", Token: "t0k"}, local, "POST", drain, "", 401},
		{"token: change with a wrong one", config.Admin{Listen: "127.0.0.1:9900", Token: "t0k"}, local, "POST", drain, "t0K", 401},
		{"token: change with a longer one", config.Admin{Listen: "127.0.0.1:9900", Token: "t0k"}, local, "POST", drain, "t0kt0k", 401},
		{"token: change with it", config.Admin{Listen: "127.0.0.1:9900", Token: "t0k"}, local, "POST", drain, "t0k", 200},
		{"token: change from elsewhere with it", config.Admin{Listen: "127.0.0.1:9900", Token: "t0k"}, remote, "POST", drain, "t0k", 200},
		{"token, public listen: reads need it", config.Admin{Listen: "0.0.0.0:9900", Token: "t0k"}, remote, "GET", "/api/backends", "", 401},
		{"token, public listen: metrics need it", config.Admin{Listen: "0.0.0.0:9900", Token: "t0k"}, remote, "GET", "/metrics", "", 401},
		{"token, public listen: reads with it", config.Admin{Listen: "0.0.0.0:9900", Token: "t0k"}, remote, "GET", "/api/backends", "t0k", 200},
		{"token, public listen: dashboard files are free", config.Admin{Listen: "0.0.0.0:9900", Token: "t0k"}, remote, "GET", "/app.js", "", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, newFakeSource(), tt.admin, nil)
			w := do(s, tt.from, tt.method, tt.target, tt.token, "")
			if w.Code != tt.want {
				t.Fatalf("%s %s from %s: %d, want %d: %s", tt.method, tt.target, tt.from, w.Code, tt.want, w.Body)
			}
			if w.Code == 401 && !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without WWW-Authenticate: Bearer: %q", w.Header())
			}
			if w.Code >= 400 {
				var e adminapi.Error
				if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error == "" {
					t.Errorf("error answer is not {\"error\": ...}: %q", w.Body)
				}
				if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
					t.Errorf("error Content-Type %q", ct)
				}
			}
		})
	}
}

// TestBearer pins the header parsing.
func TestBearer(t *testing.T) {
	for h, want := range map[string]string{"Bearer abc": "abc", "bearer abc ": "abc", "Basic abc": "", "Bearer": "", "Bearer  ": "", "": ""} {
		r := httptest.NewRequest("GET", "/", nil)
		if h != "" {
			r.Header.Set("Authorization", h)
		}
		if got, _ := bearer(r); got != want {
			t.Errorf("bearer(%q) = %q, want %q", h, got, want)
		}
	}
}

// TestErrors: unknown things are 404, wrong methods 405 with Allow, bad bodies 400; all JSON.
func TestErrors(t *testing.T) {
	s := newTestServer(t, newFakeSource(), config.Admin{Listen: "127.0.0.1:9900", Token: "t"}, nil)
	tests := []struct {
		method, target, body string
		want                 int
		allow                string
		msg                  string
	}{
		{"GET", "/api/nope", "", 404, "", "no such endpoint"},
		{"GET", "/api/backends/nope", "", 404, "", "unknown backend"},
		{"GET", "/api/backends/web/servers/nope", "", 404, "", "no server"},
		{"POST", "/api/backends/nope/servers/s1/drain", "", 404, "", "not found"},
		{"POST", "/api/backends/web/servers/nope/drain", "", 404, "", "not found"},
		{"POST", "/api/backends/web/servers/s1/explode", "", 404, "", "unknown action"},
		{"GET", "/api/backends/web/servers/s1/drain", "", 405, "POST", "not allowed"},
		{"PUT", "/api/backends/web/servers/s1/ready", "", 405, "POST", "not allowed"},
		{"POST", "/api/backends/web/servers/s1/weight", `{"weight":2}`, 405, "PUT", "not allowed"},
		{"POST", "/api/backends", "", 405, "GET, HEAD", "not allowed"},
		{"DELETE", "/api/config", "", 405, "GET, HEAD", "not allowed"},
		{"GET", "/api/reload", "", 405, "POST", "not allowed"},
		{"POST", "/", "", 405, "GET, HEAD", "not allowed"},
		{"GET", "/nope.html", "", 404, "", "no such page"},
		{"PUT", "/api/backends/web/servers/s1/weight", ``, 400, "", "weight"},
		{"PUT", "/api/backends/web/servers/s1/weight", `{}`, 400, "", "missing"},
		{"PUT", "/api/backends/web/servers/s1/weight", `{"weight":-1}`, 400, "", "0 to 1000"},
		{"PUT", "/api/backends/web/servers/s1/weight", `{"weight":1001}`, 400, "", "0 to 1000"},
		{"PUT", "/api/backends/web/servers/s1/weight", `{"weight":1.5}`, 400, "", "integer"},
		{"PUT", "/api/backends/web/servers/s1/weight", `{"weight":"3"}`, 400, "", "weight"},
		{"PUT", "/api/backends/web/servers/s1/weight", `{"weight":3,"x":1}`, 400, "", "unknown field"},
		{"PUT", "/api/backends/web/servers/s1/weight", `{"weight":3}{"weight":4}`, 400, "", "one JSON object"},
		{"PUT", "/api/backends/web/servers/s1/weight", `not json`, 400, "", "weight"},
		{"POST", "/api/reload", "", 501, "", "cannot reload"},
		{"GET", "/api/events?since=x", "", 400, "", "since"},
		{"GET", "/api/config?format=xml", "", 400, "", "format"},
	}
	for _, tt := range tests {
		w := do(s, local, tt.method, tt.target, "t", tt.body)
		if w.Code != tt.want {
			t.Errorf("%s %s %s: %d, want %d: %s", tt.method, tt.target, tt.body, w.Code, tt.want, w.Body)
			continue
		}
		var e adminapi.Error
		if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || !strings.Contains(e.Error, tt.msg) {
			t.Errorf("%s %s: body %q, want an error containing %q", tt.method, tt.target, w.Body, tt.msg)
		}
		if got := w.Header().Get("Allow"); got != tt.allow {
			t.Errorf("%s %s: Allow %q, want %q", tt.method, tt.target, got, tt.allow)
		}
	}
}

// TestChanges: state and weight changes answer the server as it is now.
func TestChanges(t *testing.T) {
	src := newFakeSource()
	s := newTestServer(t, src, config.Admin{Listen: "127.0.0.1:9900", Token: "t"}, nil)
	for _, action := range []string{"drain", "maintenance", "ready"} {
		w := do(s, local, "POST", "/api/backends/web/servers/s2/"+action, "t", "")
		var got adminapi.Server
		if err := json.Unmarshal(w.Body.Bytes(), &got); w.Code != 200 || err != nil || got.State != action || got.Name != "s2" {
			t.Errorf("%s: %d %q", action, w.Code, w.Body)
		}
	}
	w := do(s, local, "PUT", "/api/backends/web/servers/s2/weight", "t", `{"weight": 7}`)
	var got adminapi.Server
	if err := json.Unmarshal(w.Body.Bytes(), &got); w.Code != 200 || err != nil || got.Weight != 7 || got.EffectiveWeight != 7 {
		t.Errorf("weight: %d %q", w.Code, w.Body)
	}
	if src.backends[0].Servers[1].Weight() != 7 {
		t.Error("the weight did not reach the server")
	}
}

// TestReloadEndpoint: 200 when the reload ran, 422 with the reason when refused, 409 while one
// is running.
func TestReloadEndpoint(t *testing.T) {
	var mu sync.Mutex
	result := error(nil)
	block := make(chan struct{})
	entered := make(chan struct{}, 1)
	reload := func() error {
		mu.Lock()
		err := result
		mu.Unlock()
		if err != nil && err.Error() == "block" {
			entered <- struct{}{}
			<-block
			return nil
		}
		return err
	}
	s := newTestServer(t, newFakeSource(), config.Admin{Listen: "127.0.0.1:9900", Token: "t"}, reload)
	if w := do(s, local, "POST", "/api/reload", "t", ""); w.Code != 200 || !strings.Contains(w.Body.String(), `"reloaded": true`) {
		t.Errorf("reload: %d %s", w.Code, w.Body)
	}
	mu.Lock()
	result = errors.New("waage.yaml:3:1: unknown key \"bogus\"")
	mu.Unlock()
	if w := do(s, local, "POST", "/api/reload", "t", ""); w.Code != 422 || !strings.Contains(w.Body.String(), `unknown key \"bogus\"`) {
		t.Errorf("refused reload: %d %s", w.Code, w.Body)
	}
	mu.Lock()
	result = errors.New("block")
	mu.Unlock()
	done := make(chan int)
	go func() { done <- do(s, local, "POST", "/api/reload", "t", "").Code }()
	<-entered
	if w := do(s, local, "POST", "/api/reload", "t", ""); w.Code != 409 {
		t.Errorf("second reload while one runs: %d %s", w.Code, w.Body)
	}
	close(block)
	if code := <-done; code != 200 {
		t.Errorf("the blocked reload: %d", code)
	}
}

// TestConfigRedacted: the running configuration comes with YAML key names and without secrets.
func TestConfigRedacted(t *testing.T) {
	s := newTestServer(t, newFakeSource(), config.Admin{Listen: "127.0.0.1:9900", Token: "t"}, nil)
	for _, format := range []string{"", "?format=yaml"} {
		w := do(s, local, "GET", "/api/config"+format, "", "")
		body := w.Body.String()
		if w.Code != 200 {
			t.Fatalf("%s: %d %s", format, w.Code, body)
		}
		for _, secret := range []string{"hunter2", "/etc/secret/k.pem", "client.key", "upstream-secret"} {
			if strings.Contains(body, secret) {
				t.Errorf("%s: %q is shown:\n%s", format, secret, body)
			}
		}
		for _, kept := range []string{"c.pem", "client.pem", "prod", "127.0.0.1:8080", "uri", Redacted} {
			if !strings.Contains(body, kept) {
				t.Errorf("%s: %q is missing:\n%s", format, kept, body)
			}
		}
	}
	w := do(s, local, "GET", "/api/config", "", "")
	var v struct {
		Admin struct {
			Listen, Token string
		} `json:"admin"`
		Frontends []struct {
			Name           string `json:"name"`
			DefaultBackend string `json:"default_backend"`
		} `json:"frontends"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
	if v.Admin.Listen != "127.0.0.1:9900" || v.Admin.Token != Redacted || len(v.Frontends) != 1 || v.Frontends[0].DefaultBackend != "web" {
		t.Errorf("config JSON: %+v", v)
	}
}

// TestRedactNode: only values that are secrets go; a "key" beside no "cert" is not a key file.
func TestRedactNode(t *testing.T) {
	const doc = `admin: {listen: "x", token: "T1"}
token: kept-outside-admin
frontends:
  - tls: {certificates: [{cert: c.pem, key: K1}]}
    limits: {request_rate: {key: source}}
    routes:
      - request_headers: {set: {Cookie: K2, X-Api-Key: K3, X-Env: prod}, add: {Proxy-Authorization: K4}}
backends:
  - health_check: {headers: {Authorization: K5, Host: h}}
etcd: {password: K6, username: u}
`
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &n); err != nil {
		t.Fatal(err)
	}
	redactNode(&n, "")
	out, err := yaml.Marshal(&n)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"T1", "K1", "K2", "K3", "K4", "K5", "K6"} {
		if strings.Contains(string(out), secret) {
			t.Errorf("%s is shown:\n%s", secret, out)
		}
	}
	for _, kept := range []string{"kept-outside-admin", "key: source", "c.pem", "prod", "Host: h", "username: u"} {
		if !strings.Contains(string(out), kept) {
			t.Errorf("%q is missing:\n%s", kept, out)
		}
	}
}

// h2Source is a fake Source with the HTTP/2 server's counters.
type h2Source struct {
	*fakeSource
	st h2srv.Stats
}

func (s *h2Source) H2Stats() *h2srv.Stats { return &s.st }

// TestMetricsHTTP2: a Source with HTTP/2 counters gets waage_http2_streams_total and a series of
// waage_http2_events_total for every event, zeros included; one without gets neither.
func TestMetricsHTTP2(t *testing.T) {
	src := &h2Source{fakeSource: newFakeSource()}
	src.st.Streams.Add(7)
	src.st.ResetFloods.Add(2)
	src.st.HeadersTooBig.Add(1)
	fams := func(src Source) map[string]*dto.MetricFamily {
		s := newTestServer(t, src, config.Admin{Listen: "127.0.0.1:9900"}, nil)
		w := do(s, local, "GET", "/metrics", "", "")
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(w.Body)
		if err != nil {
			t.Fatal(err)
		}
		return fams
	}
	got := fams(src)
	if v := got["waage_http2_streams_total"].GetMetric()[0].GetCounter().GetValue(); v != 7 {
		t.Errorf("waage_http2_streams_total = %g, want 7", v)
	}
	events := map[string]float64{}
	for _, m := range got["waage_http2_events_total"].GetMetric() {
		events[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
	}
	if len(events) != 12 || events["reset_flood"] != 2 || events["header_too_large"] != 1 || events["ping_timeout"] != 0 {
		t.Errorf("waage_http2_events_total: %v", events)
	}
	if plain := fams(newFakeSource()); plain["waage_http2_streams_total"] != nil || plain["waage_http2_events_total"] != nil {
		t.Error("HTTP/2 series without HTTP/2 counters")
	}
}

// TestMetricsParse: /metrics is valid Prometheus text that expfmt parses, with the counters of the
// servers and frontends.
func TestMetricsParse(t *testing.T) {
	src := newFakeSource()
	s1 := src.backends[0].Servers[0]
	s1.Acquire()
	s1.Release()
	s1.RecordResponse(200, 3, 5, 2*time.Millisecond)
	s1.RecordCheck(nil, time.Millisecond)
	s := newTestServer(t, src, config.Admin{Listen: "127.0.0.1:9900"}, nil)
	w := do(s, local, "GET", "/metrics", "", "")
	if w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(w.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"waage_build_info", "waage_process_cpu_seconds_total", "go_goroutines",
		"waage_frontend_requests_total", "waage_backend_request_duration_seconds", "waage_server_up"} {
		if fams[name] == nil {
			t.Errorf("no %s", name)
		}
	}
	val := func(name string, labels map[string]string) float64 {
		for _, m := range fams[name].GetMetric() {
			ok := true
			for _, lp := range m.GetLabel() {
				if v, want := labels[lp.GetName()]; want && v != lp.GetValue() {
					ok = false
				}
			}
			if ok {
				switch {
				case m.Counter != nil:
					return m.Counter.GetValue()
				case m.Gauge != nil:
					return m.Gauge.GetValue()
				case m.Histogram != nil:
					return float64(m.Histogram.GetSampleCount())
				}
			}
		}
		t.Errorf("%s%v not found", name, labels)
		return -1
	}
	s1l := map[string]string{"backend": "web", "server": "s1"}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"waage_server_requests_total", s1l, 1},
		{"waage_server_responses_total", map[string]string{"backend": "web", "server": "s1", "code": "2xx"}, 1},
		{"waage_server_bytes_in_total", s1l, 3},
		{"waage_server_bytes_out_total", s1l, 5},
		{"waage_server_request_duration_seconds", s1l, 1},
		{"waage_server_health_check_duration_seconds", s1l, 1},
		{"waage_server_health_check_success", s1l, 1},
		{"waage_server_state", map[string]string{"backend": "web", "server": "s1", "state": "ready"}, 1},
		{"waage_server_state", map[string]string{"backend": "web", "server": "s1", "state": "drain"}, 0},
		{"waage_backend_servers", map[string]string{"backend": "web"}, 2},
		{"waage_backend_requests_total", map[string]string{"backend": "web"}, 1},
		{"waage_frontend_responses_total", map[string]string{"frontend": "web", "code": "2xx"}, 1},
	} {
		if got := val(c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %g, want %g", c.name, c.labels, got, c.want)
		}
	}
}

// TestApplyMovesListener: Apply opens, moves and closes the listener; a failed move keeps the old
// one.
func TestApplyMovesListener(t *testing.T) {
	s := New(Options{Source: newFakeSource(), Logger: quiet})
	defer s.Close()
	if err := s.Apply(config.Admin{Listen: "127.0.0.1:0"}); err != nil {
		t.Fatal(err)
	}
	first := s.Addr().String()
	get := func(addr string) error {
		c := &http.Client{Timeout: 5 * time.Second}
		resp, err := c.Get("http://" + addr + "/api/backends")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	if err := get(first); err != nil {
		t.Fatal(err)
	}
	// The same setting keeps the same socket.
	if err := s.Apply(config.Admin{Listen: "127.0.0.1:0", Token: "x"}); err != nil || s.Addr().String() != first {
		t.Fatalf("unchanged listen: %v, %v", err, s.Addr())
	}
	// A taken address is refused; the old listener serves on.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	if err := s.Apply(config.Admin{Listen: taken.Addr().String()}); err == nil {
		t.Fatal("listening on a taken address succeeded")
	}
	if err := get(first); err != nil {
		t.Fatalf("old listener after a failed move: %v", err)
	}
	if err := s.Apply(config.Admin{Listen: "localhost:0"}); err != nil {
		t.Fatal(err)
	}
	second := s.Addr().String()
	if err := get(second); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for get(first) == nil {
		if time.Now().After(deadline) {
			t.Fatal("the old listener still answers")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.Apply(config.Admin{}); err != nil || s.Addr() != nil {
		t.Fatalf("empty listen: %v, %v", err, s.Addr())
	}
}
