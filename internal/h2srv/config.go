package h2srv

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"
)

// Config holds a connection's limits. The zero value of every field means its default, so a
// zero Config is a safe one; a negative duration turns that timer off.
type Config struct {
	// MaxConcurrentStreams is advertised in SETTINGS; a client stream beyond it is refused with
	// RST_STREAM REFUSED_STREAM. Default 250.
	MaxConcurrentStreams uint32
	// MaxReadFrameSize is the largest frame payload accepted (SETTINGS_MAX_FRAME_SIZE), between
	// 16 KiB (the default) and 16 MiB-1. The read buffer holds one frame of this size.
	MaxReadFrameSize uint32
	// StreamWindow is the receive window of each stream (SETTINGS_INITIAL_WINDOW_SIZE): how many
	// request body bytes one stream may have buffered, unread by its handler. Default 1 MiB.
	StreamWindow int32
	// ConnWindow is the connection's receive window, raised to it with a WINDOW_UPDATE when the
	// connection starts. It bounds the request body bytes buffered for all streams together, so
	// it is the memory one connection can pin; a handler that does not read its body holds at
	// most StreamWindow of it. Default 4 MiB.
	ConnWindow int32
	// MaxHeaderListSize bounds a header section as RFC 9113 counts it (names, values and 32
	// bytes per field; advertised in SETTINGS). A larger request is answered 431 at once. The raw
	// header block, across CONTINUATION frames, may be at most this plus 16 KiB: beyond it the
	// connection ends with GOAWAY ENHANCE_YOUR_CALM (the CONTINUATION flood). Default 64 KiB.
	MaxHeaderListSize uint32
	// MaxResetHandlers bounds the handlers still running for streams that are already reset:
	// while that many run, new streams are refused, so a client that opens and resets streams
	// at once (rapid reset, CVE-2023-44487) cannot start unbounded work. Default
	// MaxConcurrentStreams.
	MaxResetHandlers int
	// MaxClientResets client RST_STREAMs (and streams refused for MaxConcurrentStreams or
	// MaxResetHandlers) are allowed per ResetWindow; the next ends the connection with GOAWAY
	// ENHANCE_YOUR_CALM. Defaults 2000 per 10s: far beyond what canceling clients send, far
	// below an attack's rate.
	MaxClientResets int
	ResetWindow     time.Duration
	// MaxEmptyFrames bounds frames that carry nothing per ResetWindow: empty DATA without
	// END_STREAM, empty HEADERS or CONTINUATION fragments that do not end the block. Beyond it,
	// GOAWAY ENHANCE_YOUR_CALM. Default 1000.
	MaxEmptyFrames int
	// MaxQueuedControl bounds the control frames (SETTINGS and PING acks, RST_STREAM) queued
	// while a write to the client is blocked: a client that floods them without reading is
	// disconnected. Default 1000.
	MaxQueuedControl int
	// IdleTimeout closes a connection (GOAWAY NO_ERROR) that has had no open stream this long.
	// Default 60s.
	IdleTimeout time.Duration
	// PingAfter sends a PING once the client has been silent this long, and PingTimeout closes
	// the connection when the PING is not answered within it: a dead peer is found while a long
	// idle stream (gRPC) stays up. Defaults 30s and 15s.
	PingAfter   time.Duration
	PingTimeout time.Duration
	// WriteTimeout bounds every write to the client, so a client that stops reading cannot pin
	// the connection. Default 60s.
	WriteTimeout time.Duration
	// HeaderTimeout bounds the wait for the client preface and its first SETTINGS. Default 10s.
	HeaderTimeout time.Duration
	// Stats, when not nil, counts what the limits cut; many connections may share one.
	Stats *Stats
	// OnAbuse, when not nil, is called (in the connection's reading goroutine) when the
	// connection is ended for abuse: "stream resets", "header block size", "empty frames" or
	// "control frames queued".
	OnAbuse func(what string)
	// Logger receives handler panics. Default slog.Default().
	Logger *slog.Logger
	// BaseContext is the parent of every request's context. Default context.Background().
	BaseContext context.Context
}

