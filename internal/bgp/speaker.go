package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// Config is a speaker's configuration, converted from the validated config.BGP.
type Config struct {
	LocalAS  uint32
	RouterID netip.Addr
	// ListenPort is the port for passive sessions; 0: waage does not listen.
	ListenPort int
	Peers      []Peer
	Announce   []netip.Prefix
	// TrackBackends withdraw the prefixes while none of them has a healthy server.
	TrackBackends []string
}

// Peer is one router.
type Peer struct {
	Address   netip.Addr
	AS        uint32
	Port      uint16
	HoldTime  time.Duration
	Keepalive time.Duration
	Passive   bool
	Password  string
}

// Options are what a speaker needs from the rest of waage.
type Options struct {
	// Logger receives session and announce events; nil is slog.Default().
	Logger *slog.Logger
	// BackendHealthy reports whether a backend has a server that can take traffic; nil: every
	// backend is healthy.
	BackendHealthy func(name string) bool
	// Poll is how often the tracked backends are read; default 100ms.
	Poll time.Duration
}

// Speaker is a running BGP speaker.
type Speaker struct {
	opts   Options
	logger *slog.Logger
	srv    *server.BgpServer
	// unwatch ends the goroutine that delivers srv's session events.
	unwatch context.CancelFunc
	kick    chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}

	mu  sync.Mutex
	cfg Config
	// drained, serving and stopping are the decision's inputs; evaluate reads the trackers.
	drained, serving, stopping bool
	trackers                   []TrackerStatus
	// announced are the prefixes in the RIB now; announcing is the last decision.
	announced  map[netip.Prefix]bool
	announcing bool
	reason     string
	since      time.Time
	lastErr    string
	// peerSince records when each peer's session came up or went down, peerUp whether it is up.
	peerSince map[netip.Addr]time.Time
	peerUp    map[netip.Addr]bool
	stopped   bool
}

// Start starts the speaker: it opens the sessions and announces the prefixes once the first
// decision allows it (SetServing(true) must be called for that).
func Start(cfg Config, opts Options) (*Speaker, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Poll <= 0 {
		opts.Poll = 100 * time.Millisecond
	}
	s := &Speaker{
		opts: opts, logger: opts.Logger, kick: make(chan struct{}, 1), done: make(chan struct{}),
		announced: map[netip.Prefix]bool{}, reason: ReasonNotReady, since: time.Now(),
		peerSince: map[netip.Addr]time.Time{}, peerUp: map[netip.Addr]bool{},
	}
	if err := s.startServer(cfg); err != nil {
		return nil, err
	}
	s.cfg = cfg
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go s.loop(ctx)
	return s, nil
}

// startServer starts GoBGP with cfg's global settings and peers.
func (s *Speaker) startServer(cfg Config) error {
	lvl := &slog.LevelVar{}
	lvl.Set(slog.LevelWarn)
	// GoBGP's own log: problems only; sessions, announcements and withdrawals are logged here.
	gl := slog.New(minLevel{s.logger.Handler(), slog.LevelWarn}).With("component", "gobgp")
	srv := server.NewBgpServer(server.LoggerOption(gl, lvl))
	go srv.Serve()
	port := int32(-1)
	if cfg.ListenPort > 0 {
		port = int32(cfg.ListenPort)
	}
	ctx := context.Background()
	if err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: cfg.LocalAS, RouterId: cfg.RouterID.String(), ListenPort: port,
	}}); err != nil {
		srv.Stop()
		return fmt.Errorf("bgp: %w", err)
	}
	// Nothing the routers send is used: accepting only this speaker's own routes into the RIB
	// also keeps it from passing one router's routes on to another.
	if err := srv.AddPolicy(ctx, &api.AddPolicyRequest{Policy: &api.Policy{Name: "local-only", Statements: []*api.Statement{{
		Name:       "local",
		Conditions: &api.Conditions{RouteType: api.Conditions_ROUTE_TYPE_LOCAL},
		Actions:    &api.Actions{RouteAction: api.RouteAction_ROUTE_ACTION_ACCEPT},
	}}}}); err != nil {
		srv.Stop()
		return fmt.Errorf("bgp: import policy: %w", err)
	}
	if err := srv.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
		Name: "global", Direction: api.PolicyDirection_POLICY_DIRECTION_IMPORT,
		Policies:      []*api.Policy{{Name: "local-only"}},
		DefaultAction: api.RouteAction_ROUTE_ACTION_REJECT,
	}}); err != nil {
		srv.Stop()
		return fmt.Errorf("bgp: import policy: %w", err)
	}
	wctx, unwatch := context.WithCancel(ctx)
	if err := srv.WatchEvent(wctx, server.WatchEventMessageCallbacks{OnPeerUpdate: s.peerEvent}, server.WatchPeer()); err != nil {
		unwatch()
		srv.Stop()
		return fmt.Errorf("bgp: %w", err)
	}
	s.srv, s.unwatch = srv, unwatch
	for _, p := range cfg.Peers {
		if err := s.addPeer(p); err != nil {
			s.logger.Error("bgp peer not added", "peer", p.Address.String(), "err", err)
		}
	}
	return nil
}

