package admin

import (
	"encoding/json"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/waage/waage/internal/adminapi"
	"github.com/waage/waage/internal/bgp"
	"github.com/waage/waage/internal/config"
)

// bgpSource is a fakeSource with a made-up BGP speaker and a real drain flag.
type bgpSource struct {
	*fakeSource
	mu      sync.Mutex
	st      bgp.Status
	enabled bool
	drained bool
}

func (b *bgpSource) BGPStatus() (bgp.Status, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.st
	st.Drained = b.drained
	return st, b.enabled
}

func (b *bgpSource) DrainNode(on bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	was := b.drained
	b.drained = on
	return was
}

func (b *bgpSource) NodeDrained() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.drained
}

func testBGPStatus() bgp.Status {
	up := time.Now().Add(-time.Minute)
	return bgp.Status{
		LocalAS: 65001, RouterID: netip.MustParseAddr("10.250.1.2"), Announcing: true, Reason: bgp.ReasonServing, Since: up,
		Prefixes: []bgp.PrefixStatus{{Prefix: netip.MustParsePrefix("10.250.100.1/32"), Announced: true}},
		Peers: []bgp.PeerStatus{
			{Address: netip.MustParseAddr("10.250.1.1"), AS: 65000, State: "established", Since: up, Advertised: 1},
			{Address: netip.MustParseAddr("10.250.3.1"), AS: 65000, State: "active", LastError: "hold_timer_expired"},
		},
		Trackers: []bgp.TrackerStatus{{Backend: "web", Healthy: true}},
	}
}

// TestBGPEndpoints: GET /api/bgp shows the speaker; POST /api/node/drain and undrain need the
// token and say whether they changed anything; a Source without BGP answers with none.
func TestBGPEndpoints(t *testing.T) {
	src := &bgpSource{fakeSource: newFakeSource(), st: testBGPStatus(), enabled: true}
	s := newTestServer(t, src, config.Admin{Listen: "127.0.0.1:9900", Token: "tok"}, nil)
	w := do(s, local, "GET", "/api/bgp", "", "")
	var got adminapi.BGP
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &got) != nil {
		t.Fatalf("GET /api/bgp: %d %s", w.Code, w.Body)
	}
	if !got.Enabled || got.LocalAS != 65001 || got.RouterID != "10.250.1.2" || !got.Announcing || got.Reason != "serving" ||
		len(got.Prefixes) != 1 || !got.Prefixes[0].Announced || len(got.Peers) != 2 || got.Peers[0].State != "established" ||
		got.Peers[0].UptimeSeconds < 59 || got.Peers[1].Since != nil || got.Peers[1].LastError != "hold_timer_expired" {
		t.Errorf("GET /api/bgp:\n%s", w.Body)
	}

	if w := do(s, local, "POST", "/api/node/drain", "", ""); w.Code != 401 {
		t.Errorf("drain without the token: %d", w.Code)
	}
	if w := do(s, local, "GET", "/api/node/drain", "tok", ""); w.Code != 405 {
		t.Errorf("GET drain: %d", w.Code)
	}
	if w := do(s, local, "POST", "/api/node/sleep", "tok", ""); w.Code != 404 {
		t.Errorf("unknown action: %d", w.Code)
	}
	for _, c := range []struct{ action, want string }{
		{"drain", `"drained": true,
  "changed": true`},
		{"drain", `"changed": false`},
		{"undrain", `"drained": false,
  "changed": true`},
	} {
		w := do(s, local, "POST", "/api/node/"+c.action, "tok", "")
		if w.Code != 200 || !strings.Contains(w.Body.String(), c.want) {
			t.Errorf("%s: %d %s", c.action, w.Code, w.Body)
		}
	}
	do(s, local, "POST", "/api/node/drain", "tok", "")
	if w := do(s, local, "GET", "/api/node", "", ""); !strings.Contains(w.Body.String(), `"drained": true`) {
		t.Errorf("GET /api/node: %s", w.Body)
	}

	plain := newTestServer(t, newFakeSource(), config.Admin{Listen: "127.0.0.1:9900", Token: "tok"}, nil)
	if w := do(plain, local, "GET", "/api/bgp", "", ""); w.Code != 200 || !strings.Contains(w.Body.String(), `"enabled": false`) {
		t.Errorf("GET /api/bgp without BGP: %d %s", w.Code, w.Body)
	}
	if w := do(plain, local, "POST", "/api/node/drain", "tok", ""); w.Code != 501 {
		t.Errorf("drain without BGP: %d %s", w.Code, w.Body)
	}
}

// TestBGPMetrics: the decision, each prefix and each session as samples.
func TestBGPMetrics(t *testing.T) {
	src := &bgpSource{fakeSource: newFakeSource(), st: testBGPStatus(), enabled: true}
	s := newTestServer(t, src, config.Admin{Listen: "127.0.0.1:9900"}, nil)
	body := do(s, local, "GET", "/metrics", "", "").Body.String()
	for _, want := range []string{
		"waage_bgp_announcing 1",
		"waage_bgp_node_drained 0",
		`waage_bgp_announced{prefix="10.250.100.1/32"} 1`,
		`waage_bgp_peer_up{peer="10.250.1.1"} 1`,
		`waage_bgp_peer_up{peer="10.250.3.1"} 0`,
		`waage_bgp_peer_advertised_routes{peer="10.250.1.1"} 1`,
		`waage_bgp_peer_uptime_seconds{peer="10.250.3.1"} 0`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	src.enabled = false
	if body := do(s, local, "GET", "/metrics", "", "").Body.String(); strings.Contains(body, "waage_bgp_") {
		t.Error("BGP samples without a speaker")
	}
}
