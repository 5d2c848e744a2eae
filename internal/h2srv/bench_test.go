package h2srv

import (
	"io"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// BenchmarkRequest measures the server's cost per request: a raw client keeps 10 GETs in flight
// on one connection and reads the answers (h2load -m10 on a small scale).
func BenchmarkRequest(b *testing.B) {
	body := []byte("s1\n")
	ts := startServer(b, nil, HandlerFunc(func(s *Stream) {
		s.Header().Set("Content-Type", "text/plain")
		s.Header().Set("Content-Length", "3")
		s.WriteHeader(200, false)
		s.Write(body)
		s.Close(nil)
	}), false)
	rc := dialRaw(b, ts.addr)
	rc.fr.WriteWindowUpdate(0, 1<<30)
	rc.c.SetReadDeadline(time.Time{})
	blk := rc.block(":method", "GET", ":scheme", "http", ":authority", "bench.test", ":path", "/", "user-agent", "bench", "accept", "*/*")
	send := func(id uint32) {
		rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: blk, EndStream: true, EndHeaders: true})
	}
	id := uint32(1)
	inflight := 0
	b.ReportAllocs()
	b.ResetTimer()
	for sent := 0; sent < b.N || inflight > 0; {
		for inflight < 10 && sent < b.N {
			send(id)
			id += 2
			sent++
			inflight++
		}
		f, err := rc.fr.ReadFrame()
		if err != nil {
			if err == io.EOF {
				b.Fatal("connection closed")
			}
			b.Fatal(err)
		}
		if d, ok := f.(*http2.DataFrame); ok && d.StreamEnded() {
			inflight--
		}
	}
}
