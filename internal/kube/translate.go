// Package kube makes waage a Gateway API and Ingress controller. It watches GatewayClasses, Gateways,
// HTTPRoutes, GRPCRoutes, TLSRoutes, TCPRoutes, UDPRoutes, ReferenceGrants, Ingresses, Services,
// EndpointSlices, Secrets and Namespaces, turns them into the same config model the file gives
// (frontends, backends and routes named namespace/name), hands that to a callback that merges it
// with the file's own config and applies it, and writes status back.
//
// The package produces config and never touches the data path: Translate is a pure function of the
// objects, and Provider is the watch, debounce and status loop around it.
package kube

import (
	"cmp"
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	netv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/waage/waage/internal/config"
)

// Objects are the API objects a translation reads: whatever the watches hold.
type Objects struct {
	GatewayClasses  []*gwv1.GatewayClass
	Gateways        []*gwv1.Gateway
	HTTPRoutes      []*gwv1.HTTPRoute
	GRPCRoutes      []*gwv1.GRPCRoute
	TLSRoutes       []*gwv1.TLSRoute
	TCPRoutes       []*gwv1.TCPRoute
	UDPRoutes       []*gwv1.UDPRoute
	ReferenceGrants []*gwv1.ReferenceGrant
	Ingresses       []*netv1.Ingress
	Services        []*corev1.Service
	EndpointSlices  []*discoveryv1.EndpointSlice
	Secrets         []*corev1.Secret
	// Namespaces are read for their labels (allowedRoutes namespaces From Selector).
	Namespaces []*corev1.Namespace
}

// Options are the settings of a translation.
type Options struct {
	// Kubernetes is the config's kubernetes section with its defaults applied.
	Kubernetes config.Kubernetes
	// NotFoundAddress is the host:port of a server that answers every request with 500: requests
	// for a backendRef that cannot be resolved go there, as the Gateway API asks. Empty: such
	// requests find a backend without servers (503).
	NotFoundAddress string
	// CertDir is where the certificates from Secrets are written (Result.Files).
	CertDir string
	// Reserved are listen addresses (host:port) that others use: the file's frontends. A Gateway
	// listener on one of their ports (or on ingress_listen's) is refused with PortUnavailable
	// rather than making the whole config fail to apply.
	Reserved []string
}

// Result is what a translation makes: config to merge with the file's, files to write first, and
// the status to write back.
type Result struct {
	Frontends []config.Frontend
	Backends  []config.Backend
	// Files maps paths under Options.CertDir to their content (PEM certificates and keys).
	Files  map[string][]byte
	Status Status
}

// Status is the status a translation computed, by object.
type Status struct {
	GatewayClasses map[string][]metav1.Condition
	Gateways       map[types.NamespacedName]gwv1.GatewayStatus
	// HTTPRoutes holds the parent statuses of this controller only; others' stay as they are.
	HTTPRoutes map[types.NamespacedName][]gwv1.RouteParentStatus
	// GRPCRoutes, TLSRoutes, TCPRoutes and UDPRoutes are like HTTPRoutes.
	GRPCRoutes map[types.NamespacedName][]gwv1.RouteParentStatus
	TLSRoutes  map[types.NamespacedName][]gwv1.RouteParentStatus
	TCPRoutes  map[types.NamespacedName][]gwv1.RouteParentStatus
	UDPRoutes  map[types.NamespacedName][]gwv1.RouteParentStatus
	Ingresses  map[types.NamespacedName]netv1.IngressLoadBalancerStatus
	// Services holds the Services of type LoadBalancer of waage's class (loadbalancer.go).
	Services map[types.NamespacedName]ServiceLB
}

const (
	gatewayGroup = gwv1.GroupName
	kindGateway  = "Gateway"
	kindHTTP     = "HTTPRoute"
	kindService  = "Service"
	kindSecret   = "Secret"

	// Frontend names of the Ingress listeners; Gateway frontends are "kubernetes/gateway-PORT".
	// The file's names cannot hold a slash, so these never clash with them.
	ingressHTTP  = "kubernetes/ingress-http"
	ingressHTTPS = "kubernetes/ingress-https"
	// notFoundServer names the server that answers 500 in a backend.
	notFoundServer = "backend-not-found"
)

// translator holds the indexes of one translation.
type translator struct {
	opts     Options
	objs     Objects
	services map[types.NamespacedName]*corev1.Service
	slices   map[types.NamespacedName][]*discoveryv1.EndpointSlice // by Service
	secrets  map[types.NamespacedName]*corev1.Secret
	backends map[string]config.Backend
	files    map[string][]byte
	status   Status

	namespaces map[string]*corev1.Namespace // by name
}

