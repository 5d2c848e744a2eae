package health

import (
	"crypto/tls"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/waage/waage/internal/config"
)

// recorder keeps the requests a test server received, by their X-Test header.
type recorder struct {
	mu   sync.Mutex
	reqs map[string]*http.Request
}

func (rec *recorder) add(r *http.Request) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.reqs == nil {
		rec.reqs = map[string]*http.Request{}
	}
	rec.reqs[r.Header.Get("X-Test")] = r
}

func (rec *recorder) get(id string) *http.Request {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.reqs[id]
}

func testHandler(rec *recorder) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		rec.add(r)
		_, _ = io.WriteString(w, "status: ok\n")
	})
	mux.HandleFunc("/up", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "up") })
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "oops", http.StatusInternalServerError)
	})
	mux.HandleFunc("/status/{code}", func(w http.ResponseWriter, r *http.Request) {
		switch r.PathValue("code") {
		case "204":
			w.WriteHeader(http.StatusNoContent)
		case "404":
			w.WriteHeader(http.StatusNotFound)
		case "302":
			w.WriteHeader(http.StatusFound)
		}
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/fail", http.StatusMovedPermanently)
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		// The marker lies past the first 64 KiB, where the check does not look.
		_, _ = io.WriteString(w, strings.Repeat("x", maxRead)+"ok")
	})
	return mux
}

func TestHTTPProbe(t *testing.T) {
	var rec recorder
	ts := httptest.NewServer(testHandler(&rec))
	t.Cleanup(ts.Close)
	addr := ts.Listener.Addr().String()

	tests := []struct {
		name string
		hc   config.HealthCheck
		addr string
		want string
	}{
		{"ok", config.HealthCheck{Type: "http"}, addr, ""},
		{"defaults filled", config.HealthCheck{Type: "http", Method: "GET", Path: "/", ExpectStatus: config.StringList{"200-399"}}, addr, ""},
		{"500", config.HealthCheck{Type: "http", Path: "/fail"}, addr, "status 500 (expected 200-399)"},
		{"500 accepted", config.HealthCheck{Type: "http", Path: "/fail", ExpectStatus: config.StringList{"500"}}, addr, ""},
		{"list", config.HealthCheck{Type: "http", Path: "/status/204", ExpectStatus: config.StringList{"200", "204", "300-399"}}, addr, ""},
		{"list range", config.HealthCheck{Type: "http", Path: "/status/302", ExpectStatus: config.StringList{"200", "204", "300-399"}}, addr, ""},
		{"list miss", config.HealthCheck{Type: "http", Path: "/status/404", ExpectStatus: config.StringList{"200", "204", " 300-399"}}, addr, "status 404 (expected 200, 204, 300-399)"},
		{"single", config.HealthCheck{Type: "http", Path: "/status/204", ExpectStatus: config.StringList{"200"}}, addr, "status 204 (expected 200)"},
		{"redirect not followed", config.HealthCheck{Type: "http", Path: "/redirect", ExpectStatus: config.StringList{"200"}}, addr, "status 301 (expected 200)"},
		{"redirect is a pass by default", config.HealthCheck{Type: "http", Path: "/redirect"}, addr, ""},
		{"body substring", config.HealthCheck{Type: "http", ExpectBody: "ok"}, addr, ""},
		{"body substring miss", config.HealthCheck{Type: "http", Path: "/up", ExpectBody: "ok"}, addr, `body does not contain "ok"`},
		{"body regex", config.HealthCheck{Type: "http", Path: "/up", ExpectBody: "~^up$"}, addr, ""},
		{"body regex miss", config.HealthCheck{Type: "http", ExpectBody: "~^up$"}, addr, "body does not match ~^up$"},
		{"body beyond 64 KiB", config.HealthCheck{Type: "http", Path: "/big", ExpectBody: "ok"}, addr, `body does not contain "ok"`},
		{"status judged before body", config.HealthCheck{Type: "http", Path: "/fail", ExpectBody: "oops"}, addr, "status 500"},
		{"refused", config.HealthCheck{Type: "http"}, freeAddr(t), "connect: connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err, _ := runProbe(t, &tt.hc, tt.addr, 2*time.Second)
			checkVerdict(t, err, tt.want)
		})
	}
}

