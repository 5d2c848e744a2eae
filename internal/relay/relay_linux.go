//go:build linux

// Package relay is the TCP proxy's data path: it moves bytes both ways between pairs of connected
// TCP sockets in a few event loops, the way HAProxy and nginx do, instead of two goroutines per
// connection.
//
// Why it is hand-written: with a goroutine per direction every message costs the Go scheduler a
// wake-up (the poller readies the goroutine, another thread may be woken to run it), and on a
// busy 2-core machine that cost more CPU per proxied request than the copying itself; waage was
// at 0.85× HAProxy's request rate. A loop instead waits in epoll_wait and handles every ready
// socket in one go, so a batch of messages costs one wake-up.
//
// Each loop is one goroutine that owns its sockets (duplicates of the proxied connections'
// descriptors, so the runtime poller no longer sees them) and its epoll instance, and it waits
// in epoll_wait as a raw system call: to the runtime the goroutine keeps running on its
// processor (P), so waking up costs no scheduler hand-off at all. That holds one P per loop, so
// starting the loops raises GOMAXPROCS by their number and the rest of the program keeps as many
// Ps as before. The runtime still stops the loops when it needs to (garbage collection, its 10 ms
// preemption): its preemption signal interrupts epoll_wait with EINTR and the loop yields.
//
// Per direction the loop reads with recvmsg and TCP_INQ (which tells it whether more bytes are
// queued, so it need not read again only to get EAGAIN) and writes at once to the other socket;
// what the other socket does not take waits in a buffer of that direction while the reading
// stops (backpressure). Once a direction fills the read buffer twice in a row it turns bulk and
// moves through a pipe with splice, without copying through user space. EOF on one side is
// passed on as a half-close (shutdown SHUT_WR) once its bytes are written; the session ends when
// both directions ended, on any error (both sockets are closed), or when no byte moved either way
// for the idle timeout.
package relay

import (
	"errors"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	bufSize   = 32 << 10 // a loop's read buffer, shared by its sessions
	pipeChunk = 1 << 20  // at most this much per splice call
	// budget bounds the bytes one direction may move per wake-up, so a bulk transfer cannot keep
	// the loop from its other sessions; the rest is taken up in the loop's next round.
	budget = 1 << 20
	// maxWait bounds one epoll_wait: idle timeouts are checked at least this often.
	maxWait = time.Second
	// busyWait bounds a wait that keeps the P (in milliseconds): a loop that found nothing to
	// do for that long waits as a blocking call again.
	busyWait = 1
)

// Session is one relayed pair of sockets.
type Session struct {
	a, b side // the client and the server socket
	idle int64
	loop *loop

	// Owned by the loop.
	last   int64 // when a byte last moved, on the loop's clock
	closed bool

	killed atomic.Bool
	done   chan struct{}
	// Bytes moved client to server and back, and how the session ended; final once Wait
	// returned.
	up, down int64
	ended    End
}

// side is one socket of a session and the direction that writes into it.
type side struct {
	fd   int
	s    *Session
	peer *side
	// Bytes read from peer that fd has not taken yet: in out, or piped in pipe.
	out   []byte
	pipe  [2]int
	piped int

	readable bool // fd may have bytes or EOF to read
	eof      bool // fd reached EOF
	wclosed  bool // fd was shut down for writing: peer's EOF passed on
	full     int  // reads from fd in a row that filled the buffer
	bulk     bool // fd's bytes move through peer's pipe
	again    bool // fd is on the loop's list to read more in the next round
	moved    *int64
}

func (d *side) pending() bool { return len(d.out) > 0 || d.piped > 0 }

// done reports whether fd's direction (fd to peer) has ended: EOF read and passed on.
func (d *side) done() bool { return d.eof && d.peer.wclosed }

