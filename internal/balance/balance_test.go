package balance

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/waage/waage/internal/backend"
)

func TestNew(t *testing.T) {
	s := newServers(1, 1)
	tests := []struct {
		name      string
		algorithm string
		servers   []*backend.Server
		wantErr   string
	}{
		{name: "unknown algorithm", algorithm: "fastest", servers: s, wantErr: `unknown algorithm "fastest"`},
		{name: "empty algorithm", algorithm: "", servers: s, wantErr: "unknown algorithm"},
		{name: "nil server", algorithm: RoundRobin, servers: []*backend.Server{s[0], nil}, wantErr: "servers[1] is nil"},
		{name: "duplicate server", algorithm: LeastConnections, servers: []*backend.Server{s[0], s[1], s[0]}, wantErr: `server "web/s1" listed twice`},
		{name: "empty list is allowed", algorithm: Hash, servers: nil},
	}
	for _, alg := range Algorithms {
		tests = append(tests, struct {
			name      string
			algorithm string
			servers   []*backend.Server
			wantErr   string
		}{name: "accepts " + alg, algorithm: alg, servers: s})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := New(tt.algorithm, tt.servers, Options{})
			if tt.wantErr == "" {
				if err != nil || b == nil {
					t.Fatalf("New = %v, %v; want a balancer", b, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New error = %v, want it to contain %q", err, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "balance: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestNewCopiesServerList(t *testing.T) {
	for _, alg := range Algorithms {
		t.Run(alg, func(t *testing.T) {
			ss := newServers(1, 1)
			b := mustNew(t, alg, ss, Options{})
			other := backend.NewServer("web", "other", "x")
			ss[0], ss[1] = other, other
			for i := range 100 {
				if got := b.Pick(uint64(i), nil); got == other {
					t.Fatalf("Pick returned a server put into the caller's slice after New")
				}
			}
		})
	}
}

func TestNeedsKey(t *testing.T) {
	for _, alg := range Algorithms {
		want := alg == Hash || alg == SourceIPHash || alg == Maglev
		if got := NeedsKey(alg); got != want {
			t.Errorf("NeedsKey(%q) = %v, want %v", alg, got, want)
		}
	}
}

// TestCandidateRules runs the rules every algorithm shares: who may be picked, primaries
// before backups, tried skipped, nil when nothing is left.
func TestCandidateRules(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		backups []int // indexes of backup servers
		setup   func(ss []*backend.Server)
		tried   []int
		want    []int // indexes that must get picks, and nothing else; empty = always nil
	}{
		{name: "all usable", weights: []int{1, 1, 1}, want: []int{0, 1, 2}},
		{name: "weight 0 gets nothing", weights: []int{1, 0, 1}, want: []int{0, 2}},
		{name: "drained gets nothing", weights: []int{1, 1, 1}, setup: func(ss []*backend.Server) { ss[1].SetState(backend.Drain) }, want: []int{0, 2}},
		{name: "maintenance gets nothing", weights: []int{1, 1, 1}, setup: func(ss []*backend.Server) { ss[0].SetState(backend.Maintenance) }, want: []int{1, 2}},
		{name: "unhealthy gets nothing", weights: []int{1, 1, 1}, setup: func(ss []*backend.Server) { ss[2].SetHealthy(false) }, want: []int{0, 1}},
		{name: "backup unused while a primary is usable", weights: []int{1, 1, 1}, backups: []int{2}, setup: func(ss []*backend.Server) { ss[0].SetHealthy(false) }, want: []int{1}},
		{name: "backups when all primaries unusable", weights: []int{1, 1, 1, 1}, backups: []int{2, 3},
			setup: func(ss []*backend.Server) { ss[0].SetHealthy(false); ss[1].SetState(backend.Drain) }, want: []int{2, 3}},
		{name: "backups skip their own unusable", weights: []int{1, 1, 0}, backups: []int{1, 2},
			setup: func(ss []*backend.Server) { ss[0].SetState(backend.Maintenance) }, want: []int{1}},
		{name: "tried is skipped", weights: []int{1, 1, 1}, tried: []int{1}, want: []int{0, 2}},
		{name: "tried primaries fall to backups", weights: []int{1, 1, 1}, backups: []int{2}, tried: []int{0, 1}, want: []int{2}},
		{name: "all tried is nil", weights: []int{1, 1}, tried: []int{0, 1}},
		{name: "nothing usable is nil", weights: []int{1, 0, 1}, backups: []int{2},
			setup: func(ss []*backend.Server) { ss[0].SetHealthy(false); ss[2].SetState(backend.Drain) }},
		{name: "empty list is nil", weights: nil},
		{name: "single server", weights: []int{3}, want: []int{0}},
	}
	for _, alg := range Algorithms {
		for _, tt := range tests {
			t.Run(alg+"/"+tt.name, func(t *testing.T) {
				ss := newServers(tt.weights...)
				for _, i := range tt.backups {
					ss[i].Backup = true
				}
				if tt.setup != nil {
					tt.setup(ss)
				}
				var tried []*backend.Server
				for _, i := range tt.tried {
					tried = append(tried, ss[i])
				}
				b := mustNew(t, alg, ss, Options{})
				got := counts(b, 3000, tried)
				if len(tt.want) == 0 {
					if len(got) != 1 || got[nil] != 3000 {
						t.Fatalf("picks = %v, want always nil", names(got))
					}
					return
				}
				for i, s := range ss {
					if slices.Contains(tt.want, i) {
						if got[s] == 0 {
							t.Errorf("%s got no picks: %v", s.Name, names(got))
						}
					} else if got[s] != 0 {
						t.Errorf("%s got %d picks, want none: %v", s.Name, got[s], names(got))
					}
				}
				if got[nil] != 0 {
					t.Errorf("%d nil picks with usable servers: %v", got[nil], names(got))
				}
			})
		}
	}
}

// TestNoAllocs checks that Pick allocates nothing on the common path.
func TestNoAllocs(t *testing.T) {
	for _, alg := range Algorithms {
		for _, n := range []int{3, 50} {
			t.Run(fmt.Sprintf("%s/servers=%d", alg, n), func(t *testing.T) {
				ss := newServers(slices.Repeat([]int{2}, n)...)
				ss[0].SetHealthy(false) // exercise the skipping paths too
				tried := []*backend.Server{ss[1]}
				b := mustNew(t, alg, ss, Options{})
				var key uint64
				allocs := testing.AllocsPerRun(1000, func() {
					key++
					if b.Pick(key, nil) == nil || b.Pick(key, tried) == nil {
						t.Fatal("nil pick")
					}
				})
				if allocs != 0 {
					t.Errorf("%d servers: %v allocations per Pick, want 0", n, allocs)
				}
			})
		}
	}
}
