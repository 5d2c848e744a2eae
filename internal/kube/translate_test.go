package kube

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	netv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/waage/waage/internal/config"
)

func ptr[T any](v T) *T { return &v }

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func om(ns, name string, age int) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: ns, Name: name, Generation: 1, CreationTimestamp: metav1.NewTime(t0.Add(time.Duration(age) * time.Second))}
}

func opts() Options {
	return Options{
		Kubernetes:      config.Kubernetes{IngressListen: config.IngressListen{HTTP: []string{"127.0.0.1:8080"}}}.WithDefaults(),
		NotFoundAddress: "127.0.0.1:1",
		CertDir:         "/certs",
	}
}

func class() *gwv1.GatewayClass {
	return &gwv1.GatewayClass{ObjectMeta: om("", "waage", 0), Spec: gwv1.GatewayClassSpec{ControllerName: config.DefaultControllerName}}
}

func gateway(listeners ...gwv1.Listener) *gwv1.Gateway {
	return &gwv1.Gateway{ObjectMeta: om("default", "gw", 0), Spec: gwv1.GatewaySpec{GatewayClassName: "waage", Listeners: listeners}}
}

func httpListener(name string, port int32, host string) gwv1.Listener {
	l := gwv1.Listener{Name: gwv1.SectionName(name), Port: port, Protocol: gwv1.HTTPProtocolType}
	if host != "" {
		l.Hostname = ptr(gwv1.Hostname(host))
	}
	return l
}

// service makes a Service with one port 80 (named http) and an EndpointSlice with the addresses,
// target port 8080; an address ending in "!" is terminating, in "?" not ready.
func service(ns, name string, addrs ...string) (*corev1.Service, *discoveryv1.EndpointSlice) {
	svc := &corev1.Service{ObjectMeta: om(ns, name, 0), Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}}
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name + "-abc", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080)), Protocol: ptr(corev1.ProtocolTCP)}},
	}
	for _, a := range addrs {
		c := discoveryv1.EndpointConditions{Ready: ptr(true), Serving: ptr(true), Terminating: ptr(false)}
		switch {
		case strings.HasSuffix(a, "!"):
			a, c = strings.TrimSuffix(a, "!"), discoveryv1.EndpointConditions{Ready: ptr(false), Serving: ptr(true), Terminating: ptr(true)}
		case strings.HasSuffix(a, "?"):
			a, c = strings.TrimSuffix(a, "?"), discoveryv1.EndpointConditions{Ready: ptr(false), Serving: ptr(false), Terminating: ptr(false)}
		}
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}, Conditions: c})
	}
	return svc, es
}

func backendRef(name string, weight int32) gwv1.HTTPBackendRef {
	return gwv1.HTTPBackendRef{BackendRef: gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{Name: gwv1.ObjectName(name), Port: ptr(int32(80))}, Weight: ptr(weight)}}
}

func route(name string, age int, hosts []string, rules ...gwv1.HTTPRouteRule) *gwv1.HTTPRoute {
	hr := &gwv1.HTTPRoute{ObjectMeta: om("default", name, age)}
	hr.Spec.ParentRefs = []gwv1.ParentReference{{Name: "gw"}}
	for _, h := range hosts {
		hr.Spec.Hostnames = append(hr.Spec.Hostnames, gwv1.Hostname(h))
	}
	hr.Spec.Rules = rules
	return hr
}

func pathMatch(typ gwv1.PathMatchType, v string) gwv1.HTTPRouteMatch {
	return gwv1.HTTPRouteMatch{Path: &gwv1.HTTPPathMatch{Type: ptr(typ), Value: ptr(v)}}
}

func rule(backend string, matches ...gwv1.HTTPRouteMatch) gwv1.HTTPRouteRule {
	return gwv1.HTTPRouteRule{Matches: matches, BackendRefs: []gwv1.HTTPBackendRef{backendRef(backend, 1)}}
}

