package main

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watchDebounce is how long the configuration file must stay quiet after a change before it is
// read: an editor's save is several events (truncate, write, chmod, or write a temporary file and
// rename it over), and a half-written file would only be refused.
const watchDebounce = 300 * time.Millisecond

// configWatcher calls changed when the configuration file may have changed. It watches the
// file's directory, not the file: editors and config-management tools replace a file by renaming
// a new one over it, which a watch on the old file would not see (and would lose), and Kubernetes
// swaps a mounted ConfigMap through a "..data" symlink in the same directory.
type configWatcher struct {
	w    *fsnotify.Watcher
	done chan struct{}
	once sync.Once
}

// watchConfig starts watching path; Close stops it.
func watchConfig(path string, logger *slog.Logger, changed func()) (*configWatcher, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", path, err)
	}
	dir, base := filepath.Split(abs)
	if err := w.Add(dir); err != nil {
		w.Close()
		return nil, fmt.Errorf("watch %s: %w", dir, err)
	}
	cw := &configWatcher{w: w, done: make(chan struct{})}
	go cw.loop(base, logger, changed)
	return cw, nil
}

func (cw *configWatcher) loop(base string, logger *slog.Logger, changed func()) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-cw.w.Events:
			if !ok {
				return
			}
			name := filepath.Base(ev.Name)
			if name != base && !strings.HasPrefix(name, "..") {
				continue
			}
			timer.Reset(watchDebounce)
		case err, ok := <-cw.w.Errors:
			if !ok {
				return
			}
			logger.Warn("watching the configuration file", "err", err)
		case <-timer.C:
			changed()
		case <-cw.done:
			return
		}
	}
}

// Close stops the watcher; a change being debounced is dropped.
func (cw *configWatcher) Close() {
	if cw == nil {
		return
	}
	cw.once.Do(func() {
		close(cw.done)
		cw.w.Close()
	})
}
