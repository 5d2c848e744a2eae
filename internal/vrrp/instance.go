// Package vrrp keeps virtual IPs alive with VRRPv3 (RFC 5798): the balancers of a pair elect a
// master by priority, the master holds the virtual IPs on its interface and announces them with
// gratuitous ARP, and a backup takes over within Master_Down_Interval when the master's adverts
// stop, or after only Skew_Time when it leaves cleanly (priority 0).
//
// Machine is the state machine, pure and clock-free; Instance drives one Machine with a real
// clock, a Transport for the adverts (raw IP protocol 112, multicast to 224.0.0.18 or unicast to
// peers), an Addresses for the virtual IPs (netlink and gratuitous ARP) and trackers that lower
// the priority while a backend has no usable server or an interface is down. Both the transport
// and the addresses can be replaced, so the whole instance is tested without a network.
package vrrp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Config is one virtual router instance, with the defaults already applied.
type Config struct {
	// Name labels the instance in logs, status and notify calls.
	Name string
	// Interface carries the adverts and the virtual IPs.
	Interface string
	// VRID is the virtual router ID, 1-255.
	VRID uint8
	// Priority is the configured priority, 1-254 (255 makes an address owner).
	Priority uint8
	// AdvertInterval is the master's advert interval (whole centiseconds).
	AdvertInterval time.Duration
	// Preempt lets this router take over from a master of lower priority.
	Preempt bool
	// PreemptDelay waits this long, seeing a lower-priority master, before preempting.
	PreemptDelay time.Duration
	// VIPs are the virtual IPs with their prefix length, as added to the interface.
	VIPs []netip.Prefix
	// UnicastPeers, when set, receive the adverts instead of the multicast group.
	UnicastPeers []netip.Addr
	// UnicastSrc is the source address of unicast adverts; invalid: the interface's primary
	// IPv4 address.
	UnicastSrc netip.Addr
	// TrackBackends and TrackInterfaces lower the priority while they fail.
	TrackBackends   []Tracker
	TrackInterfaces []Tracker
	// Notify is a program and its first arguments, run on every transition with the new state
	// and the instance name appended; empty: none.
	Notify []string
	// NotifyTimeout kills a notify program that runs longer; 0: 10s.
	NotifyTimeout time.Duration
	// GARPRepeat gratuitous ARPs per virtual IP on becoming master, GARPInterval apart; and
	// once more GARPDelay later (0: not again).
	GARPRepeat   int
	GARPInterval time.Duration
	GARPDelay    time.Duration
}

// Tracker is a backend or interface whose failure lowers the priority by Weight.
type Tracker struct {
	Name   string
	Weight int
}

// Transport carries adverts. Send computes the checksum for each destination; Receive blocks
// until an advert arrives and returns it with its source, or returns an error: one wrapping
// ErrShort, ErrChecksum and the like for a packet that failed the checks (the caller counts it
// and reads on), net.ErrClosed once closed.
type Transport interface {
	Send(a *Advert) error
	Receive() (*Advert, netip.Addr, error)
	// LocalAddr is the source address of the adverts: the tie-break between equal priorities.
	LocalAddr() netip.Addr
	Close() error
}

// Addresses puts the virtual IPs on the interface and announces them.
type Addresses interface {
	// Add adds the addresses to the interface; those present are left alone.
	Add(vips []netip.Prefix) error
	// Remove removes the addresses (whatever their prefix length); absent ones are fine.
	Remove(vips []netip.Prefix) error
	// Announce sends one gratuitous ARP for each address.
	Announce(vips []netip.Prefix) error
	// Present reports whether every address is on the interface.
	Present(vips []netip.Prefix) (bool, error)
}

// Options are what an Instance gets from outside beside its Config. The zero value runs on the
// real network with no backend health (tracked backends never fail).
type Options struct {
	Logger *slog.Logger
	// BackendHealthy reports whether a backend has a server that can take traffic; polled.
	BackendHealthy func(backend string) bool
	// LinkUp reports whether an interface is up; nil: netlink. Polled.
	LinkUp func(iface string) bool
	// OpenTransport opens the advert transport; nil: a raw socket on the interface.
	OpenTransport func(cfg Config) (Transport, error)
	// Addresses manages the virtual IPs; nil: netlink and gratuitous ARP on the interface.
	Addresses Addresses
	// TrackInterval is how often trackers are polled; 0: 100ms.
	TrackInterval time.Duration
	// Adopt is for the new process of a binary upgrade: the process it replaces may be master
	// and hold the virtual IPs. They are kept, not cleared as a crash's leftovers, and when all
	// are on the interface the instance starts as master at once (the old process then leaves
	// with Release, quietly).
	Adopt bool
}

