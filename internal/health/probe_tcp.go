package health

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"

	"github.com/waage/waage/internal/config"
	"github.com/waage/waage/internal/tlsx"
)

// tcpProber checks that a server accepts connections and, when configured, speaks TLS and
// answers a request with the expected reply (a banner, "+PONG", ...).
//
// With TLS 1.3 a server checks a client certificate after the client's handshake is done, so a
// rejected certificate shows only on the first read: a check that must prove the certificate is
// accepted needs an expect.
type tcpProber struct {
	proxy  int         // PROXY protocol version to send first; 0: none
	tls    *tls.Config // nil for plain TCP
	send   []byte
	expect *matcher
}

func newTCPProber(hc *config.HealthCheck) (*tcpProber, error) {
	p := &tcpProber{proxy: proxyVersion(hc)}
	var err error
	if hc.TLS != nil {
		if p.tls, err = tlsx.ClientConfig(hc.TLS); err != nil {
			return nil, err
		}
	}
	if p.send, err = payload(hc); err != nil {
		return nil, err
	}
	if p.expect, err = newMatcher("expect", hc.Expect); err != nil {
		return nil, err
	}
	return p, nil
}

// Probe connects, handshakes, sends and reads as configured.
func (p *tcpProber) Probe(ctx context.Context, t Target) error {
	raw, err := dialCheck(ctx, t.Address, p.proxy)
	if err != nil {
		return connectError(ctx, err)
	}
	var c net.Conn = raw
	defer func() { _ = c.Close() }()
	stop := bindContext(ctx, raw)
	defer stop()

	if p.tls != nil {
		tc := tls.Client(raw, tlsFor(p.tls, t.Address))
		c = tc
		if err := tc.HandshakeContext(ctx); err != nil {
			return handshakeError(ctx, err)
		}
	}
	if len(p.send) > 0 {
		if _, err := c.Write(p.send); err != nil {
			if errors.Is(ctx.Err(), context.Canceled) {
				return errCanceled
			}
			if isTimeout(err) {
				return errors.New("send: timeout")
			}
			return errors.New(describe(err))
		}
	}
	if p.expect == nil {
		return nil
	}
	return p.readExpect(ctx, c)
}

// readExpect reads until the expectation is met, the peer closes, the deadline passes or maxRead
// bytes arrived, matching against all that was read so far (a reply may come in pieces).
func (p *tcpProber) readExpect(ctx context.Context, c net.Conn) error {
	buf := make([]byte, 0, 512)
	for {
		if len(buf) == cap(buf) {
			if len(buf) >= maxRead {
				return p.expect.failure("reply " + quoteSnippet(buf))
			}
			buf = append(buf, make([]byte, min(cap(buf), maxRead-len(buf)))...)[:len(buf)]
		}
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if n > 0 && p.expect.match(buf) {
			return nil
		}
		if err == nil {
			continue
		}
		switch {
		case errors.Is(ctx.Err(), context.Canceled):
			return errCanceled
		case len(buf) > 0 && (isTimeout(err) || errors.Is(err, io.EOF)):
			return p.expect.failure("reply " + quoteSnippet(buf))
		case isTimeout(err):
			return errors.New("no reply before timeout")
		case errors.Is(err, io.EOF):
			return errors.New("connection closed without reply")
		default:
			return errors.New(describe(err))
		}
	}
}
