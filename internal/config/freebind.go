package config

import (
	"net"
	"net/netip"
)

// freebind checks a frontend's freebind: it only makes sense for listen addresses that name one
// IP address, which some interface may not have yet; a wildcard or a host name is always bindable
// (or not) for other reasons.
func (v *validator) freebind(p string, f *Frontend) {
	if !f.Freebind {
		return
	}
	for i, a := range f.Listen {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			continue // listen reports it
		}
		if addr, err := netip.ParseAddr(host); err != nil || addr.IsUnspecified() {
			v.errorf(indexPath(p+".listen", i), "freebind needs an IP address to bind, not %q", host)
		}
	}
}
