package l7

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"

	"golang.org/x/net/http2"

	"github.com/waage/waage/internal/config"
	"github.com/waage/waage/internal/proxyproto"
	"github.com/waage/waage/internal/tlsx"
)

// httpUpstream is how net/http-based forwarding reaches the servers of an h2 or h2c backend (from
// HTTP/2 and HTTP/1.1 clients alike): one http2.Transport per backend, which keeps its own
// connections per server address. Backends of HTTP/1.1 servers have none (rt nil): forward
// uses their connection pools (h2_pool.go).
type httpUpstream struct {
	proto  string // http1 | h2 | h2c
	scheme string // http | https: the scheme of the upstream URL
	rt     http.RoundTripper
	close  func()
}

// newHTTPUpstream builds the transport of a backend from its protocol and tls.
func newHTTPUpstream(bc config.Backend, connectTO time.Duration) (*httpUpstream, error) {
	if connectTO <= 0 {
		connectTO = 5 * time.Second
	}
	proto := bc.Protocol
	if proto == "" {
		proto = "http1"
	}
	var tcfg *tls.Config
	if ct := bc.ServerTLS(); ct != nil {
		var err error
		if tcfg, err = tlsx.ClientConfig(ct); err != nil {
			return nil, fmt.Errorf("backend %q: %w", bc.Name, err)
		}
	}
	ppv := config.ProxyProtocolVersion(bc.ProxyProtocol)
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		d := net.Dialer{Timeout: connectTO}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, &connectErr{err}
		}
		if ca, ok := ctx.Value(clientAddrsKey{}).(clientAddrs); ok && ppv != 0 {
			// The connection is this client's alone (no keep-alive, see below), so its PROXY
			// header can name the client, as on the HTTP/1.1 path.
			hdr := proxyproto.For(ppv, ca.src, ca.dst)
			b, err := hdr.AppendBinary(nil)
			if err == nil {
				c.SetWriteDeadline(time.Now().Add(connectTO))
				_, err = c.Write(b)
				c.SetWriteDeadline(time.Time{})
			}
			if err != nil {
				c.Close()
				return nil, &connectErr{fmt.Errorf("PROXY header: %w", err)}
			}
		}
		return c, nil
	}
	// dialTLS connects and shakes hands; both count as the connect, so a failed handshake is
	// retried on another server like a refused connection.
	dialTLS := func(ctx context.Context, addr string, cfg *tls.Config) (net.Conn, error) {
		c, err := dial(ctx, addr)
		if err != nil {
			return nil, err
		}
		if cfg.ServerName == "" {
			cfg = cfg.Clone()
			if host, _, err := net.SplitHostPort(addr); err == nil {
				cfg.ServerName = host
			}
		}
		tc := tls.Client(c, cfg)
		hctx, cancel := context.WithTimeout(ctx, connectTO)
		defer cancel()
		if err := tc.HandshakeContext(hctx); err != nil {
			c.Close()
			return nil, &connectErr{fmt.Errorf("tls handshake: %w", err)}
		}
		return tc, nil
	}
	up := &httpUpstream{proto: proto, scheme: "http"}
	switch proto {
	case "h2", "h2c":
		t := &http2.Transport{
			DisableCompression: true,
			// A server that goes silent is pinged, and its connection dropped when the ping
			// is not answered: long gRPC streams on a dead connection end instead of hanging.
			ReadIdleTimeout: h2PingAfter,
			PingTimeout:     h2PingTimeout,
			IdleConnTimeout: 90 * time.Second,
		}
		if proto == "h2" {
			cfg := tcfg.Clone()
			cfg.NextProtos = []string{"h2"}
			up.scheme = "https"
			t.TLSClientConfig = cfg
			t.DialTLSContext = func(ctx context.Context, _, addr string, cfg *tls.Config) (net.Conn, error) {
				c, err := dialTLS(ctx, addr, cfg)
				if err != nil {
					return nil, err
				}
				if p := c.(*tls.Conn).ConnectionState().NegotiatedProtocol; p != "h2" {
					c.Close()
					return nil, &connectErr{fmt.Errorf("server did not agree to HTTP/2 (ALPN %q)", p)}
				}
				return c, nil
			}
		} else {
			// h2c: HTTP/2 with prior knowledge over plain TCP; AllowHTTP lets http URLs through
			// and the "TLS" dialer dials in the clear.
			t.AllowHTTP = true
			t.DialTLSContext = func(ctx context.Context, _, addr string, _ *tls.Config) (net.Conn, error) {
				return dial(ctx, addr)
			}
		}
		up.rt, up.close = t, t.CloseIdleConnections
	default:
		// HTTP/1.1 servers are reached through the backend's own connection pools, in the
		// stream's goroutine (h2_pool.go): net/http.Transport's per-request goroutine hand-offs
		// cost most of the throughput there.
		up.rt, up.close = nil, func() {}
	}
	return up, nil
}

// clientAddrs are a request's client and the address it connected to, for PROXY headers; the
// request's context carries them to the dialer.
type clientAddrs struct{ src, dst netip.AddrPort }

type clientAddrsKey struct{}

// connectErr marks a failure to connect (or to complete the TLS handshake): nothing reached the
// server, so the request can go to another one whatever it is.
type connectErr struct{ err error }

func (e *connectErr) Error() string { return "connect: " + e.err.Error() }
func (e *connectErr) Unwrap() error { return e.err }

func isConnectErr(err error) bool {
	var ce *connectErr
	return errors.As(err, &ce)
}

// h2Up returns the upstream of a backend whose servers speak HTTP/2, nil for HTTP/1.1 ones,
// which the hand-written data path serves.
func (b *Backend) h2Up() *httpUpstream {
	if b.up.proto != "http1" {
		return b.up
	}
	return nil
}

// CloseIdle closes the idle connections of the backend's net/http transport; a reload calls it
// on the backends it replaces. Requests in flight keep theirs.
func (b *Backend) CloseIdle() { b.up.close() }

func netipAddrPort(a net.Addr) (netip.AddrPort, error) {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort(), nil
	}
	return netip.ParseAddrPort(a.String())
}
