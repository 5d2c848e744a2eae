package kube

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/waage/waage/internal/config"
)

// LoadBalancerClass is the spec.loadBalancerClass of the Services of type LoadBalancer that
// waage serves. Services without a class are left to the cluster's default implementation (a
// cloud provider's), and those of other classes to their controllers.
const LoadBalancerClass = "waage.io/lb"

// ServiceLB is what a translation decided for one Service of type LoadBalancer of waage's class.
type ServiceLB struct {
	// Status is the Service's status.loadBalancer: the pool address with ipMode VIP, or nothing
	// when the Service got no address.
	Status corev1.LoadBalancerStatus
	// Problem says why the Service has no address or some port has no listener; empty when
	// all is served. A Service has no conditions for it, so the provider logs it.
	Problem string
}

// ourLoadBalancer reports whether s is a Service of type LoadBalancer that waage serves.
func ourLoadBalancer(s *corev1.Service) bool {
	return s.Spec.Type == corev1.ServiceTypeLoadBalancer && s.Spec.LoadBalancerClass != nil &&
		*s.Spec.LoadBalancerClass == LoadBalancerClass
}

// pool is the parsed load_balancer_pool: the addresses Services of type LoadBalancer get.
type pool []netip.Prefix

// parsePool reads the pool's CIDRs, each masked to its network.
func parsePool(cidrs []string) pool {
	var p pool
	for _, c := range cidrs {
		if pf, err := netip.ParsePrefix(c); err == nil { // validation reports the others
			p = append(p, pf.Masked())
		}
	}
	return p
}

// bounds returns the first and last address of a prefix that may be given out: an IPv4 prefix
// longer than /31 loses its network and broadcast addresses.
func bounds(pf netip.Prefix) (first, last netip.Addr, ok bool) {
	first = pf.Addr()
	bits := first.BitLen() - pf.Bits()
	last = first
	b := last.AsSlice()
	for i := len(b) - 1; i >= 0 && bits > 0; i-- {
		n := min(bits, 8)
		b[i] |= byte(1<<n - 1)
		bits -= n
	}
	last, _ = netip.AddrFromSlice(b)
	if first.Is4() && pf.Bits() < 31 {
		first, last = first.Next(), last.Prev()
	}
	return first, last, first.IsValid() && last.IsValid() && first.Compare(last) <= 0
}

// contains reports whether a may be given out.
func (p pool) contains(a netip.Addr) bool {
	for _, pf := range p {
		if first, last, ok := bounds(pf); ok && pf.Contains(a) && a.Compare(first) >= 0 && a.Compare(last) <= 0 {
			return true
		}
	}
	return false
}

// next returns the lowest address of the pool (in the order of its CIDRs) that is not taken
// and of one of the families (any when empty).
func (p pool) next(taken map[netip.Addr]types.NamespacedName, families []corev1.IPFamily) (netip.Addr, bool) {
	for _, fam := range familyOrder(families) {
		for _, pf := range p {
			first, last, ok := bounds(pf)
			if !ok || (fam != "" && !familyOK(first, []corev1.IPFamily{fam})) {
				continue
			}
			for a := first; a.IsValid() && a.Compare(last) <= 0; a = a.Next() {
				if _, used := taken[a]; !used {
					return a, true
				}
			}
		}
	}
	return netip.Addr{}, false
}

// familyOrder lists the families to try, the Service's primary family first; "" is any.
func familyOrder(families []corev1.IPFamily) []corev1.IPFamily {
	if len(families) == 0 {
		return []corev1.IPFamily{""}
	}
	return families
}

// familyOK reports whether a is of one of the families (any when empty).
func familyOK(a netip.Addr, families []corev1.IPFamily) bool {
	if len(families) == 0 {
		return true
	}
	want := corev1.IPv6Protocol
	if a.Is4() {
		want = corev1.IPv4Protocol
	}
	return slices.Contains(families, want)
}

