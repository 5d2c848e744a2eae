package l4

import (
	"net/netip"
	"testing"
)

func TestMatchSNI(t *testing.T) {
	for _, tc := range []struct {
		name     string
		patterns []string
		host     string
		want     bool
	}{
		{"exact", []string{"a.example.com"}, "a.example.com", true},
		{"exact other", []string{"a.example.com"}, "b.example.com", false},
		{"wildcard one label", []string{"*.example.org"}, "www.example.org", true},
		{"wildcard two labels", []string{"*.example.org"}, "deep.www.example.org", false},
		{"wildcard apex", []string{"*.example.org"}, "example.org", false},
		{"wildcard empty label", []string{"*.example.org"}, ".example.org", false},
		{"no sni", []string{"*.example.org"}, "", false},
		{"second pattern", []string{"x.test", "*.example.org"}, "a.example.org", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := matchSNI(tc.patterns, tc.host); got != tc.want {
				t.Errorf("matchSNI(%q, %q) = %v, want %v", tc.patterns, tc.host, got, tc.want)
			}
		})
	}
}

func TestRouteMatches(t *testing.T) {
	lan := netip.MustParsePrefix("10.0.0.0/8")
	for _, tc := range []struct {
		name   string
		route  Route
		hello  *ClientHello
		client string
		want   bool
	}{
		{"empty route matches all", Route{}, nil, "192.0.2.1", true},
		{"sni without hello", Route{SNI: []string{"a.test"}}, nil, "192.0.2.1", false},
		{"sni", Route{SNI: []string{"a.test"}}, &ClientHello{ServerName: "a.test"}, "192.0.2.1", true},
		{"alpn offered", Route{ALPN: []string{"h2"}}, &ClientHello{ALPN: []string{"http/1.1", "h2"}}, "192.0.2.1", true},
		{"alpn not offered", Route{ALPN: []string{"h2"}}, &ClientHello{ALPN: []string{"http/1.1"}}, "192.0.2.1", false},
		{"source in", Route{Source: []netip.Prefix{lan}}, nil, "10.1.2.3", true},
		{"source mapped v4", Route{Source: []netip.Prefix{lan}}, nil, "::ffff:10.1.2.3", true},
		{"source out", Route{Source: []netip.Prefix{lan}}, nil, "192.0.2.1", false},
		{"all must hold", Route{SNI: []string{"a.test"}, Source: []netip.Prefix{lan}}, &ClientHello{ServerName: "a.test"}, "192.0.2.1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.route.matches(tc.hello, netip.MustParseAddr(tc.client)); got != tc.want {
				t.Errorf("matches = %v, want %v", got, tc.want)
			}
		})
	}
}
