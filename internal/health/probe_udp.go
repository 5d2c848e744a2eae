package health

import (
	"context"
	"errors"
	"net"
	"syscall"

	"github.com/waage/waage/internal/config"
)

// udpProber sends one datagram (a DNS query, a status request) and judges the first reply. UDP
// has no connection to check, so a reply is the only sign of life; the kernel's ICMP port
// unreachable, surfaced on a connected socket as "connection refused", tells a dead port apart
// from a slow one.
type udpProber struct {
	send   []byte
	expect *matcher
}

func newUDPProber(hc *config.HealthCheck) (*udpProber, error) {
	p := &udpProber{}
	var err error
	if p.send, err = payload(hc); err != nil {
		return nil, err
	}
	if p.expect, err = newMatcher("expect", hc.Expect); err != nil {
		return nil, err
	}
	return p, nil
}

// Probe sends the payload and waits for one reply.
func (p *udpProber) Probe(ctx context.Context, t Target) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", t.Address)
	if err != nil {
		return connectError(ctx, err)
	}
	defer func() { _ = c.Close() }()
	stop := bindContext(ctx, c)
	defer stop()

	if _, err := c.Write(p.send); err != nil {
		return p.ioError(ctx, err, "send")
	}
	buf := make([]byte, maxRead)
	n, err := c.Read(buf)
	if err != nil {
		return p.ioError(ctx, err, "read")
	}
	if p.expect != nil && !p.expect.match(buf[:n]) {
		return p.expect.failure("reply " + quoteSnippet(buf[:n]))
	}
	return nil
}

func (p *udpProber) ioError(ctx context.Context, err error, op string) error {
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		return errCanceled
	case errors.Is(err, syscall.ECONNREFUSED):
		return errors.New("no listener (port unreachable)")
	case isTimeout(err):
		return errors.New("no reply before timeout")
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return errors.New(describe(err))
	}
	return errors.New(op + ": " + err.Error())
}
