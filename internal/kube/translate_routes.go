package kube

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/waage/waage/internal/config"
)

// Route kinds beside HTTPRoute. GRPCRoute attaches to HTTP and HTTPS listeners, TLSRoute to TLS
// listeners, TCPRoute and UDPRoute to TCP and UDP listeners.
const (
	kindGRPC = "GRPCRoute"
	kindTLS  = "TLSRoute"
	kindTCP  = "TCPRoute"
	kindUDP  = "UDPRoute"

	// unroutedBackend has no servers: tcp and udp Gateway frontends send it what no route
	// takes (a TLS connection for a server name no TLSRoute has, a port without a route), so
	// such connections are closed.
	unroutedBackend = "kubernetes/unrouted"
	// appProtocolH2C is the Service port appProtocol of servers that speak HTTP/2 without TLS.
	appProtocolH2C = "kubernetes.io/h2c"
)

// portKey is one Gateway port: a TCP and a UDP listener may have the same number.
type portKey struct {
	num int32
	udp bool
}

// gatewayPort is what the listeners of waage's Gateways on one port serve together.
type gatewayPort struct {
	protocol gwv1.ProtocolType
	mode     gwv1.TLSModeType // of TLS listeners
	certs    []config.Certificate
	// entries are the HTTPRoute and GRPCRoute matches of HTTP and HTTPS ports.
	entries []routeEntry
	// grpc is set when a GRPCRoute attached: a plain HTTP port then serves h2c too.
	grpc bool
	// sni are the TLSRoute routes of a TLS port.
	sni []sniEntry
	// backend is the backend of a TCP or UDP port: its first TCPRoute's or UDPRoute's; owner
	// names that route.
	backend, owner string
}

// sniEntry is one TLSRoute hostname on a TLS port.
type sniEntry struct {
	host    string
	created metav1.Time
	owner   string
	route   config.Route
}

func listenerPort(l *gwv1.Listener) portKey {
	return portKey{num: l.Port, udp: l.Protocol == gwv1.UDPProtocolType}
}

// listenerMode is a TLS listener's tls.mode (default Terminate); empty for other protocols.
func listenerMode(l *gwv1.Listener) gwv1.TLSModeType {
	if l.Protocol != gwv1.TLSProtocolType {
		return ""
	}
	if l.TLS != nil && l.TLS.Mode != nil {
		return *l.TLS.Mode
	}
	return gwv1.TLSModeTerminate
}

// protocolKinds are the route kinds a listener protocol serves.
func protocolKinds(p gwv1.ProtocolType) []string {
	switch p {
	case gwv1.HTTPProtocolType, gwv1.HTTPSProtocolType:
		return []string{kindHTTP, kindGRPC}
	case gwv1.TLSProtocolType:
		return []string{kindTLS}
	case gwv1.TCPProtocolType:
		return []string{kindTCP}
	case gwv1.UDPProtocolType:
		return []string{kindUDP}
	}
	return nil
}

// listenerKinds are the route kinds a listener takes: its protocol's, narrowed by
// allowedRoutes.kinds. invalid lists the kinds there that it cannot serve.
func listenerKinds(l *gwv1.Listener) (kinds []gwv1.RouteGroupKind, invalid []string) {
	supported := protocolKinds(l.Protocol)
	g := gwv1.Group(gatewayGroup)
	kinds = []gwv1.RouteGroupKind{}
	if l.AllowedRoutes == nil || len(l.AllowedRoutes.Kinds) == 0 {
		for _, k := range supported {
			kinds = append(kinds, gwv1.RouteGroupKind{Group: &g, Kind: gwv1.Kind(k)})
		}
		return kinds, nil
	}
	for _, k := range l.AllowedRoutes.Kinds {
		if (k.Group == nil || *k.Group == gatewayGroup) && slices.Contains(supported, string(k.Kind)) {
			kinds = append(kinds, gwv1.RouteGroupKind{Group: &g, Kind: k.Kind})
		} else {
			invalid = append(invalid, string(k.Kind))
		}
	}
	return kinds, invalid
}

