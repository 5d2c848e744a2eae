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

type cancelCount chan string

func (c cancelCount) Cancel() { c <- "hook" }

// TestStreamCtxHook: a Hook runs its Canceler once the context ends unless stopped first, can
// be registered again after Stop, runs at once on an ended context, and registering and stopping
// allocate nothing.
func TestStreamCtxHook(t *testing.T) {
	var c streamCtx
	c.init(context.Background())
	ran := make(cancelCount, 4)
	var h, h2 Hook
	c.AddHook(&h, ran)
	if !h.Stop() || h.Stop() {
		t.Fatal("Stop before the cancel: want true once, then false")
	}
	if n := testing.AllocsPerRun(100, func() { c.AddHook(&h, ran); h.Stop() }); n != 0 {
		t.Fatalf("AddHook and Stop allocate %v times", n)
	}
	c.AddHook(&h, ran)
	c.AddHook(&h2, ran)
	h2.Stop()
	c.cancel(nil)
	if h.Stop() {
		t.Fatal("Stop after the cancel = true")
	}
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("the hook did not run")
	}
	c.AddHook(&h, ran) // on an ended context: runs at once
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("the hook on an ended context did not run")
	}
	select {
	case <-ran:
		t.Fatal("the stopped hook ran")
	case <-time.After(50 * time.Millisecond):
	}
}
