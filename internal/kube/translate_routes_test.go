package kube

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/waage/waage/internal/config"
)

func grpcRoute(name string, age int, hosts []string, rules ...gwv1.GRPCRouteRule) *gwv1.GRPCRoute {
	gr := &gwv1.GRPCRoute{ObjectMeta: om("default", name, age)}
	gr.Spec.ParentRefs = []gwv1.ParentReference{{Name: "gw"}}
	for _, h := range hosts {
		gr.Spec.Hostnames = append(gr.Spec.Hostnames, gwv1.Hostname(h))
	}
	gr.Spec.Rules = rules
	return gr
}

func grpcRef(name string, weight int32) gwv1.GRPCBackendRef {
	return gwv1.GRPCBackendRef{BackendRef: l4Ref(name, 80, weight)}
}

func l4Ref(name string, port, weight int32) gwv1.BackendRef {
	return gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{Name: gwv1.ObjectName(name), Port: ptr(port)}, Weight: ptr(weight)}
}

func method(typ gwv1.GRPCMethodMatchType, svc, m string) gwv1.GRPCRouteMatch {
	mm := &gwv1.GRPCMethodMatch{Type: ptr(typ)}
	if svc != "" {
		mm.Service = ptr(svc)
	}
	if m != "" {
		mm.Method = ptr(m)
	}
	return gwv1.GRPCRouteMatch{Method: mm}
}

func grpcRule(backend string, matches ...gwv1.GRPCRouteMatch) gwv1.GRPCRouteRule {
	return gwv1.GRPCRouteRule{Matches: matches, BackendRefs: []gwv1.GRPCBackendRef{grpcRef(backend, 1)}}
}