// routeAllowed reports whether a listener accepts a route of kind from namespace ns.
func (t *translator) routeAllowed(li *listener, kind, ns string) bool {
	kinds, _ := listenerKinds(li.l)
	if !slices.ContainsFunc(kinds, func(k gwv1.RouteGroupKind) bool { return string(k.Kind) == kind }) {
		return false
	}
	ar := li.l.AllowedRoutes
	from := gwv1.NamespacesFromSame
	if ar != nil && ar.Namespaces != nil && ar.Namespaces.From != nil {
		from = *ar.Namespaces.From
	}
	switch from {
	case gwv1.NamespacesFromAll:
		return true
	case gwv1.NamespacesFromSame:
		return ns == li.gw.Namespace
	case gwv1.NamespacesFromSelector:
		if ar.Namespaces.Selector == nil {
			return false
		}
		sel, err := metav1.LabelSelectorAsSelector(ar.Namespaces.Selector)
		if err != nil {
			return false
		}
		n := t.namespaces[ns]
		return n != nil && sel.Matches(labels.Set(n.Labels))
	}
	return false // None
}

// parentAttach is what attachRoute asks of one route kind: translate makes the route's config
// (once, when a parentRef matched listeners) and returns its ResolvedRefs condition and, when
// the route cannot be served, why; attach adds it to one listener with the hostnames it gets
// there and returns why the listener refuses it ("" when it took it).
type parentAttach struct {
	translate func() (resolved metav1.Condition, unsupported string)
	attach    func(li *listener, hosts []string) string
}

// attachRoute attaches a route to the listeners its parentRefs name and returns its parent
// statuses (nil when no parentRef names one of waage's Gateways).
func (t *translator) attachRoute(kind string, obj metav1.Object, prs []gwv1.ParentReference, routeHosts []gwv1.Hostname, byGateway map[types.NamespacedName][]*listener, pa parentAttach) []gwv1.RouteParentStatus {
	var parents []gwv1.RouteParentStatus
	gen := obj.GetGeneration()
	translated := false
	var resolved metav1.Condition
	var unsupported string
	for _, pr := range prs {
		if (pr.Group != nil && *pr.Group != gatewayGroup) || (pr.Kind != nil && *pr.Kind != kindGateway) {
			continue
		}
		ns := obj.GetNamespace()
		if pr.Namespace != nil {
			ns = string(*pr.Namespace)
		}
		ls, ours := byGateway[nn(ns, string(pr.Name))]
		if !ours {
			continue
		}
		ps := gwv1.RouteParentStatus{ParentRef: pr, ControllerName: gwv1.GatewayController(t.opts.Kubernetes.ControllerName)}
		var matched []*listener
		var hosts [][]string
		reason := string(gwv1.RouteReasonNoMatchingParent)
		for _, li := range ls {
			if pr.SectionName != nil && *pr.SectionName != li.l.Name {
				continue
			}
			if pr.Port != nil && *pr.Port != li.l.Port {
				continue
			}
			if !li.ok {
				continue
			}
			if !t.routeAllowed(li, kind, obj.GetNamespace()) {
				switch {
				case kind == kindTLS && li.l.Protocol != gwv1.TLSProtocolType:
					// The TLSRoute spec asks for this reason when the listener is not TLS.
					reason = string(gwv1.RouteReasonUnsupportedValue)
				case reason == string(gwv1.RouteReasonNoMatchingParent):
					reason = string(gwv1.RouteReasonNotAllowedByListeners)
				}
				continue
			}
			var h []string
			if kind != kindTCP && kind != kindUDP { // these have no hostnames
				var ok bool
				if h, ok = hostnames(li.l.Hostname, routeHosts); !ok {
					reason = string(gwv1.RouteReasonNoMatchingListenerHostname)
					continue
				}
			}
			matched = append(matched, li)
			hosts = append(hosts, h)
		}
		if len(matched) == 0 {
			ps.Conditions = []metav1.Condition{cond(string(gwv1.RouteConditionAccepted), false, reason, "", gen)}
			parents = append(parents, ps)
			continue
		}
		if !translated {
			resolved, unsupported = pa.translate()
			translated = true
		}
		if unsupported != "" {
			ps.Conditions = []metav1.Condition{
				cond(string(gwv1.RouteConditionAccepted), false, string(gwv1.RouteReasonUnsupportedValue), unsupported, gen),
				resolved,
			}
			parents = append(parents, ps)
			continue
		}
		var refused []string
		for i, li := range matched {
			if why := pa.attach(li, hosts[i]); why != "" {
				refused = append(refused, why)
				continue
			}
			li.attached++
		}
		accepted := cond(string(gwv1.RouteConditionAccepted), true, string(gwv1.RouteReasonAccepted), "", gen)
		if len(refused) == len(matched) {
			accepted = cond(string(gwv1.RouteConditionAccepted), false, string(gwv1.RouteReasonUnsupportedValue), strings.Join(refused, "; "), gen)
		}
		ps.Conditions = []metav1.Condition{accepted, resolved}
		parents = append(parents, ps)
	}
	return parents
}

