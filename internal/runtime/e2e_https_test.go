package runtime

// End-to-end tests of HTTPS on http frontends (TLS termination for HTTP/1.1, SNI, client
// certificates), redirect_https, and TLS to servers, with Go's crypto/tls and net/http clients,
// curl, and net/http TLS servers as backends. Certificates come from a CA made up per test.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/waage/waage/internal/config"
	"github.com/waage/waage/internal/l7"
)

// httpsEnv is one test's CA and the directory its certificate files go to.
type httpsEnv struct {
	dir    string
	ca     *testCA
	caFile string
}

func newHTTPSEnv(t testing.TB) *httpsEnv {
	t.Helper()
	e := &httpsEnv{dir: t.TempDir(), ca: newTestCA(t)}
	e.caFile = filepath.Join(e.dir, "ca.pem")
	if err := os.WriteFile(e.caFile, e.ca.pem, 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

// clientPEM issues a client certificate (extended key usage clientAuth) with common name cn.
func (e *httpsEnv) clientPEM(t testing.TB, cn string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"Waage Test"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, e.ca.cert, &key.PublicKey, e.ca.key)
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

func (e *httpsEnv) clientCert(t testing.TB, cn string) tls.Certificate {
	t.Helper()
	c, k := e.clientPEM(t, cn)
	cert, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func (e *httpsEnv) clientFiles(t testing.TB, cn string) (certFile, keyFile string) {
	t.Helper()
	c, k := e.clientPEM(t, cn)
	certFile, keyFile = filepath.Join(e.dir, "client-"+cn+".crt"), filepath.Join(e.dir, "client-"+cn+".key")
	if err := os.WriteFile(certFile, c, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, k, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// httpsFrontendConfig is frontend "web" terminating TLS with the given certificate files (pairs)
// and tlsExtra inside its tls block, in front of backend "b" at addrs.
func httpsFrontendConfig(tlsExtra, feExtra, beExtra string, certs [][2]string, addrs ...string) string {
	var sb strings.Builder
	sb.WriteString("  - name: web\n    listen: [\"127.0.0.1:0\"]\n    default_backend: b\n    tls:\n      certificates:\n")
	for _, c := range certs {
		fmt.Fprintf(&sb, "        - {cert: %q, key: %q}\n", c[0], c[1])
	}
	sb.WriteString(tlsExtra)
	return oneFrontendConfig(sb.String(), feExtra, beExtra, addrs...)
}

// echoHandler answers with what the server saw: the forwarding fields, the client certificate
// field (every value), and the request body's length and SHA-256. ?size=N sends N bytes instead.
func echoHandler(w http.ResponseWriter, r *http.Request) {
	if n := r.URL.Query().Get("size"); n != "" {
		var size int
		fmt.Sscan(n, &size)
		w.Header().Set("Content-Length", fmt.Sprint(size))
		chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096)
		for size > 0 {
			k := min(size, len(chunk))
			if _, err := w.Write(chunk[:k]); err != nil {
				return
			}
			size -= k
		}
		return
	}
	h := sha256.New()
	n, _ := io.Copy(h, r.Body)
	tlsInfo := "none"
	if r.TLS != nil {
		tlsInfo = "yes"
		if len(r.TLS.PeerCertificates) > 0 {
			tlsInfo = "client=" + r.TLS.PeerCertificates[0].Subject.CommonName
		}
	}
	fmt.Fprintf(w, "method=%s\nproto=%s\nforwarded=%s\nsubject=%s\nlen=%d\nsha=%s\nbackend_tls=%s\n",
		r.Method, r.Header.Get("X-Forwarded-Proto"), r.Header.Get("Forwarded"),
		strings.Join(r.Header.Values(l7.ClientCertField), "|"), n, hex.EncodeToString(h.Sum(nil)), tlsInfo)
}

// echoField returns the value of "key=" in an echoHandler answer.
func echoField(body, key string) string {
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, key+"="); ok {
			return v
		}
	}
	return "<missing " + key + ">"
}

// httpsClient is a net/http client that reaches addr for any URL, verifying the server against
// roots as serverName (the URL's host when empty). dials counts its TCP connections.
func httpsClient(addr string, cfg *tls.Config, dials *atomic.Int64) *http.Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			if dials != nil {
				dials.Add(1)
			}
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		},
		TLSClientConfig:     cfg,
		MaxIdleConnsPerHost: 4,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   ioTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

func doReq(t testing.TB, c *http.Client, method, url string, body []byte, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: body: %v", method, url, err)
	}
	return resp, string(b)
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestE2EHTTPSGoClient: GET and POST over HTTPS through waage with Go's client, verified against
// the test CA: the server learns the request came over https (X-Forwarded-Proto, Forwarded),
// bodies of several MiB arrive intact both ways, and all requests share one keep-alive TLS
// connection.
func TestE2EHTTPSGoClient(t *testing.T) {
	e := newHTTPSEnv(t)
	cert, key := e.ca.leafFiles(t, e.dir, "www", "www.example.test")
	be := startHTTPBackend(t, echoHandler)
	rt := startWaage(t, httpsFrontendConfig("", "", "", [][2]string{{cert, key}}, be.addr))
	var dials atomic.Int64
	c := httpsClient(feAddr(t, rt, "web"), &tls.Config{RootCAs: e.ca.pool}, &dials)
	base := "https://www.example.test"

	resp, body := doReq(t, c, "GET", base+"/hello", nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("GET: status %d: %s", resp.StatusCode, body)
	}
	if resp.TLS == nil || resp.TLS.PeerCertificates[0].Subject.CommonName != "www" {
		t.Errorf("GET: not served over TLS with the frontend's certificate: %+v", resp.TLS)
	}
	if p := echoField(body, "proto"); p != "https" {
		t.Errorf("X-Forwarded-Proto = %q, want https", p)
	}
	if f := echoField(body, "forwarded"); !strings.Contains(f, "proto=https") {
		t.Errorf("Forwarded = %q, want proto=https", f)
	}

	up := make([]byte, 3<<20+17)
	rand.Read(up)
	resp, body = doReq(t, c, "POST", base+"/upload", up, nil)
	if resp.StatusCode != 200 || echoField(body, "len") != fmt.Sprint(len(up)) || echoField(body, "sha") != sha256Hex(up) {
		t.Errorf("POST %d bytes: status %d, server saw len=%s sha=%s, want sha=%s", len(up), resp.StatusCode, echoField(body, "len"), echoField(body, "sha"), sha256Hex(up))
	}
	if m := echoField(body, "method"); m != "POST" {
		t.Errorf("method = %q", m)
	}

	const down = 5<<20 + 3
	resp, body = doReq(t, c, "GET", fmt.Sprintf("%s/download?size=%d", base, down), nil, nil)
	if resp.StatusCode != 200 || len(body) != down {
		t.Errorf("download: status %d, %d bytes, want %d", resp.StatusCode, len(body), down)
	}
	want := bytes.Repeat([]byte("0123456789abcdef"), down/16+1)[:down]
	if body != string(want) {
		t.Error("download: body differs from what the server sent")
	}

	for i := 0; i < 20; i++ {
		if resp, body := doReq(t, c, "GET", base+"/again", nil, nil); resp.StatusCode != 200 {
			t.Fatalf("GET %d: status %d: %s", i, resp.StatusCode, body)
		}
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("the client opened %d connections for 23 sequential requests, want 1 (keep-alive over TLS)", n)
	}
}

// TestE2EHTTPSCurl: curl verifies waage's certificate with the CA file and gets answers over
// HTTPS, for GET and for a POST body of a MiB.
func TestE2EHTTPSCurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	e := newHTTPSEnv(t)
	cert, key := e.ca.leafFiles(t, e.dir, "www", "www.example.test")
	be := startHTTPBackend(t, echoHandler)
	rt := startWaage(t, httpsFrontendConfig("", "", "", [][2]string{{cert, key}}, be.addr))
	_, port, _ := net.SplitHostPort(feAddr(t, rt, "web"))
	url := "https://www.example.test:" + port
	resolve := "www.example.test:" + port + ":127.0.0.1"

	out, err := exec.Command("curl", "-sS", "--max-time", "10", "--cacert", e.caFile, "--resolve", resolve,
		"-w", "\ncode=%{http_code}\n", url+"/curl").CombinedOutput()
	if err != nil {
		t.Fatalf("curl GET: %v\n%s", err, out)
	}
	if s := string(out); echoField(s, "code") != "200" || echoField(s, "proto") != "https" || echoField(s, "method") != "GET" {
		t.Errorf("curl GET:\n%s", s)
	}

	data := make([]byte, 1<<20)
	rand.Read(data)
	file := filepath.Join(e.dir, "upload.bin")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command("curl", "-sS", "--max-time", "10", "--cacert", e.caFile, "--resolve", resolve,
		"--data-binary", "@"+file, "-w", "\ncode=%{http_code}\n", url+"/upload").CombinedOutput()
	if err != nil {
		t.Fatalf("curl POST: %v\n%s", err, out)
	}
	if s := string(out); echoField(s, "code") != "200" || echoField(s, "sha") != sha256Hex(data) {
		t.Errorf("curl POST: want sha=%s\n%s", sha256Hex(data), s)
	}

	// Without the CA, curl must refuse the certificate: it is the test CA's, not a public one.
	if out, err := exec.Command("curl", "-sS", "--max-time", "10", "--resolve", resolve, url+"/").CombinedOutput(); err == nil {
		t.Errorf("curl without --cacert accepted the certificate:\n%s", out)
	}
}

