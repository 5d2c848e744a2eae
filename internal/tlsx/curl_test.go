package tlsx

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/waage/waage/internal/config"
)

// serveHTTP runs a minimal HTTP/1.1 server over cfg answering every request with what the TLS
// layer saw: SNI, ALPN and the verified client subject.
func serveHTTP(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				cs := c.(*tls.Conn).ConnectionState()
				body := fmt.Sprintf("sni=%s alpn=%s subject=%s path=%s\n", cs.ServerName, cs.NegotiatedProtocol, ClientSubject(&cs), req.URL.Path)
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
			}()
		}
	}()
	return ln.Addr().String()
}

// TestCurl checks the store with a client that is not Go's: curl (OpenSSL) verifies the
// certificate chosen by SNI against the CA, negotiates ALPN and presents a client certificate.
func TestCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	ca := newCA(t, "curl CA")
	clientCA := newCA(t, "curl client CA")
	dir := t.TempDir()
	caFile, clientCAFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "client-ca.pem")
	writeAtomic(t, caFile, ca.pem)
	writeAtomic(t, clientCAFile, clientCA.pem)
	clientPair := clientCA.writePair(t, dir, "alice", leafSpec{label: "Example", cn: "alice", client: true})
	cfg := &config.FrontendTLS{
		Certificates: []config.Certificate{
			ca.writePair(t, dir, "default", leafSpec{label: "default", names: []string{"www.example.net"}}),
			ca.writePair(t, dir, "wild", leafSpec{label: "wild", names: []string{"*.example.com"}}),
			ca.writePair(t, dir, "rsa", leafSpec{label: "rsa", names: []string{"*.example.com"}, rsa: true}),
		},
		ClientAuth: "optional",
		ClientCA:   clientCAFile,
	}
	s := newStore(t, cfg, nil)
	addr := serveHTTP(t, s.ServerConfig([]string{"http/1.1"}))
	_, port, _ := net.SplitHostPort(addr)

	tests := []struct {
		name string
		host string
		args []string
		want string // "": curl must fail ...
		fail string // ... saying this
	}{
		{name: "wildcard name", host: "api.example.com", want: "sni=api.example.com alpn=http/1.1 subject= path=/x"},
		{name: "default by name", host: "www.example.net", want: "sni=www.example.net alpn=http/1.1 subject= path=/x"},
		{name: "HTTP/2 offered, http/1.1 chosen", host: "api.example.com", args: []string{"--http2"}, want: "sni=api.example.com alpn=http/1.1 subject= path=/x"},
		{name: "TLS 1.2 only", host: "api.example.com", args: []string{"--tls-max", "1.2"}, want: "sni=api.example.com alpn=http/1.1 subject= path=/x"},
		{name: "client certificate", host: "api.example.com", args: []string{"--cert", clientPair.Cert, "--key", clientPair.Key}, want: "sni=api.example.com alpn=http/1.1 subject=CN=alice,O=Example path=/x"},
		// The default certificate does not cover this name: proof that the SNI decided above.
		{name: "name without certificate fails verification", host: "other.example.org", fail: "no alternative certificate subject name matches"},
		{name: "TLS 1.1 refused", host: "api.example.com", args: []string{"--tlsv1.1", "--tls-max", "1.1", "--ciphers", "DEFAULT:@SECLEVEL=0"}, fail: "protocol version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"-sS", "--max-time", "5", "--cacert", caFile,
				"--resolve", tt.host + ":" + port + ":127.0.0.1"}, tt.args...)
			args = append(args, "https://"+tt.host+":"+port+"/x")
			out, err := exec.Command(curl, args...).CombinedOutput()
			if tt.want == "" {
				if err == nil || !strings.Contains(string(out), tt.fail) {
					t.Fatalf("curl: %v: %s; want a failure saying %q", err, out, tt.fail)
				}
				return
			}
			if err != nil {
				t.Fatalf("curl: %v: %s", err, out)
			}
			if got := strings.TrimSpace(string(out)); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