// otherRoutes attaches the GRPCRoutes, TLSRoutes, TCPRoutes and UDPRoutes, oldest first, to
// the listeners of waage's Gateways and records their status.
func (t *translator) otherRoutes(byGateway map[types.NamespacedName][]*listener, ports map[portKey]*gatewayPort) {
	for _, r := range sortedByAge(t.objs.GRPCRoutes) {
		var entries []routeEntry
		st := t.attachRoute(kindGRPC, r, r.Spec.ParentRefs, r.Spec.Hostnames, byGateway, parentAttach{
			translate: func() (metav1.Condition, string) {
				var resolved metav1.Condition
				var unsupported string
				entries, resolved, unsupported = t.grpcRules(r)
				return resolved, unsupported
			},
			attach: func(li *listener, hosts []string) string {
				p := ports[listenerPort(li.l)]
				p.grpc = true
				for _, e := range entries {
					for _, h := range hostsOrNone(hosts) {
						e := e
						e.host = h
						e.routes = withHost(e.routes, h)
						p.entries = append(p.entries, e)
					}
				}
				return ""
			},
		})
		if len(st) > 0 {
			t.status.GRPCRoutes[nn(r.Namespace, r.Name)] = st
		}
	}
	for _, r := range sortedByAge(t.objs.TLSRoutes) {
		var backend string
		st := t.attachRoute(kindTLS, r, r.Spec.ParentRefs, r.Spec.Hostnames, byGateway, parentAttach{
			translate: func() (metav1.Condition, string) {
				var resolved metav1.Condition
				backend, resolved = l4RuleBackend(t, kindTLS, r, r.Spec.Rules, func(x gwv1.TLSRouteRule) []gwv1.BackendRef { return x.BackendRefs })
				return resolved, ""
			},
			attach: func(li *listener, hosts []string) string {
				p := ports[listenerPort(li.l)]
				owner := r.Namespace + "/" + r.Name
				for _, h := range hosts {
					p.sni = append(p.sni, sniEntry{host: h, created: r.CreationTimestamp, owner: owner, route: config.Route{
						Name: owner + "@" + h, Match: config.Match{SNI: config.StringList{h}}, Backend: backend,
					}})
				}
				return ""
			},
		})
		if len(st) > 0 {
			t.status.TLSRoutes[nn(r.Namespace, r.Name)] = st
		}
	}
	for _, r := range sortedByAge(t.objs.TCPRoutes) {
		var backend string
		st := t.attachRoute(kindTCP, r, r.Spec.ParentRefs, nil, byGateway, parentAttach{
			translate: func() (metav1.Condition, string) {
				var resolved metav1.Condition
				backend, resolved = l4RuleBackend(t, kindTCP, r, r.Spec.Rules, func(x gwv1.TCPRouteRule) []gwv1.BackendRef { return x.BackendRefs })
				return resolved, ""
			},
			attach: func(li *listener, _ []string) string {
				return ports[listenerPort(li.l)].take(li, r.Namespace+"/"+r.Name, backend)
			},
		})
		if len(st) > 0 {
			t.status.TCPRoutes[nn(r.Namespace, r.Name)] = st
		}
	}
	for _, r := range sortedByAge(t.objs.UDPRoutes) {
		var backend string
		st := t.attachRoute(kindUDP, r, r.Spec.ParentRefs, nil, byGateway, parentAttach{
			translate: func() (metav1.Condition, string) {
				var resolved metav1.Condition
				backend, resolved = l4RuleBackend(t, kindUDP, r, r.Spec.Rules, func(x gwv1.UDPRouteRule) []gwv1.BackendRef { return x.BackendRefs })
				return resolved, ""
			},
			attach: func(li *listener, _ []string) string {
				return ports[listenerPort(li.l)].take(li, r.Namespace+"/"+r.Name, backend)
			},
		})
		if len(st) > 0 {
			t.status.UDPRoutes[nn(r.Namespace, r.Name)] = st
		}
	}
}

