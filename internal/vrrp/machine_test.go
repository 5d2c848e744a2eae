package vrrp

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestTimerArithmetic(t *testing.T) {
	tests := []struct {
		name     string
		prio     uint8
		interval time.Duration
		skew     time.Duration
		down     time.Duration
	}{
		// RFC 5798 in centiseconds: Skew_Time = ((256 - Priority) * Master_Adver_Interval) / 256.
		{"default priority 1s", 100, time.Second, 609375 * time.Microsecond, 3609375 * time.Microsecond},
		{"priority 254 1s", 254, time.Second, 7812500 * time.Nanosecond, 3007812500 * time.Nanosecond},
		{"priority 1 1s", 1, time.Second, 996093750 * time.Nanosecond, 3996093750 * time.Nanosecond},
		{"priority 150 200ms", 150, 200 * time.Millisecond, 82812500 * time.Nanosecond, 682812500 * time.Nanosecond},
		{"priority 100 200ms", 100, 200 * time.Millisecond, 121875 * time.Microsecond, 721875 * time.Microsecond},
		{"priority 255 (owner)", 255, time.Second, 3906250 * time.Nanosecond, 3003906250 * time.Nanosecond},
		{"longest interval", 100, MaxAdvertInterval, 24953906250 * time.Nanosecond, 147803906250 * time.Nanosecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SkewTime(tt.prio, tt.interval); got != tt.skew {
				t.Errorf("SkewTime = %v, want %v", got, tt.skew)
			}
			if got := MasterDownInterval(tt.prio, tt.interval); got != tt.down {
				t.Errorf("MasterDownInterval = %v, want %v", got, tt.down)
			}
		})
	}
	// A higher priority always takes over first.
	for p := uint8(1); p < 255; p++ {
		if MasterDownInterval(p+1, time.Second) >= MasterDownInterval(p, time.Second) {
			t.Fatalf("priority %d does not take over before %d", p+1, p)
		}
	}
}

