package l7

import (
	"errors"
	"io"
	"net"
	"strconv"
	"time"
)

// spliceChunk is how many bytes one zero-copy transfer moves before deadlines are refreshed; it
// bounds how slow a peer may be (timeout / spliceChunk) before an inactivity timeout cuts it.
const spliceChunk = 128 << 10

// spliceMin is the remaining size above which a body bypasses the buffers and moves with the
// kernel's splice (net.TCPConn.ReadFrom) instead.
const spliceMin = 32 << 10

// errPeerRead marks a failure reading from the sending side (as opposed to writing to the receiver)
// so the proxy can blame the right peer.
type errPeerRead struct{ err error }

func (e errPeerRead) Error() string { return "read: " + e.err.Error() }
func (e errPeerRead) Unwrap() error { return e.err }

// pipe moves a body from src (a buffered connection) to dst through dw (dst's buffered writer).
type pipe struct {
	src     *reader
	dst     net.Conn
	dw      *writer
	timeout time.Duration // inactivity bound for reads and writes during large transfers
	n       int64         // bytes written so far
	touched bool          // deadlines were changed
	// Request bodies only: limit bounds the body (max_body_bytes; a chunked body is cut with 413
	// when it grows past it), and minRate is the rate in bytes/s the body must keep up from one
	// second after start (min_body_rate; 408 below it). With minRate the body is copied through
	// the buffers, so every read moves the deadline.
	limit, minRate int64
	start          time.Time
	rateBound      bool // the read deadline in force is minRate's
}

// copyN moves exactly n bytes. Small amounts go through the buffers; large ones are spliced.
func (p *pipe) copyN(n int64) error {
	for n > 0 {
		if b := p.src.buffered(); b > 0 {
			k := int64(b)
			if k > n {
				k = n
			}
			buf := (*p.src.bp)[p.src.r : p.src.r+int(k)]
			if _, err := p.dw.Write(buf); err != nil {
				return err
			}
			p.src.r += int(k)
			p.n += k
			n -= k
			continue
		}
		if n >= spliceMin && p.minRate == 0 {
			if err := p.dw.Flush(); err != nil {
				return err
			}
			k, err := p.splice(n)
			p.n += k
			n -= k
			if err != nil {
				return err
			}
			continue
		}
		p.refresh()
		if err := p.src.fill(maxHeadBytes); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return p.readErr(err)
		}
	}
	return nil
}

// readErr wraps a failure reading the body's sender: 408 when the deadline of min_body_rate
// fired.
func (p *pipe) readErr(err error) error {
	if p.rateBound && isTimeout(err) {
		return &statusError{408, "request body slower than min_body_rate"}
	}
	return errPeerRead{err}
}

// copyToEOF moves everything until the sender closes (responses without framing).
func (p *pipe) copyToEOF() error {
	for {
		if b := p.src.buffered(); b > 0 {
			if _, err := p.dw.Write((*p.src.bp)[p.src.r:p.src.w]); err != nil {
				return err
			}
			p.src.r = p.src.w
			p.n += int64(b)
		}
		if err := p.dw.Flush(); err != nil {
			return err
		}
		k, err := p.splice(1 << 62)
		p.n += k
		if err != nil {
			var pe errPeerRead
			if errors.As(err, &pe) && pe.err == io.EOF {
				return nil
			}
			return err
		}
		if k == 0 {
			return nil
		}
	}
}

// splice moves up to n bytes straight from the source connection, one chunk at a time so that
// deadlines can be refreshed. It returns early (k < n, nil error) only at EOF.
func (p *pipe) splice(n int64) (int64, error) {
	var total int64
	for n > 0 {
		p.refresh()
		c := n
		if c > spliceChunk {
			c = spliceChunk
		}
		lr := &io.LimitedReader{R: p.src.conn, N: c}
		var k int64
		var err error
		// ReadFrom splices between two TCP sockets; from a TLS connection it would fall back to
		// a fresh 32 KiB buffer per call, so TLS on either side copies through a pooled one.
		if rf, ok := p.dst.(io.ReaderFrom); ok && p.src.raw != nil {
			k, err = rf.ReadFrom(lr)
		} else {
			bp := copyBufs.Get().(*[]byte)
			k, err = io.CopyBuffer(p.dst, lr, *bp)
			copyBufs.Put(bp)
		}
		total += k
		n -= k
		if err != nil {
			return total, err
		}
		if k < c {
			// The limit was not reached: the source hit EOF.
			return total, errPeerRead{io.EOF}
		}
	}
	return total, nil
}