// Stats counts what a server's limits cut, for metrics. All fields are safe for concurrent use.
type Stats struct {
	Streams        atomic.Uint64 // streams handed to the handler
	RefusedStreams atomic.Uint64 // REFUSED_STREAM: concurrency cap, reset backlog, after GOAWAY
	StreamErrors   atomic.Uint64 // RST_STREAM sent for malformed or misbehaving streams
	ConnErrors     atomic.Uint64 // connections ended with a GOAWAY carrying an error
	ResetFloods    atomic.Uint64 // connections ended for too many client RST_STREAMs
	HeaderFloods   atomic.Uint64 // connections ended for a header block over the raw bound
	HeadersTooBig  atomic.Uint64 // requests answered 431 (MaxHeaderListSize)
	EmptyFloods    atomic.Uint64 // connections ended for too many empty frames
	ControlFloods  atomic.Uint64 // connections ended for too many queued control frames
	PingTimeouts   atomic.Uint64 // connections closed for an unanswered PING
	IdleCloses     atomic.Uint64 // connections closed by IdleTimeout
	WriteTimeouts  atomic.Uint64 // connections closed because a write timed out
	HeaderTimeouts atomic.Uint64 // connections closed without a preface in HeaderTimeout
}

const (
	defaultMaxStreams    = 250
	defaultStreamWindow  = 1 << 20
	defaultConnWindow    = 4 << 20
	defaultMaxHeaderList = 64 << 10
	// headerBlockSlack is how far the raw header block may exceed MaxHeaderListSize: encoded
	// fields are rarely longer than decoded ones, so only a flood gets that far.
	headerBlockSlack = 16 << 10
)

// withDefaults returns a copy of cfg (nil allowed) with every default applied.
func withDefaults(cfg *Config) Config {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.MaxConcurrentStreams == 0 {
		c.MaxConcurrentStreams = defaultMaxStreams
	}
	if c.MaxReadFrameSize < defaultMaxFrameSize {
		c.MaxReadFrameSize = defaultMaxFrameSize
	}
	if c.MaxReadFrameSize > maxFrameSizeLimit {
		c.MaxReadFrameSize = maxFrameSizeLimit
	}
	if c.StreamWindow <= 0 {
		c.StreamWindow = defaultStreamWindow
	}
	if c.ConnWindow <= 0 {
		c.ConnWindow = defaultConnWindow
	}
	if c.ConnWindow < defaultWindow {
		c.ConnWindow = defaultWindow
	}
	if c.MaxHeaderListSize == 0 {
		c.MaxHeaderListSize = defaultMaxHeaderList
	}
	if c.MaxResetHandlers <= 0 {
		c.MaxResetHandlers = int(c.MaxConcurrentStreams)
	}
	if c.MaxClientResets <= 0 {
		c.MaxClientResets = 2000
	}
	if c.ResetWindow <= 0 {
		c.ResetWindow = 10 * time.Second
	}
	if c.MaxEmptyFrames <= 0 {
		c.MaxEmptyFrames = 1000
	}
	if c.MaxQueuedControl <= 0 {
		c.MaxQueuedControl = 1000
	}
	c.IdleTimeout = durDefault(c.IdleTimeout, 60*time.Second)
	c.PingAfter = durDefault(c.PingAfter, 30*time.Second)
	c.PingTimeout = durDefault(c.PingTimeout, 15*time.Second)
	c.WriteTimeout = durDefault(c.WriteTimeout, 60*time.Second)
	c.HeaderTimeout = durDefault(c.HeaderTimeout, 10*time.Second)
	if c.Stats == nil {
		c.Stats = new(Stats)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.BaseContext == nil {
		c.BaseContext = context.Background()
	}
	return c
}

// durDefault is d, def when d is zero, and zero (off) when d is negative.
func durDefault(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}

// budget counts events in fixed windows: allow reports false once more than max happened within
// one window.
type budget struct {
	n     int
	start time.Time
}

func (b *budget) allow(now time.Time, max int, window time.Duration) bool {
	if now.Sub(b.start) >= window {
		b.start, b.n = now, 0
	}
	b.n++
	return b.n <= max
}
