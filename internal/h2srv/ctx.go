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
	// stopParent unregisters init's AfterFunc on a cancelable parent; nil otherwise.
	stopParent func() bool
	mu         sync.Mutex
	done       chan struct{} // made on the first Done, or closedChan when canceled before
	err        error
	after      []*afterEntry
	inline     [2]*afterEntry // after's first array: registering costs no allocation
}

// afterEntry is one function registered with AfterFunc, or one Hook.
type afterEntry struct {
	c       *streamCtx
	f       func()
	x       Canceler
	stopped bool
}

// Canceler is what a Hook calls when the stream's context ends.
type Canceler interface{ Cancel() }

// Hook runs a Canceler's Cancel in its own goroutine once a stream's context ends, as AfterFunc
// does for a function, in memory the caller owns: registering and stopping it allocate nothing
// (AfterFunc's entry, its stop function and the caller's closure were four allocations of each
// proxied request). A Hook is registered with the context's AddHook and may be registered again
// after Stop.
type Hook struct{ e afterEntry }

// AddHook registers h to call x.Cancel when the context ends (at once, in a goroutine, when it
// has ended already).
func (c *streamCtx) AddHook(h *Hook, x Canceler) {
	c.mu.Lock()
	h.e = afterEntry{c: c, x: x}
	if c.err != nil {
		c.mu.Unlock()
		go x.Cancel()
		return
	}
	c.addLocked(&h.e)
	c.mu.Unlock()
}

// Stop unregisters h and reports whether it did so before Cancel was started.
func (h *Hook) Stop() bool { return h.e.stop() }

func (c *streamCtx) addLocked(e *afterEntry) {
	if c.after == nil {
		c.after = c.inline[:0]
	}
	c.after = append(c.after, e)
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (c *streamCtx) init(parent context.Context) {
	c.parent = parent
	if parent.Done() != nil { // a cancelable base context cancels the streams too
		c.stopParent = context.AfterFunc(parent, func() { c.cancel(parent.Err()) })
	}
}

// release reports whether nothing of the context's own holds it any more (after cancel): the
// parent's AfterFunc, when there is one, is unregistered.
func (c *streamCtx) release() bool {
	return c.stopParent == nil || c.stopParent()
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
	c.addLocked(e)
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
			n := copy(c.after[i:], c.after[i+1:])
			c.after[i+n] = nil
			c.after = c.after[:i+n]
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
	// Started under the lock: a Hook's owner may register it again once Stop has failed.
	for _, e := range c.after {
		if e.x != nil {
			go e.x.Cancel()
		} else {
			go e.f()
		}
	}
	c.after = nil
	c.mu.Unlock()
}
