package admin

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/waage/waage/internal/adminapi"
	"github.com/waage/waage/internal/bgp"
)

// BGPSource is implemented by a Source that can run a BGP speaker and be drained as a node. A
// Source without it answers GET /api/bgp with no speaker and the node endpoints with 501.
type BGPSource interface {
	// BGPStatus returns the speaker's state; false when none is configured.
	BGPStatus() (bgp.Status, bool)
	// DrainNode drains (true) or undrains the node and returns the previous state.
	DrainNode(on bool) (was bool)
	// NodeDrained reports whether the node is drained.
	NodeDrained() bool
}

// bgpOf is GET /api/bgp's answer.
func bgpOf(st bgp.Status, enabled bool) adminapi.BGP {
	out := adminapi.BGP{
		Enabled: enabled, Drained: st.Drained, Prefixes: []adminapi.BGPPrefix{}, Peers: []adminapi.BGPPeer{},
		Trackers: make([]adminapi.BGPTracker, len(st.Trackers)),
	}
	for i, t := range st.Trackers {
		out.Trackers[i] = adminapi.BGPTracker{Backend: t.Backend, Healthy: t.Healthy}
	}
	if !enabled {
		return out
	}
	out.LocalAS, out.RouterID = st.LocalAS, st.RouterID.String()
	out.Announcing, out.Reason, out.LastError = st.Announcing, st.Reason, st.LastError
	if !st.Since.IsZero() {
		t := st.Since
		out.Since = &t
	}
	for _, p := range st.Prefixes {
		out.Prefixes = append(out.Prefixes, adminapi.BGPPrefix{Prefix: p.Prefix.String(), Announced: p.Announced})
	}
	for _, p := range st.Peers {
		pj := adminapi.BGPPeer{
			Address: p.Address.String(), AS: p.AS, State: p.State, Received: p.Received,
			Accepted: p.Accepted, Advertised: p.Advertised, LastError: p.LastError,
		}
		if !p.Since.IsZero() {
			t := p.Since
			pj.Since = &t
			if p.State == "established" {
				pj.UptimeSeconds = time.Since(t).Round(time.Millisecond).Seconds()
			}
		}
		out.Peers = append(out.Peers, pj)
	}
	return out
}

func (s *Server) getBGP(w http.ResponseWriter, r *http.Request) {
	bs := s.opts.BGP
	if bs == nil {
		writeJSON(w, http.StatusOK, bgpOf(bgp.Status{}, false))
		return
	}
	writeJSON(w, http.StatusOK, bgpOf(bs.BGPStatus()))
}

// GET /api/node, POST /api/node/drain and /api/node/undrain: drain the whole node (the BGP
// speaker withdraws its routes; the connections it has are served on).

func (s *Server) getNode(w http.ResponseWriter, r *http.Request) {
	bs := s.opts.BGP
	if bs == nil {
		writeJSON(w, http.StatusOK, adminapi.Node{})
		return
	}
	writeJSON(w, http.StatusOK, adminapi.Node{Drained: bs.NodeDrained()})
}

func (s *Server) nodeAction(w http.ResponseWriter, r *http.Request) {
	action := r.PathValue("action")
	if action != "drain" && action != "undrain" {
		if allowMethod(w, r, http.MethodPost) && s.authorize(w, r, accessRead) {
			writeError(w, http.StatusNotFound, "unknown node action "+action+"; use drain or undrain")
		}
		return
	}
	if !allowMethod(w, r, http.MethodPost) || !s.authorize(w, r, accessWrite) {
		return
	}
	bs := s.opts.BGP
	if bs == nil {
		writeError(w, http.StatusNotImplemented, "this instance cannot be drained as a node")
		return
	}
	on := action == "drain"
	changed := bs.DrainNode(on) != on
	writeJSON(w, http.StatusOK, adminapi.Node{Drained: on, Changed: &changed})
}

var (
	descBGPAnnouncing = desc("bgp_announcing", "1 while the node announces its prefixes (it can serve and is not drained), 0 while they are withdrawn.")
	descBGPAnnounced  = desc("bgp_announced", "1 while the prefix is announced to the peers, 0 while it is withdrawn.", "prefix")
	descBGPDrained    = desc("bgp_node_drained", "1 while the node is drained (waage ctl node drain).")
	descBGPPeerUp     = desc("bgp_peer_up", "1 while the BGP session with the peer is established.", "peer")
	descBGPPeerRecv   = desc("bgp_peer_received_routes", "Routes received from the peer (waage uses none of them).", "peer")
	descBGPPeerAdv    = desc("bgp_peer_advertised_routes", "Routes advertised to the peer.", "peer")
	descBGPPeerUptime = desc("bgp_peer_uptime_seconds", "How long the session with the peer has been established; 0 while it is down.", "peer")
)

// bgpCollector is the collector with the BGP speaker whose state it reads.
type bgpCollector struct {
	*collector
	bgp BGPSource
}

func (c *collector) withBGP(b BGPSource) *bgpCollector { return &bgpCollector{c, b} }

// Collect reads every counter once, the BGP speaker's included.
func (c *bgpCollector) Collect(ch chan<- prometheus.Metric) {
	c.collector.Collect(ch)
	c.collectBGP(ch)
}

// collectBGP reads the BGP speaker's decision, prefixes and sessions.
func (c *bgpCollector) collectBGP(ch chan<- prometheus.Metric) {
	if c.bgp == nil {
		return
	}
	st, enabled := c.bgp.BGPStatus()
	if !enabled {
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(descBGPAnnouncing, b2f(st.Announcing))
	gauge(descBGPDrained, b2f(st.Drained))
	for _, p := range st.Prefixes {
		gauge(descBGPAnnounced, b2f(p.Announced), p.Prefix.String())
	}
	for _, p := range st.Peers {
		peer := p.Address.String()
		up := p.State == "established"
		gauge(descBGPPeerUp, b2f(up), peer)
		gauge(descBGPPeerRecv, float64(p.Received), peer)
		gauge(descBGPPeerAdv, float64(p.Advertised), peer)
		uptime := 0.0
		if up && !p.Since.IsZero() {
			uptime = time.Since(p.Since).Seconds()
		}
		gauge(descBGPPeerUptime, uptime, peer)
	}
}