func (p *pipe) refresh() {
	if p.timeout > 0 {
		p.touched = true
		d := time.Now().Add(p.timeout)
		p.dst.SetWriteDeadline(d)
		if p.minRate > 0 {
			// The body must have brought minRate bytes for every second after its first: with n
			// bytes in, that holds until start + 1s + n/minRate.
			rd := p.start.Add(time.Second + time.Duration(float64(p.n)/float64(p.minRate)*float64(time.Second)))
			if p.rateBound = rd.Before(d); p.rateBound {
				d = rd
			}
		}
		p.src.conn.SetReadDeadline(d)
	}
}

// maxChunkLine bounds a chunk-size line including extensions.
const maxChunkLine = 4096

// copyChunked reads a chunked body from src and writes it to dst: re-framed as chunked (extensions
// dropped, trailers kept) when rechunk is set, or de-chunked for HTTP/1.0 receivers. Framing is
// checked strictly (hex size, CRLF everywhere, no bare LF) so no ambiguity passes downstream.
func (p *pipe) copyChunked(rechunk bool) error {
	var sizeBuf [20]byte
	for {
		// Each chunk restarts the inactivity timer: a stream that keeps sending (server-sent
		// events, slow uploads) lives as long as it is active.
		p.refresh()
		line, err := p.src.readLine(maxChunkLine)
		if err != nil {
			return p.chunkErr(err)
		}
		size, ok := parseChunkSize(line)
		if !ok {
			return bad("invalid chunk size")
		}
		if size == 0 {
			break
		}
		if p.limit > 0 && p.n+size > p.limit {
			return &statusError{413, "request body larger than " + strconv.FormatInt(p.limit, 10) + " bytes"}
		}
		if rechunk {
			b := strconv.AppendInt(sizeBuf[:0], size, 16)
			b = append(b, '\r', '\n')
			if _, err := p.dw.Write(b); err != nil {
				return err
			}
		}
		if err := p.copyN(size); err != nil {
			return err
		}
		line, err = p.src.readLine(2)
		if err != nil || len(line) != 0 {
			return bad("chunk data not followed by CRLF")
		}
		if rechunk {
			if _, err := p.dw.WriteString("\r\n"); err != nil {
				return err
			}
		}
	}
	if rechunk {
		if _, err := p.dw.WriteString("0\r\n"); err != nil {
			return err
		}
	}
	// Trailer section: fields until an empty line.
	total := 0
	p.refresh()
	for {
		line, err := p.src.readLine(maxChunkLine * 2)
		if err != nil {
			return p.chunkErr(err)
		}
		if len(line) == 0 {
			break
		}
		total += len(line)
		if total > maxHeadBytes {
			return bad("trailer section too large")
		}
		colon := -1
		for i, c := range line {
			if c == ':' {
				colon = i
				break
			}
		}
		if colon <= 0 || !isToken(line[:colon]) {
			return bad("malformed trailer field")
		}
		for _, c := range line[colon+1:] {
			if c < ' ' && c != '\t' || c == 0x7f {
				return bad("invalid character in trailer field")
			}
		}
		if rechunk {
			p.dw.Write(line)
			p.dw.WriteString("\r\n")
		}
	}
	if rechunk {
		if _, err := p.dw.WriteString("\r\n"); err != nil {
			return err
		}
	}
	return nil
}

func chunkErr(err error) error {
	switch err {
	case errBareLF:
		return bad("chunk line not terminated by CRLF")
	case errHeadTooLarge:
		return bad("chunk line too long")
	}
	return errPeerRead{err}
}

// chunkErr is chunkErr for a request body, whose reads may end by min_body_rate's deadline.
func (p *pipe) chunkErr(err error) error {
	if err == errBareLF || err == errHeadTooLarge {
		return chunkErr(err)
	}
	return p.readErr(err)
}

// parseChunkSize reads "hex[;ext]" (RFC 9112 7.1). Extensions are checked for control characters
// and then ignored; whitespace before them is tolerated as the RFC's BWS.
func parseChunkSize(line []byte) (int64, bool) {
	var n int64
	i := 0
	for ; i < len(line); i++ {
		c := line[i]
		if !isHex(c) {
			break
		}
		if i >= 15 {
			return 0, false
		}
		n = n<<4 | int64(unhex(c))
	}
	if i == 0 {
		return 0, false
	}
	rest := line[i:]
	for len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\t') {
		rest = rest[1:]
	}
	if len(rest) == 0 {
		return n, true
	}
	if rest[0] != ';' {
		return 0, false
	}
	for _, c := range rest {
		if c < ' ' && c != '\t' || c == 0x7f {
			return 0, false
		}
	}
	return n, true
}