// world returns the objects of a Gateway on port 80 with services a and b.
func world(routes ...*gwv1.HTTPRoute) Objects {
	sa, ea := service("default", "a", "10.0.0.1")
	sb, eb := service("default", "b", "10.0.0.2", "10.0.0.3")
	return Objects{
		GatewayClasses: []*gwv1.GatewayClass{class()},
		Gateways:       []*gwv1.Gateway{gateway(httpListener("http", 80, ""))},
		HTTPRoutes:     routes,
		Services:       []*corev1.Service{sa, sb},
		EndpointSlices: []*discoveryv1.EndpointSlice{ea, eb},
	}
}

func frontend(t *testing.T, r Result, name string) config.Frontend {
	t.Helper()
	for _, f := range r.Frontends {
		if f.Name == name {
			return f
		}
	}
	t.Fatalf("no frontend %q in %+v", name, r.Frontends)
	return config.Frontend{}
}

func backendOf(t *testing.T, r Result, name string) config.Backend {
	t.Helper()
	for _, b := range r.Backends {
		if b.Name == name {
			return b
		}
	}
	t.Fatalf("no backend %q in %+v", name, r.Backends)
	return config.Backend{}
}

func routeNames(f config.Frontend) []string {
	var out []string
	for _, r := range f.Routes {
		out = append(out, r.Name)
	}
	return out
}

