// Package gctune keeps the garbage collector's heap target above a floor.
//
// With GOGC=100 the collector runs each time the heap doubles its live size. A proxy's live heap
// is small (connections, pools, tables: tens of MiB) while it allocates quickly per request, so
// the collector ran many times a second and took a few percent of the CPU under load (h2load
// through waage: 3-4% more requests per second with GOGC=400). Floor raises the GOGC percentage
// while the live heap is small, so that the heap target is at least floor bytes, and returns to
// 100 as the live heap grows past floor/2: memory stays bounded by max(floor, 2 x live), the
// usual Go bound once the heap is large. This is the "GC tuner" pattern; a fixed high GOGC would
// multiply a large heap instead.
package gctune

import (
	"context"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
)

// DefaultFloor is the heap target waage keeps at least.
const DefaultFloor = 64 << 20

// Percent returns the GOGC percentage that puts the heap target (live x (1 + percent/100)) at
// floor, never below 100 and at most 1000.
func Percent(live, floor uint64) int {
	if live == 0 {
		return 1000
	}
	p := int((floor - min(floor, live)) * 100 / live)
	return max(100, min(p, 1000))
}

// Floor adjusts the GOGC percentage after every collection from the live heap it left, until
// ctx ends. It does nothing when the GOGC environment variable is set: the operator's setting
// wins. The percentage follows each cycle (a finalizer that re-arms itself), so a live heap that
// grows quickly is not collected late with a percentage set for a smaller one.
func Floor(ctx context.Context, floor uint64) {
	if _, set := os.LookupEnv("GOGC"); set || floor == 0 {
		return
	}
	t := &tuner{ctx: ctx, floor: floor, sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/gogc:percent"}}}
	t.adjust()
	t.arm()
}

type tuner struct {
	ctx    context.Context
	floor  uint64
	sample []metrics.Sample // the live heap, the percentage now
}

// sentinel is collected in every cycle; its finalizer runs adjust. Not a tiny allocation (those
// share blocks, and their finalizers may wait for the block's other objects).
type sentinel struct {
	t   *tuner
	pad [4]uint64
}

func (t *tuner) arm() {
	runtime.SetFinalizer(&sentinel{t: t}, func(s *sentinel) {
		if s.t.ctx.Err() != nil {
			return
		}
		s.t.adjust()
		s.t.arm()
	})
}

func (t *tuner) adjust() {
	metrics.Read(t.sample)
	live, now := t.sample[0].Value, t.sample[1].Value
	if live.Kind() != metrics.KindUint64 || now.Kind() != metrics.KindUint64 {
		return
	}
	if p := Percent(live.Uint64(), t.floor); uint64(p) != now.Uint64() {
		debug.SetGCPercent(p)
	}
}
