package l7

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/waage/waage/internal/backend"
	"github.com/waage/waage/internal/config"
)

// rawCodec carries gRPC messages as plain bytes, so the test service needs no generated code.
// Clients pick it with the content subtype "raw"; the health service keeps protobuf.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(b []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), b...)
	return nil
}
func (rawCodec) Name() string                     { return "raw" }
func init()                                       { encoding.RegisterCodec(rawCodec{}) }
func rawOpt() grpc.CallOption                     { return grpc.CallContentSubtype("raw") }
func recvRaw(s grpc.ClientStream) ([]byte, error) { var b []byte; err := s.RecvMsg(&b); return b, err }
func sendRaw(s grpc.ClientStream, m string) error { b := []byte(m); return s.SendMsg(&b) }

// echoServer is a gRPC server with the standard health service and waage.test.Echo: Unary
// answers "NAME:msg" (or NotFound for "notfound", or waits for cancellation for "wait", or
// returns 300ms after it for "linger"), Bidi
// echoes every message back as "NAME:msg".
type echoServer struct {
	name     string
	addr     string
	srv      *grpc.Server
	health   *health.Server
	canceled chan struct{} // one value per "wait" call that saw its context end
}

func startEcho(t *testing.T, name string) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echoServer{name: name, addr: ln.Addr().String(), srv: grpc.NewServer(), health: health.NewServer(), canceled: make(chan struct{}, 16)}
	healthpb.RegisterHealthServer(e.srv, e.health)
	e.srv.RegisterService(&grpc.ServiceDesc{
		ServiceName: "waage.test.Echo",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Unary", Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var in []byte
			if err := dec(&in); err != nil {
				return nil, err
			}
			switch string(in) {
			case "notfound":
				return nil, status.Error(codes.NotFound, "no such thing")
			case "wait":
				<-ctx.Done()
				e.canceled <- struct{}{}
				return nil, ctx.Err()
			case "linger":
				// Returns well after the deadline: the server's own reset goes first.
				<-ctx.Done()
				e.canceled <- struct{}{}
				time.Sleep(300 * time.Millisecond)
				return nil, ctx.Err()
			}
			out := []byte(e.name + ":" + string(in))
			return &out, nil
		}}},
		Streams: []grpc.StreamDesc{{StreamName: "Bidi", ServerStreams: true, ClientStreams: true, Handler: func(_ any, s grpc.ServerStream) error {
			for {
				var in []byte
				if err := s.RecvMsg(&in); err != nil {
					if err == io.EOF {
						return nil
					}
					return err
				}
				out := []byte(e.name + ":" + string(in))
				if err := s.SendMsg(&out); err != nil {
					return err
				}
			}
		}}},
	}, struct{}{})
	go e.srv.Serve(ln)
	t.Cleanup(e.srv.Stop)
	return e
}

// h2Front is waage's l7 server in front of one backend, serving h2c with prior knowledge on a
// loopback listener.
type h2Front struct {
	addr string
	s    *Server
	b    *Backend
}

func startH2Front(t *testing.T, bc config.Backend, addrs ...string) *h2Front {
	t.Helper()
	tr := NewTransport()
	t.Cleanup(tr.Close)
	bc.Name, bc.Algorithm = "b", "round_robin"
	var ss []*backend.Server
	for i, a := range addrs {
		name := fmt.Sprintf("s%d", i+1)
		bc.Servers = append(bc.Servers, config.Server{Name: name, Address: a})
		ss = append(ss, backend.NewServer("b", name, a))
	}
	b, err := NewBackend(bc, ss, tr)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := NewRouter(config.Frontend{Name: "f", DefaultBackend: "b"}, map[string]*Backend{"b": b})
	if err != nil {
		t.Fatal(err)
	}
	addr, s := serveH2(t, rt)
	return &h2Front{addr: addr, s: s, b: b}
}