// TestPrecedence checks that routes come out in the Gateway API's precedence order (waage's router
// takes the first match), after the HTTPRoute conformance cases on matching precedence.
func TestPrecedence(t *testing.T) {
	tests := []struct {
		name   string
		routes []*gwv1.HTTPRoute
		want   []string
	}{
		{
			name: "exact before prefix, longer prefix first",
			routes: []*gwv1.HTTPRoute{route("r", 0, nil,
				rule("a", pathMatch(gwv1.PathMatchPathPrefix, "/")),
				rule("a", pathMatch(gwv1.PathMatchPathPrefix, "/v1")),
				rule("a", pathMatch(gwv1.PathMatchExact, "/v1/x")),
				rule("a", pathMatch(gwv1.PathMatchPathPrefix, "/v1/long")),
			)},
			want: []string{"default/r/rule2/match0", "default/r/rule3/match0", "default/r/rule3/match0/prefix",
				"default/r/rule1/match0", "default/r/rule1/match0/prefix", "default/r/rule0/match0"},
		},
		{
			name: "regex between exact and prefix",
			routes: []*gwv1.HTTPRoute{route("r", 0, nil,
				rule("a", pathMatch(gwv1.PathMatchPathPrefix, "/p")),
				rule("a", pathMatch(gwv1.PathMatchRegularExpression, "^/r[0-9]")),
			)},
			want: []string{"default/r/rule1/match0", "default/r/rule0/match0", "default/r/rule0/match0/prefix"},
		},
		{
			name: "method, then more headers, then more query parameters",
			routes: []*gwv1.HTTPRoute{route("r", 0, nil,
				rule("a", gwv1.HTTPRouteMatch{Path: &gwv1.HTTPPathMatch{Type: ptr(gwv1.PathMatchPathPrefix), Value: ptr("/")},
					QueryParams: []gwv1.HTTPQueryParamMatch{{Name: "q", Value: "1"}}}),
				rule("a", gwv1.HTTPRouteMatch{Path: &gwv1.HTTPPathMatch{Type: ptr(gwv1.PathMatchPathPrefix), Value: ptr("/")},
					Headers: []gwv1.HTTPHeaderMatch{{Name: "x", Value: "1"}}}),
				rule("a", gwv1.HTTPRouteMatch{Path: &gwv1.HTTPPathMatch{Type: ptr(gwv1.PathMatchPathPrefix), Value: ptr("/")},
					Headers: []gwv1.HTTPHeaderMatch{{Name: "x", Value: "1"}, {Name: "y", Value: "2"}}}),
				rule("a", gwv1.HTTPRouteMatch{Path: &gwv1.HTTPPathMatch{Type: ptr(gwv1.PathMatchPathPrefix), Value: ptr("/")},
					Method: ptr(gwv1.HTTPMethodPost)}),
			)},
			want: []string{"default/r/rule3/match0", "default/r/rule2/match0", "default/r/rule1/match0", "default/r/rule0/match0"},
		},
		{
			name: "ties: the older route first, then namespace/name",
			routes: []*gwv1.HTTPRoute{
				route("young", 5, nil, rule("a", pathMatch(gwv1.PathMatchPathPrefix, "/"))),
				route("old-b", 1, nil, rule("a", pathMatch(gwv1.PathMatchPathPrefix, "/"))),
				route("old-a", 1, nil, rule("a", pathMatch(gwv1.PathMatchPathPrefix, "/"))),
			},
			want: []string{"default/old-a/rule0/match0", "default/old-b/rule0/match0", "default/young/rule0/match0"},
		},
		{
			name: "exact host, then longer wildcard, then no host, before any path rule",
			routes: []*gwv1.HTTPRoute{
				route("any", 0, nil, rule("a", pathMatch(gwv1.PathMatchExact, "/exact"))),
				route("wild", 1, []string{"*.example.com"}, rule("a", pathMatch(gwv1.PathMatchPathPrefix, "/"))),
				route("wilder", 2, []string{"*.a.example.com"}, rule("a", pathMatch(gwv1.PathMatchPathPrefix, "/"))),
				route("host", 3, []string{"x.example.com"}, rule("a", pathMatch(gwv1.PathMatchPathPrefix, "/"))),
			},
			want: []string{"default/host/rule0/match0@x.example.com", "default/wilder/rule0/match0@*.a.example.com",
				"default/wild/rule0/match0@*.example.com", "default/any/rule0/match0"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Translate(world(tt.routes...), opts())
			if got := routeNames(frontend(t, r, "kubernetes/gateway-80")); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("routes =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func TestPathPrefixIsElementWise(t *testing.T) {
	r := Translate(world(route("r", 0, nil, rule("a", pathMatch(gwv1.PathMatchPathPrefix, "/foo/")))), opts())
	f := frontend(t, r, "kubernetes/gateway-80")
	if len(f.Routes) != 2 || f.Routes[0].Match.Path != "/foo" || f.Routes[1].Match.PathPrefix != "/foo/" {
		t.Fatalf("routes = %+v, want /foo exact and /foo/ prefix", f.Routes)
	}
}

func TestMatchesAndFilters(t *testing.T) {
	hr := route("r", 0, []string{"app.example.com"}, gwv1.HTTPRouteRule{
		Matches: []gwv1.HTTPRouteMatch{{
			Path:        &gwv1.HTTPPathMatch{Type: ptr(gwv1.PathMatchExact), Value: ptr("/x")},
			Headers:     []gwv1.HTTPHeaderMatch{{Name: "X-Env", Value: "~literal"}, {Name: "X-Re", Type: ptr(gwv1.HeaderMatchRegularExpression), Value: "^a+$"}},
			QueryParams: []gwv1.HTTPQueryParamMatch{{Name: "q", Value: "1"}},
			Method:      ptr(gwv1.HTTPMethodGet),
		}},
		Filters: []gwv1.HTTPRouteFilter{
			{Type: gwv1.HTTPRouteFilterRequestHeaderModifier, RequestHeaderModifier: &gwv1.HTTPHeaderFilter{
				Set: []gwv1.HTTPHeader{{Name: "X-Set", Value: "1"}}, Add: []gwv1.HTTPHeader{{Name: "X-Add", Value: "2"}}, Remove: []string{"X-Drop"}}},
			{Type: gwv1.HTTPRouteFilterResponseHeaderModifier, ResponseHeaderModifier: &gwv1.HTTPHeaderFilter{Set: []gwv1.HTTPHeader{{Name: "X-Resp", Value: "3"}}}},
			{Type: gwv1.HTTPRouteFilterURLRewrite, URLRewrite: &gwv1.HTTPURLRewriteFilter{Hostname: ptr(gwv1.PreciseHostname("internal"))}},
		},
		BackendRefs: []gwv1.HTTPBackendRef{backendRef("a", 1)},
	})
	r := Translate(world(hr), opts())
	f := frontend(t, r, "kubernetes/gateway-80")
	want := config.Route{
		Name: "default/r/rule0/match0@app.example.com",
		Match: config.Match{
			Host: config.StringList{"app.example.com"}, Path: "/x",
			Headers: config.StringMap{{Key: "X-Env", Value: `~^~literal$`}, {Key: "X-Re", Value: "~^a+$"}},
			Query:   config.StringMap{{Key: "q", Value: "1"}}, Methods: []string{"GET"},
		},
		Backend: "default/a:80",
		RequestHeaders: config.HeaderOps{Set: config.StringMap{{Key: "X-Set", Value: "1"}, {Key: "Host", Value: "internal"}},
			Add: config.StringMap{{Key: "X-Add", Value: "2"}}, Remove: []string{"X-Drop"}},
		ResponseHeaders: config.HeaderOps{Set: config.StringMap{{Key: "X-Resp", Value: "3"}}},
	}
	if len(f.Routes) != 1 || !reflect.DeepEqual(f.Routes[0], want) {
		t.Fatalf("routes = %+v\nwant %+v", f.Routes, want)
	}
	b := backendOf(t, r, "default/a:80")
	if len(b.Servers) != 1 || b.Servers[0].Address != "10.0.0.1:8080" || b.Servers[0].State != "ready" {
		t.Errorf("backend = %+v", b)
	}
}

func TestURLRewritePrefix(t *testing.T) {
	hr := route("r", 0, nil, gwv1.HTTPRouteRule{
		Matches: []gwv1.HTTPRouteMatch{pathMatch(gwv1.PathMatchPathPrefix, "/api")},
		Filters: []gwv1.HTTPRouteFilter{{Type: gwv1.HTTPRouteFilterURLRewrite, URLRewrite: &gwv1.HTTPURLRewriteFilter{
			Path: &gwv1.HTTPPathModifier{Type: gwv1.PrefixMatchHTTPPathModifier, ReplacePrefixMatch: ptr("/")}}}},
		BackendRefs: []gwv1.HTTPBackendRef{backendRef("a", 1)},
	})
	f := frontend(t, Translate(world(hr), opts()), "kubernetes/gateway-80")
	if len(f.Routes) != 2 || f.Routes[0].StripPrefix != "/api" || f.Routes[1].StripPrefix != "/api" {
		t.Fatalf("routes = %+v, want strip_prefix /api", f.Routes)
	}
}

func TestUnsupportedFilters(t *testing.T) {
	redirect := gwv1.HTTPRouteFilter{Type: gwv1.HTTPRouteFilterRequestRedirect, RequestRedirect: &gwv1.HTTPRequestRedirectFilter{Scheme: ptr("https")}}
	prefix := &gwv1.HTTPPathModifier{Type: gwv1.PrefixMatchHTTPPathModifier, ReplacePrefixMatch: ptr("/x")}
	tests := []struct {
		name    string
		filters []gwv1.HTTPRouteFilter
		matches []gwv1.HTTPRouteMatch
	}{
		{name: "redirect with rewrite", filters: []gwv1.HTTPRouteFilter{redirect, {Type: gwv1.HTTPRouteFilterURLRewrite, URLRewrite: &gwv1.HTTPURLRewriteFilter{
			Path: &gwv1.HTTPPathModifier{Type: gwv1.FullPathHTTPPathModifier, ReplaceFullPath: ptr("/x")}}}}},
		{name: "redirect with response headers", filters: []gwv1.HTTPRouteFilter{redirect, {Type: gwv1.HTTPRouteFilterResponseHeaderModifier,
			ResponseHeaderModifier: &gwv1.HTTPHeaderFilter{Set: []gwv1.HTTPHeader{{Name: "X-A", Value: "1"}}}}}},
		{name: "redirect status", filters: []gwv1.HTTPRouteFilter{{Type: gwv1.HTTPRouteFilterRequestRedirect, RequestRedirect: &gwv1.HTTPRequestRedirectFilter{StatusCode: ptr(200)}}}},
		{name: "replacePrefixMatch on an exact match", filters: []gwv1.HTTPRouteFilter{{Type: gwv1.HTTPRouteFilterURLRewrite, URLRewrite: &gwv1.HTTPURLRewriteFilter{Path: prefix}}},
			matches: []gwv1.HTTPRouteMatch{pathMatch(gwv1.PathMatchExact, "/a")}},
		{name: "invalid path", filters: []gwv1.HTTPRouteFilter{{Type: gwv1.HTTPRouteFilterRequestRedirect, RequestRedirect: &gwv1.HTTPRequestRedirectFilter{
			Path: &gwv1.HTTPPathModifier{Type: gwv1.FullPathHTTPPathModifier, ReplaceFullPath: ptr("/a b")}}}}},
		{name: "mirror", filters: []gwv1.HTTPRouteFilter{{Type: gwv1.HTTPRouteFilterRequestMirror}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hr := route("r", 0, nil, gwv1.HTTPRouteRule{Matches: tt.matches, Filters: tt.filters, BackendRefs: []gwv1.HTTPBackendRef{backendRef("a", 1)}})
			r := Translate(world(hr), opts())
			if f := frontend(t, r, "kubernetes/gateway-80"); len(f.Routes) != 0 {
				t.Errorf("routes = %+v, want none", f.Routes)
			}
			ps := r.Status.HTTPRoutes[types.NamespacedName{Namespace: "default", Name: "r"}]
			if len(ps) != 1 || ps[0].Conditions[0].Reason != string(gwv1.RouteReasonUnsupportedValue) || ps[0].Conditions[0].Status != metav1.ConditionFalse {
				t.Errorf("status = %+v, want Accepted=False UnsupportedValue", ps)
			}
		})
	}
}

func TestWeights(t *testing.T) {
	tests := []struct {
		name string
		refs []gwv1.HTTPBackendRef
		want map[string]int // address -> weight
	}{
		{"1:3", []gwv1.HTTPBackendRef{backendRef("a", 1), backendRef("b", 3)},
			// b has two servers: each gets 3/2 of a's one; whole numbers 2, 3, 3
			map[string]int{"10.0.0.1:8080": 2, "10.0.0.2:8080": 3, "10.0.0.3:8080": 3}},
		{"zero weight drops a ref", []gwv1.HTTPBackendRef{backendRef("a", 0), backendRef("b", 1)},
			map[string]int{"10.0.0.2:8080": 1, "10.0.0.3:8080": 1}},
		{"missing service answers 500 for its share", []gwv1.HTTPBackendRef{backendRef("a", 1), backendRef("gone", 1)},
			map[string]int{"10.0.0.1:8080": 1, "127.0.0.1:1": 1}},
		{"all zero answers 500", []gwv1.HTTPBackendRef{backendRef("a", 0)},
			map[string]int{"127.0.0.1:1": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hr := route("r", 0, nil, gwv1.HTTPRouteRule{BackendRefs: tt.refs})
			r := Translate(world(hr), opts())
			b := backendOf(t, r, "default/r/rule0")
			got := map[string]int{}
			for _, s := range b.Servers {
				got[s.Address] = s.WeightOr(1)
			}
			if !reflect.DeepEqual(got, tt.want) || b.Algorithm != "weighted_round_robin" {
				t.Errorf("servers = %v (%s), want %v", got, b.Algorithm, tt.want)
			}
		})
	}
}

func TestResolvedRefs(t *testing.T) {
	tests := []struct {
		name   string
		ref    gwv1.HTTPBackendRef
		grant  bool
		reason gwv1.RouteConditionReason
	}{
		{"resolved", backendRef("a", 1), false, gwv1.RouteReasonResolvedRefs},
		{"missing", backendRef("gone", 1), false, gwv1.RouteReasonBackendNotFound},
		{"wrong port", gwv1.HTTPBackendRef{BackendRef: gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{Name: "a", Port: ptr(int32(81))}}}, false, gwv1.RouteReasonBackendNotFound},
		{"kind", gwv1.HTTPBackendRef{BackendRef: gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{Kind: ptr(gwv1.Kind("Pod")), Name: "a", Port: ptr(int32(80))}}}, false, gwv1.RouteReasonInvalidKind},
		{"other namespace", gwv1.HTTPBackendRef{BackendRef: gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{Namespace: ptr(gwv1.Namespace("other")), Name: "c", Port: ptr(int32(80))}}}, false, gwv1.RouteReasonRefNotPermitted},
		{"other namespace granted", gwv1.HTTPBackendRef{BackendRef: gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{Namespace: ptr(gwv1.Namespace("other")), Name: "c", Port: ptr(int32(80))}}}, true, gwv1.RouteReasonResolvedRefs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs := world(route("r", 0, nil, gwv1.HTTPRouteRule{BackendRefs: []gwv1.HTTPBackendRef{tt.ref}}))
			sc, ec := service("other", "c", "10.0.0.9")
			objs.Services = append(objs.Services, sc)
			objs.EndpointSlices = append(objs.EndpointSlices, ec)
			if tt.grant {
				objs.ReferenceGrants = []*gwv1.ReferenceGrant{{ObjectMeta: om("other", "g", 0), Spec: gwv1.ReferenceGrantSpec{
					From: []gwv1.ReferenceGrantFrom{{Group: gwv1.GroupName, Kind: "HTTPRoute", Namespace: "default"}},
					To:   []gwv1.ReferenceGrantTo{{Group: "", Kind: "Service"}},
				}}}
			}
			r := Translate(objs, opts())
			ps := r.Status.HTTPRoutes[types.NamespacedName{Namespace: "default", Name: "r"}]
			if len(ps) != 1 {
				t.Fatalf("parents = %+v", ps)
			}
			c := condOf(ps[0].Conditions, "ResolvedRefs")
			if c == nil || c.Reason != string(tt.reason) || (c.Status == metav1.ConditionTrue) != (tt.reason == gwv1.RouteReasonResolvedRefs) {
				t.Errorf("ResolvedRefs = %+v, want reason %s", c, tt.reason)
			}
			f := frontend(t, r, "kubernetes/gateway-80")
			b := backendOf(t, r, f.Routes[0].Backend)
			notFound := slices.ContainsFunc(b.Servers, func(s config.Server) bool { return s.Name == notFoundServer })
			if notFound != (tt.reason != gwv1.RouteReasonResolvedRefs) {
				t.Errorf("backend %+v: answers 500 = %v", b, notFound)
			}
		})
	}
}

