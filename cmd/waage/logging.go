package main

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"

	"github.com/waage/waage/internal/config"
)

// logHandler is the process log's slog.Handler. A reload swaps the handler inside, so the level
// and format change for every logger already handed out (the runtime keeps its logger).
type logHandler struct {
	out   io.Writer
	inner atomic.Pointer[slog.Handler]
}

func newLogHandler(out io.Writer, lc config.Log) *logHandler {
	h := &logHandler{out: out}
	h.apply(lc)
	return h
}

// apply builds the handler for the log section and swaps it in.
func (h *logHandler) apply(lc config.Log) {
	var level slog.Level
	switch lc.Level {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	opts := &slog.HandlerOptions{Level: level}
	var inner slog.Handler
	if lc.Format == "json" {
		inner = slog.NewJSONHandler(h.out, opts)
	} else {
		inner = slog.NewTextHandler(h.out, opts)
	}
	h.inner.Store(&inner)
}

func (h *logHandler) current() slog.Handler { return *h.inner.Load() }

func (h *logHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.current().Enabled(ctx, l)
}

func (h *logHandler) Handle(ctx context.Context, r slog.Record) error {
	return h.current().Handle(ctx, r)
}

func (h *logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &derivedHandler{root: h, wrap: func(s slog.Handler) slog.Handler { return s.WithAttrs(as) }}
}

func (h *logHandler) WithGroup(name string) slog.Handler {
	return &derivedHandler{root: h, wrap: func(s slog.Handler) slog.Handler { return s.WithGroup(name) }}
}

// derivedHandler is logger.With(...) on a logHandler: it follows the root's current handler.
type derivedHandler struct {
	root *logHandler
	wrap func(slog.Handler) slog.Handler
}

func (d *derivedHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return d.root.Enabled(ctx, l)
}

func (d *derivedHandler) Handle(ctx context.Context, r slog.Record) error {
	return d.wrap(d.root.current()).Handle(ctx, r)
}

func (d *derivedHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &derivedHandler{root: d.root, wrap: func(s slog.Handler) slog.Handler { return d.wrap(s).WithAttrs(as) }}
}

func (d *derivedHandler) WithGroup(name string) slog.Handler {
	return &derivedHandler{root: d.root, wrap: func(s slog.Handler) slog.Handler { return d.wrap(s).WithGroup(name) }}
}