// serveH2 serves h2c with prior knowledge on a loopback listener with the router rt, until the
// test ends; it returns the listener's address and the server.
func serveH2(t *testing.T, rt *Router) (string, *Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(&Handler{Name: "f", Router: rt, Scheme: "http", IdleTimeout: 5 * time.Second})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.ServeH2Conn(c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return ln.Addr().String(), s
}

func grpcClient(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func unary(ctx context.Context, conn *grpc.ClientConn, msg string) (string, error) {
	in, out := []byte(msg), []byte(nil)
	err := conn.Invoke(ctx, "/waage.test.Echo/Unary", &in, &out, rawOpt())
	return string(out), err
}

// TestGRPCUnaryRoundRobin: unary calls over one client connection are spread over both servers
// of an h2c backend, each stream balanced on its own.
func TestGRPCUnaryRoundRobin(t *testing.T) {
	a, b := startEcho(t, "s1"), startEcho(t, "s2")
	f := startH2Front(t, config.Backend{Protocol: "h2c"}, a.addr, b.addr)
	conn := grpcClient(t, f.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	seen := map[string]int{}
	for i := range 10 {
		out, err := unary(ctx, conn, fmt.Sprint("m", i))
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		name, msg, _ := strings.Cut(out, ":")
		if msg != fmt.Sprint("m", i) {
			t.Fatalf("call %d: got %q", i, out)
		}
		seen[name]++
	}
	if seen["s1"] != 5 || seen["s2"] != 5 {
		t.Fatalf("calls per server = %v, want 5 each", seen)
	}
	if n := f.s.Stats.Status[2].Load(); n != 10 {
		t.Fatalf("2xx count = %d, want 10", n)
	}
}

// TestGRPCBidiStreaming: a bidirectional stream carries messages both ways, in order, one at a
// time (each answer arrives before the next message is sent: nothing waits in a buffer).
func TestGRPCBidiStreaming(t *testing.T) {
	a := startEcho(t, "s1")
	f := startH2Front(t, config.Backend{Protocol: "h2c"}, a.addr)
	conn := grpcClient(t, f.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, "/waage.test.Echo/Bidi", rawOpt())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		msg := fmt.Sprint("msg-", i)
		if err := sendRaw(s, msg); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		got, err := recvRaw(s)
		if err != nil {
			t.Fatalf("recv %d: %v", i, err)
		}
		if string(got) != "s1:"+msg {
			t.Fatalf("recv %d = %q", i, got)
		}
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := recvRaw(s); err != io.EOF {
		t.Fatalf("after CloseSend: %v, want io.EOF (status OK from the trailers)", err)
	}
}

// TestGRPCStatusAndDeadline: error codes travel in grpc-status trailers end to end, and a client
// deadline ends the call with DeadlineExceeded while the server sees its context canceled.
func TestGRPCStatusAndDeadline(t *testing.T) {
	a := startEcho(t, "s1")
	f := startH2Front(t, config.Backend{Protocol: "h2c"}, a.addr)
	conn := grpcClient(t, f.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := unary(ctx, conn, "notfound")
	if st := status.Convert(err); st.Code() != codes.NotFound || st.Message() != "no such thing" {
		t.Fatalf("notfound call: %v, want NotFound: no such thing", err)
	}
	dctx, dcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer dcancel()
	_, err = unary(dctx, conn, "wait")
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("wait call: %v, want DeadlineExceeded", err)
	}
	select {
	case <-a.canceled:
	case <-time.After(5 * time.Second):
		t.Fatal("the server never saw the call canceled")
	}
}

// TestGRPCNoHealthyServer: with no server reachable, the client gets Unavailable with waage's
// reason in grpc-message (a Trailers-Only answer, not a bare HTTP 502/503), not a hang; the
// frontend counts the answers as 5xx.
func TestGRPCNoHealthyServer(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	f := startH2Front(t, config.Backend{Protocol: "h2c"}, dead)
	conn := grpcClient(t, f.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := unary(ctx, conn, "x")
	if st := status.Convert(err); st.Code() != codes.Unavailable || st.Message() != "Bad Gateway: could not connect to a server" {
		t.Fatalf("call: %v, want Unavailable: Bad Gateway: could not connect to a server", err)
	}
	f.b.Servers[0].SetHealthy(false)
	_, err = unary(ctx, conn, "x")
	if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "backend b has no healthy server") {
		t.Fatalf("call with the server down: %v, want Unavailable: ... no healthy server", err)
	}
	if n := f.s.Stats.Status[5].Load(); n != 2 {
		t.Fatalf("5xx count = %d, want 2", n)
	}
}

// TestGRPCServerDeadlineReset: a gRPC server ends a call at the deadline its grpc-timeout gave
// with RST_STREAM CANCEL; the client gets that reset (which its library reads as
// DeadlineExceeded), not a 502, and the server is not counted as failing.
func TestGRPCServerDeadlineReset(t *testing.T) {
	a := startEcho(t, "s1")
	f := startH2Front(t, config.Backend{Protocol: "h2c"}, a.addr)
	// A length-prefixed gRPC message "linger", without a client deadline of its own.
	msg := append([]byte{0, 0, 0, 0, 6}, "linger"...)
	req, _ := http.NewRequest("POST", "http://"+f.addr+"/waage.test.Echo/Unary", bytes.NewReader(msg))
	req.Header.Set("Content-Type", "application/grpc+raw")
	req.Header.Set("Te", "trailers")
	req.Header.Set("Grpc-Timeout", "100m")
	start := time.Now()
	resp, err := h2cClient().Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("call answered %d %v, want RST_STREAM CANCEL", resp.StatusCode, resp.Header)
	}
	var se http2.StreamError
	if !errors.As(err, &se) || se.Code != http2.ErrCodeCancel {
		t.Fatalf("call: %v, want a stream error CANCEL", err)
	}
	if d := time.Since(start); d < 90*time.Millisecond || d > 3*time.Second {
		t.Fatalf("reset after %v, want about the 100ms grpc-timeout", d)
	}
	select {
	case <-a.canceled:
	case <-time.After(5 * time.Second):
		t.Fatal("the server never saw the call canceled")
	}
	if n := f.b.Servers[0].Failures.Load(); n != 0 {
		t.Fatalf("server failures = %d, want 0", n)
	}
	// The next call goes through as usual.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := unary(ctx, grpcClient(t, f.addr), "x"); err != nil || out != "s1:x" {
		t.Fatalf("next call: %q, %v", out, err)
	}
}

// TestGRPCErrorShape: the proxy's own errors reach a gRPC client as Trailers-Only answers with
// the matching code and an escaped message; other clients keep plain HTTP statuses.
func TestGRPCErrorShape(t *testing.T) {
	for _, c := range []struct{ status, code int }{{404, 12}, {429, 8}, {502, 14}, {503, 14}, {504, 4}, {418, 2}} {
		if got := grpcCode(c.status); got != c.code {
			t.Errorf("grpcCode(%d) = %d, want %d", c.status, got, c.code)
		}
	}
	if got := grpcEscape("a 100% ü\n"); got != "a 100%25 %C3%BC%0A" {
		t.Errorf("grpcEscape = %q", got)
	}
	for ct, want := range map[string]bool{"application/grpc": true, "application/grpc+proto": true,
		"Application/GRPC;x=1": true, "application/grpc-web": false, "text/plain": false, "": false} {
		if got := isGRPC(http.Header{"Content-Type": {ct}}); got != want {
			t.Errorf("isGRPC(%q) = %v", ct, got)
		}
	}
}

// TestGRPCConnectRetry: a server that refuses connections is skipped: the call lands on the
// other one.
func TestGRPCConnectRetry(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	a := startEcho(t, "s2")
	f := startH2Front(t, config.Backend{Protocol: "h2c"}, dead, a.addr)
	conn := grpcClient(t, f.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 4 {
		out, err := unary(ctx, conn, "x")
		if err != nil || out != "s2:x" {
			t.Fatalf("call %d: %q, %v", i, out, err)
		}
	}
}

// h1Backend is a net/http (HTTP/1.1) server that answers with what it saw.
func h1Backend(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Server", name)
		w.Header().Set("Connection", "X-Hop")
		w.Header().Set("X-Hop", "secret")
		fmt.Fprintf(w, "%s %s %s xff=%s proto=%s host=%s body=%s", r.Proto, r.Method, r.RequestURI, r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"), r.Host, body)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func h2cClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}}
}

// TestH2ToHTTP1Backend: HTTP/2 requests reach an HTTP/1.1 backend with the forwarding fields set,
// the path normalised, hop-by-hop fields removed, and the body passed.
func TestH2ToHTTP1Backend(t *testing.T) {
	f := startH2Front(t, config.Backend{}, h1Backend(t, "s1"))
	c := h2cClient()
	resp, err := c.Post("http://"+f.addr+"/a/../b?q=1", "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := "HTTP/1.1 POST /b?q=1 xff=127.0.0.1 proto=http host=" + f.addr + " body=hello"
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 || string(body) != want {
		t.Fatalf("got %d %s %q, want 200 HTTP/2 %q", resp.StatusCode, resp.Proto, body, want)
	}
	if resp.Header.Get("X-Hop") != "" || resp.Header.Get("X-Server") != "s1" {
		t.Fatalf("response header %v: X-Hop (named in Connection) must go, X-Server stay", resp.Header)
	}
}

// TestH2ManyStreamsOneConnection: many concurrent streams on one client connection all succeed,
// spread over two servers.
func TestH2ManyStreamsOneConnection(t *testing.T) {
	f := startH2Front(t, config.Backend{}, h1Backend(t, "s1"), h1Backend(t, "s2"))
	var conns atomic.Int32
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			conns.Add(1)
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}}
	var wg sync.WaitGroup
	var mu sync.Mutex
	servers := map[string]int{}
	errs := make(chan error, 100)
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Get(fmt.Sprintf("http://%s/n/%d", f.addr, i))
			if err != nil {
				errs <- err
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !bytes.Contains(body, []byte(fmt.Sprintf("GET /n/%d ", i))) {
				errs <- fmt.Errorf("stream %d: %q", i, body)
				return
			}
			mu.Lock()
			servers[resp.Header.Get("X-Server")]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("client opened %d connections, want 1", n)
	}
	if servers["s1"] != 50 || servers["s2"] != 50 {
		t.Errorf("streams per server = %v, want 50 each", servers)
	}
}

// TestH2CurlPriorKnowledge: curl's own HTTP/2 (prior knowledge) works against the frontend.
func TestH2CurlPriorKnowledge(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	f := startH2Front(t, config.Backend{}, h1Backend(t, "s1"))
	out, err := exec.Command("curl", "-sS", "--http2-prior-knowledge", "-w", " %{http_version}", "http://"+f.addr+"/x").CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v: %s", err, out)
	}
	if !strings.HasPrefix(string(out), "HTTP/1.1 GET /x ") || !strings.HasSuffix(string(out), " 2") {
		t.Fatalf("curl got %q", out)
	}
}

// TestH2StreamingResponse: a response that streams reaches the client piece by piece, before
// the server has finished it.
func TestH2StreamingResponse(t *testing.T) {
	next := make(chan struct{})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i := range 3 {
			fmt.Fprintf(w, "part%d\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-next:
			case <-r.Context().Done():
				return
			}
		}
	})}
	go srv.Serve(ln)
	defer srv.Close()
	f := startH2Front(t, config.Backend{}, ln.Addr().String())
	resp, err := h2cClient().Get("http://" + f.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 64)
	for i := range 3 {
		n, err := resp.Body.Read(buf)
		if err != nil || string(buf[:n]) != fmt.Sprintf("part%d\n", i) {
			t.Fatalf("read %d: %q %v", i, buf[:n], err)
		}
		next <- struct{}{}
	}
}

