package l7

import (
	"bufio"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/waage/waage/internal/backend"
	"github.com/waage/waage/internal/config"
)

// h2cBackend is a net/http server that speaks only HTTP/2 with prior knowledge (h2c). Its
// handler reports the protocol it saw, echoes the body, streams two parts and sets a trailer.
func h2cBackend(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &p, Handler: http.HandlerFunc(h2EchoHandler)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func h2EchoHandler(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	w.Header().Set("Trailer", "X-Checksum")
	tls := "no"
	if r.TLS != nil {
		tls = "yes"
	}
	fmt.Fprintf(w, "%s tls=%s %s %s te=%s xff=%s body=%s;", r.Proto, tls, r.Method, r.RequestURI, r.Header.Get("Te"), r.Header.Get("X-Forwarded-For"), body)
	w.(http.Flusher).Flush()
	io.WriteString(w, "part2")
	w.Header().Set("X-Checksum", "42")
}

// startH1Front is waage's ordinary HTTP/1.1 frontend (Server.Serve) in front of one backend.
func startH1Front(t *testing.T, bc config.Backend, addrs ...string) string {
	t.Helper()
	tr := NewTransport()
	t.Cleanup(tr.Close)
	bc.Name, bc.Algorithm = "b", "round_robin"
	var ss []*backend.Server
	for i, a := range addrs {
		name := fmt.Sprintf("s%d", i+1)
		bc.Servers = append(bc.Servers, config.Server{Name: name, Address: a})
		ss = append(ss, backend.NewServer("b", name, a))
	}
	b, err := NewBackend(bc, ss, tr)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := NewRouter(config.Frontend{Name: "f", DefaultBackend: "b"}, map[string]*Backend{"b": b})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(&Handler{Name: "f", Router: rt, Scheme: "http"})
	go s.Serve(ln)
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// TestHTTP1ClientToH2CBackend: an HTTP/1.1 client reaches an h2c-only server through waage; the
// response, whose length is unknown, comes back chunked with its trailer in the last chunk, and
// request bodies (fixed length and chunked) arrive whole.
func TestHTTP1ClientToH2CBackend(t *testing.T) {
	addr := startH1Front(t, config.Backend{Protocol: "h2c"}, h2cBackend(t))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for _, tc := range []struct{ name, req, wantBody string }{
		{"get", "GET /a/./b?x=1 HTTP/1.1\r\nHost: h\r\nTE: trailers\r\n\r\n", "GET /a/b?x=1 te=trailers xff=127.0.0.1 body=;part2"},
		{"post", "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello", "POST /p te= xff=127.0.0.1 body=hello;part2"},
		{"chunked post", "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", "POST /c te= xff=127.0.0.1 body=abcde;part2"},
	} {
		if _, err := io.WriteString(c, tc.req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s: body: %v", tc.name, err)
		}
		want := "HTTP/2.0 tls=no " + tc.wantBody
		if resp.StatusCode != 200 || string(body) != want {
			t.Fatalf("%s: %d %q, want 200 %q", tc.name, resp.StatusCode, body, want)
		}
		if len(resp.TransferEncoding) == 0 || resp.TransferEncoding[0] != "chunked" {
			t.Fatalf("%s: transfer encoding %v, want chunked", tc.name, resp.TransferEncoding)
		}
		if resp.Trailer.Get("X-Checksum") != "42" {
			t.Fatalf("%s: trailer %v, want X-Checksum: 42", tc.name, resp.Trailer)
		}
	}
}

// TestH2TLSBackend: protocol h2 speaks HTTP/2 over TLS to the servers, verified with tls.ca,
// for HTTP/2 and HTTP/1.1 clients alike.
func TestH2TLSBackend(t *testing.T) {
	ts := httptest.NewUnstartedServer(http.HandlerFunc(h2EchoHandler))
	ts.EnableHTTP2 = true
	ts.StartTLS()
	defer ts.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	srvAddr := strings.TrimPrefix(ts.URL, "https://")
	bc := config.Backend{Protocol: "h2", TLS: &config.ClientTLS{CA: ca, ServerName: "example.com"}}
	f := startH2Front(t, bc, srvAddr)
	resp, err := h2cClient().Get("http://" + f.addr + "/tls")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.HasPrefix(string(body), "HTTP/2.0 tls=yes GET /tls ") || resp.Trailer.Get("X-Checksum") != "42" {
		t.Fatalf("HTTP/2 client: %q trailer %v", body, resp.Trailer)
	}
	h1 := startH1Front(t, bc, srvAddr)
	resp, err = (&http.Client{Timeout: 10 * time.Second}).Get("http://" + h1 + "/tls1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.HasPrefix(string(body), "HTTP/2.0 tls=yes GET /tls1 ") {
		t.Fatalf("HTTP/1.1 client: %q", body)
	}
	// Without the CA, the server's certificate is refused: no server could be connected to.
	bad := startH2Front(t, config.Backend{Protocol: "h2"}, srvAddr)
	resp, err = h2cClient().Get("http://" + bad.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 502 {
		t.Fatalf("unverifiable server: status %d, want 502", resp.StatusCode)
	}
}

// TestH2ProxyProtocolToHTTP1Backend: streams of HTTP/2 clients to a backend with proxy_protocol
// reach it on connections that start with a PROXY header naming the client.
func TestH2ProxyProtocolToHTTP1Backend(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				line, _ := br.ReadString('\n')
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				body := strings.TrimSpace(line)
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
			}()
		}
	}()
	f := startH2Front(t, config.Backend{ProxyProtocol: "v1"}, ln.Addr().String())
	c := h2cClient()
	for range 2 {
		resp, err := c.Get("http://" + f.addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		_, fport, _ := net.SplitHostPort(f.addr)
		if !strings.HasPrefix(string(body), "PROXY TCP4 127.0.0.1 127.0.0.1 ") || !strings.HasSuffix(string(body), " "+fport) {
			t.Fatalf("backend saw %q, want a PROXY v1 header naming the client and port %s", body, fport)
		}
	}
}