type loop struct {
	epfd, wakefd int
	events       []unix.EpollEvent
	buf          []byte
	ctl          [64]byte

	mu    sync.Mutex
	adds  []*Session
	kills []*Session
	woken atomic.Bool

	fds      map[int32]*side
	sessions map[*Session]struct{}
	again    []*side
	now      int64
	nextScan int64
}

var (
	loopsOnce sync.Once
	loops     []*loop
	loopsErr  error
	nextLoop  atomic.Uint32
	clock     = time.Now()
)

func monotonic() int64 { return int64(time.Since(clock)) }

// start starts one loop per P and raises GOMAXPROCS by as many (see the package comment).
func start() {
	n := runtime.GOMAXPROCS(0)
	ls := make([]*loop, 0, n)
	for range n {
		l, err := newLoop()
		if err != nil {
			for _, l := range ls {
				unix.Close(l.epfd)
				unix.Close(l.wakefd)
			}
			loopsErr = err
			return
		}
		ls = append(ls, l)
	}
	runtime.GOMAXPROCS(2 * n)
	// Each loop on a CPU of its own when the process has exactly as many: two loops that the
	// kernel happens to put on one CPU serve a third less (measured with bench/l4.sh on 2 cores).
	// With more CPUs allowed than loops (a CPU quota), the kernel places them.
	cpus := allowedCPUs()
	for i, l := range ls {
		cpu := -1
		if len(cpus) == len(ls) {
			cpu = cpus[i]
		}
		go l.run(cpu)
	}
	loops = ls
}

// allowedCPUs lists the CPUs this process may run on.
func allowedCPUs() []int {
	var set unix.CPUSet
	if unix.SchedGetaffinity(0, &set) != nil {
		return nil
	}
	var cpus []int
	for i := 0; i < len(set)*64 && len(cpus) < set.Count(); i++ {
		if set.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	return cpus
}

func newLoop() (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wakefd)}); err != nil {
		unix.Close(epfd)
		unix.Close(wakefd)
		return nil, err
	}
	return &loop{
		epfd: epfd, wakefd: wakefd,
		events:   make([]unix.EpollEvent, 128),
		buf:      make([]byte, bufSize),
		fds:      map[int32]*side{},
		sessions: map[*Session]struct{}{},
	}, nil
}

// ErrUnsupported is returned by Start where relaying is not available; the caller copies itself.
var ErrUnsupported = errors.New("relay: not supported")

// Start relays between client and server, which must be connected TCP sockets, until both
// directions ended, an error, or idle (if > 0) without a byte either way. It takes the connections over:
// they are closed at once (the loop works on duplicates of their descriptors) and must not be
// used again. On an error nothing was taken over and the connections are left as they were.
func Start(client, server *net.TCPConn, idle time.Duration) (*Session, error) {
	loopsOnce.Do(start)
	if loopsErr != nil {
		return nil, loopsErr
	}
	afd, err := dupConn(client)
	if err != nil {
		return nil, err
	}
	bfd, err := dupConn(server)
	if err != nil {
		unix.Close(afd)
		return nil, err
	}
	client.Close()
	server.Close()
	s := &Session{idle: int64(idle), done: make(chan struct{})}
	s.a = side{fd: afd, s: s, pipe: [2]int{-1, -1}, moved: &s.up}
	s.b = side{fd: bfd, s: s, pipe: [2]int{-1, -1}, moved: &s.down}
	s.a.peer, s.b.peer = &s.b, &s.a
	l := loops[nextLoop.Add(1)%uint32(len(loops))]
	s.loop = l
	l.mu.Lock()
	l.adds = append(l.adds, s)
	l.mu.Unlock()
	l.wake()
	return s, nil
}

func dupConn(c *net.TCPConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	nfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, derr
	}
	// The duplicate shares the socket and its O_NONBLOCK; TCP_INQ lets a read tell whether
	// more is queued. Where the kernel refuses it, reads go on until EAGAIN.
	unix.SetsockoptInt(nfd, unix.IPPROTO_TCP, unix.TCP_INQ, 1)
	return nfd, nil
}