var (
	addrA = netip.MustParseAddr("10.0.0.1")
	addrB = netip.MustParseAddr("10.0.0.2")
	t0    = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func advert(prio uint8, interval time.Duration) *Advert {
	return &Advert{VRID: 51, Priority: prio, MaxAdvertInterval: Centiseconds(interval), Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.100")}}
}

func newTestMachine(prio uint8, preempt bool) *Machine {
	return NewMachine(Params{VRID: 51, Priority: prio, AdvertInterval: ms(100), Preempt: preempt, Addr: addrA})
}

func wantTransition(t *testing.T, out Output, from, to State, reason string) {
	t.Helper()
	tr := out.Transition
	if tr == nil {
		t.Fatalf("no transition, want %s -> %s", from, to)
	}
	if tr.From != from || tr.To != to {
		t.Fatalf("transition %s -> %s, want %s -> %s", tr.From, tr.To, from, to)
	}
	if !strings.Contains(tr.Reason, reason) {
		t.Errorf("reason %q does not mention %q", tr.Reason, reason)
	}
}

func TestStartupAndTakeOver(t *testing.T) {
	m := newTestMachine(150, true)
	out := m.Start(t0)
	wantTransition(t, out, Initialize, Backup, "startup")
	if out.Send {
		t.Error("a backup must not advertise at startup")
	}
	down := MasterDownInterval(150, ms(100))
	if got := m.Deadline(); !got.Equal(t0.Add(down)) {
		t.Fatalf("deadline %v after start, want %v", got.Sub(t0), down)
	}
	if out := m.Timer(t0.Add(down - time.Nanosecond)); out.Transition != nil || out.Send {
		t.Fatalf("early timer acted: %+v", out)
	}
	out = m.Timer(t0.Add(down))
	wantTransition(t, out, Backup, Master, "master down interval")
	if !out.Send || out.Priority != 150 {
		t.Errorf("new master must advertise its priority: %+v", out)
	}
	if got, _ := m.Master(); got != addrA {
		t.Errorf("master = %v, want itself", got)
	}
	// Then every advert interval.
	now := t0.Add(down)
	for i := 1; i <= 3; i++ {
		if got := m.Deadline(); !got.Equal(now.Add(ms(100 * i))) {
			t.Fatalf("advert %d due at %v", i, got.Sub(now))
		}
		if out := m.Timer(m.Deadline()); !out.Send || out.Priority != 150 || out.Transition != nil {
			t.Fatalf("advert timer: %+v", out)
		}
	}
}

func TestOwnerStartsAsMaster(t *testing.T) {
	m := newTestMachine(255, true)
	out := m.Start(t0)
	wantTransition(t, out, Initialize, Master, "owner")
	if !out.Send || out.Priority != 255 {
		t.Errorf("owner must advertise at once: %+v", out)
	}
}

func TestBackupFollowsMaster(t *testing.T) {
	m := newTestMachine(100, true)
	m.Start(t0)
	// The master advertises every 300ms: the backup learns that interval.
	now := t0
	for range 5 {
		now = now.Add(ms(300))
		if out := m.Receive(now, advert(150, ms(300)), addrB); out.Transition != nil || out.Send {
			t.Fatalf("backup acted on a higher master's advert: %+v", out)
		}
	}
	if m.MasterAdverInterval() != ms(300) {
		t.Errorf("learnt interval %v, want 300ms", m.MasterAdverInterval())
	}
	if got, want := m.Deadline().Sub(now), MasterDownInterval(100, ms(300)); got != want {
		t.Errorf("master down after %v, want %v (3 x the learnt interval + skew)", got, want)
	}
	if master, prio := m.Master(); master != addrB || prio != 150 {
		t.Errorf("master = %v/%d, want %v/150", master, prio, addrB)
	}
	// Silence: the backup takes over after the master down interval.
	out := m.Timer(m.Deadline())
	wantTransition(t, out, Backup, Master, "silent")
}

func TestPriorityZeroMeansSkewTime(t *testing.T) {
	m := newTestMachine(100, true)
	m.Start(t0)
	m.Receive(t0.Add(ms(50)), advert(150, ms(100)), addrB)
	now := t0.Add(ms(80))
	m.Receive(now, advert(0, ms(100)), addrB)
	if got, want := m.Deadline().Sub(now), SkewTime(100, ms(100)); got != want {
		t.Fatalf("takeover after %v, want Skew_Time %v", got, want)
	}
	out := m.Timer(m.Deadline())
	wantTransition(t, out, Backup, Master, "priority 0")
}

func TestPreemption(t *testing.T) {
	t.Run("preempt on", func(t *testing.T) {
		m := newTestMachine(150, true)
		m.Start(t0)
		down := m.Deadline()
		// Adverts of a lower master are discarded, so the timer is not restarted.
		for i := 1; i <= 5; i++ {
			m.Receive(t0.Add(ms(100*i)), advert(100, ms(100)), addrB)
		}
		if !m.Deadline().Equal(down) {
			t.Fatalf("lower-priority adverts moved the master down timer")
		}
		wantTransition(t, m.Timer(down), Backup, Master, "preempting master 10.0.0.2 of lower priority 100")
	})
	t.Run("preempt off", func(t *testing.T) {
		m := newTestMachine(150, false)
		m.Start(t0)
		now := t0
		for range 20 {
			now = now.Add(ms(100))
			m.Receive(now, advert(100, ms(100)), addrB)
			if out := m.Timer(now); out.Transition != nil {
				t.Fatalf("preempted with preempt off: %+v", out.Transition)
			}
		}
	})
	t.Run("preempt delay", func(t *testing.T) {
		m := NewMachine(Params{VRID: 51, Priority: 150, AdvertInterval: ms(100), Preempt: true, PreemptDelay: ms(1000), Addr: addrA})
		m.Start(t0)
		now := t0
		var took time.Time
		for i := 0; i < 30 && took.IsZero(); i++ {
			now = now.Add(ms(100))
			if d := m.Deadline(); !d.After(now) {
				if out := m.Timer(d); out.Transition != nil && out.Transition.To == Master {
					took = d
					break
				}
			}
			m.Receive(now, advert(100, ms(100)), addrB)
		}
		// First lower advert at 100ms, then 1s of delay.
		if want := t0.Add(ms(1100)); !took.Equal(want) {
			t.Errorf("preempted at %v, want %v", took.Sub(t0), want.Sub(t0))
		}
	})
	t.Run("higher priority resets the delay", func(t *testing.T) {
		m := NewMachine(Params{VRID: 51, Priority: 150, AdvertInterval: ms(100), Preempt: true, PreemptDelay: ms(500), Addr: addrA})
		m.Start(t0)
		m.Receive(t0.Add(ms(100)), advert(100, ms(100)), addrB)
		m.Receive(t0.Add(ms(400)), advert(200, ms(100)), addrB) // a better master appeared
		for i := 5; i <= 9; i++ {
			m.Receive(t0.Add(ms(100*i)), advert(100, ms(100)), addrB) // and went down in priority
		}
		if got := m.Deadline(); !got.Equal(t0.Add(ms(1000))) {
			t.Errorf("preempt due at %v, want 1s (500ms after the last lower advert began)", got.Sub(t0))
		}
	})
}

func TestMasterStepsDown(t *testing.T) {
	master := func(t *testing.T, prio uint8) *Machine {
		m := newTestMachine(prio, true)
		m.Start(t0)
		m.Timer(m.Deadline())
		if m.State() != Master {
			t.Fatal("not master")
		}
		return m
	}
	t.Run("higher priority", func(t *testing.T) {
		m := master(t, 100)
		now := t0.Add(time.Second)
		out := m.Receive(now, advert(150, ms(200)), addrB)
		wantTransition(t, out, Master, Backup, "higher priority 150 from 10.0.0.2")
		if out.Send {
			t.Error("a master stepping down must not advertise")
		}
		if got, want := m.Deadline().Sub(now), MasterDownInterval(100, ms(200)); got != want {
			t.Errorf("master down after %v, want %v", got, want)
		}
	})
	t.Run("equal priority, higher address", func(t *testing.T) {
		m := master(t, 100)
		wantTransition(t, m.Receive(t0.Add(time.Second), advert(100, ms(100)), addrB), Master, Backup, "higher address")
	})
	t.Run("equal priority, lower address", func(t *testing.T) {
		m := master(t, 100)
		if out := m.Receive(t0.Add(time.Second), advert(100, ms(100)), netip.MustParseAddr("9.0.0.1")); out.Transition != nil {
			t.Errorf("stepped down for a lower address: %+v", out.Transition)
		}
	})
	t.Run("lower priority", func(t *testing.T) {
		m := master(t, 100)
		if out := m.Receive(t0.Add(time.Second), advert(99, ms(100)), addrB); out.Transition != nil || out.Send {
			t.Errorf("acted on a lower advert: %+v", out)
		}
	})
	t.Run("priority 0 from another", func(t *testing.T) {
		m := master(t, 100)
		out := m.Receive(t0.Add(time.Second), advert(0, ms(100)), addrB)
		if !out.Send || out.Priority != 100 || out.Transition != nil {
			t.Errorf("a master must answer priority 0 with an advert: %+v", out)
		}
	})
	t.Run("other VRID and own packets ignored", func(t *testing.T) {
		m := master(t, 100)
		a := advert(200, ms(100))
		a.VRID = 52
		if out := m.Receive(t0.Add(time.Second), a, addrB); out.Transition != nil {
			t.Error("acted on another VRID")
		}
		if out := m.Receive(t0.Add(time.Second), advert(200, ms(100)), addrA); out.Transition != nil {
			t.Error("acted on its own advert")
		}
	})
}

func TestShutdown(t *testing.T) {
	m := newTestMachine(150, true)
	m.Start(t0)
	m.Timer(m.Deadline())
	out := m.Stop(t0.Add(time.Second))
	wantTransition(t, out, Master, Initialize, "shutdown")
	if !out.Send || out.Priority != 0 {
		t.Errorf("a stopping master must send priority 0: %+v", out)
	}
	if !m.Deadline().IsZero() {
		t.Error("timers still run after shutdown")
	}
	b := newTestMachine(100, true)
	b.Start(t0)
	out = b.Stop(t0)
	wantTransition(t, out, Backup, Initialize, "shutdown")
	if out.Send {
		t.Error("a stopping backup must not advertise")
	}
}

func TestTrackedPriority(t *testing.T) {
	// A master whose priority drops advertises at once, and a backup with preempt that now
	// outranks it takes over after its master down interval.
	lb1 := NewMachine(Params{VRID: 51, Priority: 150, AdvertInterval: ms(100), Preempt: true, Addr: addrA})
	lb2 := NewMachine(Params{VRID: 51, Priority: 100, AdvertInterval: ms(100), Preempt: true, Addr: addrB})
	lb1.Start(t0)
	lb2.Start(t0)
	lb1.Timer(lb1.Deadline())
	now := lb1.Deadline()
	lb2.Receive(now, advert(150, ms(100)), addrA)
	out := lb1.SetPriority(now, 50)
	if !out.Send || out.Priority != 50 {
		t.Fatalf("master did not advertise its new priority: %+v", out)
	}
	lb2.Receive(now, advert(50, ms(100)), addrA)
	want := now.Add(MasterDownInterval(100, ms(100)))
	for i := 0; i < 10; i++ {
		now = now.Add(ms(100))
		lb2.Receive(now, advert(50, ms(100)), addrA)
	}
	if !lb2.Deadline().Equal(want) {
		t.Fatalf("backup takes over at %v, want %v", lb2.Deadline(), want)
	}
	wantTransition(t, lb2.Timer(want), Backup, Master, "preempting")
	wantTransition(t, lb1.Receive(want, advert(100, ms(100)), addrB), Master, Backup, "higher priority 100")
	// Back to 150: lb1, now the backup, preempts lb2.
	lb1.SetPriority(want, 150)
	lb1.Receive(want.Add(ms(100)), advert(100, ms(100)), addrB)
	wantTransition(t, lb1.Timer(lb1.Deadline()), Backup, Master, "preempting")
}

func TestBackupPriorityDropCancelsPreemption(t *testing.T) {
	m := newTestMachine(150, true)
	m.Start(t0)
	m.Receive(t0.Add(ms(100)), advert(120, ms(100)), addrB) // about to preempt
	now := t0.Add(ms(150))
	m.SetPriority(now, 100) // a tracker failed: no longer better than the master
	if got, want := m.Deadline(), now.Add(MasterDownInterval(100, ms(100))); !got.Equal(want) {
		t.Errorf("deadline %v, want a full master down interval from now", got.Sub(t0))
	}
}

func TestSetParams(t *testing.T) {
	m := newTestMachine(150, true)
	m.Start(t0)
	m.Timer(m.Deadline())
	now := t0.Add(time.Second)
	out := m.SetParams(now, Params{Priority: 150, AdvertInterval: ms(250), Preempt: true, Addr: addrA})
	if !out.Send {
		t.Error("a new interval must be advertised at once")
	}
	if got := m.Deadline().Sub(now); got != ms(250) {
		t.Errorf("next advert after %v, want 250ms", got)
	}
	out = m.SetParams(now, Params{Priority: 120, AdvertInterval: ms(250), Preempt: true, Addr: addrA})
	if !out.Send || out.Priority != 120 {
		t.Errorf("a new priority must be advertised at once: %+v", out)
	}
	if m.Params().VRID != 51 {
		t.Error("SetParams changed the VRID")
	}
}

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{Initialize: "initialize", Backup: "backup", Master: "master", 7: "state(7)"} {
		if s.String() != want {
			t.Errorf("%d.String() = %q, want %q", s, s.String(), want)
		}
	}
}

// TestFault: a backup or a master whose interface goes down enters Fault (a master gives up
// its role, without an advert), ignores adverts and timers there, and starts over as a backup
// (an owner as master) when the interface is up again.
func TestFault(t *testing.T) {
	now := time.Unix(1000, 0)
	m := NewMachine(Params{VRID: 1, Priority: 200, AdvertInterval: time.Second, Preempt: true, Addr: netip.MustParseAddr("10.0.0.1")})
	if out := m.Fault(now, "down"); out.Transition != nil {
		t.Fatalf("Fault in Initialize: %+v", out)
	}
	m.Start(now)
	out := m.Timer(now.Add(MasterDownInterval(200, time.Second)))
	if m.State() != Master || out.Transition == nil {
		t.Fatalf("not master: %v", m.State())
	}
	now = now.Add(5 * time.Second)
	out = m.Fault(now, "interface eth0 is down")
	if m.State() != Fault || out.Send || out.Transition == nil || out.Transition.From != Master || out.Transition.To != Fault {
		t.Fatalf("master to fault: %+v, state %v", out, m.State())
	}
	if !m.Deadline().IsZero() {
		t.Fatalf("a timer runs in Fault: %v", m.Deadline())
	}
	if out := m.Receive(now, &Advert{VRID: 1, Priority: 100, MaxAdvertInterval: 100}, netip.MustParseAddr("10.0.0.2")); out.Transition != nil || out.Send {
		t.Fatalf("an advert in Fault: %+v", out)
	}
	if out := m.Timer(now.Add(time.Hour)); out.Transition != nil || out.Send {
		t.Fatalf("a timer in Fault: %+v", out)
	}
	if out := m.Fault(now, "again"); out.Transition != nil {
		t.Fatalf("Fault twice: %+v", out)
	}
	out = m.Recover(now, "interface eth0 is up again")
	if m.State() != Backup || out.Transition == nil || out.Transition.From != Fault || m.Deadline().IsZero() {
		t.Fatalf("fault to backup: %+v, state %v", out, m.State())
	}
	owner := NewMachine(Params{VRID: 1, Priority: 255, AdvertInterval: time.Second, Addr: netip.MustParseAddr("10.0.0.3")})
	owner.Start(now)
	owner.Fault(now, "down")
	if out := owner.Recover(now, "up"); owner.State() != Master || !out.Send {
		t.Fatalf("owner after fault: %v %+v", owner.State(), out)
	}
	if Fault.String() != "fault" {
		t.Errorf("Fault.String() = %q", Fault.String())
	}
}
