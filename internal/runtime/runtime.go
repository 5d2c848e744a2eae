// Package runtime turns a validated configuration into running frontends and backends, and
// applies a new configuration by diff: listeners whose address did not change stay open, server
// state (health, weights, in-flight counts) and pooled connections carry over by identity, and
// requests in flight finish on the configuration they started with.
package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/waage/waage/internal/backend"
	"github.com/waage/waage/internal/config"
	"github.com/waage/waage/internal/l7"
)

// Runtime owns everything a running waage has: listeners, servers, backends, logs.
type Runtime struct {
	logger *slog.Logger

	mu        sync.Mutex
	cfg       *config.Config
	registry  *backend.Registry
	transport *l7.Transport
	frontends map[string]*frontend
	backends  map[string]*l7.Backend
	access    *accessSink
}

// frontend is one running HTTP frontend with its listeners by configured address.
type frontend struct {
	name      string
	srv       *l7.Server
	listeners map[string]net.Listener
}

// accessSink is the open access log and what it writes to.
type accessSink struct {
	target, format string
	log            *l7.AccessLog
	closer         io.Closer
}

// New returns an empty runtime; Apply starts it.
func New(logger *slog.Logger) *Runtime {
	if logger == nil {
		logger = slog.Default()
	}
	return &Runtime{
		logger:    logger,
		registry:  backend.NewRegistry(),
		transport: l7.NewTransport(),
		frontends: make(map[string]*frontend),
	}
}

