package admin

import (
	"net/http"
	"net/netip"
	"time"

	"github.com/waage/waage/internal/vrrp"
)

// GET /api/vrrp: the VRRP instances' state.

type vrrpJSON struct {
	Instances []vrrpInstanceJSON `json:"instances"`
}

type vrrpInstanceJSON struct {
	Name            string `json:"name"`
	Interface       string `json:"interface"`
	VirtualRouterID int    `json:"virtual_router_id"`
	// State is initialize, backup or master.
	State string `json:"state"`
	// Priority is the configured priority, EffectivePriority the advertised one (less the
	// weights of failing trackers).
	Priority          int `json:"priority"`
	EffectivePriority int `json:"effective_priority"`
	// AdvertInterval is this router's; MasterAdvertInterval the master's as learnt from its
	// adverts (null before one was heard).
	AdvertInterval       string  `json:"advert_interval"`
	MasterAdvertInterval *string `json:"master_advert_interval"`
	// MasterAddress is the current master's address, this router's own while master; null
	// when no master is known.
	MasterAddress  *string       `json:"master_address"`
	MasterPriority int           `json:"master_priority"`
	LocalAddress   *string       `json:"local_address"`
	VirtualIPs     []string      `json:"virtual_ips"`
	Transitions    uint64        `json:"transitions"`
	LastTransition *time.Time    `json:"last_transition"` // null before the first
	LastReason     string        `json:"last_reason"`
	Trackers       []trackerJSON `json:"trackers"`
	AdvertsSent    uint64        `json:"adverts_sent"`
	AdvertsRecv    uint64        `json:"adverts_received"`
	InvalidRecv    uint64        `json:"invalid_received"`
	LastError      string        `json:"last_error,omitempty"`
}

type trackerJSON struct {
	Kind    string `json:"kind"` // backend or interface
	Name    string `json:"name"`
	Weight  int    `json:"weight"`
	Failing bool   `json:"failing"`
}

func optAddr(a netip.Addr) *string {
	if !a.IsValid() {
		return nil
	}
	s := a.String()
	return &s
}

func vrrpInstanceOf(st vrrp.Status) vrrpInstanceJSON {
	out := vrrpInstanceJSON{
		Name: st.Name, Interface: st.Interface, VirtualRouterID: st.VRID, State: st.State,
		Priority: st.Priority, EffectivePriority: st.EffectivePriority,
		AdvertInterval: st.AdvertInterval.String(),
		MasterAddress:  optAddr(st.MasterAddr), MasterPriority: st.MasterPriority,
		LocalAddress: optAddr(st.LocalAddr), VirtualIPs: nonNil(st.VirtualIPs),
		Transitions: st.Transitions, LastReason: st.LastReason, Trackers: []trackerJSON{},
		AdvertsSent: st.AdvertsSent, AdvertsRecv: st.AdvertsReceived, InvalidRecv: st.InvalidReceived,
		LastError: st.LastError,
	}
	if st.MasterAdvertInterval > 0 {
		d := st.MasterAdvertInterval.String()
		out.MasterAdvertInterval = &d
	}
	if !st.LastTransition.IsZero() {
		t := st.LastTransition
		out.LastTransition = &t
	}
	for _, tr := range st.Trackers {
		out.Trackers = append(out.Trackers, trackerJSON(tr))
	}
	return out
}

func (s *Server) getVRRP(w http.ResponseWriter, r *http.Request) {
	sts := s.opts.Source.VRRPStatus()
	out := vrrpJSON{Instances: make([]vrrpInstanceJSON, 0, len(sts))}
	for _, st := range sts {
		out.Instances = append(out.Instances, vrrpInstanceOf(st))
	}
	writeJSON(w, http.StatusOK, out)
}
