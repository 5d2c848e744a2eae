package balance

import (
	"fmt"
	"testing"

	"github.com/waage/waage/internal/backend"
)

// newServers returns servers s1..sN of backend "web" with the given weights.
func newServers(weights ...int) []*backend.Server {
	ss := make([]*backend.Server, len(weights))
	for i, w := range weights {
		ss[i] = backend.NewServer("web", fmt.Sprintf("s%d", i+1), fmt.Sprintf("127.0.0.1:%d", 9001+i))
		ss[i].SetWeight(w)
	}
	return ss
}

func mustNew(t testing.TB, algorithm string, servers []*backend.Server, opts Options) Balancer {
	t.Helper()
	b, err := New(algorithm, servers, opts)
	if err != nil {
		t.Fatalf("New(%q): %v", algorithm, err)
	}
	return b
}

// counts picks n times with keys 0..n-1 and returns how often each server was chosen (nil
// results are counted under nil).
func counts(b Balancer, n int, tried []*backend.Server) map[*backend.Server]int {
	m := make(map[*backend.Server]int)
	for i := range n {
		m[b.Pick(uint64(i), tried)]++
	}
	return m
}

// names renders a pick count map with server names, for failure messages.
func names(m map[*backend.Server]int) map[string]int {
	out := make(map[string]int, len(m))
	for s, n := range m {
		if s == nil {
			out["<nil>"] = n
			continue
		}
		out[s.Name] = n
	}
	return out
}

// isCandidate is the reference definition of the candidate rules, used to check every
// algorithm against.
func isCandidate(s *backend.Server, tried []*backend.Server) bool {
	if !s.Usable() {
		return false
	}
	for _, t := range tried {
		if t == s {
			return false
		}
	}
	return true
}

// wantTier returns the servers that are candidates for this pick under the primaries-first
// rule.
func wantTier(servers, tried []*backend.Server) []*backend.Server {
	var prim, back []*backend.Server
	for _, s := range servers {
		if !isCandidate(s, tried) {
			continue
		}
		if s.Backup {
			back = append(back, s)
		} else {
			prim = append(prim, s)
		}
	}
	if len(prim) > 0 {
		return prim
	}
	return back
}
