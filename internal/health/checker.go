// Package health decides whether servers may take traffic. Active checkers probe each server on
// a timer (tcp, http, icmp, udp, exec) and flip its health through backend.Server.SetHealthy;
// Outlier watches real traffic and ejects servers that fail it. Balancers only read the result,
// lock-free, so the two sides never wait for each other (DESIGN.md: health publishes, balancers
// read). The same checkers serve HTTP and TCP/UDP frontends: nothing here knows which protocol
// the traffic speaks.
package health

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/waage/waage/internal/backend"
	"github.com/waage/waage/internal/config"
)

// Spec is one server's active check as the runtime wants it. Sync gets a Spec for every server
// of the configuration, with Check nil for those without a check, so it can tell a server whose
// check was removed (it is marked UP) from a server that was removed (nothing to say).
type Spec struct {
	Server *backend.Server
	// Check is the effective check (config.Backend.HealthCheckFor); nil means none.
	Check *config.HealthCheck

	prober Prober // built by Compile, so that Sync need not build it again
}

// Manager runs the active checks of the running configuration. Sync replaces the set of checks;
// a check whose server and settings did not change keeps running (and keeps its counters), so a
// reload neither resets health nor makes every check fire at once.
type Manager struct {
	logger *slog.Logger
	mu     sync.Mutex
	runs   map[*backend.Server]*run
}

type run struct {
	fingerprint string
	cancel      context.CancelFunc
	done        chan struct{}
}

// NewManager returns a Manager that logs state changes to logger.
func NewManager(logger *slog.Logger) *Manager {
	if logger == nil {
		logger = slog.Default()
	}
	return &Manager{logger: logger, runs: map[*backend.Server]*run{}}
}

// Compile builds the probers of specs without starting anything, so that a configuration that
// cannot run (an unreadable CA file) is refused before it replaces the running one.
// The probers are kept in specs for Sync.
func Compile(specs []Spec) error {
	for i := range specs {
		if err := specs[i].compile(); err != nil {
			return err
		}
	}
	return nil
}

func (sp *Spec) compile() error {
	if sp.Check == nil || sp.prober != nil {
		return nil
	}
	p, err := NewProber(sp.Check)
	if err != nil {
		return fmt.Errorf("backend %q: server %q: health_check: %w", sp.Server.Backend, sp.Server.Name, err)
	}
	sp.prober = p
	return nil
}

// Sync makes the running checks those of specs. New checks start (a server whose check says
// initial: down is marked down first); changed ones restart; checks no longer wanted stop, and
// their servers are marked healthy, since nothing would bring them back otherwise.
func (m *Manager) Sync(specs []Spec) error {
	type want struct {
		spec *Spec
		fp   string
	}
	wanted := make(map[*backend.Server]want, len(specs))
	present := make(map[*backend.Server]bool, len(specs))
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range specs {
		sp := &specs[i]
		present[sp.Server] = true
		if sp.Check == nil {
			continue
		}
		fp, _ := json.Marshal(struct {
			C *config.HealthCheck
			A string
		}{sp.Check, sp.Server.Address})
		// Only a check that starts (new or changed) needs its prober; all are built before
		// anything changes, so an error leaves the running checks as they were.
		if r := m.runs[sp.Server]; r == nil || r.fingerprint != string(fp) {
			if err := sp.compile(); err != nil {
				return err
			}
		}
		wanted[sp.Server] = want{sp, string(fp)}
	}
	for s, r := range m.runs {
		if w, ok := wanted[s]; ok && w.fp == r.fingerprint {
			continue
		}
		r.cancel()
		<-r.done
		delete(m.runs, s)
		if _, ok := wanted[s]; !ok && present[s] && s.SetHealthy(true) {
			m.logger.Info(fmt.Sprintf("server %s UP: health check removed", s), "backend", s.Backend, "server", s.Name)
		}
	}
	for s, w := range wanted {
		if _, ok := m.runs[s]; ok {
			continue
		}
		c := newChecker(s, w.spec.Check, w.spec.prober, m.logger)
		ctx, cancel := context.WithCancel(context.Background())
		r := &run{fingerprint: w.fp, cancel: cancel, done: make(chan struct{})}
		m.runs[s] = r
		go func() {
			defer close(r.done)
			c.loop(ctx)
		}()
	}
	return nil
}

