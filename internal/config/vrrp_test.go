package config

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestVRRPValid(t *testing.T) {
	const data = `backends:
  - {name: web, servers: [{address: "127.0.0.1:9000"}]}
vrrp:
  - interface: eth0
    virtual_router_id: 51
    virtual_ips: ["192.0.2.10/24", 192.0.2.11]
  - name: inside
    interface: eth1
    virtual_router_id: 52
    priority: 150
    advert_interval: 250ms
    preempt: false
    preempt_delay: 30s
    virtual_ips: ["10.0.0.10/16"]
    unicast_peers: [10.0.0.2, 10.0.0.3]
    unicast_src: 10.0.0.1
    track_backends: [{backend: web, weight: 50}]
    track_interfaces: [{interface: eth0}]
    notify: [/usr/local/bin/vrrp-notify, --quiet]
    notify_timeout: 3s
    garp_repeat: 5
    garp_interval: 10ms
    garp_delay: 0s
`
	cfg, err := Parse("t.yaml", []byte(data), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.VRRP) != 2 {
		t.Fatalf("got %d instances", len(cfg.VRRP))
	}
	no, zero := false, Duration(0)
	want := VRRP{
		Name: "inside", Interface: "eth1", VirtualRouterID: 52, Priority: 150,
		AdvertInterval: Duration(250 * time.Millisecond), Preempt: &no, PreemptDelay: Duration(30 * time.Second),
		VirtualIPs: []string{"10.0.0.10/16"}, UnicastPeers: []string{"10.0.0.2", "10.0.0.3"}, UnicastSrc: "10.0.0.1",
		TrackBackends:   []TrackBackend{{Backend: "web", Weight: 50}},
		TrackInterfaces: []TrackInterface{{Interface: "eth0", Weight: 254}},
		Notify:          StringList{"/usr/local/bin/vrrp-notify", "--quiet"}, NotifyTimeout: Duration(3 * time.Second),
		GARPRepeat: 5, GARPInterval: Duration(10 * time.Millisecond), GARPDelay: &zero,
	}
	if got := cfg.VRRP[1].WithDefaults(); !reflect.DeepEqual(got, want) {
		t.Errorf("instance 1:\n got %+v\nwant %+v", got, want)
	}
	d := cfg.VRRP[0].WithDefaults()
	if d.Name != "eth0-51" || d.Priority != 100 || d.AdvertInterval.D() != time.Second || !d.PreemptEnabled() ||
		d.NotifyTimeout.D() != 10*time.Second || d.GARPRepeat != 3 || d.GARPDelay.D() != 5*time.Second {
		t.Errorf("defaults: %+v", d)
	}
	orig := VRRP{Interface: "eth0", VirtualRouterID: 51, TrackBackends: []TrackBackend{{Backend: "web"}}}
	if orig.WithDefaults(); orig.Preempt != nil || orig.TrackBackends[0].Weight != 0 {
		t.Error("WithDefaults changed the original")
	}
	wantVIPs := []netip.Prefix{netip.MustParsePrefix("192.0.2.10/24"), netip.MustParsePrefix("192.0.2.11/32")}
	if got := d.VIPPrefixes(); !reflect.DeepEqual(got, wantVIPs) {
		t.Errorf("VIPPrefixes = %v, want %v", got, wantVIPs)
	}
}

