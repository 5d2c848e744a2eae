package backend

import "sync/atomic"

// budgetWindow is how many seconds of history a RetryBudget weighs (Finagle and Linkerd use 10).
const budgetWindow = 10

// RetryBudget bounds a backend's retries to a share of its requests, so that when servers fail
// under load, retries cannot multiply the load on the ones left: retries within the last 10
// seconds may be at most Percent of the requests in that time, plus MinPerSecond*10 so that a
// quiet backend can still retry. Every request calls Request; every retry asks TryRetry first.
//
// The counters are per-second buckets of atomics, no locks. A bucket is reset by whoever first
// sees that its second has passed; a count that races with the reset can be lost, which makes
// the budget approximate by a request or two but never unbounded. The zero value allows no
// retries; a nil *RetryBudget allows every retry.
type RetryBudget struct {
	percent, minPerSecond int64
	buckets               [budgetWindow]budgetBucket
}

type budgetBucket struct {
	sec     atomic.Int64
	reqs    atomic.Int64
	retries atomic.Int64
}

// NewRetryBudget returns a budget allowing percent of requests as retries plus minPerSecond.
func NewRetryBudget(percent, minPerSecond int) *RetryBudget {
	return &RetryBudget{percent: int64(percent), minPerSecond: int64(minPerSecond)}
}

// bucket returns the bucket of second now, reset if it last counted an older second.
func (b *RetryBudget) bucket(now int64) *budgetBucket {
	k := &b.buckets[uint64(now)%budgetWindow]
	if old := k.sec.Load(); old != now && k.sec.CompareAndSwap(old, now) {
		k.reqs.Store(0)
		k.retries.Store(0)
	}
	return k
}

// Request counts one request (not a retry) at Unix second now.
func (b *RetryBudget) Request(now int64) {
	if b != nil {
		b.bucket(now).reqs.Add(1)
	}
}

// TryRetry reports whether a retry at Unix second now fits the budget, and if so counts it.
func (b *RetryBudget) TryRetry(now int64) bool {
	if b == nil {
		return true
	}
	cur := b.bucket(now)
	var reqs, retries int64
	for i := range b.buckets {
		k := &b.buckets[i]
		if s := k.sec.Load(); s > now-budgetWindow && s <= now {
			reqs += k.reqs.Load()
			retries += k.retries.Load()
		}
	}
	if retries >= reqs*b.percent/100+b.minPerSecond*budgetWindow {
		return false
	}
	cur.retries.Add(1)
	return true
}
