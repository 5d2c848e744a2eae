package runtime

// End-to-end tests of ACME through the runtime: waage obtains its certificates from a real
// pebble (package acmetest), which validates HTTP-01 against a plaintext http frontend and
// TLS-ALPN-01 against the TLS frontend itself, both on the ports pebble was told; the obtained
// certificate is then what clients get from the frontend's certificate store.

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/waage/waage/internal/acme/acmetest"
	"github.com/waage/waage/internal/config"
)

// acmeIssueLimit bounds one issuance through waage: pebble validates at once
// (PEBBLE_VA_NOSLEEP), so it takes a second or two; the rest is room for -race on a busy
// machine.
const acmeIssueLimit = 10 * time.Second

// acmeEnv is a pebble validating HTTP-01 on httpPort and TLS-ALPN-01 on tlsPort of 127.0.0.1,
// where the test's frontends listen (or nothing does, for a challenge type not in use).
type acmeEnv struct {
	p                 *acmetest.Pebble
	httpPort, tlsPort int
	storage           string
}

func startACMEEnv(t *testing.T) *acmeEnv {
	t.Helper()
	e := &acmeEnv{httpPort: acmetest.FreePort(t), tlsPort: acmetest.FreePort(t), storage: t.TempDir()}
	e.p = acmetest.Start(t, acmetest.Options{HTTPPort: e.httpPort, TLSPort: e.tlsPort})
	return e
}

// tlsBlock is a frontend's `tls:` with acme for domain, by the one challenge type given.
func (e *acmeEnv) tlsBlock(domain, challenge string) string {
	return fmt.Sprintf("    tls:\n      acme: {directory: %q, email: ops@example.test, domains: [%s], storage: %q, ca: %q, challenges: [%s]}\n",
		e.p.Directory, domain, e.storage, e.p.CAFile, challenge)
}

// clientTLS verifies the server as name against pebble's issuing root only, so only a
// certificate pebble issued passes.
func (e *acmeEnv) clientTLS(name string) *tls.Config {
	return &tls.Config{ServerName: name, RootCAs: e.p.Roots}
}

// waitACMECert dials addr with TLS for name until the handshake verifies (waage answers with
// "no certificate" until the order is done), and returns the connection and how long it took.
func (e *acmeEnv) waitACMECert(t *testing.T, addr, name string, since time.Time) (*tls.Conn, time.Duration) {
	t.Helper()
	deadline := since.Add(acmeIssueLimit)
	for {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: ioTimeout}, "tcp", addr, e.clientTLS(name))
		if err == nil {
			return c, time.Since(since)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no certificate for %s verifying against pebble's root at %s within %v: %v\npebble:\n%s",
				name, addr, acmeIssueLimit, err, e.p.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// httpsClient sends every request to addr over TLS verified as name against pebble's root.
func (e *acmeEnv) httpsClient(addr, name string) *http.Client {
	d := &net.Dialer{Timeout: ioTimeout}
	return &http.Client{Timeout: ioTimeout, Transport: &http.Transport{
		TLSClientConfig:   e.clientTLS(name),
		DialContext:       func(ctx context.Context, _, _ string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) },
		DisableKeepAlives: true,
	}}
}

// pathBackend is an HTTP backend that answers "backend PATH" and remembers the paths it saw.
type pathBackend struct {
	*httpBackend
	mu    sync.Mutex
	paths []string
}

func startPathBackend(t *testing.T) *pathBackend {
	b := &pathBackend{}
	b.httpBackend = startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.paths = append(b.paths, r.URL.Path)
		b.mu.Unlock()
		fmt.Fprintf(w, "backend %s", r.URL.Path)
	})
	return b
}

func (b *pathBackend) seen() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.paths...)
}

