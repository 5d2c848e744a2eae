//go:build linux

// Package rawio reads and writes TCP sockets with raw system calls through the runtime poller:
// the hot-path I/O of the HTTP and TCP proxies.
package rawio

import (
	"errors"
	"io"
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
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

	inqTried, inq bool // Pump asked for TCP_INQ; the kernel agreed

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

// Pump copies from src to dst through buf until src reaches EOF (io.EOF), an error, src's read
// deadline, or two reads in a row fill buf (ErrBulk: the caller may switch to splice). touch is
// called after every chunk written. It is the TCP proxy's hot loop, built for request/response
// traffic.
//
// A plain loop pays a read that fails with EAGAIN after every message, to learn that the
// receive queue is empty. Pump asks the kernel instead: with TCP_INQ each recvmsg reports how
// many bytes are left, and 1 when the queue is empty but the peer's FIN has arrived, so the
// loop reads again only when there is something to read, and otherwise waits for the poller's
// next readiness edge (every arrival of data or FIN raises one). That is a third fewer read
// calls per message, as HAProxy saves with EPOLLRDHUP. Everything happens inside one poller read
// on src, because starting a new one resets the poller's readiness state and so could not
// skip the read. The write to dst is a poller write of its own, nested: the two sockets' locks
// are separate, and holding src's keeps its descriptor from being closed and reused meanwhile.
// Where TCP_INQ is refused, Pump reads until EAGAIN like Read.
func Pump(src, dst *Conn, buf []byte, touch func()) (int64, error) {
	if !src.inqTried {
		src.inqTried = true
		src.rc.Control(func(fd uintptr) {
			src.inq = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_INQ, 1) == nil
		})
	}
	var total int64
	var rerr syscall.Errno
	var werr error
	eof, bulk := false, false
	full := 0
	iov := syscall.Iovec{Base: &buf[0]}
	iov.SetLen(len(buf))
	var ctl [64]byte
	msg := syscall.Msghdr{Iov: &iov, Iovlen: 1}
	err := src.rc.Read(func(fd uintptr) bool {
		for {
			msg.Control, msg.Flags = &ctl[0], 0
			msg.SetControllen(len(ctl))
			n, _, e := syscall.RawSyscall(syscall.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&msg)), 0)
			switch e {
			case 0:
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false
			default:
				rerr = e
				return true
			}
			if n == 0 {
				eof = true
				return true
			}
			if _, werr = dst.Write(buf[:n], nil); werr != nil {
				return true
			}
			total += int64(n)
			touch()
			if int(n) == len(buf) {
				if full++; full >= 2 {
					bulk = true
					return true
				}
				continue
			}
			full = 0
			if src.inq && inqOf(&msg, ctl[:]) == 0 {
				return false // empty, no FIN: wait for the next edge
			}
		}
	})
	switch {
	case err != nil:
		return total, err
	case rerr != 0:
		return total, &net.OpError{Op: "read", Net: "tcp", Err: rerr}
	case werr != nil:
		return total, werr
	case eof:
		return total, io.EOF
	case bulk:
		return total, ErrBulk
	}
	return total, nil
}

// inqOf returns the TCP_CM_INQ value of a recvmsg's control data, or -1 when there is none.
func inqOf(msg *syscall.Msghdr, ctl []byte) int {
	l := int(msg.Controllen)
	if l < syscall.CmsgLen(4) || l > len(ctl) {
		return -1
	}
	h := (*syscall.Cmsghdr)(unsafe.Pointer(&ctl[0]))
	if h.Level != unix.IPPROTO_TCP || h.Type != unix.TCP_CM_INQ {
		return -1
	}
	return int(*(*int32)(unsafe.Pointer(&ctl[syscall.CmsgLen(0)])))
}

// ErrBulk is Pump's report that the traffic is bulk: reads fill the buffer.
var ErrBulk = errors.New("rawio: bulk transfer")
