package config

import (
	"net/netip"
	"time"
)

// BGP makes waage announce its virtual IPs to routers itself, for active/active balancing: every
// balancer announces the same prefixes, the routers spread the flows over them (ECMP), and a
// balancer that cannot serve, is drained, stops or dies takes its route away.
type BGP struct {
	// LocalAS is this balancer's autonomous system number (1 to 4294967295).
	LocalAS int `yaml:"local_as"`
	// RouterID is the BGP identifier, an IPv4 address unique among the router's peers; usually
	// the balancer's address on the link to the router.
	RouterID string `yaml:"router_id"`
	// ListenPort is the TCP port waage accepts BGP connections on; default 179 when a peer is
	// passive, otherwise none (waage connects to its peers).
	ListenPort int `yaml:"listen_port"`
	// Peers are the routers to announce to.
	Peers []BGPPeer `yaml:"peers"`
	// Announce are the prefixes announced while this balancer can serve, with this balancer's
	// address on each session as the next hop. IPv4, usually host routes (/32).
	Announce []string `yaml:"announce"`
	// TrackBackends withdraw the prefixes while none of these backends has a server that can take
	// traffic.
	TrackBackends []string `yaml:"track_backends"`
}

// BGPPeer is one router waage keeps a BGP session with.
type BGPPeer struct {
	// Address is the router's IPv4 address; one session per address.
	Address string `yaml:"address"`
	// AS is the router's autonomous system number: another than local_as for eBGP, the same for
	// iBGP.
	AS int `yaml:"as"`
	// Port is the router's BGP port; default 179.
	Port int `yaml:"port"`
	// HoldTime is how long a session lives without a message from the other side: the bound on
	// how long a frozen balancer keeps its route. Whole seconds, 3s to 65535s; default 9s. The
	// peers agree on the smaller of their two.
	HoldTime Duration `yaml:"hold_time"`
	// Keepalive is how often waage sends a keepalive; whole seconds, default a third of
	// hold_time.
	Keepalive Duration `yaml:"keepalive"`
	// Passive makes waage wait for the router to connect instead of connecting itself.
	Passive bool `yaml:"passive"`
	// Password turns on TCP MD5 signatures (RFC 2385) with this key; the router needs the same.
	Password string `yaml:"password"`
}

// BGP defaults and limits.
const (
	defaultBGPPort     = 179
	defaultBGPHoldTime = 9 * time.Second
	minBGPHoldTime     = 3 * time.Second // RFC 4271 4.2 (0, no hold timer, is refused)
	maxBGPHoldTime     = 65535 * time.Second
	maxBGPASN          = 1<<32 - 1
	maxBGPPassword     = 80 // TCP_MD5SIG_MAXKEYLEN
)

// ApplyDefaults fills the fields the file left empty: port 179, hold_time 9s, keepalive a third
// of the hold time, and listen_port 179 when a peer is passive. It is idempotent.
func (b *BGP) ApplyDefaults() {
	passive := false
	for i := range b.Peers {
		p := &b.Peers[i]
		orDefault(&p.Port, defaultBGPPort)
		orDefault(&p.HoldTime, Duration(defaultBGPHoldTime))
		if p.Keepalive == 0 {
			p.Keepalive = Duration((p.HoldTime.D() / 3).Truncate(time.Second))
		}
		passive = passive || p.Passive
	}
	if passive {
		orDefault(&b.ListenPort, defaultBGPPort)
	}
}

// WithDefaults returns a copy of b with ApplyDefaults applied, leaving b (and the slices it
// shares) as it was.
func (b BGP) WithDefaults() BGP {
	b.Peers = append([]BGPPeer(nil), b.Peers...)
	b.ApplyDefaults()
	return b
}

// AnnouncePrefixes returns the announced prefixes, masked; a bare address is a host prefix.
// Entries that do not parse are skipped (validation reports them).
func (b *BGP) AnnouncePrefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(b.Announce))
	for _, s := range b.Announce {
		if p, err := parseVIP(s); err == nil {
			out = append(out, p.Masked())
		}
	}
	return out
}

