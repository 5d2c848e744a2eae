package vrrp

import (
	"fmt"
	"net/netip"
	"time"
)

// State is a virtual router's state (RFC 5798 section 6.4).
type State int32

// The states of RFC 5798.
const (
	// Initialize: not taking part, waiting for startup (or stopped).
	Initialize State = iota
	// Backup: watching the master's adverts, ready to take over.
	Backup
	// Master: holding the virtual IPs and advertising.
	Master
	// Fault: the router's interface is down; it neither advertises nor watches for adverts
	// until the interface is up again (keepalived's FAULT state; not one of RFC 5798's).
	Fault
)

// String returns the state's name as logs, the admin API and notify programs show it.
func (s State) String() string {
	switch s {
	case Initialize:
		return "initialize"
	case Backup:
		return "backup"
	case Master:
		return "master"
	case Fault:
		return "fault"
	}
	return fmt.Sprintf("state(%d)", int32(s))
}

// SkewTime is RFC 5798's Skew_Time: ((256 - priority) * Master_Adver_Interval) / 256. The
// higher a backup's priority, the sooner it takes over, so backups do not all claim mastership
// at once.
func SkewTime(priority uint8, masterAdverInterval time.Duration) time.Duration {
	return time.Duration(256-int64(priority)) * masterAdverInterval / 256
}

// MasterDownInterval is RFC 5798's Master_Down_Interval: 3 * Master_Adver_Interval + Skew_Time,
// how long a backup waits without adverts before it takes over.
func MasterDownInterval(priority uint8, masterAdverInterval time.Duration) time.Duration {
	return 3*masterAdverInterval + SkewTime(priority, masterAdverInterval)
}

// Params are what a Machine needs to know about its virtual router.
type Params struct {
	// VRID is the virtual router ID; adverts for other IDs are ignored.
	VRID uint8
	// Priority is the effective priority: the configured one less the weights of failing
	// trackers. 255 would be the address owner's, which starts as master at once.
	Priority uint8
	// AdvertInterval is how often this router advertises as master.
	AdvertInterval time.Duration
	// Preempt lets a backup with a higher priority take over from a running master.
	Preempt bool
	// PreemptDelay makes a preempting backup wait this long after it first saw the
	// lower-priority master.
	PreemptDelay time.Duration
	// Addr is this router's primary address on the network: the tie-break between equal
	// priorities (the higher address wins), and the master address while master.
	Addr netip.Addr
}

// Output is what a Machine asks its driver to do after an event: send an advert with a priority
// (0 on shutdown), and report a change of state. The driver adds and removes the virtual IPs on a
// transition to and from Master.
type Output struct {
	// Send asks for one advert with Priority now.
	Send     bool
	Priority uint8
	// Transition is set when the state changed.
	Transition *Transition
}

// Transition is one change of state and why it happened.
type Transition struct {
	From, To State
	Reason   string
}

// Machine is the VRRPv3 state machine of RFC 5798 section 6.4 for one virtual router. It does
// no I/O and reads no clock: every event comes with the time it happened, and Deadline says when
// the next timer event (Timer) is due. It is not safe for concurrent use.
type Machine struct {
	p     Params
	state State

	masterAdverInterval time.Duration
	adverAt             time.Time // Adver_Timer; zero when not running
	downAt              time.Time // Master_Down_Timer; zero when not running

	master     netip.Addr // the current master's address; invalid when unknown
	masterPrio uint8
	// lowerSince is when this backup began seeing a master of lower priority that it means to
	// preempt (zero: not seeing one); it measures PreemptDelay.
	lowerSince time.Time
	// preempting is set while the Master_Down_Timer runs down on a lower-priority master.
	preempting bool
}

// NewMachine returns a machine in state Initialize.
func NewMachine(p Params) *Machine {
	p.AdvertInterval = normInterval(p.AdvertInterval)
	return &Machine{p: p, masterAdverInterval: p.AdvertInterval}
}

// normInterval rounds an interval down to whole centiseconds, at least one: what the advert
// can carry.
func normInterval(d time.Duration) time.Duration {
	return time.Duration(Centiseconds(d)) * Centisecond
}

// State returns the current state.
func (m *Machine) State() State { return m.state }

// Priority returns the effective priority.
func (m *Machine) Priority() uint8 { return m.p.Priority }

// Params returns the machine's parameters.
func (m *Machine) Params() Params { return m.p }

// MasterAdverInterval is the interval learnt from the master's adverts (this router's own while
// master).
func (m *Machine) MasterAdverInterval() time.Duration { return m.masterAdverInterval }

