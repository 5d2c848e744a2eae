// Package bgp is waage's BGP speaker: it keeps sessions with routers and announces the balancer's
// virtual IPs to them while the balancer can serve, so that several balancers announcing the same
// prefixes share the traffic through the routers' ECMP (active/active), and a balancer that is
// drained, stops, dies or loses its backends takes its route away.
//
// The speaker is GoBGP used as a library, inside the waage process: if waage dies, the kernel
// closes its sessions and the routers drop its routes at once; if it freezes, the hold time does.
// Whether to announce is decided by Decide, a pure function of the balancer's state, so the rules
// are tested without a router.
package bgp

import (
	"strings"
)

// Inputs are what the announce decision depends on.
type Inputs struct {
	// Stopping: the balancer is shutting down; it serves the connections it has, takes no new
	// ones.
	Stopping bool
	// Drained: an operator drained the node (`waage ctl node drain`).
	Drained bool
	// Serving: the listeners are up (the configuration was applied and accepting has not
	// stopped).
	Serving bool
	// Trackers are the tracked backends and whether each has a server that can take traffic.
	Trackers []TrackerStatus
}

// TrackerStatus is one tracked backend.
type TrackerStatus struct {
	Backend string `json:"backend"`
	// Healthy: the backend has a server that can take traffic (healthy, not ejected, ready,
	// weight above 0).
	Healthy bool `json:"healthy"`
}

// Reasons for a decision, as the log, the admin API and the metrics show them.
const (
	ReasonServing  = "serving"
	ReasonStopping = "shutting down"
	ReasonDrained  = "drained"
	ReasonNotReady = "listeners not up"
)

// Decide reports whether the prefixes should be announced, and why (or why not). The first rule
// that holds wins: shutting down, drained, listeners not up, no tracked backend with a healthy
// server; otherwise the node serves and announces. Tracked backends withdraw the route only when
// none of them has a healthy server: the prefixes carry every frontend, so one dead backend
// should not take the working ones off the network.
func Decide(in Inputs) (announce bool, reason string) {
	switch {
	case in.Stopping:
		return false, ReasonStopping
	case in.Drained:
		return false, ReasonDrained
	case !in.Serving:
		return false, ReasonNotReady
	}
	if len(in.Trackers) == 0 {
		return true, ReasonServing
	}
	names := make([]string, 0, len(in.Trackers))
	for _, t := range in.Trackers {
		if t.Healthy {
			return true, ReasonServing
		}
		names = append(names, t.Backend)
	}
	if len(names) == 1 {
		return false, "backend " + names[0] + " has no healthy server"
	}
	return false, "no tracked backend has a healthy server (" + strings.Join(names, ", ") + ")"
}