// servesH2C reports whether a plain HTTP port serves h2c (HTTP/2 with prior knowledge) beside
// HTTP/1.1: when a GRPCRoute attached, since gRPC clients speak it, or a route's servers speak
// h2c (Service ports with appProtocol kubernetes.io/h2c), whose clients may too.
func (t *translator) servesH2C(p *gatewayPort, routes []config.Route) bool {
	return p.grpc || slices.ContainsFunc(routes, func(r config.Route) bool { return t.backends[r.Backend].Protocol == "h2c" })
}

// take makes a TCP or UDP port serve the route owner, unless an older route has it: such a
// port forwards every connection to one backend.
func (p *gatewayPort) take(li *listener, owner, backend string) string {
	if p.owner != "" && p.owner != owner {
		return fmt.Sprintf("listener %s: port %d already serves %s %s", li.l.Name, li.l.Port, li.l.Protocol, p.owner)
	}
	p.owner, p.backend = owner, backend
	return ""
}

// l4Frontend makes the frontend of a TLS, TCP or UDP port.
func (t *translator) l4Frontend(k portKey, p *gatewayPort) config.Frontend {
	name := "kubernetes/gateway-" + strconv.Itoa(int(k.num))
	mode := "tcp"
	if k.udp {
		name, mode = name+"/udp", "udp"
	}
	fe := config.Frontend{Name: name, Mode: mode, Listen: []string{net.JoinHostPort(t.opts.Kubernetes.GatewayBind, strconv.Itoa(int(k.num)))}}
	t.backends[unroutedBackend] = config.Backend{Name: unroutedBackend}
	if p.protocol != gwv1.TLSProtocolType {
		fe.Backend = cmp.Or(p.backend, unroutedBackend)
		return fe
	}
	if p.mode == gwv1.TLSModeTerminate {
		fe.TLS = &config.FrontendTLS{Certificates: p.certs}
	}
	// Exact names first, then wildcards, longer first; then the older route.
	slices.SortStableFunc(p.sni, func(a, b sniEntry) int {
		ar, al := hostRank(a.host)
		br, bl := hostRank(b.host)
		if c := cmp.Or(cmp.Compare(ar, br), cmp.Compare(al, bl)); c != 0 {
			return c
		}
		if !a.created.Equal(&b.created) {
			if a.created.Before(&b.created) {
				return -1
			}
			return 1
		}
		return cmp.Or(strings.Compare(a.owner, b.owner), strings.Compare(a.host, b.host))
	})
	seen := map[string]bool{}
	for _, e := range p.sni {
		if !seen[e.host] { // the first route for a name has it
			seen[e.host] = true
			fe.Routes = append(fe.Routes, e.route)
		}
	}
	if len(fe.Routes) == 0 {
		fe.Backend = unroutedBackend
	} else {
		fe.DefaultBackend = unroutedBackend
	}
	return fe
}

// --- backendRefs ------------------------------------------------------------------------------

// backendKind is how a rule's backend talks to its servers.
type backendKind int

const (
	backendHTTP backendKind = iota // HTTP/1.1, or h2c for Service ports with appProtocol kubernetes.io/h2c
	backendGRPC                    // h2c
	backendTCP                     // the connection's bytes as they are
	backendUDP                     // datagrams
)

// ruleRef is one backendRef of any route kind.
type ruleRef struct {
	gwv1.BackendRef
	// filtered is set when the backendRef has filters, which are not supported.
	filtered bool
}