// TestE2EHTTPSSNI: with two certificates, the client's SNI picks the one for its name; a client
// without SNI (or with an unknown name) gets the first.
func TestE2EHTTPSSNI(t *testing.T) {
	e := newHTTPSEnv(t)
	aCert, aKey := e.ca.leafFiles(t, e.dir, "a", "a.example.test")
	bCert, bKey := e.ca.leafFiles(t, e.dir, "b", "b.example.test", "*.b.example.test")
	be := startHTTPBackend(t, echoHandler)
	rt := startWaage(t, httpsFrontendConfig("", "", "", [][2]string{{aCert, aKey}, {bCert, bKey}}, be.addr))
	addr := feAddr(t, rt, "web")
	for _, tc := range []struct {
		name, sni, want string
		verify          bool // the certificate is the name's: it verifies
	}{
		{"first", "a.example.test", "a", true},
		{"second", "b.example.test", "b", true},
		{"wildcard", "x.b.example.test", "b", true},
		{"unknown name", "c.example.test", "a", false},
		{"no sni", "", "a", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &tls.Config{ServerName: tc.sni, InsecureSkipVerify: true}
			body, cs, err := tlsGet(addr, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if cn := cs.PeerCertificates[0].Subject.CommonName; cn != tc.want {
				t.Errorf("SNI %q: certificate %q, want %q", tc.sni, cn, tc.want)
			}
			if echoField(body, "proto") != "https" {
				t.Errorf("body: %s", body)
			}
			if !tc.verify {
				return
			}
			cfg = &tls.Config{ServerName: tc.sni, RootCAs: e.ca.pool}
			if _, _, err := tlsGet(addr, cfg); err != nil {
				t.Errorf("verified handshake for %q: %v", tc.sni, err)
			}
		})
	}
}

