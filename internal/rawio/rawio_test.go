//go:build linux

package rawio

import (
	"bytes"
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

// TestPumpEOF: a FIN that arrives together with the last data (one readiness edge for both) is
// still seen; Pump must not wait for an edge that will never come.
func TestPumpEOF(t *testing.T) {
	for _, tc := range []struct {
		name     string
		finDelay time.Duration // -1: FIN with the data, before Pump starts
	}{
		{"fin with the data", -1},
		{"fin later", 100 * time.Millisecond},
		{"no data, fin only", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, inside := pair(t)
			outside, server := pair(t)
			data := []byte("hello, half-closed world\n")
			if tc.name == "no data, fin only" {
				data = nil
			}
			client.Write(data)
			if tc.finDelay < 0 {
				client.CloseWrite()
				time.Sleep(50 * time.Millisecond)
			} else {
				time.AfterFunc(tc.finDelay, func() { client.CloseWrite() })
			}
			inside.SetReadDeadline(time.Now().Add(5 * time.Second))
			touched := 0
			n, err := Pump(New(inside), New(outside), make([]byte, 32<<10), func() { touched++ })
			if !errors.Is(err, io.EOF) || n != int64(len(data)) {
				t.Fatalf("Pump = %d, %v; want %d, EOF", n, err, len(data))
			}
			outside.CloseWrite()
			got, _ := io.ReadAll(server)
			if !bytes.Equal(got, data) {
				t.Errorf("server got %q, want %q", got, data)
			}
		})
	}
}

// TestPumpMessagesAndDeadline: several messages with pauses are all copied, and the read
// deadline still ends a silent Pump.
func TestPumpMessagesAndDeadline(t *testing.T) {
	client, inside := pair(t)
	outside, server := pair(t)
	go func() {
		for i := 0; i < 5; i++ {
			client.Write([]byte("message\n"))
			time.Sleep(20 * time.Millisecond)
		}
	}()
	inside.SetReadDeadline(time.Now().Add(400 * time.Millisecond))
	n, err := Pump(New(inside), New(outside), make([]byte, 1024), func() {})
	if !errors.Is(err, os.ErrDeadlineExceeded) || n != 40 {
		t.Fatalf("Pump = %d, %v; want 40, deadline exceeded", n, err)
	}
	server.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 100)
	got := 0
	for got < 40 {
		k, err := server.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got += k
	}
}

// TestPumpBulk: reads that fill the buffer report ErrBulk, with every byte copied so far.
func TestPumpBulk(t *testing.T) {
	client, inside := pair(t)
	outside, server := pair(t)
	go io.Copy(io.Discard, server)
	big := make([]byte, 1<<20)
	go client.Write(big)
	inside.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := Pump(New(inside), New(outside), make([]byte, 4096), func() {})
	if !errors.Is(err, ErrBulk) || n < 8192 {
		t.Fatalf("Pump = %d, %v; want ErrBulk after at least two full reads", n, err)
	}
}