// Translate turns the objects into config and status. It is pure: the same objects give the same
// result, in a stable order, so the runtime's diff sees no change where there is none.
func Translate(objs Objects, opts Options) Result {
	t := &translator{
		opts: opts, objs: objs,
		services: map[types.NamespacedName]*corev1.Service{},
		slices:   map[types.NamespacedName][]*discoveryv1.EndpointSlice{},
		secrets:  map[types.NamespacedName]*corev1.Secret{},
		backends: map[string]config.Backend{},
		files:    map[string][]byte{},
		status: Status{
			GatewayClasses: map[string][]metav1.Condition{},
			Gateways:       map[types.NamespacedName]gwv1.GatewayStatus{},
			HTTPRoutes:     map[types.NamespacedName][]gwv1.RouteParentStatus{},
			GRPCRoutes:     map[types.NamespacedName][]gwv1.RouteParentStatus{},
			TLSRoutes:      map[types.NamespacedName][]gwv1.RouteParentStatus{},
			TCPRoutes:      map[types.NamespacedName][]gwv1.RouteParentStatus{},
			UDPRoutes:      map[types.NamespacedName][]gwv1.RouteParentStatus{},
			Ingresses:      map[types.NamespacedName]netv1.IngressLoadBalancerStatus{},
		},
	}
	for _, s := range objs.Services {
		t.services[nn(s.Namespace, s.Name)] = s
	}
	for _, es := range objs.EndpointSlices {
		svc := es.Labels[discoveryv1.LabelServiceName]
		if svc != "" {
			k := nn(es.Namespace, svc)
			t.slices[k] = append(t.slices[k], es)
		}
	}
	for _, s := range objs.Secrets {
		t.secrets[nn(s.Namespace, s.Name)] = s
	}
	t.namespaces = map[string]*corev1.Namespace{}
	for _, n := range objs.Namespaces {
		t.namespaces[n.Name] = n
	}
	var res Result
	res.Frontends = append(res.Frontends, t.gateways()...)
	res.Frontends = append(res.Frontends, t.ingresses()...)
	res.Frontends = append(res.Frontends, t.loadBalancers(res.Frontends)...)
	for _, name := range slices.Sorted(maps.Keys(t.backends)) {
		res.Backends = append(res.Backends, t.backends[name])
	}
	res.Files = t.files
	res.Status = t.status
	return res
}

func nn(ns, name string) types.NamespacedName { return types.NamespacedName{Namespace: ns, Name: name} }

func cond(typ string, ok bool, reason, msg string, gen int64) metav1.Condition {
	st := metav1.ConditionFalse
	if ok {
		st = metav1.ConditionTrue
	}
	return metav1.Condition{Type: typ, Status: st, Reason: reason, Message: msg, ObservedGeneration: gen}
}

// --- Gateways -------------------------------------------------------------------------------

// listener is one Gateway listener that this controller serves.
type listener struct {
	gw       *gwv1.Gateway
	l        *gwv1.Listener
	attached int32
	// conds are the listener's conditions, and ok whether routes may attach.
	ok    bool
	conds []metav1.Condition
}

// routeEntry is one HTTPRoute match on one frontend, with what the Gateway API's precedence
// rules compare.
type routeEntry struct {
	host      string // "" none; exact before wildcard; longer first
	pathKind  int    // 0 exact, 1 regex, 2 prefix, 3 none
	pathLen   int
	method    bool
	nHeaders  int
	nQuery    int
	created   metav1.Time
	owner     string // namespace/name
	rule, idx int
	routes    []config.Route
}

func hostRank(h string) (int, int) {
	switch {
	case h == "":
		return 2, 0
	case strings.HasPrefix(h, "*."):
		return 1, -len(h)
	}
	return 0, 0
}

// sortEntries orders routes by the Gateway API's precedence, since waage's router takes the first
// route that matches: hostname specificity, then Exact path, RegularExpression (longer first),
// PathPrefix (longer first), then a method match, more header matches, more query matches, then
// the older route, then namespace/name, then rule and match order.
func sortEntries(es []routeEntry) {
	slices.SortStableFunc(es, func(a, b routeEntry) int {
		ar, al := hostRank(a.host)
		br, bl := hostRank(b.host)
		if c := cmp.Or(cmp.Compare(ar, br), cmp.Compare(al, bl), cmp.Compare(a.pathKind, b.pathKind), cmp.Compare(b.pathLen, a.pathLen)); c != 0 {
			return c
		}
		if a.method != b.method {
			if a.method {
				return -1
			}
			return 1
		}
		if c := cmp.Or(cmp.Compare(b.nHeaders, a.nHeaders), cmp.Compare(b.nQuery, a.nQuery)); c != 0 {
			return c
		}
		if !a.created.Equal(&b.created) {
			if a.created.Before(&b.created) {
				return -1
			}
			return 1
		}
		return cmp.Or(strings.Compare(a.owner, b.owner), cmp.Compare(a.rule, b.rule), cmp.Compare(a.idx, b.idx))
	})
}

func (t *translator) ourClasses() map[string]*gwv1.GatewayClass {
	ours := map[string]*gwv1.GatewayClass{}
	for _, gc := range t.objs.GatewayClasses {
		if string(gc.Spec.ControllerName) != t.opts.Kubernetes.ControllerName {
			continue
		}
		ours[gc.Name] = gc
		t.status.GatewayClasses[gc.Name] = []metav1.Condition{
			cond(string(gwv1.GatewayClassConditionStatusAccepted), true, string(gwv1.GatewayClassReasonAccepted), "waage serves this class", gc.Generation),
		}
	}
	return ours
}

func sortedByAge[T metav1.Object](objs []T) []T {
	out := slices.Clone(objs)
	slices.SortStableFunc(out, func(a, b T) int {
		ca, cb := a.GetCreationTimestamp(), b.GetCreationTimestamp()
		if !ca.Equal(&cb) {
			if ca.Before(&cb) {
				return -1
			}
			return 1
		}
		return cmp.Or(strings.Compare(a.GetNamespace(), b.GetNamespace()), strings.Compare(a.GetName(), b.GetName()))
	})
	return out
}

