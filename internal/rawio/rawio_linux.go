//go:build linux

// Package rawio reads and writes TCP sockets with raw system calls through the runtime poller:
// the hot-path I/O of the HTTP and TCP proxies.
package rawio

import (
	"bytes"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
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

	writeReadFn func(uintptr) bool
	batchFn     func(uintptr) bool
	outbox      *Outbox // where batchFn queues wbufs[0]

	// incomplete is set when an outbox left the rest of a request to a goroutine of its own
	// (see Outbox.send): the connection must not carry another request.
	incomplete atomic.Bool
}

// Reusable reports whether the connection may carry another request: false once an outbox had
// to finish writing one in the background, since a server that answered before reading it all
// could otherwise see the next request interleaved with its rest.
func (r *Conn) Reusable() bool { return !r.incomplete.Load() }

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
	r.writeReadFn = r.doWriteRead
	r.batchFn = r.doBatchedRead
	return r
}

// The calls are recvfrom, sendto and sendmsg rather than read, write and writev: the socket calls
// skip the file layer (its position lock and dispatch), about 2% of a proxied request's CPU.
// MSG_NOSIGNAL: a peer's reset is an EPIPE error, as the runtime (which ignores SIGPIPE on
// sockets) makes it for net.Conn.

func send(fd uintptr, b []byte) (uintptr, uintptr, syscall.Errno) {
	return syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), syscall.MSG_NOSIGNAL, 0, 0)
}

func (r *Conn) doRead(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&r.rbuf[0])), uintptr(len(r.rbuf)), 0, 0, 0)
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
			msg := syscall.Msghdr{Iov: &iov[0], Iovlen: 2}
			n, _, e = syscall.RawSyscall(syscall.SYS_SENDMSG, fd, uintptr(unsafe.Pointer(&msg)), syscall.MSG_NOSIGNAL)
		} else {
			b := r.wbufs[0]
			if len(b) == 0 {
				b = r.wbufs[1]
			}
			n, _, e = send(fd, b)
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

// doWriteRead is doWrite until the bytes are out, then doRead.
func (r *Conn) doWriteRead(fd uintptr) bool {
	if len(r.wbufs[0]) > 0 {
		if !r.doWrite(fd) {
			return true // the send buffer is full: WriteRead finishes through the poller
		}
		// Written (or failed): on success wait for the answer's readiness, no read before it.
		return r.werr != 0
	}
	return r.doRead(fd)
}

// Read reads into p like net.Conn.Read.
func (r *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.rbuf, r.rn, r.rerr = p, 0, 0
	return r.readResult(r.rc.Read(r.readFn))
}

// WriteRead writes all of w and then reads the answer into p, like Write(w, nil) followed by
// Read(p), but without the read that a request's answer cannot have reached yet.
//
// The poller forgets a socket's earlier readiness when a read starts (that is how it avoids
// stale wake-ups), so Read must try the system call first, and right after a request went out
// that try fails with EAGAIN: one wasted system call per proxied request. Here the request is
// written inside the read's poller call, after the poller has forgotten, so the answer's arrival
// is a readiness the wait sees, and the first read finds the answer there. A server that closed
// the connection meanwhile answers the write with a reset, which wakes the wait too.
func (r *Conn) WriteRead(w, p []byte) (int, error) {
	return r.writeRead(r.writeReadFn, w, p)
}

// writeRead runs fn (doWriteRead or doBatchedRead) in a read of the poller, and finishes what
// the send buffer could not take at once through the poller.
func (r *Conn) writeRead(fn func(uintptr) bool, w, p []byte) (int, error) {
	if len(w) == 0 {
		return r.Read(p)
	}
	r.wbufs[0], r.wbufs[1], r.wn, r.werr = w, nil, 0, 0
	r.rbuf, r.rn, r.rerr = p, 0, 0
	err := r.rc.Read(fn)
	rest := r.wbufs[0]
	r.wbufs[0] = nil
	if err == nil && r.werr != 0 {
		err = &net.OpError{Op: "write", Net: "tcp", Err: r.werr}
	}
	if err != nil || len(rest) == 0 {
		return r.readResult(err)
	}
	// The send buffer was full: the rest goes out through the poller, the answer is read as usual.
	if _, err := r.Write(rest, nil); err != nil {
		r.rbuf = nil
		return 0, err
	}
	return r.Read(p)
}

// readResult turns a read's outcome into Read's results.
func (r *Conn) readResult(err error) (int, error) {
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

// Outbox writes requests for WriteReadBatched in batches: the handlers of the streams that one
// read from a multiplexing client started queue their requests to servers, and one goroutine
// writes them back to back, after letting the other ready handlers queue theirs.
//
// Why: written one by one as each handler got there, the requests reached the servers spread
// out, and a server such as nginx woke for nearly each of them (h2load through waage to nginx:
// nginx slept once per 4.5 requests, against once per 11 behind HAProxy, and spent a third more
// CPU per request). HAProxy's event loop sends what all its ready streams produced at once; the
// outbox does the same for the streams of one connection.
type Outbox struct {
	mu      sync.Mutex
	buf     []byte // the queued requests, back to back
	entries []outEntry
	spare   []byte // the previous batch's arrays, for reuse
	spareE  []outEntry
	busy    bool // a flush is pending or running
	closed  bool
	wake    chan struct{}

	// The write in progress (run's goroutine only; see send). Not the connection's fields: the
	// connection may be in another outbox's hands as soon as its answer was read.
	qbuf     []byte
	qblocked bool
	queuedFn func(uintptr) bool
}

type outEntry struct {
	c      *Conn
	off, n int
}

// Close ends the outbox's goroutine once it has written what is queued; later requests are
// written by their handlers.
func (o *Outbox) Close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.closed {
		o.closed = true
		if o.wake != nil {
			close(o.wake)
		}
	}
}

// doBatchedRead queues wbufs[0] in the outbox (or writes it) and then reads like doRead.
func (r *Conn) doBatchedRead(fd uintptr) bool {
	w := r.wbufs[0]
	if len(w) == 0 {
		return r.doRead(fd)
	}
	o := r.outbox
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return r.doWriteRead(fd)
	}
	r.wbufs[0] = nil
	// A copy: the caller's buffer is free again when this read returns, perhaps before the
	// outbox has written it (a read that fails on its deadline or a closed connection).
	o.entries = append(o.entries, outEntry{c: r, off: len(o.buf), n: len(w)})
	o.buf = append(o.buf, w...)
	if !o.busy {
		o.busy = true
		if o.wake == nil {
			o.wake = make(chan struct{}, 1)
			go o.run()
		}
		o.wake <- struct{}{}
	}
	o.mu.Unlock()
	// The poller forgot earlier readiness before this call, so the answer's arrival after the
	// outbox wrote the request is a readiness the wait sees (see WriteRead).
	return false
}

