package l7

import (
	"net"
	"sync"

	"github.com/waage/waage/internal/rawio"
)

// Buffer size classes. Client connections read requests into 16 KiB; server connections read
// responses into 32 KiB, so a head with a 16 KiB body arrives in one read; heads that do not fit
// move to 64 KiB. Writers buffer heads and small bodies.
const (
	upBufSize     = 32 << 10
	writerBufSize = 16 << 10
)

var (
	upBufs     = sync.Pool{New: func() any { b := make([]byte, upBufSize); return &b }}
	writerBufs = sync.Pool{New: func() any { b := make([]byte, writerBufSize); return &b }}
)

// writer is a buffered writer over a connection. Unlike bufio.Writer, a large write arriving while
// data is buffered leaves together with it in one writev, so a response head and a body that sit
// in different buffers cost one syscall; and its buffer goes back to a pool whenever it is empty
// and the connection idles.
type writer struct {
	conn net.Conn
	raw  *rawio.Conn // nil: use conn
	bp   *[]byte     // nil while released
	n    int         // bytes buffered
	vec  [2][]byte
	bufs net.Buffers
	err  error // sticky write error
}

func (w *writer) acquire() {
	if w.bp == nil {
		w.bp = writerBufs.Get().(*[]byte)
		w.n = 0
	}
}

// release gives the buffer back; only when nothing is buffered.
func (w *writer) release() {
	if w.bp != nil && w.n == 0 {
		writerBufs.Put(w.bp)
		w.bp = nil
	}
}

// Buffered returns the number of bytes waiting to be written.
func (w *writer) Buffered() int { return w.n }

// Write buffers p, or writes it at once (with what is buffered) when it does not fit.
func (w *writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	w.acquire()
	buf := *w.bp
	if len(p) <= len(buf)-w.n {
		w.n += copy(buf[w.n:], p)
		return len(p), nil
	}
	if w.n == 0 {
		n, err := w.send(nil, p)
		w.err = err
		return n, err
	}
	_, err := w.send(buf[:w.n], p)
	w.n = 0
	if err != nil {
		w.err = err
		return 0, err
	}
	return len(p), nil
}

// WriteString buffers s (strings here are short: head lines).
func (w *writer) WriteString(s string) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	w.acquire()
	buf := *w.bp
	total := len(s)
	for len(s) > 0 {
		if w.n == len(buf) {
			if err := w.Flush(); err != nil {
				return 0, err
			}
		}
		k := copy(buf[w.n:], s)
		w.n += k
		s = s[k:]
	}
	return total, nil
}

// WriteByte buffers one byte.
func (w *writer) WriteByte(c byte) error {
	if w.err != nil {
		return w.err
	}
	w.acquire()
	if w.n == len(*w.bp) {
		if err := w.Flush(); err != nil {
			return err
		}
	}
	(*w.bp)[w.n] = c
	w.n++
	return nil
}

// room is the free space of the buffer as an empty slice to append to; commit takes it back.
func (w *writer) room() []byte {
	w.acquire()
	return (*w.bp)[w.n:w.n]
}

// commit buffers b, appended to room(): in place when it fit, else written as Write does.
func (w *writer) commit(b []byte) {
	buf := *w.bp
	if len(b) > 0 && len(b) <= len(buf)-w.n && &b[0] == &buf[w.n] {
		w.n += len(b)
		return
	}
	w.Write(b)
}

// Flush writes what is buffered.
func (w *writer) Flush() error {
	if w.err != nil {
		return w.err
	}
	if w.n == 0 {
		return nil
	}
	_, err := w.send((*w.bp)[:w.n], nil)
	w.n = 0
	w.err = err
	return err
}

// send writes a and then b, in one writev when both are non-empty.
func (w *writer) send(a, b []byte) (int, error) {
	if w.raw != nil {
		return w.raw.Write(a, b)
	}
	switch {
	case len(a) == 0:
		return w.conn.Write(b)
	case len(b) == 0:
		return w.conn.Write(a)
	}
	w.vec[0], w.vec[1] = a, b
	w.bufs = w.vec[:]
	n, err := w.bufs.WriteTo(w.conn)
	w.vec[0], w.vec[1], w.bufs = nil, nil, nil
	return int(n), err
}

// reset points the writer at a connection, dropping anything buffered and any error.
func (w *writer) reset(c net.Conn) {
	w.conn = c
	w.n = 0
	w.err = nil
}