// Wait returns when the session has ended and both sockets are closed.
func (s *Session) Wait() { <-s.done }

// Done is closed when the session has ended.
func (s *Session) Done() <-chan struct{} { return s.done }

// Bytes returns the bytes moved client to server (up) and server to client (down). Call it after
// Wait.
func (s *Session) Bytes() (up, down int64) {
	<-s.done
	return s.up, s.down
}

// Ended tells how the session ended; it waits for the end.
func (s *Session) Ended() End {
	<-s.done
	return s.ended
}

// Close ends the session now, closing both sockets. It does not wait.
func (s *Session) Close() {
	if s.killed.Swap(true) {
		return
	}
	l := s.loop
	l.mu.Lock()
	l.kills = append(l.kills, s)
	l.mu.Unlock()
	l.wake()
}

// wake makes the loop look at its queues; one eventfd write per round at most.
func (l *loop) wake() {
	if l.woken.Swap(true) {
		return
	}
	one := [8]byte{1}
	unix.Write(l.wakefd, one[:])
}

// run is the loop; cpu >= 0 pins it (its thread) to that CPU.
func (l *loop) run(cpu int) {
	if cpu >= 0 {
		runtime.LockOSThread()
		var set unix.CPUSet
		set.Set(cpu)
		unix.SchedSetaffinity(0, &set) // best effort
	}
	busy := false
	for {
		timeout := int(maxWait / time.Millisecond)
		if len(l.again) > 0 {
			timeout = 0
		} else if len(l.sessions) > 0 {
			timeout = max(1, min(timeout, int((l.nextScan-monotonic())/int64(time.Millisecond))+1))
		}
		var r uintptr
		var e syscall.Errno
		if busy {
			// A raw call: the goroutine keeps its P while it waits (see the package comment).
			r, _, e = syscall.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(l.epfd),
				uintptr(unsafe.Pointer(&l.events[0])), uintptr(len(l.events)), uintptr(min(timeout, busyWait)), 0, 0)
		} else {
			// Idle: a blocking call, which lets the runtime give the P to others.
			r, _, e = syscall.Syscall6(unix.SYS_EPOLL_PWAIT, uintptr(l.epfd),
				uintptr(unsafe.Pointer(&l.events[0])), uintptr(len(l.events)), uintptr(timeout), 0, 0)
		}
		n := int(r)
		busy = n > 0 || len(l.again) > 0
		if e != 0 {
			n = 0
			if e == syscall.EINTR {
				runtime.Gosched() // most likely the runtime's preemption signal
			}
		}
		l.now = monotonic()
		woken := false
		for i := range n {
			ev := &l.events[i]
			if int(ev.Fd) == l.wakefd {
				woken = true
				continue
			}
			d := l.fds[ev.Fd]
			if d == nil || d.s.closed {
				continue
			}
			if ev.Events&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0 && d.pending() {
				l.flush(d)
			}
			if ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
				d.readable = true
				l.pump(d)
			}
		}
		if again := l.again; len(again) > 0 {
			l.again = nil
			for _, d := range again {
				d.again = false
				l.pump(d)
			}
		}
		if woken {
			l.drain()
		}
		if l.now >= l.nextScan {
			l.scan()
		}
	}
}

