package runtime

// End-to-end tests of the L4 features with real peers: SNI passthrough with real TLS clients and
// servers (Go's crypto/tls and curl), TLS offload on a tcp frontend, PROXY protocol sent to nginx
// and accepted from HAProxy. Every address is on loopback; other loopback addresses (127.0.0.2,
// 127.0.0.3) stand in for distinct clients so that a forwarded address cannot be confused with
// waage's own.

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
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
	"sync/atomic"
	"testing"
	"time"

	"github.com/waage/waage/internal/l4"
	"github.com/waage/waage/internal/l7"
)

// testCA is a certificate authority made up for one test: clients trust only it, so a client
// that verifies a server's certificate proves it talks to that server and nobody in between.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
	pem  []byte
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "waage test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// leafPEM issues a server certificate with common name cn for names (DNS names or IP addresses)
// and returns it and its key as PEM.
func (ca *testCA) leafPEM(t testing.TB, cn string, names ...string) (certPEM, keyPEM []byte) {
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
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
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

func (ca *testCA) leaf(t testing.TB, cn string, names ...string) tls.Certificate {
	t.Helper()
	c, k := ca.leafPEM(t, cn, names...)
	cert, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// leafFiles writes a server certificate and its key to dir and returns the file names.
func (ca *testCA) leafFiles(t testing.TB, dir, cn string, names ...string) (certFile, keyFile string) {
	t.Helper()
	c, k := ca.leafPEM(t, cn, names...)
	certFile, keyFile = filepath.Join(dir, cn+".crt"), filepath.Join(dir, cn+".key")
	if err := os.WriteFile(certFile, c, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, k, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// tlsNameServer is an HTTPS server (net/http over TLS, HTTP/1.1 only) answering every request
// with "NAME sni=SNI ekm=HEX\n": its name, the server name the client sent, and keying material
// exported from the TLS session, which equals the client's only when both ends share one TLS
// session (nothing terminated TLS in between).
type tlsNameServer struct {
	name  string
	addr  string
	conns atomic.Int64
}

func startTLSNameServer(t testing.TB, ca *testCA, name string, certNames ...string) *tlsNameServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &tlsNameServer{name: name, addr: ln.Addr().String()}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ekm, err := r.TLS.ExportKeyingMaterial("waage-e2e", nil, 16)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			fmt.Fprintf(w, "%s sni=%s ekm=%s\n", name, r.TLS.ServerName, hex.EncodeToString(ekm))
		}),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{ca.leaf(t, "server-"+name, certNames...)}},
		// No HTTP/2: the server offers only http/1.1 in ALPN.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				s.conns.Add(1)
			}
		},
		ErrorLog:          log.New(io.Discard, "", 0),
		ReadHeaderTimeout: ioTimeout,
	}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return s
}

// tlsGet dials addr with TLS (cfg verifies the server), sends GET / and returns the body and the
// client's view of the TLS session.
func tlsGet(addr string, cfg *tls.Config) (body string, cs tls.ConnectionState, err error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: ioTimeout}, "tcp", addr, cfg)
	if err != nil {
		return "", cs, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(ioTimeout))
	cs = c.ConnectionState()
	host := cfg.ServerName
	if host == "" {
		host = "test"
	}
	if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host); err != nil {
		return "", cs, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", cs, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return string(b), cs, fmt.Errorf("status %d", resp.StatusCode)
	}
	return string(b), cs, err
}

// tcpStatsOf returns a tcp frontend's counters.
func tcpStatsOf(t testing.TB, rt *Runtime, name string) *l4.TCPStats {
	t.Helper()
	rt.mu.Lock()
	defer rt.mu.Unlock()
	f := rt.frontends[name]
	if f == nil || f.tcp == nil {
		t.Fatalf("no tcp frontend %q", name)
	}
	return &f.tcp.Stats
}

// httpStatsOf returns an http frontend's counters.
func httpStatsOf(t testing.TB, rt *Runtime, name string) *l7.Stats {
	t.Helper()
	rt.mu.Lock()
	defer rt.mu.Unlock()
	f := rt.frontends[name]
	if f == nil || f.http == nil {
		t.Fatalf("no http frontend %q", name)
	}
	return &f.http.Stats
}

