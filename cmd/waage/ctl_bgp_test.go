package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/waage/waage/internal/admin"
	"github.com/waage/waage/internal/adminapi"
	"github.com/waage/waage/internal/bgp"
	"github.com/waage/waage/internal/config"
)

// bgpSpeaker is a made-up BGP speaker for the admin API: a real one needs a router (see
// TestBGPActiveActive).
type bgpSpeaker struct {
	st      bgp.Status
	drained bool
}

func (b *bgpSpeaker) BGPStatus() (bgp.Status, bool) {
	st := b.st
	st.Drained = b.drained
	return st, true
}
func (b *bgpSpeaker) DrainNode(on bool) bool { was := b.drained; b.drained = on; return was }
func (b *bgpSpeaker) NodeDrained() bool      { return b.drained }

// TestCtlBGP: `waage ctl bgp` without and with a speaker, as a table and as JSON, and `waage ctl
// node drain|undrain` against the runtime.
func TestCtlBGP(t *testing.T) {
	in := startCtlInstance(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	serve := func(opts admin.Options) string {
		opts.Source, opts.Logger, opts.Version = in.rt, quiet, "test"
		srv := admin.New(opts)
		if err := srv.Apply(config.Admin{Listen: "127.0.0.1:0", Token: "tok"}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		return srv.Addr().String()
	}

	// The runtime itself: no bgp section, but the node can be drained.
	addr := serve(admin.Options{})
	if code, out, _ := runCtl("-a", addr, "bgp"); code != 0 || out != "BGP is not configured\n" {
		t.Errorf("bgp without a speaker: %d %q", code, out)
	}
	if code, _, errOut := runCtl("-a", addr, "node", "drain"); code != 1 || !strings.Contains(errOut, "401") {
		t.Errorf("node drain without the token: %d %q", code, errOut)
	}
	for _, c := range []struct{ args, want string }{
		{"node drain", "node drained: routes withdrawn; open connections are served on\n"},
		{"node drain", "node was already drained\n"},
		{"bgp", "BGP is not configured; the node is drained\n"},
		{"node undrain", "node undrained: routes announced again while it can serve\n"},
		{"node undrain", "node was not drained\n"},
	} {
		code, out, errOut := runCtl(append([]string{"-a", addr, "-token", "tok"}, strings.Fields(c.args)...)...)
		if code != 0 || out != c.want {
			t.Errorf("%s: %d %q %q, want %q", c.args, code, out, errOut, c.want)
		}
	}
	if in.rt.NodeDrained() {
		t.Error("the runtime is still drained")
	}
	for _, args := range [][]string{{"node"}, {"node", "sleep"}, {"bgp", "x"}} {
		if code, _, errOut := runCtl(append([]string{"-a", addr}, args...)...); code != 2 {
			t.Errorf("%v: %d %q", args, code, errOut)
		}
	}

	up := time.Now().Add(-3 * time.Minute)
	sp := &bgpSpeaker{st: bgp.Status{
		LocalAS: 65001, RouterID: netip.MustParseAddr("10.250.1.2"), Reason: "backend web has no healthy server", Since: time.Now().Add(-12 * time.Second),
		Prefixes: []bgp.PrefixStatus{{Prefix: netip.MustParsePrefix("10.250.100.1/32")}},
		Peers: []bgp.PeerStatus{
			{Address: netip.MustParseAddr("10.250.1.1"), AS: 65000, State: "established", Since: up, Advertised: 0, Received: 2},
			{Address: netip.MustParseAddr("10.250.3.1"), AS: 65002, State: "active", LastError: "hold_timer_expired"},
		},
		Trackers: []bgp.TrackerStatus{{Backend: "web"}},
	}}
	addr = serve(admin.Options{BGP: sp})
	code, out, errOut := runCtl("-a", addr, "bgp")
	if code != 0 {
		t.Fatalf("bgp: %d %q", code, errOut)
	}
	head, table, _ := strings.Cut(out, "\n\n")
	if want := "AS 65001, router ID 10.250.1.2: withdrawn for 12s (backend web has no healthy server)\nprefixes: 10.250.100.1/32 withdrawn\ntracking: web no healthy server"; head != want {
		t.Errorf("bgp head:\n%s\nwant:\n%s", head, want)
	}
	rows := checkTable(t, table, "PEER", "AS", "STATE", "FOR", "RECEIVED", "ADVERTISED", "LAST ERROR")
	if len(rows) != 2 || strings.Join(rows[0], " ") != "10.250.1.1 65000 established 3m0s 2 0 -" ||
		strings.Join(rows[1], " ") != "10.250.3.1 65002 active - 0 0 hold_timer_expired" {
		t.Errorf("bgp peers:\n%s", table)
	}
	code, out, _ = runCtl("-a", addr, "bgp", "-o", "json")
	var js adminapi.BGP
	if err := json.Unmarshal([]byte(out), &js); code != 0 || err != nil || !js.Enabled || js.Announcing || len(js.Peers) != 2 || js.Peers[0].Since == nil {
		t.Errorf("bgp -o json: %d %v\n%s", code, err, out)
	}
}
