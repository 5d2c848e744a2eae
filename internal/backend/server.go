// Package backend holds the live state of upstream servers: health, administrative state, weight,
// in-flight count, latency and counters. State lives outside the configuration, keyed by identity
// (backend name, server name, address), so a reload keeps it. Everything read on the hot path is an
// atomic, so balancers read it without locks.
package backend

import (
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// State is a server's administrative state, set by config or by an operator.
type State int32

const (
	// Ready servers take new traffic.
	Ready State = iota
	// Drain servers take no new traffic except sessions already pinned to them (sticky cookies);
	// open connections finish.
	Drain
	// Maintenance servers take no traffic at all.
	Maintenance
)

// String returns the config spelling of the state.
func (s State) String() string {
	switch s {
	case Ready:
		return "ready"
	case Drain:
		return "drain"
	case Maintenance:
		return "maintenance"
	}
	return fmt.Sprintf("state(%d)", int32(s))
}

// ParseState reads the config spelling; the empty string is Ready.
func ParseState(s string) (State, error) {
	switch s {
	case "", "ready":
		return Ready, nil
	case "drain":
		return Drain, nil
	case "maintenance":
		return Maintenance, nil
	}
	return Ready, fmt.Errorf("unknown server state %q (want ready, drain or maintenance)", s)
}

// Key is a server's identity across reloads.
type Key struct {
	Backend, Name, Address string
}

// Server is one upstream server's live state. Create it with Registry.Server so reloads share it.
type Server struct {
	Key
	// Backup servers are used only when no primary server is usable.
	Backup bool

	weight   atomic.Int32
	state    atomic.Int32
	down     atomic.Bool // active checks' verdict, inverted so the zero value is healthy
	ejected  atomic.Bool // passive checks' verdict (outlier detection)
	inflight atomic.Int64
	ewma     atomic.Int64 // latency EWMA in nanoseconds; 0 = no sample yet

	// slowStart is the ramp length in nanoseconds (0 = off); rampFrom is when the server last
	// became available again (Unix nanoseconds; 0 = not ramping).
	slowStart atomic.Int64
	rampFrom  atomic.Int64

	// Outlier-detection state, owned by package health: consecutive failures and 5xx answers,
	// how many ejections in a row, when the last one ended, and a generation that lets a stale
	// ejection timer recognise that a newer ejection replaced it.
	ConsecutiveFailures atomic.Int32
	Consecutive5xx      atomic.Int32
	Ejections           atomic.Int32
	LastEjectionEnd     atomic.Int64
	EjectionGen         atomic.Uint64

	// Requests counts requests or connections sent to the server.
	Requests atomic.Uint64
	// Failures counts failed attempts (connect errors, resets, timeouts, bad responses).
	Failures atomic.Uint64
	// Checks counts active health checks run against the server.
	Checks    atomic.Uint64
	lastCheck atomic.Pointer[CheckResult]
	// CheckDuration is how long the active checks took.
	CheckDuration Histogram

	// Traffic counters for metrics and the admin API: plain atomics, read at scrape time.
	//
	// Responses counts the statuses clients got, by class (index 1 = 1xx ... 5 = 5xx), once per
	// finished request that the server handled last, including answers waage made for the server
	// (502, 504) after it failed.
	Responses [6]atomic.Uint64
	// BytesIn and BytesOut count bytes from clients to the server and back: HTTP body bytes, or
	// every byte of an L4 session.
	BytesIn, BytesOut atomic.Uint64
	// ConnectErrors counts failed connects (refused, timed out, TLS or PROXY start failed).
	ConnectErrors atomic.Uint64
	// Retries counts attempts the server received as a retry: a request or connection that had
	// failed on another server, or on a stale pooled connection to this one.
	Retries atomic.Uint64
	// Duration is the request duration (from the request head to the last response byte) of
	// the HTTP requests the server handled.
	Duration Histogram

	// events is the Registry's event log (nil for servers made with NewServer).
	events *EventLog

	cfgMu     sync.Mutex
	cfgSeen   bool
	cfgWeight int
	cfgState  State
}

// ApplyConfig sets the weight and state a configuration gives the server. A value is applied when
// the server is new or when the configuration changed it since the last call; a value the
// configuration left as it was keeps whatever an operator set at runtime (a drain through the
// admin API survives a reload that did not touch the server).
func (s *Server) ApplyConfig(weight int, st State) {
	s.cfgMu.Lock()
	defer s.cfgMu.Unlock()
	if !s.cfgSeen || weight != s.cfgWeight {
		if old := s.Weight(); s.cfgSeen && old != weight {
			s.Event("weight", strconv.Itoa(old), strconv.Itoa(weight), "", "config")
		}
		s.SetWeight(weight)
	}
	if !s.cfgSeen || st != s.cfgState {
		if old := s.State(); s.cfgSeen && old != st {
			s.Event("state", old.String(), st.String(), "", "config")
		}
		s.SetState(st)
	}
	s.cfgSeen, s.cfgWeight, s.cfgState = true, weight, st
}

// Event records a change of the server in its registry's event log (nothing for a server made
// with NewServer).
func (s *Server) Event(kind, from, to, detail, source string) {
	s.events.Add(Event{Backend: s.Backend, Server: s.Name, Kind: kind, From: from, To: to, Detail: detail, Source: source})
}

// RecordResponse counts one finished HTTP request the server handled: the status the client
// got, the body bytes each way and the duration.
func (s *Server) RecordResponse(status int, in, out int64, d time.Duration) {
	s.Responses[StatusClass(status)].Add(1)
	// Most requests have no body and many answers none either: a test is cheaper than an
	// atomic add of 0.
	if in > 0 {
		s.BytesIn.Add(uint64(in))
	}
	if out > 0 {
		s.BytesOut.Add(uint64(out))
	}
	s.Duration.Observe(d)
}

// StatusClass is the index of a status in a by-class counter array: 1 for 1xx ... 5 for 5xx, 0
// for anything else.
func StatusClass(status int) int {
	if c := status / 100; c >= 1 && c <= 5 {
		return c
	}
	return 0
}

// NewServer returns a healthy, ready server with weight 1. Tests and tools use it directly; the
// runtime goes through a Registry.
func NewServer(backend, name, address string) *Server {
	s := &Server{Key: Key{Backend: backend, Name: name, Address: address}}
	s.weight.Store(1)
	return s
}

// String names the server as backend/name.
func (s *Server) String() string { return s.Backend + "/" + s.Name }

// Weight is the configured (or operator-set) weight; 0 means no new traffic.
func (s *Server) Weight() int { return int(s.weight.Load()) }

// SetWeight changes the weight; negative values are clamped to 0 and values above MaxInt32 to
// MaxInt32 (rather than wrapping to a negative or zero weight).
func (s *Server) SetWeight(w int) {
	if w < 0 {
		w = 0
	}
	if w > math.MaxInt32 {
		w = math.MaxInt32
	}
	s.weight.Store(int32(w))
}

// WeightScale is the resolution of EffectiveWeight: a server at full strength has an effective
// weight of Weight()*WeightScale, so that slow start can ramp even a weight-1 server in steps
// (HAProxy scales its weights the same way). Every weighted algorithm compares weights only
// with each other, so the scale changes no distribution.
const WeightScale = 16

// rampSteps is how many steps a slow start takes. The effective weight changes only at a step,
// so smooth round robin (which restarts its rotation whenever a weight changes) sees a few dozen
// changes per ramp rather than one per pick.
const rampSteps = 20

// EffectiveWeight is the weight the balancers use: Weight()*WeightScale, lowered while the server
// ramps up after slow start began (a return from DOWN, ejection or maintenance).
func (s *Server) EffectiveWeight() int64 {
	full := int64(s.weight.Load()) * WeightScale
	from := s.rampFrom.Load()
	if from == 0 {
		return full
	}
	ramp := s.slowStart.Load()
	elapsed := time.Now().UnixNano() - from
	if ramp <= 0 || elapsed >= ramp || elapsed < 0 {
		s.rampFrom.CompareAndSwap(from, 0)
		return full
	}
	step := elapsed*rampSteps/ramp + 1
	return max(full*step/rampSteps, min(full, 1))
}

// SetSlowStart sets the ramp length a server gets when it becomes available again; 0 turns slow
// start off (and ends a ramp in progress).
func (s *Server) SetSlowStart(d time.Duration) {
	s.slowStart.Store(int64(d))
	if d <= 0 {
		s.rampFrom.Store(0)
	}
}

// Ramping reports whether the server is in its slow start.
func (s *Server) Ramping() bool { return s.EffectiveWeight() < int64(s.weight.Load())*WeightScale }

// startRamp begins a slow start if one is configured.
func (s *Server) startRamp() {
	if s.slowStart.Load() > 0 {
		s.rampFrom.Store(time.Now().UnixNano())
	}
}

// State is the administrative state.
func (s *Server) State() State { return State(s.state.Load()) }

// SetState changes the administrative state. Leaving maintenance starts a slow start.
func (s *Server) SetState(st State) {
	if old := State(s.state.Swap(int32(st))); old == Maintenance && st != Maintenance {
		s.startRamp()
	}
}

// Healthy reports the active health checks' verdict (true until a checker says otherwise).
func (s *Server) Healthy() bool { return !s.down.Load() }

// SetHealthy is how health checkers publish their verdict. It reports whether the verdict
// changed; a server coming back starts its slow start.
func (s *Server) SetHealthy(ok bool) bool {
	changed := s.down.Swap(!ok) == ok
	if changed && ok {
		s.startRamp()
	}
	if changed && s.events != nil {
		from, to, detail := "down", "up", ""
		if !ok {
			from, to = "up", "down"
			if r := s.lastCheck.Load(); r != nil {
				detail = r.Err
			}
		}
		s.Event("health", from, to, detail, "check")
	}
	return changed
}

// CheckResult is the outcome of one active health check.
type CheckResult struct {
	At time.Time
	// Err says why the check failed; empty when it passed.
	Err string
	// Duration is how long the check took (0 when not measured).
	Duration time.Duration
}

// RecordCheck records the outcome of an active check and how long it took, for the admin API and
// the check duration histogram.
func (s *Server) RecordCheck(err error, took time.Duration) {
	r := &CheckResult{At: time.Now(), Duration: took}
	if err != nil {
		r.Err = err.Error()
	}
	s.lastCheck.Store(r)
	if took > 0 {
		s.CheckDuration.Observe(took)
	}
}

// LastCheck is the outcome of the latest active check; nil before the first.
func (s *Server) LastCheck() *CheckResult { return s.lastCheck.Load() }

// Ejected reports whether outlier detection has taken the server out.
func (s *Server) Ejected() bool { return s.ejected.Load() }

// SetEjected is how outlier detection publishes its verdict; it reports whether it changed. A
// server whose ejection ends starts its slow start.
func (s *Server) SetEjected(e bool) bool {
	changed := s.ejected.Swap(e) != e
	if changed && !e {
		s.startRamp()
	}
	if changed && s.events != nil {
		if e {
			s.Event("ejection", "in", "ejected", "", "outlier")
		} else {
			s.Event("ejection", "ejected", "in", "", "outlier")
		}
	}
	return changed
}

// Available reports whether neither active nor passive checks have taken the server out.
func (s *Server) Available() bool { return !s.down.Load() && !s.ejected.Load() }

// Usable reports whether the server may take new, unpinned traffic: available, ready, weight > 0.
func (s *Server) Usable() bool {
	return s.Available() && State(s.state.Load()) == Ready && s.weight.Load() > 0
}

// AcceptsPinned reports whether a session already pinned to the server (sticky cookie) may still go
// there: available and not in maintenance. Draining servers keep their pinned sessions.
func (s *Server) AcceptsPinned() bool {
	return s.Available() && State(s.state.Load()) != Maintenance
}

// InFlight is the number of requests or connections currently using the server.
func (s *Server) InFlight() int64 { return s.inflight.Load() }

// Acquire counts a request or connection as started.
func (s *Server) Acquire() {
	s.inflight.Add(1)
	s.Requests.Add(1)
}

// Release counts a request or connection as finished.
func (s *Server) Release() { s.inflight.Add(-1) }

// TryAcquire is Acquire for a server whose in-flight count must stay at or below limit (a
// backend's max_connections); limit <= 0 means no limit. It reports whether the server took it.
func (s *Server) TryAcquire(limit int64) bool {
	if limit <= 0 {
		s.Acquire()
		return true
	}
	for {
		n := s.inflight.Load()
		if n >= limit {
			return false
		}
		if s.inflight.CompareAndSwap(n, n+1) {
			s.Requests.Add(1)
			return true
		}
	}
}

// ewmaShift sets the share a new latency sample gets in the moving average (1/8, as TCP's SRTT).
const ewmaShift = 3

// ObserveLatency feeds one latency sample (time to the response head, or to connect for L4) into
// the moving average used by least_response_time.
func (s *Server) ObserveLatency(d time.Duration) {
	n := int64(d)
	if n <= 0 {
		n = 1
	}
	for {
		old := s.ewma.Load()
		var v int64
		if old == 0 {
			v = n
		} else {
			v = old + (n-old)>>ewmaShift
			if v <= 0 {
				v = 1
			}
		}
		if s.ewma.CompareAndSwap(old, v) {
			return
		}
	}
}

// Latency is the moving average of observed latency; 0 before the first sample.
func (s *Server) Latency() time.Duration { return time.Duration(s.ewma.Load()) }

// Registry hands out Servers by identity so that a reload finds the state of servers it already
// knew. It is safe for concurrent use.
type Registry struct {
	mu     sync.Mutex
	m      map[Key]*Server
	events *EventLog
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{m: make(map[Key]*Server), events: NewEventLog(DefaultEventLogSize)}
}

// Events is the log of changes of the registry's servers (health, ejection, state, weight).
func (r *Registry) Events() *EventLog { return r.events }

// Server returns the server with this identity, creating a healthy, ready one with weight 1 when it
// is new. The caller applies the configured weight and state only to new servers (Fresh tells).
func (r *Registry) Server(k Key) (s *Server, fresh bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s, ok := r.m[k]; ok {
		return s, false
	}
	s = NewServer(k.Backend, k.Name, k.Address)
	s.events = r.events
	r.m[k] = s
	return s, true
}

// Retain forgets every server whose key is not in keep, after a reload removed them.
func (r *Registry) Retain(keep map[Key]bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.m {
		if !keep[k] {
			delete(r.m, k)
		}
	}
}