// rulesBackend makes the backend of one rule of a route of kind and returns its name; cnd is
// set when a backendRef did not resolve. One plain Service ref uses the Service port's own
// backend; several, or one that did not resolve, get a backend of the rule whose server
// weights split the requests (or connections, or datagrams) as the backendRefs' weights say:
// "ns/route/ruleN" for an HTTPRoute, "ns/route/ruleN/kind" for the others.
//
// HTTP backendRefs that do not resolve get their share answered with 500. L4 ones get no share:
// their connections go to the other backendRefs, and are closed when there are none.
func (t *translator) rulesBackend(kind string, obj metav1.Object, ri int, bk backendKind, brs []ruleRef) (string, *metav1.Condition) {
	var cnd *metav1.Condition
	fail := func(reason, msg string) {
		if cnd == nil {
			c := cond(string(gwv1.RouteConditionResolvedRefs), false, reason, msg, obj.GetGeneration())
			cnd = &c
		}
	}
	var refs []ref
	var single string
	h2c := bk == backendGRPC
	allH2C := true
	for _, br := range brs {
		w := 1
		if br.Weight != nil {
			w = int(*br.Weight)
		}
		if br.filtered {
			fail(string(gwv1.RouteReasonUnsupportedValue), "filters on backendRefs are not supported")
			refs = append(refs, ref{weight: w, missing: true})
			continue
		}
		if (br.Group != nil && *br.Group != "") || (br.Kind != nil && *br.Kind != kindService) {
			fail(string(gwv1.RouteReasonInvalidKind), fmt.Sprintf("backendRef %s: only core Services are supported", br.Name))
			refs = append(refs, ref{weight: w, missing: true})
			continue
		}
		ns := obj.GetNamespace()
		if br.Namespace != nil && string(*br.Namespace) != ns {
			ns = string(*br.Namespace)
			if !t.granted(gatewayGroup, kind, obj.GetNamespace(), "", kindService, ns, string(br.Name)) {
				fail(string(gwv1.RouteReasonRefNotPermitted), fmt.Sprintf("no ReferenceGrant in %s allows Service %s", ns, br.Name))
				refs = append(refs, ref{weight: w, missing: true})
				continue
			}
		}
		if br.Port == nil {
			fail(string(gwv1.RouteReasonBackendNotFound), fmt.Sprintf("backendRef %s/%s: port is required", ns, br.Name))
			refs = append(refs, ref{weight: w, missing: true})
			continue
		}
		p := intOrName{num: *br.Port}
		if bk == backendUDP {
			p.proto = corev1.ProtocolUDP
		}
		name, servers, ok := t.serviceBackend(ns, string(br.Name), p)
		if !ok {
			fail(string(gwv1.RouteReasonBackendNotFound), fmt.Sprintf("Service %s/%s port %d not found", ns, br.Name, *br.Port))
			refs = append(refs, ref{weight: w, missing: true})
			continue
		}
		if bk == backendGRPC || (bk == backendHTTP && t.appProtocolH2C(ns, string(br.Name), *br.Port)) {
			name = t.h2cBackend(name, servers)
		} else {
			allH2C = false
		}
		single = name
		refs = append(refs, ref{servers: servers, weight: w})
	}
	if len(refs) == 1 && !refs[0].missing && refs[0].weight > 0 {
		return single, cnd
	}
	name := fmt.Sprintf("%s/%s/rule%d", obj.GetNamespace(), obj.GetName(), ri)
	if kind != kindHTTP {
		name += "/" + strings.ToLower(kind)
	}
	b := config.Backend{Name: name, Algorithm: "weighted_round_robin"}
	switch bk {
	case backendTCP, backendUDP:
		refs = slices.DeleteFunc(refs, func(r ref) bool { return r.missing })
		total := 0
		for _, r := range refs {
			total += r.weight
		}
		if total > 0 {
			b.Servers = t.weighted(refs)
		}
	default:
		b.Servers = t.weighted(refs)
		// A rule of several Services speaks h2c only when all of them do (or it is gRPC's).
		if h2c || (allH2C && len(refs) > 0 && slices.ContainsFunc(refs, func(r ref) bool { return !r.missing })) {
			b.Protocol = "h2c"
		}
	}
	t.backends[name] = b
	return name, cnd
}

// h2cBackend makes "NAME/h2c", the backend of Service port backend name that speaks h2c to
// the same servers, so that one port can serve HTTPRoutes over HTTP/1.1 and GRPCRoutes too.
func (t *translator) h2cBackend(name string, servers []config.Server) string {
	name += "/h2c"
	t.backends[name] = config.Backend{Name: name, Servers: servers, Protocol: "h2c"}
	return name
}

