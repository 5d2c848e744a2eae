package l7

import (
	"errors"
	"io"
	"net"
	"sync"

	"github.com/waage/waage/internal/rawio"
)

// Buffer sizes. A request or response head must fit in maxHeadBytes; most fit in the small buffer,
// which is what every connection takes first.
const (
	smallBufSize = 16 << 10
	maxHeadBytes = 64 << 10
)

var (
	smallBufs = sync.Pool{New: func() any { b := make([]byte, smallBufSize); return &b }}
	bigBufs   = sync.Pool{New: func() any { b := make([]byte, maxHeadBytes); return &b }}
	copyBufs  = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}
)

func putBuf(b *[]byte) {
	switch cap(*b) {
	case smallBufSize:
		smallBufs.Put(b)
	case upBufSize:
		upBufs.Put(b)
	case maxHeadBytes:
		bigBufs.Put(b)
	}
}

// errHeadTooLarge means the head did not fit in maxHeadBytes (or the configured limit).
var errHeadTooLarge = errors.New("head too large")

// reader is a buffered reader over a connection that can hand out the whole message head as one
// slice, give its buffer back to a pool while the connection idles, and expose the raw connection
// for zero-copy transfers once its buffer is drained. It is hand-written (not bufio) because the
// head parser needs the head contiguous and because idle connections must not keep a buffer.
type reader struct {
	conn net.Conn
	raw  *rawio.Conn // nil: use conn
	pool *sync.Pool  // where buffers come from (size class)
	bp   *[]byte     // nil while released
	r, w int
	err  error // sticky read error, returned once the buffer is drained
	// send is written before the next read, in the same poller call (rawio.Conn.WriteRead),
	// or by outbox when set: a request head on its way to a server, set by upConn.sendHead.
	send   []byte
	outbox *rawio.Outbox
}

func (rd *reader) acquire() {
	if rd.bp == nil {
		if rd.pool == nil {
			rd.pool = &smallBufs
		}
		rd.bp = rd.pool.Get().(*[]byte)
		rd.r, rd.w = 0, 0
	}
}

// release gives the buffer back; only valid when nothing is buffered.
func (rd *reader) release() {
	if rd.bp != nil && rd.r == rd.w {
		putBuf(rd.bp)
		rd.bp = nil
		rd.r, rd.w = 0, 0
	}
}

func (rd *reader) buffered() int { return rd.w - rd.r }

// fill reads once from the connection into the free space at the end of the buffer, compacting or
// growing it first when needed. It returns errHeadTooLarge when the buffer is full at limit.
func (rd *reader) fill(limit int) error {
	if rd.err != nil {
		return rd.err
	}
	rd.acquire()
	buf := *rd.bp
	if rd.r > 0 && rd.w == len(buf) || rd.r == rd.w {
		copy(buf, buf[rd.r:rd.w])
		rd.w -= rd.r
		rd.r = 0
	}
	if rd.w == len(buf) {
		if len(buf) >= limit || len(buf) >= maxHeadBytes {
			return errHeadTooLarge
		}
		nb := bigBufs.Get().(*[]byte)
		copy(*nb, buf[rd.r:rd.w])
		rd.w -= rd.r
		rd.r = 0
		putBuf(rd.bp)
		rd.bp = nb
		buf = *nb
	}
	var n int
	var err error
	switch {
	case rd.send != nil:
		send, out := rd.send, rd.outbox
		rd.send, rd.outbox = nil, nil
		n, err = rd.raw.WriteReadBatched(out, send, buf[rd.w:])
	case rd.raw != nil:
		n, err = rd.raw.Read(buf[rd.w:])
	default:
		n, err = rd.conn.Read(buf[rd.w:])
	}
	rd.w += n
	if err != nil {
		if n > 0 {
			rd.err = err
			return nil
		}
		return err
	}
	return nil
}

// readLine returns the next line without its CRLF; a bare LF is an error (used for chunk framing,
// where leniency invites smuggling). The slice is valid until the next read.
func (rd *reader) readLine(limit int) ([]byte, error) {
	if rd.bp == nil {
		if err := rd.fill(maxHeadBytes); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	start := rd.r
	for {
		buf := (*rd.bp)
		for i := start; i < rd.w; i++ {
			if buf[i] == '\n' {
				line := buf[rd.r:i]
				if len(line) == 0 || line[len(line)-1] != '\r' {
					return nil, errBareLF
				}
				rd.r = i + 1
				return line[:len(line)-1], nil
			}
		}
		if rd.w-rd.r >= limit {
			return nil, errHeadTooLarge
		}
		start = rd.w - rd.r
		if err := rd.fill(maxHeadBytes); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		start += rd.r
	}
}

var errBareLF = errors.New("line not terminated by CRLF")
