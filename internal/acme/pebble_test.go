package acme

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// This file runs the real ACME test CA, pebble, with pebble-challtestsrv as its DNS server
// (every name resolves to 127.0.0.1, no AAAA answers, so the CA's validation connects to the
// challenge listeners the tests open on 127.0.0.1).

// requirePebble makes sure pebble and pebble-challtestsrv are installed: as root it installs
// the Debian package when they are missing (and fails if that does not work); otherwise the
// tests are skipped with the reason.
func requirePebble(t *testing.T) {
	t.Helper()
	missing := func() bool {
		for _, bin := range []string{"pebble", "pebble-challtestsrv"} {
			if _, err := exec.LookPath(bin); err != nil {
				return true
			}
		}
		return false
	}
	if !missing() {
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("pebble is not installed and the test is not root: apt-get install pebble (or run scripts/test-deps.sh)")
	}
	installOnce.Do(func() {
		cmd := exec.Command("apt-get", "install", "-y", "-qq", "--no-install-recommends", "pebble")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			installErr = fmt.Errorf("apt-get install pebble: %w\n%s", err, out)
		}
	})
	if installErr != nil {
		t.Fatal(installErr)
	}
	if missing() {
		t.Fatal("pebble or pebble-challtestsrv still missing after apt-get install pebble")
	}
}

var (
	installOnce sync.Once
	installErr  error
)

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago, for the processes
// that need their port in a config file.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// pebbleCA is a running pebble.
type pebbleCA struct {
	directory string         // the ACME directory URL
	caFile    string         // PEM of the CA that signed pebble's HTTPS certificate
	roots     *x509.CertPool // pebble's issuing root, from the management API
	cmd       *exec.Cmd
	out       *syncBuffer
}

// startPebble runs pebble (and its DNS server) for one test, validating HTTP-01 on httpPort
// and TLS-ALPN-01 on tlsPort. validity, when not 0, is the lifetime of the certificates in
// seconds.
func startPebble(t *testing.T, httpPort, tlsPort int, validity int) *pebbleCA {
	t.Helper()
	requirePebble(t)
	dir := t.TempDir()
	caFile, certFile, keyFile := writeServerCert(t, dir)

	dnsPort := freePort(t)
	dnsOut := &syncBuffer{}
	startProcess(t, dnsOut, nil, "pebble-challtestsrv",
		"-dns01", "127.0.0.1:"+strconv.Itoa(dnsPort),
		"-http01", "", "-https01", "", "-tlsalpn01", "",
		"-management", "127.0.0.1:"+strconv.Itoa(freePort(t)),
		"-defaultIPv6", "")
	waitFor(t, "pebble-challtestsrv DNS", func() error {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(dnsPort))
		if err == nil {
			c.Close()
		}
		return err
	}, dnsOut)

	listen := "127.0.0.1:" + strconv.Itoa(freePort(t))
	mgmt := "127.0.0.1:" + strconv.Itoa(freePort(t))
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":                  listen,
		"managementListenAddress":        mgmt,
		"certificate":                    certFile,
		"privateKey":                     keyFile,
		"httpPort":                       httpPort,
		"tlsPort":                        tlsPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"certificateValidityPeriod":      validity,
	}}
	data, _ := json.Marshal(cfg)
	cfgFile := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(cfgFile, data, 0o644); err != nil {
		t.Fatal(err)
	}
	p := &pebbleCA{directory: "https://" + listen + "/dir", caFile: caFile, out: &syncBuffer{}}
	p.cmd = startProcess(t, p.out, []string{
		"PEBBLE_VA_NOSLEEP=1",      // validate at once rather than after a random pause
		"PEBBLE_WFE_NONCEREJECT=0", // no deliberate bad-nonce answers
		"PEBBLE_AUTHZREUSE=0",      // every order must really be validated again
	}, "pebble", "-config", cfgFile, "-dnsserver", "127.0.0.1:"+strconv.Itoa(dnsPort))

	hc := httpsClient(t, caFile)
	waitFor(t, "pebble directory", func() error {
		res, err := hc.Get(p.directory)
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			return fmt.Errorf("status %d", res.StatusCode)
		}
		return nil
	}, p.out)
	res, err := hc.Get("https://" + mgmt + "/roots/0")
	if err != nil {
		t.Fatalf("pebble roots: %v", err)
	}
	root, _ := io.ReadAll(res.Body)
	res.Body.Close()
	p.roots = x509.NewCertPool()
	if !p.roots.AppendCertsFromPEM(root) {
		t.Fatalf("pebble /roots/0: no PEM certificate in %q", root)
	}
	return p
}

