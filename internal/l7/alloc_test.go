package l7

import (
	"bytes"
	"net"
	"runtime"
	"testing"

	"github.com/waage/waage/internal/backend"
	"github.com/waage/waage/internal/config"
)

// rawBackend answers every request on every connection with a fixed response, reading heads with
// a plain buffer, so it allocates nothing per request itself.
func rawBackend(t testing.TB, resp string) string {
	out := []byte(resp)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 8192)
				n := 0
				for {
					k, err := c.Read(buf[n:])
					if err != nil {
						return
					}
					n += k
					for {
						i := bytes.Index(buf[:n], []byte("\r\n\r\n"))
						if i < 0 {
							break
						}
						copy(buf, buf[i+4:n])
						n -= i + 4
						if _, err := c.Write(out); err != nil {
							return
						}
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// startProxy serves a one-backend frontend on a loopback listener and returns its address.
func startProxy(t testing.TB, servers ...string) string {
	t.Helper()
	tr := NewTransport()
	t.Cleanup(tr.Close)
	var ss []*backend.Server
	bc := config.Backend{Name: "b", Algorithm: "round_robin"}
	for _, a := range servers {
		ss = append(ss, backend.NewServer("b", a, a))
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

// TestProxyAllocations guards the hot path: a keep-alive GET through the proxy allocates nothing
// per request once pools are warm.
func TestProxyAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector (sync.Pool drops items)")
	}
	resp := "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
	addr := startProxy(t, rawBackend(t, resp), rawBackend(t, resp))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := []byte("GET /index.html?x=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: test\r\nAccept: */*\r\n\r\n")
	buf := make([]byte, 4096)
	do := func() {
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		got := 0
		for {
			n, err := c.Read(buf[got:])
			if err != nil {
				t.Fatal(err)
			}
			got += n
			if bytes.HasSuffix(buf[:got], []byte("hello")) {
				return
			}
		}
	}
	for i := 0; i < 200; i++ {
		do()
	}
	const n = 2000
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 0; i < n; i++ {
		do()
	}
	runtime.ReadMemStats(&after)
	per := float64(after.Mallocs-before.Mallocs) / n
	t.Logf("%.2f allocations per request (whole process)", per)
	if per > 1 {
		t.Errorf("%.2f allocations per proxied request; the hot path should allocate nothing", per)
	}
}
