// Package acmetest runs the real ACME test CA, pebble, for tests: pebble-challtestsrv is its DNS
// server (every name resolves to 127.0.0.1, no AAAA answers), so the CA's validation connects
// to whatever the test listens with on 127.0.0.1 at the HTTP-01 and TLS-ALPN-01 ports it was
// given. Only tests import it.
package acmetest

import (
	"bytes"
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
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Options are what a test decides about its pebble.
type Options struct {
	// HTTPPort is where pebble validates HTTP-01 (it connects to DOMAIN:HTTPPort, that is
	// 127.0.0.1:HTTPPort). A port nothing listens on makes every HTTP-01 attempt fail.
	HTTPPort int
	// TLSPort is where pebble validates TLS-ALPN-01, likewise.
	TLSPort int
	// Validity, when not 0, is the lifetime of the issued certificates in seconds.
	Validity int
}

// Pebble is a running pebble, stopped when the test ends.
type Pebble struct {
	// Directory is the ACME directory URL.
	Directory string
	// CAFile is the PEM of the CA that signed pebble's own HTTPS certificate: what an ACME
	// client needs (the `ca` option) to talk to pebble.
	CAFile string
	// Roots holds pebble's issuing root, from its management API: what verifies the
	// certificates pebble issues.
	Roots *x509.CertPool
	// RootPEM is that root as PEM.
	RootPEM []byte

	cmd *exec.Cmd
	out *SyncBuffer
}

// Require makes sure pebble and pebble-challtestsrv are installed: as root it installs the
// Debian package when they are missing (and fails the test if that does not work); otherwise
// the test is skipped with the reason.
func Require(t testing.TB) {
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

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago, for whatever needs its
// port before it listens (pebble's config names the challenge ports).
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start runs pebble and its DNS server for one test, with a config and an HTTPS certificate of
// its own in t.TempDir(). Pebble validates at once (PEBBLE_VA_NOSLEEP), never rejects a good
// nonce on purpose (PEBBLE_WFE_NONCEREJECT=0) and validates every order anew
// (PEBBLE_AUTHZREUSE=0), so that a test sees each order's challenges and issuance is quick.
func Start(t testing.TB, o Options) *Pebble {
	t.Helper()
	Require(t)
	dir := t.TempDir()
	caFile, certFile, keyFile := WriteServerCert(t, dir)

	dnsPort := FreePort(t)
	dnsOut := &SyncBuffer{}
	startProcess(t, dnsOut, nil, "pebble-challtestsrv",
		"-dns01", "127.0.0.1:"+strconv.Itoa(dnsPort),
		"-http01", "", "-https01", "", "-tlsalpn01", "",
		"-management", "127.0.0.1:"+strconv.Itoa(FreePort(t)),
		"-defaultIPv6", "")
	waitFor(t, "pebble-challtestsrv DNS", func() error {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(dnsPort))
		if err == nil {
			c.Close()
		}
		return err
	}, dnsOut)

	listen := "127.0.0.1:" + strconv.Itoa(FreePort(t))
	mgmt := "127.0.0.1:" + strconv.Itoa(FreePort(t))
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":                  listen,
		"managementListenAddress":        mgmt,
		"certificate":                    certFile,
		"privateKey":                     keyFile,
		"httpPort":                       o.HTTPPort,
		"tlsPort":                        o.TLSPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"certificateValidityPeriod":      o.Validity,
	}}
	data, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(cfgFile, data, 0o644); err != nil {
		t.Fatal(err)
	}
	p := &Pebble{Directory: "https://" + listen + "/dir", CAFile: caFile, out: &SyncBuffer{}}
	p.cmd = startProcess(t, p.out, []string{
		"PEBBLE_VA_NOSLEEP=1",      // validate at once rather than after a random pause
		"PEBBLE_WFE_NONCEREJECT=0", // no deliberate bad-nonce answers
		"PEBBLE_AUTHZREUSE=0",      // every order must really be validated again
	}, "pebble", "-config", cfgFile, "-dnsserver", "127.0.0.1:"+strconv.Itoa(dnsPort))

	hc := p.HTTPSClient(t)
	waitFor(t, "pebble directory", func() error {
		res, err := hc.Get(p.Directory)
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			return fmt.Errorf("status %d", res.StatusCode)
		}
		return nil
	}, p.out)
	// The issuing root is made afresh at every start, so only the management API knows it.
	res, err := hc.Get("https://" + mgmt + "/roots/0")
	if err != nil {
		t.Fatalf("pebble roots: %v", err)
	}
	p.RootPEM, _ = io.ReadAll(res.Body)
	res.Body.Close()
	p.Roots = x509.NewCertPool()
	if !p.Roots.AppendCertsFromPEM(p.RootPEM) {
		t.Fatalf("pebble /roots/0: no PEM certificate in %q", p.RootPEM)
	}
	return p
}

// Stop ends pebble now, so that a later step can prove it needs no CA.
func (p *Pebble) Stop() {
	p.cmd.Process.Kill()
	p.cmd.Wait()
}

// Output is what pebble has logged so far.
func (p *Pebble) Output() string { return p.out.String() }

// Orders counts the new-order requests pebble has received, from its log: how a test tells
// that a client ordered nothing (it served a stored certificate).
func (p *Pebble) Orders() int {
	return strings.Count(p.out.String(), "POST /order-plz")
}

// HTTPSClient is an HTTP client that trusts pebble's HTTPS certificate (not what pebble issues).
func (p *Pebble) HTTPSClient(t testing.TB) *http.Client {
	t.Helper()
	pemCA, err := os.ReadFile(p.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemCA)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// startProcess starts a command whose output goes to out, and kills it (by its PID) when the
// test ends.
func startProcess(t testing.TB, out *SyncBuffer, env []string, name string, args ...string) *exec.Cmd {
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

func waitFor(t testing.TB, what string, try func() error, out *SyncBuffer) {
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

// WriteServerCert writes a CA (caFile) and a certificate for 127.0.0.1 signed by it (certFile,
// keyFile) into dir. Pebble uses them for its HTTPS: the Debian package ships no test
// certificate, and a CA of the test's own is what an ACME client's `ca` option exists for.
func WriteServerCert(t testing.TB, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
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
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
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
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
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

// SyncBuffer is a bytes.Buffer safe for the concurrent writes of a process and a logger.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
