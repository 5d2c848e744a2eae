// Package h2srv is a lean HTTP/2 server (RFC 9113; HPACK, RFC 7541, from
// golang.org/x/net/http2/hpack) for waage's client connections.
//
// golang.org/x/net/http2's server runs a read goroutine, a serve goroutine and a goroutine per
// stream on every connection, and hands every frame read and every frame written over channels
// from one to the other. On a 2-core machine those hand-offs cost more than the requests
// themselves: x/net's server alone caps near 40k req/s there, while HAProxy relays ~90k. This
// package keeps the goroutine per stream (the handler may block on a server) and drops the rest:
//
//   - One goroutine per connection reads and parses frames (the 9-byte header parsed from a reused
//     buffer, payloads handled in place, no allocation per frame), decodes HPACK and starts a
//     handler goroutine for each complete request.
//   - Frames are not handed to a writer goroutine one by one. Whoever has a frame to send (a
//     handler, or the reader for SETTINGS and PING acks, RST_STREAM, GOAWAY) appends it to the
//     connection's write buffer under one mutex; HPACK encoding happens inside the same critical
//     section, so header blocks go out in encoding order. One flusher at a time takes the buffer,
//     writes it outside the lock and loops while more was appended meanwhile, so one system call
//     (one batch of TLS records) carries the frames of many streams. A handler that writes more
//     than a buffer's worth, or calls Flush, is the flusher itself (back-pressure, and bytes on
//     the socket when Flush returns); a response's end wakes the connection's writer goroutine,
//     which first lets the other ready goroutines append theirs (see ensureFlushLocked).
//   - Request bodies are buffered per stream, bounded by the windows advertised; WINDOW_UPDATEs
//     go out as the handler consumes, batched by half a window.
//
// Limits against abuse (rapid reset, CONTINUATION and control-frame floods, slow readers) are
// part of Config and counted in Stats.
package h2srv

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2/hpack"
)