func routeOf(t *testing.T, f config.Frontend, name string) config.Route {
	t.Helper()
	for _, r := range f.Routes {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no route %q in %v", name, routeNames(f))
	return config.Route{}
}

func TestGRPCRouteMatches(t *testing.T) {
	tests := []struct {
		name  string
		match gwv1.GRPCRouteMatch
		want  config.Match
	}{
		{"service and method", method(gwv1.GRPCMethodMatchExact, "pkg.Svc", "Get"), config.Match{Path: "/pkg.Svc/Get"}},
		{"service", method(gwv1.GRPCMethodMatchExact, "pkg.Svc", ""), config.Match{PathPrefix: "/pkg.Svc/"}},
		{"method", method(gwv1.GRPCMethodMatchExact, "", "Get.x"), config.Match{PathRegex: `^/[^/]+/Get\.x$`}},
		{"regex", method(gwv1.GRPCMethodMatchRegularExpression, `pkg\..*`, ""), config.Match{PathRegex: `^/(?:pkg\..*)/(?:[^/]+)$`}},
		{"no method", gwv1.GRPCRouteMatch{}, config.Match{PathPrefix: "/"}},
		{"headers", gwv1.GRPCRouteMatch{Headers: []gwv1.GRPCHeaderMatch{
			{Name: "x-a", Value: "1"},
			{Name: "x-b", Value: "v.*", Type: ptr(gwv1.GRPCHeaderMatchRegularExpression)},
		}}, config.Match{PathPrefix: "/", Headers: config.StringMap{{Key: "x-a", Value: "1"}, {Key: "x-b", Value: "~v.*"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs := world()
			objs.GRPCRoutes = []*gwv1.GRPCRoute{grpcRoute("g", 0, nil, grpcRule("a", tt.match))}
			r := Translate(objs, opts())
			f := frontend(t, r, "kubernetes/gateway-80")
			if !f.H2C {
				t.Error("the HTTP frontend of a GRPCRoute does not serve h2c")
			}
			got := routeOf(t, f, "default/g/rule0/match0")
			if !equalMatch(got.Match, tt.want) {
				t.Errorf("match = %+v, want %+v", got.Match, tt.want)
			}
			if got.Backend != "default/a:80/h2c" {
				t.Errorf("backend = %q", got.Backend)
			}
			if b := backendOf(t, r, got.Backend); b.Protocol != "h2c" || len(b.Servers) != 1 {
				t.Errorf("backend = %+v, want protocol h2c and one server", b)
			}
		})
	}
}

func equalMatch(a, b config.Match) bool {
	return a.Path == b.Path && a.PathPrefix == b.PathPrefix && a.PathRegex == b.PathRegex && slices.Equal(a.Headers, b.Headers)
}

// TestGRPCRoutePrecedence follows the GRPCRoute spec: hostname, then service and method over a
// service alone, more header matches, then the older route.
func TestGRPCRoutePrecedence(t *testing.T) {
	objs := world(route("web", 0, nil, rule("a")))
	objs.GRPCRoutes = []*gwv1.GRPCRoute{
		grpcRoute("svc", 1, nil, grpcRule("a", method(gwv1.GRPCMethodMatchExact, "pkg.Svc", ""))),
		grpcRoute("full", 2, nil, grpcRule("b", method(gwv1.GRPCMethodMatchExact, "pkg.Svc", "Get"))),
		grpcRoute("header", 3, nil, grpcRule("b", gwv1.GRPCRouteMatch{
			Method:  &gwv1.GRPCMethodMatch{Service: ptr("pkg.Svc")},
			Headers: []gwv1.GRPCHeaderMatch{{Name: "x-canary", Value: "yes"}},
		})),
		grpcRoute("host", 4, []string{"api.example.com"}, grpcRule("a")),
		grpcRoute("method", 0, nil, grpcRule("a", method(gwv1.GRPCMethodMatchExact, "", "Get"))),
	}
	r := Translate(objs, opts())
	got := routeNames(frontend(t, r, "kubernetes/gateway-80"))
	want := []string{
		"default/host/rule0/match0@api.example.com",
		"default/full/rule0/match0",
		"default/header/rule0/match0",
		"default/svc/rule0/match0",
		"default/method/rule0/match0", // a service counts before a method
		"default/web/rule0/match0",
	}
	if !slices.Equal(got, want) {
		t.Errorf("routes\n got %v\nwant %v", got, want)
	}
	// A Service port used by an HTTPRoute and a GRPCRoute has a backend for each protocol.
	if b := backendOf(t, r, "default/a:80"); b.Protocol != "" {
		t.Errorf("HTTPRoute backend protocol %q", b.Protocol)
	}
	if b := backendOf(t, r, "default/a:80/h2c"); b.Protocol != "h2c" {
		t.Errorf("GRPCRoute backend protocol %q", b.Protocol)
	}
	for _, name := range []string{"web", "svc"} {
		st := r.Status.GRPCRoutes[types.NamespacedName{Namespace: "default", Name: name}]
		if name == "web" {
			st = r.Status.HTTPRoutes[types.NamespacedName{Namespace: "default", Name: name}]
		}
		if len(st) != 1 || condOf(st[0].Conditions, "Accepted").Status != metav1.ConditionTrue {
			t.Errorf("%s: parents %+v", name, st)
		}
	}
	gs := r.Status.Gateways[types.NamespacedName{Namespace: "default", Name: "gw"}]
	if l := gs.Listeners[0]; l.AttachedRoutes != 6 || len(l.SupportedKinds) != 2 || l.SupportedKinds[1].Kind != kindGRPC {
		t.Errorf("listener status %+v, want 6 routes and kinds HTTPRoute, GRPCRoute", l)
	}
}

func TestGRPCRouteFiltersAndWeights(t *testing.T) {
	objs := world()
	rule := gwv1.GRPCRouteRule{
		Filters: []gwv1.GRPCRouteFilter{
			{Type: gwv1.GRPCRouteFilterRequestHeaderModifier, RequestHeaderModifier: &gwv1.HTTPHeaderFilter{Set: []gwv1.HTTPHeader{{Name: "x-a", Value: "1"}}}},
			{Type: gwv1.GRPCRouteFilterResponseHeaderModifier, ResponseHeaderModifier: &gwv1.HTTPHeaderFilter{Remove: []string{"x-b"}}},
		},
		BackendRefs: []gwv1.GRPCBackendRef{grpcRef("a", 1), grpcRef("b", 2)},
	}
	objs.GRPCRoutes = []*gwv1.GRPCRoute{grpcRoute("g", 0, nil, rule)}
	r := Translate(objs, opts())
	rt := frontend(t, r, "kubernetes/gateway-80").Routes[0]
	if len(rt.RequestHeaders.Set) != 1 || len(rt.ResponseHeaders.Remove) != 1 {
		t.Errorf("header ops %+v %+v", rt.RequestHeaders, rt.ResponseHeaders)
	}
	b := backendOf(t, r, "default/g/rule0/grpcroute")
	if rt.Backend != b.Name || b.Protocol != "h2c" || len(b.Servers) != 3 {
		t.Fatalf("backend %+v of %q", b, rt.Backend)
	}
	// a has one server, b two: a gets 1/3 of the calls, each of b's servers 1/3.
	for _, s := range b.Servers {
		if *s.Weight != 1 {
			t.Errorf("server %s weight %d, want 1", s.Name, *s.Weight)
		}
	}

	rule.Filters = []gwv1.GRPCRouteFilter{{Type: gwv1.GRPCRouteFilterRequestMirror}}
	objs.GRPCRoutes = []*gwv1.GRPCRoute{grpcRoute("g", 0, nil, rule)}
	r = Translate(objs, opts())
	st := r.Status.GRPCRoutes[types.NamespacedName{Namespace: "default", Name: "g"}]
	if c := condOf(st[0].Conditions, "Accepted"); c.Status != metav1.ConditionFalse || c.Reason != string(gwv1.RouteReasonUnsupportedValue) {
		t.Errorf("Accepted = %+v, want False UnsupportedValue", c)
	}
}

// TestAppProtocolH2C: an HTTPRoute backend whose Service port says kubernetes.io/h2c speaks h2c.
func TestAppProtocolH2C(t *testing.T) {
	objs := world(route("r", 0, nil, rule("a")))
	objs.Services[0] = objs.Services[0].DeepCopy()
	objs.Services[0].Spec.Ports[0].AppProtocol = ptr(appProtocolH2C)
	r := Translate(objs, opts())
	rt := frontend(t, r, "kubernetes/gateway-80").Routes[0]
	if b := backendOf(t, r, rt.Backend); rt.Backend != "default/a:80/h2c" || b.Protocol != "h2c" {
		t.Errorf("route backend %q: %+v", rt.Backend, b)
	}
	if !frontend(t, r, "kubernetes/gateway-80").H2C {
		t.Error("the frontend does not serve h2c to the clients of an h2c backend")
	}
	if frontend(t, Translate(world(route("r", 0, nil, rule("a"))), opts()), "kubernetes/gateway-80").H2C {
		t.Error("a frontend without h2c backends serves h2c")
	}
}

// l4World is a Gateway with TLS passthrough on 443, TCP on 5432 and UDP on 53 (and TCP 53),
// with Services a and b (TCP port 80) and dns (UDP port 53).
func l4World() Objects {
	objs := world()
	objs.Gateways = []*gwv1.Gateway{gateway(
		gwv1.Listener{Name: "tls", Port: 443, Protocol: gwv1.TLSProtocolType, TLS: &gwv1.ListenerTLSConfig{Mode: ptr(gwv1.TLSModePassthrough)}},
		gwv1.Listener{Name: "tcp", Port: 5432, Protocol: gwv1.TCPProtocolType},
		gwv1.Listener{Name: "dns", Port: 53, Protocol: gwv1.UDPProtocolType},
		gwv1.Listener{Name: "dns-tcp", Port: 53, Protocol: gwv1.TCPProtocolType},
	)}
	dns := &corev1.Service{ObjectMeta: om("default", "dns", 0), Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}}}}
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: "dns-1", Labels: map[string]string{discoveryv1.LabelServiceName: "dns"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("dns"), Port: ptr(int32(5353)), Protocol: ptr(corev1.ProtocolUDP)}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.53"}}},
	}
	objs.Services = append(objs.Services, dns)
	objs.EndpointSlices = append(objs.EndpointSlices, es)
	return objs
}

