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
	"sort"
	"sync"
	"time"

	"github.com/waage/waage/internal/backend"
	"github.com/waage/waage/internal/config"
	"github.com/waage/waage/internal/health"
	"github.com/waage/waage/internal/l4"
	"github.com/waage/waage/internal/l7"
	"github.com/waage/waage/internal/listener"
	"github.com/waage/waage/internal/tlsx"
)

// Runtime owns everything a running waage has: listeners, servers, backends, logs.
type Runtime struct {
	logger *slog.Logger

	mu        sync.Mutex
	cfg       *config.Config
	registry  *backend.Registry
	transport *l7.Transport
	frontends map[string]*frontend
	listeners map[string]*boundListener // by listenKey
	udp       map[string]*udpBound      // by listenKey
	backends  map[string]*l7.Backend
	access    *accessSink
	health    *health.Manager
	// stores are the certificate stores of the running TLS-terminating frontends (http and
	// tcp), by frontend name; a reload builds new ones and closes these.
	stores map[string]*tlsx.Store
	acme   acmeRuns
	vrrp   vrrpRuns // VRRP instances (vrrp.go)
	bgp    bgpRun   // the BGP speaker (bgp.go)
	guards guards   // each frontend's limits and access lists, the live deny list (guard.go)
	// inherited are the sockets handed over by the process this one replaces (a binary upgrade):
	// Apply adopts them instead of binding the same addresses again.
	inherited *listener.Inherited
}

// frontend is one running frontend: an HTTP or TCP server over its TCP listeners, or, for udp,
// just its name (each UDP socket has its own server, see udpBound).
type frontend struct {
	name string
	mode string
	srv  tcpServer     // http and tcp
	http *l7.Server    // mode http
	tcp  *l4.TCPServer // mode tcp
}

// udpBound is one UDP socket and the server reading it.
type udpBound struct {
	srv   *l4.UDPServer
	pc    *net.UDPConn
	addr  net.Addr
	owner string
}

// boundListener is one listening socket and the frontend serving it.
type boundListener struct {
	ln    net.Listener
	owner *frontend
}

// listenKey identifies a listening socket across reloads: the address it binds, in canonical
// form ("localhost:80" and "127.0.0.1:80" are one socket). Port 0 means a fresh port each time it
// is opened, so it is keyed by frontend and text and kept as long as that entry stays.
func listenKey(frontend, addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "0" {
		return frontend + "|" + addr
	}
	if a, err := net.ResolveTCPAddr("tcp", net.JoinHostPort(host, port)); err == nil {
		return a.String()
	}
	return addr
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
		listeners: make(map[string]*boundListener),
		udp:       make(map[string]*udpBound),
		health:    health.NewManager(logger),
	}
}

