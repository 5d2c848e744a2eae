package guard

import (
	"net/netip"
	"testing"
	"time"

	"github.com/waage/waage/internal/config"
)

// TestLimiterShare: a node of n enforces rate/n and burst/n, at least one token per period; the
// whole limit comes back with n = 1.
func TestLimiterShare(t *testing.T) {
	tests := []struct {
		name              string
		rate, burst, n    int
		per               time.Duration
		wantBurst, wantIn int // allowed at once; allowed one period later
	}{
		{"two nodes", 10, 10, 2, time.Second, 5, 5},
		{"three nodes round down", 10, 20, 3, time.Second, 6, 3},
		{"at least one", 2, 2, 5, time.Second, 1, 1},
		{"per minute", 60, 60, 4, time.Minute, 15, 15},
		{"alone again", 10, 10, 1, time.Second, 10, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewLimiter[netip.Addr](tt.rate, tt.per, tt.burst, 100)
			l.Share(tt.n)
			key := netip.MustParseAddr("192.0.2.1")
			now := time.Unix(1000, 0)
			count := func(at time.Time) int {
				ok := 0
				for range 100 {
					if a, _ := l.Allow(key, at); a {
						ok++
					}
				}
				return ok
			}
			if got := count(now); got != tt.wantBurst {
				t.Errorf("at once: %d allowed, want %d", got, tt.wantBurst)
			}
			if got := count(now.Add(tt.per)); got != tt.wantIn {
				t.Errorf("a period later: %d allowed, want %d", got, tt.wantIn)
			}
		})
	}
}

// TestGuardShare: the share applies to the request limiters a guard has and to those it makes
// later; a bucket above the new burst is cut to it.
func TestGuardShare(t *testing.T) {
	g := New("web", NewDenyList(), nil)
	rr := config.RequestRate{Rate: 10, Per: config.Duration(time.Second), Burst: 10}
	before := g.RequestLimiter("", rr)
	key := netip.MustParseAddr("192.0.2.1")
	now := time.Unix(1000, 0)
	before.BySource.Allow(key, now) // a full bucket of 10, 9 left
	g.SetShare(2)
	after := g.RequestLimiter("route r", rr)
	for name, l := range map[string]*RequestLimiter{"existing": before, "new": after} {
		ok := 0
		for range 20 {
			if a, _ := l.BySource.Allow(key, now); a {
				ok++
			}
		}
		if ok != 5 {
			t.Errorf("%s limiter: %d allowed, want 5", name, ok)
		}
	}
}
