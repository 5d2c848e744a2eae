package admin

import (
	"net/http"
	"net/netip"

	"github.com/waage/waage/internal/adminapi"
	"github.com/waage/waage/internal/vrrp"
)

// GET /api/vrrp: the VRRP instances' state.

func optAddr(a netip.Addr) *string {
	if !a.IsValid() {
		return nil
	}
	s := a.String()
	return &s
}

func vrrpInstanceOf(st vrrp.Status) adminapi.VRRPInstance {
	out := adminapi.VRRPInstance{
		Name: st.Name, Interface: st.Interface, VirtualRouterID: st.VRID, State: st.State,
		Priority: st.Priority, EffectivePriority: st.EffectivePriority,
		AdvertInterval: st.AdvertInterval.String(),
		MasterAddress:  optAddr(st.MasterAddr), MasterPriority: st.MasterPriority,
		LocalAddress: optAddr(st.LocalAddr), VirtualIPs: nonNil(st.VirtualIPs),
		Transitions: st.Transitions, LastReason: st.LastReason, Trackers: []adminapi.Tracker{},
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
		out.Trackers = append(out.Trackers, adminapi.Tracker(tr))
	}
	return out
}

func (s *Server) getVRRP(w http.ResponseWriter, r *http.Request) {
	sts := s.opts.Source.VRRPStatus()
	out := adminapi.VRRP{Instances: make([]adminapi.VRRPInstance, 0, len(sts))}
	for _, st := range sts {
		out.Instances = append(out.Instances, vrrpInstanceOf(st))
	}
	writeJSON(w, http.StatusOK, out)
}