// Master returns the address and priority of the current master, as far as this router knows;
// the address is invalid when no master is known.
func (m *Machine) Master() (netip.Addr, uint8) { return m.master, m.masterPrio }

// Deadline is when Timer must be called next; zero when no timer runs.
func (m *Machine) Deadline() time.Time {
	switch {
	case m.adverAt.IsZero():
		return m.downAt
	case m.downAt.IsZero() || m.adverAt.Before(m.downAt):
		return m.adverAt
	}
	return m.downAt
}

func (m *Machine) transition(to State, reason string) *Transition {
	t := &Transition{From: m.state, To: to, Reason: reason}
	m.state = to
	m.preempting = false
	m.lowerSince = time.Time{}
	return t
}

// becomeMaster enters Master: advertise now and every AdvertInterval.
func (m *Machine) becomeMaster(now time.Time, reason string) Output {
	m.downAt = time.Time{}
	m.adverAt = now.Add(m.p.AdvertInterval)
	m.masterAdverInterval = m.p.AdvertInterval
	m.master, m.masterPrio = m.p.Addr, m.p.Priority
	return Output{Send: true, Priority: m.p.Priority, Transition: m.transition(Master, reason)}
}

// becomeBackup enters Backup, waiting Master_Down_Interval for the master's adverts.
func (m *Machine) becomeBackup(now time.Time, mai time.Duration, reason string) Output {
	m.adverAt = time.Time{}
	m.masterAdverInterval = mai
	m.downAt = now.Add(MasterDownInterval(m.p.Priority, mai))
	return Output{Transition: m.transition(Backup, reason)}
}

// Start is the Startup event: an address owner (priority 255) becomes master at once, any
// other router a backup that takes over when no master advertises for Master_Down_Interval.
func (m *Machine) Start(now time.Time) Output {
	if m.state != Initialize {
		return Output{}
	}
	if m.p.Priority == 255 {
		return m.becomeMaster(now, "startup as the owner of the addresses (priority 255)")
	}
	m.master, m.masterPrio = netip.Addr{}, 0
	return m.becomeBackup(now, m.p.AdvertInterval, "startup")
}

// StartMaster is Start for a router that already holds the virtual IPs: the new process of a
// binary upgrade, taking over from the one it replaces. It becomes master at once.
func (m *Machine) StartMaster(now time.Time, reason string) Output {
	if m.state != Initialize {
		return Output{}
	}
	return m.becomeMaster(now, reason)
}

// Stop is the Shutdown event: a master sends an advert with priority 0, so that the backups
// take over after only their Skew_Time.
func (m *Machine) Stop(now time.Time) Output {
	var out Output
	switch m.state {
	case Initialize:
		return out
	case Master:
		out.Send, out.Priority = true, 0
	}
	m.adverAt, m.downAt = time.Time{}, time.Time{}
	m.master, m.masterPrio = netip.Addr{}, 0
	out.Transition = m.transition(Initialize, "shutdown")
	return out
}

// Fault is the interface-down event: the router stops advertising and watching, and a master
// gives up the virtual IPs (its driver removes them on the transition). It cannot send a last
// advert with priority 0 on a link that is down; the backups take over after their
// Master_Down_Interval.
func (m *Machine) Fault(now time.Time, reason string) Output {
	if m.state == Initialize || m.state == Fault {
		return Output{}
	}
	m.adverAt, m.downAt = time.Time{}, time.Time{}
	m.master, m.masterPrio = netip.Addr{}, 0
	return Output{Transition: m.transition(Fault, reason)}
}

// Recover ends Fault when the interface is up again: the router starts over as at Startup, a
// backup (or master at once as the owner of the addresses) that preempts as configured.
func (m *Machine) Recover(now time.Time, reason string) Output {
	if m.state != Fault {
		return Output{}
	}
	if m.p.Priority == 255 {
		return m.becomeMaster(now, reason)
	}
	return m.becomeBackup(now, m.p.AdvertInterval, reason)
}

// Timer handles the timers due at now: the master's Adver_Timer (advertise) and the backup's
// Master_Down_Timer (take over).
func (m *Machine) Timer(now time.Time) Output {
	switch m.state {
	case Master:
		if !m.adverAt.IsZero() && !now.Before(m.adverAt) {
			m.adverAt = now.Add(m.p.AdvertInterval)
			return Output{Send: true, Priority: m.p.Priority}
		}
	case Backup:
		if !m.downAt.IsZero() && !now.Before(m.downAt) {
			reason := "no advert from a master for the master down interval"
			switch {
			case m.preempting && m.master.IsValid():
				reason = fmt.Sprintf("preempting master %s of lower priority %d", m.master, m.masterPrio)
			case m.master.IsValid() && m.masterPrio == 0:
				reason = fmt.Sprintf("master %s left (priority 0)", m.master)
			case m.master.IsValid():
				reason = fmt.Sprintf("master %s silent for the master down interval", m.master)
			}
			return m.becomeMaster(now, reason)
		}
	}
	return Output{}
}

