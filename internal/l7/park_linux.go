//go:build linux

package l7

import (
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// parker holds idle keep-alive connections without a goroutine or a buffer each, the way an
// event-loop proxy does: their sockets wait in one epoll set, and a connection gets a goroutine
// again only when its next request arrives. This is what keeps an idle connection at about a
// kilobyte instead of a goroutine stack plus buffers.
type parker struct {
	once sync.Once
	epfd int
	err  error

	mu    sync.Mutex
	conns map[int32]*parkedConn
}

type parkedConn struct {
	cc       *clientConn
	deadline int64 // unix nanoseconds; the idle timeout
}

var idleParker parker

func (p *parker) init() {
	p.epfd, p.err = unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if p.err != nil {
		return
	}
	p.conns = make(map[int32]*parkedConn)
	go p.loop()
	go p.janitor()
}

// park hands cc to the parker until its socket is readable or deadline passes. It returns false
// when the connection cannot be parked (not a socket); the caller then waits in its goroutine.
func (p *parker) park(cc *clientConn, deadline time.Time) bool {
	p.once.Do(p.init)
	if p.err != nil {
		return false
	}
	sc, ok := cc.c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var fd int32 = -1
	if rc.Control(func(f uintptr) { fd = int32(f) }) != nil || fd < 0 {
		return false
	}
	p.mu.Lock()
	p.conns[fd] = &parkedConn{cc: cc, deadline: deadline.UnixNano()}
	p.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: fd}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev); err != nil {
		p.mu.Lock()
		delete(p.conns, fd)
		p.mu.Unlock()
		return false
	}
	return true
}

// take removes a parked connection; only the caller that gets it back owns it.
func (p *parker) take(fd int32) *clientConn {
	p.mu.Lock()
	pc := p.conns[fd]
	delete(p.conns, fd)
	p.mu.Unlock()
	if pc == nil {
		return nil
	}
	unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
	return pc.cc
}

func (p *parker) loop() {
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			return
		}
		for i := 0; i < n; i++ {
			if cc := p.take(events[i].Fd); cc != nil {
				cc.resumed = true
				go cc.serve()
			}
		}
	}
}

// janitor closes parked connections whose idle timeout passed.
func (p *parker) janitor() {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for now := range t.C {
		p.closeWhere(func(pc *parkedConn) bool { return pc.deadline <= now.UnixNano() })
	}
}

// closeServer closes every parked connection of s (at shutdown: they are idle).
func (p *parker) closeServer(s *Server) {
	p.once.Do(p.init)
	if p.err != nil {
		return
	}
	p.closeWhere(func(pc *parkedConn) bool { return pc.cc.s == s })
}

func (p *parker) closeWhere(cond func(*parkedConn) bool) {
	var fds []int32
	p.mu.Lock()
	for fd, pc := range p.conns {
		if cond(pc) {
			fds = append(fds, fd)
		}
	}
	p.mu.Unlock()
	for _, fd := range fds {
		if cc := p.take(fd); cc != nil {
			cc.close()
		}
	}
}
