package runtime

import (
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/waage/waage/internal/admin"
	"github.com/waage/waage/internal/bgp"
	"github.com/waage/waage/internal/config"
)

// The Runtime runs the BGP speaker and drains the node for the admin API.
var _ admin.BGPSource = (*Runtime)(nil)

// bgpRun is the BGP speaker, when the configuration has a bgp section. A reload updates it in
// place (bgp.Speaker.Update), so unchanged sessions stay up.
type bgpRun struct {
	mu      sync.Mutex
	speaker *bgp.Speaker
	// drained survives reloads and a bgp section that comes and goes: a drained node stays
	// drained until undrained.
	drained bool
	// stopping: Withdraw was called; a reload must not announce again.
	stopping bool
}

// apply starts, updates or stops the speaker to match cfg. It runs at the end of Apply, when the
// listeners are up; healthy reports whether a backend has a server that can take traffic.
// A configuration without frontends has no listeners to send traffic to: a node of a cluster that
// has no cluster configuration yet (neither from etcd nor a local copy) must not draw its share
// of the connections to a virtual IP nothing listens on.
func (b *bgpRun) apply(cfg *config.Config, healthy func(string) bool, logger *slog.Logger) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if cfg.BGP == nil {
		if b.speaker != nil {
			b.speaker.Stop()
			b.speaker = nil
		}
		return
	}
	serving := len(cfg.Frontends) > 0
	bc := bgpConfig(cfg.BGP.WithDefaults())
	if b.speaker != nil {
		if err := b.speaker.Update(bc); err != nil {
			logger.Error("bgp not fully updated", "err", err)
		}
		b.speaker.SetServing(serving)
		return
	}
	sp, err := bgp.Start(bc, bgp.Options{Logger: logger, BackendHealthy: healthy})
	if err != nil {
		logger.Error("bgp speaker not started", "err", err)
		return
	}
	if b.drained {
		sp.SetDrained(true)
	}
	if b.stopping {
		sp.Withdraw()
	}
	sp.SetServing(serving)
	b.speaker = sp
}

// withdraw takes the routes away for good, keeping the sessions, and reports whether any were
// announced.
func (b *bgpRun) withdraw() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stopping = true
	if b.speaker == nil {
		return false
	}
	return b.speaker.Withdraw()
}

// stop closes the sessions.
func (b *bgpRun) stop() {
	b.mu.Lock()
	sp := b.speaker
	b.speaker = nil
	b.stopping = true
	b.mu.Unlock()
	if sp != nil {
		sp.Stop()
	}
}

// bgpConfig converts a validated config section into the speaker's configuration.
func bgpConfig(c config.BGP) bgp.Config {
	rid, _ := netip.ParseAddr(c.RouterID)
	bc := bgp.Config{
		LocalAS: uint32(c.LocalAS), RouterID: rid, ListenPort: c.ListenPort,
		Announce: c.AnnouncePrefixes(), TrackBackends: append([]string(nil), c.TrackBackends...),
	}
	for _, p := range c.Peers {
		a, _ := netip.ParseAddr(p.Address)
		bc.Peers = append(bc.Peers, bgp.Peer{
			Address: a, AS: uint32(p.AS), Port: uint16(p.Port), HoldTime: p.HoldTime.D(),
			Keepalive: p.Keepalive.D(), Passive: p.Passive, Password: p.Password,
		})
	}
	return bc
}

// BGPStatus returns the BGP speaker's state; false when the configuration has no bgp section.
func (r *Runtime) BGPStatus() (bgp.Status, bool) {
	r.bgp.mu.Lock()
	sp := r.bgp.speaker
	drained := r.bgp.drained
	r.bgp.mu.Unlock()
	if sp == nil {
		return bgp.Status{Drained: drained}, false
	}
	return sp.Status(), true
}

// DrainNode drains this node (on) or undrains it: drained, the BGP speaker withdraws the
// announced prefixes while waage keeps serving the connections it has, so the routers send new
// connections to the other balancers. The state outlives reloads. It reports the previous state.
func (r *Runtime) DrainNode(on bool) (was bool) {
	r.bgp.mu.Lock()
	defer r.bgp.mu.Unlock()
	was = r.bgp.drained
	r.bgp.drained = on
	if r.bgp.speaker != nil {
		r.bgp.speaker.SetDrained(on)
	}
	if was != on {
		if on {
			r.logger.Info("node drained: routes withdrawn, serving the connections it has")
		} else {
			r.logger.Info("node undrained: announcing again while it can serve")
		}
	}
	return was
}

// NodeDrained reports whether the node is drained.
func (r *Runtime) NodeDrained() bool {
	r.bgp.mu.Lock()
	defer r.bgp.mu.Unlock()
	return r.bgp.drained
}

// bgpSettle is how long a shutdown keeps accepting after withdrawing its routes: long enough for
// the routers to move new connections to the other balancers, so none hits a closed listener.
const bgpSettle = 300 * time.Millisecond

// WithdrawBGP withdraws the announced prefixes for good (the first step of a shutdown) and waits
// a moment for the routers to act on it, if there were any. The sessions stay up until Shutdown.
func (r *Runtime) WithdrawBGP() {
	if r.bgp.withdraw() {
		r.logger.Info("bgp routes withdrawn before stopping; draining")
		time.Sleep(bgpSettle)
	}
}
