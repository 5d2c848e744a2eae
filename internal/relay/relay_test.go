//go:build linux

package relay

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"
)

// pair returns the two ends of a loopback TCP connection.
func pair(t testing.TB) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// relayed returns a client and a server end with a session relaying between them. before, if
// set, runs on the two ends before the session starts.
func relayed(t testing.TB, idle time.Duration, before func(client, server *net.TCPConn)) (client, server *net.TCPConn, s *Session) {
	t.Helper()
	client, in := pair(t)
	out, server := pair(t)
	if before != nil {
		before(client, server)
	}
	s, err := Start(in, out, idle)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		select {
		case <-s.Done():
		case <-time.After(5 * time.Second):
			t.Error("session did not end after Close")
		}
	})
	return client, server, s
}

func readAll(t testing.TB, c net.Conn) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading to EOF: %v (after %d bytes)", err, len(b))
	}
	return b
}

func waitDone(t testing.TB, s *Session, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	select {
	case <-s.Done():
		return time.Since(start)
	case <-time.After(within):
		t.Fatalf("session still running after %s", within)
		return 0
	}
}

// TestHalfClose: the client's FIN reaches the server while the server's answer still flows back,
// also when the FIN came together with the data before the session started (one readiness edge
// for both, or none at all); the session ends when both sides are done and counts the bytes.
func TestHalfClose(t *testing.T) {
	for _, tc := range []struct {
		name  string
		early bool // data and FIN are queued before Start
		data  string
	}{
		{"fin with the data, before start", true, "QUIT\r\n"},
		{"fin after the data", false, "QUIT\r\n"},
		{"fin only", true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			send := func(c, _ *net.TCPConn) {
				c.Write([]byte(tc.data))
				c.CloseWrite()
				time.Sleep(20 * time.Millisecond)
			}
			var client, server *net.TCPConn
			var s *Session
			if tc.early {
				client, server, s = relayed(t, 10*time.Second, send)
			} else {
				client, server, s = relayed(t, 10*time.Second, nil)
				send(client, server)
			}
			if got := readAll(t, server); string(got) != tc.data {
				t.Fatalf("server read %q, want %q", got, tc.data)
			}
			server.Write([]byte("221 bye\r\n"))
			server.CloseWrite()
			if got := readAll(t, client); string(got) != "221 bye\r\n" {
				t.Fatalf("client read %q after its half-close", got)
			}
			waitDone(t, s, 5*time.Second)
			if up, down := s.Bytes(); up != int64(len(tc.data)) || down != 9 {
				t.Errorf("Bytes = %d up, %d down; want %d, 9", up, down, len(tc.data))
			}
			if e := s.Ended(); e != EndClosed {
				t.Errorf("Ended = %d, want EndClosed", e)
			}
		})
	}
}

// TestMessages: many small request/response rounds, each answered before the next is sent.
func TestMessages(t *testing.T) {
	client, server, _ := relayed(t, 10*time.Second, nil)
	go func() {
		buf := make([]byte, 64)
		for {
			n, err := server.Read(buf)
			if err != nil {
				return
			}
			server.Write(bytes.ToUpper(buf[:n]))
		}
	}()
	client.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64)
	for i := range 2000 {
		msg := fmt.Sprintf("ping %d", i)
		if _, err := client.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		n, err := io.ReadAtLeast(client, buf, len(msg))
		if err != nil || string(buf[:n]) != "PING "+msg[5:] {
			t.Fatalf("round %d: got %q, %v", i, buf[:n], err)
		}
	}
}

// TestBulkBothWays: 16 MB each way at once, with the readers slower than the writers at first,
// arrive whole and in order (buffered, then spliced, with backpressure on both).
func TestBulkBothWays(t *testing.T) {
	client, server, s := relayed(t, 10*time.Second, nil)
	const size = 16 << 20
	pattern := func(seed byte) []byte {
		b := make([]byte, size)
		for i := range b {
			b[i] = byte(i%253) ^ seed
		}
		return b
	}
	up, down := pattern(1), pattern(2)
	var wg sync.WaitGroup
	var gotUp, gotDown []byte
	wg.Add(4)
	go func() { defer wg.Done(); client.Write(up); client.CloseWrite() }()
	go func() { defer wg.Done(); server.Write(down); server.CloseWrite() }()
	go func() { defer wg.Done(); time.Sleep(200 * time.Millisecond); gotUp = readAll(t, server) }()
	go func() { defer wg.Done(); time.Sleep(200 * time.Millisecond); gotDown = readAll(t, client) }()
	wg.Wait()
	if !bytes.Equal(gotUp, up) || !bytes.Equal(gotDown, down) {
		t.Fatalf("up: %d of %d bytes, equal %v; down: %d of %d, equal %v",
			len(gotUp), size, bytes.Equal(gotUp, up), len(gotDown), size, bytes.Equal(gotDown, down))
	}
	waitDone(t, s, 5*time.Second)
	if u, d := s.Bytes(); u != size || d != size {
		t.Errorf("Bytes = %d, %d; want %d each", u, d, size)
	}
	if !s.a.bulk || !s.b.bulk {
		t.Errorf("bulk (spliced): up %v, down %v; want both", s.a.bulk, s.b.bulk)
	}
}

