package health

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/waage/waage/internal/config"
	"github.com/waage/waage/internal/tlsx"
)

// grpcProber asks the standard gRPC health service (grpc.health.v1.Health/Check) about a
// service; SERVING is healthy, any other answer or error is not. It speaks h2c, or TLS when the
// check's tls is set (by default the backend's).
type grpcProber struct {
	service string
	tls     *tls.Config // nil: h2c
}

func newGRPCProber(hc *config.HealthCheck) (Prober, error) {
	p := &grpcProber{service: hc.Service}
	if hc.TLS != nil {
		cfg, err := tlsx.ClientConfig(hc.TLS)
		if err != nil {
			return nil, fmt.Errorf("grpc check: %w", err)
		}
		cfg.NextProtos = []string{"h2"}
		p.tls = cfg
	}
	return p, nil
}

// Probe opens a connection for each check, so a check also proves that the server accepts new
// connections (as the tcp and http checks do), and nothing of one check lingers into the next.
func (p *grpcProber) Probe(ctx context.Context, t Target) error {
	creds := insecure.NewCredentials()
	if p.tls != nil {
		creds = credentials.NewTLS(tlsFor(p.tls, t.Address))
	}
	// The dialer runs in grpc's goroutines; the last connect failure explains an Unavailable.
	var dialErr atomic.Pointer[error]
	conn, err := grpc.NewClient("passthrough:///"+t.Address,
		grpc.WithTransportCredentials(creds),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				dialErr.Store(&err)
			}
			return c, err
		}),
		// One attempt: the checker's rise and fall decide, not grpc's reconnect backoff.
		grpc.WithDisableRetry(),
	)
	if err != nil {
		return fmt.Errorf("client: %v", err)
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: p.service})
	if err != nil {
		if errors.Is(ctx.Err(), context.Canceled) {
			return errCanceled
		}
		st := status.Convert(err)
		switch {
		case dialErr.Load() != nil && (st.Code() == codes.Unavailable || st.Code() == codes.DeadlineExceeded):
			return errors.New(connectError(ctx, *dialErr.Load()).Error())
		case st.Code() == codes.DeadlineExceeded:
			return errors.New("timeout")
		case st.Code() == codes.NotFound:
			return fmt.Errorf("service %q unknown to the server", p.service)
		case st.Code() == codes.Unimplemented:
			return errors.New("the server has no health service")
		}
		return fmt.Errorf("%s: %s", st.Code(), st.Message())
	}
	if s := resp.GetStatus(); s != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("status %s", s)
	}
	return nil
}