// TestE2EHTTPSOldTLSRefused: TLS 1.0 and 1.1 clients get no connection; 1.2 and 1.3 do, and
// min_version 1.3 refuses 1.2 too.
func TestE2EHTTPSOldTLSRefused(t *testing.T) {
	e := newHTTPSEnv(t)
	cert, key := e.ca.leafFiles(t, e.dir, "www", "www.example.test")
	be := startHTTPBackend(t, echoHandler)
	rt := startWaage(t, httpsFrontendConfig("", "", "", [][2]string{{cert, key}}, be.addr))
	addr := feAddr(t, rt, "web")
	for _, tc := range []struct {
		name    string
		version uint16
		ok      bool
	}{
		{"1.0", tls.VersionTLS10, false},
		{"1.1", tls.VersionTLS11, false},
		{"1.2", tls.VersionTLS12, true},
		{"1.3", tls.VersionTLS13, true},
	} {
		cfg := &tls.Config{ServerName: "www.example.test", RootCAs: e.ca.pool, MinVersion: tc.version, MaxVersion: tc.version}
		_, cs, err := tlsGet(addr, cfg)
		switch {
		case tc.ok && err != nil:
			t.Errorf("TLS %s: %v", tc.name, err)
		case tc.ok && cs.Version != tc.version:
			t.Errorf("TLS %s: negotiated %x", tc.name, cs.Version)
		case !tc.ok && err == nil:
			t.Errorf("TLS %s was accepted", tc.name)
		}
	}

	rt13 := startWaage(t, httpsFrontendConfig("      min_version: \"1.3\"\n", "", "", [][2]string{{cert, key}}, be.addr))
	addr13 := feAddr(t, rt13, "web")
	cfg := &tls.Config{ServerName: "www.example.test", RootCAs: e.ca.pool, MaxVersion: tls.VersionTLS12}
	if _, _, err := tlsGet(addr13, cfg); err == nil {
		t.Error("min_version 1.3 accepted TLS 1.2")
	}
	cfg.MaxVersion = tls.VersionTLS13
	if _, _, err := tlsGet(addr13, cfg); err != nil {
		t.Errorf("min_version 1.3, TLS 1.3: %v", err)
	}
}

// TestE2EHTTPSALPN: a client offering h2 and http/1.1 gets h2 only when this build serves HTTP/2
// and tls.http2 is not off; otherwise http/1.1, and the request is served.
func TestE2EHTTPSALPN(t *testing.T) {
	e := newHTTPSEnv(t)
	cert, key := e.ca.leafFiles(t, e.dir, "www", "www.example.test")
	be := startHTTPBackend(t, echoHandler)
	for _, tc := range []struct {
		name, extra, want string
	}{
		{"default", "", map[bool]string{true: "h2", false: "http/1.1"}[l7.ServesHTTP2()]},
		{"http2 off", "      http2: false\n", "http/1.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := startWaage(t, httpsFrontendConfig(tc.extra, "", "", [][2]string{{cert, key}}, be.addr))
			addr := feAddr(t, rt, "web")
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: ioTimeout}, "tcp", addr,
				&tls.Config{ServerName: "www.example.test", RootCAs: e.ca.pool, NextProtos: []string{"h2", "http/1.1"}})
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			if got := c.ConnectionState().NegotiatedProtocol; got != tc.want {
				t.Errorf("ALPN chose %q, want %q", got, tc.want)
			}
			// A client offering only http/1.1 is served HTTP/1.1.
			body, cs, err := tlsGet(addr, &tls.Config{ServerName: "www.example.test", RootCAs: e.ca.pool, NextProtos: []string{"http/1.1"}})
			if err != nil || cs.NegotiatedProtocol != "http/1.1" || echoField(body, "proto") != "https" {
				t.Errorf("http/1.1 client: alpn %q, err %v, body %q", cs.NegotiatedProtocol, err, body)
			}
		})
	}
}

// TestE2EHTTPSClientCertRequire: with client_auth require, a client without a certificate (or
// with one from another CA) gets no answer; a client with a good one does, its subject reaches
// the server in X-Client-Cert-Subject, and a value the client sends itself is replaced.
func TestE2EHTTPSClientCertRequire(t *testing.T) {
	e := newHTTPSEnv(t)
	cert, key := e.ca.leafFiles(t, e.dir, "www", "www.example.test")
	be := startHTTPBackend(t, echoHandler)
	rt := startWaage(t, httpsFrontendConfig(fmt.Sprintf("      client_auth: require\n      client_ca: %q\n", e.caFile), "", "", [][2]string{{cert, key}}, be.addr))
	addr := feAddr(t, rt, "web")
	base := "https://www.example.test"

	c := httpsClient(addr, &tls.Config{RootCAs: e.ca.pool}, nil)
	req, _ := http.NewRequest("GET", base+"/", nil)
	if resp, err := c.Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("no client certificate: got status %d, want the connection refused", resp.StatusCode)
	}

	other := newHTTPSEnv(t)
	c = httpsClient(addr, &tls.Config{RootCAs: e.ca.pool, Certificates: []tls.Certificate{other.clientCert(t, "mallory")}}, nil)
	req, _ = http.NewRequest("GET", base+"/", nil)
	if resp, err := c.Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("certificate of another CA: got status %d, want the connection refused", resp.StatusCode)
	}
	if n := be.reqs.Load(); n != 0 {
		t.Errorf("%d requests without a valid certificate reached the server", n)
	}

	c = httpsClient(addr, &tls.Config{RootCAs: e.ca.pool, Certificates: []tls.Certificate{e.clientCert(t, "alice")}}, nil)
	resp, body := doReq(t, c, "GET", base+"/", nil, nil)
	const want = "CN=alice,O=Waage Test"
	if resp.StatusCode != 200 || echoField(body, "subject") != want {
		t.Errorf("good certificate: status %d, subject %q, want %q", resp.StatusCode, echoField(body, "subject"), want)
	}
	resp, body = doReq(t, c, "GET", base+"/", nil, map[string]string{l7.ClientCertField: "CN=admin"})
	if resp.StatusCode != 200 || echoField(body, "subject") != want {
		t.Errorf("forged field beside a good certificate: subject %q, want only %q", echoField(body, "subject"), want)
	}
}