// TestE2ESNIPassthrough routes real TLS connections on the ClientHello's SNI and ALPN without
// terminating them: each client verifies the chosen server's certificate against a CA waage
// has never seen, and the TLS keying material both ends export matches.
func TestE2ESNIPassthrough(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	a := startTLSNameServer(t, ca, "a", "a.example.com")
	b := startTLSNameServer(t, ca, "b", "*.example.org", "x.example.net")
	c := startTLSNameServer(t, ca, "c", "deep.www.example.org", "x.example.net", "other.example.com", "127.0.0.1")
	cfg := fmt.Sprintf(`frontends:
  - name: sni
    mode: tcp
    listen: ["127.0.0.1:0"]
    timeouts: {client_header: 500ms}
    routes:
      - {match: {sni: a.example.com}, backend: a}
      - {match: {sni: "*.example.org"}, backend: b}
      - {match: {sni: x.example.net, alpn: [h2]}, backend: b}
    default_backend: c
backends:
  - name: a
    servers: [{name: s1, address: %q}]
  - name: b
    servers: [{name: s1, address: %q}]
  - name: c
    servers: [{name: s1, address: %q}]
`, a.addr, b.addr, c.addr)
	rt := startWaage(t, cfg)
	addr := feAddr(t, rt, "sni")
	st := tcpStatsOf(t, rt, "sni")

	tests := []struct {
		name      string
		sni       string // "": connect by IP, no SNI sent
		alpn      []string
		want      string
		wantSNI   string // as the server saw it
		wantProto string
	}{
		{name: "exact name", sni: "a.example.com", want: "a", wantSNI: "a.example.com"},
		// The server gets the ClientHello as the client sent it.
		{name: "exact name in upper case", sni: "A.Example.COM", want: "a", wantSNI: "A.Example.COM"},
		{name: "wildcard covers one label", sni: "www.example.org", want: "b", wantSNI: "www.example.org"},
		{name: "wildcard does not cover two labels", sni: "deep.www.example.org", want: "c", wantSNI: "deep.www.example.org"},
		{name: "sni and offered alpn", sni: "x.example.net", alpn: []string{"h2", "http/1.1"}, want: "b", wantSNI: "x.example.net", wantProto: "http/1.1"},
		{name: "sni without the alpn", sni: "x.example.net", alpn: []string{"http/1.1"}, want: "c", wantSNI: "x.example.net", wantProto: "http/1.1"},
		{name: "sni and no alpn extension", sni: "x.example.net", want: "c", wantSNI: "x.example.net"},
		{name: "unknown name", sni: "other.example.com", want: "c", wantSNI: "other.example.com"},
		{name: "no sni", sni: "", want: "c", wantSNI: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := 0; i < 3; i++ {
				body, cs, err := tlsGet(addr, &tls.Config{ServerName: tt.sni, RootCAs: ca.pool, NextProtos: tt.alpn})
				if err != nil {
					t.Fatalf("connection %d: %v (body %q)", i, err, body)
				}
				if len(cs.VerifiedChains) == 0 || cs.PeerCertificates[0].Subject.CommonName != "server-"+tt.want {
					t.Fatalf("connection %d: certificate of %q, want server-%s", i, cs.PeerCertificates[0].Subject.CommonName, tt.want)
				}
				if cs.NegotiatedProtocol != tt.wantProto {
					t.Errorf("ALPN negotiated %q, want %q", cs.NegotiatedProtocol, tt.wantProto)
				}
				ekm, err := cs.ExportKeyingMaterial("waage-e2e", nil, 16)
				if err != nil {
					t.Fatal(err)
				}
				want := fmt.Sprintf("%s sni=%s ekm=%s\n", tt.want, tt.wantSNI, hex.EncodeToString(ekm))
				if body != want {
					t.Fatalf("connection %d: got %q, want %q", i, body, want)
				}
			}
		})
	}

	t.Run("curl", func(t *testing.T) {
		curl := peerTool(t, "curl", "curl")
		caFile := filepath.Join(t.TempDir(), "ca.pem")
		if err := os.WriteFile(caFile, ca.pem, 0o644); err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(addr)
		for _, host := range []string{"a.example.com", "www.example.org"} {
			cmd := exec.Command(curl, "-sS", "--max-time", "10", "--cacert", caFile,
				"--resolve", host+":"+port+":127.0.0.1", "https://"+host+":"+port+"/")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("curl %s: %v\n%s", host, err, stderr.String())
			}
			want := map[string]string{"a.example.com": "a", "www.example.org": "b"}[host]
			if !strings.HasPrefix(string(out), want+" sni="+host+" ") {
				t.Errorf("curl https://%s: %q, want server %s", host, out, want)
			}
		}
	})

	t.Run("not TLS", func(t *testing.T) {
		for _, first := range []string{"GET / HTTP/1.1\r\n\r\n", "SSH-2.0-OpenSSH_9.2\r\n", "\x00\x00\x00\x00\x00\x00\x00\x00"} {
			before := st.NotTLS.Load()
			served := a.conns.Load() + b.conns.Load() + c.conns.Load()
			rc := dialRaw(t, addr)
			rc.write(first)
			start := time.Now()
			closed, got := rc.closedWithin(3 * time.Second)
			if !closed || len(got) > 0 {
				t.Fatalf("%q: closed=%v, got %q; want a close without any byte", first, closed, got)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("%q: closed after %s, want at once", first, d)
			}
			if n := st.NotTLS.Load(); n != before+1 {
				t.Errorf("%q: NotTLS went from %d to %d, want +1", first, before, n)
			}
			if n := a.conns.Load() + b.conns.Load() + c.conns.Load(); n != served {
				t.Errorf("%q: a server got a connection", first)
			}
		}
	})

	t.Run("silent client", func(t *testing.T) {
		rc := dialRaw(t, addr)
		start := time.Now()
		if closed, got := rc.closedWithin(3 * time.Second); !closed || len(got) > 0 {
			t.Fatalf("a client that sends nothing: closed=%v, got %q", closed, got)
		}
		if d := time.Since(start); d < 400*time.Millisecond || d > 2*time.Second {
			t.Errorf("closed after %s, want client_header (500ms)", d)
		}
	})
}

