package admin

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	dto "github.com/prometheus/client_model/go"

	"github.com/waage/waage/internal/adminapi"
	"github.com/waage/waage/internal/config"
	"github.com/waage/waage/internal/guard"
	"github.com/waage/waage/internal/vrrp"
)

// TestDenyEndpoint: POST /api/deny blocks, GET lists, DELETE lifts (body or query); changes need
// the token; bad input is a 400 with a JSON error.
func TestDenyEndpoint(t *testing.T) {
	src := newFakeSource()
	s := newTestServer(t, src, config.Admin{Listen: "127.0.0.1:9900", Token: "t"}, nil)

	if w := do(s, local, "POST", "/api/deny", "", `{"cidr": "198.51.100.0/24"}`); w.Code != 401 {
		t.Errorf("deny without the token: %d %s", w.Code, w.Body)
	}
	if w := do(s, local, "DELETE", "/api/deny?cidr=198.51.100.0/24", "wrong", ""); w.Code != 401 {
		t.Errorf("undeny with a wrong token: %d %s", w.Code, w.Body)
	}
	if len(src.Denied()) != 0 {
		t.Fatal("a refused change changed the deny list")
	}

	w := do(s, local, "POST", "/api/deny", "t", `{"cidr": "198.51.100.7/24", "ttl": "10m"}`)
	var e adminapi.DenyEntry
	if err := json.Unmarshal(w.Body.Bytes(), &e); w.Code != 200 || err != nil || e.CIDR != "198.51.100.0/24" ||
		e.Expires == nil || e.RemainingSeconds == nil || *e.RemainingSeconds < 599 || *e.RemainingSeconds > 600 ||
		time.Until(*e.Expires) < 9*time.Minute {
		t.Fatalf("deny with a ttl: %d %s", w.Code, w.Body)
	}
	w = do(s, local, "POST", "/api/deny", "t", `{"cidr": "203.0.113.9"}`)
	if err := json.Unmarshal(w.Body.Bytes(), &e); w.Code != 200 || err != nil || e.CIDR != "203.0.113.9/32" || e.Expires != nil || e.RemainingSeconds != nil ||
		!strings.Contains(w.Body.String(), `"expires": null`) {
		t.Fatalf("deny until lifted: %d %s", w.Code, w.Body)
	}
	w = do(s, local, "POST", "/api/deny", "t", `{"cidr": "::ffff:192.0.2.1", "ttl": null}`)
	if err := json.Unmarshal(w.Body.Bytes(), &e); w.Code != 200 || err != nil || e.CIDR != "192.0.2.1/32" {
		t.Fatalf("deny of an IPv4-mapped address: %d %s", w.Code, w.Body)
	}
	w = do(s, local, "POST", "/api/deny", "t", `{"cidr": "2001:db8::1/32", "ttl": ""}`)
	if err := json.Unmarshal(w.Body.Bytes(), &e); w.Code != 200 || err != nil || e.CIDR != "2001:db8::/32" {
		t.Fatalf("deny of an IPv6 prefix: %d %s", w.Code, w.Body)
	}

	var list adminapi.Denied
	w = do(s, local, "GET", "/api/deny", "", "")
	if err := json.Unmarshal(w.Body.Bytes(), &list); w.Code != 200 || err != nil {
		t.Fatalf("list: %d %s", w.Code, w.Body)
	}
	var got []string
	for _, d := range list.Denied {
		got = append(got, d.CIDR)
	}
	// Blocks until lifted first, then the one that lasts longest.
	if strings.Join(got, " ") != "192.0.2.1/32 2001:db8::/32 203.0.113.9/32 198.51.100.0/24" {
		t.Errorf("list: %v\n%s", got, w.Body)
	}

	if w := do(s, local, "DELETE", "/api/deny", "t", `{"cidr": "198.51.100.0/24"}`); w.Code != 200 || !strings.Contains(w.Body.String(), `"lifted": true`) {
		t.Errorf("undeny by body: %d %s", w.Code, w.Body)
	}
	if w := do(s, local, "DELETE", "/api/deny?cidr=203.0.113.9", "t", ""); w.Code != 200 || !strings.Contains(w.Body.String(), `"cidr": "203.0.113.9/32"`) {
		t.Errorf("undeny by query: %d %s", w.Code, w.Body)
	}
	if w := do(s, local, "DELETE", "/api/deny?cidr=203.0.113.9", "t", ""); w.Code != 404 || !strings.Contains(w.Body.String(), "not denied") {
		t.Errorf("undeny of a source not denied: %d %s", w.Code, w.Body)
	}
	if w := do(s, local, "DELETE", "/api/deny?cidr=192.0.2.0/24", "t", ""); w.Code != 404 {
		t.Errorf("undeny of a prefix that only covers a block: %d %s", w.Code, w.Body)
	}
	if n := len(src.Denied()); n != 2 {
		t.Errorf("%d blocks left, want 2", n)
	}

	// A ttl ends the block by itself.
	do(s, local, "POST", "/api/deny", "t", `{"cidr": "10.1.0.0/16", "ttl": "150ms"}`)
	deadline := time.Now().Add(5 * time.Second)
	for strings.Contains(do(s, local, "GET", "/api/deny", "", "").Body.String(), "10.1.0.0/16") {
		if time.Now().After(deadline) {
			t.Fatal("the block with a 150ms ttl is still listed")
		}
		time.Sleep(20 * time.Millisecond)
	}

	for _, c := range []struct {
		method, target, body, msg string
	}{
		{"POST", "/api/deny", ``, `"cidr" is missing`},
		{"POST", "/api/deny", `{}`, `"cidr" is missing`},
		{"POST", "/api/deny", `{"ttl": "10m"}`, `"cidr" is missing`},
		{"POST", "/api/deny", `{"cidr": "bogus"}`, "want an IP address or a CIDR"},
		{"POST", "/api/deny", `{"cidr": "10.0.0.0/33"}`, "want an IP address or a CIDR"},
		{"POST", "/api/deny", `{"cidr": "fe80::1%eth0"}`, "want an IP address or a CIDR"},
		{"POST", "/api/deny", `{"cidr": ""}`, "want an IP address or a CIDR"},
		{"POST", "/api/deny", `{"cidr": 10}`, "want a string"},
		{"POST", "/api/deny", `{"cidr": "10.0.0.1", "ttl": "soon"}`, "ttl: want a duration"},
		{"POST", "/api/deny", `{"cidr": "10.0.0.1", "ttl": 600}`, "ttl: want a duration string"},
		{"POST", "/api/deny", `{"cidr": "10.0.0.1", "ttl": "-1m"}`, "must be above 0"},
		{"POST", "/api/deny", `{"cidr": "10.0.0.1", "ttl": "0s"}`, "must be above 0"},
		{"POST", "/api/deny", `{"cidr": "10.0.0.1", "until": "x"}`, "unknown field"},
		{"POST", "/api/deny", `{"cidr": "10.0.0.1"}{"cidr": "10.0.0.2"}`, "one JSON object"},
		{"POST", "/api/deny", `not json`, "want {"},
		{"DELETE", "/api/deny", ``, "want the block to lift"},
		{"DELETE", "/api/deny", `{"cidr": "10.0.0.1", "ttl": "1m"}`, "no meaning"},
		{"DELETE", "/api/deny?cidr=x", ``, "want an IP address or a CIDR"},
	} {
		w := do(s, local, c.method, c.target, "t", c.body)
		var e adminapi.Error
		if err := json.Unmarshal(w.Body.Bytes(), &e); w.Code != 400 || err != nil || !strings.Contains(e.Error, c.msg) {
			t.Errorf("%s %s %s: %d %s; want 400 with %q", c.method, c.target, c.body, w.Code, w.Body, c.msg)
		}
	}
	if n := len(src.Denied()); n != 2 {
		t.Errorf("bad requests changed the list: %d blocks, want 2", n)
	}
	w = do(s, local, "PUT", "/api/deny", "t", `{"cidr": "10.0.0.1"}`)
	if w.Code != 405 || w.Header().Get("Allow") != "GET, HEAD, POST, DELETE" {
		t.Errorf("PUT /api/deny: %d, Allow %q", w.Code, w.Header().Get("Allow"))
	}

	// Without a token the list is read-only.
	ro := newTestServer(t, src, config.Admin{Listen: "127.0.0.1:9900"}, nil)
	if w := do(ro, local, "POST", "/api/deny", "t", `{"cidr": "10.0.0.1"}`); w.Code != 403 {
		t.Errorf("deny on a read-only API: %d %s", w.Code, w.Body)
	}
	if w := do(ro, local, "GET", "/api/deny", "", ""); w.Code != 200 {
		t.Errorf("list on a read-only API: %d %s", w.Code, w.Body)
	}
}