// appProtocolH2C reports whether a Service's TCP port says its servers speak h2c.
func (t *translator) appProtocolH2C(ns, svc string, port int32) bool {
	s := t.services[nn(ns, svc)]
	if s == nil {
		return false
	}
	for _, p := range s.Spec.Ports {
		if p.Port == port && cmp.Or(p.Protocol, corev1.ProtocolTCP) == corev1.ProtocolTCP {
			return p.AppProtocol != nil && *p.AppProtocol == appProtocolH2C
		}
	}
	return false
}

// l4RuleBackend makes the backend of a TLSRoute's, TCPRoute's or UDPRoute's rule: the API
// allows one rule, and a second would have nothing to match on.
func l4RuleBackend[R any](t *translator, kind string, obj metav1.Object, rules []R, refs func(R) []gwv1.BackendRef) (string, metav1.Condition) {
	resolved := cond(string(gwv1.RouteConditionResolvedRefs), true, string(gwv1.RouteReasonResolvedRefs), "", obj.GetGeneration())
	bk := backendTCP
	if kind == kindUDP {
		bk = backendUDP
	}
	var brs []ruleRef
	if len(rules) > 0 {
		for _, br := range refs(rules[0]) {
			brs = append(brs, ruleRef{BackendRef: br})
		}
	}
	name, cnd := t.rulesBackend(kind, obj, 0, bk, brs)
	if cnd != nil {
		resolved = *cnd
	}
	return name, resolved
}

// --- GRPCRoute --------------------------------------------------------------------------------

// grpcRules turns a GRPCRoute's rules into route entries (without hosts), and says whether its
// backendRefs resolved. unsupported names a feature the route uses that waage cannot serve.
//
// A method match becomes a path match on "/SERVICE/METHOD": service and method Exact is the
// Exact path, a service alone the prefix "/SERVICE/", a method alone or RegularExpression a
// regular expression. For the precedence order (see sortEntries) these count as regular
// expressions whose length orders them as the GRPCRoute spec asks: the longer service first,
// then the longer method. So they come after HTTPRoutes' Exact paths and before their prefixes.
func (t *translator) grpcRules(gr *gwv1.GRPCRoute) (entries []routeEntry, resolved metav1.Condition, unsupported string) {
	owner := gr.Namespace + "/" + gr.Name
	resolved = cond(string(gwv1.RouteConditionResolvedRefs), true, string(gwv1.RouteReasonResolvedRefs), "", gr.Generation)
	for ri, rule := range gr.Spec.Rules {
		var reqOps, respOps config.HeaderOps
		for _, f := range rule.Filters {
			switch f.Type {
			case gwv1.GRPCRouteFilterRequestHeaderModifier:
				if f.RequestHeaderModifier != nil {
					reqOps = headerOps(reqOps, f.RequestHeaderModifier)
				}
			case gwv1.GRPCRouteFilterResponseHeaderModifier:
				if f.ResponseHeaderModifier != nil {
					respOps = headerOps(respOps, f.ResponseHeaderModifier)
				}
			default:
				return nil, resolved, fmt.Sprintf("rule %d: filter %s is not supported", ri, f.Type)
			}
		}
		var brs []ruleRef
		for _, br := range rule.BackendRefs {
			brs = append(brs, ruleRef{BackendRef: br.BackendRef, filtered: len(br.Filters) > 0})
		}
		backend, cnd := t.rulesBackend(kindGRPC, gr, ri, backendGRPC, brs)
		if cnd != nil && resolved.Status == metav1.ConditionTrue {
			resolved = *cnd
		}
		matches := rule.Matches
		if len(matches) == 0 {
			matches = []gwv1.GRPCRouteMatch{{}}
		}
		for mi, m := range matches {
			e := routeEntry{created: gr.CreationTimestamp, owner: owner, rule: ri, idx: mi, pathKind: 3, nHeaders: len(m.Headers)}
			r := config.Route{Name: fmt.Sprintf("%s/rule%d/match%d", owner, ri, mi), Backend: backend, RequestHeaders: reqOps, ResponseHeaders: respOps}
			for _, h := range m.Headers {
				v := exactValue(h.Value)
				if h.Type != nil && *h.Type == gwv1.GRPCHeaderMatchRegularExpression {
					if _, err := regexp.Compile(h.Value); err != nil {
						return nil, resolved, fmt.Sprintf("rule %d: header %s: %v", ri, h.Name, err)
					}
					v = "~" + h.Value
				}
				r.Match.Headers = append(r.Match.Headers, config.KV{Key: string(h.Name), Value: v})
			}
			if mm := m.Method; mm != nil {
				var err error
				if e.pathKind, e.pathLen, err = grpcMethod(mm, &r.Match); err != nil {
					return nil, resolved, fmt.Sprintf("rule %d: method: %v", ri, err)
				}
			} else {
				r.Match.PathPrefix, e.pathKind = "/", 2
			}
			e.routes = []config.Route{r}
			entries = append(entries, e)
		}
	}
	return entries, resolved, ""
}