// tlsEchoSession is echoSession over TLS: greeting, one echoed line, then a TLS half-close
// (close_notify) after which the goodbye must still arrive. It returns the greeting's name and
// the TLS session.
func tlsEchoSession(t testing.TB, addr string, cfg *tls.Config) (string, tls.ConnectionState) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: ioTimeout}, "tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return echoExchange(t, c, "over tls", c.CloseWrite), c.ConnectionState()
}

// TestE2ETLSOffload terminates TLS on a tcp frontend with a certificate per name in front of a
// plaintext server, and refuses TLS versions below the configured minimum.
func TestE2ETLSOffload(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	dir := t.TempDir()
	certA, keyA := ca.leafFiles(t, dir, "offload-a", "a.example.com")
	certB, keyB := ca.leafFiles(t, dir, "offload-b", "b.example.com", "*.b.example.com")
	echo := startTCPEcho(t, "plain")
	tlsBlock := func(min string) string {
		s := fmt.Sprintf("    tls:\n      certificates:\n        - {cert: %q, key: %q}\n        - {cert: %q, key: %q}\n", certA, keyA, certB, keyB)
		if min != "" {
			s += "      min_version: \"" + min + "\"\n"
		}
		return s
	}
	rt12 := startWaage(t, tcpConfig(tlsBlock(""), "", echo.addr()))
	rt13 := startWaage(t, tcpConfig(tlsBlock("1.3"), "", echo.addr()))
	addr12, addr13 := feAddr(t, rt12, "tcp"), feAddr(t, rt13, "tcp")

	t.Run("certificate by name", func(t *testing.T) {
		tests := []struct {
			name, sni string
			wantCN    string
		}{
			{"first certificate's name", "a.example.com", "offload-a"},
			{"second certificate's name", "b.example.com", "offload-b"},
			{"second certificate's wildcard", "mail.b.example.com", "offload-b"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				for _, addr := range []string{addr12, addr13} {
					name, cs := tlsEchoSession(t, addr, &tls.Config{ServerName: tt.sni, RootCAs: ca.pool})
					if name != "plain" {
						t.Errorf("greeting from %q", name)
					}
					if cn := cs.PeerCertificates[0].Subject.CommonName; cn != tt.wantCN {
						t.Errorf("certificate %s (%v), want %s", cn, cs.PeerCertificates[0].DNSNames, tt.wantCN)
					}
				}
			})
		}
	})

	t.Run("no sni gets the first certificate", func(t *testing.T) {
		_, cs := tlsEchoSession(t, addr12, &tls.Config{InsecureSkipVerify: true})
		if got := cs.PeerCertificates[0].DNSNames; len(got) != 1 || got[0] != "a.example.com" {
			t.Errorf("certificate for %v, want [a.example.com]", got)
		}
	})

	// Terminating, routes match the SNI and the negotiated ALPN protocol.
	t.Run("routes after termination", func(t *testing.T) {
		e1, e2 := startTCPEcho(t, "e1"), startTCPEcho(t, "e2")
		rt := startWaage(t, fmt.Sprintf(`frontends:
  - name: off
    mode: tcp
    listen: ["127.0.0.1:0"]
%s    routes:
      - {match: {sni: a.example.com}, backend: e1}
      - {match: {alpn: [h2]}, backend: e2}
    default_backend: plain
backends:
  - name: e1
    servers: [{name: s1, address: %q}]
  - name: e2
    servers: [{name: s1, address: %q}]
  - name: plain
    servers: [{name: s1, address: %q}]
`, tlsBlock(""), e1.addr(), e2.addr(), echo.addr()))
		tests := []struct {
			sni       string
			alpn      []string
			want      string
			wantProto string
		}{
			{"a.example.com", nil, "e1", ""},
			{"A.Example.COM", nil, "e1", ""}, // server names are case-insensitive, as when peeking
			{"b.example.com", []string{"h2"}, "e2", "h2"},
			{"b.example.com", []string{"h2", "http/1.1"}, "e2", "h2"},
			{"b.example.com", []string{"http/1.1"}, "plain", ""},
			{"b.example.com", []string{"acme-tls/1"}, "plain", ""}, // no route's protocol: no ALPN, no handshake failure
			{"b.example.com", nil, "plain", ""},
		}
		for _, tt := range tests {
			name, cs := tlsEchoSession(t, feAddr(t, rt, "off"), &tls.Config{ServerName: tt.sni, RootCAs: ca.pool, NextProtos: tt.alpn})
			if name != tt.want || cs.NegotiatedProtocol != tt.wantProto {
				t.Errorf("sni %s, alpn %v: server %s, negotiated %q; want %s, %q", tt.sni, tt.alpn, name, cs.NegotiatedProtocol, tt.want, tt.wantProto)
			}
		}
	})

	t.Run("versions", func(t *testing.T) {
		tests := []struct {
			name     string
			addr     string
			min, max uint16
			want     uint16 // 0: refused
		}{
			{"1.0 refused", addr12, tls.VersionTLS10, tls.VersionTLS10, 0},
			{"1.1 refused", addr12, tls.VersionTLS11, tls.VersionTLS11, 0},
			{"up to 1.1 refused", addr12, tls.VersionTLS10, tls.VersionTLS11, 0},
			{"1.2 accepted", addr12, tls.VersionTLS12, tls.VersionTLS12, tls.VersionTLS12},
			{"1.3 preferred", addr12, 0, 0, tls.VersionTLS13},
			{"min 1.3 refuses 1.2", addr13, tls.VersionTLS10, tls.VersionTLS12, 0},
			{"min 1.3 accepts 1.3", addr13, tls.VersionTLS13, tls.VersionTLS13, tls.VersionTLS13},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				cfg := &tls.Config{ServerName: "a.example.com", RootCAs: ca.pool, MinVersion: tt.min, MaxVersion: tt.max}
				if tt.want != 0 {
					_, cs := tlsEchoSession(t, tt.addr, cfg)
					if cs.Version != tt.want {
						t.Errorf("negotiated %s, want %s", tls.VersionName(cs.Version), tls.VersionName(tt.want))
					}
					return
				}
				rt := rt12
				if tt.addr == addr13 {
					rt = rt13
				}
				st := tcpStatsOf(t, rt, "tcp")
				failed := st.TLSFailed.Load()
				served := echo.conns.Load()
				c, err := tls.DialWithDialer(&net.Dialer{Timeout: ioTimeout}, "tcp", tt.addr, cfg)
				if err == nil {
					c.Close()
					t.Fatalf("handshake with %s..%s succeeded (%s)", tls.VersionName(tt.min), tls.VersionName(tt.max), tls.VersionName(c.ConnectionState().Version))
				}
				waitFor(t, 2*time.Second, "TLSFailed counted", func() bool { return st.TLSFailed.Load() == failed+1 })
				if echo.conns.Load() != served {
					t.Error("the refused client reached the server")
				}
			})
		}
	})
}