// drain takes new sessions and Close requests.
func (l *loop) drain() {
	var b [8]byte
	unix.Read(l.wakefd, b[:])
	l.woken.Store(false) // before taking the queues: a later request writes the eventfd again
	l.mu.Lock()
	adds, kills := l.adds, l.kills
	l.adds, l.kills = nil, nil
	l.mu.Unlock()
	for _, s := range adds {
		s.last = l.now
		l.sessions[s] = struct{}{}
		var err error
		for _, d := range []*side{&s.a, &s.b} {
			l.fds[int32(d.fd)] = d
			// Edge-triggered for reading and writing: an event per arrival of data or FIN and
			// per transition to writable after a write ran out of space, nothing in between.
			ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(d.fd)}
			if e := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, d.fd, &ev); e != nil {
				err = e
			}
		}
		if err != nil {
			l.end(s, EndError)
			continue
		}
		if s.idle > 0 {
			l.nextScan = min(l.nextScan, l.now+s.idle/4)
		}
		// Bytes may have arrived before the sockets were added.
		s.a.readable, s.b.readable = true, true
		l.pump(&s.a)
		l.pump(&s.b)
	}
	for _, s := range kills {
		l.end(s, EndKilled)
	}
}

// scan ends idle sessions and plans the next scan: a quarter of the shortest idle timeout, so a
// session is cut between 1 and 1.25 times its timeout after its last byte.
func (l *loop) scan() {
	next := int64(maxWait)
	for s := range l.sessions {
		if s.idle <= 0 {
			continue
		}
		if l.now-s.last >= s.idle {
			l.end(s, EndIdle)
			continue
		}
		next = min(next, s.idle/4)
	}
	l.nextScan = l.now + max(next, int64(time.Millisecond))
}

// end closes both sockets and reports the session done, ended as why says.
func (l *loop) end(s *Session, why End) {
	if s.closed {
		return
	}
	s.closed, s.ended = true, why
	delete(l.sessions, s)
	for _, d := range []*side{&s.a, &s.b} {
		if l.fds[int32(d.fd)] == d {
			delete(l.fds, int32(d.fd))
		}
		unix.Close(d.fd) // also leaves the epoll set: the loop held the last descriptor
		if d.pipe[0] >= 0 {
			unix.Close(d.pipe[0])
			unix.Close(d.pipe[1])
		}
	}
	close(s.done)
}

// flush writes the bytes d has pending; once they are out it passes on EOF or reads more from
// d.peer.
func (l *loop) flush(d *side) {
	s := d.s
	for len(d.out) > 0 {
		n, err := send(d.fd, d.out)
		if err == unix.EAGAIN {
			return // the next EPOLLOUT edge
		}
		if err != nil {
			l.end(s, EndError)
			return
		}
		d.out = d.out[n:]
		*d.peer.moved += int64(n)
		s.last = l.now
	}
	d.out = nil
	for d.piped > 0 {
		n, err := unix.Splice(d.pipe[0], nil, d.fd, nil, d.piped, unix.SPLICE_F_NONBLOCK|unix.SPLICE_F_MOVE)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			return
		}
		if err != nil || n == 0 {
			l.end(s, EndError)
			return
		}
		d.piped -= int(n)
		*d.peer.moved += n
		s.last = l.now
	}
	if d.peer.eof {
		l.passEOF(d.peer)
		return
	}
	l.pump(d.peer)
}

// passEOF half-closes src's peer once src reached EOF and its bytes are written, and ends the
// session when the other direction is done too.
func (l *loop) passEOF(src *side) {
	dst := src.peer
	if !dst.wclosed {
		dst.wclosed = true
		if err := unix.Shutdown(dst.fd, unix.SHUT_WR); err != nil {
			l.end(src.s, EndError)
			return
		}
	}
	if src.done() && dst.done() {
		l.end(src.s, EndClosed)
	}
}

// pump reads from src and writes to its peer until src has nothing more, the peer takes no more,
// or src used its budget for this round.
func (l *loop) pump(src *side) {
	s, dst := src.s, src.peer
	moved := 0
	for src.readable && !src.eof && !dst.pending() && !s.closed {
		if moved >= budget {
			if !src.again {
				src.again = true
				l.again = append(l.again, src)
			}
			return
		}
		var n int
		var more bool
		var err error
		if src.bulk {
			n, err = l.splice(src)
			more = true
		} else {
			n, more, err = l.copy(src)
		}
		switch {
		case err == unix.EAGAIN:
			src.readable = false
			return
		case err != nil:
			l.end(s, EndError)
			return
		case n == 0:
			src.eof = true
			if !dst.pending() {
				l.passEOF(src)
			}
			return
		}
		s.last = l.now
		moved += n
		if !more {
			src.readable = false
			return
		}
	}
}

