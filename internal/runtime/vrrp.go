package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/waage/waage/internal/backend"
	"github.com/waage/waage/internal/config"
	"github.com/waage/waage/internal/l7"
	"github.com/waage/waage/internal/vrrp"
)

// vrrpRuns are the running VRRP instances, keyed by virtual router (interface and VRID) so that
// a reload that changes an instance's priority, interval, virtual IPs, trackers or name updates
// it in place instead of leaving the virtual router and failing over.
type vrrpRuns struct {
	mu        sync.Mutex
	instances map[string]*vrrpRun
	// servers is the live server list of every backend, for the backend trackers; replaced on
	// each Apply.
	servers atomic.Pointer[map[string][]*backend.Server]
	// adopt makes the instances that the next apply starts keep the virtual IPs they find (the
	// new process of a binary upgrade); handover makes stop release them quietly (the old one).
	adopt, handover bool
}

type vrrpRun struct {
	cfg  vrrp.Config
	inst *vrrp.Instance
}

func vrrpKey(c config.VRRP) string { return c.Interface + "|" + strconv.Itoa(c.VirtualRouterID) }

// check refuses a configuration whose VRRP interfaces do not exist here, before Apply changes
// anything: a misspelt interface should stop `waage run`, not leave it running without its
// virtual IPs.
func (v *vrrpRuns) check(cfg *config.Config) error {
	var errs []error
	for _, c := range cfg.VRRP {
		if _, err := net.InterfaceByName(c.Interface); err != nil {
			errs = append(errs, fmt.Errorf("vrrp %q: interface %s: %w", c.WithDefaults().Name, c.Interface, err))
		}
	}
	return errors.Join(errs...)
}

// apply starts, updates and stops instances to match cfg. backends are the new configuration's,
// whose servers the backend trackers watch.
func (v *vrrpRuns) apply(cfg *config.Config, backends map[string]*l7.Backend, logger *slog.Logger) {
	servers := make(map[string][]*backend.Server, len(backends))
	for name, b := range backends {
		servers[name] = b.Servers
	}
	v.servers.Store(&servers)

	v.mu.Lock()
	defer v.mu.Unlock()
	if v.instances == nil {
		v.instances = map[string]*vrrpRun{}
	}
	want := map[string]bool{}
	for _, c := range cfg.VRRP {
		key := vrrpKey(c)
		want[key] = true
		vc, err := vrrpConfig(c)
		if err != nil {
			logger.Error("vrrp instance not started", "vrrp", vc.Name, "err", err)
			continue
		}
		run := v.instances[key]
		if run != nil && vrrp.SameRouter(run.cfg, vc) {
			if err := run.inst.Update(vc); err != nil {
				logger.Error("vrrp instance not updated", "vrrp", vc.Name, "err", err)
			}
			run.cfg = vc
			continue
		}
		if run != nil {
			// Unicast peers or source changed: the socket is a new one.
			v.stopRun(run)
		}
		inst, err := vrrp.Start(vc, vrrp.Options{Logger: logger, BackendHealthy: v.backendHealthy, Adopt: v.adopt})
		if err != nil {
			logger.Error("vrrp instance not started", "vrrp", vc.Name, "err", err)
			delete(v.instances, key)
			continue
		}
		v.instances[key] = &vrrpRun{cfg: vc, inst: inst}
	}
	for key, run := range v.instances {
		if !want[key] {
			v.stopRun(run)
			delete(v.instances, key)
		}
	}
	v.adopt = false
}

// stopRun stops an instance: it returns once the instance left the virtual router (priority 0
// sent, virtual IPs removed); a notify program still running finishes in the background.
func (v *vrrpRuns) stopRun(run *vrrpRun) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		run.inst.Stop(ctx)
	}()
	<-run.inst.Done()
}

