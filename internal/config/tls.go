package config

import (
	"crypto/tls"
	"net/url"
	"slices"
	"strings"
)

var (
	clientAuths     = []string{"none", "optional", "require"}
	backendProtocol = []string{"http1", "h2", "h2c"}
	acmeChallenges  = []string{"http-01", "tls-alpn-01"}
)

// serverTLS is the TLS a backend's servers speak: its tls block, or the defaults when protocol
// h2 asks for TLS without one; nil for plaintext.
func (b *Backend) serverTLS() *ClientTLS {
	if b.TLS != nil {
		return b.TLS
	}
	if b.Protocol == "h2" {
		return &ClientTLS{}
	}
	return nil
}

// ServerTLS is serverTLS for the data path.
func (b *Backend) ServerTLS() *ClientTLS { return b.serverTLS() }

// HTTP2Enabled reports whether a TLS frontend offers HTTP/2 (ALPN h2).
func (t *FrontendTLS) HTTP2Enabled() bool { return t.HTTP2 == nil || *t.HTTP2 }

// frontendTLS validates a frontend's tls block (http and tcp frontends).
func (v *validator) frontendTLS(p string, t *FrontendTLS, mode string) {
	if len(t.Certificates) == 0 && t.ACME == nil {
		v.errorf(p+".certificates", "at least one certificate is required (or acme)")
	}
	for i, c := range t.Certificates {
		cp := indexPath(p+".certificates", i)
		if c.Cert == "" {
			v.errorf(cp+".cert", "is required")
		}
		if c.Key == "" {
			v.errorf(cp+".key", "is required")
		}
	}
	v.oneOf(p+".min_version", t.MinVersion, tlsVersions)
	for i, name := range t.Ciphers {
		if _, ok := CipherSuite(name); !ok {
			v.errorf(indexPath(p+".ciphers", i), "unknown or insecure cipher suite %q (valid: %s)", name, strings.Join(cipherNames(), ", "))
		}
	}
	if v.oneOf(p+".client_auth", t.ClientAuth, clientAuths) {
		needCA := t.ClientAuth == "optional" || t.ClientAuth == "require"
		if needCA && t.ClientCA == "" {
			v.errorf(p+".client_ca", "is required with client_auth %s", t.ClientAuth)
		}
		if !needCA && t.ClientCA != "" {
			v.errorf(p+".client_ca", "only used with client_auth optional or require")
		}
	}
	if t.HTTP2 != nil && mode != "http" {
		v.errorf(p+".http2", "only used on http frontends")
	}
	if a := t.ACME; a != nil {
		ap := p + ".acme"
		if u, err := url.Parse(a.Directory); a.Directory == "" {
			v.errorf(ap+".directory", "is required (the ACME directory URL)")
		} else if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			v.errorf(ap+".directory", "must be an https URL, not %q", a.Directory)
		}
		if len(a.Domains) == 0 {
			v.errorf(ap+".domains", "at least one domain is required")
		}
		for i, d := range a.Domains {
			if strings.HasPrefix(d, "*.") {
				v.errorf(indexPath(ap+".domains", i), "wildcard names need the dns-01 challenge, which waage does not do")
				continue
			}
			if !isHostname(strings.ToLower(d)) {
				v.errorf(indexPath(ap+".domains", i), "invalid domain %q: want a host name like www.example.com", d)
			}
		}
		for i, c := range a.Challenges {
			v.oneOf(indexPath(ap+".challenges", i), c, acmeChallenges)
		}
		if a.Email != "" && !strings.Contains(a.Email, "@") {
			v.errorf(ap+".email", "must be an email address")
		}
		v.nonNegative(ap+".renew_before", a.RenewBefore)
		if mode != "http" && !slices.Contains(a.challenges(), "tls-alpn-01") {
			v.errorf(ap+".challenges", "a tcp frontend can only answer tls-alpn-01")
		}
	}
}

// challenges returns the ACME challenge types in the order to try them.
func (a *ACME) challenges() []string {
	if len(a.Challenges) == 0 {
		return acmeChallenges
	}
	return a.Challenges
}

// ChallengeTypes is challenges for the ACME client.
func (a *ACME) ChallengeTypes() []string { return a.challenges() }

// httpFrontend validates redirect_https, https_port and h2c.
func (v *validator) httpFrontend(p string, f *Frontend, mode string) {
	if mode != "http" {
		for _, k := range []struct {
			key string
			set bool
		}{{"redirect_https", f.RedirectHTTPS}, {"https_port", f.HTTPSPort != 0}, {"h2c", f.H2C}} {
			if k.set {
				v.errorf(p+"."+k.key, "only used on http frontends")
			}
		}
		return
	}
	if f.RedirectHTTPS && f.TLS != nil {
		v.errorf(p+".redirect_https", "only on a plaintext frontend (this one terminates TLS)")
	}
	if f.HTTPSPort != 0 && !f.RedirectHTTPS {
		v.errorf(p+".https_port", "only used with redirect_https")
	}
	if f.HTTPSPort < 0 || f.HTTPSPort > 65535 {
		v.errorf(p+".https_port", "must be a port from 1 to 65535")
	}
	if f.H2C && f.TLS != nil {
		v.errorf(p+".h2c", "only on a plaintext frontend; with tls, HTTP/2 is offered by ALPN")
	}
}

// backendTLS validates protocol and tls of a backend.
func (v *validator) backendTLS(p string, b *Backend) {
	v.oneOf(p+".protocol", b.Protocol, backendProtocol)
	if b.Protocol == "h2c" && b.TLS != nil {
		v.errorf(p+".tls", "h2c is HTTP/2 without TLS; use protocol h2 with tls")
	}
	if (b.Protocol == "h2" || b.Protocol == "h2c") && b.ProxyProtocol != "" {
		v.errorf(p+".proxy_protocol", "not with protocol %s: an HTTP/2 connection carries the streams of many clients, and a PROXY header names one", b.Protocol)
	}
	if t := b.TLS; t != nil && (t.Cert == "") != (t.Key == "") {
		v.errorf(p+".tls", "cert and key go together")
	}
}

// CipherSuite returns the ID of a secure TLS cipher suite by its Go name.
func CipherSuite(name string) (uint16, bool) {
	for _, c := range tls.CipherSuites() {
		if c.Name == name {
			return c.ID, true
		}
	}
	return 0, false
}

func cipherNames() []string {
	var names []string
	for _, c := range tls.CipherSuites() {
		if slices.Contains(c.SupportedVersions, tls.VersionTLS12) {
			names = append(names, c.Name)
		}
	}
	return names
}
