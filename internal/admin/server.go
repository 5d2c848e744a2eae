package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/waage/waage/internal/config"
)

// Options configure a Server.
type Options struct {
	// Source is the running instance; required.
	Source Source
	// Reload loads the configuration file again and applies it, for POST /api/reload; it
	// returns why it refused. nil: the endpoint answers 501.
	Reload func() error
	// Logger receives the listener's errors; nil is slog.Default().
	Logger *slog.Logger
	// Version is shown by the dashboard and in waage_build_info.
	Version string
	// Listen opens the listener for admin.listen; nil is net.Listen("tcp", addr). (`waage run`
	// passes one that takes the socket over from the previous process in a binary upgrade.)
	Listen func(addr string) (net.Listener, error)
	// BGP is the BGP speaker and node drain behind GET /api/bgp, /api/node and the BGP
	// metrics; nil: Source, if it implements BGPSource.
	BGP BGPSource
}

// Server is the admin listener: API, dashboard and metrics. Apply starts it and moves it when
// admin.listen changes; settings (the token) change without a new listener.
type Server struct {
	opts     Options
	logger   *slog.Logger
	handler  http.Handler
	settings atomic.Pointer[settings]
	reloadMu sync.Mutex // one reload at a time

	mu     sync.Mutex
	listen string   // admin.listen the running listener was opened for
	run    *running // nil: no listener
}

// settings are the parts of config.Admin that the handlers read per request.
type settings struct {
	// tokenSum is the SHA-256 of admin.token; hasToken tells whether one is set. Comparing
	// sums keeps the comparison constant-time whatever the lengths.
	tokenSum [32]byte
	hasToken bool
	// openReads: reads need no token (admin.listen is loopback).
	openReads bool
}

func newSettings(a config.Admin) *settings {
	st := &settings{hasToken: a.Token != "", openReads: loopbackListen(a.Listen)}
	if st.hasToken {
		st.tokenSum = sha256.Sum256([]byte(a.Token))
	}
	return st
}

// loopbackListen reports whether a listen address only accepts local connections.
func loopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// New returns a Server; Apply starts listening.
func New(opts Options) *Server {
	if opts.BGP == nil {
		opts.BGP, _ = opts.Source.(BGPSource)
	}
	s := &Server{opts: opts, logger: opts.Logger}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	// Until Apply: no token, reads only from loopback.
	s.settings.Store(&settings{openReads: true})
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{Namespace: "waage"}),
		collectors.NewGoCollector(),
		newCollector(opts.Source, opts.Version).withBGP(opts.BGP),
	)
	mux := http.NewServeMux()
	s.routes(mux, promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slogErrorLog{s.logger}}))
	version := opts.Version
	if version == "" {
		version = "dev"
	}
	s.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Waage-Version", version)
		mux.ServeHTTP(w, r)
	})
	return s
}

type slogErrorLog struct{ l *slog.Logger }

func (l slogErrorLog) Println(v ...any) { l.l.Error("metrics: " + fmt.Sprint(v...)) }

// Handler serves the API, dashboard and metrics with the settings of the last Apply, for tests
// and for embedding.
func (s *Server) Handler() http.Handler { return s.handler }

// Apply takes a running configuration's admin section: it sets the token and opens the listener,
// or moves it when admin.listen changed, or closes it when admin.listen is empty. When the new
// address cannot be opened, the old listener stays and the error is returned. A listener that
// moves finishes its requests in progress in the background (the POST /api/reload that moved it
// still gets its answer).
func (s *Server) Apply(a config.Admin) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a.Listen == s.listen {
		s.settings.Store(newSettings(a))
		return nil
	}
	var ln net.Listener
	if a.Listen != "" {
		listen := s.opts.Listen
		if listen == nil {
			listen = func(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }
		}
		var err error
		if ln, err = listen(a.Listen); err != nil {
			return fmt.Errorf("admin.listen %s: %w", a.Listen, err)
		}
	}
	s.settings.Store(newSettings(a))
	if old := s.detachLocked(); old != nil {
		go old.stop(5 * time.Second)
	}
	if ln == nil {
		return nil
	}
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelDebug),
	}
	s.run = &running{srv: srv, ln: ln, done: make(chan struct{}), logger: s.logger}
	s.listen = a.Listen
	go s.run.serve()
	s.logger.Info("admin API listening", "addr", ln.Addr().String(), "token", a.Token != "")
	return nil
}

// Listening is the admin.listen the running listener was opened for; empty when none runs.
func (s *Server) Listening() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.listen
}

// running is one open listener and its HTTP server.
type running struct {
	srv    *http.Server
	ln     net.Listener
	done   chan struct{} // closed when Serve returned
	logger *slog.Logger
}

func (r *running) serve() {
	defer close(r.done)
	if err := r.srv.Serve(r.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		r.logger.Error("admin listener stopped", "addr", r.ln.Addr().String(), "err", err)
	}
}

// stop closes the listener and gives requests in progress up to grace to finish.
func (r *running) stop(grace time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if r.srv.Shutdown(ctx) != nil {
		r.srv.Close()
	}
	<-r.done
	r.logger.Info("admin API closed", "addr", r.ln.Addr().String())
}

// detachLocked takes the running listener out of s; the caller stops it.
func (s *Server) detachLocked() *running {
	r := s.run
	s.run, s.listen = nil, ""
	return r
}

// Addr is the bound address of the listener; nil when none runs.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.run == nil {
		return nil
	}
	return s.run.ln.Addr()
}

// Close stops the listener, giving requests in progress a second to finish.
func (s *Server) Close() error {
	s.mu.Lock()
	r := s.detachLocked()
	s.mu.Unlock()
	if r != nil {
		r.stop(time.Second)
	}
	return nil
}

// access is what a request may do.
type access uint8

const (
	accessRead  access = iota // dashboard data, metrics
	accessWrite               // changes: state, weight, reload, the deny list
)

// authorize applies the admin API's rules and answers the refusal itself; it reports whether the
// request may go on.
//
//   - Without admin.token the API is read-only, and only loopback clients may use it at all.
//   - With a token, changes need "Authorization: Bearer <token>"; so do reads when admin.listen
//     is not a loopback address.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, need access) bool {
	st := s.settings.Load()
	if !st.hasToken {
		if !loopbackRemote(r) {
			writeError(w, http.StatusForbidden, "the admin API without admin.token only answers loopback clients")
			return false
		}
		if need == accessWrite {
			writeError(w, http.StatusForbidden, "the admin API is read-only: set admin.token to allow changes")
			return false
		}
		return true
	}
	if need == accessRead && st.openReads {
		return true
	}
	got, ok := bearer(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="waage"`)
		writeError(w, http.StatusUnauthorized, "missing token: send Authorization: Bearer <admin.token>")
		return false
	}
	sum := sha256.Sum256([]byte(got))
	if subtle.ConstantTimeCompare(sum[:], st.tokenSum[:]) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="waage", error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, "wrong token")
		return false
	}
	return true
}

// bearer returns the token of an "Authorization: Bearer" header.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

func loopbackRemote(r *http.Request) bool {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	return err == nil && ap.Addr().Unmap().IsLoopback()
}
