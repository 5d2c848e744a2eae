package h2srv

import (
	"net/http"
	"runtime"
	"time"
)

// The write buffer. Frames are appended under Conn.mu; one flusher at a time writes them.
const (
	// flushAt is how much a Write may leave buffered before it flushes itself: smaller writes go
	// out with the stream's Flush or Close, or with whatever another flusher takes along, so a
	// response of known length leaves in one system call with its head and END_STREAM.
	flushAt = 32 << 10
	// maxBuffered is where appenders wait for the flusher (back-pressure): a client that reads
	// slowly slows the handlers down instead of growing the buffer.
	maxBuffered = 256 << 10
	// keepBuf is the largest buffer kept for reuse after a flush; larger ones go to the GC.
	keepBuf = 64 << 10
)

// ensureFlushLocked makes sure what is buffered gets written, without waiting for it: by the
// flusher at work, or by the connection's writer goroutine, woken for it.
//
// While other streams of the connection are in flight, the writer first lets the goroutines that
// are ready to run go (runtime.Gosched), so that the responses of streams about to end leave in
// the same write. A handler that wrote its own response at once cost a TLS record and a system
// call per response; HAProxy's event loop sends what all its ready tasks produced at once. Under
// h2load (50 connections of 10 streams, through waage to nginx) the writes to clients fell from
// 17% of the CPU to 5%, and requests per second rose by a fifth to a third. A yield in the
// handler itself instead measured worse than none: the handler then waits in the global run
// queue with its stream unfinished. Where nothing else is ready, the yield returns at once.
func (c *Conn) ensureFlushLocked() {
	if !c.flushing && len(c.wbuf) > 0 && c.werr == nil {
		c.flushing = true
		if c.wake == nil {
			c.wake = make(chan struct{}, 1)
			go c.writer()
		}
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

// writer flushes for ensureFlushLocked until the connection ends (end closes c.wake).
func (c *Conn) writer() {
	for range c.wake {
		c.mu.Lock()
		if c.open > 0 {
			c.mu.Unlock()
			runtime.Gosched()
			c.mu.Lock()
		}
		c.flushLoopLocked()
		c.mu.Unlock()
	}
}

func (c *Conn) flushLocked() {
	c.flushing = true
	c.flushLoopLocked()
}

// flushLoopLocked writes buffers until none is left; c.flushing is set. The lock is released
// during each write, so others keep appending; what they append goes out in the next round.
// Coalescing this way is where the hand-written server beats x/net's: there every frame goes to a
// writer goroutine through a channel and is written (and, on TLS, sealed) on its own.
func (c *Conn) flushLoopLocked() {
	for len(c.wbuf) > 0 && c.werr == nil {
		buf := c.wbuf
		c.wbuf, c.wspare = c.wspare[:0], nil
		c.swaps++
		c.ctrlQueued = 0
		c.mu.Unlock()
		err := c.write(buf)
		c.mu.Lock()
		c.done++
		if cap(buf) <= keepBuf && c.wspare == nil {
			c.wspare = buf[:0]
		}
		if err != nil && c.werr == nil {
			c.werr = err
			if isTimeout(err) {
				c.stats.WriteTimeouts.Add(1)
			}
			// Closing makes the reader's read fail, and the connection ends.
			c.mu.Unlock()
			c.nc.Close()
			c.mu.Lock()
		}
		c.cond.Broadcast()
	}
	c.flushing = false
	c.cond.Broadcast()
}

// write writes b with the write timeout. The deadline is moved only when less than half of it
// is left: a deadline update per write would cost a timer operation per flush.
func (c *Conn) write(b []byte) error {
	if d := c.cfg.WriteTimeout; d > 0 {
		now := time.Now()
		if c.wdl.Sub(now) < d/2 {
			c.wdl = now.Add(d)
			c.nc.SetWriteDeadline(c.wdl)
		}
	}
	_, err := c.nc.Write(b)
	return err
}

// flushWaitLocked returns once everything buffered so far is written (or writing failed).
func (c *Conn) flushWaitLocked() error {
	target := c.swaps
	if len(c.wbuf) > 0 {
		target++
	}
	for c.done < target && c.werr == nil {
		if !c.flushing {
			c.flushLocked()
			continue
		}
		c.cond.Wait()
	}
	return c.werr
}

// writeHeadersLocked appends a header block as HEADERS and CONTINUATION frames.
func (c *Conn) writeHeadersLocked(id uint32, block []byte, end bool) {
	typ := uint8(frameHeaders)
	for {
		n := len(block)
		var fl uint8
		if n > c.peerMaxFrame {
			n = c.peerMaxFrame
		} else {
			fl = flagEndHeaders
		}
		if typ == frameHeaders && end {
			fl |= flagEndStream
		}
		c.wbuf = appendFrameHeader(c.wbuf, n, typ, fl, id)
		c.wbuf = append(c.wbuf, block[:n]...)
		block = block[n:]
		typ = frameContinuation
		if fl&flagEndHeaders != 0 {
			return
		}
	}
}

// encodeFieldsLocked HPACK-encodes hdr into c.hbuf: lower-case names, connection-specific
// fields left out (RFC 9113 section 8.2.2), invalid names and values skipped.
func (c *Conn) encodeFieldsLocked(hdr http.Header) {
	for k, vs := range hdr {
		name, ok := lowerName(k)
		if !ok || connectionSpecific(name) {
			continue
		}
		for _, v := range vs {
			if validValue(v) {
				c.hbuf = appendField(c.hbuf, name, v)
			}
		}
	}
}

// creditConnLocked gives n consumed bytes back to the connection's receive window; the
// WINDOW_UPDATE waits until half the window is consumed.
func (c *Conn) creditConnLocked(n int64) {
	c.recvUnacked += n
	if c.recvUnacked >= int64(c.cfg.ConnWindow)/2 && c.werr == nil {
		c.wbuf = appendWindowUpdate(c.wbuf, 0, uint32(c.recvUnacked))
		c.recvWin += c.recvUnacked
		c.recvUnacked = 0
	}
}

// resetStreamLocked ends a stream abruptly: RST_STREAM when send (not when the client reset it),
// body reads and blocked writes fail, the request's context is canceled.
func (c *Conn) resetStreamLocked(s *Stream, code ErrCode, send bool) {
	if s.reset {
		return
	}
	s.reset = true
	s.resetCode = code
	if send && c.werr == nil {
		c.wbuf = appendRSTStream(c.wbuf, s.id, code)
		c.ourResets[c.ourResetN%len(c.ourResets)] = s.id
		c.ourResetN++
	}
	if !s.handlerDone {
		s.zombie = true
		c.zombies++
	}
	s.rcond.Broadcast()
	c.cond.Broadcast()
	s.ctx.cancel(nil)
	c.closeStreamLocked(s)
}

// closeStreamLocked takes a stream out of the table once both sides are done or it was reset.
// Body bytes it buffered and nobody read are credited back to the connection window, so a
// handler that never reads its body does not stall the other streams.
func (c *Conn) closeStreamLocked(s *Stream) {
	if s.closed {
		return
	}
	s.closed = true
	delete(c.streams, s.id)
	c.open--
	if unread := len(s.rbuf) - s.rr; unread > 0 {
		c.creditConnLocked(int64(unread))
	}
	if s.reset {
		s.rbuf, s.rr = nil, 0
	}
	if c.open == 0 {
		c.noteIdleLocked()
	}
}