// bgp validates the bgp section. It runs after the backends were validated, since track_backends
// names them.
func (v *validator) bgp(b *BGP) {
	if b == nil {
		return
	}
	const p = "bgp"
	switch {
	case b.LocalAS == 0 && !v.src.present(p+".local_as"):
		v.errorf(p+".local_as", "is required (the balancer's AS number, 1 to 4294967295)")
	case b.LocalAS < 1 || b.LocalAS > maxBGPASN:
		v.errorf(p+".local_as", "must be between 1 and 4294967295")
	}
	if b.RouterID == "" {
		v.errorf(p+".router_id", "is required (an IPv4 address unique among the router's peers, usually this balancer's own)")
	} else if a, err := netip.ParseAddr(b.RouterID); err != nil || !a.Is4() || a.IsUnspecified() {
		v.errorf(p+".router_id", "invalid router ID %q: want an IPv4 address such as 10.250.1.2", b.RouterID)
	}
	if b.ListenPort < 0 || b.ListenPort > 65535 || (b.ListenPort == 0 && v.src.present(p+".listen_port")) {
		v.errorf(p+".listen_port", "must be between 1 and 65535")
	}
	if len(b.Peers) == 0 {
		v.errorf(p+".peers", "at least one peer is required")
	}
	peers := map[netip.Addr]string{}
	for i := range b.Peers {
		v.bgpPeer(indexPath(p+".peers", i), &b.Peers[i], peers)
	}
	if len(b.Announce) == 0 {
		v.errorf(p+".announce", "at least one prefix is required")
	}
	prefixes := map[netip.Prefix]string{}
	for i, s := range b.Announce {
		ip := indexPath(p+".announce", i)
		pfx, err := parseVIP(s)
		if err != nil {
			v.errorf(ip, "invalid prefix %q: want a CIDR such as 10.250.100.1/32 or an address", s)
			continue
		}
		a := pfx.Addr()
		switch {
		case a.Is4In6():
			v.errorf(ip, "write the IPv4 prefix without the IPv6 form")
			continue
		case a.Is6():
			v.errorf(ip, "IPv6 prefixes are not supported yet")
			continue
		case pfx.Masked() != pfx:
			v.errorf(ip, "%s has host bits set; announce %s, or %s/32 for the address alone", s, pfx.Masked(), a)
			continue
		case !a.IsGlobalUnicast():
			v.errorf(ip, "%s is not a unicast prefix", pfx)
			continue
		}
		if first, dup := prefixes[pfx]; dup {
			v.errorf(ip, "prefix %s is already announced by %s", pfx, first)
			continue
		}
		prefixes[pfx] = ip
	}
	seen := map[string]string{}
	for i, name := range b.TrackBackends {
		tp := indexPath(p+".track_backends", i)
		if name == "" {
			v.errorf(tp, "must not be empty")
			continue
		}
		if first, dup := seen[name]; dup {
			v.errorf(tp, "backend %q is already tracked by %s", name, first)
			continue
		}
		seen[name] = tp
		v.ref(tp, name)
	}
}

func (v *validator) bgpPeer(p string, peer *BGPPeer, seen map[netip.Addr]string) {
	if peer.Address == "" {
		v.errorf(p+".address", "is required")
	} else if a, err := netip.ParseAddr(peer.Address); err != nil || !a.Is4() {
		v.errorf(p+".address", "invalid peer address %q: want an IPv4 address", peer.Address)
	} else if first, dup := seen[a]; dup {
		v.errorf(p+".address", "peer %s is already defined by %s", a, first)
	} else if !a.IsGlobalUnicast() && !a.IsLoopback() {
		v.errorf(p+".address", "%s is not a unicast address", a)
	} else {
		seen[a] = p
	}
	switch {
	case peer.AS == 0 && !v.src.present(p+".as"):
		v.errorf(p+".as", "is required (the router's AS number)")
	case peer.AS < 1 || peer.AS > maxBGPASN:
		v.errorf(p+".as", "must be between 1 and 4294967295")
	}
	if peer.Port < 0 || peer.Port > 65535 || (peer.Port == 0 && v.src.present(p+".port")) {
		v.errorf(p+".port", "must be between 1 and 65535")
	}
	hold := peer.HoldTime.D()
	switch {
	case hold == 0 && !v.src.present(p+".hold_time"):
	case hold < minBGPHoldTime:
		v.errorf(p+".hold_time", "must be at least 3s: without a hold timer a frozen balancer would keep its route")
	case hold%time.Second != 0:
		v.errorf(p+".hold_time", "must be a whole number of seconds (BGP counts in seconds)")
	case hold > maxBGPHoldTime:
		v.errorf(p+".hold_time", "must be at most %s", maxBGPHoldTime)
	}
	if hold == 0 {
		hold = defaultBGPHoldTime
	}
	ka := peer.Keepalive.D()
	switch {
	case ka == 0 && !v.src.present(p+".keepalive"):
	case ka <= 0:
		v.errorf(p+".keepalive", "must be greater than 0")
	case ka%time.Second != 0:
		v.errorf(p+".keepalive", "must be a whole number of seconds (BGP counts in seconds)")
	case ka >= hold:
		v.errorf(p+".keepalive", "must be shorter than hold_time (%s); a third of it is usual", hold)
	}
	if len(peer.Password) > maxBGPPassword {
		v.errorf(p+".password", "must be at most %d bytes (the TCP MD5 key limit)", maxBGPPassword)
	}
}
