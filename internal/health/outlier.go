package health

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/waage/waage/internal/backend"
	"github.com/waage/waage/internal/config"
)

// Outlier is a backend's passive health check: it watches the outcome of real requests and
// connections and ejects a server after ConsecutiveFailures failed attempts in a row (connect
// failures, resets, timeouts) or, when enabled, Consecutive5xx 5xx answers in a row. An ejection
// lasts the base time times the number of ejections in a row, capped at the maximum; a server
// that stayed clean for the maximum time starts again from the base. No more than
// MaxEjectionPercent of the backend's servers (at least one) are ejected at once, so passive
// checks cannot empty a backend on a burst of errors that is the clients' fault or the network's;
// a backend's only server is never ejected.
//
// The hot path calls Success, Failure and Status; a nil *Outlier ignores them, which is how a
// backend with outlier detection off costs nothing.
type Outlier struct {
	backend      string
	failures     int32
	fiveXX       int32
	base, max    time.Duration
	maxPercent   int
	servers      []*backend.Server
	logger       *slog.Logger
	mu           sync.Mutex // serialises ejection decisions, so two cannot both take the last slot
	afterFunc    func(time.Duration, func())
	refusedLogAt time.Time
}

// NewOutlier returns the detector for one backend's servers, or nil when the config turns both
// triggers off.
func NewOutlier(backendName string, o config.OutlierDetection, servers []*backend.Server, logger *slog.Logger) *Outlier {
	failures := 0
	if o.ConsecutiveFailures != nil {
		failures = *o.ConsecutiveFailures
	}
	if failures == 0 && o.Consecutive5xx == 0 {
		return nil
	}
	pct := 50
	if o.MaxEjectionPercent != nil {
		pct = *o.MaxEjectionPercent
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Outlier{
		backend: backendName, failures: int32(failures), fiveXX: int32(o.Consecutive5xx),
		base: o.BaseEjectionTime.D(), max: max(o.MaxEjectionTime.D(), o.BaseEjectionTime.D()),
		maxPercent: pct, servers: servers, logger: logger,
		afterFunc: func(d time.Duration, f func()) { time.AfterFunc(d, f) },
	}
}

// Success records an attempt that got an answer the detector does not hold against the server.
func (o *Outlier) Success(s *backend.Server) {
	if o == nil {
		return
	}
	// Load before store: on the hot path the counters are almost always 0, and a store would
	// dirty the cache line for every request.
	if s.ConsecutiveFailures.Load() != 0 {
		s.ConsecutiveFailures.Store(0)
	}
	if s.Consecutive5xx.Load() != 0 {
		s.Consecutive5xx.Store(0)
	}
}

// Failure records a failed attempt: no connection, a reset, a timeout, an unreadable answer.
func (o *Outlier) Failure(s *backend.Server, err error) {
	if o == nil {
		return
	}
	n := s.ConsecutiveFailures.Add(1)
	m := s.Consecutive5xx.Add(1)
	switch {
	case o.failures > 0 && n >= o.failures:
		o.eject(s, fmt.Sprintf("%d consecutive failures (last: %v)", n, err))
	case o.fiveXX > 0 && m >= o.fiveXX:
		o.eject(s, fmt.Sprintf("%d consecutive failures or 5xx answers (last: %v)", m, err))
	}
}

// Status records an answer with this HTTP status: 5xx counts toward Consecutive5xx, anything
// else is a success.
func (o *Outlier) Status(s *backend.Server, status int) {
	if o == nil {
		return
	}
	if status < 500 || o.fiveXX == 0 {
		o.Success(s)
		return
	}
	if s.ConsecutiveFailures.Load() != 0 {
		s.ConsecutiveFailures.Store(0)
	}
	if m := s.Consecutive5xx.Add(1); m >= o.fiveXX {
		o.eject(s, fmt.Sprintf("%d consecutive 5xx answers (last: %d)", m, status))
	}
}

// limit is how many servers may be ejected at once: MaxEjectionPercent of them, but at least one
// when there are two or more. The only server of a backend is never ejected: with nowhere else
// to go, ejecting it would only turn its errors into 503s and keep it out after it recovered.
func (o *Outlier) limit() int {
	if len(o.servers) < 2 {
		return 0
	}
	return max(1, len(o.servers)*o.maxPercent/100)
}

func (o *Outlier) eject(s *backend.Server, reason string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if s.Ejected() {
		return
	}
	ejected := 0
	for _, x := range o.servers {
		if x.Ejected() {
			ejected++
		}
	}
	if limit := o.limit(); ejected+1 > limit {
		if limit == 0 {
			return
		}
		// Log the refusal at most every few seconds: it repeats on every failure.
		if now := time.Now(); now.Sub(o.refusedLogAt) > 5*time.Second {
			o.refusedLogAt = now
			o.logger.Warn(fmt.Sprintf("server %s not ejected: %d of %d servers already ejected (max_ejection_percent %d): %s",
				s, ejected, len(o.servers), o.maxPercent, reason))
		}
		return
	}
	now := time.Now()
	if end := s.LastEjectionEnd.Load(); end != 0 && now.Sub(time.Unix(0, end)) >= o.max {
		s.Ejections.Store(0)
	}
	n := s.Ejections.Add(1)
	d := o.max
	if int64(n) <= int64(o.max/o.base) {
		d = o.base * time.Duration(n)
	}
	gen := s.EjectionGen.Add(1)
	s.ConsecutiveFailures.Store(0)
	s.Consecutive5xx.Store(0)
	s.SetEjected(true)
	o.logger.Warn(fmt.Sprintf("server %s DOWN: ejected for %s: %s", s, d, reason),
		"backend", s.Backend, "server", s.Name, "ejection", n)
	logger := o.logger
	o.afterFunc(d, func() {
		if s.EjectionGen.Load() != gen {
			return
		}
		s.LastEjectionEnd.Store(time.Now().UnixNano())
		if s.SetEjected(false) {
			logger.Info(fmt.Sprintf("server %s UP: ejection ended after %s", s, d),
				"backend", s.Backend, "server", s.Name)
		}
	})
}
