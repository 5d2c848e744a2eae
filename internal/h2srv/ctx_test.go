package h2srv

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestStreamCtx pins the stream context's contract: the context package's semantics (Done, Err,
// Value, AfterFunc through context.AfterFunc too), stop before and after the cancel, and a
// canceled base context canceling the stream.
func TestStreamCtx(t *testing.T) {
	type key struct{}
	var c streamCtx
	c.init(context.WithValue(context.Background(), key{}, "v"))
	if c.Value(key{}) != "v" || c.Err() != nil {
		t.Fatalf("Value %v, Err %v", c.Value(key{}), c.Err())
	}
	ran := make(chan string, 3)
	stopped := c.AfterFunc(func() { ran <- "stopped" })
	c.AfterFunc(func() { ran <- "direct" })
	context.AfterFunc(&c, func() { ran <- "via context" })
	if !stopped() || stopped() {
		t.Fatal("stop before the cancel: want true once, then false")
	}
	done := c.Done()
	select {
	case <-done:
		t.Fatal("done before the cancel")
	default:
	}
	c.cancel(nil)
	c.cancel(errors.New("second")) // no effect
	<-done
	if !errors.Is(c.Err(), context.Canceled) {
		t.Fatalf("Err = %v", c.Err())
	}
	got := map[string]bool{}
	for range 2 {
		select {
		case s := <-ran:
			got[s] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("after funcs ran: %v", got)
		}
	}
	if !got["direct"] || !got["via context"] {
		t.Fatalf("after funcs ran: %v", got)
	}
	select {
	case s := <-ran:
		t.Fatalf("%s ran after its stop", s)
	case <-time.After(50 * time.Millisecond):
	}
	late := make(chan struct{})
	if c.AfterFunc(func() { close(late) })() {
		t.Fatal("stop after the cancel reported true")
	}
	<-late // registered after the cancel: runs at once

	parent, cancel := context.WithCancel(context.Background())
	var d streamCtx
	d.init(parent)
	cancel()
	select {
	case <-d.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a canceled base context did not cancel the stream")
	}
}
