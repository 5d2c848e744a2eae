package config

import (
	"strings"
	"testing"
)

func TestLoadBalancerConfig(t *testing.T) {
	src := `
frontends:
  - {name: vip, mode: tcp, listen: ["192.0.2.10:443", "[2001:db8::1]:443"], backend: b, freebind: true}
backends:
  - {name: b, servers: [{name: s, address: "127.0.0.1:1"}]}
vrrp:
  - {interface: eth0, virtual_router_id: 51, virtual_ips: ["192.0.2.10/24"]}
  - {name: lb, interface: eth0, virtual_router_id: 52, virtual_ips: ["192.0.2.11/24"]}
kubernetes:
  load_balancer_pool: ["192.0.2.100/30"]
  vrrp_instance: eth0-51
`
	cfg, err := Parse("k.yaml", []byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Frontends[0].Freebind || cfg.Kubernetes.VRRPInstance != "eth0-51" {
		t.Errorf("freebind %v, vrrp_instance %q", cfg.Frontends[0].Freebind, cfg.Kubernetes.VRRPInstance)
	}
}

func TestLoadBalancerConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"vrrp_instance names no instance", `vrrp:
  - {name: lb, interface: eth0, virtual_router_id: 51, virtual_ips: ["192.0.2.10/24"]}
kubernetes:
  vrrp_instance: lbb
`, []string{`k.yaml:4:18: kubernetes.vrrp_instance: vrrp instance "lbb" is not defined (did you mean "lb"?)`}},
		{"vrrp_instance without vrrp", "kubernetes:\n  vrrp_instance: lb\n",
			[]string{`k.yaml:2:18: kubernetes.vrrp_instance: vrrp instance "lb" is not defined`}},
		{"freebind on a wildcard or a name", `frontends:
  - {name: f, mode: udp, listen: ["0.0.0.0:53", "localhost:54", ":55"], backend: b, freebind: true}
backends:
  - {name: b, servers: [{name: s, address: "127.0.0.1:1"}]}
`, []string{
			`k.yaml:2:35: frontends[0].listen[0]: freebind needs an IP address to bind, not "0.0.0.0"`,
			`k.yaml:2:49: frontends[0].listen[1]: freebind needs an IP address to bind, not "localhost"`,
			`k.yaml:2:65: frontends[0].listen[2]: freebind needs an IP address to bind, not ""`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("k.yaml", []byte(tt.src), nil)
			if err == nil {
				t.Fatal("Parse: no error")
			}
			list, ok := err.(ErrorList)
			if !ok || len(list) != len(tt.want) {
				t.Fatalf("errors = %v, want %d: %q", err, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if got := list[i].Error(); !strings.HasPrefix(got, w) {
					t.Errorf("error %d = %q, want prefix %q", i, got, w)
				}
			}
		})
	}
}