// startNginxProxyProtocol runs nginx on a port that requires a PROXY protocol header and answers
// "$proxy_protocol_addr $proxy_protocol_port $remote_addr\n".
func startNginxProxyProtocol(t *testing.T) string {
	t.Helper()
	nginx := peerTool(t, "nginx", "nginx-light")
	dir := t.TempDir()
	addr := freePort(t)
	conf := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  server {
    listen %[2]s proxy_protocol;
    default_type text/plain;
    location / { return 200 "$proxy_protocol_addr $proxy_protocol_port $remote_addr\n"; }
  }
}
`, dir, addr)
	cf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	startProcess(t, nginx, "-c", cf, "-p", dir, "-e", filepath.Join(dir, "error.log"))
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx error.log:\n%s", b)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		rc, err := dialRawE(addr)
		if err == nil {
			resp, body, err := rc.do("PROXY TCP4 192.0.2.1 127.0.0.1 1234 80\r\n" + get("/", "ready"))
			rc.c.Close()
			if err == nil && resp.StatusCode == 200 && string(body) == "192.0.2.1 1234 127.0.0.1\n" {
				return addr
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx on %s did not come up", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dialFrom connects to addr from the loopback address src.
func dialFrom(t testing.TB, src, addr string) *rawConn {
	t.Helper()
	d := net.Dialer{Timeout: ioTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(ioTimeout))
	return &rawConn{c: c, br: bufio.NewReader(c)}
}

func localPort(rc *rawConn) int { return rc.c.LocalAddr().(*net.TCPAddr).Port }

// TestInteropProxyProtocolToNginx sends PROXY headers (v1 and v2, from tcp and http frontends)
// to nginx, which reports the client address and port they carry, and checks a server that
// demands the header with health checks that send it.
func TestInteropProxyProtocolToNginx(t *testing.T) {
	t.Parallel()
	ngx := startNginxProxyProtocol(t)
	ca := newTestCA(t)
	certFile, keyFile := ca.leafFiles(t, t.TempDir(), "offload", "pp.example.com")
	cfg := fmt.Sprintf(`frontends:
  - name: tls
    mode: tcp
    listen: ["127.0.0.1:0"]
    backend: ngx2
    tls: {certificates: [{cert: %[2]q, key: %[3]q}]}
  - name: pp1
    mode: tcp
    listen: ["127.0.0.1:0"]
    backend: ngx1
  - name: pp2
    mode: tcp
    listen: ["127.0.0.1:0"]
    backend: ngx2
  - name: web
    listen: ["127.0.0.1:0"]
    default_backend: ngxh