// TestTopSourcesEndpoint: the busiest sources with their counters and rates, ?limit=N, and
// whether the deny list blocks each.
func TestTopSourcesEndpoint(t *testing.T) {
	src := newFakeSource()
	for i, a := range []string{"192.0.2.1", "::ffff:192.0.2.2", "2001:db8::3"} {
		src.top = append(src.top, TopSource{Frontend: "web", SourceStat: guard.SourceStat{
			Addr: netip.MustParseAddr(a), Open: int64(3 - i), Conns: uint64(10 * (i + 1)), Requests: uint64(100 * (i + 1)),
			Rejected: uint64(i), RequestRate: 12.3456 / float64(i+1), ConnRate: 1.0 / 3,
		}})
	}
	src.Deny(netip.MustParsePrefix("192.0.2.0/31"), time.Minute)
	s := newTestServer(t, src, config.Admin{Listen: "127.0.0.1:9900", Token: "t"}, nil)
	var out adminapi.TopSources
	w := do(s, local, "GET", "/api/top-sources", "", "")
	if err := json.Unmarshal(w.Body.Bytes(), &out); w.Code != 200 || err != nil || len(out.Sources) != 3 {
		t.Fatalf("top sources: %d %s", w.Code, w.Body)
	}
	want := []adminapi.TopSource{
		{Frontend: "web", Source: "192.0.2.1", Denied: true, OpenConnections: 3, Connections: 10, Requests: 100, Refused: 0, RequestRate: 12.35, ConnectionRate: 0.33},
		{Frontend: "web", Source: "192.0.2.2", Denied: false, OpenConnections: 2, Connections: 20, Requests: 200, Refused: 1, RequestRate: 6.17, ConnectionRate: 0.33},
		{Frontend: "web", Source: "2001:db8::3", Denied: false, OpenConnections: 1, Connections: 30, Requests: 300, Refused: 2, RequestRate: 4.12, ConnectionRate: 0.33},
	}
	for i := range want {
		if out.Sources[i] != want[i] {
			t.Errorf("source %d: %+v, want %+v", i, out.Sources[i], want[i])
		}
	}
	for _, k := range []string{`"open_connections"`, `"connections"`, `"requests"`, `"refused"`, `"request_rate"`, `"connection_rate"`, `"source"`, `"frontend"`, `"denied"`} {
		if !strings.Contains(w.Body.String(), k) {
			t.Errorf("no %s in %s", k, w.Body)
		}
	}
	w = do(s, local, "GET", "/api/top-sources?limit=1", "", "")
	if err := json.Unmarshal(w.Body.Bytes(), &out); w.Code != 200 || err != nil || len(out.Sources) != 1 {
		t.Errorf("limit=1: %d %s", w.Code, w.Body)
	}
	if w := do(s, local, "GET", "/api/top-sources?limit=1000", "", ""); w.Code != 200 {
		t.Errorf("limit=1000: %d %s", w.Code, w.Body)
	}
	for _, q := range []string{"0", "-1", "1001", "x", "2.5"} {
		if w := do(s, local, "GET", "/api/top-sources?limit="+q, "", ""); w.Code != 400 || !strings.Contains(w.Body.String(), "1 to 1000") {
			t.Errorf("limit=%s: %d %s", q, w.Code, w.Body)
		}
	}
	src.top = nil
	if w := do(s, local, "GET", "/api/top-sources", "", ""); w.Code != 200 || !strings.Contains(w.Body.String(), `"sources": []`) {
		t.Errorf("no sources: %d %s", w.Code, w.Body)
	}
	if w := do(s, local, "POST", "/api/top-sources", "t", ""); w.Code != 405 {
		t.Errorf("POST /api/top-sources: %d", w.Code)
	}
}