func TestHTTPProbeRequest(t *testing.T) {
	var rec recorder
	ts := httptest.NewServer(testHandler(&rec))
	t.Cleanup(ts.Close)
	addr := ts.Listener.Addr().String()

	tests := []struct {
		name      string
		hc        config.HealthCheck
		method    string
		host      string
		uri       string
		userAgent string
		headers   map[string]string
	}{
		{"defaults", config.HealthCheck{Type: "http"}, "GET", addr, "/", "waage-health-check", nil},
		{"head", config.HealthCheck{Type: "http", Method: "HEAD"}, "HEAD", addr, "/", "waage-health-check", nil},
		{"path and query", config.HealthCheck{Type: "http", Path: "/health?full=1&x=a%20b"}, "GET", addr, "/health?full=1&x=a%20b", "waage-health-check", nil},
		{"host", config.HealthCheck{Type: "http", Host: "api.example.com"}, "GET", "api.example.com", "/", "waage-health-check", nil},
		{"host in headers", config.HealthCheck{Type: "http", Headers: config.StringMap{{Key: "host", Value: "h.example.com"}}}, "GET", "h.example.com", "/", "waage-health-check", nil},
		{
			"headers",
			config.HealthCheck{Type: "http", Headers: config.StringMap{{Key: "X-Env", Value: "prod"}, {Key: "user-agent", Value: "probe/1"}, {Key: "Accept", Value: "text/plain"}}},
			"GET", addr, "/", "probe/1", map[string]string{"X-Env": "prod", "Accept": "text/plain"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			hc := tt.hc
			hc.Headers = append(config.StringMap{{Key: "X-Test", Value: tt.name}}, hc.Headers...)
			err, _ := runProbe(t, &hc, addr, 2*time.Second)
			checkVerdict(t, err, "")
			r := rec.get(tt.name)
			if r == nil {
				t.Fatal("server saw no request")
			}
			if r.Method != tt.method {
				t.Errorf("method %q, want %q", r.Method, tt.method)
			}
			if r.Host != tt.host {
				t.Errorf("host %q, want %q", r.Host, tt.host)
			}
			if r.RequestURI != tt.uri {
				t.Errorf("request URI %q, want %q", r.RequestURI, tt.uri)
			}
			if r.Proto != "HTTP/1.1" {
				t.Errorf("protocol %q, want HTTP/1.1", r.Proto)
			}
			if ua := r.Header.Get("User-Agent"); ua != tt.userAgent {
				t.Errorf("User-Agent %q, want %q", ua, tt.userAgent)
			}
			if !r.Close {
				t.Error("request asks for keep-alive; each check should use a fresh connection")
			}
			for k, v := range tt.headers {
				if got := r.Header.Get(k); got != v {
					t.Errorf("header %s: %q, want %q", k, got, v)
				}
			}
		})
	}
}

// writeCertPEM writes the certificate of a TLS test server to a file, for tls.ca.
func writeCertPEM(t *testing.T, ts *httptest.Server) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "server.pem")
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw})
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestHTTPSProbe(t *testing.T) {
	var rec recorder
	ts := httptest.NewUnstartedServer(testHandler(&rec))
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	ts.StartTLS()
	t.Cleanup(ts.Close)
	addr := ts.Listener.Addr().String()
	ca := writeCertPEM(t, ts)

	tests := []struct {
		name string
		hc   config.HealthCheck
		want string
	}{
		{"with CA", config.HealthCheck{Type: "http", TLS: &config.ClientTLS{CA: ca}}, ""},
		{"with CA and server name", config.HealthCheck{Type: "http", TLS: &config.ClientTLS{CA: ca, ServerName: "example.com"}, ExpectBody: "ok"}, ""},
		{"wrong server name", config.HealthCheck{Type: "http", TLS: &config.ClientTLS{CA: ca, ServerName: "waage.example"}}, "tls handshake: x509: certificate is valid for"},
		{"insecure", config.HealthCheck{Type: "http", TLS: &config.ClientTLS{InsecureSkipVerify: true}, Path: "/fail"}, "status 500 (expected 200-399)"},
		{"without CA", config.HealthCheck{Type: "http", TLS: &config.ClientTLS{}}, "tls handshake: x509: certificate signed by unknown authority"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err, _ := runProbe(t, &tt.hc, addr, 2*time.Second)
			checkVerdict(t, err, tt.want)
		})
	}

	// Plain HTTP to the TLS port fails with what the server says, not with a hang.
	err, _ := runProbe(t, &config.HealthCheck{Type: "http"}, addr, 2*time.Second)
	checkVerdict(t, err, "status 400")
}

func TestHTTPSProbeClientCert(t *testing.T) {
	cert := newTestCert(t)
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello "+r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	ts.TLS = &tls.Config{
		Certificates: []tls.Certificate{cert.cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    cert.pool,
	}
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	ts.StartTLS()
	t.Cleanup(ts.Close)
	addr := ts.Listener.Addr().String()

	tests := []struct {
		name string
		hc   config.HealthCheck
		want string
	}{
		{"client certificate", config.HealthCheck{Type: "http", ExpectBody: "hello waage test", TLS: &config.ClientTLS{CA: cert.caFile, Cert: cert.caFile, Key: cert.keyFile}}, ""},
		{"no client certificate", config.HealthCheck{Type: "http", TLS: &config.ClientTLS{CA: cert.caFile}}, "certificate required"},
		{"tcp with client certificate", config.HealthCheck{Type: "tcp", TLS: &config.ClientTLS{CA: cert.caFile, Cert: cert.caFile, Key: cert.keyFile}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err, _ := runProbe(t, &tt.hc, addr, 2*time.Second)
			checkVerdict(t, err, tt.want)
		})
	}
}

func TestHTTPProbeTimeout(t *testing.T) {
	// A server that accepts and never answers, and one that sends headers but no body.
	silent := serveTCP(t, listenTCP(t), waitClosed)
	release := make(chan struct{})
	stall := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(stall.Close)
	t.Cleanup(func() { close(release) })

	tests := []struct {
		name string
		hc   config.HealthCheck
		addr string
		want string
	}{
		{"no response", config.HealthCheck{Type: "http"}, silent, "timeout"},
		{"no body", config.HealthCheck{Type: "http", ExpectBody: "ok"}, stall.Listener.Addr().String(), "body: "},
		{"tls handshake", config.HealthCheck{Type: "http", TLS: &config.ClientTLS{InsecureSkipVerify: true}}, silent, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			const timeout = 300 * time.Millisecond
			err, took := runProbe(t, &tt.hc, tt.addr, timeout)
			checkVerdict(t, err, tt.want)
			if took > timeout+slack {
				t.Errorf("took %v with a timeout of %v", took, timeout)
			}
		})
	}
}