// TestE2EHTTPSClientCertOptional: with client_auth optional, clients without a certificate are
// served without the subject field (and cannot forge it); clients with one are named.
func TestE2EHTTPSClientCertOptional(t *testing.T) {
	e := newHTTPSEnv(t)
	cert, key := e.ca.leafFiles(t, e.dir, "www", "www.example.test")
	be := startHTTPBackend(t, echoHandler)
	rt := startWaage(t, httpsFrontendConfig(fmt.Sprintf("      client_auth: optional\n      client_ca: %q\n", e.caFile), "", "", [][2]string{{cert, key}}, be.addr))
	addr := feAddr(t, rt, "web")

	c := httpsClient(addr, &tls.Config{RootCAs: e.ca.pool}, nil)
	resp, body := doReq(t, c, "GET", "https://www.example.test/", nil, map[string]string{"x-client-cert-SUBJECT": "CN=admin"})
	if resp.StatusCode != 200 || echoField(body, "subject") != "" {
		t.Errorf("no certificate, forged field: status %d, server saw subject %q, want none", resp.StatusCode, echoField(body, "subject"))
	}
	c = httpsClient(addr, &tls.Config{RootCAs: e.ca.pool, Certificates: []tls.Certificate{e.clientCert(t, "bob")}}, nil)
	resp, body = doReq(t, c, "GET", "https://www.example.test/", nil, nil)
	if resp.StatusCode != 200 || echoField(body, "subject") != "CN=bob,O=Waage Test" {
		t.Errorf("certificate: status %d, subject %q", resp.StatusCode, echoField(body, "subject"))
	}
}

// TestE2EClientCertFieldPlaintext: a plaintext frontend removes a client-sent
// X-Client-Cert-Subject (any case, any number), so servers can trust the field wherever it
// comes from.
func TestE2EClientCertFieldPlaintext(t *testing.T) {
	be := startHTTPBackend(t, echoHandler)
	rt := startWaage(t, simpleConfig("", "", be.addr))
	rc := dialRaw(t, feAddr(t, rt, "web"))
	if err := rc.write("GET / HTTP/1.1\r\nHost: x\r\nX-Client-Cert-Subject: CN=admin\r\nx-client-cert-subject: CN=root\r\nX-Other: 1\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, body, err := rc.readResp("GET")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || echoField(string(body), "subject") != "" || echoField(string(body), "proto") != "http" {
		t.Errorf("status %d, server saw subject %q proto %q; want no subject, proto http", resp.StatusCode, echoField(string(body), "subject"), echoField(string(body), "proto"))
	}
}