// Status is what an instance shows the admin API: its state, priorities, master and history.
type Status struct {
	Name      string `json:"name"`
	Interface string `json:"interface"`
	VRID      int    `json:"virtual_router_id"`
	// State is initialize, backup or master.
	State string `json:"state"`
	// Priority is the configured priority; EffectivePriority is it less the failing trackers'
	// weights, the one advertised.
	Priority          int `json:"priority"`
	EffectivePriority int `json:"effective_priority"`
	// AdvertInterval is this router's; MasterAdvertInterval the one learnt from the master.
	AdvertInterval       time.Duration `json:"advert_interval"`
	MasterAdvertInterval time.Duration `json:"master_advert_interval"`
	// MasterAddr is the current master's address (this router's own while master); invalid
	// (shown as "") when no master is known. MasterPriority is its advertised priority.
	MasterAddr     netip.Addr `json:"master_addr"`
	MasterPriority int        `json:"master_priority"`
	// LocalAddr is this router's advert source address.
	LocalAddr  netip.Addr `json:"local_addr"`
	VirtualIPs []string   `json:"virtual_ips"`
	// Transitions counts state changes since the instance started; LastTransition is when the
	// last one happened and LastReason why.
	Transitions    uint64          `json:"transitions"`
	LastTransition time.Time       `json:"last_transition"`
	LastReason     string          `json:"last_reason"`
	Trackers       []TrackerStatus `json:"trackers"`
	// Adverts counted since start: sent, received for this virtual router, and received
	// packets dropped by the checks (bad TTL, checksum, version, length).
	AdvertsSent     uint64 `json:"adverts_sent"`
	AdvertsReceived uint64 `json:"adverts_received"`
	InvalidReceived uint64 `json:"invalid_received"`
	// LastError is the last failure to open the socket, send, or change addresses; "" if none.
	LastError string `json:"last_error,omitempty"`
}

// TrackerStatus is one tracker's current verdict.
type TrackerStatus struct {
	// Kind is backend or interface.
	Kind    string `json:"kind"`
	Name    string `json:"name"`
	Weight  int    `json:"weight"`
	Failing bool   `json:"failing"`
}

// Instance runs one virtual router. Start it with Start; Update applies a reloaded Config; Stop
// leaves cleanly (priority 0, virtual IPs removed).
type Instance struct {
	opts   Options
	logger *slog.Logger
	router Config // the Config it started with: what Update may not change (SameRouter)

	updates chan Config
	stop    chan struct{}
	done    chan struct{}
	stopped sync.Once
	// release makes the stop quiet: no priority 0, addresses left for the next process.
	release atomic.Bool

	mu     sync.Mutex
	status Status

	notify *notifier
}

// Start validates cfg and starts the instance in the background: it removes stale virtual IPs
// (left by a crash), opens its transport (retrying every second while that fails) and enters
// Backup.
func Start(cfg Config, opts Options) (*Instance, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.TrackInterval <= 0 {
		opts.TrackInterval = 100 * time.Millisecond
	}
	if opts.LinkUp == nil {
		opts.LinkUp = linkUp
	}
	if opts.OpenTransport == nil {
		opts.OpenTransport = openSocket
	}
	if opts.Addresses == nil {
		opts.Addresses = NewNetlinkAddresses(cfg.Interface)
	}
	in := &Instance{
		opts:    opts,
		router:  cfg,
		logger:  opts.Logger.With("vrrp", cfg.Name),
		updates: make(chan Config),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	in.notify = newNotifier(in.logger)
	in.status = Status{State: Initialize.String()}
	in.setConfigStatus(cfg)
	go in.run(cfg)
	return in, nil
}

// check refuses a Config that cannot run.
func (c *Config) check() error {
	switch {
	case c.Interface == "":
		return errors.New("vrrp: interface is required")
	case c.VRID == 0:
		return fmt.Errorf("vrrp %q: virtual router ID 0 is not valid", c.Name)
	case c.Priority == 0:
		return fmt.Errorf("vrrp %q: priority 0 is not valid", c.Name)
	case len(c.VIPs) == 0:
		return fmt.Errorf("vrrp %q: no virtual IPs", c.Name)
	}
	for _, p := range c.VIPs {
		if !p.Addr().Is4() {
			return fmt.Errorf("vrrp %q: virtual IP %s: only IPv4 is supported", c.Name, p)
		}
	}
	return nil
}

// Name returns the instance's name.
func (in *Instance) Name() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.status.Name
}