func (t *translator) gateways() []config.Frontend {
	classes := t.ourClasses()
	ports := map[portKey]*gatewayPort{}
	reserved := map[int32]bool{}
	k := t.opts.Kubernetes
	for _, a := range slices.Concat(t.opts.Reserved, k.IngressListen.HTTP, k.IngressListen.HTTPS) {
		if _, ps, err := net.SplitHostPort(a); err == nil {
			if n, err := strconv.Atoi(ps); err == nil {
				reserved[int32(n)] = true
			}
		}
	}
	byGateway := map[types.NamespacedName][]*listener{}
	gateways := sortedByAge(t.objs.Gateways)
	for _, gw := range gateways {
		if classes[string(gw.Spec.GatewayClassName)] == nil {
			continue
		}
		key := nn(gw.Namespace, gw.Name)
		byGateway[key] = nil
		for i := range gw.Spec.Listeners {
			l := &gw.Spec.Listeners[i]
			li := &listener{gw: gw, l: l, ok: true}
			byGateway[key] = append(byGateway[key], li)
			gen := gw.Generation
			switch l.Protocol {
			case gwv1.HTTPProtocolType, gwv1.HTTPSProtocolType, gwv1.TLSProtocolType, gwv1.TCPProtocolType, gwv1.UDPProtocolType:
			default:
				li.ok = false
				li.conds = append(li.conds, cond(string(gwv1.ListenerConditionAccepted), false, string(gwv1.ListenerReasonUnsupportedProtocol), fmt.Sprintf("protocol %s is not supported", l.Protocol), gen))
				continue
			}
			if reserved[l.Port] {
				li.ok = false
				li.conds = append(li.conds, cond(string(gwv1.ListenerConditionAccepted), false, string(gwv1.ListenerReasonPortUnavailable), fmt.Sprintf("port %d is used by waage's own configuration", l.Port), gen))
				continue
			}
			p := ports[listenerPort(l)]
			if p == nil {
				p = &gatewayPort{protocol: l.Protocol, mode: listenerMode(l)}
				ports[listenerPort(l)] = p
			}
			if p.protocol != l.Protocol || p.mode != listenerMode(l) {
				li.ok = false
				li.conds = append(li.conds, cond(string(gwv1.ListenerConditionConflicted), true, string(gwv1.ListenerReasonProtocolConflict), fmt.Sprintf("port %d already serves %s %s", l.Port, p.protocol, p.mode), gen))
				continue
			}
			resolved, reason, msg := true, string(gwv1.ListenerReasonResolvedRefs), ""
			if l.Protocol == gwv1.HTTPSProtocolType || listenerMode(l) == gwv1.TLSModeTerminate {
				certs, r, m := t.listenerCerts(gw, l)
				if r != "" {
					resolved, reason, msg = false, r, m
				}
				p.certs = append(p.certs, certs...)
			}
			if kinds, invalid := listenerKinds(l); len(invalid) > 0 && resolved {
				// Routes of the kinds it can serve still attach, if any.
				resolved, reason, msg = len(kinds) > 0, string(gwv1.ListenerReasonInvalidRouteKinds), fmt.Sprintf("route kinds %s are not supported on %s listeners", strings.Join(invalid, ", "), l.Protocol)
				li.conds = append(li.conds,
					cond(string(gwv1.ListenerConditionAccepted), true, string(gwv1.ListenerReasonAccepted), "", gen),
					cond(string(gwv1.ListenerConditionConflicted), false, string(gwv1.ListenerReasonNoConflicts), "", gen),
					cond(string(gwv1.ListenerConditionResolvedRefs), false, reason, msg, gen))
				li.ok = resolved
				continue
			}
			li.conds = append(li.conds,
				cond(string(gwv1.ListenerConditionAccepted), true, string(gwv1.ListenerReasonAccepted), "", gen),
				cond(string(gwv1.ListenerConditionConflicted), false, string(gwv1.ListenerReasonNoConflicts), "", gen),
				cond(string(gwv1.ListenerConditionResolvedRefs), resolved, reason, msg, gen))
			if !resolved {
				li.ok = false
			}
		}
	}
	for _, hr := range sortedByAge(t.objs.HTTPRoutes) {
		t.httpRoute(hr, byGateway, func(l *listener, e routeEntry) {
			ports[listenerPort(l.l)].entries = append(ports[listenerPort(l.l)].entries, e)
		})
	}
	t.otherRoutes(byGateway, ports)
	// Gateway status.
	for _, gw := range gateways {
		key := nn(gw.Namespace, gw.Name)
		ls, ours := byGateway[key]
		if !ours {
			continue
		}
		var st gwv1.GatewayStatus
		if a := t.opts.Kubernetes.StatusAddress; a != "" {
			typ := gwv1.IPAddressType
			if net.ParseIP(a) == nil {
				typ = gwv1.HostnameAddressType
			}
			st.Addresses = []gwv1.GatewayStatusAddress{{Type: &typ, Value: a}}
		}
		valid := 0
		for _, li := range ls {
			programmed := cond(string(gwv1.ListenerConditionProgrammed), li.ok, string(gwv1.ListenerReasonProgrammed), "", gw.Generation)
			if !li.ok {
				programmed.Reason = string(gwv1.ListenerReasonInvalid)
			} else {
				valid++
			}
			kinds, _ := listenerKinds(li.l)
			st.Listeners = append(st.Listeners, gwv1.ListenerStatus{
				Name: li.l.Name, SupportedKinds: kinds, AttachedRoutes: li.attached,
				Conditions: append(slices.Clone(li.conds), programmed),
			})
		}
		accepted := cond(string(gwv1.GatewayConditionAccepted), true, string(gwv1.GatewayReasonAccepted), "", gw.Generation)
		if valid < len(ls) {
			accepted.Reason = string(gwv1.GatewayReasonListenersNotValid)
			accepted.Message = "some listeners are not valid"
		}
		programmed := cond(string(gwv1.GatewayConditionProgrammed), valid > 0, string(gwv1.GatewayReasonProgrammed), "", gw.Generation)
		if valid == 0 {
			programmed.Reason = string(gwv1.GatewayReasonInvalid)
			programmed.Message = "no valid listener"
		}
		st.Conditions = []metav1.Condition{accepted, programmed}
		t.status.Gateways[key] = st
	}
	var out []config.Frontend
	for _, pk := range slices.SortedFunc(maps.Keys(ports), func(a, b portKey) int {
		return cmp.Or(cmp.Compare(a.num, b.num), cmp.Compare(btoi(a.udp), btoi(b.udp)))
	}) {
		p := ports[pk]
		if p.protocol != gwv1.HTTPProtocolType && p.protocol != gwv1.HTTPSProtocolType {
			if p.mode == gwv1.TLSModeTerminate && len(p.certs) == 0 {
				continue // as for HTTPS below
			}
			out = append(out, t.l4Frontend(pk, p))
			continue
		}
		pn := pk.num
		fe := config.Frontend{
			Name: "kubernetes/gateway-" + strconv.Itoa(int(pn)), Mode: "http",
			Listen: []string{net.JoinHostPort(t.opts.Kubernetes.GatewayBind, strconv.Itoa(int(pn)))},
		}
		if p.protocol == gwv1.HTTPSProtocolType {
			if len(p.certs) == 0 {
				continue // no certificate resolved: the listeners say so in their status
			}
			fe.TLS = &config.FrontendTLS{Certificates: p.certs}
		}
		sortEntries(p.entries)
		seen := map[string]bool{} // a route attached to two Gateways on one port is served once
		for _, e := range p.entries {
			for _, r := range e.routes {
				if !seen[r.Name] {
					seen[r.Name] = true
					fe.Routes = append(fe.Routes, r)
				}
			}
		}
		if fe.TLS == nil {
			fe.H2C = t.servesH2C(p, fe.Routes)
		}
		out = append(out, fe)
	}
	return out
}

