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
	h2c := &http.Client{Timeout: ioTimeout, Transport: &http2.Transport{AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}}}
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

// TestE2EHTTP1ToH2CBackend: an HTTP/1.1 client reaches a server that speaks only h2c.
func TestE2EHTTP1ToH2CBackend(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &p, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "h2c server saw "+r.Proto)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	rt := startWaageH2(t, simpleConfig("", "    protocol: h2c\n", ln.Addr().String()))
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
