//go:build !linux

// Package rawio reads and writes TCP sockets with raw system calls (Linux only); elsewhere New
// returns nil and callers use net.Conn.
package rawio

import "net"

// Conn is the raw-syscall socket I/O of rawio_linux.go; elsewhere there is none.
type Conn struct{}

// New returns nil: callers fall back to net.Conn.
func New(net.Conn) *Conn { return nil }

func (*Conn) Read([]byte) (int, error) { panic("rawio: not supported") }

func (*Conn) Write(a, b []byte) (int, error) { panic("rawio: not supported") }

func (*Conn) WriteRead(w, p []byte) (int, error) { panic("rawio: not supported") }
func (*Conn) WriteReadBatched(o *Outbox, w, p []byte) (int, error) {
	panic("rawio: not supported")
}

func (*Conn) Reusable() bool { return true }

// Outbox batches writes for WriteReadBatched on Linux.
type Outbox struct{}

func (*Outbox) Close() {}

// NewNetConn returns c: raw I/O is for Linux.
func NewNetConn(c net.Conn) net.Conn { return c }