// TestIdle: a session without a byte either way ends after the idle timeout; one whose server
// keeps talking to a silent client does not.
func TestIdle(t *testing.T) {
	const idle = 300 * time.Millisecond
	_, _, quiet := relayed(t, idle, nil)
	client, server, busy := relayed(t, idle, nil)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				server.Write([]byte("tick\n"))
			}
		}
	}()
	go io.Copy(io.Discard, client)
	d := waitDone(t, quiet, 5*time.Second)
	if d < idle-50*time.Millisecond || d > 3*idle {
		t.Errorf("idle session ended after %s, want %s to %s", d, idle, 3*idle)
	}
	if e := quiet.Ended(); e != EndIdle {
		t.Errorf("idle session: Ended = %d, want EndIdle", e)
	}
	time.Sleep(2 * idle)
	select {
	case <-busy.Done():
		t.Fatal("a session with traffic one way was cut as idle")
	default:
	}
}

// TestStalledReader: a client that stops reading while the server keeps sending is cut after the
// idle timeout, once the buffers are full and nothing moves.
func TestStalledReader(t *testing.T) {
	_, server, s := relayed(t, 300*time.Millisecond, nil)
	go func() {
		buf := make([]byte, 64<<10)
		server.SetWriteDeadline(time.Now().Add(20 * time.Second))
		for {
			if _, err := server.Write(buf); err != nil {
				return
			}
		}
	}()
	waitDone(t, s, 5*time.Second)
}

// TestCloseAndReset: Close ends a session at once (both ends see the connection end), and a
// reset from the server ends it too.
func TestCloseAndReset(t *testing.T) {
	client, server, s := relayed(t, time.Minute, nil)
	s.Close()
	waitDone(t, s, 5*time.Second)
	if e := s.Ended(); e != EndKilled {
		t.Errorf("closed session: Ended = %d, want EndKilled", e)
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := client.Read(make([]byte, 1)); err == nil {
		t.Error("client read data after Close")
	}
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := server.Read(make([]byte, 1)); err == nil {
		t.Error("server read data after Close")
	}

	client, server, s = relayed(t, time.Minute, nil)
	server.SetLinger(0)
	server.Close() // RST
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := client.Read(make([]byte, 1)); err == nil {
		t.Error("client read data after the server's reset")
	}
	waitDone(t, s, 5*time.Second)
	if e := s.Ended(); e != EndError {
		t.Errorf("reset session: Ended = %d, want EndError", e)
	}
}

// TestStartClosed: connections already closed are refused and nothing is taken over.
func TestStartClosed(t *testing.T) {
	a, b := pair(t)
	a.Close()
	if _, err := Start(a, b, time.Second); err == nil {
		t.Fatal("Start on a closed connection succeeded")
	}
	b.SetReadDeadline(time.Now().Add(time.Millisecond))
	if _, err := b.Read(make([]byte, 1)); errors.Is(err, net.ErrClosed) {
		t.Fatal("Start closed the other connection although it failed")
	}
}

// TestManySessionsAndGC: many sessions over every loop carry traffic while the collector runs;
// the loops, waiting in the kernel on their Ps, must let the runtime stop the world.
func TestManySessionsAndGC(t *testing.T) {
	const n = 200
	type ends struct{ c, s *net.TCPConn }
	all := make([]ends, n)
	for i := range all {
		c, s, _ := relayed(t, time.Minute, nil)
		all[i] = ends{c, s}
	}
	gcDone := make(chan time.Duration)
	go func() {
		start := time.Now()
		for range 20 {
			runtime.GC()
		}
		gcDone <- time.Since(start)
	}()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i, e := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.c.SetDeadline(time.Now().Add(10 * time.Second))
			e.s.SetDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 32)
			for j := range 20 {
				msg := fmt.Sprintf("%d/%d", i, j)
				e.c.Write([]byte(msg))
				k, err := io.ReadAtLeast(e.s, buf, len(msg))
				if err != nil || string(buf[:k]) != msg {
					errs <- fmt.Errorf("session %d round %d: %q, %v", i, j, buf[:k], err)
					return
				}
				e.s.Write(buf[:k])
				if k, err = io.ReadAtLeast(e.c, buf, len(msg)); err != nil || string(buf[:k]) != msg {
					errs <- fmt.Errorf("session %d round %d back: %q, %v", i, j, buf[:k], err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	select {
	case d := <-gcDone:
		t.Logf("20 collections in %s", d)
	case <-time.After(20 * time.Second):
		t.Fatal("20 garbage collections did not finish in 20s: the loops block the runtime")
	}
}

// echo answers everything c reads with the same bytes, until c fails.
func echo(c net.Conn) {
	buf := make([]byte, 64)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		c.Write(buf[:n])
	}
}

// roundTrips sends a small request over client and reads its echo, b.N times.
func roundTrips(b *testing.B, client net.Conn) {
	buf := make([]byte, 64)
	msg := []byte("GET / HTTP/1.1\r\n\r\n")
	for b.Loop() {
		client.Write(msg)
		if _, err := io.ReadAtLeast(client, buf, len(msg)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRoundTrip measures one small request and answer through a session. Run it with
// -cpu 4 or more: the loops hold half of the Ps the process had when they started. Here the
// client and server are goroutines of the same process, woken through the runtime's poller on
// the CPUs the loops are pinned to; for latency against HAProxy use wrk -c1 (bench/l4.sh).
func BenchmarkRoundTrip(b *testing.B) {
	client, server, _ := relayed(b, time.Minute, nil)
	go echo(server)
	roundTrips(b, client)
}

// BenchmarkRoundTripDirect is BenchmarkRoundTrip without the relay, for comparison.
func BenchmarkRoundTripDirect(b *testing.B) {
	client, server := pair(b)
	go echo(server)
	roundTrips(b, client)
}