// listenerCerts resolves the certificateRefs of an HTTPS or TLS (Terminate) listener; reason is
// set when one fails.
func (t *translator) listenerCerts(gw *gwv1.Gateway, l *gwv1.Listener) (certs []config.Certificate, reason, msg string) {
	if l.TLS == nil || len(l.TLS.CertificateRefs) == 0 {
		return nil, string(gwv1.ListenerReasonInvalidCertificateRef), "a listener that terminates TLS needs tls.certificateRefs"
	}
	if l.TLS.Mode != nil && *l.TLS.Mode != gwv1.TLSModeTerminate {
		return nil, string(gwv1.ListenerReasonInvalidCertificateRef), "only tls.mode Terminate is supported on HTTPS listeners"
	}
	for _, ref := range l.TLS.CertificateRefs {
		if (ref.Group != nil && *ref.Group != "") || (ref.Kind != nil && *ref.Kind != kindSecret) {
			return nil, string(gwv1.ListenerReasonInvalidCertificateRef), "certificateRefs must be core Secrets"
		}
		ns := gw.Namespace
		if ref.Namespace != nil && string(*ref.Namespace) != gw.Namespace {
			ns = string(*ref.Namespace)
			if !t.granted(gatewayGroup, kindGateway, gw.Namespace, "", kindSecret, ns, string(ref.Name)) {
				return nil, string(gwv1.ListenerReasonRefNotPermitted), fmt.Sprintf("no ReferenceGrant in %s allows Secret %s", ns, ref.Name)
			}
		}
		c, ok := t.secretCert(ns, string(ref.Name))
		if !ok {
			return nil, string(gwv1.ListenerReasonInvalidCertificateRef), fmt.Sprintf("Secret %s/%s is missing or not a TLS Secret", ns, ref.Name)
		}
		certs = append(certs, c)
	}
	return certs, "", ""
}

// secretCert writes a kubernetes.io/tls Secret's certificate and key into Files.
func (t *translator) secretCert(ns, name string) (config.Certificate, bool) {
	s := t.secrets[nn(ns, name)]
	if s == nil || len(s.Data[corev1.TLSCertKey]) == 0 || len(s.Data[corev1.TLSPrivateKeyKey]) == 0 {
		return config.Certificate{}, false
	}
	base := filepath.Join(t.opts.CertDir, ns+"_"+name)
	c := config.Certificate{Cert: base + ".crt", Key: base + ".key"}
	t.files[c.Cert] = s.Data[corev1.TLSCertKey]
	t.files[c.Key] = s.Data[corev1.TLSPrivateKeyKey]
	return c, true
}

// granted reports whether a ReferenceGrant in toNS lets objects of fromGroup/fromKind in fromNS
// refer to toKind (core group) named toName.
func (t *translator) granted(fromGroup, fromKind, fromNS, toGroup, toKind, toNS, toName string) bool {
	for _, g := range t.objs.ReferenceGrants {
		if g.Namespace != toNS {
			continue
		}
		from := slices.ContainsFunc(g.Spec.From, func(f gwv1.ReferenceGrantFrom) bool {
			return string(f.Group) == fromGroup && string(f.Kind) == fromKind && string(f.Namespace) == fromNS
		})
		to := slices.ContainsFunc(g.Spec.To, func(to gwv1.ReferenceGrantTo) bool {
			return string(to.Group) == toGroup && string(to.Kind) == toKind && (to.Name == nil || string(*to.Name) == toName)
		})
		if from && to {
			return true
		}
	}
	return false
}

// hostnames intersects a listener's hostname with a route's, as the Gateway API defines it: nil
// and ok when neither restricts, ok false when they share no name.
func hostnames(listener *gwv1.Hostname, route []gwv1.Hostname) ([]string, bool) {
	if len(route) == 0 {
		if listener == nil {
			return nil, true
		}
		return []string{string(*listener)}, true
	}
	if listener == nil {
		out := make([]string, len(route))
		for i, h := range route {
			out[i] = string(h)
		}
		return out, true
	}
	l := string(*listener)
	var out []string
	for _, h := range route {
		r := string(h)
		switch {
		case r == l:
			out = append(out, r)
		case strings.HasPrefix(l, "*.") && !strings.HasPrefix(r, "*.") && strings.HasSuffix(r, l[1:]):
			out = append(out, r)
		case strings.HasPrefix(r, "*.") && !strings.HasPrefix(l, "*.") && strings.HasSuffix(l, r[1:]):
			out = append(out, l)
		case strings.HasPrefix(r, "*.") && strings.HasPrefix(l, "*."):
			if strings.HasSuffix(r, l[1:]) {
				out = append(out, r)
			} else if strings.HasSuffix(l, r[1:]) {
				out = append(out, l)
			}
		}
	}
	slices.Sort(out)
	out = slices.Compact(out)
	return out, len(out) > 0
}