func condOf(cs []metav1.Condition, typ string) *metav1.Condition {
	for i := range cs {
		if cs[i].Type == typ {
			return &cs[i]
		}
	}
	return nil
}

func TestAttachment(t *testing.T) {
	tests := []struct {
		name     string
		listener gwv1.Listener
		routeNS  string
		hosts    []string
		reason   gwv1.RouteConditionReason
	}{
		{"same namespace", httpListener("http", 80, ""), "default", nil, gwv1.RouteReasonAccepted},
		{"other namespace not allowed", httpListener("http", 80, ""), "other", nil, gwv1.RouteReasonNotAllowedByListeners},
		{"hostname intersects", httpListener("http", 80, "*.example.com"), "default", []string{"a.example.com"}, gwv1.RouteReasonAccepted},
		{"no matching hostname", httpListener("http", 80, "a.example.com"), "default", []string{"b.example.com"}, gwv1.RouteReasonNoMatchingListenerHostname},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hr := route("r", 0, tt.hosts, rule("a"))
			hr.Namespace = tt.routeNS
			hr.Spec.ParentRefs[0].Namespace = ptr(gwv1.Namespace("default"))
			objs := world(hr)
			objs.Gateways = []*gwv1.Gateway{gateway(tt.listener)}
			r := Translate(objs, opts())
			ps := r.Status.HTTPRoutes[types.NamespacedName{Namespace: tt.routeNS, Name: "r"}]
			if len(ps) != 1 || ps[0].Conditions[0].Reason != string(tt.reason) {
				t.Fatalf("parents = %+v, want reason %s", ps, tt.reason)
			}
			gs := r.Status.Gateways[types.NamespacedName{Namespace: "default", Name: "gw"}]
			want := int32(0)
			if tt.reason == gwv1.RouteReasonAccepted {
				want = 1
			}
			if len(gs.Listeners) != 1 || gs.Listeners[0].AttachedRoutes != want {
				t.Errorf("listener status = %+v, want %d attached", gs.Listeners, want)
			}
		})
	}
}