// Handler serves one stream in its own goroutine. When ServeH2 returns, a stream not yet closed
// is closed: with its response ended, or answered 500 when nothing was written.
type Handler interface {
	ServeH2(s *Stream)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(s *Stream)

// ServeH2 calls f(s).
func (f HandlerFunc) ServeH2(s *Stream) { f(s) }

// ServeConn serves c as an HTTP/2 connection until it ends; c is closed when it returns. c's
// first bytes must be the client preface (the caller may replay bytes it has read already).
func ServeConn(c net.Conn, cfg *Config, h Handler) {
	NewConn(c, cfg, h).Serve()
}

// Conn is one server connection. Serve runs it; Shutdown, from any goroutine, ends it gracefully.
type Conn struct {
	nc         net.Conn
	cfg        Config
	stats      *Stats
	h          Handler
	remoteAddr string
	tlsState   *tls.ConnectionState

	// Read side: touched by the reading goroutine only.
	rbuf        []byte
	rr, rw      int
	dec         *hpack.Decoder
	hb          headerBlock
	sawSettings bool
	lastRead    time.Time
	pingOut     bool // a PING of ours awaits its ack
	pingAt      time.Time
	pingData    [8]byte
	resets      budget
	empties     budget

	mu   sync.Mutex
	cond sync.Cond // send side waits: flow-control windows, back-pressure, flush progress

	streams     map[uint32]*Stream
	maxStreamID uint32 // highest client stream id seen; written by the reader under mu
	// ourResets are the last streams this side reset: frames the client had in flight for them
	// are ignored (RFC 9113 section 5.4.2) instead of answered with STREAM_CLOSED.
	ourResets [64]uint32
	ourResetN int
	open      int       // streams in the table: open or half-closed
	zombies   int       // handlers still running for reset streams
	idleSince time.Time // when open last dropped to 0
	rdl       time.Time // the read deadline set
	goAway    bool      // a GOAWAY went out: streams above goAwayID are refused
	goAwayID  uint32
	dead      bool
	werr      error         // set once writing is over (error, or the connection ended)
	kick      bool          // frames were appended by the reader: flush before it blocks again
	wake      chan struct{} // wakes the writer goroutine (see ensureFlushLocked)

	// Write side (under mu).
	wbuf, wspare []byte
	swaps, done  uint64 // buffers taken by flushers, and written
	flushing     bool
	ctrlQueued   int // control frames appended since a flusher last took the buffer
	wdl          time.Time
	sendWin      int64 // the connection's send window
	peerInitWin  int64 // the client's SETTINGS_INITIAL_WINDOW_SIZE
	peerMaxFrame int
	hbuf         []byte // header block being encoded (hpackenc.go)
	encTableSize uint32 // the size the client's decoder assumes for our (unused) table
	tableUpdate  bool   // the next header block starts with a size update
	recvWin      int64  // receive window the client has left on the connection
	recvUnacked  int64  // consumed bytes not yet credited back with a WINDOW_UPDATE

	// handlers counts the handlers running, under mu: a WaitGroup would cost an atomic operation
	// on a line other cores write, twice per stream.
	handlers int
}

// NewConn prepares c for Serve.
func NewConn(c net.Conn, cfg *Config, h Handler) *Conn {
	cc := &Conn{
		nc:           c,
		cfg:          withDefaults(cfg),
		h:            h,
		streams:      make(map[uint32]*Stream),
		sendWin:      defaultWindow,
		peerInitWin:  defaultWindow,
		peerMaxFrame: defaultMaxFrameSize,
		recvWin:      defaultWindow,
		encTableSize: 4096,
	}
	cc.stats = cc.cfg.Stats
	cc.idleSince = time.Now()
	cc.cond.L = &cc.mu
	if a := c.RemoteAddr(); a != nil {
		cc.remoteAddr = a.String()
	}
	if tc, ok := c.(*tls.Conn); ok {
		st := tc.ConnectionState()
		cc.tlsState = &st
	}
	n := 32 << 10
	if m := frameHeaderLen + int(cc.cfg.MaxReadFrameSize); m > n/2 {
		n = 2 * m
	}
	cc.rbuf = make([]byte, n)
	cc.dec = hpack.NewDecoder(4096, cc.onField)
	// Any string longer than this would need a raw block beyond the flood bound (Huffman codes
	// are 5 bits or more); a long value within it decodes and gets its 431.
	cc.dec.SetMaxStringLength(2 * (int(cc.cfg.MaxHeaderListSize) + headerBlockSlack))
	// Our SETTINGS go first (RFC 9113 section 3.4), then the connection window raised; queued
	// here so that nothing (a Shutdown's GOAWAY) can go before them.
	cc.wbuf = cc.appendSettings(make([]byte, 0, 4096))
	if d := int64(cc.cfg.ConnWindow) - defaultWindow; d > 0 {
		cc.wbuf = appendWindowUpdate(cc.wbuf, 0, uint32(d))
		cc.recvWin += d
	}
	return cc
}

// connError ends the connection with a GOAWAY carrying code.
type connError struct {
	code   ErrCode
	reason string
}

func (e connError) Error() string {
	return "h2srv: connection error " + e.code.String() + ": " + e.reason
}

var (
	errBadPreface   = errors.New("h2srv: invalid client preface")
	errDrained      = errors.New("h2srv: connection drained")
	errTimeout      = errors.New("h2srv: timeout")
	errControlFlood = errors.New("h2srv: too many control frames queued")
	// ErrConnClosed is what stream operations return once the connection is gone.
	ErrConnClosed = errors.New("h2srv: connection closed")
)

// Serve serves the connection until it ends and every handler has returned; the connection is
// closed then.
func (c *Conn) Serve() {
	err := c.serve()
	c.end(err)
}

func (c *Conn) serve() error {
	// Our SETTINGS and the raised connection window were queued by NewConn.
	c.mu.Lock()
	c.flushLocked()
	c.mu.Unlock()
	if c.cfg.HeaderTimeout > 0 {
		c.setReadDeadline(time.Now().Add(c.cfg.HeaderTimeout))
	}
	if err := c.fill(prefaceLen); err != nil {
		return err
	}
	if string(c.rbuf[c.rr:c.rr+prefaceLen]) != clientPreface {
		return errBadPreface
	}
	c.rr += prefaceLen
	for {
		if err := c.readFrame(); err != nil {
			return err
		}
	}
}

func (c *Conn) appendSettings(b []byte) []byte {
	const n = 4
	b = appendFrameHeader(b, 6*n, frameSettings, 0, 0)
	for _, s := range [n][2]uint32{
		{settingMaxConcurrentStreams, c.cfg.MaxConcurrentStreams},
		{settingInitialWindowSize, uint32(c.cfg.StreamWindow)},
		{settingMaxFrameSize, c.cfg.MaxReadFrameSize},
		{settingMaxHeaderListSize, c.cfg.MaxHeaderListSize},
	} {
		b = append(b, byte(s[0]>>8), byte(s[0]))
		b = appendUint32(b, s[1])
	}
	return b
}

// end runs when the read loop is over: a GOAWAY for a connection error, what is buffered
// written, every stream reset, the connection closed, and the handlers waited for.
func (c *Conn) end(err error) {
	var ce connError
	graceful := false
	switch {
	case errors.As(err, &ce):
		if ce.code != ErrCodeNo {
			c.stats.ConnErrors.Add(1)
		}
		c.mu.Lock()
		c.wbuf = appendGoAway(c.wbuf, c.maxStreamID, ce.code)
		c.goAway = true
		c.mu.Unlock()
		c.finalFlush()
		graceful = true
	case err == errDrained:
		c.finalFlush()
		graceful = true
	}
	if graceful {
		c.linger()
	}
	c.mu.Lock()
	c.dead = true
	if c.werr == nil {
		c.werr = ErrConnClosed
	}
	if c.wake != nil {
		close(c.wake) // no more sends: they need werr == nil
	}
	for _, s := range c.streams {
		c.resetStreamLocked(s, ErrCodeCancel, false)
	}
	c.cond.Broadcast()
	c.mu.Unlock()
	c.nc.Close()
	c.mu.Lock()
	for c.handlers > 0 {
		c.cond.Wait()
	}
	c.mu.Unlock()
}

// lingerTime bounds how long a closing connection reads what the client still sends after the
// last frames went out, so that closing with unread bytes does not reset the connection and
// destroy those frames before the client read them.
const lingerTime = 500 * time.Millisecond

func (c *Conn) linger() {
	cw, ok := c.nc.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	c.nc.SetReadDeadline(time.Now().Add(lingerTime))
	for {
		if _, err := c.nc.Read(c.rbuf); err != nil {
			return
		}
	}
}

// finalFlush writes what is buffered before the connection closes.
func (c *Conn) finalFlush() {
	c.mu.Lock()
	for c.werr == nil && (c.flushing || len(c.wbuf) > 0) {
		if c.flushing {
			c.cond.Wait()
			continue
		}
		c.flushLocked()
	}
	c.mu.Unlock()
}

// Shutdown ends the connection gracefully: a GOAWAY names the last stream processed, newer
// streams are refused, and the connection closes once the open streams are done.
func (c *Conn) Shutdown() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.shutdownLocked()
	c.ensureFlushLocked()
}