// TestH2CAndHTTP1SamePort: one listener serves HTTP/1.1 clients and h2c prior-knowledge clients
// (Go's and curl's), all reaching the same HTTP/1.1 backend; the preface bytes the detection
// read are replayed to the HTTP/2 server.
func TestH2CAndHTTP1SamePort(t *testing.T) {
	f := startH2Front(t, config.Backend{}, h1Backend(t, "s1"))
	h := *f.s.Handler()
	h.H2C = true
	f.s.SetHandler(&h)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go f.s.Serve(ln)
	addr := ln.Addr().String()
	for _, tc := range []struct {
		name   string
		client *http.Client
		proto  int
	}{
		{"HTTP/1.1", &http.Client{Timeout: 10 * time.Second}, 1},
		{"h2c", h2cClient(), 2},
	} {
		resp, err := tc.client.Get("http://" + addr + "/same")
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ProtoMajor != tc.proto || !strings.HasPrefix(string(body), "HTTP/1.1 GET /same ") {
			t.Fatalf("%s: %d %s %q", tc.name, resp.StatusCode, resp.Proto, body)
		}
	}
	// A preface that trickles in byte by byte is still recognised.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 10 {
		c.Write([]byte{h2Preface[i]})
		time.Sleep(2 * time.Millisecond)
	}
	c.Write([]byte(h2Preface[10:]))
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if f, err := fr.ReadFrame(); err != nil {
		t.Fatalf("no HTTP/2 frame after a slow preface: %v", err)
	} else if _, ok := f.(*http2.SettingsFrame); !ok {
		t.Fatalf("first frame %T, want SETTINGS", f)
	}
	if _, err := exec.LookPath("curl"); err == nil {
		out, err := exec.Command("curl", "-sS", "--http2-prior-knowledge", "-w", " %{http_version}", "http://"+addr+"/curl").CombinedOutput()
		if err != nil || !strings.HasSuffix(string(out), " 2") || !strings.HasPrefix(string(out), "HTTP/1.1 GET /curl ") {
			t.Fatalf("curl: %v %q", err, out)
		}
	}
}