// WriteReadBatched is WriteRead with the write left to o, which writes it together with the
// requests of other handlers that are ready to run; with no outbox it is WriteRead.
func (r *Conn) WriteReadBatched(o *Outbox, w, p []byte) (int, error) {
	if o == nil {
		return r.WriteRead(w, p)
	}
	r.outbox = o
	n, err := r.writeRead(r.batchFn, w, p)
	r.outbox = nil
	return n, err
}

// run writes what is queued each time it is woken, until Close.
func (o *Outbox) run() {
	for range o.wake {
		// Let the handlers that are ready to run queue their requests first. Where nothing
		// else is ready, this returns at once.
		runtime.Gosched()
		o.mu.Lock()
		for len(o.entries) > 0 {
			buf, entries := o.buf, o.entries
			o.buf, o.entries = o.spare[:0], o.spareE[:0]
			o.mu.Unlock()
			for i := range entries {
				e := &entries[i]
				o.send(e.c, buf[e.off:e.off+e.n])
				entries[i] = outEntry{}
			}
			o.mu.Lock()
			o.spare, o.spareE = buf, entries
		}
		o.busy = false
		o.mu.Unlock()
	}
}

// send writes b for the handler waiting in WriteReadBatched on c. A write that fails leaves the
// socket in error (or closed), which ends the handler's read; what the send buffer cannot take
// at once is written by a goroutine of its own, so one slow server does not hold up the requests
// to others.
func (o *Outbox) send(c *Conn, b []byte) {
	if o.queuedFn == nil {
		o.queuedFn = o.doQueued
	}
	o.qbuf, o.qblocked = b, false
	c.rc.Write(o.queuedFn)
	b, blocked := o.qbuf, o.qblocked
	o.qbuf = nil
	if blocked {
		c.incomplete.Store(true)
		go c.finishWrite(bytes.Clone(b))
	}
}

// finishWrite writes rest through the poller: the part of an outbox's write that the send buffer
// did not take at once. A function of its own: the closure's variables, declared in send, were
// an allocation of every send.
func (c *Conn) finishWrite(rest []byte) {
	c.rc.Write(func(fd uintptr) bool {
		var blocked bool
		rest, blocked = writeAll(fd, rest)
		return !blocked
	})
}

func (o *Outbox) doQueued(fd uintptr) bool {
	o.qbuf, o.qblocked = writeAll(fd, o.qbuf)
	return true
}

// writeAll writes b until it is written, the send buffer is full (blocked, with what is left),
// or the write fails.
func writeAll(fd uintptr, b []byte) (rest []byte, blocked bool) {
	for len(b) > 0 {
		n, _, e := send(fd, b)
		switch e {
		case 0:
			b = b[n:]
		case syscall.EINTR:
		case syscall.EAGAIN:
			return b, true
		default:
			return nil, false
		}
	}
	return nil, false
}

// NetConn is a TCP connection whose Read and Write are Conn's: for code that reads and writes
// through a net.Conn, such as crypto/tls and the HTTP/2 server, on the hot path (see Conn for
// why). Everything else is the TCP connection's.
type NetConn struct {
	*net.TCPConn
	raw *Conn
}

// NewNetConn returns c as a NetConn, or c itself when it is not a plain TCP connection.
func NewNetConn(c net.Conn) net.Conn {
	raw := New(c)
	if raw == nil {
		return c
	}
	return &NetConn{TCPConn: c.(*net.TCPConn), raw: raw}
}

func (c *NetConn) Read(p []byte) (int, error) { return c.raw.Read(p) }

func (c *NetConn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return c.raw.Write(p, nil)
}