func (s *Speaker) addPeer(p Peer) error {
	return s.srv.AddPeer(context.Background(), &api.AddPeerRequest{Peer: apiPeer(p)})
}

// minLevel drops records below min, whatever the handler's own level.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(as), h.min}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.min}
}

// apiPeer is a peer in GoBGP's terms.
func apiPeer(p Peer) *api.Peer {
	return &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: p.Address.String(), PeerAsn: p.AS, AuthPassword: p.Password,
		},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime: uint64(p.HoldTime / time.Second), KeepaliveInterval: uint64(p.Keepalive / time.Second),
			// Retry a refused or lost connection soon: the route is missing meanwhile.
			ConnectRetry: 3, IdleHoldTimeAfterReset: 1,
		}},
		Transport: &api.Transport{RemotePort: uint32(p.Port), PassiveMode: p.Passive},
	}
}

// peerEvent logs session changes and remembers when each session came up or went down.
func (s *Speaker) peerEvent(ev *apiutil.WatchEventMessage_PeerEvent, at time.Time) {
	if ev.Type != apiutil.PEER_EVENT_STATE {
		return
	}
	st := ev.Peer.State
	addr := st.NeighborAddress
	up := st.SessionState == bgp.BGP_FSM_ESTABLISHED
	s.mu.Lock()
	wasUp := s.peerUp[addr]
	_, known := s.peerSince[addr]
	if up != wasUp || !known {
		s.peerSince[addr] = at
	}
	s.peerUp[addr] = up
	s.mu.Unlock()
	switch {
	case up:
		s.logger.Info("bgp session up", "peer", addr.String(), "peer_as", st.PeerASN, "local_address", ev.Peer.Transport.LocalAddress.String())
	case wasUp:
		reason := strings.ToLower(strings.TrimPrefix(st.DisconnectReason.String(), "DISCONNECT_REASON_"))
		s.logger.Warn("bgp session down", "peer", addr.String(), "state", stateName(st.SessionState), "reason", reason, "message", st.DisconnectMessage)
	}
}

func stateName(st bgp.FSMState) string {
	switch st {
	case bgp.BGP_FSM_IDLE:
		return "idle"
	case bgp.BGP_FSM_CONNECT:
		return "connect"
	case bgp.BGP_FSM_ACTIVE:
		return "active"
	case bgp.BGP_FSM_OPENSENT:
		return "opensent"
	case bgp.BGP_FSM_OPENCONFIRM:
		return "openconfirm"
	case bgp.BGP_FSM_ESTABLISHED:
		return "established"
	}
	return "unknown"
}

// loop polls the tracked backends and applies the decision when it changes; SetDrained,
// SetServing and Update kick it for an immediate decision.
func (s *Speaker) loop(ctx context.Context) {
	defer close(s.done)
	defer func() {
		if v := recover(); v != nil {
			s.logger.Error("bgp speaker panic", "panic", v)
		}
	}()
	t := time.NewTicker(s.opts.Poll)
	defer t.Stop()
	for {
		s.evaluate()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
		}
	}
}

func (s *Speaker) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// evaluate decides and makes the RIB match the decision.
func (s *Speaker) evaluate() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	s.trackers = s.trackers[:0]
	for _, b := range s.cfg.TrackBackends {
		healthy := s.opts.BackendHealthy == nil || s.opts.BackendHealthy(b)
		s.trackers = append(s.trackers, TrackerStatus{Backend: b, Healthy: healthy})
	}
	announce, reason := Decide(Inputs{Stopping: s.stopping, Drained: s.drained, Serving: s.serving, Trackers: s.trackers})
	s.apply(announce, reason)
}