// allocate gives each Service an address of the pool, the same on every replica and after a
// restart: first the address a Service already has in its status (if it is in the pool, and is
// the one its spec.loadBalancerIP asks for, if any), then the address spec.loadBalancerIP asks
// for, then the lowest free address, each step in the order of the Services' age. Services that
// get none are in problems with the reason.
func allocate(p pool, svcs []*corev1.Service) (addrs map[types.NamespacedName]netip.Addr, problems map[types.NamespacedName]string) {
	addrs = map[types.NamespacedName]netip.Addr{}
	problems = map[types.NamespacedName]string{}
	taken := map[netip.Addr]types.NamespacedName{}
	svcs = sortedByAge(svcs)
	requested := func(s *corev1.Service) (netip.Addr, bool) {
		if s.Spec.LoadBalancerIP == "" {
			return netip.Addr{}, false
		}
		a, err := netip.ParseAddr(s.Spec.LoadBalancerIP)
		if err != nil {
			return netip.Addr{}, true // asked for, but nothing valid
		}
		return a.Unmap(), true
	}
	give := func(s *corev1.Service, a netip.Addr) {
		k := nn(s.Namespace, s.Name)
		addrs[k], taken[a] = a, k
	}
	for _, s := range svcs {
		want, asked := requested(s)
		for _, in := range s.Status.LoadBalancer.Ingress {
			a, err := netip.ParseAddr(in.IP)
			if err != nil {
				continue
			}
			a = a.Unmap()
			if _, used := taken[a]; used || !p.contains(a) || (asked && a != want) || !familyOK(a, s.Spec.IPFamilies) {
				continue
			}
			give(s, a)
			break
		}
	}
	for _, s := range svcs {
		k := nn(s.Namespace, s.Name)
		want, asked := requested(s)
		if _, ok := addrs[k]; ok || !asked {
			continue
		}
		switch owner, used := taken[want]; {
		case !want.IsValid():
			problems[k] = fmt.Sprintf("spec.loadBalancerIP %q is not an IP address", s.Spec.LoadBalancerIP)
		case !p.contains(want):
			problems[k] = fmt.Sprintf("spec.loadBalancerIP %s is not in kubernetes.load_balancer_pool", want)
		case used:
			problems[k] = fmt.Sprintf("spec.loadBalancerIP %s is already used by Service %s", want, owner)
		default:
			give(s, want)
		}
	}
	for _, s := range svcs {
		k := nn(s.Namespace, s.Name)
		if _, ok := addrs[k]; ok || s.Spec.LoadBalancerIP != "" {
			continue
		}
		if a, ok := p.next(taken, s.Spec.IPFamilies); ok {
			give(s, a)
		} else {
			problems[k] = "kubernetes.load_balancer_pool has no free address"
		}
	}
	return addrs, problems
}

// svcFrontendName names the frontend of a Service port; a name made from Kubernetes objects
// holds a slash, which the file's names cannot, so the two never clash.
func svcFrontendName(ns, name string, port int32, proto corev1.Protocol) string {
	n := fmt.Sprintf("kubernetes/svc-%s-%s-%d", ns, name, port)
	if proto == corev1.ProtocolUDP {
		n += "/udp"
	}
	return n
}

// loadBalancers makes a tcp or udp frontend for each port of each Service of type LoadBalancer
// of waage's class, listening on the Service's pool address (with freebind: the address need
// not be on an interface yet) and balancing over its endpoints, and records the Services'
// status. others are the frontends made so far, whose ports a Service port may not take.
func (t *translator) loadBalancers(others []config.Frontend) []config.Frontend {
	if t.status.Services == nil {
		t.status.Services = map[types.NamespacedName]ServiceLB{}
	}
	var ours []*corev1.Service
	for _, s := range t.objs.Services {
		if ourLoadBalancer(s) {
			ours = append(ours, s)
		}
	}
	if len(ours) == 0 {
		return nil
	}
	addrs, problems := allocate(parsePool(t.opts.Kubernetes.LoadBalancerPool), ours)
	used := map[string][]string{"tcp": slices.Clone(t.opts.Reserved)}
	for _, f := range others {
		mode := cmp.Or(f.Mode, "http")
		if mode == "http" {
			mode = "tcp"
		}
		used[mode] = append(used[mode], f.Listen...)
	}
	var out []config.Frontend
	for _, s := range sortedByAge(ours) {
		k := nn(s.Namespace, s.Name)
		a, ok := addrs[k]
		if !ok {
			t.status.Services[k] = ServiceLB{Problem: problems[k]}
			continue
		}
		var notServed []string
		ports := s.Spec.Ports
		allow, ok := sourceRanges(s.Spec.LoadBalancerSourceRanges)
		if !ok {
			notServed, ports = append(notServed, "spec.loadBalancerSourceRanges has no valid CIDR: no port is served"), nil
		}
		for _, sp := range ports {
			proto := cmp.Or(sp.Protocol, corev1.ProtocolTCP)
			mode := strings.ToLower(string(proto))
			if proto != corev1.ProtocolTCP && proto != corev1.ProtocolUDP {
				notServed = append(notServed, fmt.Sprintf("port %d/%s: only TCP and UDP are served", sp.Port, proto))
				continue
			}
			if by := clash(used[mode], a, sp.Port); by != "" {
				notServed = append(notServed, fmt.Sprintf("port %d/%s: %s is already used by another frontend", sp.Port, proto, by))
				continue
			}
			backend, _, ok := t.serviceBackend(s.Namespace, s.Name, intOrName{num: sp.Port, proto: proto})
			if !ok {
				continue
			}
			if s.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
				b := t.backends[backend]
				b.Algorithm = "source_ip_hash"
				t.backends[backend] = b
			}
			out = append(out, config.Frontend{
				Name:     svcFrontendName(s.Namespace, s.Name, sp.Port, proto),
				Mode:     mode,
				Listen:   []string{net.JoinHostPort(a.String(), strconv.Itoa(int(sp.Port)))},
				Backend:  backend,
				Freebind: true,
				Access:   config.Access{Allow: allow},
			})
		}
		t.status.Services[k] = ServiceLB{
			Status: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{
				IP: a.String(), IPMode: new(corev1.LoadBalancerIPModeVIP),
			}}},
			Problem: strings.Join(notServed, "; "),
		}
	}
	return out
}

