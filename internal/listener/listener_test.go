package listener

import (
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// TestDetachHandsOver: a listener detached from one set is served by another, and connections
// made meanwhile wait in the backlog instead of being refused.
func TestDetachHandsOver(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var a, b Set
	var gotA, gotB atomic.Int64
	never := func() bool { return false }
	warn := func(error, time.Duration) {}
	errA := make(chan error, 1)
	go func() { errA <- a.Serve(ln, never, func(c net.Conn) { gotA.Add(1); c.Close() }, warn) }()
	dial := func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		c.Read(make([]byte, 1)) // returns when the server closed it
		c.Close()
	}
	dial()
	a.Detach(ln)
	if err := <-errA; err != nil {
		t.Fatalf("detached Serve returned %v, want nil", err)
	}
	// Connect while nobody accepts: the backlog holds it for the next owner.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("connect between owners refused: %v", err)
	}
	defer c.Close()
	closing := atomic.Bool{}
	errB := make(chan error, 1)
	go func() { errB <- b.Serve(ln, closing.Load, func(c net.Conn) { gotB.Add(1); c.Close() }, warn) }()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	c.Read(make([]byte, 1))
	if gotA.Load() != 1 || gotB.Load() != 1 {
		t.Fatalf("accepted by a: %d, by b: %d; want 1 each", gotA.Load(), gotB.Load())
	}
	closing.Store(true)
	b.CloseAll()
	if err := <-errB; !errors.Is(err, ErrClosed) {
		t.Fatalf("Serve after CloseAll returned %v, want ErrClosed", err)
	}
	if err := b.Serve(ln, closing.Load, nil, warn); !errors.Is(err, ErrClosed) {
		t.Fatalf("Serve on a closing set returned %v", err)
	}
}
