package kube

import (
	"bytes"
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/waage/waage/internal/config"
)

// lbService makes a Service of type LoadBalancer of waage's class, age seconds old, with the
// ports ("80", "53/udp"); set changes it further.
func lbService(ns, name string, age int, set func(*corev1.Service), ports ...string) *corev1.Service {
	s := &corev1.Service{ObjectMeta: om(ns, name, age), Spec: corev1.ServiceSpec{
		Type:              corev1.ServiceTypeLoadBalancer,
		LoadBalancerClass: ptr(LoadBalancerClass),
	}}
	for _, p := range ports {
		port, proto := splitPort(p)
		s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: portName(port, proto), Port: port, Protocol: proto})
	}
	if set != nil {
		set(s)
	}
	return s
}

// portName names a Service port as the API server would accept: "tcp-80", "udp-53".
func portName(port int32, proto corev1.Protocol) string {
	return strings.ToLower(string(proto)) + "-" + strconv.Itoa(int(port))
}

func splitPort(p string) (int32, corev1.Protocol) {
	proto := corev1.ProtocolTCP
	var n int32
	for i, c := range p {
		if c == '/' {
			if p[i+1:] == "udp" {
				proto = corev1.ProtocolUDP
			} else {
				proto = corev1.Protocol(p[i+1:])
			}
			break
		}
		n = n*10 + int32(c-'0')
	}
	return n, proto
}

func withStatus(ip string) func(*corev1.Service) {
	return func(s *corev1.Service) {
		s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip}}
	}
}

func withLBIP(ip string) func(*corev1.Service) {
	return func(s *corev1.Service) { s.Spec.LoadBalancerIP = ip }
}

func addrsOf(m map[types.NamespacedName]netip.Addr) map[string]string {
	out := map[string]string{}
	for k, a := range m {
		out[k.String()] = a.String()
	}
	return out
}

func TestPoolBounds(t *testing.T) {
	tests := []struct {
		name, cidr  string
		first, last string
		ok          bool
	}{
		{"ipv4 /30 loses network and broadcast", "192.0.2.100/30", "192.0.2.101", "192.0.2.102", true},
		{"ipv4 /29", "10.77.1.0/29", "10.77.1.1", "10.77.1.6", true},
		{"ipv4 /31 keeps both", "192.0.2.4/31", "192.0.2.4", "192.0.2.5", true},
		{"ipv4 /32", "192.0.2.9/32", "192.0.2.9", "192.0.2.9", true},
		{"ipv6 /126 keeps all", "2001:db8::/126", "2001:db8::", "2001:db8::3", true},
		{"ipv4 /24 odd bits", "10.0.0.0/23", "10.0.0.1", "10.0.1.254", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first, last, ok := bounds(netip.MustParsePrefix(tt.cidr))
			if ok != tt.ok || first.String() != tt.first || last.String() != tt.last {
				t.Errorf("bounds(%s) = %s, %s, %v; want %s, %s, %v", tt.cidr, first, last, ok, tt.first, tt.last, tt.ok)
			}
		})
	}
}

