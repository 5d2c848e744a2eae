package config

import (
	"net/netip"
	"regexp"
	"slices"
	"strings"
)

// Kubernetes makes waage a Gateway API and Ingress controller: it watches the API server and serves
// what the objects say beside the file's own frontends and backends (internal/kube, docs/kubernetes.md).
type Kubernetes struct {
	// Kubeconfig is the kubeconfig file to reach the API server with; empty: the in-cluster
	// service account.
	Kubeconfig string `yaml:"kubeconfig"`
	// ControllerName marks the GatewayClasses that are waage's (their spec.controllerName); default
	// waage.io/gateway-controller.
	ControllerName string `yaml:"controller_name"`
	// IngressClass is the ingressClassName of the Ingresses that are waage's; default waage.
	IngressClass string `yaml:"ingress_class"`
	// IngressListen are the addresses the Ingresses are served on; without any, Ingresses are not
	// watched.
	IngressListen IngressListen `yaml:"ingress_listen"`
	// GatewayBind is the address Gateway listeners bind, each with its own port; default 0.0.0.0.
	GatewayBind string `yaml:"gateway_bind"`
	// StatusAddress is the address written into Gateway and Ingress status: where clients reach
	// this balancer. Default: gateway_bind unless it is unspecified (0.0.0.0, ::).
	StatusAddress string `yaml:"status_address"`
	// LoadBalancerPool lists the CIDRs that Services of type LoadBalancer get addresses from.
	LoadBalancerPool []string `yaml:"load_balancer_pool"`
	// VRRPInstance names a vrrp instance whose virtual IPs get the addresses given to Services
	// of type LoadBalancer, so that they move with the master; empty: the operator routes the
	// pool to this host.
	VRRPInstance string `yaml:"vrrp_instance"`
	// Namespaces limits the watch to these namespaces; empty: all.
	Namespaces []string `yaml:"namespaces"`
}

// IngressListen are the listen addresses of the Ingress frontends.
type IngressListen struct {
	// HTTP are plaintext listen addresses (host:port).
	HTTP []string `yaml:"http"`
	// HTTPS are TLS listen addresses, serving the Ingresses' tls Secrets.
	HTTPS []string `yaml:"https"`
}

// Kubernetes defaults.
const (
	DefaultControllerName = "waage.io/gateway-controller"
	DefaultIngressClass   = "waage"
	defaultGatewayBind    = "0.0.0.0"
)

// WithDefaults returns a copy of k with the documented defaults filled in.
func (k Kubernetes) WithDefaults() Kubernetes {
	orDefault(&k.ControllerName, DefaultControllerName)
	orDefault(&k.IngressClass, DefaultIngressClass)
	orDefault(&k.GatewayBind, defaultGatewayBind)
	if k.StatusAddress == "" {
		if a, err := netip.ParseAddr(k.GatewayBind); err == nil && !a.IsUnspecified() {
			k.StatusAddress = k.GatewayBind
		}
	}
	return k
}

// controllerNamePattern is the Gateway API's GatewayController syntax: a domain prefix, a slash and
// a path.
var controllerNamePattern = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/[A-Za-z0-9/\-._~%!$&'()*+,;=:]+$`)

// dnsLabelPattern is a Kubernetes namespace or class name (RFC 1123 label).
var dnsLabelPattern = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// kubernetes checks the kubernetes section; listens holds the addresses the frontends already use,
// so an Ingress listener cannot clash with a file frontend.
func (v *validator) kubernetes(k *Kubernetes, listens map[string]string, vrrp []VRRP) {
	if k == nil {
		return
	}
	const p = "kubernetes"
	if k.ControllerName != "" && (len(k.ControllerName) > 253 || !controllerNamePattern.MatchString(k.ControllerName)) {
		v.errorf(p+".controller_name", "invalid controller name %q: want a domain-prefixed path such as %s", k.ControllerName, DefaultControllerName)
	}
	if k.IngressClass != "" && (len(k.IngressClass) > 63 || !dnsLabelPattern.MatchString(k.IngressClass)) {
		v.errorf(p+".ingress_class", "invalid class name %q: lower-case letters, digits and '-'", k.IngressClass)
	}
	if len(k.IngressListen.HTTP) > 0 {
		v.listen(p+".ingress_listen.http", k.IngressListen.HTTP, "http", listens)
	}
	if len(k.IngressListen.HTTPS) > 0 {
		v.listen(p+".ingress_listen.https", k.IngressListen.HTTPS, "http", listens)
	}
	if k.GatewayBind != "" {
		if _, err := netip.ParseAddr(k.GatewayBind); err != nil {
			v.errorf(p+".gateway_bind", "invalid address %q: want an IP address without a port", k.GatewayBind)
		}
	}
	if k.StatusAddress != "" {
		if _, err := netip.ParseAddr(k.StatusAddress); err != nil && !isHostname(k.StatusAddress) {
			v.errorf(p+".status_address", "invalid address %q: want an IP address or a host name", k.StatusAddress)
		}
	}
	for i, c := range k.LoadBalancerPool {
		if _, err := netip.ParsePrefix(c); err != nil {
			v.errorf(indexPath(p+".load_balancer_pool", i), "invalid CIDR %q", c)
		}
	}
	if k.VRRPInstance != "" && !slices.ContainsFunc(vrrp, func(r VRRP) bool { return r.WithDefaults().Name == k.VRRPInstance }) {
		var names []string
		for _, r := range vrrp {
			names = append(names, r.WithDefaults().Name)
		}
		v.errorf(p+".vrrp_instance", "vrrp instance %q is not defined%s", k.VRRPInstance, suggest(k.VRRPInstance, names))
	}
	seen := map[string]bool{}
	for i, ns := range k.Namespaces {
		switch {
		case len(ns) > 63 || !dnsLabelPattern.MatchString(ns):
			v.errorf(indexPath(p+".namespaces", i), "invalid namespace %q: lower-case letters, digits and '-'", ns)
		case seen[ns]:
			v.errorf(indexPath(p+".namespaces", i), "duplicate namespace %q", ns)
		}
		seen[ns] = true
	}
	if strings.TrimSpace(k.Kubeconfig) != k.Kubeconfig {
		v.errorf(p+".kubeconfig", "must not start or end with spaces")
	}
}