// apply makes the RIB hold the configured prefixes when announce is true, none otherwise, and
// logs a change of decision with its reason; s.mu held.
func (s *Speaker) apply(announce bool, reason string) {
	changed := announce != s.announcing || (!announce && reason != s.reason)
	if announce != s.announcing {
		s.since = time.Now()
	}
	s.announcing, s.reason = announce, reason
	var add, del []netip.Prefix
	want := map[netip.Prefix]bool{}
	if announce {
		for _, p := range s.cfg.Announce {
			want[p] = true
			if !s.announced[p] {
				add = append(add, p)
			}
		}
	}
	for p := range s.announced {
		if !want[p] {
			del = append(del, p)
		}
	}
	sortPrefixes(del)
	if len(del) > 0 {
		if err := s.srv.DeletePath(apiutil.DeletePathRequest{Paths: paths(del)}); err != nil {
			s.fail("withdrawing", err)
		} else {
			for _, p := range del {
				delete(s.announced, p)
			}
			s.logger.Info("bgp withdraw", "prefixes", prefixList(del), "reason", reason)
		}
	} else if changed && !announce {
		s.logger.Info("bgp not announcing", "reason", reason)
	}
	if len(add) > 0 {
		if _, err := s.srv.AddPath(apiutil.AddPathRequest{Paths: paths(add)}); err != nil {
			s.fail("announcing", err)
		} else {
			for _, p := range add {
				s.announced[p] = true
			}
			s.logger.Info("bgp announce", "prefixes", prefixList(add), "reason", reason)
		}
	}
}

func (s *Speaker) fail(what string, err error) {
	msg := what + ": " + err.Error()
	if msg != s.lastErr {
		s.logger.Error("bgp "+what+" failed", "err", err)
	}
	s.lastErr = msg
}

// paths are the routes for prefixes, with next hop 0.0.0.0: GoBGP puts each session's own local
// address there, which is on the link the router shares with this balancer.
func paths(prefixes []netip.Prefix) []*apiutil.Path {
	out := make([]*apiutil.Path, 0, len(prefixes))
	nh, _ := bgp.NewPathAttributeNextHop(netip.IPv4Unspecified())
	for _, p := range prefixes {
		nlri, err := bgp.NewIPAddrPrefix(p)
		if err != nil {
			continue
		}
		out = append(out, &apiutil.Path{
			Family: bgp.RF_IPv4_UC, Nlri: nlri,
			Attrs: []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP), nh},
		})
	}
	return out
}

func sortPrefixes(ps []netip.Prefix) {
	sort.Slice(ps, func(i, j int) bool { return ps[i].String() < ps[j].String() })
}

func prefixList(ps []netip.Prefix) string {
	ss := make([]string, len(ps))
	for i, p := range ps {
		ss[i] = p.String()
	}
	return strings.Join(ss, ",")
}

// SetServing tells the speaker whether the listeners are up.
func (s *Speaker) SetServing(on bool) {
	s.mu.Lock()
	s.serving = on
	s.mu.Unlock()
	s.poke()
	if !on {
		s.evaluate() // withdraw now, not at the next poll
	}
}

// SetDrained drains the node (withdraw, keep serving) or undrains it (announce again when it
// can serve). It returns once a withdrawal was handed to the sessions.
func (s *Speaker) SetDrained(on bool) {
	s.mu.Lock()
	s.drained = on
	s.mu.Unlock()
	s.evaluate()
}

// Drained reports whether the node is drained.
func (s *Speaker) Drained() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.drained
}

// Withdraw withdraws every prefix for good, keeping the sessions: the first step of a shutdown.
// It reports whether anything was announced.
func (s *Speaker) Withdraw() bool {
	s.mu.Lock()
	had := len(s.announced) > 0
	s.stopping = true
	s.mu.Unlock()
	s.evaluate()
	return had
}

// Update applies a new configuration by difference: sessions whose peer settings did not change
// stay up, added and removed peers are added and removed, and the announced prefixes follow the
// new list. A new local AS, router ID or listen port restarts every session.
func (s *Speaker) Update(cfg Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return errors.New("bgp: speaker stopped")
	}
	old := s.cfg
	if old.LocalAS != cfg.LocalAS || old.RouterID != cfg.RouterID || old.ListenPort != cfg.ListenPort {
		s.logger.Info("bgp restarting every session: local_as, router_id or listen_port changed")
		s.srv.Stop()
		s.unwatch()
		s.announced = map[netip.Prefix]bool{}
		s.peerSince = map[netip.Addr]time.Time{}
		s.peerUp = map[netip.Addr]bool{}
		if err := s.startServer(cfg); err != nil {
			return err
		}
		s.cfg = cfg
		s.poke()
		return nil
	}
	oldPeers := map[netip.Addr]Peer{}
	for _, p := range old.Peers {
		oldPeers[p.Address] = p
	}
	var errs []error
	for _, p := range cfg.Peers {
		was, ok := oldPeers[p.Address]
		delete(oldPeers, p.Address)
		if ok && was == p {
			continue
		}
		if ok {
			if err := s.srv.DeletePeer(context.Background(), &api.DeletePeerRequest{Address: p.Address.String()}); err != nil {
				errs = append(errs, fmt.Errorf("bgp peer %s: %w", p.Address, err))
			}
			delete(s.peerSince, p.Address)
			delete(s.peerUp, p.Address)
			s.logger.Info("bgp peer changed; its session restarts", "peer", p.Address.String())
		} else {
			s.logger.Info("bgp peer added", "peer", p.Address.String())
		}
		if err := s.addPeer(p); err != nil {
			errs = append(errs, fmt.Errorf("bgp peer %s: %w", p.Address, err))
		}
	}
	for addr := range oldPeers {
		if err := s.srv.DeletePeer(context.Background(), &api.DeletePeerRequest{Address: addr.String()}); err != nil {
			errs = append(errs, fmt.Errorf("bgp peer %s: %w", addr, err))
		}
		delete(s.peerSince, addr)
		delete(s.peerUp, addr)
		s.logger.Info("bgp peer removed", "peer", addr.String())
	}
	s.cfg = cfg
	s.poke()
	return errors.Join(errs...)
}

