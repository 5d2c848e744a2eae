package config

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestBGPValid(t *testing.T) {
	const data = `backends:
  - {name: web, servers: [{address: "127.0.0.1:9000"}]}
bgp:
  local_as: 65001
  router_id: 10.250.1.2
  peers:
    - {address: 10.250.1.1, as: 65000, hold_time: 3s, keepalive: 1s}
    - {address: 10.250.3.1, as: 4200000000, port: 1179, passive: true, password: s3cret}
    - {address: 10.250.4.1, as: 65001, hold_time: 4s}
  announce: ["10.250.100.1/32", 10.250.100.2, "198.51.100.0/24"]
  track_backends: [web]
`
	cfg, err := Parse("t.yaml", []byte(data), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := &BGP{
		LocalAS: 65001, RouterID: "10.250.1.2", ListenPort: 179,
		Peers: []BGPPeer{
			{Address: "10.250.1.1", AS: 65000, Port: 179, HoldTime: Duration(3 * time.Second), Keepalive: Duration(time.Second)},
			{Address: "10.250.3.1", AS: 4200000000, Port: 1179, HoldTime: Duration(9 * time.Second), Keepalive: Duration(3 * time.Second), Passive: true, Password: "s3cret"},
			{Address: "10.250.4.1", AS: 65001, Port: 179, HoldTime: Duration(4 * time.Second), Keepalive: Duration(time.Second)},
		},
		Announce:      []string{"10.250.100.1/32", "10.250.100.2", "198.51.100.0/24"},
		TrackBackends: []string{"web"},
	}
	if !reflect.DeepEqual(cfg.BGP, want) {
		t.Errorf("bgp:\n got %+v\nwant %+v", cfg.BGP, want)
	}
	wantPfx := []netip.Prefix{netip.MustParsePrefix("10.250.100.1/32"), netip.MustParsePrefix("10.250.100.2/32"), netip.MustParsePrefix("198.51.100.0/24")}
	if got := cfg.BGP.AnnouncePrefixes(); !reflect.DeepEqual(got, wantPfx) {
		t.Errorf("AnnouncePrefixes = %v, want %v", got, wantPfx)
	}
	// No passive peer: waage does not listen.
	b := BGP{Peers: []BGPPeer{{Address: "10.0.0.1", AS: 1}}}
	if d := b.WithDefaults(); d.ListenPort != 0 || d.Peers[0].HoldTime.D() != 9*time.Second || d.Peers[0].Keepalive.D() != 3*time.Second {
		t.Errorf("defaults: %+v", d)
	}
	if b.Peers[0].Port != 0 {
		t.Error("WithDefaults changed the original")
	}
}

func TestBGPErrors(t *testing.T) {
	tests := []struct {
		name string
		data string
		want []string
	}{
		{
			name: "required fields",
			data: "bgp:\n  listen_port: 179\n",
			want: []string{
				"t.yaml:2:3: bgp.local_as: is required (the balancer's AS number, 1 to 4294967295)",
				"t.yaml:2:3: bgp.router_id: is required (an IPv4 address unique among the router's peers, usually this balancer's own)",
				"t.yaml:2:3: bgp.peers: at least one peer is required",
				"t.yaml:2:3: bgp.announce: at least one prefix is required",
			},
		},
		{
			name: "bad values",
			data: `backends:
  - {name: web, servers: [{address: "127.0.0.1:9000"}]}
bgp:
  local_as: 0
  router_id: fe80::1
  listen_port: 70000
  peers:
    - {address: 10.250.1.1, as: 4294967296, port: 0, hold_time: 0s, keepalive: 500ms}
    - {address: 10.250.1.1, as: 65000, hold_time: 1500ms}
    - {address: "::1", as: 65000, hold_time: 3s, keepalive: 3s}
    - {address: nope, as: 65000, keepalive: 9s}
  announce: ["10.250.100.1/24", "2001:db8::/64", "10.250.100.0/24", "10.250.100.0/24", "224.0.0.1/32", "x"]
  track_backends: [web, wbe, web, ""]
`,
			want: []string{
				"t.yaml:4:13: bgp.local_as: must be between 1 and 4294967295",
				`t.yaml:5:14: bgp.router_id: invalid router ID "fe80::1": want an IPv4 address such as 10.250.1.2`,
				"t.yaml:6:16: bgp.listen_port: must be between 1 and 65535",
				"t.yaml:8:33: bgp.peers[0].as: must be between 1 and 4294967295",
				"t.yaml:8:51: bgp.peers[0].port: must be between 1 and 65535",
				"t.yaml:8:65: bgp.peers[0].hold_time: must be at least 3s: without a hold timer a frozen balancer would keep its route",
				"t.yaml:8:80: bgp.peers[0].keepalive: must be a whole number of seconds (BGP counts in seconds)",
				"t.yaml:9:17: bgp.peers[1].address: peer 10.250.1.1 is already defined by bgp.peers[0]",
				"t.yaml:9:51: bgp.peers[1].hold_time: must be at least 3s: without a hold timer a frozen balancer would keep its route",
				`t.yaml:10:17: bgp.peers[2].address: invalid peer address "::1": want an IPv4 address`,
				"t.yaml:10:61: bgp.peers[2].keepalive: must be shorter than hold_time (3s); a third of it is usual",
				`t.yaml:11:17: bgp.peers[3].address: invalid peer address "nope": want an IPv4 address`,
				"t.yaml:11:45: bgp.peers[3].keepalive: must be shorter than hold_time (9s); a third of it is usual",
				"t.yaml:12:14: bgp.announce[0]: 10.250.100.1/24 has host bits set; announce 10.250.100.0/24, or 10.250.100.1/32 for the address alone",
				"t.yaml:12:33: bgp.announce[1]: IPv6 prefixes are not supported yet",
				"t.yaml:12:69: bgp.announce[3]: prefix 10.250.100.0/24 is already announced by bgp.announce[2]",
				"t.yaml:12:88: bgp.announce[4]: 224.0.0.1/32 is not a unicast prefix",
				`t.yaml:12:104: bgp.announce[5]: invalid prefix "x": want a CIDR such as 10.250.100.1/32 or an address`,
				`t.yaml:13:25: bgp.track_backends[1]: backend "wbe" is not defined (did you mean "web"?)`,
				`t.yaml:13:30: bgp.track_backends[2]: backend "web" is already tracked by bgp.track_backends[0]`,
				"t.yaml:13:35: bgp.track_backends[3]: must not be empty",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(tt.data), nil)
			if err == nil {
				t.Fatal("no error")
			}
			got := strings.Split(strings.TrimSpace(err.Error()), "\n")
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}