// Status returns a snapshot of the instance's state.
func (in *Instance) Status() Status {
	in.mu.Lock()
	defer in.mu.Unlock()
	s := in.status
	s.VirtualIPs = slices.Clone(s.VirtualIPs)
	s.Trackers = slices.Clone(s.Trackers)
	return s
}

// Update applies a changed Config to the running instance: priority, intervals, preemption,
// virtual IPs (a master adds and removes the difference), trackers, notify and gratuitous ARP
// settings. The interface, VRID and unicast peers cannot change in place: stop the instance and
// start a new one.
func (in *Instance) Update(cfg Config) error {
	if err := cfg.check(); err != nil {
		return err
	}
	if !SameRouter(in.router, cfg) {
		return fmt.Errorf("vrrp %q: interface, virtual router ID or unicast peers changed; start a new instance", cfg.Name)
	}
	select {
	case in.updates <- cfg:
		return nil
	case <-in.done:
		return errors.New("vrrp: instance stopped")
	}
}

// Stop leaves the virtual router: a master advertises priority 0 (the backup takes over after
// its Skew_Time) and removes the virtual IPs. It returns once that is done and the last notify
// program finished (or ctx ended).
func (in *Instance) Stop(ctx context.Context) {
	in.stopped.Do(func() { close(in.stop) })
	select {
	case <-in.done:
	case <-ctx.Done():
		return
	}
	in.notify.close(ctx)
}

// Release stops the instance for a binary upgrade whose new process adopted it: no priority 0
// advert and the virtual IPs stay on the interface, so traffic never notices the handover. It
// returns once the instance stopped.
func (in *Instance) Release(ctx context.Context) {
	in.release.Store(true)
	in.Stop(ctx)
}

// Done is closed when the instance has stopped.
func (in *Instance) Done() <-chan struct{} { return in.done }

// SameRouter reports whether a and b are the same virtual router on the same network, so that
// one can be updated in place into the other.
func SameRouter(a, b Config) bool {
	return a.Interface == b.Interface && a.VRID == b.VRID &&
		slices.Equal(a.UnicastPeers, b.UnicastPeers) && a.UnicastSrc == b.UnicastSrc
}

// received is one advert from the transport, or a receive error.
type received struct {
	a   *Advert
	src netip.Addr
	err error
}

// runner is the state of the instance's goroutine.
type runner struct {
	in    *Instance
	cfg   Config
	m     *Machine
	tr    Transport
	rx    chan received
	local netip.Addr
	// failing holds the trackers currently failing, by kind and name.
	failing   map[string]bool
	garpStop  context.CancelFunc
	warned    map[netip.Addr]bool // sources whose address list differs, already logged
	lastError string
}