func tlsRoute(name string, age int, hosts []string, refs ...gwv1.BackendRef) *gwv1.TLSRoute {
	r := &gwv1.TLSRoute{ObjectMeta: om("default", name, age)}
	r.Spec.ParentRefs = []gwv1.ParentReference{{Name: "gw", SectionName: ptr(gwv1.SectionName("tls"))}}
	for _, h := range hosts {
		r.Spec.Hostnames = append(r.Spec.Hostnames, gwv1.Hostname(h))
	}
	r.Spec.Rules = []gwv1.TLSRouteRule{{BackendRefs: refs}}
	return r
}

func TestTLSRouteSNI(t *testing.T) {
	objs := l4World()
	objs.TLSRoutes = []*gwv1.TLSRoute{
		tlsRoute("wild", 0, []string{"*.example.com"}, l4Ref("a", 80, 1)),
		tlsRoute("exact", 1, []string{"db.example.com", "db2.example.com"}, l4Ref("b", 80, 1)),
		tlsRoute("deeper", 2, []string{"*.eu.example.com"}, l4Ref("a", 80, 1), l4Ref("b", 80, 1)),
		tlsRoute("late", 3, []string{"db.example.com"}, l4Ref("a", 80, 1)),
	}
	r := Translate(objs, opts())
	f := frontend(t, r, "kubernetes/gateway-443")
	if f.Mode != "tcp" || f.TLS != nil || f.DefaultBackend != unroutedBackend {
		t.Fatalf("frontend %+v, want tcp passthrough with the unrouted default", f)
	}
	var got []string
	for _, rt := range f.Routes {
		got = append(got, rt.Match.SNI[0]+" "+rt.Backend)
	}
	want := []string{
		"db.example.com default/b:80",
		"db2.example.com default/b:80",
		"*.eu.example.com default/deeper/rule0/tlsroute",
		"*.example.com default/a:80",
	}
	if !slices.Equal(got, want) {
		t.Errorf("sni routes\n got %v\nwant %v", got, want)
	}
	if b := backendOf(t, r, unroutedBackend); len(b.Servers) != 0 {
		t.Errorf("unrouted backend %+v", b)
	}
	st := r.Status.TLSRoutes[types.NamespacedName{Namespace: "default", Name: "exact"}]
	if len(st) != 1 || condOf(st[0].Conditions, "Accepted").Status != metav1.ConditionTrue || condOf(st[0].Conditions, "ResolvedRefs").Status != metav1.ConditionTrue {
		t.Errorf("status %+v", st)
	}
	gs := r.Status.Gateways[types.NamespacedName{Namespace: "default", Name: "gw"}]
	if l := gs.Listeners[0]; l.AttachedRoutes != 4 || len(l.SupportedKinds) != 1 || l.SupportedKinds[0].Kind != kindTLS {
		t.Errorf("tls listener %+v", l)
	}

	// The listener's hostname narrows what the routes get.
	objs.Gateways[0].Spec.Listeners[0].Hostname = ptr(gwv1.Hostname("*.eu.example.com"))
	objs.TLSRoutes = objs.TLSRoutes[:1]
	r = Translate(objs, opts())
	if f := frontend(t, r, "kubernetes/gateway-443"); len(f.Routes) != 1 || f.Routes[0].Match.SNI[0] != "*.eu.example.com" {
		t.Errorf("routes %+v", f.Routes)
	}
}