func (c *Conn) shutdownLocked() {
	if c.goAway || c.dead {
		return
	}
	c.goAway = true
	c.goAwayID = c.maxStreamID
	c.wbuf = appendGoAway(c.wbuf, c.goAwayID, ErrCodeNo)
	if c.open == 0 {
		c.wakeReaderLocked()
	}
}

// wakeReaderLocked makes the reader's blocked read return at once, so it looks at the state.
func (c *Conn) wakeReaderLocked() {
	c.rdl = time.Now()
	c.nc.SetReadDeadline(c.rdl)
}

func (c *Conn) setReadDeadline(t time.Time) {
	c.mu.Lock()
	c.rdl = t
	c.nc.SetReadDeadline(t)
	c.mu.Unlock()
}

// fill makes n bytes available at rbuf[rr:]. Before it blocks in a read, frames that the
// reader queued are handed to a flusher. Read deadlines serve the connection's timers; they are
// armed lazily (see onTimeout), not per read.
func (c *Conn) fill(n int) error {
	for c.rw-c.rr < n {
		if len(c.rbuf)-c.rr < n {
			c.rw = copy(c.rbuf, c.rbuf[c.rr:c.rw])
			c.rr = 0
		}
		c.kickFlush()
		m, err := c.nc.Read(c.rbuf[c.rw:])
		if m > 0 {
			c.rw += m
			c.lastRead = time.Now()
			continue
		}
		if err == nil {
			continue
		}
		if isTimeout(err) {
			if err := c.onTimeout(); err != nil {
				return err
			}
			continue
		}
		return err
	}
	return nil
}

