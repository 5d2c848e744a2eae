//go:build linux

package rawio

import (
	"errors"
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