// Receive handles an advert that passed the packet checks (TTL, version, checksum) and came
// from src, another router. Adverts for other virtual routers are ignored.
func (m *Machine) Receive(now time.Time, a *Advert, src netip.Addr) Output {
	if a.VRID != m.p.VRID || src == m.p.Addr {
		return Output{}
	}
	mai := time.Duration(a.MaxAdvertInterval) * Centisecond
	if mai <= 0 {
		mai = Centisecond
	}
	switch m.state {
	case Backup:
		if a.Priority == 0 {
			// The master is leaving: take over after Skew_Time, not the whole down interval.
			m.master, m.masterPrio = src, 0
			m.downAt = now.Add(SkewTime(m.p.Priority, m.masterAdverInterval))
			m.preempting, m.lowerSince = false, time.Time{}
			return Output{}
		}
		m.master, m.masterPrio = src, a.Priority
		if !m.p.Preempt || a.Priority >= m.p.Priority {
			m.accept(now, mai)
			m.preempting, m.lowerSince = false, time.Time{}
			return Output{}
		}
		// A master of lower priority: preempt it by letting the Master_Down_Timer run out, after
		// PreemptDelay when one is set.
		m.preempting = true
		if m.p.PreemptDelay > 0 {
			if m.lowerSince.IsZero() {
				m.lowerSince = now
			}
			if until := m.lowerSince.Add(m.p.PreemptDelay); now.Before(until) {
				m.accept(now, mai)
				if until.Before(m.downAt) {
					m.downAt = until
				}
			}
		}
		return Output{}
	case Master:
		if a.Priority == 0 {
			// Another master is leaving; make sure the backups hear from this one now.
			m.adverAt = now.Add(m.p.AdvertInterval)
			return Output{Send: true, Priority: m.p.Priority}
		}
		higher := a.Priority > m.p.Priority
		if higher || (a.Priority == m.p.Priority && src.Compare(m.p.Addr) > 0) {
			reason := fmt.Sprintf("advert of higher priority %d from %s", a.Priority, src)
			if !higher {
				reason = fmt.Sprintf("advert of equal priority %d from higher address %s", a.Priority, src)
			}
			out := m.becomeBackup(now, mai, reason)
			m.master, m.masterPrio = src, a.Priority
			return out
		}
	}
	return Output{}
}

// accept takes an advert as the master's: learn its interval and restart the
// Master_Down_Timer.
func (m *Machine) accept(now time.Time, mai time.Duration) {
	m.masterAdverInterval = mai
	m.downAt = now.Add(MasterDownInterval(m.p.Priority, mai))
}

// SetPriority changes the effective priority (a tracker failed or recovered). A master
// advertises the new priority at once, so that a backup that now outranks it can preempt.
func (m *Machine) SetPriority(now time.Time, prio uint8) Output {
	if prio == m.p.Priority {
		return Output{}
	}
	m.p.Priority = prio
	if m.state == Backup && m.preempting && m.masterPrio != 0 && prio <= m.masterPrio {
		// No longer outranks the master it was about to preempt: wait for it as usual.
		m.preempting, m.lowerSince = false, time.Time{}
		m.accept(now, m.masterAdverInterval)
	}
	if m.state == Master {
		m.masterPrio = prio
		m.adverAt = now.Add(m.p.AdvertInterval)
		return Output{Send: true, Priority: prio}
	}
	return Output{}
}

// SetParams changes the parameters of a running machine (a reload). The VRID must stay; a
// changed priority is advertised at once by a master, as with SetPriority.
func (m *Machine) SetParams(now time.Time, p Params) Output {
	p.VRID = m.p.VRID
	p.AdvertInterval = normInterval(p.AdvertInterval)
	prio := p.Priority
	p.Priority = m.p.Priority
	intervalChanged := p.AdvertInterval != m.p.AdvertInterval
	m.p = p
	if m.state == Master {
		m.master = p.Addr
		if intervalChanged {
			m.masterAdverInterval = p.AdvertInterval
			m.adverAt = now.Add(p.AdvertInterval)
		}
	}
	if !p.Preempt {
		m.preempting, m.lowerSince = false, time.Time{}
	}
	out := m.SetPriority(now, prio)
	if intervalChanged && m.state == Master && !out.Send {
		out = Output{Send: true, Priority: m.p.Priority}
	}
	return out
}
