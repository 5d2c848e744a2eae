package l4

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/waage/waage/internal/rawio"
)

// spliceChunk is how much one splice call may move before the copy loop re-arms the idle
// deadline. Large enough that the loop costs nothing next to the data, small enough that a busy
// connection re-arms its deadline often.
const spliceChunk = 1 << 20

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// activity records when bytes last moved in either direction, so one direction's idle deadline
// does not cut a connection whose other direction is busy (a download with a silent client).
type activity struct{ last atomic.Int64 }

func (a *activity) touch()               { a.last.Store(time.Now().UnixNano()) }
func (a *activity) since() time.Duration { return time.Duration(time.Now().UnixNano() - a.last.Load()) }

// proxyCopy moves bytes both ways between client and server until both directions are done, then
// returns. A direction ends at EOF, which is passed on as a half-close (CloseWrite), so protocols
// that shut down their sending side and still read (an SMTP client after QUIT, `nc -N`) work.
// No byte in either direction for idle closes both. Between two *net.TCPConn the kernel splices
// (no copy through user space); otherwise (TLS) a pooled buffer is used.
func proxyCopy(client, server net.Conn, idle time.Duration) {
	var act activity
	act.touch()
	stop := watchdog(&act, idle, func() {
		client.Close()
		server.Close()
	})
	defer stop()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		copyHalf(client, server, idle, &act, client, server)
	}()
	copyHalf(server, client, idle, &act, client, server)
	wg.Wait()
}

// watchdog closes a connection whose bytes stopped moving for twice the idle timeout. The read
// deadlines catch a silent peer; this catches a peer that stopped reading, where the kernel's
// splice waits on the write side, which has no deadline (a write deadline could fire between
// the two halves of a splice and lose the bytes in its pipe).
func watchdog(act *activity, idle time.Duration, kill func()) (stop func()) {
	var mu sync.Mutex
	var t *time.Timer
	mu.Lock()
	t = time.AfterFunc(idle, func() {
		mu.Lock()
		defer mu.Unlock()
		if t == nil {
			return
		}
		if act.since() > 2*idle {
			kill()
			return
		}
		t.Reset(idle)
	})
	mu.Unlock()
	return func() {
		mu.Lock()
		t.Stop()
		t = nil
		mu.Unlock()
	}
}

// copyHalf copies src to dst until EOF, an error or the idle timeout. On EOF it half-closes dst;
// on an error or timeout it closes both connections, which ends the other direction too.
//
// Between two TCP sockets it starts with raw reads and writes through a buffer (rawio: for the
// small messages of interactive protocols that is cheaper than the runtime's blocking-call
// bookkeeping, see package rawio), and switches to the kernel's splice once the traffic turns
// out to be bulk (reads that fill the buffer), so large transfers move without a copy through
// user space. Other connections (TLS) use a pooled buffer.
func copyHalf(dst, src net.Conn, idle time.Duration, act *activity, client, server net.Conn) {
	var err error
	dtcp, dok := dst.(*net.TCPConn)
	stcp, sok := src.(*net.TCPConn)
	bufp := copyBufs.Get().(*[]byte)
	defer func() {
		if bufp != nil {
			copyBufs.Put(bufp)
		}
	}()
	var rsrc, rdst *rawio.Conn
	if dok && sok {
		rsrc, rdst = rawio.New(src), rawio.New(dst)
	}
	splice := false
	var deadline time.Time
	for {
		now := time.Now()
		// The deadline moves only when less than half of it is left: setting it costs a timer
		// update, and a deadline that fires early is re-armed below.
		if deadline.Sub(now) < idle/2 {
			deadline = now.Add(idle)
			src.SetReadDeadline(deadline)
		}
		var n int64
		touched := false // Pump touches act itself, per chunk
		switch {
		case splice:
			n, err = dtcp.ReadFrom(&io.LimitedReader{R: stcp, N: spliceChunk})
			if err == nil && n < spliceChunk {
				err = io.EOF // ReadFrom stops short of the limit only at EOF
			}
		case rsrc != nil && rdst != nil:
			n, err = rawio.Pump(rsrc, rdst, *bufp, act.touch)
			touched = true
			if errors.Is(err, rawio.ErrBulk) {
				splice, err = true, nil
				copyBufs.Put(bufp)
				bufp = nil
			}
		default:
			n, err = copyBuffered(dst, src, *bufp, idle)
		}
		if n > 0 && !touched {
			act.touch()
		}
		if err == nil {
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) && act.since() < idle {
			deadline = time.Time{} // re-arm
			continue               // the other direction is busy, or bytes moved just before the deadline
		}
		break
	}
	if errors.Is(err, io.EOF) {
		if cw, ok := dst.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
			return
		}
	}
	// An error, the idle timeout, or a peer that cannot half-close: end both directions.
	client.Close()
	server.Close()
}

// copyBuffered copies until EOF, an error or the read deadline, through buf. Unlike io.Copy it
// reports EOF as io.EOF so the caller can half-close.
func copyBuffered(dst, src net.Conn, buf []byte, idle time.Duration) (int64, error) {
	var total int64
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			dst.SetWriteDeadline(time.Now().Add(idle))
			w, werr := dst.Write(buf[:n])
			total += int64(w)
			if werr != nil {
				return total, werr
			}
			// Re-arm the read deadline now and then: here every read counts as activity.
			if total >= spliceChunk {
				return total, nil
			}
		}
		if rerr != nil {
			return total, rerr
		}
	}
}