// TestH2GracefulShutdown: Shutdown sends open HTTP/2 connections a GOAWAY; a stream in flight
// runs to its end, and the connection closes after it.
func TestH2GracefulShutdown(t *testing.T) {
	a := startEcho(t, "s1")
	f := startH2Front(t, config.Backend{Protocol: "h2c"}, a.addr)
	conn := grpcClient(t, f.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, "/waage.test.Echo/Bidi", rawOpt())
	if err != nil {
		t.Fatal(err)
	}
	if err := sendRaw(s, "before"); err != nil {
		t.Fatal(err)
	}
	if got, err := recvRaw(s); err != nil || string(got) != "s1:before" {
		t.Fatalf("before shutdown: %q %v", got, err)
	}
	done := make(chan error, 1)
	go func() { done <- f.s.Shutdown(ctx) }()
	time.Sleep(300 * time.Millisecond) // the GOAWAY goes out within 100ms
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) while a stream was open", err)
	default:
	}
	if err := sendRaw(s, "after"); err != nil {
		t.Fatal(err)
	}
	if got, err := recvRaw(s); err != nil || string(got) != "s1:after" {
		t.Fatalf("stream after GOAWAY: %q %v", got, err)
	}
	s.CloseSend()
	if _, err := recvRaw(s); err != io.EOF {
		t.Fatalf("stream end: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return after the last stream ended")
	}
	if n := f.s.Stats.Connections.Load(); n != 0 {
		t.Fatalf("%d connections still counted", n)
	}
}