func TestNotOurClass(t *testing.T) {
	objs := world(route("r", 0, nil, rule("a")))
	objs.GatewayClasses[0].Spec.ControllerName = "example.com/other"
	r := Translate(objs, opts())
	if len(r.Status.Gateways) != 0 || len(r.Status.HTTPRoutes) != 0 || len(r.Status.GatewayClasses) != 0 {
		t.Errorf("status for another controller's objects: %+v", r.Status)
	}
	for _, f := range r.Frontends {
		if strings.HasPrefix(f.Name, "kubernetes/gateway") {
			t.Errorf("frontend %q for another controller's Gateway", f.Name)
		}
	}
}

func TestEndpointStates(t *testing.T) {
	objs := world(route("r", 0, nil, rule("c")))
	sc, ec := service("default", "c", "10.0.0.5", "10.0.0.6!", "10.0.0.7?")
	objs.Services = append(objs.Services, sc)
	objs.EndpointSlices = append(objs.EndpointSlices, ec)
	b := backendOf(t, Translate(objs, opts()), "default/c:80")
	got := map[string]string{}
	for _, s := range b.Servers {
		got[s.Address] = s.State
	}
	if want := map[string]string{"10.0.0.5:8080": "ready", "10.0.0.6:8080": "drain"}; !reflect.DeepEqual(got, want) {
		t.Errorf("servers = %v, want %v", got, want)
	}
}

