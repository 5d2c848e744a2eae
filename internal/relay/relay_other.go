//go:build !linux

package relay

import (
	"errors"
	"net"
	"time"
)

// Session is one relayed pair of sockets; elsewhere than Linux there are none.
type Session struct{}

// ErrUnsupported is returned by Start where relaying is not available; the caller copies itself.
var ErrUnsupported = errors.New("relay: not supported")

// Start always fails here: the callers copy with goroutines instead.
func Start(client, server *net.TCPConn, idle time.Duration) (*Session, error) {
	return nil, ErrUnsupported
}

func (s *Session) Wait()                   {}
func (s *Session) Done() <-chan struct{}   { return nil }
func (s *Session) Bytes() (up, down int64) { return 0, 0 }
func (s *Session) Close()                  {}
func (s *Session) Ended() End              { return EndClosed }
