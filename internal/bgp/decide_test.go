package bgp

import "testing"

func TestDecide(t *testing.T) {
	up := func(name string) TrackerStatus { return TrackerStatus{Backend: name, Healthy: true} }
	down := func(name string) TrackerStatus { return TrackerStatus{Backend: name} }
	tests := []struct {
		name     string
		in       Inputs
		announce bool
		reason   string
	}{
		{"serving, nothing tracked", Inputs{Serving: true}, true, ReasonServing},
		{"listeners not up", Inputs{}, false, ReasonNotReady},
		{"tracked backend healthy", Inputs{Serving: true, Trackers: []TrackerStatus{up("web")}}, true, ReasonServing},
		{"tracked backend down", Inputs{Serving: true, Trackers: []TrackerStatus{down("web")}}, false, "backend web has no healthy server"},
		{"one of two tracked backends healthy", Inputs{Serving: true, Trackers: []TrackerStatus{down("web"), up("api")}}, true, ReasonServing},
		{"every tracked backend down", Inputs{Serving: true, Trackers: []TrackerStatus{down("web"), down("api")}}, false, "no tracked backend has a healthy server (web, api)"},
		{"drained wins over healthy", Inputs{Serving: true, Drained: true, Trackers: []TrackerStatus{up("web")}}, false, ReasonDrained},
		{"drained wins over not ready", Inputs{Drained: true}, false, ReasonDrained},
		{"stopping wins over drained", Inputs{Serving: true, Drained: true, Stopping: true}, false, ReasonStopping},
		{"stopping while healthy", Inputs{Serving: true, Stopping: true, Trackers: []TrackerStatus{up("web")}}, false, ReasonStopping},
		{"not ready wins over tracking", Inputs{Trackers: []TrackerStatus{down("web")}}, false, ReasonNotReady},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			announce, reason := Decide(tt.in)
			if announce != tt.announce || reason != tt.reason {
				t.Errorf("Decide = %v %q, want %v %q", announce, reason, tt.announce, tt.reason)
			}
		})
	}
}