func TestAllocate(t *testing.T) {
	p := parsePool([]string{"192.0.2.100/30", "192.0.2.200/32"}) // .101 .102 .200
	tests := []struct {
		name     string
		svcs     []*corev1.Service
		want     map[string]string
		problems []string
	}{
		{
			name: "in order of age, not of the list",
			svcs: []*corev1.Service{lbService("b", "young", 20, nil, "80"), lbService("a", "old", 10, nil, "80")},
			want: map[string]string{"a/old": "192.0.2.101", "b/young": "192.0.2.102"},
		},
		{
			name: "the address in status stays, though an older Service comes",
			svcs: []*corev1.Service{lbService("a", "old", 10, nil, "80"), lbService("b", "young", 20, withStatus("192.0.2.101"), "80")},
			want: map[string]string{"a/old": "192.0.2.102", "b/young": "192.0.2.101"},
		},
		{
			name: "status outside the pool is not reused",
			svcs: []*corev1.Service{lbService("a", "s", 10, withStatus("198.51.100.7"), "80")},
			want: map[string]string{"a/s": "192.0.2.101"},
		},
		{
			name: "the network and broadcast addresses are never given, even from status",
			svcs: []*corev1.Service{lbService("a", "s", 10, withStatus("192.0.2.103"), "80")},
			want: map[string]string{"a/s": "192.0.2.101"},
		},
		{
			name: "two Services with one status address: the older keeps it",
			svcs: []*corev1.Service{lbService("a", "young", 20, withStatus("192.0.2.102"), "80"), lbService("a", "old", 10, withStatus("192.0.2.102"), "80")},
			want: map[string]string{"a/old": "192.0.2.102", "a/young": "192.0.2.101"},
		},
		{
			name: "loadBalancerIP in the pool is honoured before older Services allocate",
			svcs: []*corev1.Service{lbService("a", "old", 10, nil, "80"), lbService("a", "pinned", 20, withLBIP("192.0.2.101"), "80")},
			want: map[string]string{"a/old": "192.0.2.102", "a/pinned": "192.0.2.101"},
		},
		{
			name:     "loadBalancerIP outside the pool gets nothing",
			svcs:     []*corev1.Service{lbService("a", "s", 10, withLBIP("198.51.100.7"), "80")},
			want:     map[string]string{},
			problems: []string{"a/s"},
		},
		{
			name:     "loadBalancerIP held by another Service's status gets nothing",
			svcs:     []*corev1.Service{lbService("a", "holder", 20, withStatus("192.0.2.200"), "80"), lbService("a", "asks", 10, withLBIP("192.0.2.200"), "80")},
			want:     map[string]string{"a/holder": "192.0.2.200"},
			problems: []string{"a/asks"},
		},
		{
			name: "status that differs from loadBalancerIP moves to loadBalancerIP",
			svcs: []*corev1.Service{lbService("a", "s", 10, func(s *corev1.Service) { withStatus("192.0.2.101")(s); withLBIP("192.0.2.200")(s) }, "80")},
			want: map[string]string{"a/s": "192.0.2.200"},
		},
		{
			name: "exhausted: the youngest gets nothing",
			svcs: []*corev1.Service{
				lbService("a", "s1", 1, nil, "80"), lbService("a", "s2", 2, nil, "80"),
				lbService("a", "s3", 3, nil, "80"), lbService("a", "s4", 4, nil, "80"),
			},
			want:     map[string]string{"a/s1": "192.0.2.101", "a/s2": "192.0.2.102", "a/s3": "192.0.2.200"},
			problems: []string{"a/s4"},
		},
		{
			name:     "an IPv6-only Service gets nothing from an IPv4 pool",
			svcs:     []*corev1.Service{lbService("a", "v6", 1, func(s *corev1.Service) { s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol} }, "80")},
			want:     map[string]string{},
			problems: []string{"a/v6"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addrs, problems := allocate(p, tt.svcs)
			if got := addrsOf(addrs); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("addresses = %v, want %v", got, tt.want)
			}
			var got []string
			for k := range problems {
				got = append(got, k.String())
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.problems) {
				t.Errorf("problems = %v, want %v", problems, tt.problems)
			}
			// The same objects in another order give the same addresses: every replica agrees.
			rev := slices.Clone(tt.svcs)
			slices.Reverse(rev)
			if again, _ := allocate(p, rev); !reflect.DeepEqual(addrsOf(again), addrsOf(addrs)) {
				t.Errorf("reversed input: %v, want %v", addrsOf(again), addrsOf(addrs))
			}
		})
	}
}

func TestAllocateIPv6Pool(t *testing.T) {
	p := parsePool([]string{"10.0.0.0/31", "2001:db8::/127"})
	svcs := []*corev1.Service{
		lbService("a", "v6", 1, func(s *corev1.Service) {
			s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}
		}, "80"),
		lbService("a", "any", 2, nil, "80"),
	}
	addrs, _ := allocate(p, svcs)
	want := map[string]string{"a/v6": "2001:db8::", "a/any": "10.0.0.0"}
	if got := addrsOf(addrs); !reflect.DeepEqual(got, want) {
		t.Errorf("addresses = %v, want %v", got, want)
	}
}

// lbEndpoints makes the EndpointSlice of a Service with a TCP port "80" to 8080 and a UDP port
// "53/udp" to 5353.
func lbEndpoints(ns, name string, addrs ...string) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name + "-abc", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{
			{Name: ptr("tcp-80"), Port: ptr(int32(8080)), Protocol: ptr(corev1.ProtocolTCP)},
			{Name: ptr("udp-53"), Port: ptr(int32(5353)), Protocol: ptr(corev1.ProtocolUDP)},
		},
	}
	for _, a := range addrs {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}})
	}
	return es
}