// Stop ends every check and waits for them.
func (m *Manager) Stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for s, r := range m.runs {
		r.cancel()
		<-r.done
		delete(m.runs, s)
	}
}

// checker is one server's check loop.
type checker struct {
	srv    *backend.Server
	hc     *config.HealthCheck
	prober Prober
	target Target
	logger *slog.Logger
	// ok and fail count consecutive results; up is the verdict the loop last published.
	ok, fail int
	up       bool
}

func newChecker(s *backend.Server, hc *config.HealthCheck, p Prober, logger *slog.Logger) *checker {
	c := &checker{srv: s, hc: hc, prober: p, target: CheckTarget(s, hc), logger: logger, up: s.Healthy()}
	if hc.Initial == "down" && !c.seenBefore() {
		c.up = false
		if s.SetHealthy(false) {
			logger.Info(fmt.Sprintf("server %s DOWN: initial state down until %d %s checks pass", s, hc.Rise, hc.Type),
				"backend", s.Backend, "server", s.Name)
		}
	}
	return c
}

// seenBefore reports whether the server has already handled traffic or been checked, in which
// case a reload that restarts its check must not reset it to the initial state.
func (c *checker) seenBefore() bool {
	return c.srv.Requests.Load() > 0 || c.srv.Checks.Load() > 0
}

// CheckTarget is the address a check of s goes to: the server's address with the check's
// address (host or host:port) and port applied.
func CheckTarget(s *backend.Server, hc *config.HealthCheck) Target {
	host, port, err := net.SplitHostPort(s.Address)
	if err != nil {
		host, port = s.Address, ""
	}
	if a := hc.Address; a != "" {
		if h, p, err := net.SplitHostPort(a); err == nil {
			host, port = h, p
		} else {
			host = a
		}
	}
	if hc.Port != 0 {
		port = strconv.Itoa(hc.Port)
	}
	addr := host
	if port != "" {
		addr = net.JoinHostPort(host, port)
	}
	return Target{Backend: s.Backend, Server: s.Name, Address: addr}
}

// jitter spreads d by up to ±10%, so the checks of many servers do not line up.
func jitter(d time.Duration) time.Duration {
	j := int64(d) / 10
	if j <= 0 {
		return d
	}
	return d + time.Duration(rand.Int64N(2*j+1)-j)
}

func (c *checker) loop(ctx context.Context) {
	defer func() {
		if p := recover(); p != nil {
			c.logger.Error("health check panicked; check stopped", "server", c.srv.String(), "panic", p, "stack", string(debug.Stack()))
		}
	}()
	interval := c.hc.Interval.D()
	// The first check comes soon, so a server that starts down is found quickly, but at a random
	// point of the first quarter interval, so a reload does not fire every check at once.
	t := time.NewTimer(time.Duration(rand.Int64N(int64(interval)/4 + 1)))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.check(ctx)
		t.Reset(jitter(interval))
	}
}

// check runs one probe and publishes a state change once rise or fall is reached.
func (c *checker) check(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, c.hc.Timeout.D())
	start := time.Now()
	err := c.prober.Probe(pctx, c.target)
	took := time.Since(start)
	cancel()
	if ctx.Err() != nil {
		return // stopped mid-check: the result says nothing about the server
	}
	c.srv.Checks.Add(1)
	c.srv.RecordCheck(err, took)
	if err == nil {
		c.ok++
		c.fail = 0
		if !c.up && c.ok >= c.hc.Rise {
			c.up = true
			c.srv.SetHealthy(true)
			c.logger.Info(fmt.Sprintf("server %s UP: %s check passed, %d/%d succeeded", c.srv, c.hc.Type, c.ok, c.hc.Rise),
				"backend", c.srv.Backend, "server", c.srv.Name)
		}
		return
	}
	c.fail++
	c.ok = 0
	if c.up && c.fail >= c.hc.Fall {
		c.up = false
		c.srv.SetHealthy(false)
		c.logger.Warn(fmt.Sprintf("server %s DOWN: %s check: %v, %d/%d failed", c.srv, c.hc.Type, err, c.fail, c.hc.Fall),
			"backend", c.srv.Backend, "server", c.srv.Name)
		return
	}
	if c.up {
		c.logger.Debug(fmt.Sprintf("server %s %s check failed (%d/%d): %v", c.srv, c.hc.Type, c.fail, c.hc.Fall, err),
			"backend", c.srv.Backend, "server", c.srv.Name)
	}
}
