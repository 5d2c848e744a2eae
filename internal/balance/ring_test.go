package balance

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"testing"

	"github.com/waage/waage/internal/backend"
)

const ringKeys = 100_000

// mapping returns the server each of keys 0..ringKeys-1 goes to.
func mapping(b Balancer, tried []*backend.Server) []*backend.Server {
	m := make([]*backend.Server, ringKeys)
	for k := range m {
		m[k] = b.Pick(uint64(k), tried)
	}
	return m
}

// TestRingConsistency takes one of five servers away in every way there is and checks that
// exactly the keys it owned move, that they are about a fifth, that every way moves them to the
// same place, and that they come back when it does.
func TestRingConsistency(t *testing.T) {
	for _, alg := range []string{Hash, SourceIPHash} {
		ss := newServers(1, 1, 1, 1, 1)
		b := mustNew(t, alg, ss, Options{})
		before := mapping(b, nil)
		gone := ss[2]
		removed := mapping(mustNew(t, alg, slices.Delete(slices.Clone(ss), 2, 3), Options{}), nil)

		tests := []struct {
			name    string
			take    func()
			restore func()
			tried   []*backend.Server
		}{
			{name: "removed from the config"},
			{name: "unhealthy", take: func() { gone.SetHealthy(false) }, restore: func() { gone.SetHealthy(true) }},
			{name: "drained", take: func() { gone.SetState(backend.Drain) }, restore: func() { gone.SetState(backend.Ready) }},
			{name: "maintenance", take: func() { gone.SetState(backend.Maintenance) }, restore: func() { gone.SetState(backend.Ready) }},
			{name: "weight 0", take: func() { gone.SetWeight(0) }, restore: func() { gone.SetWeight(1) }},
			{name: "tried", tried: []*backend.Server{gone}},
		}
		for _, tt := range tests {
			t.Run(alg+"/"+tt.name, func(t *testing.T) {
				after := removed
				if tt.take != nil {
					tt.take()
					after = mapping(b, tt.tried)
					tt.restore()
				} else if tt.tried != nil {
					after = mapping(b, tt.tried)
				}
				moved := 0
				for k := range before {
					if before[k] == gone {
						moved++
						if after[k] == gone || after[k] == nil {
							t.Fatalf("key %d still maps to %v", k, after[k])
						}
					} else if after[k] != before[k] {
						t.Fatalf("key %d moved from %s to %s, but %s was not taken away", k, before[k].Name, after[k].Name, before[k].Name)
					}
					if after[k] != removed[k] {
						t.Fatalf("key %d went to %s, but removing the server sends it to %s", k, after[k].Name, removed[k].Name)
					}
				}
				share := float64(moved) / ringKeys
				t.Logf("moved %.4f of the keys", share)
				if math.Abs(share-0.2) > 0.02 {
					t.Errorf("moved %.4f of the keys, want 1/5 ± 0.02", share)
				}
				if back := mapping(b, nil); !slices.Equal(back, before) {
					t.Errorf("keys did not come back when the server returned")
				}
			})
		}
	}
}

// TestRingAddServer checks the other direction: a new sixth server takes about a sixth of the
// keys, and only keys that now go to it move.
func TestRingAddServer(t *testing.T) {
	ss := newServers(1, 1, 1, 1, 1, 1)
	before := mapping(mustNew(t, Hash, ss[:5], Options{}), nil)
	after := mapping(mustNew(t, Hash, ss, Options{}), nil)
	moved := 0
	for k := range before {
		if after[k] != before[k] {
			moved++
			if after[k] != ss[5] {
				t.Fatalf("key %d moved from %s to %s, not to the new server", k, before[k].Name, after[k].Name)
			}
		}
	}
	if share := float64(moved) / ringKeys; math.Abs(share-1.0/6) > 0.02 {
		t.Errorf("moved %.4f of the keys, want 1/6 ± 0.02", share)
	}
}

func TestRingDistribution(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		tol     float64 // relative to each server's expected share
	}{
		{name: "equal weights", weights: []int{1, 1, 1, 1, 1}, tol: 0.10},
		{name: "equal weights, many servers", weights: slices.Repeat([]int{1}, 20), tol: 0.15},
		{name: "weights 1,2,3", weights: []int{1, 2, 3}, tol: 0.10},
		{name: "weights 1,5", weights: []int{1, 5}, tol: 0.10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ss := newServers(tt.weights...)
			b := mustNew(t, Hash, ss, Options{})
			got := make(map[*backend.Server]int)
			for k := range ringKeys {
				// Keys as the protocol layer makes them, from client addresses.
				ip := netip.AddrFrom4([4]byte{10, byte(k >> 16), byte(k >> 8), byte(k)})
				got[b.Pick(HashAddr(ip), nil)]++
			}
			total := 0
			for _, w := range tt.weights {
				total += w
			}
			worst := 0.0
			for i, s := range ss {
				want := float64(ringKeys) * float64(tt.weights[i]) / float64(total)
				dev := math.Abs(float64(got[s])/want - 1)
				worst = max(worst, dev)
				if dev > tt.tol {
					t.Errorf("%s (weight %d) got %d keys, want %.0f ± %.0f%%", s.Name, tt.weights[i], got[s], want, tt.tol*100)
				}
			}
			t.Logf("worst deviation %.1f%%", worst*100)
		})
	}
}