func TestVRRPErrors(t *testing.T) {
	tests := []struct {
		name string
		data string
		want []string
	}{
		{
			name: "required fields",
			data: "vrrp:\n  - priority: 100\n",
			want: []string{
				"t.yaml:2:5: vrrp[0].interface: is required",
				"t.yaml:2:5: vrrp[0].virtual_router_id: is required (1 to 255, the same on every member of the pair)",
				"t.yaml:2:5: vrrp[0].virtual_ips: at least one virtual IP is required",
			},
		},
		{
			name: "ranges",
			data: "vrrp:\n  - interface: eth0\n    virtual_router_id: 256\n    priority: 0\n    advert_interval: 41s\n    virtual_ips: [192.0.2.1]\n  - interface: eth0\n    virtual_router_id: 2\n    priority: 255\n    advert_interval: 15ms\n    virtual_ips: [192.0.2.2]\n  - interface: eth0\n    virtual_router_id: 3\n    advert_interval: 5ms\n    virtual_ips: [192.0.2.3]\n",
			want: []string{
				"t.yaml:3:24: vrrp[0].virtual_router_id: must be between 1 and 255",
				"t.yaml:4:15: vrrp[0].priority: must be between 1 and 254",
				"t.yaml:5:22: vrrp[0].advert_interval: must be at most 40.95s (the protocol's limit)",
				"t.yaml:9:15: vrrp[1].priority: 255 is reserved for a router that owns the virtual IPs as its own addresses; waage adds them itself, so use 1 to 254",
				"t.yaml:10:22: vrrp[1].advert_interval: must be a multiple of 10ms (VRRPv3 counts in centiseconds)",
				"t.yaml:14:22: vrrp[2].advert_interval: must be at least 10ms",
			},
		},
		{
			name: "addresses",
			data: "vrrp:\n  - interface: eth0\n    virtual_router_id: 1\n    virtual_ips: [\"2001:db8::1/64\", nonsense, 192.0.2.0/24, 224.0.0.1, 192.0.2.5]\n    unicast_src: 192.0.2.1\n  - interface: eth1\n    virtual_router_id: 1\n    virtual_ips: [192.0.2.5/24]\n    unicast_peers: [\"::1\", x]\n",
			want: []string{
				"t.yaml:4:19: vrrp[0].virtual_ips[0]: IPv6 virtual IPs are not supported yet",
				"t.yaml:4:37: vrrp[0].virtual_ips[1]: invalid virtual IP \"nonsense\": want a CIDR such as 192.0.2.10/24 or an address",
				"t.yaml:4:47: vrrp[0].virtual_ips[2]: 192.0.2.0 is the network address of 192.0.2.0/24; give the virtual IP itself, e.g. 192.0.2.1",
				"t.yaml:4:61: vrrp[0].virtual_ips[3]: 224.0.0.1 is not a unicast address",
				"t.yaml:5:18: vrrp[0].unicast_src: only used with unicast_peers",
				"t.yaml:8:19: vrrp[1].virtual_ips[0]: virtual IP 192.0.2.5 is already used by vrrp[0].virtual_ips[4]",
				"t.yaml:9:21: vrrp[1].unicast_peers[0]: invalid peer address \"::1\": only IPv4 is supported",
				"t.yaml:9:28: vrrp[1].unicast_peers[1]: invalid peer address \"x\": want an IPv4 address",
			},
		},
		{
			name: "duplicates and names",
			data: "vrrp:\n  - {interface: eth0, virtual_router_id: 7, virtual_ips: [192.0.2.1]}\n  - {interface: eth0, virtual_router_id: 7, virtual_ips: [192.0.2.2]}\n  - {name: eth0-7, interface: eth1, virtual_router_id: 7, virtual_ips: [192.0.2.3]}\n  - {name: \"bad name\", interface: \"eth0/x\", virtual_router_id: 8, virtual_ips: [192.0.2.4]}\n",
			want: []string{
				"t.yaml:3:42: vrrp[1].virtual_router_id: virtual router 7 on eth0 is already defined by vrrp[0]",
				"t.yaml:4:12: vrrp[2].name: duplicate vrrp instance name \"eth0-7\" (also vrrp[0])",
				"t.yaml:5:12: vrrp[3].name: invalid vrrp instance name \"bad name\": use letters, digits, '_', '.' and '-', starting with a letter or digit",
				"t.yaml:5:35: vrrp[3].interface: invalid interface name \"eth0/x\": at most 15 characters, no '/', ':' or spaces",
			},
		},
		{
			name: "trackers and the rest",
			data: "backends:\n  - {name: web, servers: [{address: \"127.0.0.1:9000\"}]}\nvrrp:\n  - interface: eth0\n    virtual_router_id: 9\n    virtual_ips: [192.0.2.1]\n    track_backends: [{backend: wbe, weight: 0}, {backend: web, weight: 255}, {backend: web}, {weight: 5}]\n    track_interfaces: [{interface: eth1, weight: -1}, {interface: eth1}]\n    notify: [\"\"]\n    notify_timeout: 0s\n    garp_repeat: 0\n    garp_interval: -1s\n    garp_delay: -1s\n    preempt_delay: 2h\n",
			want: []string{
				"t.yaml:7:32: vrrp[0].track_backends[0].backend: backend \"wbe\" is not defined (did you mean \"web\"?)",
				"t.yaml:7:45: vrrp[0].track_backends[0].weight: must be between 1 and 254",
				"t.yaml:7:72: vrrp[0].track_backends[1].weight: must be between 1 and 254",
				"t.yaml:7:88: vrrp[0].track_backends[2].backend: backend \"web\" is already tracked by vrrp[0].track_backends[1]",
				"t.yaml:7:94: vrrp[0].track_backends[3].backend: is required",
				"t.yaml:8:50: vrrp[0].track_interfaces[0].weight: must be between 1 and 254",
				"t.yaml:8:67: vrrp[0].track_interfaces[1].interface: interface \"eth1\" is already tracked by vrrp[0].track_interfaces[0]",
				"t.yaml:9:14: vrrp[0].notify[0]: the program must not be empty",
				"t.yaml:10:21: vrrp[0].notify_timeout: must be greater than 0",
				"t.yaml:11:18: vrrp[0].garp_repeat: must be between 1 and 100",
				"t.yaml:12:20: vrrp[0].garp_interval: must not be negative",
				"t.yaml:13:17: vrrp[0].garp_delay: must not be negative (0s turns the second round off)",
				"t.yaml:14:20: vrrp[0].preempt_delay: must be at most 1h0m0s",
			},
		},
		{
			name: "unknown key",
			data: "vrrp:\n  - {interface: eth0, virtual_router_id: 1, virtual_ips: [192.0.2.1], advert_int: 1s}\n",
			want: []string{
				"t.yaml:2:71: vrrp[0]: unknown key \"advert_int\" (valid: name, interface, virtual_router_id, priority, advert_interval, preempt, preempt_delay, virtual_ips, unicast_peers, unicast_src, track_backends, track_interfaces, notify, notify_timeout, garp_repeat, garp_interval, garp_delay)",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(tt.data), nil)
			if err == nil {
				t.Fatal("no error")
			}
			got := strings.Split(err.Error(), "\n")
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}