// getVia sends GET https://name/path through c and checks that the backend answered it.
func getVia(t *testing.T, c *http.Client, name, path string) {
	t.Helper()
	res, err := c.Get("https://" + name + path)
	if err != nil {
		t.Fatalf("GET https://%s%s: %v", name, path, err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || string(body) != "backend "+path {
		t.Fatalf("GET https://%s%s: %d %q, want 200 %q", name, path, res.StatusCode, body, "backend "+path)
	}
}

// countObtained is how many certificates the log says were obtained from the CA.
func countObtained(logs *logBuffer) int {
	return strings.Count(logs.String(), `msg="acme: certificate obtained"`)
}

// TestE2EACMEHTTP01 obtains a certificate with HTTP-01 answered by waage's plaintext frontend
// on pebble's HTTP port, which redirects everything else to https: the https frontend then
// serves the certificate (it verifies against pebble's root for the name) and proxies to the
// backend, and the challenge requests never reached the backend.
func TestE2EACMEHTTP01(t *testing.T) {
	e := startACMEEnv(t)
	b := startPathBackend(t)
	const name = "site.example.test"
	yaml := fmt.Sprintf(`frontends:
  - name: plain
    listen: ["127.0.0.1:%d"]
    redirect_https: true
    default_backend: b
  - name: web
    listen: ["127.0.0.1:0"]
    default_backend: b
%sbackends:
  - name: b
    servers:
      - {name: s1, address: %q}
`, e.httpPort, e.tlsBlock(name, "http-01"), b.addr)
	start := time.Now()
	rt, logs := startWaageLog(t, yaml)
	addr := feAddr(t, rt, "web")
	c, took := e.waitACMECert(t, addr, name, start)
	c.Close()
	t.Logf("issuance with http-01 through waage took %v", took)

	getVia(t, e.httpsClient(addr, name), name, "/hello")
	if l := logs.String(); !strings.Contains(l, "challenge=http-01") || countObtained(logs) != 1 {
		t.Errorf("want one 'certificate obtained' with challenge=http-01 in the log:\n%s", l)
	}
	if n := e.p.Orders(); n != 1 {
		t.Errorf("pebble saw %d new orders, want 1", n)
	}
	for _, p := range b.seen() {
		if strings.HasPrefix(p, "/.well-known/acme-challenge/") {
			t.Errorf("the backend got the challenge request %s; waage should have answered it", p)
		}
	}

	// Everything else on the plaintext frontend is still redirected.
	res, _ := dialRaw(t, fmt.Sprintf("127.0.0.1:%d", e.httpPort)).mustDo(t, get("/other?x=1", name))
	if res.StatusCode != 308 || res.Header.Get("Location") != "https://"+name+"/other?x=1" {
		t.Errorf("plaintext GET /other: %d Location %q, want 308 to https://%s/other?x=1", res.StatusCode, res.Header.Get("Location"), name)
	}
}

// TestE2EACMETLSALPN01 obtains a certificate with TLS-ALPN-01, validated by pebble against the
// https frontend itself (no plaintext frontend; nothing listens on pebble's HTTP port), which
// then serves it and proxies to the backend.
func TestE2EACMETLSALPN01(t *testing.T) {
	e := startACMEEnv(t)
	b := startPathBackend(t)
	const name = "alpn.example.test"
	start := time.Now()
	rt, logs := startWaageLog(t, e.httpsConfig(name, b.addr))
	addr := feAddr(t, rt, "web")
	c, took := e.waitACMECert(t, addr, name, start)
	c.Close()
	t.Logf("issuance with tls-alpn-01 through waage took %v", took)
	getVia(t, e.httpsClient(addr, name), name, "/x")
	if l := logs.String(); !strings.Contains(l, "challenge=tls-alpn-01") || countObtained(logs) != 1 {
		t.Errorf("want one 'certificate obtained' with challenge=tls-alpn-01 in the log:\n%s", l)
	}
	if n := e.p.Orders(); n != 1 {
		t.Errorf("pebble saw %d new orders, want 1", n)
	}
}

// httpsConfig is an https frontend "web" on pebble's TLS port with acme by tls-alpn-01 for
// name, in front of backend b at addr.
func (e *acmeEnv) httpsConfig(name, addr string) string {
	return fmt.Sprintf(`frontends:
  - name: web
    listen: ["127.0.0.1:%d"]
    default_backend: b
%sbackends:
  - name: b
    servers:
      - {name: s1, address: %q}
`, e.tlsPort, e.tlsBlock(name, "tls-alpn-01"), addr)
}

// TestE2EACMETCP: a tcp frontend that terminates TLS gets its certificate by TLS-ALPN-01 on its
// own port; a TLS client then verifies it and talks to the echo server behind it.
func TestE2EACMETCP(t *testing.T) {
	e := startACMEEnv(t)
	echo := startTCPEcho(t, "e1")
	const name = "tcp.example.test"
	head := fmt.Sprintf("  - name: tcp\n    mode: tcp\n    listen: [\"127.0.0.1:%d\"]\n    backend: b\n", e.tlsPort)
	start := time.Now()
	rt, logs := startWaageLog(t, oneFrontendConfig(head, e.tlsBlock(name, "tls-alpn-01"), "", echo.addr()))
	c, took := e.waitACMECert(t, feAddr(t, rt, "tcp"), name, start)
	t.Logf("issuance with tls-alpn-01 on a tcp frontend took %v", took)
	defer c.Close()
	if got := echoExchange(t, c, "through tls", c.CloseWrite); got != "e1" {
		t.Errorf("echo server %q, want e1", got)
	}
	if l := logs.String(); !strings.Contains(l, "challenge=tls-alpn-01") || countObtained(logs) != 1 {
		t.Errorf("want one 'certificate obtained' with challenge=tls-alpn-01 in the log:\n%s", l)
	}
	if n := e.p.Orders(); n != 1 {
		t.Errorf("pebble saw %d new orders, want 1", n)
	}
	// The CA's validation handshakes (ALPN acme-tls/1) end at waage; only the client's own
	// session reaches the server.
	if n := echo.conns.Load(); n != 1 {
		t.Errorf("the echo server got %d connections, want 1 (challenge handshakes must not be proxied)", n)
	}
}

// TestE2EACMEReload: applying the same configuration again starts a new ACME manager on the
// same storage, which serves the stored certificate: the very same one is served right after
// Apply returns, pebble gets no new order, and the stored files are not rewritten.
func TestE2EACMEReload(t *testing.T) {
	e := startACMEEnv(t)
	b := startPathBackend(t)
	const name = "reload.example.test"
	yaml := e.httpsConfig(name, b.addr)
	start := time.Now()
	rt, logs := startWaageLog(t, yaml)
	addr := feAddr(t, rt, "web")
	c, took := e.waitACMECert(t, addr, name, start)
	leaf := c.ConnectionState().PeerCertificates[0]
	c.Close()
	t.Logf("issuance took %v", took)

	files, err := filepath.Glob(filepath.Join(e.storage, "*", "certificates", "*"))
	if err != nil || len(files) < 2 {
		t.Fatalf("stored certificate files: %v, %v; want the chain and the key", files, err)
	}
	mtimes := map[string]time.Time{}
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		mtimes[f] = fi.ModTime()
	}

	for i := range 2 {
		cfg, err := config.Parse("e2e.yaml", []byte("log: {access: \"off\"}\n"+yaml), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := rt.Apply(cfg); err != nil {
			t.Fatalf("reload %d: %v", i+1, err)
		}
		// No waiting: a reload must not leave the frontend without its certificate.
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: ioTimeout}, "tcp", addr, e.clientTLS(name))
		if err != nil {
			t.Fatalf("handshake right after reload %d: %v", i+1, err)
		}
		got := c.ConnectionState().PeerCertificates[0]
		c.Close()
		if !bytes.Equal(got.Raw, leaf.Raw) {
			t.Errorf("after reload %d another certificate is served (serial %v, want %v)", i+1, got.SerialNumber, leaf.SerialNumber)
		}
		getVia(t, e.httpsClient(addr, name), name, fmt.Sprintf("/after-reload-%d", i+1))
	}
	// The new managers have read the storage; give them the moment an order would take to show.
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(logs.String(), "acme: using stored certificate") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the reloaded managers did not use the stored certificate:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	if n := e.p.Orders(); n != 1 {
		t.Errorf("pebble saw %d new orders after two reloads, want 1 (the first)", n)
	}
	if n := countObtained(logs); n != 1 {
		t.Errorf("%d certificates obtained, want 1", n)
	}
	for f, mt := range mtimes {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if !fi.ModTime().Equal(mt) {
			t.Errorf("%s was rewritten by a reload", f)
		}
	}
}
