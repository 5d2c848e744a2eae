package backend

import (
	"sync"
	"testing"
	"time"
)

func TestHistogram(t *testing.T) {
	var h Histogram
	for _, d := range []time.Duration{
		500 * time.Microsecond, // <= 1ms
		time.Millisecond,       // <= 1ms (bounds are inclusive, as in Prometheus)
		3 * time.Millisecond,   // <= 5ms
		700 * time.Millisecond, // <= 1s
		time.Minute,            // +Inf only
	} {
		h.Observe(d)
	}
	s := h.Snapshot()
	if s.Count != 5 {
		t.Errorf("Count = %d, want 5", s.Count)
	}
	want := map[float64]uint64{0.001: 2, 0.0025: 2, 0.005: 3, 0.5: 3, 1: 4, 10: 4}
	for i, ub := range DurationBuckets {
		if w, ok := want[ub]; ok && s.Buckets[i] != w {
			t.Errorf("bucket <= %g: %d, want %d", ub, s.Buckets[i], w)
		}
	}
	if wantSum := (500*time.Microsecond + time.Millisecond + 3*time.Millisecond + 700*time.Millisecond + time.Minute).Seconds(); s.Sum < wantSum-1e-9 || s.Sum > wantSum+1e-9 {
		t.Errorf("Sum = %g, want %g", s.Sum, wantSum)
	}
	var total HistogramSnapshot
	total.Add(s)
	total.Add(s)
	if total.Count != 10 || total.Buckets[0] != 4 {
		t.Errorf("Add: count %d, first bucket %d; want 10 and 4", total.Count, total.Buckets[0])
	}
}

// TestHistogramConcurrent: observations from many goroutines all land (run with -race).
func TestHistogramConcurrent(t *testing.T) {
	var h Histogram
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				h.Observe(time.Duration(g*i) * time.Microsecond)
				if i%100 == 0 {
					h.Snapshot()
				}
			}
		}()
	}
	wg.Wait()
	if s := h.Snapshot(); s.Count != 8000 {
		t.Errorf("Count = %d, want 8000", s.Count)
	}
}

func BenchmarkHistogramObserve(b *testing.B) {
	var h Histogram
	b.RunParallel(func(pb *testing.PB) {
		d := 3 * time.Millisecond
		for pb.Next() {
			h.Observe(d)
		}
	})
}
