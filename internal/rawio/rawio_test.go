//go:build linux

package rawio

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// pair returns the two ends of a loopback TCP connection.
func pair(t *testing.T) (a, b *net.TCPConn) {
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

// TestConnWriteRead: Write sends both buffers in order (large enough that the socket runs full
// and the write waits in the poller), Read returns them and then io.EOF after the peer's FIN.
func TestConnWriteRead(t *testing.T) {
	a, b := pair(t)
	ra, rb := New(a), New(b)
	head := []byte("head:")
	body := make([]byte, 4<<20)
	for i := range body {
		body[i] = byte(i % 251)
	}
	errc := make(chan error, 1)
	go func() {
		n, err := ra.Write(head, body)
		if err == nil && n != len(head)+len(body) {
			err = io.ErrShortWrite
		}
		a.CloseWrite()
		errc <- err
	}()
	var got []byte
	buf := make([]byte, 64<<10)
	b.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		n, err := rb.Read(buf)
		got = append(got, buf[:n]...)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read after %d bytes: %v", len(got), err)
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if want := append(head, body...); string(got) != string(want) {
		t.Fatalf("read %d bytes, want %d (equal prefix: %v)", len(got), len(want), len(got) <= len(want) && string(got) == string(want[:len(got)]))
	}
}

// TestConnReadDeadline: the poller's deadline ends a Read that waits.
func TestConnReadDeadline(t *testing.T) {
	a, _ := pair(t)
	a.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	start := time.Now()
	_, err := New(a).Read(make([]byte, 10))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read = %v, want the deadline", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("deadline of 50ms ended the read after %s", d)
	}
}

// TestNewNotTCP: only TCP connections get raw I/O.
func TestNewNotTCP(t *testing.T) {
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	if New(c1) != nil {
		t.Fatal("New(net.Pipe) != nil")
	}
}

// echoServer answers each request it reads with "re:" and the request, until the client closes.
func echoServer(t *testing.T, c net.Conn) {
	t.Helper()
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			if _, err := c.Write(append([]byte("re:"), buf[:n]...)); err != nil {
				return
			}
		}
	}()
}

// writeReader sends w and reads the answer into p.
type writeReader func(c *Conn, w, p []byte) (int, error)

// forEachWriteReader runs f as a subtest with WriteRead and with WriteReadBatched (whose outbox
// is closed when the subtest ends).
func forEachWriteReader(t *testing.T, f func(t *testing.T, wr writeReader)) {
	t.Run("WriteRead", func(t *testing.T) { f(t, (*Conn).WriteRead) })
	t.Run("WriteReadBatched", func(t *testing.T) {
		var o Outbox
		defer o.Close()
		f(t, func(c *Conn, w, p []byte) (int, error) { return c.WriteReadBatched(&o, w, p) })
	})
}

