package health

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/waage/waage/internal/config"
)

// slack is how late a check may return after its deadline before a test calls it a hang: generous,
// for a loaded machine running the race detector, yet far below the seconds a hang would take.
const slack = 700 * time.Millisecond

// runProbe builds the prober of hc and runs one check of address with the given timeout,
// returning the verdict and how long it took.
func runProbe(t *testing.T, hc *config.HealthCheck, address string, timeout time.Duration) (error, time.Duration) {
	t.Helper()
	if hc.Timeout == 0 {
		hc.Timeout = config.Duration(timeout) // as the checker passes it, for messages that name it
	}
	p, err := NewProber(hc)
	if err != nil {
		t.Fatalf("NewProber: %v", err)
	}
	return probeOnce(p, Target{Backend: "be", Server: "s1", Address: address}, timeout)
}

func probeOnce(p Prober, tg Target, timeout time.Duration) (error, time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	err := p.Probe(ctx, tg)
	return err, time.Since(start)
}

// checkVerdict fails t unless err is nil when want is empty, or contains want otherwise.
func checkVerdict(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("got error %q, want healthy", err)
	case want != "" && err == nil:
		t.Errorf("got healthy, want error containing %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Errorf("got error %q, want it to contain %q", err, want)
	}
}

// freeAddr returns a TCP address on 127.0.0.1 where nothing listens (it did a moment ago).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// testCert is a self-signed certificate for 127.0.0.1 and localhost, good for servers and
// clients, with its PEM files.
type testCert struct {
	cert    tls.Certificate
	pool    *x509.CertPool // the certificate, to verify clients
	caFile  string         // the certificate as PEM, for tls.ca and tls.cert
	keyFile string         // its key as PEM, for tls.key
}

func newTestCert(t *testing.T) testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "waage test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tc := testCert{
		cert:    tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		pool:    x509.NewCertPool(),
		caFile:  filepath.Join(dir, "ca.pem"),
		keyFile: filepath.Join(dir, "key.pem"),
	}
	parsed, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	tc.pool.AddCert(parsed)
	if err := os.WriteFile(tc.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tc.keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return tc
}

func TestNewProberErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		hc   config.HealthCheck
		want string
	}{
		{"type none", config.HealthCheck{Type: "none"}, `"none"`},
		{"unknown type", config.HealthCheck{Type: "smtp"}, `unknown type "smtp"`},
		{"missing CA file", config.HealthCheck{Type: "tcp", TLS: &config.ClientTLS{CA: filepath.Join(dir, "nope.pem")}}, "tls.ca: open "},
		{"CA file without certs", config.HealthCheck{Type: "http", TLS: &config.ClientTLS{CA: notPEM}}, "tls.ca: no PEM certificates"},
		{"missing client cert", config.HealthCheck{Type: "http", TLS: &config.ClientTLS{Cert: filepath.Join(dir, "c.pem"), Key: filepath.Join(dir, "k.pem")}}, "tls.cert: "},
		{"cert without key", config.HealthCheck{Type: "tcp", TLS: &config.ClientTLS{Cert: notPEM}}, "cert and key go together"},
		{"bad expect regex", config.HealthCheck{Type: "tcp", Expect: "~a(b"}, "expect: error parsing regexp"},
		{"bad expect_body regex", config.HealthCheck{Type: "http", ExpectBody: "~[z-a]"}, "expect_body: error parsing regexp"},
		{"bad expect_status", config.HealthCheck{Type: "http", ExpectStatus: config.StringList{"2xx"}}, "expect_status: "},
		{"bad send_hex", config.HealthCheck{Type: "udp", SendHex: "0g"}, "send_hex: "},
		{"bad path", config.HealthCheck{Type: "http", Path: "http://example.com/"}, "path: "},
		{"exec without command", config.HealthCheck{Type: "exec"}, "command: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewProber(&tt.hc)
			if err == nil {
				t.Fatalf("NewProber = %T, want error containing %q", p, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NewProber error %q, want it to contain %q", err, tt.want)
			}
		})
	}
	if _, err := NewProber(nil); err == nil {
		t.Error("NewProber(nil) succeeded")
	}
}

func TestNewProberTypes(t *testing.T) {
	tests := []struct {
		name string
		hc   config.HealthCheck
	}{
		{"empty type is tcp", config.HealthCheck{}},
		{"tcp", config.HealthCheck{Type: "tcp", SendHex: "50 49\n4e 47"}},
		{"http defaults left empty", config.HealthCheck{Type: "http"}},
		{"udp", config.HealthCheck{Type: "udp", Send: "x"}},
		{"icmp", config.HealthCheck{Type: "icmp"}},
		{"exec", config.HealthCheck{Type: "exec", Command: []string{"true"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewProber(&tt.hc); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestHostOf(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"host port", "example.com:80", "example.com"},
		{"bare host", "example.com", "example.com"},
		{"ipv4 port", "127.0.0.1:22", "127.0.0.1"},
		{"bare ipv6", "::1", "::1"},
		{"bracketed ipv6 port", "[::1]:443", "::1"},
		{"bracketed ipv6", "[fe80::1%lo]", "fe80::1%lo"},
		{"empty port", "10.0.0.1:", "10.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := hostOf(tt.in); got != tt.want {
				t.Errorf("hostOf(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestQuoteSnippet(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"short", "* OK\r\n", `"* OK\r\n"`},
		{"binary", "\x00\xff", `"\x00\xff"`},
		{"long", strings.Repeat("a", 100), `"` + strings.Repeat("a", 60) + `"...`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := quoteSnippet([]byte(tt.in)); got != tt.want {
				t.Errorf("quoteSnippet = %s, want %s", got, tt.want)
			}
		})
	}
}