func TestTLSTerminate(t *testing.T) {
	objs := l4World()
	objs.Secrets = []*corev1.Secret{{ObjectMeta: om("default", "cert", 0), Data: map[string][]byte{"tls.crt": []byte("c"), "tls.key": []byte("k")}}}
	objs.Gateways[0].Spec.Listeners[0].TLS = &gwv1.ListenerTLSConfig{CertificateRefs: []gwv1.SecretObjectReference{{Name: "cert"}}}
	objs.TLSRoutes = []*gwv1.TLSRoute{tlsRoute("r", 0, []string{"db.example.com"}, l4Ref("a", 80, 1))}
	r := Translate(objs, opts())
	f := frontend(t, r, "kubernetes/gateway-443")
	if f.Mode != "tcp" || f.TLS == nil || len(f.TLS.Certificates) != 1 || len(f.Routes) != 1 {
		t.Errorf("frontend %+v, want tcp with TLS offload and one route", f)
	}
}

func TestTCPAndUDPRoutes(t *testing.T) {
	objs := l4World()
	tcp := &gwv1.TCPRoute{ObjectMeta: om("default", "pg", 0)}
	tcp.Spec.ParentRefs = []gwv1.ParentReference{{Name: "gw", SectionName: ptr(gwv1.SectionName("tcp"))}}
	tcp.Spec.Rules = []gwv1.TCPRouteRule{{BackendRefs: []gwv1.BackendRef{l4Ref("a", 80, 1), l4Ref("b", 80, 3), l4Ref("gone", 80, 5)}}}
	second := tcp.DeepCopy()
	second.Name, second.CreationTimestamp = "second", metav1.NewTime(t0.Add(1e9))
	udp := &gwv1.UDPRoute{ObjectMeta: om("default", "dns", 0)}
	udp.Spec.ParentRefs = []gwv1.ParentReference{{Name: "gw", Port: ptr(gwv1.PortNumber(53))}}
	udp.Spec.Rules = []gwv1.UDPRouteRule{{BackendRefs: []gwv1.BackendRef{l4Ref("dns", 53, 1)}}}
	objs.TCPRoutes = []*gwv1.TCPRoute{second, tcp}
	objs.UDPRoutes = []*gwv1.UDPRoute{udp}
	r := Translate(objs, opts())

	f := frontend(t, r, "kubernetes/gateway-5432")
	if f.Mode != "tcp" || f.Backend != "default/pg/rule0/tcproute" || len(f.Routes) != 0 {
		t.Fatalf("tcp frontend %+v", f)
	}
	// a 1, b 3 over two servers; the missing Service gets no share and no 500 server.
	b := backendOf(t, r, f.Backend)
	var weights []int
	for _, s := range b.Servers {
		weights = append(weights, *s.Weight)
	}
	if !slices.Equal(weights, []int{2, 3, 3}) {
		t.Errorf("tcp weights %v (%+v), want [2 3 3]", weights, b.Servers)
	}
	st := r.Status.TCPRoutes[types.NamespacedName{Namespace: "default", Name: "pg"}]
	if c := condOf(st[0].Conditions, "ResolvedRefs"); c.Reason != string(gwv1.RouteReasonBackendNotFound) {
		t.Errorf("pg ResolvedRefs %+v", c)
	}
	// One route per TCP listener: the younger one is not accepted.
	st = r.Status.TCPRoutes[types.NamespacedName{Namespace: "default", Name: "second"}]
	if c := condOf(st[0].Conditions, "Accepted"); c.Status != metav1.ConditionFalse {
		t.Errorf("second Accepted %+v", c)
	}

	// The UDP route names port 53: it attaches to the UDP listener only, not the TCP one.
	f = frontend(t, r, "kubernetes/gateway-53/udp")
	if f.Mode != "udp" || f.Backend != "default/dns:53/udp" {
		t.Errorf("udp frontend %+v", f)
	}
	if b := backendOf(t, r, "default/dns:53/udp"); len(b.Servers) != 1 || b.Servers[0].Address != "10.0.0.53:5353" {
		t.Errorf("udp backend %+v", b)
	}
	if f := frontend(t, r, "kubernetes/gateway-53"); f.Mode != "tcp" || f.Backend != unroutedBackend {
		t.Errorf("tcp 53 frontend %+v", f)
	}
	st = r.Status.UDPRoutes[types.NamespacedName{Namespace: "default", Name: "dns"}]
	if len(st) != 1 || condOf(st[0].Conditions, "Accepted").Status != metav1.ConditionTrue {
		t.Errorf("udp status %+v", st)
	}
	gs := r.Status.Gateways[types.NamespacedName{Namespace: "default", Name: "gw"}]
	attached := map[gwv1.SectionName]int32{}
	for _, l := range gs.Listeners {
		attached[l.Name] = l.AttachedRoutes
	}
	if attached["tcp"] != 1 || attached["dns"] != 1 || attached["dns-tcp"] != 0 {
		t.Errorf("attached routes %v", attached)
	}
	for _, c := range gs.Conditions {
		if c.Status != metav1.ConditionTrue {
			t.Errorf("gateway condition %+v", c)
		}
	}
}