func (in *Instance) run(cfg Config) {
	defer close(in.done)
	r := &runner{in: in, cfg: cfg, failing: map[string]bool{}, warned: map[netip.Addr]bool{}}
	defer func() {
		if v := recover(); v != nil {
			in.logger.Error("vrrp instance panic", "panic", v)
			r.cleanup()
		}
	}()
	if !in.opts.Adopt {
		// Addresses a crash left behind would answer beside the real master's.
		if err := in.opts.Addresses.Remove(cfg.VIPs); err != nil {
			r.fail("remove stale virtual IPs", err)
		}
	}
	if !r.open() {
		return
	}
	r.m = NewMachine(r.params(r.effective()))
	if present, err := in.opts.Addresses.Present(cfg.VIPs); in.opts.Adopt && err == nil && present {
		r.apply(r.m.StartMaster(time.Now(), "adopted the virtual IPs of the process it replaces"))
	} else {
		r.apply(r.m.Start(time.Now()))
	}
	timer := time.NewTimer(time.Until(r.m.Deadline()))
	defer timer.Stop()
	track := time.NewTicker(in.opts.TrackInterval)
	defer track.Stop()
	for {
		select {
		case <-in.stop:
			if in.release.Load() {
				r.handOver()
				return
			}
			r.apply(r.m.Stop(time.Now()))
			r.cleanup()
			return
		case c := <-in.updates:
			r.update(c)
		case p, ok := <-r.rx:
			if !ok {
				// The socket failed under us: open a new one, keeping the state.
				r.tr.Close()
				r.tr = nil
				if !r.open() {
					r.apply(r.m.Stop(time.Now()))
					r.cleanup()
					return
				}
				continue
			}
			r.receive(p)
		case <-timer.C:
			r.apply(r.m.Timer(time.Now()))
		case <-track.C:
			r.checkLink()
			if eff := r.effective(); eff != r.m.Priority() {
				r.apply(r.m.SetPriority(time.Now(), eff))
			}
			r.in.setPriorityStatus(r.m, r.cfg)
		}
		if d := r.m.Deadline(); !d.IsZero() {
			timer.Reset(time.Until(d))
		}
	}
}

// open opens the transport, retrying every second until it works or the instance is stopped.
func (r *runner) open() bool {
	for {
		tr, err := r.in.opts.OpenTransport(r.cfg)
		if err == nil {
			r.tr = tr
			r.local = tr.LocalAddr()
			r.rx = make(chan received, 16)
			go receiveLoop(tr, r.rx, r.in.done)
			r.in.mu.Lock()
			r.in.status.LocalAddr = r.local
			r.in.status.LastError = ""
			r.in.mu.Unlock()
			r.in.logger.Info("vrrp started", "interface", r.cfg.Interface, "vrid", r.cfg.VRID,
				"priority", r.cfg.Priority, "advert_interval", r.cfg.AdvertInterval, "source", r.local,
				"unicast_peers", len(r.cfg.UnicastPeers))
			return true
		}
		r.fail("open socket", err)
		select {
		case <-r.in.stop:
			return false
		case c := <-r.in.updates:
			r.cfg = c
			r.in.setConfigStatus(c)
		case <-time.After(time.Second):
		}
	}
}

