package runtime

// End-to-end tests of gRPC through waage: h2c frontends, h2c backends, the grpc health check.

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/waage/waage/internal/config"
)

// startWaageH2 is startWaage for configurations with HTTP/2 keys (h2c, protocol h2/h2c, grpc
// checks). While this build refuses them, the test is skipped rather than failed: the l7 tests
// (internal/l7/h2_test.go) cover the data path until the runtime wires it.
func startWaageH2(t *testing.T, yamlText string) *Runtime {
	t.Helper()
	cfg, err := config.Parse("e2e.yaml", []byte("log: {access: \"off\"}\n"+yamlText), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("config: %v\n%s", err, yamlText)
	}
	if err := checkModes(cfg); err != nil && strings.Contains(err.Error(), "not supported by this build") {
		t.Skipf("runtime does not serve HTTP/2 yet: %v", err)
	}
	return startWaage(t, yamlText)
}

// e2eRawCodec carries gRPC messages as bytes (content subtype "raw"), so no generated code.
type e2eRawCodec struct{}

func (e2eRawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (e2eRawCodec) Unmarshal(b []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), b...)
	return nil
}
func (e2eRawCodec) Name() string { return "raw" }

func init() { encoding.RegisterCodec(e2eRawCodec{}) }

// grpcEcho is a gRPC server with the health service and waage.test.Echo/Unary ("NAME:msg", or
// NotFound for "notfound") and Echo/Bidi (echoes each message as "NAME:msg").
type grpcEcho struct {
	addr   string
	health *health.Server
}

func startGRPCEcho(t *testing.T, name string) *grpcEcho {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	e := &grpcEcho{addr: ln.Addr().String(), health: health.NewServer()}
	e.health.SetServingStatus("app", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, e.health)
	srv.RegisterService(&grpc.ServiceDesc{
		ServiceName: "waage.test.Echo",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Unary", Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var in []byte
			if err := dec(&in); err != nil {
				return nil, err
			}
			if string(in) == "notfound" {
				return nil, status.Error(codes.NotFound, "no such thing")
			}
			out := []byte(name + ":" + string(in))
			return &out, nil
		}}},
		Streams: []grpc.StreamDesc{{StreamName: "Bidi", ServerStreams: true, ClientStreams: true, Handler: func(_ any, s grpc.ServerStream) error {
			for {
				var in []byte
				if err := s.RecvMsg(&in); err == io.EOF {
					return nil
				} else if err != nil {
					return err
				}
				out := []byte(name + ":" + string(in))
				if err := s.SendMsg(&out); err != nil {
					return err
				}
			}
		}}},
	}, struct{}{})
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return e
}

func grpcDial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func echoUnary(ctx context.Context, conn *grpc.ClientConn, msg string) (string, error) {
	in, out := []byte(msg), []byte(nil)
	err := conn.Invoke(ctx, "/waage.test.Echo/Unary", &in, &out, grpc.CallContentSubtype("raw"))
	return string(out), err
}

func grpcConfig(health string, addrs ...string) string {
	return oneFrontendConfig("  - name: web\n    listen: [\"127.0.0.1:0\"]\n    h2c: true\n    default_backend: b\n", "",
		"    protocol: h2c\n"+health, addrs...)
}

// TestE2EGRPC: unary calls alternate between two h2c servers, error codes pass end to end, and a
// bidirectional stream carries messages both ways in order.
func TestE2EGRPC(t *testing.T) {
	a, b := startGRPCEcho(t, "s1"), startGRPCEcho(t, "s2")
	rt := startWaageH2(t, grpcConfig("", a.addr, b.addr))
	conn := grpcDial(t, feAddr(t, rt, "web"))
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	seen := map[string]int{}
	for i := range 6 {
		out, err := echoUnary(ctx, conn, "x")
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		seen[strings.TrimSuffix(out, ":x")]++
	}
	if seen["s1"] != 3 || seen["s2"] != 3 {
		t.Fatalf("calls per server %v, want 3 each", seen)
	}
	if _, err := echoUnary(ctx, conn, "notfound"); status.Code(err) != codes.NotFound {
		t.Fatalf("notfound: %v, want NotFound", err)
	}
	s, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, "/waage.test.Echo/Bidi", grpc.CallContentSubtype("raw"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		msg := []byte(fmt.Sprint("m", i))
		if err := s.SendMsg(&msg); err != nil {
			t.Fatal(err)
		}
		var got []byte
		if err := s.RecvMsg(&got); err != nil || !strings.HasSuffix(string(got), fmt.Sprint(":m", i)) {
			t.Fatalf("message %d: %q %v", i, got, err)
		}
	}
	s.CloseSend()
	var rest []byte
	if err := s.RecvMsg(&rest); err != io.EOF {
		t.Fatalf("stream end: %v, want io.EOF", err)
	}
}

// TestE2EGRPCHealthCheck: the grpc check takes a server whose health service says NOT_SERVING
// out of rotation, and brings it back when it serves again.
func TestE2EGRPCHealthCheck(t *testing.T) {
	a, b := startGRPCEcho(t, "s1"), startGRPCEcho(t, "s2")
	rt := startWaageH2(t, grpcConfig("    health_check: {type: grpc, service: app, interval: 50ms, timeout: 500ms, rise: 1, fall: 1}\n", a.addr, b.addr))
	s1 := rt.Server("b", "s1")
	a.health.SetServingStatus("app", healthpb.HealthCheckResponse_NOT_SERVING)
	waitFor(t, ioTimeout, "s1 down after NOT_SERVING", func() bool { return !s1.Healthy() })
	conn := grpcDial(t, feAddr(t, rt, "web"))
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	for i := range 4 {
		if out, err := echoUnary(ctx, conn, "x"); err != nil || out != "s2:x" {
			t.Fatalf("call %d with s1 down: %q %v", i, out, err)
		}
	}
	a.health.SetServingStatus("app", healthpb.HealthCheckResponse_SERVING)
	waitFor(t, ioTimeout, "s1 up after SERVING", s1.Healthy)
}