backends:
  - name: ngx1
    proxy_protocol: v1
    servers: [{name: s1, address: %[1]q}]
  - name: ngx2
    proxy_protocol: v2
    servers: [{name: s1, address: %[1]q}]
  - name: ngxh
    proxy_protocol: v2
    servers: [{name: s1, address: %[1]q}]
  - name: hc_inherit
    proxy_protocol: v1
    health_check: {type: tcp, interval: 100ms, timeout: 1s, rise: 1, fall: 1, initial: down, send: "GET / HTTP/1.0\r\n\r\n", expect: " 200 "}
    servers: [{name: s1, address: %[1]q}]
  - name: hc_none
    health_check: {type: tcp, interval: 100ms, timeout: 1s, rise: 1, fall: 1, initial: down, send: "GET / HTTP/1.0\r\n\r\n", expect: " 200 "}
    servers: [{name: s1, address: %[1]q}]
  - name: hc_own
    health_check: {type: tcp, interval: 100ms, timeout: 1s, rise: 1, fall: 1, initial: down, send: "GET / HTTP/1.0\r\n\r\n", expect: " 200 ", proxy_protocol: v2}
    servers: [{name: s1, address: %[1]q}]
  - name: hc_http
    proxy_protocol: v2
    health_check: {type: http, interval: 100ms, timeout: 1s, rise: 1, fall: 1, initial: down, path: /, expect_body: "127.0.0.1"}
    servers: [{name: s1, address: %[1]q}]
`, ngx, certFile, keyFile)
	rt := startWaage(t, cfg)

	t.Run("nginx refuses a request without a header", func(t *testing.T) {
		rc := dialRaw(t, ngx)
		rc.write(get("/", "direct"))
		if closed, got := rc.closedWithin(3 * time.Second); !closed || bytes.Contains(got, []byte(" 200 ")) {
			t.Fatalf("nginx answered without a PROXY header: closed=%v %q", closed, got)
		}
	})

	tests := []struct {
		name     string
		frontend string
	}{
		{"tcp frontend, v1", "pp1"},
		{"tcp frontend, v2", "pp2"},
		{"http frontend, v2", "web"},
		{"tls offload, v2", "tls"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := feAddr(t, rt, tt.frontend)
			// Two clients, interleaved on keep-alive connections: each request names its own
			// client (the http frontend must not share a server connection between them).
			c1, c2 := dialFrom(t, "127.0.0.3", addr), dialFrom(t, "127.0.0.3", addr)
			if tt.frontend == "tls" {
				for _, rc := range []*rawConn{c1, c2} {
					tc := tls.Client(rc.c, &tls.Config{ServerName: "pp.example.com", RootCAs: ca.pool})
					if err := tc.Handshake(); err != nil {
						t.Fatal(err)
					}
					rc.c, rc.br = tc, bufio.NewReader(tc)
				}
			}
			for i, rc := range []*rawConn{c1, c2, c1, c2} {
				resp, body := rc.mustDo(t, get("/", "pp.test"))
				want := fmt.Sprintf("127.0.0.3 %d 127.0.0.1\n", localPort(rc))
				if resp.StatusCode != 200 || string(body) != want {
					t.Fatalf("request %d: %d %q, want %q", i, resp.StatusCode, body, want)
				}
			}
		})
	}

	t.Run("health checks", func(t *testing.T) {
		for _, b := range []string{"hc_inherit", "hc_own", "hc_http"} {
			waitFor(t, 5*time.Second, b+" UP", func() bool { return rt.Server(b, "s1").Healthy() })
		}
		// Meanwhile hc_none had as many checks, each without a header: nginx refused them all.
		time.Sleep(300 * time.Millisecond)
		if rt.Server("hc_none", "s1").Healthy() {
			t.Error("a check without the PROXY header passed against a server that requires it")
		}
		// And the ones with the header stay up.
		for _, b := range []string{"hc_inherit", "hc_own", "hc_http"} {
			if !rt.Server(b, "s1").Healthy() {
				t.Errorf("%s went DOWN", b)
			}
		}
	})
}

// TestInteropProxyProtocolFromHAProxy puts HAProxy (mode tcp, send-proxy and send-proxy-v2) in
// front of waage frontends that accept PROXY headers from it: the client address HAProxy saw
// reaches the server in X-Forwarded-For, and through a tcp frontend in a second PROXY header to
// nginx.
func TestInteropProxyProtocolFromHAProxy(t *testing.T) {
	t.Parallel()
	haproxy := peerTool(t, "haproxy", "haproxy")
	ngx := startNginxProxyProtocol(t)
	bs := startDemo(t, "demo")
	rt := startWaage(t, fmt.Sprintf(`frontends:
  - name: web
    listen: ["127.0.0.1:0"]
    default_backend: demo
    proxy_protocol: {trusted: ["127.0.0.1/32"]}
  - name: chain
    mode: tcp
    listen: ["127.0.0.1:0"]
    backend: ngx
    proxy_protocol: {trusted: ["127.0.0.1/32"]}