// httpRoute attaches one HTTPRoute to the listeners its parentRefs name and records its status.
func (t *translator) httpRoute(hr *gwv1.HTTPRoute, byGateway map[types.NamespacedName][]*listener, add func(*listener, routeEntry)) {
	var rules []routeEntry
	parents := t.attachRoute(kindHTTP, hr, hr.Spec.ParentRefs, hr.Spec.Hostnames, byGateway, parentAttach{
		translate: func() (metav1.Condition, string) {
			var resolved metav1.Condition
			var unsupported string
			rules, resolved, unsupported = t.httpRules(hr)
			return resolved, unsupported
		},
		attach: func(li *listener, hosts []string) string {
			for _, e := range rules {
				for _, h := range hostsOrNone(hosts) {
					e := e
					e.host = h
					e.routes = withHost(e.routes, h)
					add(li, e)
				}
			}
			return ""
		},
	})
	if len(parents) > 0 {
		t.status.HTTPRoutes[nn(hr.Namespace, hr.Name)] = parents
	}
}

func hostsOrNone(h []string) []string {
	if len(h) == 0 {
		return []string{""}
	}
	return h
}

func withHost(rs []config.Route, h string) []config.Route {
	out := slices.Clone(rs)
	for i := range out {
		if h != "" {
			out[i].Match.Host = config.StringList{h}
			out[i].Name += "@" + h
		}
	}
	return out
}

// httpRules turns an HTTPRoute's rules into route entries (without hosts), and says whether its
// backendRefs resolved. unsupported names a feature the route uses that waage cannot serve.
func (t *translator) httpRules(hr *gwv1.HTTPRoute) (entries []routeEntry, resolved metav1.Condition, unsupported string) {
	owner := hr.Namespace + "/" + hr.Name
	resolved = cond(string(gwv1.RouteConditionResolvedRefs), true, string(gwv1.RouteReasonResolvedRefs), "", hr.Generation)
	for ri, rule := range hr.Spec.Rules {
		var reqOps, respOps config.HeaderOps
		var hostRewrite string
		// A path modifier of URLRewrite (rewrite*) or RequestRedirect (redirect*): a full path,
		// or the replacement of the PathPrefix matched.
		var rewriteFull, redirectFull string
		var rewritePrefix, redirectPrefix *string
		var redirect *config.Redirect
		for _, f := range rule.Filters {
			switch f.Type {
			case gwv1.HTTPRouteFilterRequestHeaderModifier:
				if f.RequestHeaderModifier != nil {
					reqOps = headerOps(reqOps, f.RequestHeaderModifier)
				}
			case gwv1.HTTPRouteFilterResponseHeaderModifier:
				if f.ResponseHeaderModifier != nil {
					respOps = headerOps(respOps, f.ResponseHeaderModifier)
				}
			case gwv1.HTTPRouteFilterURLRewrite:
				u := f.URLRewrite
				if u == nil {
					continue
				}
				if u.Hostname != nil {
					hostRewrite = string(*u.Hostname)
				}
				if u.Path != nil {
					var msg string
					if rewriteFull, rewritePrefix, msg = pathModifier(u.Path); msg != "" {
						return nil, resolved, fmt.Sprintf("rule %d: URLRewrite: %s", ri, msg)
					}
				}
			case gwv1.HTTPRouteFilterRequestRedirect:
				rr := f.RequestRedirect
				if rr == nil {
					continue
				}
				redirect = &config.Redirect{}
				if rr.Scheme != nil {
					redirect.Scheme = *rr.Scheme
				}
				if rr.Hostname != nil {
					redirect.Host = string(*rr.Hostname)
				}
				if rr.Port != nil {
					redirect.Port = int(*rr.Port)
				}
				if rr.StatusCode != nil {
					redirect.Status = *rr.StatusCode
				}
				if !slices.Contains([]string{"", "http", "https"}, redirect.Scheme) || !slices.Contains([]int{0, 301, 302, 303, 307, 308}, redirect.Status) {
					return nil, resolved, fmt.Sprintf("rule %d: RequestRedirect: scheme %q or statusCode %d is not supported", ri, redirect.Scheme, redirect.Status)
				}
				if rr.Path != nil {
					var msg string
					if redirectFull, redirectPrefix, msg = pathModifier(rr.Path); msg != "" {
						return nil, resolved, fmt.Sprintf("rule %d: RequestRedirect: %s", ri, msg)
					}
				}
			default:
				return nil, resolved, fmt.Sprintf("rule %d: filter %s is not supported", ri, f.Type)
			}
		}
		if redirect != nil && (hostRewrite != "" || rewriteFull != "" || rewritePrefix != nil) {
			return nil, resolved, fmt.Sprintf("rule %d: RequestRedirect and URLRewrite cannot be used together", ri)
		}
		if redirect != nil && len(respOps.Set)+len(respOps.Add)+len(respOps.Remove) > 0 {
			return nil, resolved, fmt.Sprintf("rule %d: ResponseHeaderModifier on a RequestRedirect is not supported", ri)
		}
		if hostRewrite != "" {
			reqOps.Set = append(reqOps.Set, config.KV{Key: "Host", Value: hostRewrite})
		}
		var backend string
		if redirect == nil {
			// A redirect answers by itself: its rule has no backendRefs (the Gateway API's CRD
			// refuses both together).
			var cnd *metav1.Condition
			backend, cnd = t.ruleBackend(hr, ri, rule.BackendRefs)
			if cnd != nil && resolved.Status == metav1.ConditionTrue {
				resolved = *cnd
			}
		}
		full, prefixMod := rewriteFull, rewritePrefix
		if redirect != nil {
			full, prefixMod = redirectFull, redirectPrefix
		}
		matches := rule.Matches
		if len(matches) == 0 {
			matches = []gwv1.HTTPRouteMatch{{}}
		}
		for mi, m := range matches {
			e := routeEntry{created: hr.CreationTimestamp, owner: owner, rule: ri, idx: mi, pathKind: 3}
			base := config.Route{Backend: backend, RequestHeaders: reqOps, ResponseHeaders: respOps}
			if redirect != nil {
				// Request headers have no effect on a redirect (config refuses them there).
				base = config.Route{Redirect: redirect}
			}
			var err error
			if base.Match, err = headerQueryMethod(m); err != nil {
				return nil, resolved, fmt.Sprintf("rule %d: %v", ri, err)
			}
			e.method, e.nHeaders, e.nQuery = m.Method != nil, len(m.Headers), len(m.QueryParams)
			name := fmt.Sprintf("%s/rule%d/match%d", owner, ri, mi)
			typ, val := gwv1.PathMatchPathPrefix, "/"
			if m.Path != nil {
				if m.Path.Type != nil {
					typ = *m.Path.Type
				}
				if m.Path.Value != nil {
					val = *m.Path.Value
				}
			}
			if prefixMod != nil && typ != gwv1.PathMatchPathPrefix {
				return nil, resolved, fmt.Sprintf("rule %d: replacePrefixMatch needs PathPrefix matches", ri)
			}
			switch typ {
			case gwv1.PathMatchExact:
				e.pathKind, e.pathLen = 0, len(val)
				r := base
				r.Name, r.Match.Path = name, val
				setPath(&r, full, nil, "", false)
				e.routes = []config.Route{r}
			case gwv1.PathMatchRegularExpression:
				if _, err := regexp.Compile(val); err != nil {
					return nil, resolved, fmt.Sprintf("rule %d: path regular expression: %v", ri, err)
				}
				e.pathKind, e.pathLen = 1, len(val)
				r := base
				r.Name, r.Match.PathRegex = name, val
				setPath(&r, full, nil, "", false)
				e.routes = []config.Route{r}
			default: // PathPrefix, element-wise: /foo matches /foo and /foo/bar, not /foobar
				p := strings.TrimSuffix(val, "/")
				e.pathKind, e.pathLen = 2, len(p)
				if p == "" {
					r := base
					r.Name, r.Match.PathPrefix = name, "/"
					setPath(&r, full, prefixMod, p, false)
					e.routes = []config.Route{r}
					break
				}
				exact, prefix := base, base
				exact.Name, exact.Match.Path = name, p
				prefix.Name, prefix.Match.PathPrefix = name+"/prefix", p+"/"
				setPath(&exact, full, prefixMod, p, true)
				setPath(&prefix, full, prefixMod, p, false)
				e.routes = []config.Route{exact, prefix}
			}
			entries = append(entries, e)
		}
	}
	return entries, resolved, ""
}

