package l7

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/waage/waage/internal/config"
)

// shaBackend answers every request with its method, protocol and the SHA-256 of its body.
func shaBackend(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		fmt.Fprintf(w, "%s %s %s len=%d sha=%x", r.Method, r.RequestURI, r.Header.Get("X-Forwarded-Proto"), n, h.Sum(nil))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// TestH2CurlTLSAndPriorKnowledge: curl's own HTTP/2 against waage's HTTP/2 server, over TLS
// (ALPN, --http2) and over plaintext (--http2-prior-knowledge): GET, HEAD and a 1 MiB upload
// that crosses the flow-control windows, relayed to an HTTP/1.1 server.
func TestH2CurlTLSAndPriorKnowledge(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	dir := t.TempDir()
	data := make([]byte, 1<<20)
	rand.Read(data)
	upload := filepath.Join(dir, "upload.bin")
	if err := os.WriteFile(upload, data, 0o644); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("len=%d sha=%x", len(data), sha256.Sum256(data))

	// The certificate is made up per test: -k, since verifying it is not what is tested here.
	tlsAddr, _ := startTLSFront(t, config.Backend{}, shaBackend(t))
	h2c := startH2Front(t, config.Backend{}, shaBackend(t))

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"tls GET", []string{"--http2", "-k", "https://" + tlsAddr + "/get?x=1"}, "GET /get?x=1 https len=0"},
		{"tls HEAD", []string{"--http2", "-k", "-I", "https://" + tlsAddr + "/head"}, "HTTP/2 200"},
		{"tls POST", []string{"--http2", "-k", "--data-binary", "@" + upload, "https://" + tlsAddr + "/up"}, "POST /up https " + want},
		{"h2c GET", []string{"--http2-prior-knowledge", "http://" + h2c.addr + "/get"}, "GET /get http len=0"},
		{"h2c POST", []string{"--http2-prior-knowledge", "--data-binary", "@" + upload, "http://" + h2c.addr + "/up"}, "POST /up http " + want},
	} {
		args := append([]string{"-sS", "--max-time", "10", "-w", "\nversion=%{http_version}"}, tc.args...)
		out, err := exec.Command("curl", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", tc.name, err, out)
		}
		s := string(out)
		if !strings.Contains(s, tc.want) || !strings.HasSuffix(s, "version=2") {
			t.Errorf("%s: got %q, want %q over HTTP/2", tc.name, s, tc.want)
		}
	}
}
