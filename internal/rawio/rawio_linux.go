//go:build linux

// Package rawio reads and writes TCP sockets with raw system calls through the runtime poller:
// the hot-path I/O of the HTTP and TCP proxies.
package rawio

import (
	"io"
	"net"
	"syscall"
	"unsafe"
)

// Conn reads and writes a TCP socket with raw system calls, through the runtime poller
// (syscall.RawConn), instead of net.Conn's Read and Write. It is hand-written for the hot path.
//
// Why: net.Conn marks every read and write as a blocking system call. On a busy 2-core machine a
// loopback write that hands data to a waiting peer often takes longer than the runtime's 20 µs
// monitor tick, so the monitor "retakes" the processor, wakes another thread for it, and never
// backs off from its own 20 µs wake-ups; profiled, that scheduler churn cost about a tenth of
// waage's CPU. These sockets are non-blocking, so a raw call returns at once either way; waiting
// for readiness still goes through the poller (the callback returns false), deadlines included.
//
// Reads and writes keep separate state, since one goroutine may read a connection while another
// writes it (a request body streaming in while the response streams out).
type Conn struct {
	rc syscall.RawConn

	rbuf   []byte
	rn     int
	rerr   syscall.Errno
	readFn func(uintptr) bool

	wbufs   [2][]byte
	wn      int
	werr    syscall.Errno
	writeFn func(uintptr) bool
}

// New returns raw I/O for c, or nil when c is not a plain TCP connection.
func New(c net.Conn) *Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	r := &Conn{rc: rc}
	r.readFn = r.doRead
	r.writeFn = r.doWrite
	return r
}

func (r *Conn) doRead(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&r.rbuf[0])), uintptr(len(r.rbuf)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // wait for readiness in the poller
		}
		r.rn, r.rerr = int(n), e
		return true
	}
}

// doWrite writes wbufs[0] then wbufs[1], with one writev while both have bytes left.
func (r *Conn) doWrite(fd uintptr) bool {
	for len(r.wbufs[0])+len(r.wbufs[1]) > 0 {
		var n uintptr
		var e syscall.Errno
		if len(r.wbufs[0]) > 0 && len(r.wbufs[1]) > 0 {
			iov := [2]syscall.Iovec{{Base: &r.wbufs[0][0]}, {Base: &r.wbufs[1][0]}}
			iov[0].SetLen(len(r.wbufs[0]))
			iov[1].SetLen(len(r.wbufs[1]))
			n, _, e = syscall.RawSyscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), 2)
		} else {
			b := r.wbufs[0]
			if len(b) == 0 {
				b = r.wbufs[1]
			}
			n, _, e = syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		}
		switch e {
		case 0:
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		default:
			r.werr = e
			return true
		}
		r.wn += int(n)
		for i := range r.wbufs {
			k := min(int(n), len(r.wbufs[i]))
			r.wbufs[i] = r.wbufs[i][k:]
			n -= uintptr(k)
		}
	}
	return true
}

// Read reads into p like net.Conn.Read.
func (r *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.rbuf, r.rn, r.rerr = p, 0, 0
	err := r.rc.Read(r.readFn)
	r.rbuf = nil
	switch {
	case err != nil:
		return 0, err
	case r.rerr != 0:
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: r.rerr}
	case r.rn == 0:
		return 0, io.EOF
	}
	return r.rn, nil
}

// Write writes all of a and then b, like net.Buffers.WriteTo; it returns the bytes written.
func (r *Conn) Write(a, b []byte) (int, error) {
	r.wbufs[0], r.wbufs[1], r.wn, r.werr = a, b, 0, 0
	err := r.rc.Write(r.writeFn)
	r.wbufs[0], r.wbufs[1] = nil, nil
	if err == nil && r.werr != 0 {
		err = &net.OpError{Op: "write", Net: "tcp", Err: r.werr}
	}
	return r.wn, err
}
