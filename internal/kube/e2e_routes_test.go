package kube_test

// End-to-end tests of the route kinds beside HTTPRoute: GRPCRoute (a real gRPC client and
// server), TLSRoute (passthrough by SNI), TCPRoute and UDPRoute, and allowedRoutes namespace
// selectors, with their status.

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// rawCodec carries gRPC messages as bytes (content subtype "raw"), so no generated code.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(b []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), b...)
	return nil
}
func (rawCodec) Name() string { return "raw" }

func init() { encoding.RegisterCodec(rawCodec{}) }

// inBackends runs f in the backends' network namespace, on a thread of its own that ends with
// it, so no other goroutine ever runs in the namespace. Sockets made there stay there.
func inBackends(t *testing.T, f func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread() // never unlocked: the thread exits with the goroutine
		target, err := netns.GetFromName(nsName)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- err
			return
		}
		errc <- f()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// listenIn listens on addr (TCP) inside the backends' namespace until the test ends.
func listenIn(t *testing.T, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	inBackends(t, func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	})
	t.Cleanup(func() { ln.Close() })
	return ln
}

// makePortService creates a Service with one port (target port the same) of protocol proto and
// its EndpointSlice with the addresses.
func makePortService(t *testing.T, ns, name string, port int32, proto corev1.Protocol, addrs ...string) {
	t.Helper()
	create(t, core.CoreV1().Services(ns).Create, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "p", Port: port, Protocol: proto}}},
	})
	create(t, core.DiscoveryV1().EndpointSlices(ns).Create, &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-1", Labels: map[string]string{
			discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "waage-e2e"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("p"), Port: ptr(port), Protocol: ptr(proto)}},
		Endpoints:   endpoints(addrs, nil),
	})
}

func ref(name string, port int32, weight int32) gwv1.BackendRef {
	return gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{Name: gwv1.ObjectName(name), Port: ptr(port)}, Weight: ptr(weight)}
}