// TestRingSequentialKeys checks that keys which are not hashes (small integers) still spread:
// Pick mixes them first.
func TestRingSequentialKeys(t *testing.T) {
	ss := newServers(1, 1, 1)
	b := mustNew(t, Hash, ss, Options{})
	got := counts(b, 3000, nil)
	for _, s := range ss {
		if got[s] < 800 {
			t.Errorf("keys 0..2999: %v, want about 1000 each", names(got))
		}
	}
}

func TestRingOrderIndependent(t *testing.T) {
	ss := newServers(1, 2, 1, 3)
	reversed := slices.Clone(ss)
	slices.Reverse(reversed)
	a := mapping(mustNew(t, Hash, ss, Options{}), nil)
	b := mapping(mustNew(t, Hash, reversed, Options{}), nil)
	if !slices.Equal(a, b) {
		t.Errorf("reordering the servers in the config moved keys")
	}
}

// TestRingSharedAcrossInstances checks that two balancers built from separately created servers
// with the same names (two waage processes, or one after a restart) map keys identically.
func TestRingSharedAcrossInstances(t *testing.T) {
	a := mapping(mustNew(t, SourceIPHash, newServers(1, 1, 2), Options{}), nil)
	b := mapping(mustNew(t, SourceIPHash, newServers(1, 1, 2), Options{}), nil)
	for k := range a {
		if a[k].Name != b[k].Name {
			t.Fatalf("key %d: %s in one instance, %s in the other", k, a[k].Name, b[k].Name)
		}
	}
}

func TestRingBackups(t *testing.T) {
	ss := newServers(1, 1, 1, 1, 1)
	ss[3].Backup, ss[4].Backup = true, true
	b := mustNew(t, Hash, ss, Options{})
	primaries := mapping(b, nil)
	for k, s := range primaries {
		if s.Backup {
			t.Fatalf("key %d went to backup %s while primaries are up", k, s.Name)
		}
	}
	for _, s := range ss[:3] {
		s.SetHealthy(false)
	}
	backups := mapping(b, nil)
	got := make(map[*backend.Server]int)
	for _, s := range backups {
		got[s]++
	}
	if got[ss[3]] < ringKeys/3 || got[ss[4]] < ringKeys/3 || got[ss[3]]+got[ss[4]] != ringKeys {
		t.Errorf("with primaries down: %v, want the two backups sharing the keys", names(got))
	}
	ss[0].SetHealthy(true)
	for k, s := range mapping(b, nil) {
		if s != ss[0] {
			t.Fatalf("key %d went to %s while primary s1 is the only one up", k, s.Name)
		}
	}
}

// TestRingSingleSurvivor checks the long walk: with 49 of 50 servers down, every key still finds
// the last one.
func TestRingSingleSurvivor(t *testing.T) {
	ss := newServers(slices.Repeat([]int{1}, 50)...)
	for _, s := range ss[:49] {
		s.SetHealthy(false)
	}
	b := mustNew(t, Hash, ss, Options{})
	for k := range 1000 {
		if got := b.Pick(uint64(k), nil); got != ss[49] {
			t.Fatalf("key %d: %v, want s50", k, got)
		}
	}
	if got := b.Pick(1, ss[49:]); got != nil {
		t.Errorf("with the survivor tried: %v, want nil", got)
	}
}

func TestRingShape(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		setup   func(ss []*backend.Server)
		want    []int // points per server
	}{
		{name: "points per weight", weights: []int{1, 2, 3}, want: []int{1024, 2048, 3072}},
		{name: "weight 0 at build time counts as 1", weights: []int{0, 2}, want: []int{1024, 2048}},
		{name: "nameless server uses its address", weights: []int{1, 1},
			setup: func(ss []*backend.Server) { ss[0].Name = "" }, want: []int{1024, 1024}},
		{name: "weights within the cap keep their points", weights: []int{60, 40}, want: []int{60 * 1024, 40 * 1024}},
		{name: "large weights divided by their gcd", weights: []int{1000, 2000, 3000}, want: []int{1024, 2048, 3072}},
		{name: "large weights scaled to the cap", weights: []int{1 << 20, 1}, want: []int{maxRingPoints - 1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ss := newServers(tt.weights...)
			if tt.setup != nil {
				tt.setup(ss)
			}
			r := newRing(ss)
			got := make([]int, len(ss))
			for _, o := range r.owner {
				got[o]++
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("points = %v, want %v", got, tt.want)
			}
			if !slices.IsSorted(r.hashes) {
				t.Errorf("ring is not sorted")
			}
		})
	}
}

// TestRingWeightZeroAtBuild checks that a server at weight 0 when the ring is built (an operator
// pausing it during a reload) gets its keys once its weight is restored.
func TestRingWeightZeroAtBuild(t *testing.T) {
	ss := newServers(1, 1, 0)
	b := mustNew(t, Hash, ss, Options{})
	if got := counts(b, 3000, nil); got[ss[2]] != 0 {
		t.Fatalf("weight-0 server got %d keys", got[ss[2]])
	}
	ss[2].SetWeight(1)
	if got := counts(b, 3000, nil); got[ss[2]] < 800 {
		t.Errorf("after SetWeight(1): %v, want about a third for s3", names(got))
	}
}

func ExampleHashAddr() {
	ss := []*backend.Server{
		backend.NewServer("imap", "a", "10.0.0.1:143"),
		backend.NewServer("imap", "b", "10.0.0.2:143"),
	}
	b, _ := New(SourceIPHash, ss, Options{})
	client := netip.MustParseAddr("198.51.100.7")
	first := b.Pick(HashAddr(client), nil)
	again := b.Pick(HashAddr(client), nil)
	fmt.Println(first == again)
	// Output: true
}
