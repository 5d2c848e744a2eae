package l7

import (
	"bytes"
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"strings"

	"github.com/waage/waage/internal/config"
)

// Route is one compiled routing rule: every condition must hold for the route to match.
type Route struct {
	Name    string
	Backend *Backend

	hosts      []string // exact, lower case
	hostSuffix []string // from *.example.com: ".example.com"
	path       string
	pathPrefix string
	pathRegex  *regexp.Regexp
	methods    []string
	headers    []valueMatch
	cookies    []valueMatch
	query      []valueMatch
	userAgent  *valueMatch
	sources    []netip.Prefix

	stripPrefix string
	reqOps      headerOps
	respOps     headerOps

	// rewrite changes the forwarded path (config rewrite); nil: strip_prefix, if any, applies.
	rewrite *pathMod
	// redirect answers the route's requests itself (config redirect); Backend is nil then.
	redirect *redirect

	// Limits are the route's per-request limits when it overrides the frontend's; nil: the
	// frontend's (Handler.Limits).
	Limits *RequestLimits
}

// valueMatch is an exact value or, written "~regex", a regular expression.
type valueMatch struct {
	name  string // header (lower case), cookie or query parameter name
	exact string
	re    *regexp.Regexp
}

func (v *valueMatch) match(b []byte) bool {
	if v.re != nil {
		return v.re.Match(b)
	}
	return string(b) == v.exact
}

func compileValue(name, spec string) (valueMatch, error) {
	v := valueMatch{name: name}
	if strings.HasPrefix(spec, "~") {
		re, err := regexp.Compile(spec[1:])
		if err != nil {
			return v, err
		}
		v.re = re
		return v, nil
	}
	v.exact = spec
	return v, nil
}

// headerOps are compiled header changes. The written names keep the config's spelling.
type headerOps struct {
	drop []string // lower case: removed, or replaced by set
	set  []config.KV
	add  []config.KV
}

func (o *headerOps) empty() bool { return len(o.drop) == 0 && len(o.add) == 0 }

// removes reports whether the ops remove or replace the field called name.
func (o *headerOps) removes(name []byte) bool {
	for _, r := range o.drop {
		if eqFold(name, r) {
			return true
		}
	}
	return false
}

// removesName is removes for a lower-case name.
func (o *headerOps) removesName(name string) bool {
	for _, r := range o.drop {
		if r == name {
			return true
		}
	}
	return false
}

// setsHost returns the Host value the ops set, if any.
func (o *headerOps) setsHost() (string, bool) {
	for _, kv := range o.set {
		if strings.EqualFold(kv.Key, "host") {
			return kv.Value, true
		}
	}
	return "", false
}

func compileOps(c config.HeaderOps) headerOps {
	o := headerOps{set: c.Set, add: c.Add}
	for _, r := range c.Remove {
		o.drop = append(o.drop, strings.ToLower(r))
	}
	for _, kv := range c.Set {
		o.drop = append(o.drop, strings.ToLower(kv.Key))
	}
	return o
}