func TestHTTPSListener(t *testing.T) {
	objs := world(route("r", 0, nil, rule("a")))
	l := gwv1.Listener{Name: "https", Port: 443, Protocol: gwv1.HTTPSProtocolType, TLS: &gwv1.ListenerTLSConfig{
		CertificateRefs: []gwv1.SecretObjectReference{{Name: "tls"}}}}
	objs.Gateways = []*gwv1.Gateway{gateway(l)}
	r := Translate(objs, opts())
	if len(r.Frontends) != 1 || r.Frontends[0].Name != "kubernetes/ingress-http" {
		t.Errorf("frontends without the Secret = %+v, want only the Ingress one", r.Frontends)
	}
	gs := r.Status.Gateways[types.NamespacedName{Namespace: "default", Name: "gw"}]
	if c := condOf(gs.Listeners[0].Conditions, "ResolvedRefs"); c == nil || c.Reason != string(gwv1.ListenerReasonInvalidCertificateRef) {
		t.Errorf("listener conditions = %+v", gs.Listeners[0].Conditions)
	}
	objs.Secrets = []*corev1.Secret{{ObjectMeta: om("default", "tls", 0), Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{"tls.crt": []byte("CERT"), "tls.key": []byte("KEY")}}}
	r = Translate(objs, opts())
	f := frontend(t, r, "kubernetes/gateway-443")
	want := []config.Certificate{{Cert: "/certs/default_tls.crt", Key: "/certs/default_tls.key"}}
	if f.TLS == nil || !reflect.DeepEqual(f.TLS.Certificates, want) {
		t.Fatalf("tls = %+v, want %+v", f.TLS, want)
	}
	if string(r.Files["/certs/default_tls.crt"]) != "CERT" || string(r.Files["/certs/default_tls.key"]) != "KEY" {
		t.Errorf("files = %v", r.Files)
	}
}

