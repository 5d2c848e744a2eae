package runtime

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/waage/waage/internal/backend"
	"github.com/waage/waage/internal/config"
	"github.com/waage/waage/internal/l7"
	"github.com/waage/waage/internal/vrrp"
)

func TestVRRPConfig(t *testing.T) {
	cfg, err := config.Parse("t.yaml", []byte(`backends:
  - {name: web, servers: [{address: "127.0.0.1:9000"}]}
vrrp:
  - interface: eth0
    virtual_router_id: 51
    priority: 150
    advert_interval: 200ms
    preempt_delay: 5s
    virtual_ips: ["192.0.2.10/24", 192.0.2.11]
    unicast_peers: [192.0.2.2]
    unicast_src: 192.0.2.1
    track_backends: [{backend: web, weight: 100}]
    track_interfaces: [{interface: eth1}]
    notify: /usr/local/bin/notify
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := vrrpConfig(cfg.VRRP[0])
	if err != nil {
		t.Fatal(err)
	}
	want := vrrp.Config{
		Name: "eth0-51", Interface: "eth0", VRID: 51, Priority: 150, AdvertInterval: 200 * time.Millisecond,
		Preempt: true, PreemptDelay: 5 * time.Second,
		VIPs:         []netip.Prefix{netip.MustParsePrefix("192.0.2.10/24"), netip.MustParsePrefix("192.0.2.11/32")},
		UnicastPeers: []netip.Addr{netip.MustParseAddr("192.0.2.2")}, UnicastSrc: netip.MustParseAddr("192.0.2.1"),
		TrackBackends:   []vrrp.Tracker{{Name: "web", Weight: 100}},
		TrackInterfaces: []vrrp.Tracker{{Name: "eth1", Weight: 254}},
		Notify:          []string{"/usr/local/bin/notify"}, NotifyTimeout: 10 * time.Second,
		GARPRepeat: 3, GARPDelay: 5 * time.Second,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("vrrpConfig:\n got %+v\nwant %+v", got, want)
	}
}

func TestVRRPBackendHealthy(t *testing.T) {
	var v vrrpRuns
	if !v.backendHealthy("web") {
		t.Error("before the first Apply every backend counts as healthy")
	}
	s1, s2 := backend.NewServer("web", "s1", "127.0.0.1:1"), backend.NewServer("web", "s2", "127.0.0.1:2")
	servers := map[string][]*backend.Server{"web": {s1, s2}, "empty": nil}
	v.servers.Store(&servers)
	if !v.backendHealthy("web") {
		t.Error("web with two healthy servers is not healthy")
	}
	s1.SetHealthy(false)
	if !v.backendHealthy("web") {
		t.Error("web with one healthy server is not healthy")
	}
	s2.SetState(backend.Maintenance)
	if v.backendHealthy("web") {
		t.Error("web with one server down and one in maintenance is healthy")
	}
	if v.backendHealthy("empty") || v.backendHealthy("gone") {
		t.Error("a backend without servers, or one that no longer exists, is healthy")
	}
	// apply publishes the new configuration's servers even with no VRRP instance.
	v.apply(&config.Config{}, map[string]*l7.Backend{"api": {Servers: []*backend.Server{backend.NewServer("api", "a", "127.0.0.1:3")}}}, nil)
	if !v.backendHealthy("api") || v.backendHealthy("web") {
		t.Error("apply did not replace the server lists")
	}
	if st := v.status(); len(st) != 0 {
		t.Errorf("status without instances: %+v", st)
	}
}