func testVRRPStatus() []vrrp.Status {
	at := time.Date(2026, 11, 26, 2, 23, 51, 0, time.UTC)
	return []vrrp.Status{
		{
			Name: "web-vip", Interface: "eth0", VRID: 51, State: "master", Priority: 150, EffectivePriority: 50,
			AdvertInterval: time.Second, MasterAdvertInterval: time.Second,
			MasterAddr: netip.MustParseAddr("192.0.2.1"), MasterPriority: 50, LocalAddr: netip.MustParseAddr("192.0.2.1"),
			VirtualIPs: []string{"192.0.2.10/24"}, Transitions: 3, LastTransition: at, LastReason: "master 192.0.2.2 silent",
			Trackers:    []vrrp.TrackerStatus{{Kind: "backend", Name: "web", Weight: 100, Failing: true}},
			AdvertsSent: 7, AdvertsReceived: 5, InvalidReceived: 1,
		},
		{Name: "x-9", Interface: "eth1", VRID: 9, State: "initialize", Priority: 100, EffectivePriority: 100, AdvertInterval: 200 * time.Millisecond,
			LastError: "socket: operation not permitted"},
	}
}

// TestVRRPEndpoint: GET /api/vrrp shows every instance; unknown addresses and times are null.
func TestVRRPEndpoint(t *testing.T) {
	src := newFakeSource()
	s := newTestServer(t, src, config.Admin{Listen: "127.0.0.1:9900", Token: "t"}, nil)
	if w := do(s, local, "GET", "/api/vrrp", "", ""); w.Code != 200 || !strings.Contains(w.Body.String(), `"instances": []`) {
		t.Errorf("no instances: %d %s", w.Code, w.Body)
	}
	src.vrrp = testVRRPStatus()
	w := do(s, local, "GET", "/api/vrrp", "", "")
	var out struct {
		Instances []map[string]any `json:"instances"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &out); w.Code != 200 || err != nil || len(out.Instances) != 2 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	a, b := out.Instances[0], out.Instances[1]
	for k, v := range map[string]any{
		"name": "web-vip", "interface": "eth0", "virtual_router_id": 51.0, "state": "master", "priority": 150.0,
		"effective_priority": 50.0, "advert_interval": "1s", "master_advert_interval": "1s", "master_address": "192.0.2.1",
		"master_priority": 50.0, "local_address": "192.0.2.1", "transitions": 3.0, "last_transition": "2026-11-26T02:23:51Z",
		"last_reason": "master 192.0.2.2 silent", "adverts_sent": 7.0, "adverts_received": 5.0, "invalid_received": 1.0,
	} {
		if a[k] != v {
			t.Errorf("web-vip %s: %v, want %v", k, a[k], v)
		}
	}
	if tr, _ := a["trackers"].([]any); len(tr) != 1 || tr[0].(map[string]any)["failing"] != true {
		t.Errorf("web-vip trackers: %v", a["trackers"])
	}
	for _, k := range []string{"master_address", "local_address", "last_transition", "master_advert_interval"} {
		if v, ok := b[k]; !ok || v != nil {
			t.Errorf("x-9 %s: %v (present %v), want null", k, v, ok)
		}
	}
	if b["state"] != "initialize" || b["last_error"] != "socket: operation not permitted" || b["advert_interval"] != "200ms" {
		t.Errorf("x-9: %v", b)
	}
	if _, ok := a["last_error"]; ok {
		t.Errorf("web-vip has a last_error: %v", a)
	}
}

// TestMetricsProtectionAndVRRP: refusals by frontend and reason (every reason, zero included),
// the size of the deny list, and each VRRP instance's state, priority and transitions.
func TestMetricsProtectionAndVRRP(t *testing.T) {
	src := newFakeSource()
	deny := src.deny
	src.guards["api"] = guard.New("api", deny, quiet)
	src.Deny(netip.MustParsePrefix("192.0.2.0/24"), 0)
	src.Deny(netip.MustParsePrefix("198.51.100.7/32"), time.Hour)
	now := time.Now()
	for range 3 {
		src.guards["web"].Allowed(netip.MustParseAddr("192.0.2.9"), now)
	}
	src.guards["api"].Refuse(guard.Rate, netip.MustParseAddr("10.0.0.1"), now)
	src.vrrp = testVRRPStatus()
	s := newTestServer(t, src, config.Admin{Listen: "127.0.0.1:9900"}, nil)
	w := do(s, local, "GET", "/metrics", "", "")
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(w.Body)
	if w.Code != 200 || err != nil {
		t.Fatalf("%d %v", w.Code, err)
	}
	sample := func(name string, labels ...string) *dto.Metric {
		t.Helper()
	next:
		for _, m := range fams[name].GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			if len(have) != len(labels)/2 {
				continue
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue next
				}
			}
			return m
		}
		t.Errorf("no %s%v", name, labels)
		return &dto.Metric{}
	}
	refused := fams["waage_frontend_refused_total"]
	if refused.GetType() != dto.MetricType_COUNTER || len(refused.GetMetric()) != 2*len(guard.Reasons()) {
		t.Errorf("waage_frontend_refused_total: %v", refused)
	}
	for _, fe := range []string{"web", "api"} {
		for _, r := range guard.Reasons() {
			want := 0.0
			if fe == "web" && r == guard.Deny {
				want = 3
			}
			if fe == "api" && r == guard.Rate {
				want = 1
			}
			if got := sample("waage_frontend_refused_total", "frontend", fe, "reason", r.String()).GetCounter().GetValue(); got != want {
				t.Errorf("refused{%s,%s} = %g, want %g", fe, r, got, want)
			}
		}
	}
	if got := sample("waage_denied_sources").GetGauge().GetValue(); got != 2 {
		t.Errorf("waage_denied_sources = %g, want 2", got)
	}
	for _, c := range []struct {
		labels []string
		want   float64
	}{
		{[]string{"vrrp_instance", "web-vip", "state", "master"}, 1},
		{[]string{"vrrp_instance", "web-vip", "state", "backup"}, 0},
		{[]string{"vrrp_instance", "web-vip", "state", "initialize"}, 0},
		{[]string{"vrrp_instance", "x-9", "state", "initialize"}, 1},
		{[]string{"vrrp_instance", "x-9", "state", "master"}, 0},
	} {
		if got := sample("waage_vrrp_state", c.labels...).GetGauge().GetValue(); got != c.want {
			t.Errorf("waage_vrrp_state%v = %g, want %g", c.labels, got, c.want)
		}
	}
	if got := sample("waage_vrrp_priority", "vrrp_instance", "web-vip").GetGauge().GetValue(); got != 50 {
		t.Errorf("waage_vrrp_priority = %g, want the effective 50", got)
	}
	if got := sample("waage_vrrp_transitions_total", "vrrp_instance", "web-vip").GetCounter().GetValue(); got != 3 {
		t.Errorf("waage_vrrp_transitions_total = %g, want 3", got)
	}

	// Without VRRP instances there are no VRRP series.
	src.vrrp = nil
	w = do(s, local, "GET", "/metrics", "", "")
	if strings.Contains(w.Body.String(), "waage_vrrp_") {
		t.Errorf("VRRP series without instances:\n%s", w.Body)
	}
}
