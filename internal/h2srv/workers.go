package h2srv

import (
	"sync"
	"time"
)

// Handler goroutines are reused. A new goroutine starts on a small stack and a proxied request
// grows it several times over (TLS, HPACK, the upstream exchange): with a goroutine per stream
// those stack copies took 14% of the CPU under h2load. A worker that finished a stream waits for
// the next one instead, with its stack already grown, as fasthttp's worker pool does; workers
// idle for workerIdle/2 to workerIdle end.
const workerIdle = 10 * time.Second

type worker struct {
	ch    chan *Stream
	round uint64 // workers.round when the worker last went idle
}

var workers struct {
	mu       sync.Mutex
	idle     []*worker // most recently used last
	cleaning bool
	// round counts the cleaner's rounds, every workerIdle/2: a worker idle since two rounds ago
	// has idled for workerIdle/2 to workerIdle. Rounds instead of times spare a clock reading
	// per stream.
	round uint64
}

// startStream runs the stream's handler on an idle worker, or on a new goroutine.
func startStream(s *Stream) {
	workers.mu.Lock()
	if n := len(workers.idle); n > 0 {
		w := workers.idle[n-1]
		workers.idle[n-1] = nil
		workers.idle = workers.idle[:n-1]
		workers.mu.Unlock()
		w.ch <- s
		return
	}
	workers.mu.Unlock()
	go work(s)
}

// work serves streams until it has been idle for workerIdle.
func work(s *Stream) {
	w := &worker{ch: make(chan *Stream, 1)}
	for s != nil {
		s.c.runStream(s)
		workers.mu.Lock()
		w.round = workers.round
		workers.idle = append(workers.idle, w)
		if !workers.cleaning {
			workers.cleaning = true
			go cleanWorkers()
		}
		workers.mu.Unlock()
		s = <-w.ch
	}
}

// cleanWorkers ends workers idle for longer than workerIdle; it runs while any worker is idle.
func cleanWorkers() {
	for {
		time.Sleep(workerIdle / 2)
		workers.mu.Lock()
		workers.round++
		// The oldest are first: end those idle since two rounds ago or longer.
		n := 0
		for n < len(workers.idle) && workers.idle[n].round+2 <= workers.round {
			workers.idle[n].ch <- nil
			n++
		}
		if n > 0 {
			m := copy(workers.idle, workers.idle[n:])
			clear(workers.idle[m:])
			workers.idle = workers.idle[:m]
		}
		if len(workers.idle) == 0 {
			workers.cleaning = false
			workers.mu.Unlock()
			return
		}
		workers.mu.Unlock()
	}
}