// pathModifier reads an HTTPPathModifier: the full path that replaces the request's, or the
// replacement of the matched prefix (an empty one removes it, like "/"). msg says why it cannot
// be served.
func pathModifier(m *gwv1.HTTPPathModifier) (full string, prefix *string, msg string) {
	switch m.Type {
	case gwv1.FullPathHTTPPathModifier:
		full = "/"
		if m.ReplaceFullPath != nil && *m.ReplaceFullPath != "" {
			full = *m.ReplaceFullPath
		}
		if !config.ValidPath(full) {
			return "", nil, fmt.Sprintf("replaceFullPath %q is not a valid path", full)
		}
		return full, nil, ""
	case gwv1.PrefixMatchHTTPPathModifier:
		p := "/"
		if m.ReplacePrefixMatch != nil && *m.ReplacePrefixMatch != "" {
			p = *m.ReplacePrefixMatch
		}
		if !config.ValidPath(p) {
			return "", nil, fmt.Sprintf("replacePrefixMatch %q is not a valid path", p)
		}
		return "", &p, ""
	}
	return "", nil, fmt.Sprintf("path type %q is not supported", m.Type)
}

// setPath gives route r the path change of its rule: full replaces the whole path, prefix (when
// set) the PathPrefix p matched, which is without its trailing slash and "" for "/". httpRules
// turns PathPrefix p into an exact route for p itself and a prefix route for p+"/"; on the exact
// one the whole path is p, so its replacement is a fixed path (/foo with /xyz: /xyz; with "/": /).
// A rewrite that removes the prefix is strip_prefix.
func setPath(r *config.Route, full string, prefix *string, p string, exact bool) {
	var path, replace string
	switch {
	case full != "":
		path = full
	case prefix == nil:
		return
	case exact:
		path = cmp.Or(strings.TrimSuffix(*prefix, "/"), "/")
	default:
		replace = *prefix
	}
	if r.Redirect != nil {
		rd := *r.Redirect
		rd.Path, rd.ReplacePrefix = path, replace
		r.Redirect = &rd
		return
	}
	if prefix != nil && strings.TrimSuffix(*prefix, "/") == "" {
		if p != "" {
			r.StripPrefix = p
		}
		return
	}
	r.Rewrite = &config.Rewrite{Path: path, ReplacePrefix: replace}
}