// TestListenerKinds: routes attach only to listeners of their kind, and allowedRoutes.kinds
// that a listener cannot serve make ResolvedRefs False.
func TestListenerKinds(t *testing.T) {
	objs := l4World()
	objs.Gateways[0].Spec.Listeners = append(objs.Gateways[0].Spec.Listeners,
		gwv1.Listener{Name: "web", Port: 80, Protocol: gwv1.HTTPProtocolType, AllowedRoutes: &gwv1.AllowedRoutes{Kinds: []gwv1.RouteGroupKind{{Kind: kindGRPC}, {Kind: kindTCP}}}})
	objs.HTTPRoutes = []*gwv1.HTTPRoute{route("r", 0, nil, rule("a"))}
	r := Translate(objs, opts())
	st := r.Status.HTTPRoutes[types.NamespacedName{Namespace: "default", Name: "r"}]
	if c := condOf(st[0].Conditions, "Accepted"); c.Reason != string(gwv1.RouteReasonNotAllowedByListeners) {
		t.Errorf("HTTPRoute Accepted %+v", c)
	}
	gs := r.Status.Gateways[types.NamespacedName{Namespace: "default", Name: "gw"}]
	web := gs.Listeners[len(gs.Listeners)-1]
	if c := condOf(web.Conditions, "ResolvedRefs"); c.Reason != string(gwv1.ListenerReasonInvalidRouteKinds) {
		t.Errorf("listener ResolvedRefs %+v", c)
	}
	if len(web.SupportedKinds) != 1 || web.SupportedKinds[0].Kind != kindGRPC {
		t.Errorf("supported kinds %+v", web.SupportedKinds)
	}

	// A TLSRoute on a listener that is not TLS: UnsupportedValue, as the TLSRoute spec asks.
	tr := tlsRoute("t", 0, []string{"a.example.com"}, l4Ref("a", 80, 1))
	tr.Spec.ParentRefs[0].SectionName = ptr(gwv1.SectionName("web"))
	objs.TLSRoutes = []*gwv1.TLSRoute{tr}
	r = Translate(objs, opts())
	st = r.Status.TLSRoutes[types.NamespacedName{Namespace: "default", Name: "t"}]
	if c := condOf(st[0].Conditions, "Accepted"); c.Status != metav1.ConditionFalse || c.Reason != string(gwv1.RouteReasonUnsupportedValue) {
		t.Errorf("TLSRoute on an HTTP listener: Accepted %+v", c)
	}
}