// stop stops every instance, advertising priority 0 so the peers take over at once; it waits for
// the notify programs until ctx ends.
func (v *vrrpRuns) stop(ctx context.Context) {
	v.mu.Lock()
	runs, handover := v.instances, v.handover
	v.instances = nil
	v.mu.Unlock()
	var wg sync.WaitGroup
	for _, run := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if handover {
				run.inst.Release(ctx)
			} else {
				run.inst.Stop(ctx)
			}
		}()
	}
	wg.Wait()
}

// AdoptVRRP prepares the new process of a binary upgrade: call it before the first Apply. The
// VRRP instances that Apply starts keep the virtual IPs they find on their interfaces instead of
// clearing them as a crash's leftovers, and start as master when they hold them all, so the
// master's virtual IPs never leave the interface.
func (r *Runtime) AdoptVRRP() {
	r.vrrp.mu.Lock()
	defer r.vrrp.mu.Unlock()
	r.vrrp.adopt = true
}

// HandOverVRRP prepares the old process of a binary upgrade: call it before Shutdown once the new
// process is ready. Shutdown then stops the VRRP instances quietly, leaving the virtual IPs to the
// new process, instead of advertising priority 0 (which would hand them to the peer).
func (r *Runtime) HandOverVRRP() {
	r.vrrp.mu.Lock()
	defer r.vrrp.mu.Unlock()
	r.vrrp.handover = true
}

// backendHealthy reports whether a backend has a server that can take new traffic (available to
// the health checks, ready, weight above 0). A backend that no longer exists is not healthy.
func (v *vrrpRuns) backendHealthy(name string) bool {
	m := v.servers.Load()
	if m == nil {
		return true
	}
	servers, ok := (*m)[name]
	if !ok {
		return false
	}
	for _, s := range servers {
		if s.Usable() {
			return true
		}
	}
	return false
}

// status returns every instance's status, by name.
func (v *vrrpRuns) status() []vrrp.Status {
	v.mu.Lock()
	out := make([]vrrp.Status, 0, len(v.instances))
	for _, run := range v.instances {
		out = append(out, run.inst.Status())
	}
	v.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// VRRPStatus returns the state of every VRRP instance (state, priorities, master, transitions),
// for the admin API.
func (r *Runtime) VRRPStatus() []vrrp.Status { return r.vrrp.status() }

// vrrpConfig converts a validated config entry into the instance's configuration.
func vrrpConfig(c config.VRRP) (vrrp.Config, error) {
	c = c.WithDefaults()
	vc := vrrp.Config{
		Name:           c.Name,
		Interface:      c.Interface,
		VRID:           uint8(c.VirtualRouterID),
		Priority:       uint8(c.Priority),
		AdvertInterval: c.AdvertInterval.D(),
		Preempt:        c.PreemptEnabled(),
		PreemptDelay:   c.PreemptDelay.D(),
		VIPs:           c.VIPPrefixes(),
		Notify:         []string(c.Notify),
		NotifyTimeout:  c.NotifyTimeout.D(),
		GARPRepeat:     c.GARPRepeat,
		GARPInterval:   c.GARPInterval.D(),
		GARPDelay:      c.GARPDelay.D(),
	}
	if c.VirtualRouterID < 1 || c.VirtualRouterID > 255 || c.Priority < 1 || c.Priority > 255 {
		return vc, errors.New("virtual_router_id or priority out of range")
	}
	for _, s := range c.UnicastPeers {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return vc, fmt.Errorf("unicast_peers: %w", err)
		}
		vc.UnicastPeers = append(vc.UnicastPeers, a.Unmap())
	}
	if c.UnicastSrc != "" {
		a, err := netip.ParseAddr(c.UnicastSrc)
		if err != nil {
			return vc, fmt.Errorf("unicast_src: %w", err)
		}
		vc.UnicastSrc = a.Unmap()
	}
	for _, t := range c.TrackBackends {
		vc.TrackBackends = append(vc.TrackBackends, vrrp.Tracker{Name: t.Backend, Weight: t.Weight})
	}
	for _, t := range c.TrackInterfaces {
		vc.TrackInterfaces = append(vc.TrackInterfaces, vrrp.Tracker{Name: t.Interface, Weight: t.Weight})
	}
	return vc, nil
}