func headerOps(ops config.HeaderOps, f *gwv1.HTTPHeaderFilter) config.HeaderOps {
	for _, h := range f.Set {
		ops.Set = append(ops.Set, config.KV{Key: string(h.Name), Value: h.Value})
	}
	for _, h := range f.Add {
		ops.Add = append(ops.Add, config.KV{Key: string(h.Name), Value: h.Value})
	}
	ops.Remove = append(ops.Remove, f.Remove...)
	return ops
}

// exactValue is a config match value that matches v exactly, even when v starts with "~" (which
// the config reads as a regular expression).
func exactValue(v string) string {
	if strings.HasPrefix(v, "~") {
		return "~^" + regexp.QuoteMeta(v) + "$"
	}
	return v
}

func headerQueryMethod(m gwv1.HTTPRouteMatch) (config.Match, error) {
	var out config.Match
	for _, h := range m.Headers {
		v := exactValue(h.Value)
		if h.Type != nil && *h.Type == gwv1.HeaderMatchRegularExpression {
			if _, err := regexp.Compile(h.Value); err != nil {
				return out, fmt.Errorf("header %s: %w", h.Name, err)
			}
			v = "~" + h.Value
		}
		out.Headers = append(out.Headers, config.KV{Key: string(h.Name), Value: v})
	}
	for _, q := range m.QueryParams {
		v := exactValue(q.Value)
		if q.Type != nil && *q.Type == gwv1.QueryParamMatchRegularExpression {
			if _, err := regexp.Compile(q.Value); err != nil {
				return out, fmt.Errorf("query parameter %s: %w", q.Name, err)
			}
			v = "~" + q.Value
		}
		out.Query = append(out.Query, config.KV{Key: string(q.Name), Value: v})
	}
	if m.Method != nil {
		out.Methods = []string{string(*m.Method)}
	}
	return out, nil
}

// ref is one resolved backendRef: a Service port's servers, or nothing (answer 500).
type ref struct {
	servers []config.Server
	weight  int
	missing bool
}

// ruleBackend makes the backend of one HTTPRoute rule (see rulesBackend) and returns its name;
// cnd is set when a backendRef did not resolve.
func (t *translator) ruleBackend(hr *gwv1.HTTPRoute, ri int, brs []gwv1.HTTPBackendRef) (string, *metav1.Condition) {
	refs := make([]ruleRef, len(brs))
	for i, br := range brs {
		refs[i] = ruleRef{BackendRef: br.BackendRef, filtered: len(br.Filters) > 0}
	}
	return t.rulesBackend(kindHTTP, hr, ri, backendHTTP, refs)
}