// receiveLoop feeds the transport's adverts to rx until the transport is closed or the instance
// is done.
func receiveLoop(tr Transport, rx chan<- received, done <-chan struct{}) {
	for {
		a, src, err := tr.Receive()
		if err != nil && (errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed)) {
			close(rx)
			return
		}
		select {
		case rx <- received{a, src, err}:
		case <-done:
			return
		}
		if err != nil && !isPacketError(err) {
			// A socket error other than a bad packet: do not spin on it.
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// isPacketError reports whether err is about one bad packet rather than the socket.
func isPacketError(err error) bool {
	for _, e := range []error{ErrShort, ErrVersion, ErrType, ErrLength, ErrChecksum, ErrTTL, ErrFamily} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// receive handles one received advert.
func (r *runner) receive(p received) {
	if p.err != nil {
		r.in.mu.Lock()
		if isPacketError(p.err) {
			r.in.status.InvalidReceived++
		}
		r.in.mu.Unlock()
		if isPacketError(p.err) {
			r.in.logger.Debug("vrrp packet dropped", "err", p.err)
		} else {
			r.fail("receive", p.err)
		}
		return
	}
	if p.a.VRID != r.cfg.VRID || p.src == r.local {
		return
	}
	if len(r.cfg.UnicastPeers) > 0 && !slices.Contains(r.cfg.UnicastPeers, p.src) {
		r.in.logger.Debug("vrrp advert from a source that is not a unicast peer dropped", "source", p.src)
		return
	}
	r.in.mu.Lock()
	r.in.status.AdvertsReceived++
	r.in.mu.Unlock()
	if !r.warned[p.src] && p.a.Priority != 0 && !sameAddrs(p.a.Addrs, r.cfg.VIPs) {
		r.warned[p.src] = true
		r.in.logger.Warn("vrrp advert lists other virtual IPs than this instance; check both configs",
			"source", p.src, "theirs", fmt.Sprint(p.a.Addrs), "ours", fmt.Sprint(r.cfg.VIPs))
	}
	r.apply(r.m.Receive(time.Now(), p.a, p.src))
}

// sameAddrs reports whether an advert's addresses are the virtual IPs, in any order.
func sameAddrs(addrs []netip.Addr, vips []netip.Prefix) bool {
	if len(addrs) != len(vips) {
		return false
	}
	for _, v := range vips {
		if !slices.Contains(addrs, v.Addr()) {
			return false
		}
	}
	return true
}

// params builds the Machine's parameters from the config.
func (r *runner) params(prio uint8) Params {
	return Params{
		VRID: r.cfg.VRID, Priority: prio, AdvertInterval: r.cfg.AdvertInterval,
		Preempt: r.cfg.Preempt, PreemptDelay: r.cfg.PreemptDelay, Addr: r.local,
	}
}

// effective computes the priority less the weights of the failing trackers, clamped to 1..254,
// and logs trackers that changed.
func (r *runner) effective() uint8 {
	prio := int(r.cfg.Priority)
	if prio == 255 {
		return 255
	}
	var ts []TrackerStatus
	check := func(kind string, list []Tracker, ok func(string) bool) {
		for _, t := range list {
			key := kind + " " + t.Name
			failing := ok != nil && !ok(t.Name)
			if failing != r.failing[key] {
				if failing {
					r.in.logger.Warn("vrrp tracker failing", "kind", kind, "name", t.Name, "weight", t.Weight)
				} else {
					r.in.logger.Info("vrrp tracker recovered", "kind", kind, "name", t.Name, "weight", t.Weight)
				}
				r.failing[key] = failing
			}
			if failing {
				prio -= t.Weight
			}
			ts = append(ts, TrackerStatus{Kind: kind, Name: t.Name, Weight: t.Weight, Failing: failing})
		}
	}
	check("backend", r.cfg.TrackBackends, r.in.opts.BackendHealthy)
	check("interface", r.cfg.TrackInterfaces, r.in.opts.LinkUp)
	r.in.mu.Lock()
	r.in.status.Trackers = ts
	r.in.mu.Unlock()
	return uint8(min(max(prio, 1), 254))
}

// checkLink moves the instance to Fault while its own interface is down (administratively, or
// without a carrier) and back to Backup once it is up.
func (r *runner) checkLink() {
	up := r.in.opts.LinkUp(r.cfg.Interface)
	switch st := r.m.State(); {
	case !up && st != Fault && st != Initialize:
		r.apply(r.m.Fault(time.Now(), "interface "+r.cfg.Interface+" is down"))
	case up && st == Fault:
		r.apply(r.m.Recover(time.Now(), "interface "+r.cfg.Interface+" is up again"))
	}
}

// apply carries out a Machine's output: the advert, then the addresses of a transition.
func (r *runner) apply(out Output) {
	if out.Send {
		r.send(out.Priority)
	}
	if t := out.Transition; t != nil {
		r.transition(t)
	}
	r.in.setPriorityStatus(r.m, r.cfg)
}

func (r *runner) send(prio uint8) {
	if r.tr == nil {
		return
	}
	a := &Advert{VRID: r.cfg.VRID, Priority: prio, MaxAdvertInterval: Centiseconds(r.cfg.AdvertInterval)}
	for _, v := range r.cfg.VIPs {
		a.Addrs = append(a.Addrs, v.Addr())
	}
	if err := r.tr.Send(a); err != nil {
		r.fail("send advert", err)
		return
	}
	r.in.mu.Lock()
	r.in.status.AdvertsSent++
	r.in.mu.Unlock()
}

func (r *runner) transition(t *Transition) {
	switch {
	case t.To == Master:
		if err := r.in.opts.Addresses.Add(r.cfg.VIPs); err != nil {
			r.fail("add virtual IPs", err)
		}
		r.startGARP()
	case t.From == Master:
		r.stopGARP()
		if err := r.in.opts.Addresses.Remove(r.cfg.VIPs); err != nil {
			r.fail("remove virtual IPs", err)
		}
	}
	master, _ := r.m.Master()
	r.in.logger.Info("vrrp transition", "from", t.From.String(), "to", t.To.String(), "reason", t.Reason,
		"priority", r.m.Priority(), "master", addrString(master))
	now := time.Now()
	r.in.mu.Lock()
	r.in.status.State = t.To.String()
	r.in.status.Transitions++
	r.in.status.LastTransition = now
	r.in.status.LastReason = t.Reason
	r.in.mu.Unlock()
	if len(r.cfg.Notify) > 0 {
		r.in.notify.enqueue(notifyCall{cfg: r.cfg, state: t.To, prev: t.From, reason: t.Reason, prio: r.m.Priority()})
	}
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// startGARP announces the virtual IPs GARPRepeat times, GARPInterval apart, and once more after
// GARPDelay, in the background until the instance leaves Master.
func (r *runner) startGARP() {
	r.stopGARP()
	ctx, cancel := context.WithCancel(context.Background())
	r.garpStop = cancel
	vips, repeat, gap, delay := slices.Clone(r.cfg.VIPs), max(r.cfg.GARPRepeat, 1), r.cfg.GARPInterval, r.cfg.GARPDelay
	addrs, logger := r.in.opts.Addresses, r.in.logger
	go func() {
		round := func() bool {
			for i := range repeat {
				if i > 0 && !sleep(ctx, gap) {
					return false
				}
				if err := addrs.Announce(vips); err != nil {
					logger.Warn("vrrp gratuitous ARP failed", "err", err)
				}
			}
			return true
		}
		if round() && delay > 0 && sleep(ctx, delay) {
			round()
		}
	}()
}

func (r *runner) stopGARP() {
	if r.garpStop != nil {
		r.garpStop()
		r.garpStop = nil
	}
}

// sleep waits d or until ctx ends; false if ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// update applies a reloaded Config.
func (r *runner) update(c Config) {
	old := r.cfg
	r.cfg = c
	r.in.setConfigStatus(c)
	if c.Name != old.Name {
		r.in.logger = r.in.opts.Logger.With("vrrp", c.Name)
	}
	if r.m.State() == Master {
		var gone, added []netip.Prefix
		for _, p := range old.VIPs {
			if !slices.Contains(c.VIPs, p) {
				gone = append(gone, p)
			}
		}
		for _, p := range c.VIPs {
			if !slices.Contains(old.VIPs, p) {
				added = append(added, p)
			}
		}
		if len(gone) > 0 {
			if err := r.in.opts.Addresses.Remove(gone); err != nil {
				r.fail("remove virtual IPs", err)
			}
		}
		if len(added) > 0 {
			if err := r.in.opts.Addresses.Add(added); err != nil {
				r.fail("add virtual IPs", err)
			}
			r.startGARP()
		}
	}
	r.apply(r.m.SetParams(time.Now(), r.params(r.effective())))
}

// cleanup releases what the instance holds: GARP, addresses, transport.
func (r *runner) cleanup() {
	r.stopGARP()
	if r.m != nil && r.m.State() == Master {
		r.apply(r.m.Stop(time.Now()))
	}
	if err := r.in.opts.Addresses.Remove(r.cfg.VIPs); err != nil {
		r.fail("remove virtual IPs", err)
	}
	if r.tr != nil {
		r.tr.Close()
	}
	r.in.logger.Info("vrrp stopped")
}

// handOver stops without a word on the network and without touching the addresses: the new
// process of a binary upgrade carries on as master.
func (r *runner) handOver() {
	r.stopGARP()
	if r.tr != nil {
		r.tr.Close()
	}
	r.in.mu.Lock()
	r.in.status.State = Initialize.String()
	r.in.status.LastReason = "handed over to the new process"
	r.in.mu.Unlock()
	r.in.logger.Info("vrrp handed over to the new process", "state", r.m.State().String())
}

// fail records and logs an operational error; the same error is logged once until it changes.
func (r *runner) fail(what string, err error) {
	msg := what + ": " + err.Error()
	r.in.mu.Lock()
	r.in.status.LastError = msg
	r.in.mu.Unlock()
	if msg != r.lastError {
		r.in.logger.Error("vrrp "+what+" failed", "err", err)
		r.lastError = msg
	}
}

func (in *Instance) setConfigStatus(c Config) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.status.Name = c.Name
	in.status.Interface = c.Interface
	in.status.VRID = int(c.VRID)
	in.status.Priority = int(c.Priority)
	in.status.AdvertInterval = c.AdvertInterval
	in.status.VirtualIPs = in.status.VirtualIPs[:0:0]
	for _, p := range c.VIPs {
		in.status.VirtualIPs = append(in.status.VirtualIPs, p.String())
	}
	if in.status.EffectivePriority == 0 {
		in.status.EffectivePriority = int(c.Priority)
	}
}

func (in *Instance) setPriorityStatus(m *Machine, c Config) {
	if m == nil {
		return
	}
	master, mprio := m.Master()
	in.mu.Lock()
	defer in.mu.Unlock()
	in.status.EffectivePriority = int(m.Priority())
	in.status.MasterAddr = master
	in.status.MasterPriority = int(mprio)
	in.status.MasterAdvertInterval = m.MasterAdverInterval()
	in.status.AdvertInterval = c.AdvertInterval
}

// notifyCall is one run of the notify program.
type notifyCall struct {
	cfg         Config
	state, prev State
	reason      string
	prio        uint8
}

// notifier runs notify programs one at a time, in transition order, off the instance's
// goroutine so a slow program cannot delay adverts.
type notifier struct {
	logger *slog.Logger
	mu     sync.Mutex
	queue  []notifyCall
	wake   chan struct{}
	idle   chan struct{} // closed while the queue is empty and nothing runs
	closed bool
}

// maxNotifyQueue bounds the calls waiting; beyond it the oldest are dropped (the program would
// only learn of states long gone).
const maxNotifyQueue = 16

func newNotifier(logger *slog.Logger) *notifier {
	n := &notifier{logger: logger, wake: make(chan struct{}, 1), idle: make(chan struct{})}
	close(n.idle)
	go n.loop()
	return n
}

func (n *notifier) enqueue(c notifyCall) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	if len(n.queue) >= maxNotifyQueue {
		n.logger.Warn("vrrp notify queue full; dropping the oldest call", "state", n.queue[0].state.String())
		n.queue = n.queue[1:]
	}
	if len(n.queue) == 0 {
		select {
		case <-n.idle:
			n.idle = make(chan struct{})
		default:
		}
	}
	n.queue = append(n.queue, c)
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

func (n *notifier) loop() {
	for range n.wake {
		for {
			n.mu.Lock()
			if len(n.queue) == 0 {
				select {
				case <-n.idle:
				default:
					close(n.idle)
				}
				closed := n.closed
				n.mu.Unlock()
				if closed {
					return
				}
				break
			}
			c := n.queue[0]
			n.queue = n.queue[1:]
			n.mu.Unlock()
			n.run(c)
		}
	}
}

// close waits for the queued calls to finish (or ctx to end) and stops the notifier.
func (n *notifier) close(ctx context.Context) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.closed = true
	idle := n.idle
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
	select {
	case <-idle:
	case <-ctx.Done():
	}
}

// run executes one notify call: program, its arguments, then state and instance name, with
// WAAGE_VRRP_* variables describing the transition.
func (n *notifier) run(c notifyCall) {
	timeout := c.cfg.NotifyTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	args := append(slices.Clone(c.cfg.Notify[1:]), c.state.String(), c.cfg.Name)
	cmd := exec.CommandContext(ctx, c.cfg.Notify[0], args...)
	cmd.Env = append(os.Environ(),
		"WAAGE_VRRP_INSTANCE="+c.cfg.Name,
		"WAAGE_VRRP_STATE="+c.state.String(),
		"WAAGE_VRRP_PREVIOUS_STATE="+c.prev.String(),
		"WAAGE_VRRP_REASON="+c.reason,
		"WAAGE_VRRP_PRIORITY="+strconv.Itoa(int(c.prio)),
		"WAAGE_VRRP_INTERFACE="+c.cfg.Interface,
		"WAAGE_VRRP_VRID="+strconv.Itoa(int(c.cfg.VRID)),
	)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if len(out) > 1024 {
		out = out[:1024]
	}
	switch {
	case ctx.Err() != nil:
		n.logger.Error("vrrp notify timed out and was killed", "program", c.cfg.Notify[0], "state", c.state.String(), "timeout", timeout)
	case err != nil:
		n.logger.Error("vrrp notify failed", "program", c.cfg.Notify[0], "state", c.state.String(), "err", err, "output", string(out))
	default:
		n.logger.Debug("vrrp notify ran", "program", c.cfg.Notify[0], "state", c.state.String())
	}
}
