package runtime

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/waage/waage/internal/admin"
	"github.com/waage/waage/internal/backend"
	"github.com/waage/waage/internal/config"
	"github.com/waage/waage/internal/h2srv"
	"github.com/waage/waage/internal/l4"
	"github.com/waage/waage/internal/l7"
)

// The Runtime is the admin API's Source, with the HTTP/2 server's counters.
var (
	_ admin.Source        = (*Runtime)(nil)
	_ admin.H2StatsSource = (*Runtime)(nil)
)

// H2Stats are the HTTP/2 server's counters, over all frontends (waage_http2_*).
func (r *Runtime) H2Stats() *h2srv.Stats { return &l7.H2Stats }

// Config returns the running configuration (nil before the first Apply). It must not be
// changed.
func (r *Runtime) Config() *config.Config {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cfg
}

// Events is the log of server changes: health, ejection, state and weight.
func (r *Runtime) Events() *backend.EventLog { return r.registry.Events() }

// Backends lists the running backends in configuration order, with their live servers.
func (r *Runtime) Backends() []admin.Backend {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cfg == nil {
		return nil
	}
	modes := backendModes(r.cfg)
	out := make([]admin.Backend, 0, len(r.cfg.Backends))
	for _, bc := range r.cfg.Backends {
		b := r.backends[bc.Name]
		if b == nil {
			continue
		}
		out = append(out, admin.Backend{
			Name:      bc.Name,
			Mode:      strings.Join(modes[bc.Name], ","),
			Algorithm: bc.Algorithm,
			Servers:   slices.Clone(b.Servers),
		})
	}
	return out
}

// backendModes lists, per backend, the modes of the frontends that use it (http before tcp
// before udp).
func backendModes(cfg *config.Config) map[string][]string {
	out := map[string][]string{}
	add := func(name, mode string) {
		if name != "" && !slices.Contains(out[name], mode) {
			out[name] = append(out[name], mode)
		}
	}
	for _, fe := range cfg.Frontends {
		add(fe.Backend, fe.Mode)
		add(fe.DefaultBackend, fe.Mode)
		for _, rt := range fe.Routes {
			add(rt.Backend, fe.Mode)
		}
	}
	order := map[string]int{"http": 0, "tcp": 1, "udp": 2}
	for _, ms := range out {
		slices.SortFunc(ms, func(a, b string) int { return order[a] - order[b] })
	}
	return out
}

// Frontends lists the running frontends in configuration order, with their counters.
func (r *Runtime) Frontends() []admin.Frontend {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cfg == nil {
		return nil
	}
	out := make([]admin.Frontend, 0, len(r.cfg.Frontends))
	for _, fe := range r.cfg.Frontends {
		af := admin.Frontend{
			Name:           fe.Name,
			Mode:           fe.Mode,
			Listen:         slices.Clone(fe.Listen),
			Backend:        fe.Backend,
			DefaultBackend: fe.DefaultBackend,
		}
		for i, rc := range fe.Routes {
			name := rc.Name
			if name == "" {
				name = "#" + strconv.Itoa(i)
			}
			af.Routes = append(af.Routes, admin.Route{Name: name, Backend: rc.Backend})
		}
		f := r.frontends[fe.Name]
		for _, bl := range r.listeners {
			if bl.owner == f && f != nil {
				af.Addrs = append(af.Addrs, bl.ln.Addr().String())
			}
		}
		st := &af.Stats
		switch {
		case f != nil && f.http != nil:
			s := &f.http.Stats
			st.ActiveConnections = s.Connections.Load()
			st.Connections = s.Accepted.Load()
			st.Requests = s.Requests.Load()
			for i := range st.Responses {
				st.Responses[i] = s.Status[i].Load()
			}
			st.BytesIn, st.BytesOut = s.BytesIn.Load(), s.BytesOut.Load()
			h := s.Duration.Snapshot()
			st.Duration = &h
		case f != nil && f.tcp != nil:
			s := &f.tcp.Stats
			st.ActiveConnections = s.Active.Load()
			st.Connections = s.Accepted.Load()
			st.Requests = s.Proxied.Load()
			st.BytesIn, st.BytesOut = s.BytesIn.Load(), s.BytesOut.Load()
		case fe.Mode == "udp":
			for _, ub := range r.udp {
				if ub.owner != fe.Name {
					continue
				}
				af.Addrs = append(af.Addrs, ub.addr.String())
				s := &ub.srv.Stats
				st.ActiveConnections += s.Flows.Load()
				st.Connections += s.FlowsOpened.Load()
				st.Requests += s.Datagrams.Load()
				st.BytesIn += s.BytesIn.Load()
				st.BytesOut += s.BytesOut.Load()
			}
		}
		slices.Sort(af.Addrs)
		out = append(out, af)
	}
	return out
}

// findServer returns a running backend's server by name.
func (r *Runtime) findServer(backendName, serverName string) (*backend.Server, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.backends[backendName]
	if b == nil {
		return nil, fmt.Errorf("backend %q: %w", backendName, admin.ErrNotFound)
	}
	for _, s := range b.Servers {
		if s.Name == serverName {
			return s, nil
		}
	}
	return nil, fmt.Errorf("backend %q: server %q: %w", backendName, serverName, admin.ErrNotFound)
}

// SetServerState sets a server's administrative state, as an operator through the admin API.
// The state stays over reloads until the configuration changes the server's own `state` (or the
// server's address, which makes it another server), see backend.Server.ApplyConfig.
func (r *Runtime) SetServerState(backendName, serverName string, st backend.State) (*backend.Server, error) {
	s, err := r.findServer(backendName, serverName)
	if err != nil {
		return nil, err
	}
	if old := s.State(); old != st {
		s.SetState(st)
		s.Event("state", old.String(), st.String(), "", "api")
		r.logger.Info("server state set through the admin API", "backend", backendName, "server", serverName, "from", old.String(), "to", st.String())
	}
	return s, nil
}

// SetServerWeight sets a server's weight, as an operator through the admin API; it stays over
// reloads as a state set by SetServerState does.
func (r *Runtime) SetServerWeight(backendName, serverName string, weight int) (*backend.Server, error) {
	s, err := r.findServer(backendName, serverName)
	if err != nil {
		return nil, err
	}
	if old := s.Weight(); old != weight {
		s.SetWeight(weight)
		s.Event("weight", strconv.Itoa(old), strconv.Itoa(s.Weight()), "", "api")
		r.logger.Info("server weight set through the admin API", "backend", backendName, "server", serverName, "from", old, "to", s.Weight())
	}
	return s, nil
}

// BusiestSources is TopSources for the admin API (GET /api/top-sources, the dashboard's top
// sources). Deny, Undeny, Denied and Guards (guard.go) and VRRPStatus (vrrp.go) serve it as they
// are.
func (r *Runtime) BusiestSources(n int) []admin.TopSource {
	top := r.TopSources(n)
	out := make([]admin.TopSource, len(top))
	for i, t := range top {
		out[i] = admin.TopSource{Frontend: t.Frontend, SourceStat: t.SourceStat}
	}
	return out
}

// sessionLog writes the sessions of tcp and udp frontends to the access log the http frontends
// use, through the same buffer.
type sessionLog struct{ log *l7.AccessLog }

func (s sessionLog) LogSession(sess *l4.Session) { s.log.WriteSession((*l7.Session)(sess)) }

// l4AccessLog is the access log for L4 handlers: nil when the access log is off.
func l4AccessLog(a *l7.AccessLog) l4.SessionLog {
	if a == nil {
		return nil
	}
	return sessionLog{a}
}