func TestIngress(t *testing.T) {
	sa, ea := service("default", "a", "10.0.0.1")
	ing := &netv1.Ingress{ObjectMeta: om("default", "web", 0), Spec: netv1.IngressSpec{
		IngressClassName: ptr("waage"),
		DefaultBackend:   &netv1.IngressBackend{Service: &netv1.IngressServiceBackend{Name: "a", Port: netv1.ServiceBackendPort{Name: "http"}}},
		Rules: []netv1.IngressRule{{Host: "web.example.com", IngressRuleValue: netv1.IngressRuleValue{HTTP: &netv1.HTTPIngressRuleValue{Paths: []netv1.HTTPIngressPath{
			{Path: "/", PathType: ptr(netv1.PathTypePrefix), Backend: netv1.IngressBackend{Service: &netv1.IngressServiceBackend{Name: "a", Port: netv1.ServiceBackendPort{Number: 80}}}},
			{Path: "/gone", PathType: ptr(netv1.PathTypeExact), Backend: netv1.IngressBackend{Service: &netv1.IngressServiceBackend{Name: "gone", Port: netv1.ServiceBackendPort{Number: 80}}}},
		}}}}},
	}}
	other := ing.DeepCopy()
	other.Name, other.Spec.IngressClassName = "other", ptr("nginx")
	o := opts()
	o.Kubernetes.StatusAddress = "192.0.2.10"
	r := Translate(Objects{Ingresses: []*netv1.Ingress{ing, other}, Services: []*corev1.Service{sa}, EndpointSlices: []*discoveryv1.EndpointSlice{ea}}, o)
	f := frontend(t, r, "kubernetes/ingress-http")
	if got, want := routeNames(f), []string{"default/web/rule0/path1", "default/web/rule0/path0"}; !reflect.DeepEqual(got, want) {
		t.Errorf("routes = %q, want %q", got, want)
	}
	if f.DefaultBackend != "default/a:80" || f.Routes[1].Backend != "default/a:80" || f.Routes[1].Match.PathPrefix != "/" {
		t.Errorf("frontend = %+v", f)
	}
	if b := backendOf(t, r, f.Routes[0].Backend); len(b.Servers) != 1 || b.Servers[0].Name != notFoundServer {
		t.Errorf("missing service backend = %+v, want the 500 server", b)
	}
	if lb := r.Status.Ingresses[types.NamespacedName{Namespace: "default", Name: "web"}]; len(lb.Ingress) != 1 || lb.Ingress[0].IP != "192.0.2.10" {
		t.Errorf("ingress status = %+v", lb)
	}
	if _, ok := r.Status.Ingresses[types.NamespacedName{Namespace: "default", Name: "other"}]; ok {
		t.Error("status for another class's Ingress")
	}
}