func freeUDPPort() int {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// TestE2ERoutes serves a GRPCRoute on an HTTP listener that takes routes from namespaces with a
// label, TLSRoutes passed through by SNI, a TLSRoute on a listener that terminates TLS, a
// TCPRoute and a UDPRoute, all on one Gateway, with backends in the network namespace; and checks
// the routes' and the listeners' status.
func TestE2ERoutes(t *testing.T) {
	needCluster(t)
	waage(t)
	gatewaySetup(t) // the GatewayClass
	const ns = "routes"
	ctx := context.Background()
	create(t, core.CoreV1().Namespaces().Create, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"waage-e2e": "routes"}}})

	// gRPC: waage.test.Echo/Unary answers "ADDRESS:msg".
	grpcAddr := backendIPs[0]
	srv := grpc.NewServer()
	srv.RegisterService(&grpc.ServiceDesc{
		ServiceName: "waage.test.Echo",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Unary", Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var in []byte
			if err := dec(&in); err != nil {
				return nil, err
			}
			out := []byte(grpcAddr + ":" + string(in))
			return &out, nil
		}}},
	}, struct{}{})
	go srv.Serve(listenIn(t, grpcAddr+":9090"))
	t.Cleanup(srv.Stop)
	makePortService(t, ns, "grpc-echo", 9090, corev1.ProtocolTCP, grpcAddr)

	// TLS: two servers with their own certificates, each answering with its name.
	pool := x509.NewCertPool()
	for i, name := range []string{"a.tls.example", "b.wild.example"} {
		certPEM, keyPEM, cert := selfSigned(t, name, int64(100+i))
		pool.AddCert(cert)
		kp, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		ln := tls.NewListener(listenIn(t, backendIPs[1+i]+":8443"), &tls.Config{Certificates: []tls.Certificate{kp}})
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					c.SetDeadline(time.Now().Add(5 * time.Second))
					io.WriteString(c, "served by "+name)
				}()
			}
		}()
		makePortService(t, ns, "tls-"+strconv.Itoa(i), 8443, corev1.ProtocolTCP, backendIPs[1+i])
	}

	// TCP: a line echo on two servers, each prefixing its address.
	for _, a := range backendIPs[:2] {
		ln := listenIn(t, a+":7000")
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					line, _ := bufio.NewReader(c).ReadString('\n')
					io.WriteString(c, a+":"+line)
				}()
			}
		}()
	}
	makePortService(t, ns, "tcp-echo-a", 7000, corev1.ProtocolTCP, backendIPs[0])
	makePortService(t, ns, "tcp-echo-b", 7000, corev1.ProtocolTCP, backendIPs[1])

	// UDP: a datagram echo.
	var pc net.PacketConn
	inBackends(t, func() (err error) {
		pc, err = net.ListenPacket("udp", backendIPs[2]+":5300")
		return err
	})
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(append([]byte(backendIPs[2]+":"), buf[:n]...), from)
		}
	}()
	makePortService(t, ns, "udp-echo", 5300, corev1.ProtocolUDP, backendIPs[2])

	// TLS Terminate: waage's certificate from a Secret, the TCP echo behind it.
	termPEM, termKey, termCert := selfSigned(t, "term.tls.example", 200)
	pool.AddCert(termCert)
	create(t, core.CoreV1().Secrets(ns).Create, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "term"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: termPEM, corev1.TLSPrivateKeyKey: termKey},
	})

	grpcPort, tlsPort, termPort, tcpPort, udpPort := freePort(), freePort(), freePort(), freePort(), freeUDPPort()
	create(t, gw.GatewayV1().Gateways(ns).Create, &gwv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Name: "l4"},
		Spec: gwv1.GatewaySpec{GatewayClassName: "waage", Listeners: []gwv1.Listener{
			{Name: "grpc", Port: int32(grpcPort), Protocol: gwv1.HTTPProtocolType, AllowedRoutes: &gwv1.AllowedRoutes{Namespaces: &gwv1.RouteNamespaces{
				From:     ptr(gwv1.NamespacesFromSelector),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"waage-e2e": "routes"}},
			}}},
			{Name: "tls", Port: int32(tlsPort), Protocol: gwv1.TLSProtocolType, TLS: &gwv1.ListenerTLSConfig{Mode: ptr(gwv1.TLSModePassthrough)}},
			{Name: "tls-term", Port: int32(termPort), Protocol: gwv1.TLSProtocolType, TLS: &gwv1.ListenerTLSConfig{
				Mode: ptr(gwv1.TLSModeTerminate), CertificateRefs: []gwv1.SecretObjectReference{{Name: "term"}}}},
			{Name: "tcp", Port: int32(tcpPort), Protocol: gwv1.TCPProtocolType},
			{Name: "udp", Port: int32(udpPort), Protocol: gwv1.UDPProtocolType},
		}},
	})
	parent := func(section string) gwv1.CommonRouteSpec {
		return gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{Name: "l4", SectionName: ptr(gwv1.SectionName(section))}}}
	}
	create(t, gw.GatewayV1().GRPCRoutes(ns).Create, &gwv1.GRPCRoute{
		ObjectMeta: metav1.ObjectMeta{Name: "echo"},
		Spec: gwv1.GRPCRouteSpec{CommonRouteSpec: parent("grpc"), Rules: []gwv1.GRPCRouteRule{{
			Matches:     []gwv1.GRPCRouteMatch{{Method: &gwv1.GRPCMethodMatch{Service: ptr("waage.test.Echo"), Method: ptr("Unary")}}},
			BackendRefs: []gwv1.GRPCBackendRef{{BackendRef: ref("grpc-echo", 9090, 1)}},
		}}},
	})
	for i, host := range []string{"a.tls.example", "*.wild.example"} {
		create(t, gw.GatewayV1().TLSRoutes(ns).Create, &gwv1.TLSRoute{
			ObjectMeta: metav1.ObjectMeta{Name: "tls-" + strconv.Itoa(i)},
			Spec: gwv1.TLSRouteSpec{CommonRouteSpec: parent("tls"), Hostnames: []gwv1.Hostname{gwv1.Hostname(host)},
				Rules: []gwv1.TLSRouteRule{{BackendRefs: []gwv1.BackendRef{ref("tls-"+strconv.Itoa(i), 8443, 1)}}}},
		})
	}
	create(t, gw.GatewayV1().TLSRoutes(ns).Create, &gwv1.TLSRoute{
		ObjectMeta: metav1.ObjectMeta{Name: "term"},
		Spec: gwv1.TLSRouteSpec{CommonRouteSpec: parent("tls-term"), Hostnames: []gwv1.Hostname{"term.tls.example"},
			Rules: []gwv1.TLSRouteRule{{BackendRefs: []gwv1.BackendRef{ref("tcp-echo-a", 7000, 1)}}}},
	})
	create(t, gw.GatewayV1().TCPRoutes(ns).Create, &gwv1.TCPRoute{
		ObjectMeta: metav1.ObjectMeta{Name: "echo"},
		Spec: gwv1.TCPRouteSpec{CommonRouteSpec: parent("tcp"), Rules: []gwv1.TCPRouteRule{{
			BackendRefs: []gwv1.BackendRef{ref("tcp-echo-a", 7000, 1), ref("tcp-echo-b", 7000, 3)},
		}}},
	})
	create(t, gw.GatewayV1().UDPRoutes(ns).Create, &gwv1.UDPRoute{
		ObjectMeta: metav1.ObjectMeta{Name: "echo"},
		Spec: gwv1.UDPRouteSpec{CommonRouteSpec: parent("udp"), Rules: []gwv1.UDPRouteRule{{
			BackendRefs: []gwv1.BackendRef{ref("udp-echo", 5300, 1)},
		}}},
	})

	t.Run("grpc", func(t *testing.T) {
		conn, err := grpc.NewClient("passthrough:///127.0.0.1:"+strconv.Itoa(grpcPort), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		call := func(method string) ([]byte, error) {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			in, out := []byte("hi"), []byte(nil)
			err := conn.Invoke(cctx, method, &in, &out, grpc.CallContentSubtype("raw"))
			return out, err
		}
		eventually(t, "unary call through the GRPCRoute", func() error {
			out, err := call("/waage.test.Echo/Unary")
			if err != nil {
				return err
			}
			if string(out) != grpcAddr+":hi" {
				return fmt.Errorf("got %q", out)
			}
			return nil
		})
		// A method no rule matches finds no route: 404, which gRPC reads as Unimplemented.
		if _, err := call("/waage.test.Echo/Other"); status.Code(err) != codes.Unimplemented {
			t.Errorf("unmatched method: %v, want Unimplemented", err)
		}
	})

	t.Run("tls passthrough", func(t *testing.T) {
		hello := func(sni string) (string, error) {
			d := &net.Dialer{Timeout: 2 * time.Second}
			c, err := tls.DialWithDialer(d, "tcp", "127.0.0.1:"+strconv.Itoa(tlsPort), &tls.Config{ServerName: sni, RootCAs: pool})
			if err != nil {
				return "", err
			}
			defer c.Close()
			b, err := io.ReadAll(c)
			return string(b), err
		}
		for sni, want := range map[string]string{"a.tls.example": "served by a.tls.example", "b.wild.example": "served by b.wild.example"} {
			eventually(t, "SNI "+sni, func() error {
				got, err := hello(sni)
				if err != nil || got != want {
					return fmt.Errorf("got %q, %v; want %q", got, err, want)
				}
				return nil
			})
		}
		// No route for the name: the connection is closed, no server is asked.
		if got, err := hello("c.other.example"); err == nil {
			t.Errorf("unrouted SNI: %q, want the connection closed", got)
		}
	})

	t.Run("tls terminate", func(t *testing.T) {
		eventually(t, "TLS terminated by waage, plaintext to the TCP echo", func() error {
			d := &net.Dialer{Timeout: 2 * time.Second}
			c, err := tls.DialWithDialer(d, "tcp", "127.0.0.1:"+strconv.Itoa(termPort), &tls.Config{ServerName: "term.tls.example", RootCAs: pool})
			if err != nil {
				return err
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(2 * time.Second))
			io.WriteString(c, "ping\n")
			b, err := io.ReadAll(c)
			if want := backendIPs[0] + ":ping\n"; string(b) != want {
				return fmt.Errorf("got %q, %v; want %q", b, err, want)
			}
			return nil
		})
	})

	t.Run("tcp", func(t *testing.T) {
		seen := map[string]int{}
		eventually(t, "TCP echo from both backends", func() error {
			c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(tcpPort), 2*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(2 * time.Second))
			io.WriteString(c, "ping\n")
			b, err := io.ReadAll(c)
			if err != nil {
				return err
			}
			addr, rest, ok := strings.Cut(string(b), ":")
			if !ok || rest != "ping\n" {
				return fmt.Errorf("got %q", b)
			}
			seen[addr]++
			if len(seen) < 2 {
				return fmt.Errorf("only %v so far", seen)
			}
			return nil
		})
	})

	t.Run("udp", func(t *testing.T) {
		eventually(t, "UDP echo", func() error {
			c, err := net.Dial("udp", "127.0.0.1:"+strconv.Itoa(udpPort))
			if err != nil {
				return err
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(500 * time.Millisecond))
			if _, err := c.Write([]byte("ping")); err != nil {
				return err
			}
			buf := make([]byte, 100)
			n, err := c.Read(buf)
			if err != nil {
				return err
			}
			if want := backendIPs[2] + ":ping"; string(buf[:n]) != want {
				return fmt.Errorf("got %q, want %q", buf[:n], want)
			}
			return nil
		})
	})

	t.Run("status", func(t *testing.T) {
		eventually(t, "status", func() error {
			g, err := gw.GatewayV1().Gateways(ns).Get(ctx, "l4", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if err := errors.Join(hasCondition(g.Status.Conditions, "Accepted", metav1.ConditionTrue, "Accepted"),
				hasCondition(g.Status.Conditions, "Programmed", metav1.ConditionTrue, "Programmed")); err != nil {
				return fmt.Errorf("Gateway: %w", err)
			}
			want := map[gwv1.SectionName]struct {
				kinds    []string
				attached int32
			}{
				"grpc":     {[]string{"HTTPRoute", "GRPCRoute"}, 1},
				"tls":      {[]string{"TLSRoute"}, 2},
				"tls-term": {[]string{"TLSRoute"}, 1},
				"tcp":      {[]string{"TCPRoute"}, 1},
				"udp":      {[]string{"UDPRoute"}, 1},
			}
			if len(g.Status.Listeners) != len(want) {
				return fmt.Errorf("listeners %+v", g.Status.Listeners)
			}
			for _, l := range g.Status.Listeners {
				var kinds []string
				for _, k := range l.SupportedKinds {
					kinds = append(kinds, string(k.Kind))
				}
				if w := want[l.Name]; !slices.Equal(kinds, w.kinds) || l.AttachedRoutes != w.attached {
					return fmt.Errorf("listener %s: kinds %v, %d routes; want %v, %d", l.Name, kinds, l.AttachedRoutes, w.kinds, w.attached)
				}
				if err := hasCondition(l.Conditions, "Programmed", metav1.ConditionTrue, "Programmed"); err != nil {
					return fmt.Errorf("listener %s: %w", l.Name, err)
				}
			}
			parents := map[string][]gwv1.RouteParentStatus{}
			gr, err := gw.GatewayV1().GRPCRoutes(ns).Get(ctx, "echo", metav1.GetOptions{})
			if err != nil {
				return err
			}
			parents["GRPCRoute echo"] = gr.Status.Parents
			for _, name := range []string{"tls-0", "tls-1", "term"} {
				r, err := gw.GatewayV1().TLSRoutes(ns).Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					return err
				}
				parents["TLSRoute "+name] = r.Status.Parents
			}
			tr, err := gw.GatewayV1().TCPRoutes(ns).Get(ctx, "echo", metav1.GetOptions{})
			if err != nil {
				return err
			}
			parents["TCPRoute echo"] = tr.Status.Parents
			ur, err := gw.GatewayV1().UDPRoutes(ns).Get(ctx, "echo", metav1.GetOptions{})
			if err != nil {
				return err
			}
			parents["UDPRoute echo"] = ur.Status.Parents
			for name, ps := range parents {
				if len(ps) != 1 {
					return fmt.Errorf("%s: parents %+v", name, ps)
				}
				if err := errors.Join(hasCondition(ps[0].Conditions, "Accepted", metav1.ConditionTrue, "Accepted"),
					hasCondition(ps[0].Conditions, "ResolvedRefs", metav1.ConditionTrue, "ResolvedRefs")); err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
			}
			return nil
		})
	})

	// The namespace loses the label the grpc listener selects: the GRPCRoute is no longer
	// allowed, and its method finds no route.
	t.Run("selector", func(t *testing.T) {
		n, err := core.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n.Labels["waage-e2e"] = "elsewhere"
		if _, err := core.CoreV1().Namespaces().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "GRPCRoute not allowed", func() error {
			gr, err := gw.GatewayV1().GRPCRoutes(ns).Get(ctx, "echo", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if len(gr.Status.Parents) != 1 {
				return fmt.Errorf("parents %+v", gr.Status.Parents)
			}
			return hasCondition(gr.Status.Parents[0].Conditions, "Accepted", metav1.ConditionFalse, "NotAllowedByListeners")
		})
	})
}