// weighted gives each server the share of its backendRef's weight divided among the ref's
// servers, as integer weights: refs 1 and 3 with one server each give 1 and 3; with two servers
// behind the first, 1, 1 and 6. A ref that did not resolve is one server answering 500. No refs,
// or only weights 0, also answer 500 as the Gateway API asks.
func (t *translator) weighted(refs []ref) []config.Server {
	// The least common multiple of the server counts keeps every share whole.
	lcm := 1
	total := 0
	for _, r := range refs {
		if n := len(r.servers); n > 0 {
			lcm = lcm / gcd(lcm, n) * n
		}
		total += r.weight
	}
	var out []config.Server
	notFound := func(w int) {
		if t.opts.NotFoundAddress != "" {
			out = append(out, config.Server{Name: notFoundServer, Address: t.opts.NotFoundAddress, Weight: &w})
		}
	}
	if total == 0 {
		notFound(1)
		return out
	}
	missing := 0
	for _, r := range refs {
		if r.weight == 0 {
			continue
		}
		if r.missing {
			missing += r.weight * lcm
			continue
		}
		for _, s := range r.servers {
			w := r.weight * lcm / len(r.servers)
			s.Weight = &w
			out = append(out, s)
		}
	}
	if missing > 0 {
		notFound(missing)
	}
	// Keep weights small: divide by their greatest common divisor.
	g := 0
	for _, s := range out {
		g = gcd(g, *s.Weight)
	}
	for i := range out {
		w := *out[i].Weight / max(g, 1)
		out[i].Weight = &w
	}
	return out
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// intOrName is a Service port by number or by name, with its protocol (empty: TCP).
type intOrName struct {
	num   int32
	name  string
	proto corev1.Protocol
}

// serviceBackend makes the backend of one Service port, "ns/svc:port" ("ns/svc:port/udp" for a
// UDP port), from its EndpointSlices and returns its name and servers; ok is false when the
// Service or the port (with the protocol asked for) does not exist.
func (t *translator) serviceBackend(ns, svc string, p intOrName) (string, []config.Server, bool) {
	s := t.services[nn(ns, svc)]
	if s == nil {
		return "", nil, false
	}
	proto := cmp.Or(p.proto, corev1.ProtocolTCP)
	var sp *corev1.ServicePort
	for i := range s.Spec.Ports {
		q := &s.Spec.Ports[i]
		if cmp.Or(q.Protocol, corev1.ProtocolTCP) != proto {
			continue
		}
		if (p.name != "" && q.Name == p.name) || (p.name == "" && q.Port == p.num) {
			sp = q
			break
		}
	}
	if sp == nil {
		return "", nil, false
	}
	name := fmt.Sprintf("%s/%s:%d", ns, svc, sp.Port)
	if proto != corev1.ProtocolTCP {
		name += "/" + strings.ToLower(string(proto))
	}
	if b, ok := t.backends[name]; ok {
		return name, b.Servers, true
	}
	var servers []config.Server
	seen := map[string]bool{}
	for _, es := range t.slices[nn(ns, svc)] {
		if es.AddressType != discoveryv1.AddressTypeIPv4 && es.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		var port int32
		for _, ep := range es.Ports {
			epName := ""
			if ep.Name != nil {
				epName = *ep.Name
			}
			if epName == sp.Name && ep.Port != nil && (ep.Protocol == nil && proto == corev1.ProtocolTCP || ep.Protocol != nil && *ep.Protocol == proto) {
				port = *ep.Port
			}
		}
		if port == 0 {
			continue
		}
		for _, ep := range es.Endpoints {
			state, ok := endpointState(ep.Conditions)
			if !ok {
				continue
			}
			for _, a := range ep.Addresses {
				addr := net.JoinHostPort(a, strconv.Itoa(int(port)))
				if seen[addr] {
					continue
				}
				seen[addr] = true
				servers = append(servers, config.Server{Name: addr, Address: addr, State: state})
			}
		}
	}
	slices.SortFunc(servers, func(a, b config.Server) int { return strings.Compare(a.Name, b.Name) })
	t.backends[name] = config.Backend{Name: name, Servers: servers}
	return name, servers, true
}

// endpointState maps an endpoint's conditions to a server state: ready endpoints serve, and
// terminating ones that still serve drain; the rest are left out.
func endpointState(c discoveryv1.EndpointConditions) (string, bool) {
	terminating := c.Terminating != nil && *c.Terminating
	switch {
	case terminating && (c.Serving == nil || *c.Serving):
		return "drain", true
	case terminating:
		return "", false
	case c.Ready == nil || *c.Ready:
		return "ready", true
	}
	return "", false
}

// --- Ingresses ------------------------------------------------------------------------------

func (t *translator) ingresses() []config.Frontend {
	k := t.opts.Kubernetes
	if len(k.IngressListen.HTTP) == 0 && len(k.IngressListen.HTTPS) == 0 {
		return nil
	}
	var entries []routeEntry
	var certs []config.Certificate
	var defaultBackend string
	for _, ing := range sortedByAge(t.objs.Ingresses) {
		if ing.Spec.IngressClassName == nil || *ing.Spec.IngressClassName != k.IngressClass {
			continue
		}
		owner := ing.Namespace + "/" + ing.Name
		if db := ing.Spec.DefaultBackend; db != nil && db.Service != nil && defaultBackend == "" {
			defaultBackend = t.ingressBackend(ing.Namespace, db.Service)
		}
		for _, tls := range ing.Spec.TLS {
			if tls.SecretName == "" {
				continue
			}
			if c, ok := t.secretCert(ing.Namespace, tls.SecretName); ok && !slices.Contains(certs, c) {
				certs = append(certs, c)
			}
		}
		for ri, rule := range ing.Spec.Rules {
			if rule.HTTP == nil {
				continue
			}
			for pi, p := range rule.HTTP.Paths {
				if p.Backend.Service == nil {
					continue
				}
				backend := t.ingressBackend(ing.Namespace, p.Backend.Service)
				e := routeEntry{host: rule.Host, created: ing.CreationTimestamp, owner: owner, rule: ri, idx: pi}
				name := fmt.Sprintf("%s/rule%d/path%d", owner, ri, pi)
				r := config.Route{Name: name, Backend: backend}
				if rule.Host != "" {
					r.Match.Host = config.StringList{rule.Host}
				}
				path := p.Path
				if path == "" {
					path = "/"
				}
				if p.PathType != nil && *p.PathType == netv1.PathTypeExact {
					e.pathKind, e.pathLen = 0, len(path)
					r.Match.Path = path
					e.routes = []config.Route{r}
				} else {
					pp := strings.TrimSuffix(path, "/")
					e.pathKind, e.pathLen = 2, len(pp)
					if pp == "" {
						r.Match.PathPrefix = "/"
						e.routes = []config.Route{r}
					} else {
						exact, prefix := r, r
						exact.Match.Path = pp
						prefix.Name, prefix.Match.PathPrefix = name+"/prefix", pp+"/"
						e.routes = []config.Route{exact, prefix}
					}
				}
				entries = append(entries, e)
			}
		}
		var lb netv1.IngressLoadBalancerStatus
		if a := k.StatusAddress; a != "" {
			if net.ParseIP(a) != nil {
				lb.Ingress = []netv1.IngressLoadBalancerIngress{{IP: a}}
			} else {
				lb.Ingress = []netv1.IngressLoadBalancerIngress{{Hostname: a}}
			}
		}
		t.status.Ingresses[nn(ing.Namespace, ing.Name)] = lb
	}
	sortEntries(entries)
	var routes []config.Route
	for _, e := range entries {
		routes = append(routes, e.routes...)
	}
	var out []config.Frontend
	if len(k.IngressListen.HTTP) > 0 {
		out = append(out, config.Frontend{Name: ingressHTTP, Mode: "http", Listen: k.IngressListen.HTTP, Routes: routes, DefaultBackend: defaultBackend})
	}
	if len(k.IngressListen.HTTPS) > 0 && len(certs) > 0 {
		out = append(out, config.Frontend{Name: ingressHTTPS, Mode: "http", Listen: k.IngressListen.HTTPS, Routes: routes, DefaultBackend: defaultBackend,
			TLS: &config.FrontendTLS{Certificates: certs}})
	}
	return out
}

// ingressBackend returns the backend of an Ingress's service reference: the Service's backend, or
// one answering 500 when the Service or port does not exist.
func (t *translator) ingressBackend(ns string, sb *netv1.IngressServiceBackend) string {
	p := intOrName{num: sb.Port.Number, name: sb.Port.Name}
	if name, _, ok := t.serviceBackend(ns, sb.Name, p); ok {
		return name
	}
	port := sb.Port.Name
	if port == "" {
		port = strconv.Itoa(int(sb.Port.Number))
	}
	name := fmt.Sprintf("%s/%s:%s", ns, sb.Name, port)
	t.backends[name] = config.Backend{Name: name, Servers: t.weighted([]ref{{weight: 1, missing: true}})}
	return name
}