backends:
  - name: demo
    servers: [{name: s1, address: %q}]
  - name: ngx
    proxy_protocol: v1
    servers: [{name: s1, address: %q}]
`, bs[0].Addr, ngx))
	fronts := map[string]string{"v1": freePort(t), "v2": freePort(t), "chain": freePort(t)}
	cfg := fmt.Sprintf(`global
  maxconn 100
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend f1
  bind %s
  default_backend b1
backend b1
  server w %s send-proxy
frontend f2
  bind %s
  default_backend b2
backend b2
  server w %s send-proxy-v2
frontend f3
  bind %s
  default_backend b3
backend b3
  server w %s send-proxy-v2
`, fronts["v1"], feAddr(t, rt, "web"), fronts["v2"], feAddr(t, rt, "web"), fronts["chain"], feAddr(t, rt, "chain"))
	cf := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(cf, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	startProcess(t, haproxy, "-f", cf, "-db")
	for _, f := range fronts {
		waitHTTP(t, "http://"+f+"/")
	}

	for _, v := range []string{"v1", "v2"} {
		t.Run("http frontend, send-proxy "+v, func(t *testing.T) {
			rc := dialFrom(t, "127.0.0.2", fronts[v])
			// One PROXY header for the connection, several requests on it.
			for i := 0; i < 3; i++ {
				resp, body := rc.mustDo(t, get("/", "pp.test"))
				info := demoInfo(body)
				if resp.StatusCode != 200 || info["x-forwarded-for"] != "127.0.0.2" {
					t.Fatalf("request %d: %d, X-Forwarded-For %q, want 127.0.0.2\n%s", i, resp.StatusCode, info["x-forwarded-for"], body)
				}
			}
		})
	}

	t.Run("tcp frontend between HAProxy and nginx", func(t *testing.T) {
		for i := 0; i < 3; i++ {
			rc := dialFrom(t, "127.0.0.2", fronts["chain"])
			resp, body := rc.mustDo(t, get("/", "pp.test"))
			want := fmt.Sprintf("127.0.0.2 %d 127.0.0.1\n", localPort(rc))
			if resp.StatusCode != 200 || string(body) != want {
				t.Fatalf("connection %d: %d %q, want %q", i, resp.StatusCode, body, want)
			}
		}
	})
}

// TestE2EProxyProtocolTrustedOnly: frontends that read PROXY headers close connections from
// untrusted sources at once, and trusted ones that do not start with a header.
func TestE2EProxyProtocolTrustedOnly(t *testing.T) {
	t.Parallel()
	bs := startDemo(t, "demo")
	echo := startTCPEcho(t, "e")
	conf := func(trusted string) string {
		return fmt.Sprintf(`frontends:
  - name: web
    listen: ["127.0.0.1:0"]
    default_backend: demo
    proxy_protocol: {trusted: [%[1]q]}
  - name: tcp
    mode: tcp
    listen: ["127.0.0.1:0"]
    backend: echo
    proxy_protocol: {trusted: [%[1]q]}