// stop ends pebble now, so that a later step can prove it needs no CA.
func (p *pebbleCA) stop() {
	p.cmd.Process.Kill()
	p.cmd.Wait()
}

func httpsClient(t *testing.T, caFile string) *http.Client {
	pemCA, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemCA)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// startProcess starts a command whose output goes to out, and kills it when the test ends.
func startProcess(t *testing.T, out *syncBuffer, env []string, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, out.String())
		}
	})
	return cmd
}

func waitFor(t *testing.T, what string, try func() error, out *syncBuffer) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := try()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready: %v\noutput:\n%s", what, err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// writeServerCert makes a CA and a certificate for 127.0.0.1 signed by it, for pebble's HTTPS:
// the Debian package ships no test certificate, and a CA of the test's own is what the
// manager's `ca` option exists for.
func writeServerCert(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "waage test CA for pebble"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	caFile = filepath.Join(dir, "ca.pem")
	certFile = filepath.Join(dir, "cert.pem")
	keyFile = filepath.Join(dir, "key.pem")
	for f, b := range map[string]*pem.Block{
		caFile:   {Type: "CERTIFICATE", Bytes: caDER},
		certFile: {Type: "CERTIFICATE", Bytes: der},
		keyFile:  {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(f, pem.EncodeToMemory(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return caFile, certFile, keyFile
}

// challengeServers are the listeners the CA validates against, answering for whichever
// Manager is current (they exist before the Manager, whose config needs pebble's URL, which
// needs their ports).
type challengeServers struct {
	m         atomic.Pointer[Manager]
	httpPort  int
	tlsPort   int
	httpHits  atomic.Int64 // challenge requests answered with a key authorization
	alpnHits  atomic.Int64 // acme-tls/1 handshakes answered with a challenge certificate
	httpAllow atomic.Bool  // when false, the HTTP server answers 404 to everything

	// pushed makes the TLS server answer from push, filled through Manager.OnTLSALPN01,
	// instead of asking Manager.TLSALPN01.
	pushed bool
	pmu    sync.Mutex
	push   map[string]*tls.Certificate
	events []string // "set NAME" / "clear NAME", in order
}

// use makes m the Manager the servers answer for, and registers the push hook.
func (s *challengeServers) use(m *Manager) {
	m.OnTLSALPN01(func(name string, c *tls.Certificate) {
		s.pmu.Lock()
		defer s.pmu.Unlock()
		if s.push == nil {
			s.push = map[string]*tls.Certificate{}
		}
		if c == nil {
			delete(s.push, name)
			s.events = append(s.events, "clear "+name)
		} else {
			s.push[name] = c
			s.events = append(s.events, "set "+name)
		}
	})
	s.m.Store(m)
}

func (s *challengeServers) pushEvents() []string {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	return slices.Clone(s.events)
}

// serveChallenges opens the HTTP-01 server (when withHTTP) and the TLS-ALPN-01 server (when
// withTLS) on 127.0.0.1. A challenge type without a server gets a port nothing listens on,
// so the CA's connection is refused.
func serveChallenges(t *testing.T, withHTTP, withTLS bool) *challengeServers {
	t.Helper()
	s := &challengeServers{}
	s.httpAllow.Store(true)
	if withHTTP {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s.httpPort = l.Addr().(*net.TCPAddr).Port
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			token, ok := strings.CutPrefix(r.URL.Path, "/.well-known/acme-challenge/")
			m := s.m.Load()
			if !ok || m == nil || !s.httpAllow.Load() {
				http.NotFound(w, r)
				return
			}
			ka, ok := m.HTTP01(token)
			if !ok {
				http.NotFound(w, r)
				return
			}
			s.httpHits.Add(1)
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, ka)
		})}
		go srv.Serve(l)
		t.Cleanup(func() { srv.Close() })
	} else {
		s.httpPort = freePort(t)
	}
	if withTLS {
		l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
			GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
				if m := s.m.Load(); m != nil {
					c := m.TLSALPN01(hello)
					if s.pushed {
						// Serve from what OnTLSALPN01 pushed, as a TLS store that keeps
						// its own challenge table does.
						s.pmu.Lock()
						c = nil
						if slices.Contains(hello.SupportedProtos, ALPNProto) {
							c = s.push[strings.ToLower(hello.ServerName)]
						}
						s.pmu.Unlock()
					}
					if c != nil {
						s.alpnHits.Add(1)
						return &tls.Config{Certificates: []tls.Certificate{*c}, NextProtos: []string{ALPNProto}}, nil
					}
				}
				return nil, fmt.Errorf("no certificate for %q %v", hello.ServerName, hello.SupportedProtos)
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		s.tlsPort = l.Addr().(*net.TCPAddr).Port
		var wg sync.WaitGroup
		t.Cleanup(func() { l.Close(); wg.Wait() })
		wg.Go(func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				wg.Go(func() {
					defer c.Close()
					c.SetDeadline(time.Now().Add(5 * time.Second))
					c.(*tls.Conn).Handshake()
					io.Copy(io.Discard, c) // the CA closes after the handshake
				})
			}
		})
	} else {
		s.tlsPort = freePort(t)
	}
	return s
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a process and a logger.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testLogger logs to the test's output and to a buffer the test can search.
func testLogger(t *testing.T) (*slog.Logger, *syncBuffer) {
	buf := &syncBuffer{}
	return slog.New(slog.NewTextHandler(io.MultiWriter(buf, tWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// runner runs a Manager in the background and collects what it delivers through onCert.
type runner struct {
	certs  chan *tls.Certificate
	cancel context.CancelFunc
	done   chan struct{}
}

func startRun(t *testing.T, m *Manager) *runner {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &runner{certs: make(chan *tls.Certificate, 16), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		m.Run(ctx, func(c *tls.Certificate) { r.certs <- c })
	}()
	t.Cleanup(r.stop)
	return r
}

// stop cancels Run and waits for it to return, which it must do promptly.
func (r *runner) stop() {
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		panic("acme: Run did not return after its context was cancelled")
	}
}

func (r *runner) next(t *testing.T, timeout time.Duration) *tls.Certificate {
	t.Helper()
	select {
	case c := <-r.certs:
		return c
	case <-time.After(timeout):
		t.Fatalf("no certificate delivered within %v", timeout)
		return nil
	}
}

// verifyCert checks that c is a chain pebble's root vouches for, for every domain, and that its
// key belongs to the leaf.
func verifyCert(t *testing.T, c *tls.Certificate, roots *x509.CertPool, domains ...string) {
	t.Helper()
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	inter := x509.NewCertPool()
	for _, der := range c.Certificate[1:] {
		ic, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		inter.AddCert(ic)
	}
	for _, d := range domains {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: d, Roots: roots, Intermediates: inter}); err != nil {
			t.Errorf("certificate does not verify for %s against pebble's root: %v", d, err)
		}
	}
	pub, ok := c.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || pub.Curve != elliptic.P256() || !pub.PublicKey.Equal(leaf.PublicKey) {
		t.Errorf("certificate key is %T, not the leaf's ECDSA P-256 key", c.PrivateKey)
	}
}