func TestNamespaceSelector(t *testing.T) {
	tests := []struct {
		name   string
		labels map[string]string
		reason gwv1.RouteConditionReason
	}{
		{"labels match", map[string]string{"gateway": "shared"}, gwv1.RouteReasonAccepted},
		{"labels differ", map[string]string{"gateway": "other"}, gwv1.RouteReasonNotAllowedByListeners},
		{"no labels", nil, gwv1.RouteReasonNotAllowedByListeners},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := httpListener("http", 80, "")
			l.AllowedRoutes = &gwv1.AllowedRoutes{Namespaces: &gwv1.RouteNamespaces{
				From:     ptr(gwv1.NamespacesFromSelector),
				Selector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "gateway", Operator: metav1.LabelSelectorOpIn, Values: []string{"shared"}}}},
			}}
			hr := route("r", 0, nil, rule("a"))
			hr.Namespace = "team"
			hr.Spec.ParentRefs[0].Namespace = ptr(gwv1.Namespace("default"))
			objs := world(hr)
			objs.Gateways = []*gwv1.Gateway{gateway(l)}
			objs.Namespaces = []*corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: "team", Labels: tt.labels}}}
			r := Translate(objs, opts())
			ps := r.Status.HTTPRoutes[types.NamespacedName{Namespace: "team", Name: "r"}]
			if len(ps) != 1 || ps[0].Conditions[0].Reason != string(tt.reason) {
				t.Errorf("parents %+v, want %s", ps, tt.reason)
			}
		})
	}
}

func TestMergeParents(t *testing.T) {
	const ctrl = "waage.io/gateway-controller"
	other := gwv1.RouteParentStatus{ParentRef: gwv1.ParentReference{Name: "x"}, ControllerName: "other.io/c"}
	want := []gwv1.RouteParentStatus{{ParentRef: gwv1.ParentReference{Name: "gw"}, ControllerName: ctrl,
		Conditions: []metav1.Condition{{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Accepted"}}}}
	got, changed := mergeParents(ctrl, []gwv1.RouteParentStatus{other}, want)
	if !changed || len(got) != 2 || got[0].ControllerName != "other.io/c" || got[1].Conditions[0].LastTransitionTime.IsZero() {
		t.Fatalf("merge = %+v, %v", got, changed)
	}
	if _, changed := mergeParents(ctrl, got, want); changed {
		t.Error("the same status again counts as a change")
	}
	if got, changed := mergeParents(ctrl, nil, nil); changed || got != nil {
		t.Errorf("nothing to write: %+v %v", got, changed)
	}
}
