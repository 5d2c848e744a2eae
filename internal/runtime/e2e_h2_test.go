package runtime

// End-to-end tests of HTTP/2 through waage: h2c beside HTTP/1.1 on one port, and HTTP/1.1
// clients of h2c servers.

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/net/http2"
)

// TestE2EH2CFrontend: on a frontend with h2c, HTTP/1.1 clients, Go's HTTP/2 client and curl
// --http2-prior-knowledge share one port and reach the same HTTP/1.1 backend.
func TestE2EH2CFrontend(t *testing.T) {
	be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "backend saw "+r.Proto+" "+r.URL.Path)
	})
	rt := startWaageH2(t, oneFrontendConfig("  - name: web\n    listen: [\"127.0.0.1:0\"]\n    h2c: true\n    default_backend: b\n", "", "", be.addr))
	addr := feAddr(t, rt, "web")
	h2c := h2cClient()
	for _, tc := range []struct {
		name   string
		client *http.Client
		proto  int
	}{{"HTTP/1.1", &http.Client{Timeout: ioTimeout}, 1}, {"h2c", h2c, 2}} {
		resp, err := tc.client.Get("http://" + addr + "/p")
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != tc.proto || string(body) != "backend saw HTTP/1.1 /p" {
			t.Fatalf("%s: %s %q", tc.name, resp.Proto, body)
		}
	}
	if _, err := exec.LookPath("curl"); err == nil {
		out, err := exec.Command("curl", "-sS", "--http2-prior-knowledge", "-w", " %{http_version}", "http://"+addr+"/curl").CombinedOutput()
		if err != nil || string(out) != "backend saw HTTP/1.1 /curl 2" {
			t.Fatalf("curl: %v %q", err, out)
		}
	}
}

// h2cClient is Go's HTTP/2 client speaking h2c with prior knowledge.
func h2cClient() *http.Client {
	return &http.Client{Timeout: ioTimeout, Transport: &http2.Transport{AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}}}
}

// TestE2EH2RetryOnStatus: retry.on_status applies to HTTP/2 streams as to HTTP/1.1 requests,
// with servers that speak HTTP/1.1 and with h2c servers: GETs that got a 503 go to the other
// server, POSTs with a body do not.
func TestE2EH2RetryOnStatus(t *testing.T) {
	t.Parallel()
	for _, proto := range []string{"http1", "h2c"} {
		t.Run(proto, func(t *testing.T) {
			var unavailable atomic.Int64
			bad := startH2CBackend(t, func(w http.ResponseWriter, r *http.Request) {
				unavailable.Add(1)
				w.WriteHeader(503)
			})
			good := startH2CBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "good") })
			rt := startWaageH2(t, oneFrontendConfig("  - name: web\n    listen: [\"127.0.0.1:0\"]\n    h2c: true\n    default_backend: b\n", "",
				"    protocol: "+proto+"\n    retry: {on_status: [503]}\n    outlier_detection: {consecutive_failures: 0}\n", bad, good))
			url := "http://" + feAddr(t, rt, "web") + "/"
			c := h2cClient()
			do := func(method string, body io.Reader) int {
				req, _ := http.NewRequest(method, url, body)
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return resp.StatusCode
			}
			for i := 0; i < 20; i++ {
				if st := do("GET", nil); st != 200 {
					t.Fatalf("GET %d: %d, want 200", i, st)
				}
			}
			if unavailable.Load() < 5 {
				t.Fatalf("only %d of 20 GETs reached the 503 server: the test proves nothing", unavailable.Load())
			}
			before, posts := unavailable.Load(), int64(0)
			for i := 0; i < 6; i++ {
				if do("POST", strings.NewReader("x")) == 503 {
					posts++
				}
			}
			if hits := unavailable.Load() - before; posts != hits || posts == 0 {
				t.Errorf("POST: %d 503s for %d hits on the 503 server: a POST was retried", posts, hits)
			}
		})
	}
}

// startH2CBackend starts a server that speaks HTTP/1.1 and h2c (prior knowledge) on one port and
// returns its address; it stops at cleanup.
func startH2CBackend(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &p, Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// TestE2EHTTP1ToH2CBackend: an HTTP/1.1 client reaches a server that speaks only h2c.
func TestE2EHTTP1ToH2CBackend(t *testing.T) {
	addr := startH2CBackend(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "h2c server saw "+r.Proto)
	})
	rt := startWaageH2(t, simpleConfig("", "    protocol: h2c\n", addr))
	resp, err := (&http.Client{Timeout: ioTimeout}).Get("http://" + feAddr(t, rt, "web") + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasSuffix(string(body), "saw HTTP/2.0") {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
}
