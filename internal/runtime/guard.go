package runtime

import (
	"log/slog"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/waage/waage/internal/config"
	"github.com/waage/waage/internal/guard"
	"github.com/waage/waage/internal/l7"
)

// guards keeps each frontend's guard across reloads (by frontend name), the process's live deny
// list, and samples the source tables for the busiest-sources list.
type guards struct {
	mu   sync.Mutex
	m    map[string]*guard.Guard
	deny *guard.DenyList
	stop chan struct{}
	// share is the number of nodes that enforce the request rates together (cluster.go).
	share int
}

// sampleEvery is how often the source tables' rates are computed.
const sampleEvery = 2 * time.Second

// init makes the tables and starts the sampler on first use; gs.mu is held.
func (gs *guards) init() {
	if gs.m == nil {
		gs.m = map[string]*guard.Guard{}
		gs.deny = guard.NewDenyList()
		gs.stop = make(chan struct{})
		go gs.sample(gs.stop)
	}
}

// get returns frontend name's guard, made on first use.
func (gs *guards) get(name string, logger *slog.Logger) *guard.Guard {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	gs.init()
	g := gs.m[name]
	if g == nil {
		g = guard.New(name, gs.deny, logger)
		g.SetShare(gs.share)
		gs.m[name] = g
	}
	g.SetLogger(logger)
	return g
}

// denyList returns the live deny list.
func (gs *guards) denyList() *guard.DenyList {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	gs.init()
	return gs.deny
}

func (gs *guards) sample(stop <-chan struct{}) {
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			gs.mu.Lock()
			list := make([]*guard.Guard, 0, len(gs.m))
			for _, g := range gs.m {
				list = append(list, g)
			}
			gs.mu.Unlock()
			for _, g := range list {
				g.Sources().Sample(now)
			}
		}
	}
}

// apply gives the compiled handlers of cfg their guards and limits. Guards, their source tables
// and request-rate buckets carry over from the running configuration.
func (gs *guards) apply(cfg *config.Config, hs frontendHandlers, logger *slog.Logger) error {
	for _, fe := range cfg.Frontends {
		g := gs.get(fe.Name, logger)
		if err := g.Update(fe.Limits, fe.Access); err != nil {
			return err
		}
		switch fe.Mode {
		case "tcp":
			if h := hs.tcp[fe.Name]; h != nil {
				h.Guard = g
			}
			continue
		case "udp":
			if h := hs.udp[fe.Name]; h != nil {
				h.Guard = g
			}
			continue
		}
		h := hs.http[fe.Name]
		if h == nil {
			continue
		}
		h.Guard = g
		var rl *guard.RequestLimiter
		if rr := fe.Limits.RequestRate; rr != nil {
			rl = g.RequestLimiter("", *rr)
		}
		h.Limits = l7.NewRequestLimits(fe.Limits, rl)
		scopes := map[string]bool{"": true}
		byName := map[string]*config.Route{}
		for i := range fe.Routes {
			byName[fe.Routes[i].Name] = &fe.Routes[i]
		}
		for _, rt := range h.Router.Routes() {
			rc := byName[rt.Name]
			if rc == nil || rc.Limits == nil {
				continue
			}
			var own *guard.RequestLimiter
			if rr := rc.Limits.RequestRate; rr != nil {
				own = g.RequestLimiter("route "+rt.Name, *rr)
				scopes["route "+rt.Name] = true
			}
			rt.Limits = h.Limits.Override(*rc.Limits, own)
		}
		g.RetainLimiters(scopes)
	}
	return nil
}

// retain drops the guards of frontends that are gone.
func (gs *guards) retain(cfg *config.Config) {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	keep := map[string]bool{}
	for _, fe := range cfg.Frontends {
		keep[fe.Name] = true
	}
	for name := range gs.m {
		if !keep[name] {
			delete(gs.m, name)
		}
	}
}

// close stops the sampler.
func (gs *guards) close() {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	if gs.stop != nil {
		close(gs.stop)
		gs.stop = nil
	}
}

// Deny blocks the sources in p on every frontend for ttl (0: until Undeny).
func (r *Runtime) Deny(p netip.Prefix, ttl time.Duration) {
	r.guards.denyList().Add(p, ttl, time.Now())
	r.logger.Warn("sources denied", "cidr", p.Masked().String(), "ttl", ttl)
}

// Undeny lifts a block made by Deny; false if p was not blocked.
func (r *Runtime) Undeny(p netip.Prefix) bool {
	ok := r.guards.denyList().Remove(p, time.Now())
	if ok {
		r.logger.Info("sources no longer denied", "cidr", p.Masked().String())
	}
	return ok
}

// Denied lists the live blocks.
func (r *Runtime) Denied() []guard.DenyEntry { return r.guards.denyList().Entries(time.Now()) }

// TopSource is one line of TopSources.
type TopSource struct {
	Frontend string
	guard.SourceStat
}

// TopSources returns the n busiest sources over all frontends, by request rate, then connection
// rate, open connections and totals (rates from the last samples, every 2 s).
func (r *Runtime) TopSources(n int) []TopSource {
	var all []TopSource
	for name, g := range r.Guards() {
		for _, s := range g.Sources().Top(n) {
			all = append(all, TopSource{Frontend: name, SourceStat: s})
		}
	}
	sort.SliceStable(all, func(i, j int) bool {
		a, b := all[i], all[j]
		if ab, ba := guard.Busier(a.SourceStat, b.SourceStat), guard.Busier(b.SourceStat, a.SourceStat); ab != ba {
			return ab
		}
		return a.Frontend < b.Frontend
	})
	if len(all) > n {
		all = all[:n]
	}
	return all
}

// Guards returns each frontend's guard by name, for metrics (refusals by reason).
func (r *Runtime) Guards() map[string]*guard.Guard {
	r.guards.mu.Lock()
	defer r.guards.mu.Unlock()
	out := make(map[string]*guard.Guard, len(r.guards.m))
	for name, g := range r.guards.m {
		out[name] = g
	}
	return out
}
