package gctune

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

// TestPercent: the heap target is the floor while the live heap is small, GOGC 100 once the live
// heap is half the floor or more, and the percentage stays within 100..1000.
func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		live uint64
		want int
	}{{0, 1000}, {1 * mib, 1000}, {8 * mib, 700}, {16 * mib, 300}, {32 * mib, 100}, {60 * mib, 100}, {500 * mib, 100}} {
		if got := Percent(c.live, 64*mib); got != c.want {
			t.Errorf("Percent(%d MiB, 64 MiB) = %d, want %d", c.live/mib, got, c.want)
		}
	}
}

func gogc() uint64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestFloor: Floor sets the percentage from the live heap after each collection, stops with
// its context, and leaves the percentage alone when GOGC is set.
func TestFloor(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	ctx, cancel := context.WithCancel(context.Background())
	Floor(ctx, 1<<40)
	if p := gogc(); p != 1000 {
		t.Fatalf("percentage %d for a 1 TiB floor, want 1000", p)
	}
	debug.SetGCPercent(100)
	deadline := time.Now().Add(5 * time.Second)
	for gogc() != 1000 { // the next collection sets it again
		if time.Now().After(deadline) {
			t.Fatal("no collection set the percentage again")
		}
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
	cancel()
	runtime.GC()
	time.Sleep(10 * time.Millisecond) // the last finalizer sees the context ended
	debug.SetGCPercent(100)
	for range 3 {
		runtime.GC()
		time.Sleep(5 * time.Millisecond)
	}
	if p := gogc(); p != 100 {
		t.Fatalf("after the context ended, a collection set the percentage to %d", p)
	}

	t.Setenv("GOGC", "150")
	debug.SetGCPercent(100)
	Floor(context.Background(), 1<<40)
	runtime.GC()
	time.Sleep(5 * time.Millisecond)
	if p := gogc(); p != 100 {
		t.Fatalf("with GOGC set, the percentage became %d", p)
	}
}