func lbOpts(pool ...string) Options {
	o := opts()
	o.Kubernetes.LoadBalancerPool = pool
	return o
}

func TestTranslateLoadBalancer(t *testing.T) {
	svc := lbService("apps", "dns", 10, func(s *corev1.Service) {
		s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal // ignored
		s.Spec.AllocateLoadBalancerNodePorts = ptr(false)                       // does not matter
		s.Spec.LoadBalancerSourceRanges = []string{"10.0.0.0/8", " 192.168.1.7/24"}
	}, "80", "53/udp", "9/SCTP")
	other := lbService("apps", "theirs", 1, func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr("example.com/lb") }, "80")
	noClass := lbService("apps", "default", 1, func(s *corev1.Service) { s.Spec.LoadBalancerClass = nil }, "80")
	clusterIP := lbService("apps", "internal", 1, func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeClusterIP }, "80")
	res := Translate(Objects{
		Services:       []*corev1.Service{svc, other, noClass, clusterIP},
		EndpointSlices: []*discoveryv1.EndpointSlice{lbEndpoints("apps", "dns", "10.1.0.2", "10.1.0.3")},
	}, lbOpts("192.0.2.100/30"))

	var lbs []config.Frontend
	for _, f := range res.Frontends {
		if f.Mode != "http" {
			lbs = append(lbs, f)
		}
	}
	allow := config.Access{Allow: []string{"10.0.0.0/8", "192.168.1.0/24"}}
	want := []config.Frontend{
		{Name: "kubernetes/svc-apps-dns-80", Mode: "tcp", Listen: []string{"192.0.2.101:80"}, Backend: "apps/dns:80", Freebind: true, Access: allow},
		{Name: "kubernetes/svc-apps-dns-53/udp", Mode: "udp", Listen: []string{"192.0.2.101:53"}, Backend: "apps/dns:53/udp", Freebind: true, Access: allow},
	}
	if !reflect.DeepEqual(lbs, want) {
		t.Errorf("frontends:\n got %+v\nwant %+v", lbs, want)
	}
	backends := map[string]config.Backend{}
	for _, b := range res.Backends {
		backends[b.Name] = b
	}
	for name, port := range map[string]string{"apps/dns:80": "8080", "apps/dns:53/udp": "5353"} {
		b := backends[name]
		if b.Algorithm != "source_ip_hash" {
			t.Errorf("backend %s: algorithm %q, want source_ip_hash (sessionAffinity ClientIP)", name, b.Algorithm)
		}
		var addrs []string
		for _, s := range b.Servers {
			addrs = append(addrs, s.Address)
		}
		if w := []string{"10.1.0.2:" + port, "10.1.0.3:" + port}; !slices.Equal(addrs, w) {
			t.Errorf("backend %s: servers %v, want %v", name, addrs, w)
		}
	}
	st := res.Status.Services
	if len(st) != 1 {
		t.Fatalf("status of %d Services, want only waage's: %v", len(st), st)
	}
	got := st[types.NamespacedName{Namespace: "apps", Name: "dns"}]
	in := got.Status.Ingress
	if len(in) != 1 || in[0].IP != "192.0.2.101" || in[0].IPMode == nil || *in[0].IPMode != corev1.LoadBalancerIPModeVIP {
		t.Errorf("status ingress %+v, want 192.0.2.101 with ipMode VIP", in)
	}
	if got.Problem == "" {
		t.Errorf("no problem reported for the SCTP port")
	}
}