// TestE2ERedirectHTTPS: a redirect_https frontend answers 308 to the https URL (host without its
// port, https_port when not 443, path and query as sent), keeps the connection for the next
// request, and routes ACME HTTP-01 challenges to its backend.
func TestE2ERedirectHTTPS(t *testing.T) {
	be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "acme %s", r.URL.Path) })
	cfg := func(port string) string {
		return fmt.Sprintf(`frontends:
  - name: redir
    listen: ["127.0.0.1:0"]
    redirect_https: true
%s  - name: acme
    listen: ["127.0.0.1:0"]
    redirect_https: true
    default_backend: b
backends:
  - name: b
    servers: [{name: s1, address: %q}]
`, port, be.addr)
	}
	for _, tc := range []struct {
		name, port, want string
	}{
		{"default port", "", "https://www.example.test/a/b%20c?x=1&y"},
		{"https_port", "    https_port: 8443\n", "https://www.example.test:8443/a/b%20c?x=1&y"},
		{"https_port 443", "    https_port: 443\n", "https://www.example.test/a/b%20c?x=1&y"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := startWaage(t, cfg(tc.port))
			rc := dialRaw(t, feAddr(t, rt, "redir"))
			for i := 0; i < 2; i++ { // twice on one connection: it stays open
				if err := rc.write("GET /a/b%20c?x=1&y HTTP/1.1\r\nHost: WWW.Example.test:8080\r\n\r\n"); err != nil {
					t.Fatal(err)
				}
				resp, _, err := rc.readResp("GET")
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				if resp.StatusCode != 308 || resp.Header.Get("Location") != tc.want {
					t.Errorf("status %d Location %q, want 308 %q", resp.StatusCode, resp.Header.Get("Location"), tc.want)
				}
				if resp.Close {
					t.Error("the connection was closed after a bodiless request")
				}
			}
		})
	}

	rt := startWaage(t, cfg(""))
	// An IPv6 literal keeps its brackets; HTTP/1.0 gets no Location without a Host.
	rc := dialRaw(t, feAddr(t, rt, "redir"))
	if err := rc.write("GET /v6 HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if resp, _, err := rc.readResp("GET"); err != nil || resp.StatusCode != 308 || resp.Header.Get("Location") != "https://[::1]/v6" {
		t.Errorf("IPv6 host: %v %v", err, resp)
	}
	if err := rc.write("GET /old HTTP/1.0\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if resp, _, err := rc.readResp("GET"); err != nil || resp.StatusCode != 400 {
		t.Errorf("HTTP/1.0 without Host: %v %v, want 400", err, resp)
	}
	c := &http.Client{Timeout: ioTimeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	// A POST with a body: 308 keeps the method for the client's retry; waage does not read the
	// body and closes the connection after answering.
	resp, err := c.Post("http://"+feAddr(t, rt, "redir")+"/form", "text/plain", strings.NewReader(strings.Repeat("x", 100000)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 308 || !strings.HasSuffix(resp.Header.Get("Location"), "/form") || !resp.Close {
		t.Errorf("POST: status %d Location %q close %v; want 308 to /form and Connection: close", resp.StatusCode, resp.Header.Get("Location"), resp.Close)
	}
	if be.reqs.Load() != 0 {
		t.Error("a redirected request reached the backend")
	}
	// ACME challenges go to the routes; on a frontend without any, 404.
	resp, err = c.Get("http://" + feAddr(t, rt, "acme") + "/.well-known/acme-challenge/tok123")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "acme /.well-known/acme-challenge/tok123" {
		t.Errorf("ACME challenge: status %d body %q, want the backend's answer", resp.StatusCode, b)
	}
	resp, err = c.Get("http://" + feAddr(t, rt, "redir") + "/.well-known/acme-challenge/tok123")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("ACME challenge without a backend: status %d, want 404", resp.StatusCode)
	}
	// Normalisation cannot dodge the redirect: this is not a challenge path.
	resp, err = c.Get("http://" + feAddr(t, rt, "acme") + "/.well-known/acme-challenge/../../secret")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 308 {
		t.Errorf("dot segments out of the challenge path: status %d, want 308", resp.StatusCode)
	}
}

// startTLSBackend is startHTTPBackend over TLS with cfg (HTTP/1.1 only); wrap, if not nil,
// wraps the listener first.
func startTLSBackend(t testing.TB, cfg *tls.Config, wrap func(net.Listener) net.Listener, h http.HandlerFunc) *httpBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &httpBackend{addr: ln.Addr().String()}
	if wrap != nil {
		ln = wrap(ln)
	}
	b.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b.reqs.Add(1)
			h(w, r)
		}),
		TLSConfig:    cfg,
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				b.conns.Add(1)
			}
		},
		ErrorLog: log.New(io.Discard, "", 0),
	}
	go b.srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { b.srv.Close() })
	return b
}

// TestE2EBackendTLS: waage speaks TLS to servers: verified with a custom CA (the server's IP
// address as the default name), pooled and reused, with a client certificate for servers that
// require one; a server whose certificate does not match is refused (502) unless server_name
// names it or insecure_skip_verify is set.
func TestE2EBackendTLS(t *testing.T) {
	e := newHTTPSEnv(t)
	good := startTLSBackend(t, &tls.Config{Certificates: []tls.Certificate{e.ca.leaf(t, "backend", "127.0.0.1")}}, nil, echoHandler)
	other := startTLSBackend(t, &tls.Config{Certificates: []tls.Certificate{e.ca.leaf(t, "other", "other.internal")}}, nil, echoHandler)
	mtls := startTLSBackend(t, &tls.Config{
		Certificates: []tls.Certificate{e.ca.leaf(t, "mtls", "mtls.internal")},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    e.ca.pool,
	}, nil, echoHandler)
	ccert, ckey := e.clientFiles(t, "waage")

	get := func(t *testing.T, backendExtra, addr string, n int) (int, string) {
		t.Helper()
		rt := startWaage(t, simpleConfig("", backendExtra, addr))
		c := &http.Client{Timeout: ioTimeout}
		var status int
		var body string
		for i := 0; i < n; i++ {
			resp, err := c.Get("http://" + feAddr(t, rt, "web") + "/")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			status, body = resp.StatusCode, string(b)
		}
		return status, body
	}

	t.Run("custom CA, reused", func(t *testing.T) {
		before := good.conns.Load()
		st, body := get(t, fmt.Sprintf("    tls: {ca: %q}\n", e.caFile), good.addr, 10)
		if st != 200 || echoField(body, "backend_tls") != "yes" {
			t.Errorf("status %d body %q", st, body)
		}
		if n := good.conns.Load() - before; n != 1 {
			t.Errorf("10 sequential requests used %d server connections, want 1 (pooled TLS)", n)
		}
	})
	t.Run("system roots refuse the test CA", func(t *testing.T) {
		if st, body := get(t, "    tls: {}\n", good.addr, 1); st != 502 {
			t.Errorf("status %d, want 502: %s", st, body)
		}
	})
	t.Run("wrong name", func(t *testing.T) {
		if st, body := get(t, fmt.Sprintf("    tls: {ca: %q}\n", e.caFile), other.addr, 1); st != 502 {
			t.Errorf("status %d, want 502: %s", st, body)
		}
		if n := other.reqs.Load(); n != 0 {
			t.Errorf("%d requests reached a server with the wrong certificate", n)
		}
	})
	t.Run("server_name", func(t *testing.T) {
		if st, body := get(t, fmt.Sprintf("    tls: {ca: %q, server_name: other.internal}\n", e.caFile), other.addr, 1); st != 200 {
			t.Errorf("status %d: %s", st, body)
		}
	})
	t.Run("insecure_skip_verify", func(t *testing.T) {
		if st, body := get(t, "    tls: {insecure_skip_verify: true}\n", other.addr, 1); st != 200 || echoField(body, "backend_tls") != "yes" {
			t.Errorf("status %d: %s", st, body)
		}
	})
	t.Run("http health check over TLS", func(t *testing.T) {
		// The check inherits the backend's tls: over plaintext it would get 400 from the TLS
		// server, mark it down at once (fall 1) and leave the backend empty (503).
		rt := startWaage(t, simpleConfig("", fmt.Sprintf("    tls: {ca: %q}\n    health_check: {type: http, path: /, interval: 50ms, timeout: 1s, rise: 1, fall: 1}\n", e.caFile), good.addr))
		before := good.reqs.Load()
		deadline := time.Now().Add(ioTimeout)
		for good.reqs.Load() < before+3 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if good.reqs.Load() < before+3 {
			t.Fatal("no health checks reached the TLS server")
		}
		resp, err := (&http.Client{Timeout: ioTimeout}).Get("http://" + feAddr(t, rt, "web") + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("status %d after health checks, want 200 (server healthy)", resp.StatusCode)
		}
	})
	t.Run("mTLS", func(t *testing.T) {
		st, body := get(t, fmt.Sprintf("    tls: {ca: %q, server_name: mtls.internal, cert: %q, key: %q}\n", e.caFile, ccert, ckey), mtls.addr, 2)
		if st != 200 || echoField(body, "backend_tls") != "client=waage" {
			t.Errorf("status %d: %s", st, body)
		}
	})
	t.Run("mTLS without a certificate", func(t *testing.T) {
		before := mtls.reqs.Load()
		if st, body := get(t, fmt.Sprintf("    tls: {ca: %q, server_name: mtls.internal}\n", e.caFile), mtls.addr, 1); st != 502 {
			t.Errorf("status %d, want 502: %s", st, body)
		}
		if mtls.reqs.Load() != before {
			t.Error("a request without a client certificate reached the server")
		}
	})
}