// TestH2AbortCutResponse: a response the server cuts short reaches the HTTP/2 client as a reset
// stream (before or after the head, which a response of known length does not send ahead), never
// as a complete body, and the server's in-flight count goes back to zero.
func TestH2AbortCutResponse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				c.Read(buf)
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten..")
			}()
		}
	}()
	f := startH2Front(t, config.Backend{}, ln.Addr().String())
	resp, err := h2cClient().Get("http://" + f.addr + "/")
	if err == nil {
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Fatalf("cut response read as complete: %q", body)
		}
	} else if !strings.Contains(err.Error(), "stream error") {
		t.Fatalf("want a reset stream, got %v", err)
	}
	srv := f.b.Servers[0]
	deadline := time.Now().Add(5 * time.Second)
	for srv.InFlight() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := srv.InFlight(); n != 0 {
		t.Fatalf("in flight = %d after the request ended", n)
	}
}

// TestH2CRedirectHTTPS: on a plaintext frontend with redirect_https, HTTP/2 streams get the same
// 308 to https as HTTP/1.1 requests; ACME challenges are still routed.
func TestH2CRedirectHTTPS(t *testing.T) {
	f := startH2Front(t, config.Backend{}, h1Backend(t, "s1"))
	h := *f.s.Handler()
	h.RedirectHTTPS, h.HTTPSPort = true, 8443
	f.s.SetHandler(&h)
	c := h2cClient()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	req, _ := http.NewRequest("GET", "http://"+f.addr+"/a/b?x=1", nil)
	req.Host = "www.example.com"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 308 || resp.Header.Get("Location") != "https://www.example.com:8443/a/b?x=1" {
		t.Fatalf("got %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	req, _ = http.NewRequest("GET", "http://"+f.addr+"/.well-known/acme-challenge/tok", nil)
	if resp, err = c.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("ACME challenge: %d, want it routed (200)", resp.StatusCode)
	}
}

// TestH2RouteMatch: HTTP/2 streams are routed by header (several fields of one name), cookie
// (in a second cookie field, as HTTP/2 clients split them), query, method and user agent, as
// HTTP/1.1 requests are.
func TestH2RouteMatch(t *testing.T) {
	tr := NewTransport()
	t.Cleanup(tr.Close)
	backends := map[string]*Backend{}
	for _, name := range []string{"a", "b"} {
		addr := h1Backend(t, name)
		b, err := NewBackend(config.Backend{Name: name, Algorithm: "round_robin", Servers: []config.Server{{Name: name, Address: addr}}},
			[]*backend.Server{backend.NewServer(name, name, addr)}, tr)
		if err != nil {
			t.Fatal(err)
		}
		backends[name] = b
	}
	rt, err := NewRouter(config.Frontend{Name: "f", DefaultBackend: "b", Routes: []config.Route{{
		Name:    "tenant",
		Backend: "a",
		Match: config.Match{
			Methods:   []string{"GET"},
			Headers:   config.StringMap{{Key: "X-Tenant", Value: "acme"}},
			Cookies:   config.StringMap{{Key: "sess", Value: "~^abc"}},
			Query:     config.StringMap{{Key: "v", Value: "2"}},
			UserAgent: "~^bench/",
		},
	}}}, backends)
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := serveH2(t, rt)
	c := h2cClient()
	get := func(method, query string, hdr http.Header) string {
		req, _ := http.NewRequest(method, "http://"+addr+"/x?"+query, nil)
		maps.Copy(req.Header, hdr)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.Header.Get("X-Server")
	}
	match := http.Header{"X-Tenant": {"other", "acme"}, "Cookie": {"a=1", "sess=abcdef"}, "User-Agent": {"bench/1"}}
	if got := get("GET", "v=2&w=1", match); got != "a" {
		t.Errorf("matching request went to %q, want a", got)
	}
	for what, h := range map[string]http.Header{
		"tenant":     {"X-Tenant": {"other"}, "Cookie": {"sess=abc"}, "User-Agent": {"bench/1"}},
		"cookie":     {"X-Tenant": {"acme"}, "Cookie": {"sess=xabc"}, "User-Agent": {"bench/1"}},
		"user agent": {"X-Tenant": {"acme"}, "Cookie": {"sess=abc"}, "User-Agent": {"curl/8"}},
	} {
		if got := get("GET", "v=2", h); got != "b" {
			t.Errorf("request with another %s went to %q, want b", what, got)
		}
	}
	if got := get("GET", "v=3", match); got != "b" {
		t.Errorf("request with another query went to %q, want b", got)
	}
	if got := get("HEAD", "v=2", match); got != "b" {
		t.Errorf("HEAD request went to %q, want b", got)
	}
}
