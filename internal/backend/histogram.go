package backend

import (
	"sync/atomic"
	"time"
)

// DurationBuckets are the upper bounds, in seconds, of every Histogram's buckets: from a
// millisecond (a pooled request on a LAN) to ten seconds (a slow upload or a stuck server).
// They are fixed so that histograms of servers, backends and frontends add up bucket by bucket.
var DurationBuckets = [...]float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// bucketBounds are DurationBuckets in nanoseconds, for comparing without float conversion.
var bucketBounds = func() (b [len(DurationBuckets)]int64) {
	for i, s := range DurationBuckets {
		b[i] = int64(s * float64(time.Second))
	}
	return b
}()

// Histogram counts durations in the fixed DurationBuckets. Observe is a few atomic adds and no
// lock, so the data path can afford one per request; a metrics scrape reads it with Snapshot.
// The zero value is ready to use.
type Histogram struct {
	// counts[i] counts observations in bucket i alone (not cumulative); the last one is +Inf.
	// Their sum is the count, so an observation costs two atomic adds.
	counts [len(DurationBuckets) + 1]atomic.Uint64
	sum    atomic.Int64 // nanoseconds
}

// Observe records one duration.
func (h *Histogram) Observe(d time.Duration) {
	n := int64(d)
	i := 0
	for i < len(bucketBounds) && n > bucketBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(n)
}

// HistogramSnapshot is a Histogram read at one moment, in Prometheus terms: cumulative counts per
// upper bound (seconds), total count and sum (seconds).
type HistogramSnapshot struct {
	Count   uint64
	Sum     float64
	Buckets [len(DurationBuckets)]uint64 // cumulative: observations <= DurationBuckets[i]
}

// Snapshot reads the histogram. Concurrent Observes may land in part (a bucket counted, its
// duration not yet in the sum); the count is the sum of the buckets, so the buckets and the
// count always agree.
func (h *Histogram) Snapshot() HistogramSnapshot {
	var s HistogramSnapshot
	var cum uint64
	for i := range DurationBuckets {
		cum += h.counts[i].Load()
		s.Buckets[i] = cum
	}
	s.Count = cum + h.counts[len(DurationBuckets)].Load()
	s.Sum = float64(h.sum.Load()) / float64(time.Second)
	return s
}

// Add adds o to s, bucket by bucket (to sum the servers of a backend).
func (s *HistogramSnapshot) Add(o HistogramSnapshot) {
	s.Count += o.Count
	s.Sum += o.Sum
	for i := range s.Buckets {
		s.Buckets[i] += o.Buckets[i]
	}
}