// compileRoute builds a Route from its config; backends maps names to compiled backends.
func compileRoute(rc config.Route, backends map[string]*Backend) (*Route, error) {
	r := &Route{Name: rc.Name, stripPrefix: strings.TrimSuffix(rc.StripPrefix, "/")}
	m := rc.Match
	if rc.Redirect != nil {
		r.redirect = compileRedirect(rc.Redirect, m.PathPrefix)
	} else {
		b, ok := backends[rc.Backend]
		if !ok {
			return nil, fmt.Errorf("route %q: backend %q is not defined", rc.Name, rc.Backend)
		}
		r.Backend = b
	}
	if rw := rc.Rewrite; rw != nil {
		pm := compilePathMod(rw.Path, rw.ReplacePrefix, m.PathPrefix)
		r.rewrite = &pm
	}
	for _, h := range m.Host {
		h = strings.ToLower(strings.TrimSuffix(h, "."))
		if a, err := netip.ParseAddr(h); err == nil && a.Is6() {
			h = "[" + h + "]" // requests carry IPv6 literals in brackets
		}
		if strings.HasPrefix(h, "*.") {
			r.hostSuffix = append(r.hostSuffix, h[1:])
		} else {
			r.hosts = append(r.hosts, h)
		}
	}
	r.path, r.pathPrefix = m.Path, m.PathPrefix
	if m.PathRegex != "" {
		re, err := regexp.Compile(m.PathRegex)
		if err != nil {
			return nil, fmt.Errorf("route %q: path_regex: %w", rc.Name, err)
		}
		r.pathRegex = re
	}
	r.methods = m.Methods
	var err error
	if r.headers, err = compileValues("headers", m.Headers, true); err != nil {
		return nil, fmt.Errorf("route %q: %w", rc.Name, err)
	}
	if r.cookies, err = compileValues("cookies", m.Cookies, false); err != nil {
		return nil, fmt.Errorf("route %q: %w", rc.Name, err)
	}
	if r.query, err = compileValues("query", m.Query, false); err != nil {
		return nil, fmt.Errorf("route %q: %w", rc.Name, err)
	}
	if m.UserAgent != "" {
		v, err := compileValue("user-agent", m.UserAgent)
		if err != nil {
			return nil, fmt.Errorf("route %q: user_agent: %w", rc.Name, err)
		}
		r.userAgent = &v
	}
	for _, s := range m.Source {
		p, err := config.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("route %q: source: %w", rc.Name, err)
		}
		r.sources = append(r.sources, p)
	}
	r.reqOps = compileOps(rc.RequestHeaders)
	r.respOps = compileOps(rc.ResponseHeaders)
	return r, nil
}