// Check compiles cfg as Apply would, without opening anything, so `waage validate` catches what
// only the data path knows.
func Check(cfg *config.Config) error {
	errs := []error{checkModes(cfg)}
	t := l7.NewTransport()
	defer t.Close()
	backends, b, err := buildBackends(cfg, backend.NewRegistry(), t, nil)
	if err != nil {
		errs = append(errs, err)
	} else {
		errs = append(errs, health.Compile(b.checks))
		l4backends, err := buildL4Backends(cfg, backends)
		if err != nil {
			errs = append(errs, err)
		} else {
			hs, err := buildHandlers(cfg, backends, l4backends, nil, slog.Default())
			hs.closeStores()
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// frontendHandlers are the compiled frontends of a configuration, by name and mode.
type frontendHandlers struct {
	http map[string]*l7.Handler
	tcp  map[string]*l4.TCPHandler
	udp  map[string]*l4.UDPHandler
	// stores of the TLS-terminating frontends: whoever drops the handlers closes them.
	stores map[string]*tlsx.Store
}

func (hs frontendHandlers) closeStores() {
	for _, st := range hs.stores {
		st.Close()
	}
}

// buildHandlers compiles every frontend; Apply runs them and Check only wants the errors, all of
// them.
func buildHandlers(cfg *config.Config, backends map[string]*l7.Backend, l4backends map[string]*l4.Backend, access *l7.AccessLog, logger *slog.Logger) (frontendHandlers, error) {
	hs := frontendHandlers{http: map[string]*l7.Handler{}, tcp: map[string]*l4.TCPHandler{}, udp: map[string]*l4.UDPHandler{}, stores: map[string]*tlsx.Store{}}
	var errs []error
	for _, fe := range cfg.Frontends {
		switch fe.Mode {
		case "tcp":
			h, st, err := tcpHandler(fe, l4backends, access, logger)
			errs = append(errs, err)
			hs.tcp[fe.Name] = h
			if st != nil {
				hs.stores[fe.Name] = st
			}
			continue
		case "udp":
			hs.udp[fe.Name] = udpHandler(fe, l4backends, access, logger)
			continue
		}
		router, err := l7.NewRouter(fe, backends)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		h := &l7.Handler{
			Name:          fe.Name,
			Router:        router,
			HeaderTimeout: fe.Timeouts.ClientHeader.D(),
			IdleTimeout:   fe.Timeouts.ClientIdle.D(),
			TunnelTimeout: fe.Timeouts.Tunnel.D(),
			// limits.max_header_bytes; 0 keeps the reader's 64 KiB.
			MaxHeaderBytes: int(fe.Limits.MaxHeaderBytes),
			Scheme:         "http",
			Logger:         logger,
			AccessLog:      access,
			RedirectHTTPS:  fe.RedirectHTTPS,
			HTTPSPort:      fe.HTTPSPort,
			H2C:            fe.H2C,
		}
		if fe.TLS != nil {
			st, err := tlsx.New(fe.TLS, logger)
			if err != nil {
				errs = append(errs, fmt.Errorf("frontend %q: tls: %w", fe.Name, err))
				continue
			}
			hs.stores[fe.Name] = st
			h.TLS = st.ServerConfig(l7.ALPN(fe.TLS.HTTP2Enabled()))
			h.Scheme = "https"
			if ca := fe.TLS.ClientAuth; ca == "optional" || ca == "require" {
				h.ClientSubject = tlsx.ClientSubject
			}
		}
		h.ProxyTrusted, err = trustedPrefixes(fe)
		errs = append(errs, err)
		hs.http[fe.Name] = h
	}
	return hs, errors.Join(errs...)
}

// checkModes refuses what the data path cannot serve: a tcp or udp frontend passes its clients'
// bytes to the servers as they are, so a backend it uses cannot ask for TLS or HTTP/2 to them.
func checkModes(cfg *config.Config) error {
	var errs []error
	refuse := func(what, name, msg string) {
		errs = append(errs, fmt.Errorf("%s %q: %s is not supported by this build of waage", what, name, msg))
	}
	// Backends that tcp and udp frontends use: their servers get the client's bytes as they are,
	// so TLS to them would be silently skipped.
	l4Users := map[string]string{}
	for _, fe := range cfg.Frontends {
		if fe.Mode != "tcp" && fe.Mode != "udp" {
			continue
		}
		for _, name := range []string{fe.Backend, fe.DefaultBackend} {
			l4Users[name] = fe.Name
		}
		for _, r := range fe.Routes {
			l4Users[r.Backend] = fe.Name
		}
	}
	for _, b := range cfg.Backends {
		switch fe := l4Users[b.Name]; {
		case fe == "":
		case b.Protocol != "" && b.Protocol != "http1":
			refuse("backend", b.Name, fmt.Sprintf("protocol %s to the servers of a tcp or udp frontend (%q)", b.Protocol, fe))
		case b.TLS != nil:
			refuse("backend", b.Name, fmt.Sprintf("tls to the servers of a tcp or udp frontend (%q)", fe))
		}
	}
	return errors.Join(errs...)
}

// Warnings lists what a valid configuration asks for that this build does not do yet, for the
// log at start and reload and for `waage validate`.
func Warnings(cfg *config.Config) []string {
	var ws []string
	return ws
}

// built is what buildBackends made beside the backends: the commit that applies configured server
// settings, and the active checks to run.
type built struct {
	commit func()
	checks []health.Spec
}

// buildBackends compiles every backend, taking server state from the registry: a server the
// registry already knew keeps its live state (health, in-flight, counters, and any weight or state
// an operator set that the file did not change); configured weight and state apply when new or
// changed.
//
// The configured values are applied by the returned commit function, so a reload that fails later
// changes nothing.
func buildBackends(cfg *config.Config, reg *backend.Registry, t *l7.Transport, logger *slog.Logger) (map[string]*l7.Backend, built, error) {
	out := make(map[string]*l7.Backend, len(cfg.Backends))
	var commits []func()
	var checks []health.Spec
	for _, bc := range cfg.Backends {
		servers := make([]*backend.Server, 0, len(bc.Servers))
		for i, sc := range bc.Servers {
			s, _ := reg.Server(backend.Key{Backend: bc.Name, Name: sc.Name, Address: sc.Address})
			st, err := backend.ParseState(sc.State)
			if err != nil {
				return nil, built{}, fmt.Errorf("backend %q: server %q: %w", bc.Name, sc.Name, err)
			}
			w := sc.WeightOr(1)
			slow := bc.SlowStart.D()
			commits = append(commits, func() {
				s.SetSlowStart(slow)
				s.ApplyConfig(w, st)
			})
			s.Backup = sc.Backup
			servers = append(servers, s)
			checks = append(checks, health.Spec{Server: s, Check: bc.HealthCheckFor(i)})
		}
		b, err := l7.NewBackend(bc, servers, t)
		if err != nil {
			return nil, built{}, err
		}
		b.Outlier = health.NewOutlier(bc.Name, bc.OutlierDetection, servers, logger)
		out[bc.Name] = b
	}
	commit := func() {
		for _, c := range commits {
			c()
		}
	}
	return out, built{commit: commit, checks: checks}, nil
}

// Apply starts cfg, or reloads to it. On any error nothing changes and the old configuration keeps
// running.
//
// Apply compiles the backends and routers itself (the rest of Check), so a reload builds them
// once; a build that fails part-way may leave new servers in the registry, which the next
// successful Apply prunes.
func (r *Runtime) Apply(cfg *config.Config) error {
	if err := checkModes(cfg); err != nil {
		return err
	}
	if err := r.vrrp.check(cfg); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()

	backends, b, err := buildBackends(cfg, r.registry, r.transport, r.logger)
	if err != nil {
		return err
	}
	if err := health.Compile(b.checks); err != nil {
		return err
	}
	l4backends, err := buildL4Backends(cfg, backends)
	if err != nil {
		return err
	}
	access, err := r.openAccess(cfg.Log)
	if err != nil {
		return err
	}
	var accessLog *l7.AccessLog
	if access != nil {
		accessLog = access.log
	}
	hs, err := buildHandlers(cfg, backends, l4backends, accessLog, r.logger)
	if err == nil {
		// Certificates from ACME move to the new stores before they serve (see acmeRuns.seed).
		r.acme.seed(cfg, hs.stores)
	}
	for _, h := range hs.http {
		if h.TLS == nil {
			h.ACMEHTTP01 = r.acme.http01
		}
	}
	if err == nil {
		err = r.guards.apply(cfg, hs, r.logger)
	}
	if err != nil {
		hs.closeStores()
		if access != nil && access != r.access {
			access.close()
		}
		return err
	}
	handlers, tcpHandlers, udpHandlers := hs.http, hs.tcp, hs.udp

	// Open every new listener before touching the running ones, so a port conflict aborts cleanly.
	// Listeners are keyed by the address they bind, not by frontend, so an address that moves to
	// another frontend (or a renamed frontend) keeps its socket.
	opened := make(map[string]net.Listener)
	openedUDP := make(map[string]*net.UDPConn)
	lkeys := make(map[string][]string, len(cfg.Frontends)) // listenKey per frontend and address
	for _, fe := range cfg.Frontends {
		for _, addr := range fe.Listen {
			key := listenKey(fe.Name, addr)
			lkeys[fe.Name] = append(lkeys[fe.Name], key)
			var err error
			if fe.Mode == "udp" {
				if r.udp[key] != nil || openedUDP[key] != nil {
					continue
				}
				var ua *net.UDPAddr
				if ua, err = net.ResolveUDPAddr("udp", addr); err == nil {
					openedUDP[key], err = r.listenUDP(key, ua, fe.Freebind)
				}
			} else {
				if r.listeners[key] != nil || opened[key] != nil {
					continue
				}
				opened[key], err = r.listenTCP(key, addr, fe.Freebind)
			}
			if err != nil {
				for _, ln := range opened {
					if ln != nil {
						ln.Close()
					}
				}
				for _, pc := range openedUDP {
					if pc != nil {
						pc.Close()
					}
				}
				if access != nil && access != r.access {
					access.close()
				}
				hs.closeStores()
				return fmt.Errorf("frontend %q: listen %s: %w", fe.Name, addr, err)
			}
		}
	}

	// Commit: server settings, then swap handlers, move, start and stop listeners.
	b.commit()
	if err := r.health.Sync(b.checks); err != nil {
		r.logger.Error("health checks not updated", "err", err)
	}
	keep := make(map[string]bool, len(cfg.Frontends))
	want := make(map[string]bool)
	var replaced []*frontend // frontends whose mode changed: shut down once their listeners moved
	for _, fe := range cfg.Frontends {
		keep[fe.Name] = true
		f := r.frontends[fe.Name]
		if f != nil && f.mode != fe.Mode {
			replaced = append(replaced, f)
			f = nil
		}
		switch {
		case f == nil:
			f = &frontend{name: fe.Name, mode: fe.Mode}
			switch fe.Mode {
			case "tcp":
				f.tcp = l4.NewTCPServer(tcpHandlers[fe.Name])
				f.srv = f.tcp
			case "udp":
			default:
				f.http = l7.NewServer(handlers[fe.Name])
				f.srv = f.http
			}
			r.frontends[fe.Name] = f
		case f.tcp != nil:
			f.tcp.SetHandler(tcpHandlers[fe.Name])
		case f.http != nil:
			f.http.SetHandler(handlers[fe.Name])
		}
		if fe.Mode == "udp" {
			for _, key := range lkeys[fe.Name] {
				want["udp "+key] = true
				ub := r.udp[key]
				if ub == nil {
					pc := openedUDP[key]
					ub = &udpBound{srv: l4.NewUDPServer(pc, udpHandlers[fe.Name]), pc: pc, addr: pc.LocalAddr(), owner: fe.Name}
					r.udp[key] = ub
					r.logger.Info("listening", "frontend", fe.Name, "addr", ub.addr.String(), "transport", "udp")
					go r.serveUDP(ub)
					continue
				}
				ub.owner = fe.Name
				ub.srv.SetHandler(udpHandlers[fe.Name])
			}
			continue
		}
		for _, key := range lkeys[fe.Name] {
			want[key] = true
			bl := r.listeners[key]
			switch {
			case bl == nil:
				bl = &boundListener{ln: opened[key], owner: f}
				r.listeners[key] = bl
				r.logger.Info("listening", "frontend", fe.Name, "addr", bl.ln.Addr().String())
			case bl.owner != f:
				bl.owner.srv.Detach(bl.ln)
				r.logger.Info("listener moved", "addr", bl.ln.Addr().String(), "from", bl.owner.name, "to", fe.Name)
				bl.owner = f
			default:
				continue
			}
			go r.serve(f, bl.ln)
		}
	}
	for key, bl := range r.listeners {
		if !want[key] {
			bl.ln.Close()
			delete(r.listeners, key)
			r.logger.Info("listener closed", "frontend", bl.owner.name, "addr", bl.ln.Addr().String())
		}
	}
	for key, ub := range r.udp {
		if !want["udp "+key] {
			delete(r.udp, key)
			go ub.srv.Close()
			r.logger.Info("listener closed", "frontend", ub.owner, "addr", ub.addr.String(), "transport", "udp")
		}
	}
	for _, f := range replaced {
		r.retire(f)
	}
	for name, f := range r.frontends {
		if !keep[name] {
			delete(r.frontends, name)
			r.retire(f)
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
	// Handshakes keep working on a closed store (it only stops watching the files), so
	// connections still starting on the old handlers are fine.
	for _, st := range r.stores {
		st.Close()
	}
	r.stores = hs.stores
	r.acme.restart(r, cfg, hs.stores)
	for _, ob := range r.backends {
		ob.CloseIdle() // each reload builds new backends; their HTTP/2 transports start afresh
	}
	r.backends = backends
	r.cfg = cfg
	r.vrrp.apply(cfg, backends, r.logger)
	r.bgp.apply(cfg, r.vrrp.backendHealthy, r.logger) // last: the listeners are up
	r.guards.retain(cfg)
	return nil
}

// retire shuts a frontend's server down in the background: it stops accepting, and its
// connections get up to 30 s to finish.
func (r *Runtime) retire(f *frontend) {
	if f.srv == nil {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		f.srv.Shutdown(ctx)
	}()
}

func (r *Runtime) serveUDP(ub *udpBound) {
	defer func() {
		if v := recover(); v != nil {
			r.logger.Error("udp listener panic", "frontend", ub.owner, "panic", v)
		}
	}()
	if err := ub.srv.Serve(); err != nil {
		r.logger.Error("udp listener stopped", "frontend", ub.owner, "addr", ub.addr.String(), "err", err)
	}
}

func (r *Runtime) serve(f *frontend, ln net.Listener) {
	defer func() {
		if v := recover(); v != nil {
			r.logger.Error("listener panic", "frontend", f.name, "panic", v)
		}
	}()
	if err := f.srv.Serve(ln); err != nil && !errors.Is(err, l7.ErrServerClosed) && !errors.Is(err, l4.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		r.logger.Error("listener stopped", "frontend", f.name, "addr", ln.Addr().String(), "err", err)
	}
}

// openAccess returns the access log sink for lc. stdout and stderr are reused when unchanged; a
// file is opened again on every reload, so `kill -HUP` after logrotate moved it starts a new file.
func (r *Runtime) openAccess(lc config.Log) (*accessSink, error) {
	target := lc.Access
	if target == "" {
		target = "stdout"
	}
	if target == "off" {
		return nil, nil
	}
	if r.access != nil && r.access.target == target && r.access.format == lc.AccessFormat &&
		(target == "stdout" || target == "stderr") {
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
	var out []net.Addr
	for _, bl := range r.listeners {
		if bl.owner.name == frontend {
			out = append(out, bl.ln.Addr())
		}
	}
	for _, ub := range r.udp {
		if ub.owner == frontend {
			out = append(out, ub.addr)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
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
	r.vrrp.stop(ctx) // first: the peer takes the virtual IPs while this one drains
	r.bgp.withdraw() // and the routers send new connections to the other balancers
	r.mu.Lock()
	fes := make([]*frontend, 0, len(r.frontends))
	for _, f := range r.frontends {
		if f.srv != nil {
			fes = append(fes, f)
		}
	}
	udps := make([]*udpBound, 0, len(r.udp))
	for _, ub := range r.udp {
		udps = append(udps, ub)
	}
	r.mu.Unlock()
	for _, ub := range udps {
		ub.srv.Close()
	}
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
	r.bgp.stop()
	r.health.Stop()
	r.guards.close()
	r.transport.Close()
	r.mu.Lock()
	if r.access != nil {
		r.access.close()
		r.access = nil
	}
	r.acme.stop()
	for _, b := range r.backends {
		b.CloseIdle()
	}
	for _, st := range r.stores {
		st.Close()
	}
	r.stores = nil
	r.mu.Unlock()
	return errors.Join(errs...)
}