// sourceRanges returns the CIDRs of spec.loadBalancerSourceRanges as the frontend's allow list
// (nil: every source). ok is false when there are ranges but none is valid: serving everyone
// then would open what the Service meant to close.
func sourceRanges(ranges []string) (allow []string, ok bool) {
	for _, r := range ranges {
		if p, err := netip.ParsePrefix(strings.TrimSpace(r)); err == nil {
			allow = append(allow, p.Masked().String())
		}
	}
	return allow, len(ranges) == 0 || len(allow) > 0
}

// clash returns the listen address among used that port on a conflicts with: the same port on
// the same address or on a wildcard address.
func clash(used []string, a netip.Addr, port int32) string {
	for _, u := range used {
		host, ps, err := net.SplitHostPort(u)
		if err != nil || ps != strconv.Itoa(int(port)) {
			continue
		}
		if host == "" {
			return u
		}
		if h, err := netip.ParseAddr(host); err == nil && (h.IsUnspecified() || h.Unmap() == a) {
			return u
		}
	}
	return ""
}

// maxVIPs is the most virtual IPs one VRRP instance carries.
const maxVIPs = 255

// loadBalancerVIPs returns file's vrrp instances with the addresses of the Services of type
// LoadBalancer added to the virtual IPs of kubernetes.vrrp_instance, so the addresses move with
// the master. VRRP carries IPv4 only, and at most 255 addresses per instance; other addresses
// are left to routing.
func loadBalancerVIPs(file *config.Config, r *Result) []config.VRRP {
	if file.Kubernetes == nil || file.Kubernetes.VRRPInstance == "" || len(r.Status.Services) == 0 {
		return file.VRRP
	}
	var add []string
	for _, k := range slices.SortedFunc(maps.Keys(r.Status.Services), func(a, b types.NamespacedName) int {
		return cmp.Compare(a.String(), b.String())
	}) {
		for _, in := range r.Status.Services[k].Status.Ingress {
			if a, err := netip.ParseAddr(in.IP); err == nil && a.Is4() {
				add = append(add, netip.PrefixFrom(a, 32).String())
			}
		}
	}
	out := slices.Clone(file.VRRP)
	for i := range out {
		if out[i].WithDefaults().Name != file.Kubernetes.VRRPInstance {
			continue
		}
		have := map[netip.Addr]bool{}
		for _, p := range out[i].VIPPrefixes() {
			have[p.Addr()] = true
		}
		vips := slices.Clone(out[i].VirtualIPs)
		for _, v := range add {
			if len(vips) == maxVIPs {
				break // the advert's address count is one byte; the rest are left to routing
			}
			if p := netip.MustParsePrefix(v); !have[p.Addr()] {
				vips = append(vips, v)
				have[p.Addr()] = true
			}
		}
		out[i].VirtualIPs = vips
	}
	return out
}

// logLoadBalancers logs, once per change, why a Service of type LoadBalancer is not (fully)
// served, and when it is again.
func (p *Provider) logLoadBalancers(svcs map[types.NamespacedName]ServiceLB) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, s := range svcs {
		if s.Problem == p.lbLogged[k] {
			continue
		}
		if s.Problem == "" {
			p.logger().Info("kubernetes: Service of type LoadBalancer served", "service", k.String())
		} else {
			p.logger().Warn("kubernetes: Service of type LoadBalancer not served", "service", k.String(), "reason", s.Problem)
		}
	}
	next := map[types.NamespacedName]string{}
	for k, s := range svcs {
		if s.Problem != "" {
			next[k] = s.Problem
		}
	}
	p.lbLogged = next
}

// writeServiceStatus writes status.loadBalancer of the Services of type LoadBalancer of waage's
// class where it differs from what the translation decided, through the status subresource.
func (p *Provider) writeServiceStatus(ctx context.Context, svcs []*corev1.Service, want map[types.NamespacedName]ServiceLB) error {
	var errs []error
	for _, o := range svcs {
		w, ok := want[nn(o.Namespace, o.Name)]
		if !ok || !ourLoadBalancer(o) || equality.Semantic.DeepEqual(o.Status.LoadBalancer, w.Status) {
			continue
		}
		o = o.DeepCopy()
		o.Status.LoadBalancer = w.Status
		_, err := p.core.CoreV1().Services(o.Namespace).UpdateStatus(ctx, o, metav1.UpdateOptions{})
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