func compileValues(field string, kvs config.StringMap, lowerName bool) ([]valueMatch, error) {
	var out []valueMatch
	for _, kv := range kvs {
		name := kv.Key
		if lowerName {
			name = strings.ToLower(name)
		}
		v, err := compileValue(name, kv.Value)
		if err != nil {
			return nil, fmt.Errorf("%s.%s: %w", field, kv.Key, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// matchInput is what routes match against, computed once per request.
type matchInput struct {
	req    *request
	host   []byte // lower case, no port, no trailing dot
	path   []byte // normalised
	source netip.Addr
}

// Match reports whether every condition of the route holds for the request.
func (r *Route) match(in *matchInput) bool {
	if len(r.hosts) > 0 || len(r.hostSuffix) > 0 {
		if !r.matchHost(in.host) {
			return false
		}
	}
	if r.path != "" && string(in.path) != r.path {
		return false
	}
	if r.pathPrefix != "" && !bytes.HasPrefix(in.path, []byte(r.pathPrefix)) {
		return false
	}
	if r.pathRegex != nil && !r.pathRegex.Match(in.path) {
		return false
	}
	if len(r.methods) > 0 {
		ok := false
		for _, m := range r.methods {
			if string(in.req.method) == m {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for i := range r.headers {
		if !matchHeader(in.req, &r.headers[i]) {
			return false
		}
	}
	if r.userAgent != nil && !matchHeader(in.req, r.userAgent) {
		return false
	}
	for i := range r.cookies {
		if !matchCookie(in.req, &r.cookies[i]) {
			return false
		}
	}
	for i := range r.query {
		if !matchQuery(in.req.query, &r.query[i]) {
			return false
		}
	}
	if len(r.sources) > 0 {
		ok := false
		for _, p := range r.sources {
			if p.Contains(in.source) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func (r *Route) matchHost(host []byte) bool {
	for _, h := range r.hosts {
		if string(host) == h {
			return true
		}
	}
	for _, s := range r.hostSuffix {
		if len(host) > len(s) && string(host[len(host)-len(s):]) == s {
			return true
		}
	}
	return false
}

// matchHeader holds when any field with the name has a matching value.
func matchHeader(req *request, v *valueMatch) bool {
	for i := range req.headers {
		h := &req.headers[i]
		if eqFold(h.name, v.name) && v.match(h.value) {
			return true
		}
	}
	return false
}

// matchCookie holds when a cookie of that name (in any Cookie field) has a matching value.
func matchCookie(req *request, v *valueMatch) bool {
	found := false
	forEachCookie(req, func(name, value []byte) bool {
		if string(name) == v.name && v.match(value) {
			found = true
			return false
		}
		return true
	})
	return found
}

// cookieValue returns the first value of the named cookie.
func cookieValue(req *request, name string) ([]byte, bool) {
	var out []byte
	found := false
	forEachCookie(req, func(n, v []byte) bool {
		if string(n) == name {
			out, found = v, true
			return false
		}
		return true
	})
	return out, found
}

// forEachCookie walks the cookie-pairs of every Cookie field (RFC 6265 5.4) until fn returns false.
func forEachCookie(req *request, fn func(name, value []byte) bool) {
	for i := range req.headers {
		h := &req.headers[i]
		if h.kind != hCookie {
			continue
		}
		v := h.value
		for len(v) > 0 {
			var pair []byte
			if j := bytes.IndexByte(v, ';'); j >= 0 {
				pair, v = v[:j], v[j+1:]
			} else {
				pair, v = v, nil
			}
			pair = trimOWS(pair)
			eq := bytes.IndexByte(pair, '=')
			if eq <= 0 {
				continue
			}
			val := pair[eq+1:]
			if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
				val = val[1 : len(val)-1]
			}
			if !fn(pair[:eq], val) {
				return
			}
		}
	}
}

// matchQuery holds when a parameter of that name (decoded) has a matching (decoded) value.
func matchQuery(q []byte, v *valueMatch) bool {
	for len(q) > 0 {
		var pair []byte
		if j := bytes.IndexByte(q, '&'); j >= 0 {
			pair, q = q[:j], q[j+1:]
		} else {
			pair, q = q, nil
		}
		if len(pair) == 0 {
			continue
		}
		key, val := pair, []byte(nil)
		if eq := bytes.IndexByte(pair, '='); eq >= 0 {
			key, val = pair[:eq], pair[eq+1:]
		}
		k, err := url.QueryUnescape(string(key))
		if err != nil || k != v.name {
			continue
		}
		dv, err := url.QueryUnescape(string(val))
		if err != nil {
			continue
		}
		if v.match([]byte(dv)) {
			return true
		}
	}
	return false
}

// Router picks the route for a request: the first route that matches, else the default backend.
type Router struct {
	routes  []*Route
	deflt   *Route // nil: 404
	needSrc bool
}

// Routes returns the compiled routes in order (the default route, which has no limits of its
// own, is not among them).
func (r *Router) Routes() []*Route { return r.routes }

// NewRouter compiles a frontend's routes. backends holds every compiled backend by name.
func NewRouter(fe config.Frontend, backends map[string]*Backend) (*Router, error) {
	rt := &Router{}
	for _, rc := range fe.Routes {
		r, err := compileRoute(rc, backends)
		if err != nil {
			return nil, fmt.Errorf("frontend %q: %w", fe.Name, err)
		}
		if len(r.sources) > 0 {
			rt.needSrc = true
		}
		rt.routes = append(rt.routes, r)
	}
	if fe.DefaultBackend != "" {
		b, ok := backends[fe.DefaultBackend]
		if !ok {
			return nil, fmt.Errorf("frontend %q: default_backend %q is not defined", fe.Name, fe.DefaultBackend)
		}
		rt.deflt = &Route{Name: "default", Backend: b}
	}
	return rt, nil
}

// route returns the matching route or nil.
func (rt *Router) route(in *matchInput) *Route {
	for _, r := range rt.routes {
		if r.match(in) {
			return r
		}
	}
	return rt.deflt
}