// kickFlush starts a flusher for frames the reader queued (acks, resets, window updates). The
// reader never writes to the socket itself: a client that does not read must not stop it from
// reading (and so from seeing a PING answer, a RST_STREAM or EOF).
func (c *Conn) kickFlush() {
	c.mu.Lock()
	if c.kick {
		c.kick = false
		c.ensureFlushLocked()
	}
	c.mu.Unlock()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// onTimeout runs when the read deadline fired: it applies the header timeout, the idle timeout,
// the PING probe and the graceful end, and arms the next deadline. A deadline that fires while
// the connection was busy just moves on.
func (c *Conn) onTimeout() error {
	now := time.Now()
	if !c.sawSettings {
		c.stats.HeaderTimeouts.Add(1)
		return errTimeout
	}
	c.mu.Lock()
	open, idleSince, goAway := c.open, c.idleSince, c.goAway
	c.mu.Unlock()
	if goAway && open == 0 {
		return errDrained
	}
	cfg := &c.cfg
	if c.pingOut && cfg.PingTimeout > 0 && now.Sub(c.pingAt) >= cfg.PingTimeout {
		c.stats.PingTimeouts.Add(1)
		return errTimeout
	}
	if open == 0 && cfg.IdleTimeout > 0 && now.Sub(idleSince) >= cfg.IdleTimeout {
		c.stats.IdleCloses.Add(1)
		c.mu.Lock()
		c.shutdownLocked()
		c.mu.Unlock()
		return errDrained
	}
	if !c.pingOut && cfg.PingAfter > 0 && now.Sub(c.lastRead) >= cfg.PingAfter {
		c.pingOut, c.pingAt = true, now
		binary.BigEndian.PutUint64(c.pingData[:], uint64(now.UnixNano()))
		c.mu.Lock()
		c.wbuf = appendPing(c.wbuf, false, c.pingData[:])
		c.kick = true
		c.mu.Unlock()
	}
	c.rearm(now)
	return nil
}

// rearm sets the read deadline to the next timer due: the PING probe or its answer, and the idle
// timeout while no stream is open.
func (c *Conn) rearm(now time.Time) {
	cfg := &c.cfg
	var next time.Time
	earliest := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	switch {
	case c.pingOut && cfg.PingTimeout > 0:
		earliest(c.pingAt.Add(cfg.PingTimeout))
	case !c.pingOut && cfg.PingAfter > 0:
		earliest(c.lastRead.Add(cfg.PingAfter))
	}
	c.mu.Lock()
	if c.open == 0 && cfg.IdleTimeout > 0 {
		earliest(c.idleSince.Add(cfg.IdleTimeout))
	}
	if c.goAway && c.open == 0 {
		next = now
	}
	c.rdl = next
	c.nc.SetReadDeadline(next)
	c.mu.Unlock()
}

// noteIdleLocked runs when the last open stream closed: the idle timer starts, and a draining
// connection wakes its reader to end.
func (c *Conn) noteIdleLocked() {
	now := time.Now()
	c.idleSince = now
	if c.goAway {
		c.wakeReaderLocked()
		return
	}
	if d := c.cfg.IdleTimeout; d > 0 && !c.dead {
		if at := now.Add(d); c.rdl.IsZero() || at.Before(c.rdl) {
			c.rdl = at
			c.nc.SetReadDeadline(at)
		}
	}
}

// readFrame reads and processes one frame.
func (c *Conn) readFrame() error {
	if err := c.fill(frameHeaderLen); err != nil {
		return err
	}
	fh := parseFrameHeader(c.rbuf[c.rr:])
	if fh.length > c.cfg.MaxReadFrameSize {
		return connError{ErrCodeFrameSize, "frame larger than SETTINGS_MAX_FRAME_SIZE"}
	}
	n := frameHeaderLen + int(fh.length)
	if err := c.fill(n); err != nil {
		return err
	}
	// p is valid until the next fill.
	p := c.rbuf[c.rr+frameHeaderLen : c.rr+n]
	c.rr += n
	if !c.sawSettings {
		if fh.typ != frameSettings || fh.flags&flagAck != 0 {
			return connError{ErrCodeProtocol, "first frame is not SETTINGS"}
		}
		c.sawSettings = true
		defer c.rearm(time.Now())
	}
	if c.hb.active && (fh.typ != frameContinuation || fh.stream != c.hb.stream) {
		return connError{ErrCodeProtocol, "header block interrupted"}
	}
	switch fh.typ {
	case frameData:
		return c.processData(fh, p)
	case frameHeaders:
		return c.processHeaders(fh, p)
	case framePriority:
		return c.processPriority(fh, p)
	case frameRSTStream:
		return c.processRSTStream(fh, p)
	case frameSettings:
		return c.processSettings(fh, p)
	case framePushPromise:
		return connError{ErrCodeProtocol, "PUSH_PROMISE from a client"}
	case framePing:
		return c.processPing(fh, p)
	case frameGoAway:
		return c.processGoAway(fh, p)
	case frameWindowUpdate:
		return c.processWindowUpdate(fh, p)
	case frameContinuation:
		return c.processContinuation(fh, p)
	}
	return nil // unknown frame types are ignored (RFC 9113 section 4.1)
}

// emptyFrame counts a frame that carried nothing; too many end the connection.
func (c *Conn) emptyFrame() error {
	if !c.empties.allow(time.Now(), c.cfg.MaxEmptyFrames, c.cfg.ResetWindow) {
		c.abused(&c.stats.EmptyFloods, "empty frames")
		return connError{ErrCodeEnhanceYourCalm, "too many empty frames"}
	}
	return nil
}

// controlLocked counts a control frame the reader queued; false when the client lets too many
// pile up unread.
func (c *Conn) controlLocked() bool {
	c.kick = true
	c.ctrlQueued++
	return c.ctrlQueued <= c.cfg.MaxQueuedControl
}

func (c *Conn) controlFlood() error {
	c.abused(&c.stats.ControlFloods, "control frames queued")
	return errControlFlood
}

// ourResetLocked reports whether this side reset stream id lately.
func (c *Conn) ourResetLocked(id uint32) bool {
	for _, r := range c.ourResets {
		if r == id {
			return true
		}
	}
	return false
}

// rstLocked sends RST_STREAM for a stream that has no Stream (refused, malformed, closed).
func (c *Conn) rstLocked(id uint32, code ErrCode) bool {
	c.wbuf = appendRSTStream(c.wbuf, id, code)
	c.ourResets[c.ourResetN%len(c.ourResets)] = id
	c.ourResetN++
	return c.controlLocked()
}

func (c *Conn) processData(fh frameHeader, p []byte) error {
	id := fh.stream
	if id == 0 {
		return connError{ErrCodeProtocol, "DATA on stream 0"}
	}
	data := p
	if fh.flags&flagPadded != 0 {
		if len(p) < 1 || int(p[0]) >= len(p) {
			return connError{ErrCodeProtocol, "DATA padding too long"}
		}
		data = p[1 : len(p)-int(p[0])]
	}
	end := fh.flags&flagEndStream != 0
	if len(p) == 0 && !end {
		if err := c.emptyFrame(); err != nil {
			return err
		}
	}
	size := int64(fh.length)
	c.mu.Lock()
	defer c.mu.Unlock()
	if size > c.recvWin {
		return connError{ErrCodeFlowControl, "DATA beyond the connection window"}
	}
	c.recvWin -= size
	s := c.streams[id]
	if s == nil || s.remoteDone {
		if s == nil && id > c.maxStreamID {
			return connError{ErrCodeProtocol, "DATA on an idle stream"}
		}
		c.creditConnLocked(size)
		c.kick = true
		if s == nil && c.ourResetLocked(id) {
			return nil // in flight when we reset it
		}
		c.stats.StreamErrors.Add(1)
		if s != nil {
			c.resetStreamLocked(s, ErrCodeStreamClosed, true)
		} else if !c.rstLocked(id, ErrCodeStreamClosed) {
			return c.controlFlood()
		}
		return nil
	}
	if size > s.recvWin {
		c.creditConnLocked(size)
		c.stats.StreamErrors.Add(1)
		c.resetStreamLocked(s, ErrCodeFlowControl, true)
		return nil
	}
	s.recvWin -= size
	s.gotLen += int64(len(data))
	if s.declLen >= 0 && s.gotLen > s.declLen {
		c.creditConnLocked(size)
		c.stats.StreamErrors.Add(1)
		c.resetStreamLocked(s, ErrCodeProtocol, true)
		return nil
	}
	if pad := size - int64(len(data)); pad > 0 {
		// Padding is consumed as it arrives.
		s.creditLocked(pad)
		c.kick = true
	}
	if len(data) > 0 {
		if s.bodyClosed || s.handlerDone {
			c.creditConnLocked(int64(len(data)))
			c.kick = true
		} else {
			if s.rr > 0 && s.rr >= len(s.rbuf)/2 {
				s.rbuf = s.rbuf[:copy(s.rbuf, s.rbuf[s.rr:])]
				s.rr = 0
			}
			s.rbuf = append(s.rbuf, data...)
			s.rcond.Broadcast()
		}
	}
	if end {
		c.remoteEndLocked(s)
	}
	return nil
}

// remoteEndLocked handles END_STREAM from the client.
func (c *Conn) remoteEndLocked(s *Stream) {
	if s.declLen >= 0 && s.gotLen != s.declLen {
		c.stats.StreamErrors.Add(1)
		c.resetStreamLocked(s, ErrCodeProtocol, true)
		c.kick = true
		return
	}
	s.remoteDone = true
	s.rcond.Broadcast()
	if s.localDone {
		c.closeStreamLocked(s)
	}
}

func (c *Conn) processPriority(fh frameHeader, p []byte) error {
	if fh.stream == 0 {
		return connError{ErrCodeProtocol, "PRIORITY on stream 0"}
	}
	code := ErrCode(0)
	switch {
	case len(p) != 5:
		code = ErrCodeFrameSize
	case binary.BigEndian.Uint32(p)&(1<<31-1) == fh.stream:
		code = ErrCodeProtocol // a stream cannot depend on itself
	default:
		return nil // priorities are parsed and ignored (RFC 9113 section 5.3.2)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stats.StreamErrors.Add(1)
	if s := c.streams[fh.stream]; s != nil {
		c.resetStreamLocked(s, code, true)
		c.kick = true
		return nil
	}
	if !c.rstLocked(fh.stream, code) {
		return c.controlFlood()
	}
	return nil
}

func (c *Conn) processRSTStream(fh frameHeader, p []byte) error {
	if len(p) != 4 {
		return connError{ErrCodeFrameSize, "RST_STREAM length"}
	}
	if fh.stream == 0 {
		return connError{ErrCodeProtocol, "RST_STREAM on stream 0"}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.streams[fh.stream]
	if s == nil && fh.stream > c.maxStreamID {
		return connError{ErrCodeProtocol, "RST_STREAM on an idle stream"}
	}
	if s != nil {
		s.remoteReset = true
		c.resetStreamLocked(s, ErrCode(binary.BigEndian.Uint32(p)), false)
		c.kick = true
	}
	// Every reset counts, also of a stream that was refused or has just ended: a rapid-reset
	// client soon finds its streams refused (MaxConcurrentStreams, MaxResetHandlers) and goes on.
	return c.countReset()
}

// countReset counts a client reset or a stream refused to it against MaxClientResets.
func (c *Conn) countReset() error {
	if !c.resets.allow(time.Now(), c.cfg.MaxClientResets, c.cfg.ResetWindow) {
		c.abused(&c.stats.ResetFloods, "stream resets")
		return connError{ErrCodeEnhanceYourCalm, "too many stream resets"}
	}
	return nil
}

// abused counts a connection ended for abuse and tells Config.OnAbuse.
func (c *Conn) abused(counter *atomic.Uint64, what string) {
	counter.Add(1)
	if c.cfg.OnAbuse != nil {
		c.cfg.OnAbuse(what)
	}
}

func (c *Conn) processSettings(fh frameHeader, p []byte) error {
	if fh.stream != 0 {
		return connError{ErrCodeProtocol, "SETTINGS on a stream"}
	}
	if fh.flags&flagAck != 0 {
		if len(p) != 0 {
			return connError{ErrCodeFrameSize, "SETTINGS ack with a payload"}
		}
		return nil
	}
	if len(p)%6 != 0 {
		return connError{ErrCodeFrameSize, "SETTINGS length"}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for ; len(p) > 0; p = p[6:] {
		id := binary.BigEndian.Uint16(p)
		v := binary.BigEndian.Uint32(p[2:])
		switch id {
		case settingHeaderTableSize:
			c.noteTableSizeLocked(v)
		case settingEnablePush, settingEnableConnectProtocol:
			if v > 1 {
				return connError{ErrCodeProtocol, "boolean setting above 1"}
			}
		case settingInitialWindowSize:
			if v > maxWindow {
				return connError{ErrCodeFlowControl, "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1"}
			}
			// The change applies to every open stream's send window (RFC 9113 section
			// 6.9.2), which may go negative.
			delta := int64(v) - c.peerInitWin
			c.peerInitWin = int64(v)
			for _, s := range c.streams {
				s.sendWin += delta
				if s.sendWin > maxWindow {
					return connError{ErrCodeFlowControl, "stream window above 2^31-1"}
				}
			}
			c.cond.Broadcast()
		case settingMaxFrameSize:
			if v < defaultMaxFrameSize || v > maxFrameSizeLimit {
				return connError{ErrCodeProtocol, "SETTINGS_MAX_FRAME_SIZE out of range"}
			}
			c.peerMaxFrame = int(v)
		}
	}
	c.wbuf = appendFrameHeader(c.wbuf, 0, frameSettings, flagAck, 0)
	if !c.controlLocked() {
		return c.controlFlood()
	}
	return nil
}

func (c *Conn) processPing(fh frameHeader, p []byte) error {
	if len(p) != 8 {
		return connError{ErrCodeFrameSize, "PING length"}
	}
	if fh.stream != 0 {
		return connError{ErrCodeProtocol, "PING on a stream"}
	}
	if fh.flags&flagAck != 0 {
		if c.pingOut && string(p) == string(c.pingData[:]) {
			c.pingOut = false
		}
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wbuf = appendPing(c.wbuf, true, p)
	if !c.controlLocked() {
		return c.controlFlood()
	}
	return nil
}

func (c *Conn) processGoAway(fh frameHeader, p []byte) error {
	if fh.stream != 0 {
		return connError{ErrCodeProtocol, "GOAWAY on a stream"}
	}
	if len(p) < 8 {
		return connError{ErrCodeFrameSize, "GOAWAY length"}
	}
	// The client opens no more streams: finish those open, then close.
	c.mu.Lock()
	c.shutdownLocked()
	c.kick = true
	c.mu.Unlock()
	return nil
}

func (c *Conn) processWindowUpdate(fh frameHeader, p []byte) error {
	if len(p) != 4 {
		return connError{ErrCodeFrameSize, "WINDOW_UPDATE length"}
	}
	incr := int64(binary.BigEndian.Uint32(p) & (1<<31 - 1))
	c.mu.Lock()
	defer c.mu.Unlock()
	if fh.stream == 0 {
		if incr == 0 {
			return connError{ErrCodeProtocol, "WINDOW_UPDATE of 0"}
		}
		c.sendWin += incr
		if c.sendWin > maxWindow {
			return connError{ErrCodeFlowControl, "connection window above 2^31-1"}
		}
		c.cond.Broadcast()
		return nil
	}
	s := c.streams[fh.stream]
	if s == nil {
		if fh.stream > c.maxStreamID {
			return connError{ErrCodeProtocol, "WINDOW_UPDATE on an idle stream"}
		}
		return nil // closed lately
	}
	if incr == 0 {
		c.stats.StreamErrors.Add(1)
		c.resetStreamLocked(s, ErrCodeProtocol, true)
		c.kick = true
		return nil
	}
	s.sendWin += incr
	if s.sendWin > maxWindow {
		c.stats.StreamErrors.Add(1)
		c.resetStreamLocked(s, ErrCodeFlowControl, true)
		c.kick = true
		return nil
	}
	c.cond.Broadcast()
	return nil
}

// Kinds of header blocks.
const (
	hbNew      = iota // a request's head
	hbTrailers        // an open stream's trailers
	hbDiscard         // decoded for the HPACK state only
)

// headerBlock is the header block being decoded, across HEADERS and CONTINUATION frames.
type headerBlock struct {
	active    bool
	stream    uint32
	kind      uint8
	endStream bool
	rst       ErrCode // reset the stream with this code once decoded (0: none)
	raw       int     // encoded bytes so far
	size      int     // decoded size as RFC 9113 counts it
	tooLarge  bool
	malformed bool

	sawRegular bool
	pseudo     uint8 // pseudo-header fields seen (bits)
	method     string
	scheme     string
	authority  string
	path       string
	fields     []hpack.HeaderField
	declLen    int64
	hasLen     bool
	host       string
	hosts      int
}

const (
	pseudoMethod = 1 << iota
	pseudoScheme
	pseudoAuthority
	pseudoPath
)

func (c *Conn) processHeaders(fh frameHeader, p []byte) error {
	id := fh.stream
	if id == 0 {
		return connError{ErrCodeProtocol, "HEADERS on stream 0"}
	}
	if id%2 == 0 {
		return connError{ErrCodeProtocol, "HEADERS on an even stream"}
	}
	pad := 0
	if fh.flags&flagPadded != 0 {
		if len(p) < 1 {
			return connError{ErrCodeFrameSize, "HEADERS too short for padding"}
		}
		pad = int(p[0])
		p = p[1:]
	}
	selfDep := false
	if fh.flags&flagPriority != 0 {
		if len(p) < 5 {
			return connError{ErrCodeFrameSize, "HEADERS too short for priority"}
		}
		selfDep = binary.BigEndian.Uint32(p)&(1<<31-1) == id
		p = p[5:]
	}
	if pad > len(p) {
		return connError{ErrCodeProtocol, "HEADERS padding too long"}
	}
	p = p[:len(p)-pad]
	hb := &c.hb
	*hb = headerBlock{
		active:    true,
		stream:    id,
		endStream: fh.flags&flagEndStream != 0,
		declLen:   -1,
		fields:    hb.fields[:0],
	}
	c.mu.Lock()
	s := c.streams[id]
	switch {
	case s != nil:
		if s.remoteDone {
			// Half-closed (remote): RFC 9113 section 5.1.
			hb.kind, hb.rst = hbDiscard, ErrCodeStreamClosed
		} else {
			hb.kind = hbTrailers
		}
	case id <= c.maxStreamID:
		ours := c.ourResetLocked(id)
		last := id == c.maxStreamID
		c.mu.Unlock()
		switch {
		case ours:
			hb.kind = hbDiscard
		case last:
			return connError{ErrCodeStreamClosed, "HEADERS on a closed stream"}
		default:
			return connError{ErrCodeProtocol, "stream id lower than a previous one"}
		}
		c.mu.Lock()
	default:
		c.maxStreamID = id
		hb.kind = hbNew
		if selfDep {
			hb.rst = ErrCodeProtocol
		}
	}
	c.mu.Unlock()
	return c.fragment(fh, p)
}

func (c *Conn) processContinuation(fh frameHeader, p []byte) error {
	if !c.hb.active {
		return connError{ErrCodeProtocol, "CONTINUATION without a header block"}
	}
	return c.fragment(fh, p)
}

// fragment takes one header block fragment (of a HEADERS or CONTINUATION frame): empty ones that
// do not end the block count against the empty-frame budget.
func (c *Conn) fragment(fh frameHeader, p []byte) error {
	if len(p) == 0 && fh.flags&flagEndHeaders == 0 {
		if err := c.emptyFrame(); err != nil {
			return err
		}
	}
	if err := c.decode(p); err != nil {
		return err
	}
	if fh.flags&flagEndHeaders != 0 {
		return c.endHeaders()
	}
	return nil
}

// decode feeds a header block fragment to the HPACK decoder as it arrives, so the raw bound
// cuts a CONTINUATION flood after MaxHeaderListSize+16 KiB instead of buffering it.
func (c *Conn) decode(p []byte) error {
	c.hb.raw += len(p)
	if c.hb.raw > int(c.cfg.MaxHeaderListSize)+headerBlockSlack {
		c.abused(&c.stats.HeaderFloods, "header block size")
		return connError{ErrCodeEnhanceYourCalm, "header block too large"}
	}
	if _, err := c.dec.Write(p); err != nil {
		return connError{ErrCodeCompression, err.Error()}
	}
	return nil
}

// onField receives each decoded field and applies RFC 9113 section 8's checks to it.
func (c *Conn) onField(f hpack.HeaderField) {
	hb := &c.hb
	hb.size += len(f.Name) + len(f.Value) + 32
	if hb.size > int(c.cfg.MaxHeaderListSize) {
		hb.tooLarge = true
	}
	if hb.tooLarge || hb.malformed || hb.kind == hbDiscard {
		return
	}
	if len(f.Name) > 0 && f.Name[0] == ':' {
		if hb.sawRegular || hb.kind == hbTrailers {
			hb.malformed = true
			return
		}
		var bit uint8
		var dst *string
		switch f.Name {
		case ":method":
			bit, dst = pseudoMethod, &hb.method
		case ":scheme":
			bit, dst = pseudoScheme, &hb.scheme
		case ":authority":
			bit, dst = pseudoAuthority, &hb.authority
		case ":path":
			bit, dst = pseudoPath, &hb.path
		default:
			// :status belongs to responses; :protocol needs SETTINGS_ENABLE_CONNECT_PROTOCOL,
			// which is not offered.
			hb.malformed = true
			return
		}
		if hb.pseudo&bit != 0 || !validValue(f.Value) {
			hb.malformed = true
			return
		}
		hb.pseudo |= bit
		*dst = f.Value
		return
	}
	hb.sawRegular = true
	if !validRequestName(f.Name) || !validValue(f.Value) || connectionSpecific(f.Name) {
		hb.malformed = true
		return
	}
	switch f.Name {
	case "te":
		if f.Value != "trailers" {
			hb.malformed = true
			return
		}
	case "content-length":
		n, ok := parseContentLength(f.Value)
		if !ok || hb.hasLen && n != hb.declLen {
			hb.malformed = true
			return
		}
		hb.hasLen, hb.declLen = true, n
	case "host":
		hb.hosts++
		hb.host = f.Value
	}
	hb.fields = append(hb.fields, f)
}

// endHeaders completes a header block.
func (c *Conn) endHeaders() error {
	hb := &c.hb
	if err := c.dec.Close(); err != nil {
		return connError{ErrCodeCompression, err.Error()}
	}
	hb.active = false
	id := hb.stream
	c.mu.Lock()
	defer c.mu.Unlock()
	switch hb.kind {
	case hbDiscard:
		if hb.rst != 0 {
			c.stats.StreamErrors.Add(1)
			if s := c.streams[id]; s != nil {
				c.resetStreamLocked(s, hb.rst, true)
				c.kick = true
			} else if !c.rstLocked(id, hb.rst) {
				return c.controlFlood()
			}
		}
		return nil
	case hbTrailers:
		s := c.streams[id]
		if s == nil {
			return nil
		}
		if hb.malformed || hb.tooLarge || !hb.endStream {
			c.stats.StreamErrors.Add(1)
			c.resetStreamLocked(s, ErrCodeProtocol, true)
			c.kick = true
			return nil
		}
		s.trailers = append(s.trailers, hb.fields...)
		c.remoteEndLocked(s)
		return nil
	}
	return c.newStreamLocked()
}

// validRequest applies RFC 9113 section 8.3's rules to a request's pseudo-header fields and the
// rules that tie other fields to them.
func (hb *headerBlock) validRequest() bool {
	if hb.malformed || hb.pseudo&pseudoMethod == 0 || !validToken(hb.method) {
		return false
	}
	if hb.method == "CONNECT" {
		// Only :method and :authority (RFC 9113 section 8.5).
		if hb.pseudo != pseudoMethod|pseudoAuthority || hb.authority == "" {
			return false
		}
	} else {
		if hb.pseudo&pseudoScheme == 0 || hb.pseudo&pseudoPath == 0 || hb.scheme == "" {
			return false
		}
		if hb.path == "" || hb.path[0] != '/' && hb.path != "*" {
			return false
		}
	}
	if hb.hosts > 1 || hb.hosts == 1 && hb.authority != "" && hb.host != hb.authority {
		return false
	}
	for i := 0; i < len(hb.authority); i++ {
		if hb.authority[i] == '@' && (hb.scheme == "http" || hb.scheme == "https") {
			return false // no userinfo (RFC 9113 section 8.3.1)
		}
	}
	if hb.endStream && hb.declLen > 0 {
		return false // a body was declared but the stream ended
	}
	return true
}

// newStreamLocked starts the handler of a complete request, or refuses it.
func (c *Conn) newStreamLocked() error {
	hb := &c.hb
	id := hb.stream
	switch {
	case hb.rst != 0:
		c.stats.StreamErrors.Add(1)
	case hb.tooLarge:
		c.stats.HeadersTooBig.Add(1)
		c.answerLocked(id, 431)
		if hb.endStream {
			return nil
		}
		hb.rst = ErrCodeNo // the request body is not wanted
	case !hb.validRequest():
		c.stats.StreamErrors.Add(1)
		hb.rst = ErrCodeProtocol
	case c.goAway && id > c.goAwayID:
		c.stats.RefusedStreams.Add(1)
		hb.rst = ErrCodeRefusedStream
	case c.open >= int(c.cfg.MaxConcurrentStreams), c.zombies >= c.cfg.MaxResetHandlers:
		c.stats.RefusedStreams.Add(1)
		hb.rst = ErrCodeRefusedStream
		if err := c.countReset(); err != nil {
			return err
		}
	}
	if hb.rst != 0 || hb.tooLarge {
		if !c.rstLocked(id, hb.rst) {
			return c.controlFlood()
		}
		return nil
	}
	s := streams.Get().(*Stream)
	*s = Stream{
		c:          c,
		id:         id,
		method:     hb.method,
		authority:  hb.authority,
		path:       hb.path,
		declLen:    hb.declLen,
		remoteDone: hb.endStream,
		noBody:     hb.endStream,
		sendWin:    c.peerInitWin,
		recvWin:    int64(c.cfg.StreamWindow),
		respLen:    -1,
		added:      addedFields{length: -1},
		isHead:     hb.method == "HEAD",
	}
	// The fields go into the stream's own array when they fit (most requests): one allocation
	// for the stream and its fields; the decoding buffer stays with the connection.
	if len(hb.fields) <= len(s.fieldBuf) {
		s.fields = append(s.fieldBuf[:0], hb.fields...)
	} else {
		s.fields = append([]hpack.HeaderField(nil), hb.fields...)
	}
	clear(hb.fields)
	s.rcond.L = &c.mu
	s.ctx.init(c.cfg.BaseContext)
	c.streams[id] = s
	c.open++
	c.stats.Streams.Add(1)
	c.handlers++
	startStream(s)
	return nil
}

// answerLocked answers a stream with a bare status, ending it.
func (c *Conn) answerLocked(id uint32, status int) {
	c.beginBlockLocked()
	c.hbuf = appendStatus(c.hbuf, status)
	c.writeHeadersLocked(id, c.hbuf, true)
	c.kick = true
}
