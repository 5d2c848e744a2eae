package config

import (
	"strings"
	"time"
)

// L4 defaults.
const (
	defaultMaxFlows     = 65536
	defaultQueueSize    = 1024
	defaultQueueTimeout = 5 * time.Second
	defaultTLSMin       = "1.2"
)

var (
	tlsVersions    = []string{"1.2", "1.3"}
	proxyProtocols = []string{"v1", "v2"}
)

// l4Frontend validates what tcp and udp frontends add: tls, proxy_protocol and udp options.
func (v *validator) l4Frontend(p string, f *Frontend, mode string) {
	if t := f.TLS; t != nil {
		if mode == "udp" {
			v.errorf(p+".tls", "not supported on udp frontends")
		} else {
			v.frontendTLS(p+".tls", t, mode)
		}
	}
	v.httpFrontend(p, f, mode)
	if pp := f.ProxyProtocol; pp != nil {
		path := p + ".proxy_protocol"
		if mode == "udp" {
			v.errorf(path, "not supported on udp frontends")
		}
		if len(pp.Trusted) == 0 {
			v.errorf(path+".trusted", "list the sources allowed to send a PROXY header")
		}
		for k, s := range pp.Trusted {
			if !validSource(s) {
				v.errorf(indexPath(path+".trusted", k), "invalid source %q: want a CIDR (10.0.0.0/8) or an IP address", s)
			}
		}
	}
	if mode != "udp" && f.UDP != (UDPOptions{}) {
		v.errorf(p+".udp", "only used on udp frontends")
	}
	if f.UDP.MaxFlows < 0 {
		v.errorf(p+".udp.max_flows", "must not be negative")
	}
}

// l4Match validates the tcp-only route conditions and reports them on http frontends.
func (v *validator) l4Match(p string, m *Match, mode string) {
	if mode != "tcp" {
		if len(m.SNI) > 0 {
			v.errorf(p+".sni", "only valid on tcp frontends (an http frontend routes on match.host)")
		}
		if len(m.ALPN) > 0 {
			v.errorf(p+".alpn", "only valid on tcp frontends")
		}
	} else if len(m.Host) > 0 {
		v.errorf(p+".host", "only valid on http frontends; use match.sni for a TLS server name")
	}
	for k, h := range m.SNI {
		v.host(indexPath(p+".sni", k), strings.ToLower(h))
	}
	for k, a := range m.ALPN {
		if a == "" || len(a) > 255 {
			v.errorf(indexPath(p+".alpn", k), "must be a protocol name of 1 to 255 bytes")
		}
	}
}

// l4Backend validates proxy_protocol, max_connections and queue.
func (v *validator) l4Backend(p string, b *Backend) {
	v.oneOf(p+".proxy_protocol", b.ProxyProtocol, proxyProtocols)
	v.backendTLS(p, b)
	if b.MaxConnections < 0 {
		v.errorf(p+".max_connections", "must be 0 (no limit) or more")
	}
	if b.Queue.Size < 0 {
		v.errorf(p+".queue.size", "must not be negative")
	}
	v.nonNegative(p+".queue.timeout", b.Queue.Timeout)
}

func (f *Frontend) applyL4Defaults() {
	if f.Mode == "udp" {
		orDefault(&f.UDP.MaxFlows, defaultMaxFlows)
	}
	if f.TLS != nil {
		orDefault(&f.TLS.MinVersion, defaultTLSMin)
	}
	for j := range f.Routes {
		m := &f.Routes[j].Match
		for k, h := range m.SNI {
			m.SNI[k] = strings.ToLower(h)
		}
	}
}

func (b *Backend) applyL4Defaults() {
	orDefault(&b.Queue.Size, defaultQueueSize)
	orDefault(&b.Queue.Timeout, Duration(defaultQueueTimeout))
}

// ProxyProtocolVersion reads a proxy_protocol value: 1 for v1, 2 for v2, 0 for none (absent or
// "none").
func ProxyProtocolVersion(s string) int {
	switch s {
	case "v1":
		return 1
	case "v2":
		return 2
	}
	return 0
}