// Check compiles cfg as Apply would, without opening anything, so `waage validate` catches what
// only the data path knows.
func Check(cfg *config.Config) error {
	var errs []error
	for _, fe := range cfg.Frontends {
		if fe.Mode != "" && fe.Mode != "http" {
			errs = append(errs, fmt.Errorf("frontend %q: mode %q is not supported by this build of waage", fe.Name, fe.Mode))
		}
	}
	t := l7.NewTransport()
	defer t.Close()
	backends, err := buildBackends(cfg, backend.NewRegistry(), t)
	if err != nil {
		errs = append(errs, err)
	} else {
		for _, fe := range cfg.Frontends {
			if _, err := l7.NewRouter(fe, backends); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// buildBackends compiles every backend, taking server state from the registry: a server the
// registry already knew keeps its live state; a new one starts with the configured weight and state.
func buildBackends(cfg *config.Config, reg *backend.Registry, t *l7.Transport) (map[string]*l7.Backend, error) {
	out := make(map[string]*l7.Backend, len(cfg.Backends))
	for _, bc := range cfg.Backends {
		servers := make([]*backend.Server, 0, len(bc.Servers))
		for _, sc := range bc.Servers {
			s, fresh := reg.Server(backend.Key{Backend: bc.Name, Name: sc.Name, Address: sc.Address})
			if fresh {
				s.SetWeight(sc.WeightOr(1))
				st, err := backend.ParseState(sc.State)
				if err != nil {
					return nil, fmt.Errorf("backend %q: server %q: %w", bc.Name, sc.Name, err)
				}
				s.SetState(st)
			}
			s.Backup = sc.Backup
			servers = append(servers, s)
		}
		b, err := l7.NewBackend(bc, servers, t)
		if err != nil {
			return nil, err
		}
		out[bc.Name] = b
	}
	return out, nil
}

// Apply starts cfg, or reloads to it. On any error nothing changes and the old configuration keeps
// running.
func (r *Runtime) Apply(cfg *config.Config) error {
	if err := Check(cfg); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()

	backends, err := buildBackends(cfg, r.registry, r.transport)
	if err != nil {
		return err
	}
	access, err := r.openAccess(cfg.Log)
	if err != nil {
		return err
	}
	handlers := make(map[string]*l7.Handler, len(cfg.Frontends))
	for _, fe := range cfg.Frontends {
		router, err := l7.NewRouter(fe, backends)
		if err != nil {
			return err
		}
		h := &l7.Handler{
			Name:          fe.Name,
			Router:        router,
			HeaderTimeout: fe.Timeouts.ClientHeader.D(),
			IdleTimeout:   fe.Timeouts.ClientIdle.D(),
			TunnelTimeout: fe.Timeouts.Tunnel.D(),
			Scheme:        "http",
			Logger:        r.logger,
		}
		if access != nil {
			h.AccessLog = access.log
		}
		handlers[fe.Name] = h
	}

	// Open every new listener before touching the running ones, so a port conflict aborts cleanly.
	opened := make(map[string]map[string]net.Listener)
	closeOpened := func() {
		for _, m := range opened {
			for _, ln := range m {
				ln.Close()
			}
		}
	}
	for _, fe := range cfg.Frontends {
		old := r.frontends[fe.Name]
		for _, addr := range fe.Listen {
			if old != nil && old.listeners[addr] != nil {
				continue
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				closeOpened()
				if access != nil && access != r.access {
					access.close()
				}
				return fmt.Errorf("frontend %q: listen %s: %w", fe.Name, addr, err)
			}
			if opened[fe.Name] == nil {
				opened[fe.Name] = make(map[string]net.Listener)
			}
			opened[fe.Name][addr] = ln
		}
	}

	// Commit: swap handlers, start new listeners, stop removed ones.
	keep := make(map[string]bool, len(cfg.Frontends))
	for _, fe := range cfg.Frontends {
		keep[fe.Name] = true
		f := r.frontends[fe.Name]
		if f == nil {
			f = &frontend{name: fe.Name, srv: l7.NewServer(handlers[fe.Name]), listeners: make(map[string]net.Listener)}
			r.frontends[fe.Name] = f
		} else {
			f.srv.SetHandler(handlers[fe.Name])
		}
		want := make(map[string]bool, len(fe.Listen))
		for _, addr := range fe.Listen {
			want[addr] = true
		}
		for addr, ln := range f.listeners {
			if !want[addr] {
				ln.Close()
				delete(f.listeners, addr)
				r.logger.Info("listener closed", "frontend", fe.Name, "addr", addr)
			}
		}
		for addr, ln := range opened[fe.Name] {
			f.listeners[addr] = ln
			go r.serve(f, ln)
			r.logger.Info("listening", "frontend", fe.Name, "addr", ln.Addr().String())
		}
	}
	for name, f := range r.frontends {
		if !keep[name] {
			delete(r.frontends, name)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				f.srv.Shutdown(ctx)
			}()
			r.logger.Info("frontend removed", "frontend", name)
		}
	}
	keys := make(map[backend.Key]bool)
	for _, b := range backends {
		for _, s := range b.Servers {
			keys[s.Key] = true
		}
	}
	r.registry.Retain(keys)
	r.transport.Retain(keys)
	if r.access != nil && r.access != access {
		old := r.access
		// Requests in flight may still log to the old sink for a moment.
		time.AfterFunc(5*time.Second, old.close)
	}
	r.access = access
	r.backends = backends
	r.cfg = cfg
	return nil
}

func (r *Runtime) serve(f *frontend, ln net.Listener) {
	defer func() {
		if v := recover(); v != nil {
			r.logger.Error("listener panic", "frontend", f.name, "panic", v)
		}
	}()
	if err := f.srv.Serve(ln); err != nil && !errors.Is(err, l7.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		r.logger.Error("listener stopped", "frontend", f.name, "addr", ln.Addr().String(), "err", err)
	}
}

// openAccess returns the access log sink for lc, reusing the current one when unchanged.
func (r *Runtime) openAccess(lc config.Log) (*accessSink, error) {
	target := lc.Access
	if target == "" {
		target = "stdout"
	}
	if target == "off" {
		return nil, nil
	}
	if r.access != nil && r.access.target == target && r.access.format == lc.AccessFormat {
		return r.access, nil
	}
	s := &accessSink{target: target, format: lc.AccessFormat}
	var out io.Writer
	switch target {
	case "stdout":
		out = os.Stdout
	case "stderr":
		out = os.Stderr
	default:
		f, err := os.OpenFile(target, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("log.access: %w", err)
		}
		out, s.closer = f, f
	}
	s.log = l7.NewAccessLog(out, lc.AccessFormat)
	return s, nil
}

func (s *accessSink) close() {
	s.log.Close()
	if s.closer != nil {
		s.closer.Close()
	}
}

// Addrs returns the bound addresses of a frontend's listeners (useful with port 0).
func (r *Runtime) Addrs(frontend string) []net.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	f := r.frontends[frontend]
	if f == nil {
		return nil
	}
	var out []net.Addr
	for _, ln := range f.listeners {
		out = append(out, ln.Addr())
	}
	return out
}

// Server returns a backend's server by name, for the admin API and tests.
func (r *Runtime) Server(backendName, serverName string) *backend.Server {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.backends[backendName]
	if b == nil {
		return nil
	}
	for _, s := range b.Servers {
		if s.Name == serverName {
			return s
		}
	}
	return nil
}

// Shutdown stops accepting on every frontend, lets requests in flight finish until ctx ends, then
// closes what is left.
func (r *Runtime) Shutdown(ctx context.Context) error {
	r.mu.Lock()
	fes := make([]*frontend, 0, len(r.frontends))
	for _, f := range r.frontends {
		fes = append(fes, f)
	}
	r.mu.Unlock()
	var wg sync.WaitGroup
	errs := make([]error, len(fes))
	for i, f := range fes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f.srv.Shutdown(ctx)
		}()
	}
	wg.Wait()
	r.transport.Close()
	r.mu.Lock()
	if r.access != nil {
		r.access.close()
		r.access = nil
	}
	r.mu.Unlock()
	return errors.Join(errs...)
}