func TestStable(t *testing.T) {
	objs := world(route("r2", 1, nil, rule("b")), route("r1", 0, nil, rule("a", pathMatch(gwv1.PathMatchExact, "/a"))))
	a := Translate(objs, opts())
	slices.Reverse(objs.HTTPRoutes)
	slices.Reverse(objs.Services)
	b := Translate(objs, opts())
	if !reflect.DeepEqual(a.Frontends, b.Frontends) || !reflect.DeepEqual(a.Backends, b.Backends) {
		t.Errorf("translation depends on the order of the objects:\n%+v\n%+v", a, b)
	}
}

func TestTwoGatewaysOnOnePort(t *testing.T) {
	hr := route("r", 0, nil, rule("a"))
	hr.Spec.ParentRefs = append(hr.Spec.ParentRefs, gwv1.ParentReference{Name: "gw2"})
	objs := world(hr)
	gw2 := gateway(httpListener("http", 80, ""))
	gw2.Name = "gw2"
	objs.Gateways = append(objs.Gateways, gw2)
	r := Translate(objs, opts())
	if got := routeNames(frontend(t, r, "kubernetes/gateway-80")); !reflect.DeepEqual(got, []string{"default/r/rule0/match0"}) {
		t.Errorf("routes = %q, want the route once", got)
	}
	if ps := r.Status.HTTPRoutes[types.NamespacedName{Namespace: "default", Name: "r"}]; len(ps) != 2 {
		t.Errorf("parents = %+v, want both Gateways", ps)
	}
}

func TestReservedPort(t *testing.T) {
	objs := world(route("r", 0, nil, rule("a")))
	objs.Gateways = []*gwv1.Gateway{gateway(httpListener("taken", 80, ""), httpListener("ingress", 8080, ""), httpListener("free", 81, ""))}
	o := opts() // ingress_listen is 127.0.0.1:8080
	o.Reserved = []string{"0.0.0.0:80"}
	r := Translate(objs, o)
	var names []string
	for _, f := range r.Frontends {
		names = append(names, f.Name)
	}
	if want := []string{"kubernetes/gateway-81", "kubernetes/ingress-http"}; !reflect.DeepEqual(names, want) {
		t.Errorf("frontends = %q, want %q", names, want)
	}
	gs := r.Status.Gateways[types.NamespacedName{Namespace: "default", Name: "gw"}]
	for i, want := range []string{"PortUnavailable", "PortUnavailable", "Accepted"} {
		if c := condOf(gs.Listeners[i].Conditions, "Accepted"); c == nil || c.Reason != want {
			t.Errorf("listener %s: Accepted = %+v, want reason %s", gs.Listeners[i].Name, c, want)
		}
	}
	if c := condOf(gs.Conditions, "Accepted"); c == nil || c.Reason != "ListenersNotValid" {
		t.Errorf("gateway Accepted = %+v, want ListenersNotValid", c)
	}
}