func TestTranslateLoadBalancerExhaustedAndClash(t *testing.T) {
	o := lbOpts("192.0.2.7/32")
	o.Reserved = []string{"0.0.0.0:443"}
	res := Translate(Objects{Services: []*corev1.Service{
		lbService("a", "first", 1, nil, "80", "443"),
		lbService("a", "second", 2, withStatus("192.0.2.99"), "80"),
	}}, o)
	var names []string
	for _, f := range res.Frontends {
		if f.Mode != "http" {
			names = append(names, f.Name)
		}
	}
	if want := []string{"kubernetes/svc-a-first-80"}; !slices.Equal(names, want) {
		t.Errorf("frontends %v, want %v (443 is the file's)", names, want)
	}
	first := res.Status.Services[types.NamespacedName{Namespace: "a", Name: "first"}]
	if len(first.Status.Ingress) != 1 || first.Problem == "" {
		t.Errorf("first: %+v, want an address and a problem for port 443", first)
	}
	second := res.Status.Services[types.NamespacedName{Namespace: "a", Name: "second"}]
	if len(second.Status.Ingress) != 0 || second.Problem == "" {
		t.Errorf("second: %+v, want no address (the status is cleared) and a problem", second)
	}
}

func TestMergeLoadBalancerVIPs(t *testing.T) {
	file := &config.Config{
		VRRP: []config.VRRP{
			{Interface: "eth0", VirtualRouterID: 51, VirtualIPs: []string{"192.0.2.10/24"}},
			{Name: "lb", Interface: "eth1", VirtualRouterID: 52, VirtualIPs: []string{"198.51.100.1/24", "192.0.2.102"}},
		},
		Kubernetes: &config.Kubernetes{VRRPInstance: "lb"},
	}
	res := Translate(Objects{Services: []*corev1.Service{
		lbService("a", "one", 1, nil, "80"), lbService("a", "two", 2, nil, "80"),
	}}, lbOpts("192.0.2.100/30"))
	merged := Merge(file, &res)
	if got, want := merged.VRRP[1].VirtualIPs, []string{"198.51.100.1/24", "192.0.2.102", "192.0.2.101/32"}; !slices.Equal(got, want) {
		t.Errorf("vrrp lb virtual_ips = %v, want %v", got, want)
	}
	if got := merged.VRRP[0].VirtualIPs; !slices.Equal(got, []string{"192.0.2.10/24"}) {
		t.Errorf("the other instance changed: %v", got)
	}
	if got := file.VRRP[1].VirtualIPs; len(got) != 2 {
		t.Errorf("the file's config changed: %v", got)
	}
	// By default name, and without the key nothing moves.
	file.VRRP[1].Name = ""
	file.Kubernetes.VRRPInstance = "eth1-52"
	if got := Merge(file, &res).VRRP[1].VirtualIPs; len(got) != 3 {
		t.Errorf("by default name: %v", got)
	}
	file.Kubernetes.VRRPInstance = ""
	if got := Merge(file, &res).VRRP[1].VirtualIPs; len(got) != 2 {
		t.Errorf("without vrrp_instance: %v", got)
	}
}

// TestExampleLoadBalancer checks that examples/kubernetes/loadbalancer.yaml is a valid Service
// that the example Deployment's pool serves.
func TestExampleLoadBalancer(t *testing.T) {
	var svc corev1.Service
	if err := yaml.UnmarshalStrict([]byte(exampleDocs(t, "loadbalancer.yaml")[0]), &svc); err != nil {
		t.Fatal(err)
	}
	res := Translate(Objects{Services: []*corev1.Service{&svc}}, lbOpts("192.0.2.96/28"))
	var names []string
	for _, f := range res.Frontends {
		if f.Mode != "http" {
			names = append(names, f.Name+" "+f.Listen[0])
		}
	}
	if want := []string{"kubernetes/svc-default-dns-53/udp 192.0.2.97:53", "kubernetes/svc-default-dns-53 192.0.2.97:53"}; !slices.Equal(names, want) {
		t.Errorf("frontends %q, want %q", names, want)
	}
}

// TestLogLoadBalancersOncePerChange: a Service that is not served is logged once, again when the
// reason changes, and once more when it is served again.
func TestLogLoadBalancersOncePerChange(t *testing.T) {
	var buf bytes.Buffer
	p := &Provider{Logger: slog.New(slog.NewTextHandler(&buf, nil))}
	k := types.NamespacedName{Namespace: "a", Name: "s"}
	for _, problem := range []string{"full", "full", "other", "other", "", ""} {
		p.logLoadBalancers(map[types.NamespacedName]ServiceLB{k: {Problem: problem}})
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "reason=full") || !strings.Contains(lines[1], "reason=other") || !strings.Contains(lines[2], `LoadBalancer served"`) {
		t.Errorf("log:\n%s\nwant three lines: full, other, served", buf.String())
	}
}