// Stop withdraws the prefixes and closes every session (a Cease notification), then stops.
func (s *Speaker) Stop() {
	s.Withdraw()
	s.cancel()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	s.stopped = true
	s.srv.Stop()
	// The session events of the stop itself are still on their way: let them be logged.
	time.AfterFunc(time.Second, s.unwatch)
	s.logger.Info("bgp speaker stopped")
}

// Status is the speaker's state for the admin API, ctl and metrics.
type Status struct {
	LocalAS  uint32
	RouterID netip.Addr
	// Announcing is the current decision, Reason why, Since when it last changed.
	Announcing bool
	Reason     string
	Since      time.Time
	Drained    bool
	Prefixes   []PrefixStatus
	Peers      []PeerStatus
	Trackers   []TrackerStatus
	LastError  string
}

// PrefixStatus is one configured prefix.
type PrefixStatus struct {
	Prefix    netip.Prefix
	Announced bool
}

// PeerStatus is one session.
type PeerStatus struct {
	Address netip.Addr
	AS      uint32
	// State is idle, connect, active, opensent, openconfirm or established.
	State string
	// Since is when the session came up (established) or went down; zero before either.
	Since                          time.Time
	Received, Accepted, Advertised uint64
	LastError                      string
}

// Status returns the speaker's state.
func (s *Speaker) Status() Status {
	s.mu.Lock()
	st := Status{
		LocalAS: s.cfg.LocalAS, RouterID: s.cfg.RouterID, Announcing: s.announcing, Reason: s.reason,
		Since: s.since, Drained: s.drained, Trackers: slices.Clone(s.trackers), LastError: s.lastErr,
	}
	for _, p := range s.cfg.Announce {
		st.Prefixes = append(st.Prefixes, PrefixStatus{Prefix: p, Announced: s.announced[p]})
	}
	since := make(map[netip.Addr]time.Time, len(s.peerSince))
	for k, v := range s.peerSince {
		since[k] = v
	}
	srv, stopped := s.srv, s.stopped
	s.mu.Unlock()
	if stopped {
		return st
	}
	srv.ListPeer(context.Background(), &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
		if p.State == nil {
			return
		}
		addr, _ := netip.ParseAddr(p.State.NeighborAddress)
		ps := PeerStatus{Address: addr, AS: p.State.PeerAsn, State: sessionState(p.State.SessionState), Since: since[addr]}
		if p.Timers != nil && p.Timers.State != nil && ps.State == "established" && p.Timers.State.Uptime != nil {
			ps.Since = p.Timers.State.Uptime.AsTime()
		}
		for _, af := range p.AfiSafis {
			if af.State != nil {
				ps.Received += af.State.Received
				ps.Accepted += af.State.Accepted
				ps.Advertised += af.State.Advertised
			}
		}
		if p.State.DisconnectMessage != "" {
			ps.LastError = p.State.DisconnectMessage
		} else if r := p.State.DisconnectReason; r != api.PeerState_DISCONNECT_REASON_UNSPECIFIED {
			ps.LastError = strings.ToLower(strings.TrimPrefix(r.String(), "DISCONNECT_REASON_"))
		}
		st.Peers = append(st.Peers, ps)
	})
	sort.Slice(st.Peers, func(i, j int) bool { return st.Peers[i].Address.Less(st.Peers[j].Address) })
	return st
}

func sessionState(st api.PeerState_SessionState) string {
	s := strings.ToLower(strings.TrimPrefix(st.String(), "SESSION_STATE_"))
	if s == "unspecified" {
		return "idle"
	}
	return s
}
