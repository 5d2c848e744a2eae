package config

import (
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// VRRP is one VRRPv3 (RFC 5798) virtual router: the balancers that share a virtual_router_id on
// one network elect a master, which holds the virtual IPs; when it fails or stops, the backup
// with the highest priority takes them over.
type VRRP struct {
	// Name labels the instance in logs, the admin API and notify calls; default
	// "<interface>-<virtual_router_id>".
	Name string `yaml:"name"`
	// Interface is the network interface the instance advertises on and adds the virtual IPs to.
	Interface string `yaml:"interface"`
	// VirtualRouterID (1-255) identifies the virtual router on the network; every member of one
	// pair uses the same, and different pairs on one network need different ones.
	VirtualRouterID int `yaml:"virtual_router_id"`
	// Priority (1-254) elects the master: the highest wins. Default 100. 255 is reserved for a
	// router that owns the virtual IPs as its own addresses, which a balancer never does.
	Priority int `yaml:"priority"`
	// AdvertInterval is how often the master advertises; default 1s, a multiple of 10ms (the
	// protocol counts centiseconds) between 10ms and 40.95s. A backup takes over after three
	// missed adverts plus a skew that is shorter the higher its priority.
	AdvertInterval Duration `yaml:"advert_interval"`
	// Preempt lets a backup with a higher priority than the master's take over; default true.
	// With false a running master keeps the virtual IPs until it fails.
	Preempt *bool `yaml:"preempt"`
	// PreemptDelay makes a backup wait this long, while it keeps seeing a lower-priority master,
	// before it preempts: time for a balancer that just came back to pass its health checks.
	// Default 0 (preempt at once).
	PreemptDelay Duration `yaml:"preempt_delay"`
	// VirtualIPs are the addresses the master holds, as CIDRs ("192.0.2.10/24"; a bare address
	// is a /32). IPv4.
	VirtualIPs []string `yaml:"virtual_ips"`
	// UnicastPeers sends the adverts to these addresses instead of the multicast group
	// 224.0.0.18, for networks that filter multicast (most clouds).
	UnicastPeers []string `yaml:"unicast_peers"`
	// UnicastSrc is the source address of unicast adverts; default the interface's first IPv4
	// address.
	UnicastSrc string `yaml:"unicast_src"`
	// TrackBackends lower the priority by their weight while the backend has no server that can
	// take traffic, so the virtual IPs move to a peer that can serve.
	TrackBackends []TrackBackend `yaml:"track_backends"`
	// TrackInterfaces lower the priority by their weight while the interface is down or missing.
	TrackInterfaces []TrackInterface `yaml:"track_interfaces"`
	// Notify is a program (and its first arguments) run on every state change with two more
	// arguments: the new state (master, backup, initialize) and the instance's name.
	Notify StringList `yaml:"notify"`
	// NotifyTimeout kills a notify program that runs longer; default 10s.
	NotifyTimeout Duration `yaml:"notify_timeout"`
	// GARPRepeat is how many gratuitous ARPs a new master sends for each virtual IP; default 3.
	GARPRepeat int `yaml:"garp_repeat"`
	// GARPInterval is the pause between those repeats; default 0 (back to back).
	GARPInterval Duration `yaml:"garp_interval"`
	// GARPDelay sends the gratuitous ARPs once more this long after becoming master, for
	// switches and hosts that missed the first ones; default 5s, 0s turns it off.
	GARPDelay *Duration `yaml:"garp_delay"`
}

// TrackBackend is a backend whose health moves the virtual IPs.
type TrackBackend struct {
	// Backend names a backend of this configuration.
	Backend string `yaml:"backend"`
	// Weight (1-254) is subtracted from the priority while the backend has no usable server;
	// default 254, which drops the priority to the lowest, 1.
	Weight int `yaml:"weight"`
}

// TrackInterface is a network interface whose link state moves the virtual IPs.
type TrackInterface struct {
	// Interface is the name of the network interface.
	Interface string `yaml:"interface"`
	// Weight (1-254) is subtracted from the priority while the interface is down or missing;
	// default 254.
	Weight int `yaml:"weight"`
}

// VRRP defaults and limits.
const (
	defaultVRRPPriority   = 100
	defaultAdvertInterval = time.Second
	maxAdvertInterval     = 4095 * 10 * time.Millisecond // 12 bits of centiseconds
	minAdvertInterval     = 10 * time.Millisecond
	defaultTrackWeight    = 254
	defaultNotifyTimeout  = 10 * time.Second
	defaultGARPRepeat     = 3
	maxGARPRepeat         = 100
	defaultGARPDelay      = 5 * time.Second
	maxVRRPDelay          = time.Hour
	maxVirtualIPs         = 255 // the advert's address count is one byte
	maxInterfaceName      = 15  // IFNAMSIZ - 1
	vrrpOwnerPriority     = 255
)

// ApplyDefaults fills the fields the file left empty: name "<interface>-<virtual_router_id>",
// priority 100, advert_interval 1s, preempt true, notify_timeout 10s, garp_repeat 3,
// garp_delay 5s, tracker weights 254. It is idempotent.
func (v *VRRP) ApplyDefaults() {
	orDefault(&v.Name, v.Interface+"-"+strconv.Itoa(v.VirtualRouterID))
	orDefault(&v.Priority, defaultVRRPPriority)
	orDefault(&v.AdvertInterval, Duration(defaultAdvertInterval))
	if v.Preempt == nil {
		t := true
		v.Preempt = &t
	}
	orDefault(&v.NotifyTimeout, Duration(defaultNotifyTimeout))
	orDefault(&v.GARPRepeat, defaultGARPRepeat)
	if v.GARPDelay == nil {
		d := Duration(defaultGARPDelay)
		v.GARPDelay = &d
	}
	for i := range v.TrackBackends {
		orDefault(&v.TrackBackends[i].Weight, defaultTrackWeight)
	}
	for i := range v.TrackInterfaces {
		orDefault(&v.TrackInterfaces[i].Weight, defaultTrackWeight)
	}
}

// WithDefaults returns a copy of v with ApplyDefaults applied, leaving v (and the slices it
// shares) as it was.
func (v VRRP) WithDefaults() VRRP {
	v.TrackBackends = append([]TrackBackend(nil), v.TrackBackends...)
	v.TrackInterfaces = append([]TrackInterface(nil), v.TrackInterfaces...)
	v.ApplyDefaults()
	return v
}

// PreemptEnabled reports whether preemption is on (the default).
func (v *VRRP) PreemptEnabled() bool { return v.Preempt == nil || *v.Preempt }

// VIPPrefixes returns the virtual IPs as prefixes; a bare address is a host prefix (/32). The
// address keeps its host bits: 192.0.2.10/24 is the address 192.0.2.10 on a /24. Entries that do
// not parse are skipped (validation reports them).
func (v *VRRP) VIPPrefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(v.VirtualIPs))
	for _, s := range v.VirtualIPs {
		if p, err := parseVIP(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// parseVIP reads a virtual IP: a CIDR with the address's host bits kept, or a bare address.
func parseVIP(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// vrrp validates the vrrp list. It runs after the backends were validated, since trackers name
// them.
func (v *validator) vrrp(list []VRRP) {
	names := map[string]string{}
	routers := map[string]string{} // interface + VRID -> path
	vips := map[netip.Addr]string{}
	for i := range list {
		v.vrrpInstance(indexPath("vrrp", i), &list[i], names, routers, vips)
	}
}

func (v *validator) vrrpInstance(p string, r *VRRP, names, routers map[string]string, vips map[netip.Addr]string) {
	if r.Name != "" {
		v.name(p+".name", r.Name, "vrrp instance", names)
	}
	ifOK := v.interfaceName(p+".interface", r.Interface, true)
	vridOK := true
	switch {
	case r.VirtualRouterID == 0 && !v.src.present(p+".virtual_router_id"):
		v.errorf(p+".virtual_router_id", "is required (1 to 255, the same on every member of the pair)")
		vridOK = false
	case r.VirtualRouterID < 1 || r.VirtualRouterID > 255:
		v.errorf(p+".virtual_router_id", "must be between 1 and 255")
		vridOK = false
	}
	if ifOK && vridOK {
		key := r.Interface + "|" + strconv.Itoa(r.VirtualRouterID)
		first, dup := routers[key]
		if dup {
			v.errorf(p+".virtual_router_id", "virtual router %d on %s is already defined by %s", r.VirtualRouterID, r.Interface, first)
		} else {
			routers[key] = p
		}
		if r.Name == "" && !dup {
			// The default name must be unique too: it keys the instance in the admin API.
			name := r.Interface + "-" + strconv.Itoa(r.VirtualRouterID)
			if first, dup := names[name]; dup {
				v.errorf(p, "the default name %q of this instance is taken by %s; name the instance", name, first)
			} else {
				names[name] = p
			}
		}
	}
	switch {
	case r.Priority == vrrpOwnerPriority:
		v.errorf(p+".priority", "255 is reserved for a router that owns the virtual IPs as its own addresses; waage adds them itself, so use 1 to 254")
	case r.Priority < 0 || r.Priority > 254 || (r.Priority == 0 && v.src.present(p+".priority")):
		v.errorf(p+".priority", "must be between 1 and 254")
	}
	v.advertInterval(p+".advert_interval", r.AdvertInterval)
	switch d := r.PreemptDelay; {
	case d < 0:
		v.errorf(p+".preempt_delay", "must not be negative")
	case d.D() > maxVRRPDelay:
		v.errorf(p+".preempt_delay", "must be at most %s", maxVRRPDelay)
	}
	v.virtualIPs(p+".virtual_ips", r.VirtualIPs, vips)
	for k, s := range r.UnicastPeers {
		v.ipv4Addr(indexPath(p+".unicast_peers", k), s, "peer")
	}
	if r.UnicastSrc != "" {
		if len(r.UnicastPeers) == 0 {
			v.errorf(p+".unicast_src", "only used with unicast_peers")
		} else {
			v.ipv4Addr(p+".unicast_src", r.UnicastSrc, "source")
		}
	}
	seen := map[string]string{}
	for k, t := range r.TrackBackends {
		tp := indexPath(p+".track_backends", k)
		if t.Backend == "" {
			v.errorf(tp+".backend", "is required")
		} else if first, dup := seen[t.Backend]; dup {
			v.errorf(tp+".backend", "backend %q is already tracked by %s", t.Backend, first)
		} else {
			seen[t.Backend] = tp
		}
		v.ref(tp+".backend", t.Backend)
		v.trackWeight(tp+".weight", t.Weight)
	}
	seen = map[string]string{}
	for k, t := range r.TrackInterfaces {
		tp := indexPath(p+".track_interfaces", k)
		if v.interfaceName(tp+".interface", t.Interface, true) {
			if first, dup := seen[t.Interface]; dup {
				v.errorf(tp+".interface", "interface %q is already tracked by %s", t.Interface, first)
			} else {
				seen[t.Interface] = tp
			}
		}
		v.trackWeight(tp+".weight", t.Weight)
	}
	if len(r.Notify) > 0 && r.Notify[0] == "" {
		v.errorf(indexPath(p+".notify", 0), "the program must not be empty")
	}
	v.positive(p+".notify_timeout", r.NotifyTimeout)
	if r.GARPRepeat < 0 || r.GARPRepeat > maxGARPRepeat || (r.GARPRepeat == 0 && v.src.present(p+".garp_repeat")) {
		v.errorf(p+".garp_repeat", "must be between 1 and %d", maxGARPRepeat)
	}
	switch d := r.GARPInterval; {
	case d < 0:
		v.errorf(p+".garp_interval", "must not be negative")
	case d.D() > 10*time.Second:
		v.errorf(p+".garp_interval", "must be at most 10s")
	}
	if d := r.GARPDelay; d != nil {
		switch {
		case *d < 0:
			v.errorf(p+".garp_delay", "must not be negative (0s turns the second round off)")
		case d.D() > maxVRRPDelay:
			v.errorf(p+".garp_delay", "must be at most %s", maxVRRPDelay)
		}
	}
}

// advertInterval checks an advert interval: absent means the default; given, it must be a
// whole number of centiseconds that fits the advert's 12-bit field.
func (v *validator) advertInterval(path string, d Duration) {
	switch {
	case d == 0 && !v.src.present(path):
	case d.D() < minAdvertInterval:
		v.errorf(path, "must be at least %s", minAdvertInterval)
	case d.D() > maxAdvertInterval:
		v.errorf(path, "must be at most %s (the protocol's limit)", maxAdvertInterval)
	case d.D()%(10*time.Millisecond) != 0:
		v.errorf(path, "must be a multiple of 10ms (VRRPv3 counts in centiseconds)")
	}
}

// interfaceName checks a network interface name as Linux accepts it.
func (v *validator) interfaceName(path, name string, required bool) bool {
	switch {
	case name == "":
		if required {
			v.errorf(path, "is required")
		}
		return false
	case len(name) > maxInterfaceName, name == "." || name == "..",
		strings.ContainsFunc(name, func(r rune) bool { return r == '/' || r == ':' || unicode.IsSpace(r) || !unicode.IsPrint(r) }):
		v.errorf(path, "invalid interface name %q: at most %d characters, no '/', ':' or spaces", name, maxInterfaceName)
		return false
	}
	return true
}

// virtualIPs checks the virtual IP list: at least one, IPv4, no address twice in the whole file.
func (v *validator) virtualIPs(path string, list []string, seen map[netip.Addr]string) {
	if len(list) == 0 {
		v.errorf(path, "at least one virtual IP is required")
		return
	}
	if len(list) > maxVirtualIPs {
		v.errorf(path, "at most %d virtual IPs per instance", maxVirtualIPs)
	}
	for k, s := range list {
		ip := indexPath(path, k)
		pfx, err := parseVIP(s)
		if err != nil {
			v.errorf(ip, "invalid virtual IP %q: want a CIDR such as 192.0.2.10/24 or an address", s)
			continue
		}
		a := pfx.Addr()
		switch {
		case a.Is6() && !a.Is4In6():
			v.errorf(ip, "IPv6 virtual IPs are not supported yet")
			continue
		case a.Is4In6():
			v.errorf(ip, "write the IPv4 address %s without the IPv6 prefix", a.Unmap())
			continue
		case !a.IsGlobalUnicast():
			v.errorf(ip, "%s is not a unicast address", a)
			continue
		case pfx.Bits() < pfx.Addr().BitLen() && a == pfx.Masked().Addr():
			v.errorf(ip, "%s is the network address of %s; give the virtual IP itself, e.g. %s", a, pfx.Masked(), pfx.Masked().Addr().Next())
			continue
		}
		if first, dup := seen[a]; dup {
			v.errorf(ip, "virtual IP %s is already used by %s", a, first)
			continue
		}
		seen[a] = ip
	}
}

// ipv4Addr checks a single IPv4 address (no prefix length).
func (v *validator) ipv4Addr(path, s, what string) {
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		v.errorf(path, "invalid %s address %q: want an IPv4 address", what, s)
	case !a.Is4():
		v.errorf(path, "invalid %s address %q: only IPv4 is supported", what, s)
	case !a.IsGlobalUnicast():
		v.errorf(path, "%s is not a unicast address", a)
	}
}

// trackWeight checks a tracker's weight: absent means the default (254).
func (v *validator) trackWeight(path string, w int) {
	if w < 0 || w > 254 || (w == 0 && v.src.present(path)) {
		v.errorf(path, "must be between 1 and 254")
	}
}
