// Package listener runs accept loops for waage's HTTP and TCP servers and lets a reload hand a
// listening socket from one server to another without refusing a connection.
package listener

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ErrClosed is returned by Serve when the server is shutting down.
var ErrClosed = errors.New("listener: server closed")

// Set is the listeners one server accepts on. The zero value is ready to use.
type Set struct {
	mu sync.Mutex
	m  map[net.Listener]*state
}

// state is one listener being served.
type state struct {
	detached atomic.Bool
	done     chan struct{} // closed when Serve returns
}

// Serve accepts connections on ln and passes each to handle, until ln fails (the error is
// returned), closing reports true (ErrClosed: the server shuts down) or Detach(ln) (nil).
// Accept errors that pass with time (out of file descriptors) are retried with a backoff of 5 ms
// doubling to 1 s, reported to warn first.
func (s *Set) Serve(ln net.Listener, closing func() bool, handle func(net.Conn), warn func(err error, retryIn time.Duration)) error {
	s.mu.Lock()
	if closing() {
		s.mu.Unlock()
		return ErrClosed
	}
	st := &state{done: make(chan struct{})}
	if s.m == nil {
		s.m = map[net.Listener]*state{}
	}
	s.m[ln] = st
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.m[ln] == st {
			delete(s.m, ln)
		}
		s.mu.Unlock()
		close(st.done)
	}()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if st.detached.Load() {
				return nil
			}
			if closing() {
				return ErrClosed
			}
			var ne net.Error
			var tmp interface{ Temporary() bool }
			if errors.As(err, &ne) && ne.Timeout() || errors.As(err, &tmp) && tmp.Temporary() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				warn(err, backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		handle(c)
	}
}

// Detach stops accepting on ln without closing it, and returns once Serve(ln) has returned, so
// another server can Serve it at once.
func (s *Set) Detach(ln net.Listener) {
	s.mu.Lock()
	st := s.m[ln]
	s.mu.Unlock()
	if st == nil {
		return
	}
	st.detached.Store(true)
	dl, ok := ln.(interface{ SetDeadline(time.Time) error })
	if ok {
		dl.SetDeadline(time.Now()) // wake Accept
	}
	<-st.done
	if ok {
		dl.SetDeadline(time.Time{})
	}
}

// CloseAll closes every listener being served; their Serve calls return once closing reports
// true (the caller sets that first).
func (s *Set) CloseAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ln := range s.m {
		ln.Close()
	}
}
