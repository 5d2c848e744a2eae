package l7

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/waage/waage/internal/backend"
)

// benchGet sends keep-alive GETs through a proxy at addr on one client connection per goroutine
// and waits for each answer, which ends in "hello".
func benchGet(b *testing.B, addr string) {
	req := []byte("GET /index.html?x=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		buf := make([]byte, 4096)
		for pb.Next() {
			if _, err := c.Write(req); err != nil {
				b.Error(err)
				return
			}
			got := 0
			for !bytes.HasSuffix(buf[:got], []byte("hello")) {
				n, err := c.Read(buf[got:])
				if err != nil {
					b.Error(err)
					return
				}
				got += n
			}
		}
	})
}

// BenchmarkProxyGet measures keep-alive GETs through the HTTP/1.1 path to two servers: the whole
// request cost on loopback, client and servers included (compare runs, not absolute numbers).
func BenchmarkProxyGet(b *testing.B) {
	resp := "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
	addr := startProxy(b, rawBackend(b, resp), rawBackend(b, resp))
	benchGet(b, addr)
}

// BenchmarkFinishRequest measures what every request pays at its end for metrics, without an
// access log: the frontend's and the server's counters and duration histograms.
func BenchmarkFinishRequest(b *testing.B) {
	cc := &clientConn{s: NewServer(&Handler{Name: "f"})}
	h := cc.s.Handler()
	ex := &exchange{srv: backend.NewServer("b", "s1", "127.0.0.1:1"), status: 200, sent: 5, start: time.Now()}
	b.ReportAllocs()
	for b.Loop() {
		cc.finishLog(h, ex)
	}
	if got := cc.s.Stats.Requests.Load(); got == 0 {
		b.Fatal("nothing counted")
	}
}