// copy moves one read's worth from src to its peer through the loop's buffer. more reports
// whether src may have more to read now.
func (l *loop) copy(src *side) (n int, more bool, err error) {
	dst := src.peer
	iov := syscall.Iovec{Base: &l.buf[0]}
	iov.SetLen(len(l.buf))
	msg := syscall.Msghdr{Iov: &iov, Iovlen: 1, Control: &l.ctl[0]}
	msg.SetControllen(len(l.ctl))
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_RECVMSG, uintptr(src.fd), uintptr(unsafe.Pointer(&msg)), 0)
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return 0, false, e
		}
		n = int(r)
		break
	}
	if n == 0 {
		return 0, false, nil
	}
	w, err := send(dst.fd, l.buf[:n])
	if err != nil && err != unix.EAGAIN {
		return 0, false, err
	}
	*src.moved += int64(w)
	if w < n {
		// The peer is full: keep the rest and stop reading src until it is written.
		dst.out = append(dst.out[:0], l.buf[w:n]...)
	}
	if n == len(l.buf) {
		if src.full++; src.full >= 2 && l.makePipe(dst) {
			src.bulk = true
		}
		return n, true, nil
	}
	src.full = 0
	inq := inqOf(&msg, l.ctl[:])
	return n, inq != 0, nil // -1 (no TCP_INQ): read until EAGAIN
}

// splice moves up to one pipe's worth from src into its peer's pipe and on to the peer.
func (l *loop) splice(src *side) (int, error) {
	dst := src.peer
	var n int64
	var err error
	for {
		n, err = unix.Splice(src.fd, nil, dst.pipe[1], nil, pipeChunk, unix.SPLICE_F_NONBLOCK|unix.SPLICE_F_MOVE)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil || n == 0 {
		return 0, err
	}
	dst.piped = int(n)
	for dst.piped > 0 {
		m, err := unix.Splice(dst.pipe[0], nil, dst.fd, nil, dst.piped, unix.SPLICE_F_NONBLOCK|unix.SPLICE_F_MOVE)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			break // the rest waits in the pipe for the next EPOLLOUT edge
		}
		if err != nil {
			return 0, err
		}
		dst.piped -= int(m)
		*src.moved += m
	}
	return int(n), nil
}

// makePipe gives d a pipe for splicing into it; false where the kernel refuses.
func (l *loop) makePipe(d *side) bool {
	if d.pipe[0] >= 0 {
		return true
	}
	var p [2]int
	if unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC) != nil {
		return false
	}
	d.pipe = p
	return true
}

// send writes b to fd without blocking and without SIGPIPE; it returns what the socket took.
func send(fd int, b []byte) (int, error) {
	total := 0
	for total < len(b) {
		r, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&b[total])),
			uintptr(len(b)-total), unix.MSG_NOSIGNAL|unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			total += int(r)
		case syscall.EINTR:
		default:
			return total, e
		}
	}
	return total, nil
}

// inqOf returns the TCP_CM_INQ value of a recvmsg's control data (bytes still queued; 1 when
// none but the peer's FIN is), or -1 when there is none.
func inqOf(msg *syscall.Msghdr, ctl []byte) int {
	n := int(msg.Controllen)
	if n < syscall.CmsgLen(4) || n > len(ctl) {
		return -1
	}
	h := (*syscall.Cmsghdr)(unsafe.Pointer(&ctl[0]))
	if h.Level != unix.IPPROTO_TCP || h.Type != unix.TCP_CM_INQ {
		return -1
	}
	return int(*(*int32)(unsafe.Pointer(&ctl[syscall.CmsgLen(0)])))
}
