package health

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/waage/waage/internal/backend"
	"github.com/waage/waage/internal/config"
)

// startGRPCHealth runs a gRPC server with the standard health service on loopback (TLS when
// creds is not nil) and returns its address and the health service to flip.
func startGRPCHealth(t *testing.T, opts ...grpc.ServerOption) (string, *health.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(opts...)
	hs := health.NewServer()
	hs.SetServingStatus("app", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return ln.Addr().String(), hs
}

func grpcProbe(t *testing.T, hc *config.HealthCheck, addr string, timeout time.Duration) error {
	t.Helper()
	hc.Type = "grpc"
	p, err := NewProber(hc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	err = p.Probe(ctx, Target{Backend: "b", Server: "s1", Address: addr})
	if d := time.Since(start); d > timeout+500*time.Millisecond {
		t.Errorf("probe took %v with a %v timeout", d, timeout)
	}
	return err
}

func TestGRPCProbe(t *testing.T) {
	addr, hs := startGRPCHealth(t)
	// silent accepts connections and never answers: the check must end at its timeout.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	hs.SetServingStatus("down", healthpb.HealthCheckResponse_NOT_SERVING)
	tests := []struct {
		name    string
		service string
		addr    string
		want    string // "" healthy, else a substring of the error
	}{
		{"server serving", "", addr, ""},
		{"service serving", "app", addr, ""},
		{"service not serving", "down", addr, "status NOT_SERVING"},
		{"unknown service", "nope", addr, `service "nope" unknown to the server`},
		{"refused", "", freeAddr(t), "connect: connection refused"},
		{"silent server", "", silent.Addr().String(), "timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := grpcProbe(t, &config.HealthCheck{Service: tc.service}, tc.addr, 500*time.Millisecond)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("healthy server failed: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestGRPCProbeTLS: with tls, the check speaks gRPC over TLS and verifies the server.
func TestGRPCProbeTLS(t *testing.T) {
	tc := newTestCert(t)
	creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{tc.cert}})
	addr, _ := startGRPCHealth(t, grpc.Creds(creds))
	if err := grpcProbe(t, &config.HealthCheck{TLS: &config.ClientTLS{CA: tc.caFile}}, addr, 2*time.Second); err != nil {
		t.Fatalf("TLS check with the right CA: %v", err)
	}
	err := grpcProbe(t, &config.HealthCheck{TLS: &config.ClientTLS{}}, addr, 2*time.Second)
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("TLS check against an unknown CA: %v, want a certificate error", err)
	}
	if err := grpcProbe(t, &config.HealthCheck{}, addr, time.Second); err == nil {
		t.Fatal("h2c check of a TLS server passed")
	}
}

// TestGRPCCheckerFlips: the checker takes a server whose health service says NOT_SERVING out
// after fall checks and brings it back after rise checks once it serves again.
func TestGRPCCheckerFlips(t *testing.T) {
	addr, hs := startGRPCHealth(t)
	s := backend.NewServer("b", "s1", addr)
	hc := &config.HealthCheck{Type: "grpc", Service: "app", Interval: config.Duration(20 * time.Millisecond),
		Timeout: config.Duration(time.Second), Rise: 2, Fall: 2, Initial: "up"}
	p, err := NewProber(hc)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuf
	c := newChecker(s, hc, p, slog.New(slog.NewTextHandler(&logs, nil)))
	ctx := context.Background()
	c.check(ctx)
	if !s.Healthy() {
		t.Fatal("serving server is down")
	}
	hs.SetServingStatus("app", healthpb.HealthCheckResponse_NOT_SERVING)
	c.check(ctx)
	c.check(ctx)
	if s.Healthy() {
		t.Fatal("NOT_SERVING server still up after fall checks")
	}
	hs.SetServingStatus("app", healthpb.HealthCheckResponse_SERVING)
	c.check(ctx)
	c.check(ctx)
	if !s.Healthy() {
		t.Fatal("server serving again still down after rise checks")
	}
	if out := logs.String(); !strings.Contains(out, "DOWN: grpc check: status NOT_SERVING") {
		t.Fatalf("log lacks the reason:\n%s", out)
	}
}
