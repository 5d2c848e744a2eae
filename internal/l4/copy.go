package l4

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/waage/waage/internal/relay"
)

// reArm is how much a copy moves before it re-arms the idle deadline.
const reArm = 1 << 20

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// proxyCopy moves bytes both ways between client and server until both directions are done, then
// returns. A direction ends at EOF, which is passed on as a half-close, so protocols that shut
// down their sending side and still read (an SMTP client after QUIT, `nc -N`) work. No byte in
// either direction for idle closes both.
//
// Two plain TCP sockets go to the event loops of package relay (splice for bulk transfers);
// anything else (a terminated TLS connection) is copied by two goroutines through buffers.
//
// It returns the bytes moved client to server (up) and back (down), and how the session ended.
func proxyCopy(tc *tcpConn, client, server net.Conn, idle time.Duration) (up, down int64, term string) {
	ct, ok1 := client.(*net.TCPConn)
	st, ok2 := server.(*net.TCPConn)
	if ok1 && ok2 {
		if s, err := relay.Start(ct, st, idle); err == nil {
			tc.setSession(s)
			s.Wait()
			up, down = s.Bytes()
			return up, down, relayTermination(tc.isClosed(), s.Ended())
		}
	}
	var act activity
	act.touch()
	var wg sync.WaitGroup
	wg.Add(1)
	var upErr error
	go func() {
		defer wg.Done()
		up, upErr = copyHalf(server, client, idle, &act, client, server)
	}()
	down, downErr := copyHalf(client, server, idle, &act, client, server)
	wg.Wait()
	return up, down, copyTermination(tc.isClosed(), upErr, downErr)
}

// activity records when bytes last moved in either direction, so one direction's idle deadline
// does not cut a connection whose other direction is busy (a download with a silent client).
type activity struct{ last atomic.Int64 }

func (a *activity) touch()               { a.last.Store(time.Now().UnixNano()) }
func (a *activity) since() time.Duration { return time.Duration(time.Now().UnixNano() - a.last.Load()) }

// copyHalf copies src to dst until EOF, an error or the idle timeout. On EOF it half-closes dst;
// on an error or timeout it closes both connections, which ends the other direction too. It
// returns the bytes copied and what ended the copy (io.EOF at the end of src).
func copyHalf(dst, src net.Conn, idle time.Duration, act *activity, client, server net.Conn) (total int64, err error) {
	bufp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bufp)
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
		n, err = copyBuffered(dst, src, *bufp, idle)
		total += n
		if n > 0 {
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
			return total, err
		}
	}
	// An error, the idle timeout, or a peer that cannot half-close: end both directions.
	client.Close()
	server.Close()
	return total, err
}

// copyBuffered copies until EOF, an error, the read deadline or reArm bytes, through buf. Unlike
// io.Copy it reports EOF as io.EOF so the caller can half-close. A write that the peer does not
// take within idle fails (a client that stopped reading).
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
			if total >= reArm {
				return total, nil
			}
		}
		if rerr != nil {
			return total, rerr
		}
	}
}
