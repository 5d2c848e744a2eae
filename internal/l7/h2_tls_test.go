package l7

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/waage/waage/internal/backend"
	"github.com/waage/waage/internal/config"
)

// selfSigned returns a certificate for 127.0.0.1 and a pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "waage h2 test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

// startTLSFront is waage terminating TLS (HTTP/2 offered by ALPN) in front of one backend.
func startTLSFront(t *testing.T, bc config.Backend, addrs ...string) (string, *x509.CertPool) {
	t.Helper()
	tr := NewTransport()
	t.Cleanup(tr.Close)
	bc.Name, bc.Algorithm = "b", "round_robin"
	var ss []*backend.Server
	for i, a := range addrs {
		name := "s" + string(rune('1'+i))
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
	cert, pool := selfSigned(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(&Handler{Name: "f", Router: rt, Scheme: "https",
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: ALPN(true)}})
	go s.Serve(ln)
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String(), pool
}

// TestGRPCOverTLSFrontend: a gRPC client over TLS (ALPN h2) reaches h2c servers through waage,
// with status codes intact.
func TestGRPCOverTLSFrontend(t *testing.T) {
	a := startEcho(t, "s1")
	addr, pool := startTLSFront(t, config.Backend{Protocol: "h2c"}, a.addr)
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := unary(ctx, conn, "hi"); err != nil || out != "s1:hi" {
		t.Fatalf("call: %q %v", out, err)
	}
	if _, err := unary(ctx, conn, "notfound"); status.Code(err) != codes.NotFound {
		t.Fatalf("notfound: %v", err)
	}
}

// TestH2OverTLSFrontend: Go's HTTP client negotiates h2 and the backend sees X-Forwarded-Proto
// https; a client that offers only http/1.1 is still served.
func TestH2OverTLSFrontend(t *testing.T) {
	addr, pool := startTLSFront(t, config.Backend{}, h1Backend(t, "s1"))
	for _, tc := range []struct {
		name  string
		h2    bool
		proto int
	}{{"h2", true, 2}, {"http/1.1", false, 1}} {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: tc.h2}
		resp, err := (&http.Client{Timeout: 10 * time.Second, Transport: tr}).Get("https://" + addr + "/x")
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		tr.CloseIdleConnections()
		if resp.ProtoMajor != tc.proto || !strings.Contains(string(body), "proto=https") {
			t.Fatalf("%s: %s %q", tc.name, resp.Proto, body)
		}
	}
}