// TestWriteReadExchange: request after request goes out and its answer comes back, over
// several connections at once sharing one outbox.
func TestWriteReadExchange(t *testing.T) {
	forEachWriteReader(t, func(t *testing.T, wr writeReader) {
		errc := make(chan error, 8)
		for range 8 {
			a, b := pair(t)
			echoServer(t, b)
			a.SetReadDeadline(time.Now().Add(10 * time.Second))
			go func() {
				c, buf := New(a), make([]byte, 1024)
				for i := range 200 {
					req := []byte(fmt.Sprint("request ", i))
					n, err := wr(c, req, buf)
					if err != nil {
						errc <- fmt.Errorf("request %d: %w", i, err)
						return
					}
					if got := string(buf[:n]); got != "re:"+string(req) {
						errc <- fmt.Errorf("request %d: answer %q", i, got)
						return
					}
				}
				errc <- nil
			}()
		}
		for range 8 {
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestWriteReadServerClosed: a request on a connection the server closed while it idled ends
// at once with an error (the reset wakes the wait), not at the read deadline.
func TestWriteReadServerClosed(t *testing.T) {
	forEachWriteReader(t, func(t *testing.T, wr writeReader) {
		a, b := pair(t)
		b.Close()
		time.Sleep(50 * time.Millisecond) // the FIN arrives while the connection idles
		a.SetReadDeadline(time.Now().Add(10 * time.Second))
		start := time.Now()
		n, err := wr(New(a), []byte("GET / HTTP/1.1\r\n\r\n"), make([]byte, 100))
		if err == nil && n > 0 {
			t.Fatalf("read %d bytes from a closed server", n)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("ended after %s (%v), want at once", d, err)
		}
	})
}

// TestWriteReadLarge: a request larger than the socket buffers (the write waits for the server
// to read) still goes out whole before the answer is read, by either way.
func TestWriteReadLarge(t *testing.T) {
	forEachWriteReader(t, func(t *testing.T, wr writeReader) {
		a, b := pair(t)
		req := make([]byte, 8<<20)
		for i := range req {
			req[i] = byte(i % 251)
		}
		sum := make(chan string, 1)
		go func() {
			// The server reads slowly at first, then answers with the size it got.
			time.Sleep(100 * time.Millisecond)
			got := 0
			buf := make([]byte, 64<<10)
			for got < len(req) {
				n, err := b.Read(buf)
				for i := range n {
					if buf[i] != byte((got+i)%251) {
						sum <- fmt.Sprint("byte ", got+i, " differs")
						return
					}
				}
				got += n
				if err != nil {
					break
				}
			}
			b.Write([]byte(fmt.Sprint("got ", got)))
			sum <- ""
		}()
		a.SetDeadline(time.Now().Add(20 * time.Second))
		buf := make([]byte, 100)
		n, err := wr(New(a), req, buf)
		if err != nil {
			t.Fatal(err)
		}
		if bad := <-sum; bad != "" {
			t.Fatal(bad)
		}
		if want := fmt.Sprint("got ", len(req)); string(buf[:n]) != want {
			t.Fatalf("answer %q, want %q", buf[:n], want)
		}
	})
}

// TestWriteReadClosedOutbox: after Close the handler writes its request itself.
func TestWriteReadClosedOutbox(t *testing.T) {
	var o Outbox
	o.Close()
	a, b := pair(t)
	echoServer(t, b)
	a.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 100)
	n, err := New(a).WriteReadBatched(&o, []byte("x"), buf)
	if err != nil || string(buf[:n]) != "re:x" {
		t.Fatalf("WriteReadBatched on a closed outbox = %q, %v", buf[:n], err)
	}
}

// TestWriteReadDeadline: the read deadline bounds the wait for an answer that never comes.
func TestWriteReadDeadline(t *testing.T) {
	forEachWriteReader(t, func(t *testing.T, wr writeReader) {
		a, _ := pair(t)
		a.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		start := time.Now()
		_, err := wr(New(a), []byte("hello"), make([]byte, 10))
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("= %v, want the deadline", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("deadline of 50ms ended the wait after %s", d)
		}
	})
}

// TestWriteReadBatchedReusable: a request the outbox wrote at once leaves the connection
// reusable; one whose rest it had to leave to a goroutine of its own (the send buffer full) does
// not.
func TestWriteReadBatchedReusable(t *testing.T) {
	var o Outbox
	defer o.Close()
	a, b := pair(t)
	echoServer(t, b)
	a.SetDeadline(time.Now().Add(20 * time.Second))
	c := New(a)
	buf := make([]byte, 100)
	if n, err := c.WriteReadBatched(&o, []byte("x"), buf); err != nil || string(buf[:n]) != "re:x" || !c.Reusable() {
		t.Fatalf("small request: %q, %v, reusable %v", buf[:n], err, c.Reusable())
	}

	a2, b2 := pair(t)
	go func() {
		time.Sleep(100 * time.Millisecond) // the send buffer fills meanwhile
		io.Copy(io.Discard, io.LimitReader(b2, 32<<20))
		b2.Write([]byte("done"))
	}()
	a2.SetDeadline(time.Now().Add(20 * time.Second))
	c2 := New(a2)
	// More than the loopback socket buffers take (a few MiB each way).
	n, err := c2.WriteReadBatched(&o, make([]byte, 32<<20), buf)
	if err != nil || string(buf[:n]) != "done" {
		t.Fatalf("large request: %q, %v", buf[:n], err)
	}
	if c2.Reusable() {
		t.Fatal("a connection whose request was finished in the background is reusable")
	}
}
