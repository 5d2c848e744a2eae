package runtime

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"

	"github.com/waage/waage/internal/config"
	"github.com/waage/waage/internal/l4"
	"github.com/waage/waage/internal/l7"
	"github.com/waage/waage/internal/tlsx"
)

// tcpServer is what the runtime needs of a frontend serving TCP listeners, HTTP or plain TCP.
type tcpServer interface {
	Serve(ln net.Listener) error
	Detach(ln net.Listener)
	Shutdown(ctx context.Context) error
}

// buildL4Backends compiles the L4 side of every backend a tcp or udp frontend uses, over the
// same servers and outlier detector as the HTTP side.
func buildL4Backends(cfg *config.Config, httpSide map[string]*l7.Backend) (map[string]*l4.Backend, error) {
	used := map[string]bool{}
	for _, fe := range cfg.Frontends {
		if fe.Mode != "tcp" && fe.Mode != "udp" {
			continue
		}
		used[fe.Backend] = true
		used[fe.DefaultBackend] = true
		for _, r := range fe.Routes {
			used[r.Backend] = true
		}
	}
	out := map[string]*l4.Backend{}
	for _, bc := range cfg.Backends {
		if !used[bc.Name] {
			continue
		}
		hb := httpSide[bc.Name]
		b, err := l4.NewBackend(bc, hb.Servers, hb.Outlier)
		if err != nil {
			return nil, err
		}
		out[bc.Name] = b
	}
	return out, nil
}

// tcpHandler compiles a tcp frontend, and returns its certificate store (nil without tls): the
// owner closes it when the handler is replaced or the runtime stops, which ends the store's file
// watcher. Sessions are logged to access (nil: not logged).
func tcpHandler(fe config.Frontend, backends map[string]*l4.Backend, access *l7.AccessLog, logger *slog.Logger) (*l4.TCPHandler, *tlsx.Store, error) {
	h := &l4.TCPHandler{
		Name:             fe.Name,
		Default:          backends[fe.Backend],
		HandshakeTimeout: fe.Timeouts.ClientHeader.D(),
		IdleTimeout:      fe.Timeouts.ClientIdle.D(),
		Logger:           logger,
		AccessLog:        l4AccessLog(access),
	}
	if fe.DefaultBackend != "" {
		h.Default = backends[fe.DefaultBackend]
	}
	for _, rc := range fe.Routes {
		r := &l4.Route{Name: rc.Name, Backend: backends[rc.Backend], SNI: rc.Match.SNI, ALPN: rc.Match.ALPN}
		for _, s := range rc.Match.Source {
			p, err := config.ParsePrefix(s)
			if err != nil {
				return nil, nil, fmt.Errorf("frontend %q: route %q: %w", fe.Name, rc.Name, err)
			}
			r.Source = append(r.Source, p)
		}
		if len(r.SNI) > 0 || len(r.ALPN) > 0 {
			h.Peek = true
		}
		h.Routes = append(h.Routes, r)
	}
	var err error
	if h.ProxyTrusted, err = trustedPrefixes(fe); err != nil {
		return nil, nil, err
	}
	var store *tlsx.Store
	if fe.TLS != nil {
		tlog := slog.Default()
		if logger != nil {
			tlog = logger
		}
		if store, err = tlsx.New(fe.TLS, tlog.With("frontend", fe.Name)); err != nil {
			return nil, nil, fmt.Errorf("frontend %q: tls: %w", fe.Name, err)
		}
		h.TLS, h.Peek = store.ServerConfig(alpnOf(h.Routes)), false
	}
	return h, store, nil
}

// trustedPrefixes returns the sources a frontend accepts PROXY headers from: nil when it reads
// none, a non-nil (possibly empty) list when it does.
func trustedPrefixes(fe config.Frontend) ([]netip.Prefix, error) {
	if fe.ProxyProtocol == nil {
		return nil, nil
	}
	out := []netip.Prefix{}
	for _, s := range fe.ProxyProtocol.Trusted {
		p, err := config.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("frontend %q: proxy_protocol: %w", fe.Name, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// udpHandler compiles a udp frontend; flows are logged to access (nil: not logged).
func udpHandler(fe config.Frontend, backends map[string]*l4.Backend, access *l7.AccessLog, logger *slog.Logger) *l4.UDPHandler {
	return &l4.UDPHandler{
		Name: fe.Name, Backend: backends[fe.Backend], IdleTimeout: fe.Timeouts.ClientIdle.D(),
		MaxFlows: fe.UDP.MaxFlows, PerPacket: fe.UDP.PerPacket, Logger: logger,
		AccessLog: l4AccessLog(access),
	}
}

// alpnOf lists the protocols a tcp frontend's routes match on, in route order, so that ALPN
// offers them and a route on alpn can match after the handshake. A client offering none of them
// still completes the handshake without ALPN and goes to the default backend, as in passthrough
// mode (tlsx.Store.ServerConfig sees to that).
func alpnOf(routes []*l4.Route) []string {
	var out []string
	for _, r := range routes {
		for _, p := range r.ALPN {
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	return out
}