// proxyLineListener reads a PROXY v1 line from each accepted connection before handing it on
// (to the TLS server), and keeps the lines.
type proxyLineListener struct {
	net.Listener
	mu    sync.Mutex
	lines []string
}

func (l *proxyLineListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	// Byte by byte, so nothing of the TLS handshake after the line is consumed.
	var line []byte
	var b [1]byte
	c.SetReadDeadline(time.Now().Add(ioTimeout))
	for !bytes.HasSuffix(line, []byte("\r\n")) && len(line) < 108 {
		if _, err := c.Read(b[:]); err != nil {
			break
		}
		line = append(line, b[0])
	}
	c.SetReadDeadline(time.Time{})
	l.mu.Lock()
	l.lines = append(l.lines, string(line))
	l.mu.Unlock()
	return c, nil
}

// TestE2EBackendTLSProxyProtocol: with proxy_protocol and tls on a backend, the PROXY header
// goes first, in plaintext, and the TLS handshake after it.
func TestE2EBackendTLSProxyProtocol(t *testing.T) {
	e := newHTTPSEnv(t)
	pl := &proxyLineListener{}
	be := startTLSBackend(t, &tls.Config{Certificates: []tls.Certificate{e.ca.leaf(t, "backend", "127.0.0.1")}},
		func(ln net.Listener) net.Listener { pl.Listener = ln; return pl }, echoHandler)
	rt := startWaage(t, simpleConfig("", fmt.Sprintf("    proxy_protocol: v1\n    tls: {ca: %q}\n", e.caFile), be.addr))
	c := &http.Client{Timeout: ioTimeout}
	for i := 0; i < 2; i++ {
		resp, err := c.Get("http://" + feAddr(t, rt, "web") + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || echoField(string(b), "backend_tls") != "yes" {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
	}
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if len(pl.lines) == 0 || !strings.HasPrefix(pl.lines[0], "PROXY TCP4 127.0.0.1 127.0.0.1 ") {
		t.Errorf("PROXY lines before the TLS handshakes: %q", pl.lines)
	}
}

// prependConn sends pre together with the first write: a PROXY header in the same segment as the
// TLS ClientHello.
type prependConn struct {
	net.Conn
	pre []byte
}

func (c *prependConn) Write(p []byte) (int, error) {
	if c.pre != nil {
		b := append(c.pre, p...)
		c.pre = nil
		if _, err := c.Conn.Write(b); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// TestE2EHTTPSAfterProxyHeader: on a frontend that reads PROXY headers and terminates TLS, the
// header comes first and the handshake after it, even when both arrive in one segment; the
// client address of the header reaches the server.
func TestE2EHTTPSAfterProxyHeader(t *testing.T) {
	e := newHTTPSEnv(t)
	cert, key := e.ca.leafFiles(t, e.dir, "www", "www.example.test")
	be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "xff=%s\nproto=%s\n", r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"))
	})
	rt := startWaage(t, httpsFrontendConfig("", "    proxy_protocol: {trusted: [\"127.0.0.1\"]}\n", "", [][2]string{{cert, key}}, be.addr))
	raw, err := net.DialTimeout("tcp", feAddr(t, rt, "web"), ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(ioTimeout))
	pc := &prependConn{Conn: raw, pre: []byte("PROXY TCP4 198.51.100.7 127.0.0.1 40000 443\r\n")}
	c := tls.Client(pc, &tls.Config{ServerName: "www.example.test", RootCAs: e.ca.pool})
	if _, err := fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: www.example.test\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || echoField(string(b), "xff") != "198.51.100.7" || echoField(string(b), "proto") != "https" {
		t.Errorf("status %d: %s", resp.StatusCode, b)
	}
}

// TestE2EHTTPSIdleAndShutdown: an idle keep-alive TLS connection is closed at client_idle; at
// shutdown, idle TLS connections and connections still in their handshake are closed at once
// (Shutdown does not wait out client_header), while a request in flight finishes.
func TestE2EHTTPSIdleAndShutdown(t *testing.T) {
	e := newHTTPSEnv(t)
	cert, key := e.ca.leafFiles(t, e.dir, "www", "www.example.test")
	release := make(chan struct{})
	be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, "ok")
	})
	cfgTLS := &tls.Config{ServerName: "www.example.test", RootCAs: e.ca.pool}
	request := func(c *tls.Conn, path string) error {
		if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: www.example.test\r\n\r\n", path); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "ok" {
			return fmt.Errorf("status %d body %q", resp.StatusCode, b)
		}
		return nil
	}

	t.Run("idle timeout", func(t *testing.T) {
		rt := startWaage(t, httpsFrontendConfig("", "    timeouts: {client_idle: 1s}\n", "", [][2]string{{cert, key}}, be.addr))
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: ioTimeout}, "tcp", feAddr(t, rt, "web"), cfgTLS)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(ioTimeout))
		if err := request(c, "/"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		var b [1]byte
		_, err = c.Read(b[:])
		d := time.Since(start)
		if err == nil || isTimeoutErr(err) {
			t.Fatalf("read on the idle connection: %v, want it closed by waage", err)
		}
		if d < 800*time.Millisecond || d > 4*time.Second {
			t.Errorf("idle TLS connection closed after %v, want about 1s", d)
		}
	})

	t.Run("shutdown", func(t *testing.T) {
		rt := startWaage(t, httpsFrontendConfig("", "    timeouts: {client_header: 30s, client_idle: 60s}\n", "", [][2]string{{cert, key}}, be.addr))
		addr := feAddr(t, rt, "web")
		idle, err := tls.DialWithDialer(&net.Dialer{Timeout: ioTimeout}, "tcp", addr, cfgTLS)
		if err != nil {
			t.Fatal(err)
		}
		defer idle.Close()
		idle.SetDeadline(time.Now().Add(ioTimeout))
		if err := request(idle, "/"); err != nil {
			t.Fatal(err)
		}
		silent, err := net.DialTimeout("tcp", addr, ioTimeout) // never starts its handshake
		if err != nil {
			t.Fatal(err)
		}
		defer silent.Close()
		busy, err := tls.DialWithDialer(&net.Dialer{Timeout: ioTimeout}, "tcp", addr, cfgTLS)
		if err != nil {
			t.Fatal(err)
		}
		defer busy.Close()
		busy.SetDeadline(time.Now().Add(ioTimeout))
		busyErr := make(chan error, 1)
		go func() { busyErr <- request(busy, "/slow") }()
		// Let the slow request reach the server, and the silent connection reach its handshake.
		deadline := time.Now().Add(ioTimeout)
		for be.reqs.Load() < 2 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond)

		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
		defer cancel()
		sdErr := make(chan error, 1)
		start := time.Now()
		go func() { sdErr <- rt.Shutdown(ctx) }()
		// The idle and the silent connection are closed without waiting for anything.
		for name, c := range map[string]net.Conn{"idle": idle, "silent": silent} {
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			var b [1]byte
			if _, err := c.Read(b[:]); err == nil || isTimeoutErr(err) {
				t.Errorf("%s connection: read %v, want closed at shutdown", name, err)
			}
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("idle and handshaking connections closed %v after Shutdown began", d)
		}
		select {
		case err := <-sdErr:
			t.Fatalf("Shutdown returned (%v) while a request was in flight", err)
		default:
		}
		close(release)
		if err := <-busyErr; err != nil {
			t.Errorf("request in flight at shutdown: %v", err)
		}
		if err := <-sdErr; err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
}

func isTimeoutErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestE2EHTTPSWebSocket: a WebSocket over HTTPS (wss) is tunnelled through the TLS connection:
// the greeting and messages of several TLS records arrive intact both ways.
func TestE2EHTTPSWebSocket(t *testing.T) {
	e := newHTTPSEnv(t)
	cert, key := e.ca.leafFiles(t, e.dir, "www", "www.example.test")
	bs := startDemo(t, "wsdemo")
	rt := startWaage(t, httpsFrontendConfig("", "", "", [][2]string{{cert, key}}, demoAddrs(bs)...))
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "wss://www.example.test/ws", &websocket.DialOptions{
		HTTPClient: httpsClient(feAddr(t, rt, "web"), &tls.Config{RootCAs: e.ca.pool}, nil),
	})
	if err != nil {
		t.Fatalf("dial: %v (resp %v)", err, resp)
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	if typ, msg, err := c.Read(ctx); err != nil || typ != websocket.MessageText || string(msg) != "hello from wsdemo" {
		t.Fatalf("hello: %v %v %q", err, typ, msg)
	}
	big := strings.Repeat("wss", 100_000)
	for _, m := range []string{"one", big, "last"} {
		if err := c.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
			t.Fatalf("write: %v", err)
		}
		typ, got, err := c.Read(ctx)
		if err != nil || typ != websocket.MessageText || string(got) != m {
			t.Fatalf("echo of %d bytes: %v %v, got %d bytes", len(m), err, typ, len(got))
		}
	}
	c.Close(websocket.StatusNormalClosure, "")
}