backends:
  - name: demo
    servers: [{name: s1, address: %[2]q}]
  - name: echo
    servers: [{name: s1, address: %[3]q}]
`, trusted, bs[0].Addr, echo.addr())
	}
	trusted := startWaage(t, conf("127.0.0.1/32"))
	untrusted := startWaage(t, conf("127.0.0.9/32"))
	rejected := func(rt *Runtime, fe string) func() uint64 {
		if fe == "tcp" {
			st := tcpStatsOf(t, rt, fe)
			return st.Rejected.Load
		}
		st := httpStatsOf(t, rt, fe)
		return st.ProxyRejected.Load
	}

	t.Run("trusted source with headers", func(t *testing.T) {
		for _, v1 := range []bool{true, false} {
			hdr := v2Header(t, "198.51.100.4", 40000)
			if v1 {
				hdr = "PROXY TCP4 198.51.100.4 127.0.0.1 40000 80\r\n"
			}
			rc := dialRaw(t, feAddr(t, trusted, "web"))
			resp, body := rc.mustDo(t, hdr+get("/", "pp.test"))
			if got := demoInfo(body)["x-forwarded-for"]; resp.StatusCode != 200 || got != "198.51.100.4" {
				t.Errorf("v1=%v: %d, X-Forwarded-For %q", v1, resp.StatusCode, got)
			}
			// The header and the first bytes in one segment: the bytes after the header reach
			// the server.
			rc = dialRaw(t, feAddr(t, trusted, "tcp"))
			rc.write(hdr + "first\n")
			for _, want := range []string{"e\n", "e first\n"} {
				if g, err := rc.br.ReadString('\n'); err != nil || g != want {
					t.Errorf("v1=%v: tcp got %q %v, want %q", v1, g, err, want)
				}
			}
		}
	})

	t.Run("LOCAL header keeps the connection's address", func(t *testing.T) {
		// What HAProxy's health checks send with send-proxy-v2: v2, command LOCAL, no address.
		local := "\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"
		for _, v := range []string{local, "PROXY UNKNOWN\r\n"} {
			rc := dialRaw(t, feAddr(t, trusted, "web"))
			resp, body := rc.mustDo(t, v+get("/", "pp.test"))
			if got := demoInfo(body)["x-forwarded-for"]; resp.StatusCode != 200 || got != "127.0.0.1" {
				t.Errorf("%q: %d, X-Forwarded-For %q, want 127.0.0.1", v, resp.StatusCode, got)
			}
		}
	})

	tests := []struct {
		name string
		rt   *Runtime
		fe   string
		send string // written right after connecting
	}{
		{"http: trusted source without a header", trusted, "web", get("/", "pp.test")},
		{"tcp: trusted source without a header", trusted, "tcp", "hello\n"},
		{"http: untrusted source, silent", untrusted, "web", ""},
		{"tcp: untrusted source, silent", untrusted, "tcp", ""},
		{"http: untrusted source with a valid header", untrusted, "web", "PROXY TCP4 198.51.100.4 127.0.0.1 40000 80\r\n" + get("/", "pp.test")},
		{"tcp: untrusted source with a valid header", untrusted, "tcp", "PROXY TCP4 198.51.100.4 127.0.0.1 40000 80\r\nhello\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			count := rejected(tt.rt, tt.fe)
			before := count()
			served := echo.conns.Load()
			rc := dialRaw(t, feAddr(t, tt.rt, tt.fe))
			start := time.Now()
			if tt.send != "" {
				rc.write(tt.send) // may fail once the connection is closed
			}
			closed, got := rc.closedWithin(3 * time.Second)
			if !closed || len(got) > 0 {
				t.Fatalf("closed=%v, got %q; want a close without any byte", closed, got)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("closed after %s, want at once", d)
			}
			waitFor(t, 2*time.Second, "the rejection counted", func() bool { return count() == before+1 })
			if echo.conns.Load() != served {
				t.Error("the connection reached the server")
			}
		})
	}
}

// v2Header is a PROXY v2 header for a TCP4 client src:port to 127.0.0.1:80.
func v2Header(t testing.TB, src string, port int) string {
	t.Helper()
	ip := net.ParseIP(src).To4()
	if ip == nil {
		t.Fatalf("not IPv4: %s", src)
	}
	b := []byte("\r\n\r\n\x00\r\nQUIT\n")
	b = append(b, 0x21, 0x11, 0, 12) // v2 PROXY, TCP over IPv4, 12 address bytes
	b = append(b, ip...)
	b = append(b, 127, 0, 0, 1)
	b = append(b, byte(port>>8), byte(port), 0, 80)
	return string(b)
}

// headerConn writes hdr in front of the first Write, so a PROXY header and a TLS ClientHello
// arrive in one segment, as from a proxy that forwards them together.
type headerConn struct {
	net.Conn
	hdr []byte
}

func (h *headerConn) Write(p []byte) (int, error) {
	if h.hdr != nil {
		b := append(h.hdr, p...)
		h.hdr = nil
		if _, err := h.Conn.Write(b); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return h.Conn.Write(p)
}

// TestE2EProxyProtocolWithTLS: a tcp frontend that reads PROXY headers and then peeks at or
// terminates TLS, with the header and the ClientHello in one segment (v1, whose reader reads
// past the header) or the header alone first; the address from the header drives source routes.
func TestE2EProxyProtocolWithTLS(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	a := startTLSNameServer(t, ca, "a", "a.example.com")
	b := startTLSNameServer(t, ca, "b", "a.example.com")
	e1, e2 := startTCPEcho(t, "e1"), startTCPEcho(t, "e2")
	certFile, keyFile := ca.leafFiles(t, t.TempDir(), "offload", "a.example.com")
	rt := startWaage(t, fmt.Sprintf(`frontends:
  - name: peek
    mode: tcp
    listen: ["127.0.0.1:0"]
    proxy_protocol: {trusted: ["127.0.0.1"]}
    routes:
      - {match: {sni: a.example.com, source: ["198.51.100.0/24"]}, backend: b}
    default_backend: a
  - name: offload
    mode: tcp
    listen: ["127.0.0.1:0"]
    proxy_protocol: {trusted: ["127.0.0.1"]}
    tls: {certificates: [{cert: %q, key: %q}]}
    routes:
      - {match: {source: ["198.51.100.0/24"]}, backend: e2}
    default_backend: e1
