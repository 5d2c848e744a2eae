package config

import (
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// The allowed values of the enumerated fields. The lists live here rather than in the packages that
// implement them so that config imports nothing from the data path (see DESIGN.md, dependencies
// point downward); a package that adds an algorithm adds its name here too.
var (
	logLevels     = []string{"debug", "info", "warn", "error"}
	logFormats    = []string{"text", "json"}
	accessFormats = []string{"combined", "json"}
	modes         = []string{"http", "tcp", "udp"}
	algorithms    = []string{"round_robin", "weighted_round_robin", "least_connections", "source_ip_hash",
		"random_two_choices", "least_response_time", "hash", "maglev"}
	serverStates = []string{"ready", "drain", "maintenance"}
)

// maxWeight bounds server weights so that weighted algorithms can sum them without overflow and
// spread a cycle over a bounded number of picks.
const maxWeight = 1000

// namePattern is the charset of frontend, backend and route names: they appear in metrics labels,
// log lines and admin API URLs, where spaces, slashes and quotes would need escaping.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

const nameRule = "use letters, digits, '_', '.' and '-', starting with a letter or digit"

// validate checks a decoded Config and returns every problem found. src locates the problems in
// the source file; it may be nil for a Config built in code, and then the errors have no position.
func validate(c *Config, file string, src *sourceMap) ErrorList {
	v := &validator{file: file, src: src, backends: map[string]bool{}}
	v.admin(c.Admin)
	v.oneOf("log.level", c.Log.Level, logLevels)
	v.oneOf("log.format", c.Log.Format, logFormats)
	v.oneOf("log.access_format", c.Log.AccessFormat, accessFormats)
	// Backends first: frontends refer to them by name.
	seen := map[string]string{}
	for i := range c.Backends {
		v.backend(indexPath("backends", i), &c.Backends[i], seen)
	}
	seen = map[string]string{}
	listens := map[string]string{}
	for i := range c.Frontends {
		v.frontend(indexPath("frontends", i), &c.Frontends[i], seen, listens)
	}
	v.vrrp(c.VRRP)
	v.bgp(c.BGP)
	v.nonNegative("shutdown_timeout", c.ShutdownTimeout)
	v.kubernetes(c.Kubernetes, listens, c.VRRP)
	v.etcd(c.Etcd)
	return v.errs
}

// validator collects the problems of one Config.
type validator struct {
	file string
	src  *sourceMap
	errs ErrorList
	// backends holds the defined backend names; backendsUnknown is set when a backend name failed
	// to decode, so that references to it are not reported as undefined.
	backends        map[string]bool
	backendNames    []string
	backendsUnknown bool
}

// errorf reports a problem with the value at path.
func (v *validator) errorf(path, format string, args ...any) {
	v.errorAt(v.src.value(path), path, format, args...)
}

// keyErrorf reports a problem with the key at path (a header name, say) rather than its value.
func (v *validator) keyErrorf(path, format string, args ...any) {
	v.errorAt(v.src.key(path), path, format, args...)
}

func (v *validator) errorAt(p pos, path, format string, args ...any) {
	if v.src.isFailed(path) {
		return
	}
	v.errs = append(v.errs, &Error{File: v.file, Line: p.line, Col: p.col, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// oneOf checks an enumerated field; empty means "use the default" and is fine.
func (v *validator) oneOf(path, value string, allowed []string) bool {
	if value == "" || slices.Contains(allowed, value) {
		return true
	}
	v.errorf(path, "invalid value %q (valid: %s)", value, strings.Join(allowed, ", "))
	return false
}

// name checks a required, unique object name; seen maps names to the path of their first use.
func (v *validator) name(path, name, kind string, seen map[string]string) {
	switch first, dup := seen[name]; {
	case name == "":
		v.errorf(path, "is required")
	case !namePattern.MatchString(name):
		v.errorf(path, "invalid %s name %q: %s", kind, name, nameRule)
	case dup:
		v.errorf(path, "duplicate %s name %q (also %s)", kind, name, first)
	default:
		seen[name] = parentPath(path)
	}
}

// nonNegative checks a duration where 0 means "use the default".
func (v *validator) nonNegative(path string, d Duration) {
	if d < 0 {
		v.errorf(path, "must not be negative")
	}
}

// positive checks a duration that must be > 0 when given; absent (0) means "use the default".
func (v *validator) positive(path string, d Duration) {
	if d < 0 || (d == 0 && v.src.present(path)) {
		v.errorf(path, "must be greater than 0")
	}
}

func (v *validator) admin(a Admin) {
	if a.Listen == "" {
		return
	}
	host, _, ok := v.hostPort("admin.listen", a.Listen, 0, false)
	if ok && !isLoopback(host) && a.Token == "" {
		// The admin API can drain servers and reload the config: off loopback it must not be open
		// to anyone who can reach the port.
		p := v.src.value("admin.listen")
		if v.src.present("admin.token") {
			p = v.src.value("admin.token")
		}
		v.errorAt(p, "admin.token", "required when admin.listen is not loopback")
	}
}

// isLoopback reports whether a listen host only accepts local connections.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	addr, err := netip.ParseAddr(host)
	return err == nil && addr.IsLoopback()
}

// hostPort checks a host:port address and returns its host and port. Ports below minPort are
// errors (listen allows 0 = any free port; servers need a real one). The host may be a name, an
// IPv4 address or a bracketed IPv6 address; needHost makes an empty host an error.
func (v *validator) hostPort(path, s string, minPort int, needHost bool) (string, int, bool) {
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		hint := ""
		if strings.Count(s, ":") > 1 && !strings.HasPrefix(s, "[") {
			hint = " (write IPv6 addresses in brackets, as in [::1]:80)"
		}
		v.errorf(path, "invalid address %q: want host:port%s", s, hint)
		return "", 0, false
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < minPort || port > 65535 || strings.TrimLeft(portStr, "0123456789") != "" {
		v.errorf(path, "invalid address %q: port must be a number from %d to 65535", s, minPort)
		return "", 0, false
	}
	switch {
	case host == "":
		if needHost {
			v.errorf(path, "invalid address %q: host is required", s)
			return "", 0, false
		}
	case strings.HasPrefix(s, "["):
		if addr, err := netip.ParseAddr(host); err != nil || !addr.Is6() {
			v.errorf(path, "invalid address %q: only IPv6 addresses go in brackets", s)
			return "", 0, false
		}
	case !isHostname(host):
		if _, err := netip.ParseAddr(host); err != nil {
			v.errorf(path, "invalid address %q: %q is neither an IP address nor a host name", s, host)
			return "", 0, false
		}
	}
	return host, port, true
}

// isHostname reports whether s is a DNS name: dot-separated labels of letters, digits, '-' and
// '_' (found in service names), 1 to 63 bytes each, not starting or ending with '-'.
func isHostname(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !(c == '-' || c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
				return false
			}
		}
	}
	return true
}

// isToken reports whether s is an RFC 9110 token, the syntax of header names, methods and cookie
// names.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// ref checks a reference to a backend by name; empty references are the caller's business.
func (v *validator) ref(path, name string) {
	if name == "" || v.backends[name] || v.backendsUnknown {
		return
	}
	v.errorf(path, "backend %q is not defined%s", name, suggest(name, v.backendNames))
}

func (v *validator) frontend(p string, f *Frontend, seen, listens map[string]string) {
	v.name(p+".name", f.Name, "frontend", seen)
	modeOK := v.oneOf(p+".mode", f.Mode, modes)
	mode := f.Mode
	if mode == "" {
		mode = "http"
	}
	v.listen(p+".listen", f.Listen, mode, listens)
	v.freebind(p, f)
	v.nonNegative(p+".timeouts.client_header", f.Timeouts.ClientHeader)
	v.nonNegative(p+".timeouts.client_idle", f.Timeouts.ClientIdle)
	v.nonNegative(p+".timeouts.tunnel", f.Timeouts.Tunnel)
	if !modeOK {
		return
	}
	switch {
	case mode == "http":
		if f.Backend != "" {
			v.errorf(p+".backend", "not allowed on an http frontend; use default_backend")
		}
	case mode == "udp" && len(f.Routes) > 0:
		v.errorf(p+".routes", "not supported on udp frontends; name one backend with backend")
		return
	case len(f.Routes) > 0: // tcp with routes
		if f.Backend != "" {
			v.errorf(p+".backend", "not allowed together with routes; use default_backend")
		}
		if f.DefaultBackend == "" {
			v.errorf(p+".default_backend", "required on a tcp frontend with routes")
		}
	default: // tcp or udp with one backend
		if f.DefaultBackend != "" {
			v.errorf(p+".default_backend", "only used with routes; use backend on a %s frontend", mode)
		} else if f.Backend == "" {
			v.errorf(p+".backend", "required on a %s frontend", mode)
		}
	}
	v.ref(p+".backend", f.Backend)
	v.ref(p+".default_backend", f.DefaultBackend)
	v.limits(p, &f.Limits, &f.Access, mode)
	if f.Limits.HeaderTimeout != 0 && f.Timeouts.ClientHeader != 0 && f.Limits.HeaderTimeout != f.Timeouts.ClientHeader {
		v.errorf(p+".limits.header_timeout", "differs from timeouts.client_header, which is the same setting; set one")
	}
	v.l4Frontend(p, f, mode)
	routeNames := map[string]string{}
	for j := range f.Routes {
		v.route(indexPath(p+".routes", j), j, &f.Routes[j], mode, routeNames)
	}
}

// listen checks the listen addresses of a frontend. One address may serve only one frontend per
// transport (http and tcp share TCP ports, udp has its own); port 0 picks a free port each time
// and so never clashes.
func (v *validator) listen(path string, addrs []string, mode string, used map[string]string) {
	if len(addrs) == 0 {
		v.errorf(path, "at least one address is required")
		return
	}
	transport := "tcp"
	if mode == "udp" {
		transport = "udp"
	}
	for k, a := range addrs {
		lp := indexPath(path, k)
		host, port, ok := v.hostPort(lp, a, 0, false)
		if !ok || port == 0 {
			continue
		}
		if addr, err := netip.ParseAddr(host); err == nil {
			host = addr.String()
		}
		key := transport + " " + net.JoinHostPort(strings.ToLower(host), strconv.Itoa(port))
		if first, dup := used[key]; dup {
			v.errorf(lp, "address %q is already used by %s", a, first)
			continue
		}
		used[key] = lp
	}
}

// httpOnly lists the route fields that only an HTTP frontend can act on; on a tcp route they would
// be ignored, and a route that silently matches more than it says is worse than an error.
func httpOnly(r *Route) []string {
	var keys []string
	add := func(key string, set bool) {
		if set {
			keys = append(keys, key)
		}
	}
	m := &r.Match
	add("match.path", m.Path != "")
	add("match.path_prefix", m.PathPrefix != "")
	add("match.path_regex", m.PathRegex != "")
	add("match.methods", len(m.Methods) > 0)
	add("match.headers", len(m.Headers) > 0)
	add("match.cookies", len(m.Cookies) > 0)
	add("match.user_agent", m.UserAgent != "")
	add("match.query", len(m.Query) > 0)
	add("strip_prefix", r.StripPrefix != "")
	add("redirect", r.Redirect != nil)
	add("rewrite", r.Rewrite != nil)
	add("request_headers", !r.RequestHeaders.empty())
	add("response_headers", !r.ResponseHeaders.empty())
	return keys
}

func (h *HeaderOps) empty() bool { return len(h.Set) == 0 && len(h.Add) == 0 && len(h.Remove) == 0 }

func (v *validator) route(p string, j int, r *Route, mode string, names map[string]string) {
	switch name := r.Name; {
	case name == "":
		name = defaultRouteName(j)
		if first, dup := names[name]; dup {
			v.errorf(p, "the default name %q of this route is taken by %s; name the route", name, first)
		} else {
			names[name] = p
		}
	case !namePattern.MatchString(name):
		v.errorf(p+".name", "invalid route name %q: %s", name, nameRule)
	default:
		if first, dup := names[name]; dup {
			v.errorf(p+".name", "duplicate route name %q (also %s)", name, first)
		} else {
			names[name] = p
		}
	}
	switch {
	case r.Redirect != nil && r.Backend != "":
		v.errorf(p+".backend", "not allowed with redirect (a redirect route answers by itself)")
	case r.Redirect == nil && r.Backend == "":
		v.errorf(p+".backend", "is required")
	default:
		v.ref(p+".backend", r.Backend)
	}
	if mode != "http" {
		for _, key := range httpOnly(r) {
			v.errorf(p+"."+key, "only valid on http frontends")
		}
	}
	v.match(p+".match", &r.Match)
	v.l4Match(p+".match", &r.Match, mode)
	if r.StripPrefix != "" && !strings.HasPrefix(r.StripPrefix, "/") {
		v.errorf(p+".strip_prefix", `must start with "/"`)
	}
	v.headerOps(p+".request_headers", &r.RequestHeaders, true)
	v.headerOps(p+".response_headers", &r.ResponseHeaders, false)
	v.routeLimits(p, r.Limits, mode)
	if mode == "http" {
		v.redirectRewrite(p, r)
	}
}

// redirectStatuses are the statuses a route's redirect may answer with.
var redirectStatuses = []int{301, 302, 303, 307, 308}

// redirectRewrite checks a route's redirect and rewrite. A redirect route sends nothing to a
// backend, so the fields that change the forwarded request are errors there rather than ignored.
func (v *validator) redirectRewrite(p string, r *Route) {
	if rd := r.Redirect; rd != nil {
		for _, f := range []struct {
			key string
			set bool
		}{
			{"strip_prefix", r.StripPrefix != ""}, {"rewrite", r.Rewrite != nil},
			{"request_headers", !r.RequestHeaders.empty()}, {"response_headers", !r.ResponseHeaders.empty()},
		} {
			if f.set {
				v.errorf(p+"."+f.key, "has no effect on a route with redirect")
			}
		}
		rp := p + ".redirect"
		v.oneOf(rp+".scheme", rd.Scheme, []string{"http", "https"})
		if _, err := netip.ParseAddr(rd.Host); rd.Host != "" && err != nil && !isHostname(rd.Host) {
			v.errorf(rp+".host", "invalid host %q: want a host name like www.example.com or an IP address", rd.Host)
		}
		if rd.Port < 0 || rd.Port > 65535 {
			v.errorf(rp+".port", "must be between 1 and 65535")
		}
		if rd.Status != 0 && !slices.Contains(redirectStatuses, rd.Status) {
			v.errorf(rp+".status", "invalid status %d (valid: 301, 302, 303, 307, 308)", rd.Status)
		}
		v.pathModifier(rp, rd.Path, rd.ReplacePrefix, r)
	}
	if rw := r.Rewrite; rw != nil && r.Redirect == nil {
		wp := p + ".rewrite"
		if rw.Path == "" && rw.ReplacePrefix == "" {
			v.errorf(wp, "needs path or replace_prefix")
		}
		if r.StripPrefix != "" {
			v.errorf(p+".strip_prefix", "cannot be combined with rewrite")
		}
		v.pathModifier(wp, rw.Path, rw.ReplacePrefix, r)
	}
}

// pathModifier checks the path and replace_prefix of a redirect or rewrite at p.
func (v *validator) pathModifier(p, path, prefix string, r *Route) {
	if path != "" && !ValidPath(path) {
		v.errorf(p+".path", "invalid path %q: %s", path, pathRule)
	}
	if prefix == "" {
		return
	}
	switch {
	case path != "":
		v.errorf(p+".replace_prefix", "cannot be combined with path")
	case !ValidPath(prefix):
		v.errorf(p+".replace_prefix", "invalid path %q: %s", prefix, pathRule)
	case r.Match.PathPrefix == "":
		v.errorf(p+".replace_prefix", "needs match.path_prefix (the prefix it replaces)")
	}
}

const pathRule = `must start with "/" and hold only the characters of a URL path, others %-escaped`

// ValidPath reports whether s can be sent as the path of a URL as it stands: it starts with "/"
// and holds only the characters RFC 3986 allows in a path, with well-formed %-escapes.
func ValidPath(s string) bool {
	if !strings.HasPrefix(s, "/") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', strings.IndexByte("-._~!$&'()*+,;=:@/", c) >= 0:
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			i += 2
		default:
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func (v *validator) match(p string, m *Match) {
	for k, h := range m.Host {
		v.host(indexPath(p+".host", k), strings.ToLower(h))
	}
	for _, f := range []struct{ key, val string }{{"path", m.Path}, {"path_prefix", m.PathPrefix}} {
		if f.val != "" && !strings.HasPrefix(f.val, "/") {
			v.errorf(p+"."+f.key, `must start with "/"`)
		}
	}
	if m.PathRegex != "" {
		if _, err := regexp.Compile(m.PathRegex); err != nil {
			v.errorf(p+".path_regex", "%v", err)
		}
	}
	for k, method := range m.Methods {
		switch mp := indexPath(p+".methods", k); {
		case !isToken(method):
			v.errorf(mp, "invalid method %q", method)
		case strings.ToUpper(method) != method:
			v.errorf(mp, "method %q must be upper case (%s)", method, strings.ToUpper(method))
		}
	}
	v.conditions(p+".headers", m.Headers, "header", isToken)
	v.conditions(p+".cookies", m.Cookies, "cookie", isToken)
	v.conditions(p+".query", m.Query, "query parameter", func(s string) bool { return s != "" })
	v.pattern(p+".user_agent", m.UserAgent)
	for k, s := range m.Source {
		if !validSource(s) {
			v.errorf(indexPath(p+".source", k), "invalid source %q: want a CIDR (10.0.0.0/8) or an IP address", s)
		}
	}
}

// validSource accepts a CIDR or a single IPv4 or IPv6 address.
func validSource(s string) bool {
	_, err := ParsePrefix(s)
	return err == nil
}

// ParsePrefix reads a source as the config writes it (match.source, proxy_protocol.trusted): a
// CIDR, masked ("10.1.2.3/8" is 10.0.0.0/8), or a single address as a one-address prefix.
// IPv4-mapped IPv6 addresses are unmapped, so they match the IPv4 clients they stand for.
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, err
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// host checks one (lower-cased) match.host entry: an exact name or a "*." wildcard. The Host header
// is matched without its port, so a port here could never match.
func (v *validator) host(path, h string) {
	name, wildcard := strings.CutPrefix(h, "*.")
	_, ipErr := netip.ParseAddr(h)
	switch {
	case h == "":
		v.errorf(path, "must not be empty")
	case strings.Contains(name, "*"):
		v.errorf(path, "invalid host %q: only a leading wildcard label is allowed, as in *.example.com", h)
	case !wildcard && ipErr == nil:
		// An IP literal is a valid Host.
	case strings.Contains(name, ":"):
		v.errorf(path, "invalid host %q: must not include a port (hosts match without the port)", h)
	case !isHostname(name):
		v.errorf(path, "invalid host %q: want a host name like api.example.com or *.example.com", h)
	}
}

// conditions checks a name -> value condition map: names with validName, values with pattern.
func (v *validator) conditions(path string, m StringMap, what string, validName func(string) bool) {
	for _, kv := range m {
		kp := fieldPath(path, kv.Key)
		if !validName(kv.Key) {
			v.keyErrorf(kp, "invalid %s name %q", what, kv.Key)
		}
		v.pattern(kp, kv.Value)
	}
}

// pattern checks a match value: "~regex" must compile; anything else is an exact value.
func (v *validator) pattern(path, s string) {
	if re, ok := strings.CutPrefix(s, "~"); ok {
		if _, err := regexp.Compile(re); err != nil {
			v.errorf(path, "%v", err)
		}
	}
}

// headerOps checks header rewrites. Values with CR, LF or NUL would let a config smuggle extra
// header lines into every request, so they are refused here as they are on the wire.
//
// Fields that frame the message (Content-Length, Transfer-Encoding, Connection and the other
// hop-by-hop fields) are waage's to write: changing them would desynchronise the two ends. A
// request has exactly one Host, so it can be set but neither added nor removed.
func (v *validator) headerOps(path string, h *HeaderOps, request bool) {
	for _, op := range []struct {
		key string
		m   StringMap
	}{{"set", h.Set}, {"add", h.Add}} {
		for _, kv := range op.m {
			kp := fieldPath(path+"."+op.key, kv.Key)
			if !isToken(kv.Key) {
				v.keyErrorf(kp, "invalid header name %q", kv.Key)
			} else if msg := managedHeader(kv.Key, op.key, request); msg != "" {
				v.keyErrorf(kp, "%s", msg)
			}
			if strings.ContainsAny(kv.Value, "\r\n\x00") {
				v.errorf(kp, "header value must not contain CR, LF or NUL")
			}
		}
	}
	for k, name := range h.Remove {
		if !isToken(name) {
			v.errorf(indexPath(path+".remove", k), "invalid header name %q", name)
		} else if msg := managedHeader(name, "remove", request); msg != "" {
			v.errorf(indexPath(path+".remove", k), "%s", msg)
		}
	}
}

// managedHeader explains why an operation on a header field is not allowed, or returns "".
func managedHeader(name, op string, request bool) string {
	switch strings.ToLower(name) {
	case "content-length", "transfer-encoding", "connection", "keep-alive", "proxy-connection", "upgrade", "te", "trailer":
		return fmt.Sprintf("%s frames the message and is managed by waage; it cannot be changed", name)
	case "host":
		if request && op != "set" {
			return fmt.Sprintf("a request has exactly one Host; use set to replace it (%s is not possible)", op)
		}
	}
	return ""
}

func (v *validator) backend(p string, b *Backend, seen map[string]string) {
	v.name(p+".name", b.Name, "backend", seen)
	if b.Name != "" && !v.backends[b.Name] {
		v.backends[b.Name] = true
		v.backendNames = append(v.backendNames, b.Name)
	}
	if v.src.isFailed(p + ".name") {
		v.backendsUnknown = true
	}
	v.oneOf(p+".algorithm", b.Algorithm, algorithms)
	if b.HashKey != "" {
		if b.Algorithm != "hash" && b.Algorithm != "maglev" {
			v.errorf(p+".hash_key", "only used with algorithms hash and maglev")
		} else if !validHashKey(b.HashKey) {
			v.errorf(p+".hash_key", "invalid hash key %q (valid: uri, header:NAME, cookie:NAME)", b.HashKey)
		}
	}
	v.maglevTableSize(p, b)
	names := map[string]string{}
	for k := range b.Servers {
		v.server(indexPath(p+".servers", k), &b.Servers[k], names)
	}
	if b.Sticky != nil {
		switch c := b.Sticky.Cookie; {
		case c == "":
			v.errorf(p+".sticky.cookie", "is required")
		case !isToken(c):
			v.errorf(p+".sticky.cookie", "invalid cookie name %q", c)
		}
	}
	v.positive(p+".timeouts.connect", b.Timeouts.Connect)
	v.positive(p+".timeouts.response", b.Timeouts.Response)
	if b.Pool.MaxIdle < -1 {
		v.errorf(p+".pool.max_idle", "must be -1 (no pooling), 0 (default) or more")
	}
	v.nonNegative(p+".pool.idle_timeout", b.Pool.IdleTimeout)
	v.backendHealth(p, b)
	v.l4Backend(p, b)
}

// maxMaglevTableSize is balance.MaxMaglevTableSize (config imports nothing from the data path).
const maxMaglevTableSize = 1 << 22

// maglevTableSize checks maglev_table_size: the table's size must be prime, or the servers'
// permutations would not cover it, and larger than the server count, or some server would own
// no entry.
func (v *validator) maglevTableSize(p string, b *Backend) {
	n := b.MaglevTableSize
	switch {
	case n == 0:
	case b.Algorithm != "maglev":
		v.errorf(p+".maglev_table_size", "only used with algorithm maglev")
	case n <= len(b.Servers) || n > maxMaglevTableSize || !isPrime(n):
		v.errorf(p+".maglev_table_size", "must be a prime number larger than the number of servers (%d) and at most %d, ideally 100 times the servers or more (65537, 655373)",
			len(b.Servers), maxMaglevTableSize)
	}
}

// isPrime reports whether n is prime; ProbablyPrime(0) (Baillie-PSW) is exact below 2^64.
func isPrime(n int) bool {
	return n > 1 && big.NewInt(int64(n)).ProbablyPrime(0)
}

// validHashKey accepts uri, header:NAME and cookie:NAME.
func validHashKey(k string) bool {
	if k == "uri" {
		return true
	}
	kind, name, _ := strings.Cut(k, ":")
	return (kind == "header" || kind == "cookie") && isToken(name)
}

func (v *validator) server(p string, s *Server, names map[string]string) {
	if s.Address == "" {
		v.errorf(p+".address", "is required")
	} else {
		v.hostPort(p+".address", s.Address, 1, true)
	}
	name := s.Name
	if name == "" {
		name = s.Address
	} else if strings.ContainsFunc(name, func(r rune) bool { return r == '/' || unicode.IsSpace(r) || !unicode.IsPrint(r) }) {
		// Server names are path segments of the admin API.
		v.errorf(p+".name", "invalid server name %q: must not contain '/', spaces or control characters", name)
	}
	if name != "" {
		if first, dup := names[name]; dup {
			v.errorf(p+".name", "duplicate server name %q (also %s)", name, first)
		} else {
			names[name] = p
		}
	}
	if s.Weight != nil && (*s.Weight < 0 || *s.Weight > maxWeight) {
		v.errorf(p+".weight", "must be between 0 and %d", maxWeight)
	}
	v.oneOf(p+".state", s.State, serverStates)
}

// suggest returns ` (did you mean "x"?)` for the closest of names within edit distance 2 of name,
// since most undefined references are typos.
func suggest(name string, names []string) string {
	best, bestDist := "", 3
	for _, n := range names {
		if d := editDistance(name, n); d < bestDist && d < len(name) {
			best, bestDist = n, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
