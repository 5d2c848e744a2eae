package h2srv

import (
	"context"
	"sync"
	"time"
)

// streamCtx is the context of a stream's request: canceled when the stream is reset or its
// handler returns. It lives inside the Stream, so a stream costs no context allocations, and it
// has an AfterFunc method that the proxy calls directly (see l7's afterFunc): with a
// context.WithCancel per stream, each proxied request registered a child in the context's map
// and allocated its done channel, several percent of the CPU per HTTP/2 request.
type streamCtx struct {
	parent context.Context
	mu     sync.Mutex
	done   chan struct{} // made on the first Done, or closedChan when canceled before
	err    error
	after  []*afterEntry
}

// afterEntry is one function registered with AfterFunc.
type afterEntry struct {
	c       *streamCtx
	f       func()
	stopped bool
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (c *streamCtx) init(parent context.Context) {
	c.parent = parent
	if parent.Done() != nil { // a cancelable base context cancels the streams too
		context.AfterFunc(parent, func() { c.cancel(parent.Err()) })
	}
}

func (c *streamCtx) Deadline() (time.Time, bool) { return c.parent.Deadline() }
func (c *streamCtx) Value(key any) any           { return c.parent.Value(key) }

func (c *streamCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		if c.err != nil {
			c.done = closedChan
		} else {
			c.done = make(chan struct{})
		}
	}
	return c.done
}

func (c *streamCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// AfterFunc arranges for f to run in its own goroutine once the context is canceled, as
// context.AfterFunc does (which uses this method too); stop unregisters f and reports whether
// it did so before f was started.
func (c *streamCtx) AfterFunc(f func()) (stop func() bool) {
	e := &afterEntry{c: c, f: f}
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	c.after = append(c.after, e)
	c.mu.Unlock()
	return e.stop
}

func (e *afterEntry) stop() bool {
	c := e.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.stopped || c.err != nil {
		return false
	}
	e.stopped = true
	for i, x := range c.after {
		if x == e {
			c.after = append(c.after[:i], c.after[i+1:]...)
			break
		}
	}
	return true
}

// cancel cancels the context with err (context.Canceled when nil); later calls do nothing.
func (c *streamCtx) cancel(err error) {
	if err == nil {
		err = context.Canceled
	}
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	if c.done != nil {
		close(c.done)
	}
	after := c.after
	c.after = nil
	c.mu.Unlock()
	for _, e := range after {
		go e.f()
	}
}