// grpcMethod sets the path match of a GRPCRoute method match and returns its precedence kind
// and length, as routeEntry takes them. Service and method names are at most 1024 bytes.
func grpcMethod(mm *gwv1.GRPCMethodMatch, m *config.Match) (kind, length int, err error) {
	svc, method := "", ""
	if mm.Service != nil {
		svc = *mm.Service
	}
	if mm.Method != nil {
		method = *mm.Method
	}
	if svc == "" && method == "" {
		m.PathPrefix = "/"
		return 2, 0, nil
	}
	if mm.Type != nil && *mm.Type == gwv1.GRPCMethodMatchRegularExpression {
		for _, s := range []string{svc, method} {
			if _, err := regexp.Compile(s); err != nil {
				return 0, 0, err
			}
		}
		m.PathRegex = "^/(?:" + cmp.Or(svc, "[^/]+") + ")/(?:" + cmp.Or(method, "[^/]+") + ")$"
	} else {
		switch {
		case svc != "" && method != "":
			m.Path = "/" + svc + "/" + method
		case svc != "":
			m.PathPrefix = "/" + svc + "/"
		default:
			m.PathRegex = "^/[^/]+/" + regexp.QuoteMeta(method) + "$"
		}
	}
	return 1, len(svc)*2048 + len(method), nil
}

// --- status -------------------------------------------------------------------------------------

// mergeParents returns a route's parent statuses with want as this controller's (keeping the
// LastTransitionTime of conditions that did not change) and others' as they are, and whether
// that differs from have.
func mergeParents(controller string, have, want []gwv1.RouteParentStatus) ([]gwv1.RouteParentStatus, bool) {
	var parents []gwv1.RouteParentStatus
	for _, h := range have {
		if string(h.ControllerName) != controller {
			parents = append(parents, h) // another controller's
		}
	}
	for _, w := range want {
		var c []metav1.Condition
		for _, h := range have {
			if string(h.ControllerName) == controller && equality.Semantic.DeepEqual(h.ParentRef, w.ParentRef) {
				c = slices.Clone(h.Conditions)
			}
		}
		mergeConditions(&c, w.Conditions) // sets LastTransitionTime where the status changed
		w.Conditions = c
		parents = append(parents, w)
	}
	if len(parents) == 0 && len(have) == 0 {
		return have, false
	}
	if parents == nil {
		parents = []gwv1.RouteParentStatus{}
	}
	return parents, !equality.Semantic.DeepEqual(have, parents)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// writeRouteStatus writes the parent statuses of routes of one kind where they differ; update
// writes a changed copy.
func writeRouteStatus[T interface {
	metav1.Object
	DeepCopy() T
}](ctx context.Context, controller string, objs []T, want map[types.NamespacedName][]gwv1.RouteParentStatus,
	status func(T) *gwv1.RouteStatus, update func(context.Context, T) error) error {
	var errs []error
	for _, o := range objs {
		parents, changed := mergeParents(controller, status(o).Parents, want[nn(o.GetNamespace(), o.GetName())])
		if changed {
			c := o.DeepCopy()
			status(c).Parents = parents
			errs = append(errs, update(ctx, c))
		}
	}
	return errors.Join(errs...)
}
