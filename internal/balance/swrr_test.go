package balance

import (
	"strings"
	"testing"

	"github.com/waage/waage/internal/backend"
)

// sequence picks n times and returns the picked server names concatenated ("abc" for s1,s2,s3
// when names are single letters).
func sequence(b Balancer, n int, letter map[*backend.Server]string) string {
	var sb strings.Builder
	for range n {
		s := b.Pick(0, nil)
		if s == nil {
			sb.WriteByte('-')
			continue
		}
		sb.WriteString(letter[s])
	}
	return sb.String()
}

func letters(ss []*backend.Server) map[*backend.Server]string {
	m := make(map[*backend.Server]string, len(ss))
	for i, s := range ss {
		m[s] = string(rune('a' + i))
	}
	return m
}

func TestRoundRobinExact(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		setup   func(ss []*backend.Server)
		picks   int
		want    []int
	}{
		{name: "weights 1,2,3", weights: []int{1, 2, 3}, picks: 60, want: []int{10, 20, 30}},
		{name: "equal weights", weights: []int{1, 1, 1, 1}, picks: 100, want: []int{25, 25, 25, 25}},
		{name: "equal large weights", weights: []int{7, 7, 7}, picks: 99, want: []int{33, 33, 33}},
		{name: "weight 0 gets nothing", weights: []int{1, 0, 3}, picks: 40, want: []int{10, 0, 30}},
		{name: "drained server's share goes to the others", weights: []int{1, 1, 1},
			setup: func(ss []*backend.Server) { ss[1].SetState(backend.Drain) }, picks: 60, want: []int{30, 0, 30}},
		{name: "unhealthy server's share goes by weight", weights: []int{1, 5, 2},
			setup: func(ss []*backend.Server) { ss[1].SetHealthy(false) }, picks: 60, want: []int{20, 0, 40}},
		{name: "backups only when primaries are down", weights: []int{1, 1, 1, 3},
			setup: func(ss []*backend.Server) {
				ss[2].Backup, ss[3].Backup = true, true
				ss[0].SetHealthy(false)
				ss[1].SetState(backend.Maintenance)
			}, picks: 40, want: []int{0, 0, 10, 30}},
	}
	for _, alg := range []string{RoundRobin, WeightedRoundRobin} {
		for _, tt := range tests {
			t.Run(alg+"/"+tt.name, func(t *testing.T) {
				ss := newServers(tt.weights...)
				if tt.setup != nil {
					tt.setup(ss)
				}
				b := mustNew(t, alg, ss, Options{})
				got := counts(b, tt.picks, nil)
				for i, s := range ss {
					if got[s] != tt.want[i] {
						t.Errorf("picks = %v, want %v", names(got), tt.want)
						break
					}
				}
			})
		}
	}
}

func TestRoundRobinSmooth(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		want    string
	}{
		// nginx's own example (ngx_http_upstream_round_robin.c): weights 5,1,1.
		{name: "nginx 5,1,1", weights: []int{5, 1, 1}, want: "aabacaa" + "aabacaa"},
		{name: "equal is plain round robin", weights: []int{1, 1, 1}, want: "abcabcabc"},
		{name: "1,2,3", weights: []int{1, 2, 3}, want: "cbacbc" + "cbacbc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ss := newServers(tt.weights...)
			b := mustNew(t, WeightedRoundRobin, ss, Options{})
			if got := sequence(b, len(tt.want), letters(ss)); got != tt.want {
				t.Errorf("sequence = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestRoundRobinRejoin checks that a server coming back takes its turns without a burst and that
// its turns went to the others while it was away.
func TestRoundRobinRejoin(t *testing.T) {
	ss := newServers(1, 1, 1)
	b := mustNew(t, RoundRobin, ss, Options{})
	l := letters(ss)
	sequence(b, 31, l) // stop mid-round, so current values are uneven
	ss[2].SetHealthy(false)
	if got := sequence(b, 20, l); strings.Contains(got, "c") || strings.Count(got, "a") != 10 {
		t.Fatalf("while c is down: %q, want a and b alternating", got)
	}
	ss[2].SetHealthy(true)
	got := sequence(b, 30, l)
	for i := 0; i+3 <= len(got); i += 3 {
		w := got[i : i+3]
		if strings.Count(w, "a") != 1 || strings.Count(w, "b") != 1 || strings.Count(w, "c") != 1 {
			t.Fatalf("after c returned: %q; window %q is not one turn each", got, w)
		}
	}
}

// TestRoundRobinWeightChange checks that raising or lowering a weight takes effect at once and
// without a burst from the old current value.
func TestRoundRobinWeightChange(t *testing.T) {
	ss := newServers(100, 1)
	b := mustNew(t, WeightedRoundRobin, ss, Options{})
	counts(b, 37, nil) // s1 builds up an uneven current value
	ss[0].SetWeight(1)
	got := counts(b, 20, nil)
	if got[ss[0]] != 10 || got[ss[1]] != 10 {
		t.Errorf("after weight 100 -> 1: %v, want 10/10", names(got))
	}
	ss[1].SetWeight(3)
	got = counts(b, 40, nil)
	if got[ss[0]] != 10 || got[ss[1]] != 30 {
		t.Errorf("after weight 1 -> 3: %v, want 10/30", names(got))
	}
}

// TestRoundRobinTried checks that skipping a tried server for one request does not shift the
// rotation for the others.
func TestRoundRobinTried(t *testing.T) {
	ss := newServers(1, 1, 1)
	b := mustNew(t, RoundRobin, ss, Options{})
	if got := b.Pick(0, []*backend.Server{ss[0]}); got != ss[1] {
		t.Fatalf("first pick with s1 tried = %v, want s2", got)
	}
	got := counts(b, 300, nil)
	for _, s := range ss {
		if got[s] != 100 {
			t.Fatalf("picks = %v, want 100 each", names(got))
		}
	}
}
