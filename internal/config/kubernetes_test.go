package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestKubernetesOnly(t *testing.T) {
	src := `kubernetes:
  kubeconfig: /etc/waage/kubeconfig
  controller_name: waage.io/gateway-controller
  ingress_class: waage
  ingress_listen: {http: ["0.0.0.0:80"], https: ["0.0.0.0:443"]}
  gateway_bind: 0.0.0.0
  status_address: 192.0.2.10
  load_balancer_pool: ["192.0.2.100/30"]
  namespaces: []
`
	cfg, err := Parse("k.yaml", []byte(src), nil)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := &Kubernetes{
		Kubeconfig:       "/etc/waage/kubeconfig",
		ControllerName:   "waage.io/gateway-controller",
		IngressClass:     "waage",
		IngressListen:    IngressListen{HTTP: []string{"0.0.0.0:80"}, HTTPS: []string{"0.0.0.0:443"}},
		GatewayBind:      "0.0.0.0",
		StatusAddress:    "192.0.2.10",
		LoadBalancerPool: []string{"192.0.2.100/30"},
	}
	got := cfg.Kubernetes
	if got != nil && len(got.Namespaces) == 0 {
		got.Namespaces = nil // [] and absent mean the same: all namespaces
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Kubernetes = %+v, want %+v", got, want)
	}
	if _, err := Parse("k.yaml", []byte("kubernetes: {}\n"), nil); err != nil {
		t.Errorf("empty kubernetes section: %v", err)
	}
}

func TestKubernetesDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   Kubernetes
		want Kubernetes
	}{
		{"empty", Kubernetes{}, Kubernetes{ControllerName: DefaultControllerName, IngressClass: "waage", GatewayBind: "0.0.0.0"}},
		{"bind is the status address", Kubernetes{GatewayBind: "10.1.2.3"},
			Kubernetes{ControllerName: DefaultControllerName, IngressClass: "waage", GatewayBind: "10.1.2.3", StatusAddress: "10.1.2.3"}},
		{"explicit kept", Kubernetes{ControllerName: "x.io/y", IngressClass: "c", GatewayBind: "10.1.2.3", StatusAddress: "lb.example.com"},
			Kubernetes{ControllerName: "x.io/y", IngressClass: "c", GatewayBind: "10.1.2.3", StatusAddress: "lb.example.com"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.in.WithDefaults(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("WithDefaults = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestKubernetesErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"controller name", "kubernetes:\n  controller_name: nodomain\n",
			[]string{"k.yaml:2:20: kubernetes.controller_name: invalid controller name"}},
		{"ingress class", "kubernetes:\n  ingress_class: Waage_1\n",
			[]string{"k.yaml:2:18: kubernetes.ingress_class: invalid class name"}},
		{"listen", "kubernetes:\n  ingress_listen: {http: [\"nope\"], https: [\"0.0.0.0:99999\"]}\n",
			[]string{"k.yaml:2:27: kubernetes.ingress_listen.http[0]: invalid address", "k.yaml:2:44: kubernetes.ingress_listen.https[0]: invalid address"}},
		{"listen clashes with a frontend", `frontends:
  - {name: web, listen: ["0.0.0.0:80"], default_backend: b}
backends:
  - {name: b, servers: [{name: s, address: "127.0.0.1:1"}]}
kubernetes:
  ingress_listen: {http: ["0.0.0.0:80"]}
`, []string{`k.yaml:6:27: kubernetes.ingress_listen.http[0]: address "0.0.0.0:80" is already used by frontends[0].listen[0]`}},
		{"gateway bind", "kubernetes:\n  gateway_bind: 0.0.0.0:80\n",
			[]string{"k.yaml:2:17: kubernetes.gateway_bind: invalid address"}},
		{"status address", "kubernetes:\n  status_address: \"not an address\"\n",
			[]string{"k.yaml:2:19: kubernetes.status_address: invalid address"}},
		{"pool", "kubernetes:\n  load_balancer_pool: [192.0.2.0/24, 192.0.2.300/30]\n",
			[]string{"k.yaml:2:38: kubernetes.load_balancer_pool[1]: invalid CIDR"}},
		{"namespaces", "kubernetes:\n  namespaces: [default, Bad, default]\n",
			[]string{"k.yaml:2:25: kubernetes.namespaces[1]: invalid namespace", "k.yaml:2:30: kubernetes.namespaces[2]: duplicate namespace"}},
		{"unknown key", "kubernetes:\n  ingressClass: waage\n",
			[]string{`k.yaml:2:3: kubernetes: unknown key "ingressClass"`}},
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