backends:
  - name: a
    servers: [{name: s1, address: %q}]
  - name: b
    servers: [{name: s1, address: %q}]
  - name: e1
    servers: [{name: s1, address: %q}]
  - name: e2
    servers: [{name: s1, address: %q}]
`, certFile, keyFile, a.addr, b.addr, e1.addr(), e2.addr()))
	tests := []struct {
		name     string
		frontend string
		src      string
		v1       bool
		together bool // header and ClientHello in one write
		want     string
	}{
		{"peek, v1 with the hello", "peek", "198.51.100.7", true, true, "b"},
		{"peek, v1 alone", "peek", "198.51.100.7", true, false, "b"},
		{"peek, v2 with the hello", "peek", "198.51.100.7", false, true, "b"},
		{"peek, v1 other source", "peek", "203.0.113.1", true, true, "a"},
		{"peek, v2 other source", "peek", "203.0.113.1", false, false, "a"},
		{"offload, v1 with the hello", "offload", "198.51.100.7", true, true, "e2"},
		{"offload, v1 alone", "offload", "198.51.100.7", true, false, "e2"},
		{"offload, v2 with the hello", "offload", "198.51.100.7", false, true, "e2"},
		{"offload, v1 other source", "offload", "203.0.113.1", true, true, "e1"},
		{"offload, v2 other source", "offload", "203.0.113.1", false, false, "e1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := v2Header(t, tt.src, 40000)
			if tt.v1 {
				hdr = "PROXY TCP4 " + tt.src + " 127.0.0.1 40000 443\r\n"
			}
			rc := dialRaw(t, feAddr(t, rt, tt.frontend))
			var conn net.Conn = rc.c
			if tt.together {
				conn = &headerConn{Conn: rc.c, hdr: []byte(hdr)}
			} else if err := rc.write(hdr); err != nil {
				t.Fatal(err)
			}
			tc := tls.Client(conn, &tls.Config{ServerName: "a.example.com", RootCAs: ca.pool})
			if err := tc.Handshake(); err != nil {
				t.Fatalf("handshake: %v", err)
			}
			br := bufio.NewReader(tc)
			if tt.frontend == "offload" {
				fmt.Fprintf(tc, "x\n")
				greet, _ := br.ReadString('\n')
				echo, err := br.ReadString('\n')
				if err != nil || greet != tt.want+"\n" || echo != tt.want+" x\n" {
					t.Fatalf("got %q %q %v, want server %s", greet, echo, err, tt.want)
				}
				return
			}
			fmt.Fprintf(tc, "GET / HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n")
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.HasPrefix(string(body), tt.want+" sni=a.example.com ") {
				t.Fatalf("got %q, want server %s", body, tt.want)
			}
			if tc.ConnectionState().PeerCertificates[0].Subject.CommonName != "server-"+tt.want {
				t.Errorf("certificate of %s", tc.ConnectionState().PeerCertificates[0].Subject.CommonName)
			}
		})
	}
}
