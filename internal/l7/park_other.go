//go:build !linux

package l7

import "time"

// parker is the idle-connection parking lot; without epoll, idle connections wait in their own
// goroutine instead (see park_linux.go).
type parker struct{}

var idleParker parker

func (p *parker) park(*clientConn, time.Time) bool { return false }

func (p *parker) closeServer(*Server) {}