// TestE2EBackendTLSReload: a reload that leaves a backend's tls as it was keeps its pooled TLS
// connections; one that changes it closes them, so the next request dials with the new settings.
func TestE2EBackendTLSReload(t *testing.T) {
	e := newHTTPSEnv(t)
	be := startTLSBackend(t, &tls.Config{Certificates: []tls.Certificate{e.ca.leaf(t, "backend", "127.0.0.1")}}, nil, echoHandler)
	cfg1 := simpleConfig("", fmt.Sprintf("    tls: {ca: %q}\n", e.caFile), be.addr)
	cfg2 := simpleConfig("", fmt.Sprintf("    tls: {ca: %q, server_name: \"127.0.0.1\"}\n", e.caFile), be.addr)
	rt := startWaage(t, cfg1)
	c := &http.Client{Timeout: ioTimeout}
	get := func(step string, wantConns int64) {
		t.Helper()
		for i := 0; i < 3; i++ {
			resp, err := c.Get("http://" + feAddr(t, rt, "web") + "/")
			if err != nil {
				t.Fatalf("%s: %v", step, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || echoField(string(b), "backend_tls") != "yes" {
				t.Fatalf("%s: status %d: %s", step, resp.StatusCode, b)
			}
		}
		if n := be.conns.Load(); n != wantConns {
			t.Errorf("%s: the server has had %d connections, want %d", step, n, wantConns)
		}
	}
	get("start", 1)
	apply(t, rt, cfg1)
	get("reload, same tls", 1)
	apply(t, rt, cfg2)
	get("reload, tls changed", 2)
}

// TestE2EHTTPSReload: a reload turns TLS on for a running frontend on the same listening socket,
// and a later one changes its certificate; new connections get the new settings.
func TestE2EHTTPSReload(t *testing.T) {
	e := newHTTPSEnv(t)
	cert1, key1 := e.ca.leafFiles(t, e.dir, "one", "www.example.test")
	cert2, key2 := e.ca.leafFiles(t, e.dir, "two", "www.example.test")
	be := startHTTPBackend(t, echoHandler)
	rt := startWaage(t, simpleConfig("", "", be.addr))
	addr := feAddr(t, rt, "web")
	rc := dialRaw(t, addr)
	if err := rc.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if resp, body, err := rc.readResp("GET"); err != nil || resp.StatusCode != 200 || echoField(string(body), "proto") != "http" {
		t.Fatalf("plaintext before the reload: %v %v %s", err, resp, body)
	}

	apply(t, rt, httpsFrontendConfig("", "", "", [][2]string{{cert1, key1}}, be.addr))
	if got := feAddr(t, rt, "web"); got != addr {
		t.Fatalf("the listener moved from %s to %s", addr, got)
	}
	cfg := &tls.Config{ServerName: "www.example.test", RootCAs: e.ca.pool}
	body, cs, err := tlsGet(addr, cfg)
	if err != nil || cs.PeerCertificates[0].Subject.CommonName != "one" || echoField(body, "proto") != "https" {
		t.Fatalf("after turning TLS on: %v, body %q", err, body)
	}
	// The connection from before the reload stays plaintext, and its requests say so.
	if err := rc.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if resp, body, err := rc.readResp("GET"); err != nil || resp.StatusCode != 200 || echoField(string(body), "proto") != "http" {
		t.Fatalf("old plaintext connection after the reload: %v %v %s", err, resp, body)
	}

	apply(t, rt, httpsFrontendConfig("", "", "", [][2]string{{cert2, key2}}, be.addr))
	if _, cs, err := tlsGet(addr, cfg); err != nil || cs.PeerCertificates[0].Subject.CommonName != "two" {
		t.Fatalf("after changing the certificate: %v", err)
	}
}

// TestBackendTLSRefusedForL4: a backend with tls that a tcp frontend uses is refused, since the
// TCP proxy would send its servers plaintext; the same backend behind an http frontend is fine.
func TestBackendTLSRefusedForL4(t *testing.T) {
	for _, tc := range []struct {
		name, mode string
		wantErr    bool
	}{
		{"tcp", "tcp", true},
		{"http", "http", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			use := "default_backend: b"
			if tc.mode == "tcp" {
				use = "backend: b"
			}
			yamlText := fmt.Sprintf(`frontends:
  - name: f
    mode: %s
    listen: ["127.0.0.1:0"]
    %s
backends:
  - name: b
    tls: {insecure_skip_verify: true}
    servers: [{name: s1, address: "127.0.0.1:1"}]
`, tc.mode, use)
			cfg, err := config.Parse("t.yaml", []byte(yamlText), nil)
			if err != nil {
				t.Fatal(err)
			}
			err = Check(cfg)
			if tc.wantErr && (err == nil || !strings.Contains(err.Error(), `backend "b": tls to the servers of a tcp or udp frontend ("f")`)) {
				t.Errorf("Check: %v, want the tls refused", err)
			}
			if !tc.wantErr && err != nil {
				t.Errorf("Check: %v", err)
			}
		})
	}
}
