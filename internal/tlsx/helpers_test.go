package tlsx

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/waage/waage/internal/config"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
	pem  []byte
}

var serial struct {
	sync.Mutex
	n int64
}

func nextSerial() *big.Int {
	serial.Lock()
	defer serial.Unlock()
	serial.n++
	return big.NewInt(serial.n)
}

func newCA(t testing.TB, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// leafSpec describes a certificate to issue. Label goes into the subject's Organization so a
// test can tell which certificate a handshake served.
type leafSpec struct {
	label  string
	cn     string
	names  []string
	rsa    bool
	client bool
}

// issue returns the PEM chain and key of a certificate signed by ca.
func (ca *testCA) issue(t testing.TB, s leafSpec) (certPEM, keyPEM []byte) {
	t.Helper()
	var key crypto.Signer
	var err error
	if s.rsa {
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(),
		Subject:      pkix.Name{CommonName: s.cn, Organization: []string{s.label}},
		DNSNames:     s.names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if s.rsa {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	if s.client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// tlsCert is issue as a tls.Certificate, for clients and SetDynamic.
func (ca *testCA) tlsCert(t testing.TB, s leafSpec) *tls.Certificate {
	t.Helper()
	c, k := ca.issue(t, s)
	cert, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return &cert
}

// writePair writes a pair into dir as name.pem and name.key and returns it as configuration.
func (ca *testCA) writePair(t testing.TB, dir, name string, s leafSpec) config.Certificate {
	t.Helper()
	c, k := ca.issue(t, s)
	pair := config.Certificate{Cert: filepath.Join(dir, name+".pem"), Key: filepath.Join(dir, name+".key")}
	writeAtomic(t, pair.Cert, c)
	writeAtomic(t, pair.Key, k)
	return pair
}

// writeAtomic replaces a file by renaming a new one over it, as certbot and cert-manager do, so
// the watcher never sees it half-written.
func writeAtomic(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// logBuffer collects a Store's log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) count(s string) int { return strings.Count(b.String(), s) }

func testLogger(b *logBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newStore is New that fails the test on error and closes the store at the end.
func newStore(t testing.TB, cfg *config.FrontendTLS, log *slog.Logger) *Store {
	t.Helper()
	s, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// serve runs a TLS server on 127.0.0.1 with cfg. Each connection gets a first line with the
// verified client subject (or "-"), then its lines echoed, so a test can check that a
// connection still works.
func serve(t testing.TB, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				tc := c.(*tls.Conn)
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if err := tc.Handshake(); err != nil {
					return
				}
				c.SetDeadline(time.Time{})
				cs := tc.ConnectionState()
				subject := ClientSubject(&cs)
				if subject == "" {
					subject = "-"
				}
				if _, err := io.WriteString(c, subject+"\n"); err != nil {
					return
				}
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// session is a client connection to serve's server, greeting read.
type session struct {
	conn    *tls.Conn
	r       *bufio.Reader
	subject string
}

// dial connects, handshakes and reads the greeting line (which also makes a TLS 1.3 client take
// in the server's session ticket).
func dial(addr string, cfg *tls.Config) (*session, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return &session{conn: c, r: r, subject: strings.TrimSuffix(line, "\n")}, nil
}

// echo checks that the connection still carries data both ways.
func (s *session) echo(msg string) error {
	s.conn.SetDeadline(time.Now().Add(5 * time.Second))
	defer s.conn.SetDeadline(time.Time{})
	if _, err := io.WriteString(s.conn, msg+"\n"); err != nil {
		return err
	}
	line, err := s.r.ReadString('\n')
	if err != nil {
		return err
	}
	if line != msg+"\n" {
		return errors.New("echo: got " + line)
	}
	return nil
}

// label is the Organization of the certificate the server presented.
func (s *session) label() string {
	cs := s.conn.ConnectionState()
	return cs.PeerCertificates[0].Subject.Organization[0]
}

// served dials and returns the label of the served certificate.
func served(t testing.TB, addr string, cfg *tls.Config) string {
	t.Helper()
	s, err := dial(addr, cfg)
	if err != nil {
		t.Fatalf("dial %s (SNI %q): %v", addr, cfg.ServerName, err)
	}
	defer s.conn.Close()
	return s.label()
}

// clientFor trusts ca and asks for sni.
func clientFor(ca *testCA, sni string) *tls.Config {
	return &tls.Config{RootCAs: ca.pool(), ServerName: sni}
}
