package balance

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/waage/waage/internal/backend"
)

// maglevKeys is how many keys the maglev tests map: 1M keys put the sampling error of a
// 10% share at 0.03% of all keys, far below what the tests look for.
const maglevKeys = 1_000_000

// statKeys is how many keys the statistical tests map: maglevKeys, or a fifth of it under the
// race detector, which is slow and has nothing to find in single-goroutine counting.
func statKeys() int {
	if raceEnabled() {
		return maglevKeys / 5
	}
	return maglevKeys
}

// namedServers returns servers of backend "web" with the given names, each of weight 1.
func namedServers(names ...string) []*backend.Server {
	ss := make([]*backend.Server, len(names))
	for i, n := range names {
		ss[i] = backend.NewServer("web", n, "10.0.0."+fmt.Sprint(i+1)+":80")
		ss[i].SetWeight(1)
	}
	return ss
}

func serverNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("srv-%02d", i+1)
	}
	return names
}

// nameMapping returns the name of the server each of keys 0..n-1 goes to ("" for nil). Names,
// not pointers, so that balancers over different *backend.Server values, as two nodes have,
// compare.
func nameMapping(b Balancer, n int, tried []*backend.Server) []string {
	m := make([]string, n)
	for k := range m {
		if s := b.Pick(uint64(k), tried); s != nil {
			m[k] = s.Name
		}
	}
	return m
}

// TestMaglevSameServersSameTable: two nodes build their tables independently, from their own
// server values listed in a different order (and with different addresses), and agree on the
// server of every key.
func TestMaglevSameServersSameTable(t *testing.T) {
	names := serverNames(10)
	a := mustNew(t, Maglev, namedServers(names...), Options{})
	shuffled := slices.Clone(names)
	rand.New(rand.NewPCG(7, 7)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	other := namedServers(shuffled...)
	for _, s := range other {
		s.Address = "192.0.2.1:" + s.Name[len("srv-"):]
	}
	b := mustNew(t, Maglev, other, Options{})
	ma, mb := nameMapping(a, maglevKeys, nil), nameMapping(b, maglevKeys, nil)
	for k := range ma {
		if ma[k] != mb[k] {
			t.Fatalf("key %d: %s on one node, %s on the other", k, ma[k], mb[k])
		}
	}
}

// disruption compares two key mappings: how many keys moved in all, and how many of those did
// not have to (their server is in both).
func disruption(before, after []string, gone, added string) (moved, needless int) {
	for k := range before {
		if before[k] == after[k] {
			continue
		}
		moved++
		if before[k] != gone && after[k] != added {
			needless++
		}
	}
	return moved, needless
}

// TestMaglevDisruption takes one of N servers away (N = 5, 10, 50) and brings it back, and
// measures the keys that move: about 1/N must, and Maglev moves a few more whose servers stayed
// (its tables are only nearly minimal-disruption). The numbers go to the test log and to
// docs/load-balancing.md.
func TestMaglevDisruption(t *testing.T) {
	tests := []struct {
		n int
		// maxNeedless bounds the keys that moved although neither their old nor their new
		// server changed, as a share of all keys.
		maxNeedless float64
	}{
		{n: 5, maxNeedless: 0.01},
		{n: 10, maxNeedless: 0.02},
		{n: 50, maxNeedless: 0.04},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("servers=%d", tt.n), func(t *testing.T) {
			keys := statKeys()
			names := serverNames(tt.n)
			gone := names[tt.n/2]
			before := nameMapping(mustNew(t, Maglev, namedServers(names...), Options{}), keys, nil)
			rest := slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == gone })
			after := nameMapping(mustNew(t, Maglev, namedServers(rest...), Options{}), keys, nil)

			owned := 0
			for k := range before {
				if before[k] == gone {
					owned++
					if after[k] == gone {
						t.Fatalf("key %d still on the removed server", k)
					}
				}
			}
			moved, needless := disruption(before, after, gone, "")
			share, want := float64(moved)/float64(keys), 1/float64(tt.n)
			t.Logf("remove 1 of %d: %.4f of the keys moved (1/N = %.4f): %d had to, %d (%.4f) did not",
				tt.n, share, want, owned, needless, float64(needless)/float64(keys))
			if math.Abs(float64(owned)/float64(keys)-want) > 0.05*want {
				t.Errorf("the removed server owned %.4f of the keys, want 1/%d ± 5%%", float64(owned)/float64(keys), tt.n)
			}
			if float64(needless)/float64(keys) > tt.maxNeedless {
				t.Errorf("%.4f of the keys moved between servers that stayed, want at most %.4f", float64(needless)/float64(keys), tt.maxNeedless)
			}

			// Adding it back restores the first table exactly, and moves the same keys back.
			back := nameMapping(mustNew(t, Maglev, namedServers(names...), Options{}), keys, nil)
			if !slices.Equal(back, before) {
				t.Fatal("adding the server back did not restore the mapping")
			}
			added, addNeedless := disruption(after, back, "", gone)
			t.Logf("add it back: %.4f of the keys moved, %d (%.4f) between servers that stayed",
				float64(added)/float64(keys), addNeedless, float64(addNeedless)/float64(keys))
			if added != moved {
				t.Errorf("adding moved %d keys, removing %d", added, moved)
			}

			// A new server (one no table had) takes about 1/(N+1) of the keys.
			newName := fmt.Sprintf("srv-new-%d", tt.n)
			grown := nameMapping(mustNew(t, Maglev, namedServers(append(slices.Clone(names), newName)...), Options{}), keys, nil)
			gmoved, gneedless := disruption(before, grown, "", newName)
			t.Logf("add a new server: %.4f of the keys moved (1/(N+1) = %.4f), %d (%.4f) between servers that stayed",
				float64(gmoved)/float64(keys), 1/float64(tt.n+1), gneedless, float64(gneedless)/float64(keys))
			if float64(gneedless)/float64(keys) > tt.maxNeedless {
				t.Errorf("%.4f of the keys moved between servers that stayed", float64(gneedless)/float64(keys))
			}
		})
	}
}

// eligibilityKeys is how many keys TestMaglevEligibility maps, eleven times over.
const eligibilityKeys = 200_000

// TestMaglevEligibility takes a server out in each way there is: the balancer must map keys
// exactly as one built without it, and exactly as before once it is back.
func TestMaglevEligibility(t *testing.T) {
	names := serverNames(10)
	ss := namedServers(names...)
	b := mustNew(t, Maglev, ss, Options{})
	before := nameMapping(b, eligibilityKeys, nil)
	gone := ss[3]
	without := nameMapping(mustNew(t, Maglev, namedServers(slices.Delete(slices.Clone(names), 3, 4)...), Options{}), eligibilityKeys, nil)
	tests := []struct {
		name          string
		take, restore func()
	}{
		{name: "unhealthy", take: func() { gone.SetHealthy(false) }, restore: func() { gone.SetHealthy(true) }},
		{name: "drained", take: func() { gone.SetState(backend.Drain) }, restore: func() { gone.SetState(backend.Ready) }},
		{name: "maintenance", take: func() { gone.SetState(backend.Maintenance) }, restore: func() { gone.SetState(backend.Ready) }},
		{name: "ejected", take: func() { gone.SetEjected(true) }, restore: func() { gone.SetEjected(false) }},
		{name: "weight 0", take: func() { gone.SetWeight(0) }, restore: func() { gone.SetWeight(1) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.take()
			if got := nameMapping(b, eligibilityKeys, nil); !slices.Equal(got, without) {
				t.Errorf("with %s out, the mapping differs from a table built without it", gone.Name)
			}
			tt.restore()
			// A returning server is noticed by the one-server check of some later pick.
			for k := range 1000 {
				b.Pick(uint64(k), nil)
			}
			if got := nameMapping(b, eligibilityKeys, nil); !slices.Equal(got, before) {
				t.Errorf("keys did not come back when %s returned", gone.Name)
			}
		})
	}
}

// TestMaglevRebuildsOnlyOnChange: picks, retries included, never rebuild the table while the
// set of eligible servers stays as it is; one change rebuilds it once.
func TestMaglevRebuildsOnlyOnChange(t *testing.T) {
	ss := namedServers(serverNames(10)...)
	b := mustNew(t, Maglev, ss, Options{}).(*maglev)
	first := b.tiers[0].cur.Load()
	tried := ss[:2]
	for k := range 100_000 {
		b.Pick(uint64(k), nil)
		b.Pick(uint64(k), tried)
	}
	if b.tiers[0].cur.Load() != first {
		t.Fatal("the table was rebuilt without a change")
	}
	ss[5].SetHealthy(false)
	b.Pick(0, nil)
	for k := range 100_000 {
		if b.Pick(uint64(k), nil) == ss[5] {
			t.Fatalf("key %d went to the unhealthy server", k)
		}
	}
	second := b.tiers[0].cur.Load()
	if second == first {
		t.Fatal("the table was not rebuilt after a server went down")
	}
	for k := range 100_000 {
		b.Pick(uint64(k), nil)
	}
	if b.tiers[0].cur.Load() != second {
		t.Fatal("the table was rebuilt more than once for one change")
	}
	ss[5].SetWeight(3)
	ss[5].SetHealthy(true)
	counts := map[string]int{}
	for k := range 100_000 {
		counts[b.Pick(uint64(k), nil).Name]++
	}
	if share := float64(counts[ss[5].Name]) / 100_000; math.Abs(share-3.0/12) > 0.01 {
		t.Errorf("after its weight went to 3, %s took %.4f of the keys, want 3/12", ss[5].Name, share)
	}
}

// TestMaglevWeights: weights set the share of table entries, and so of keys.
func TestMaglevWeights(t *testing.T) {
	tests := []struct {
		weights []int
	}{
		{weights: []int{1, 2, 3}},
		{weights: []int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}},
		{weights: []int{5, 1, 1}},
		{weights: []int{1000, 1, 1, 1}},
		{weights: []int{7, 11, 13, 0, 2}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.weights), func(t *testing.T) {
			keys := float64(statKeys())
			ss := newServers(tt.weights...)
			b := mustNew(t, Maglev, ss, Options{})
			var sum int
			for _, w := range tt.weights {
				sum += w
			}
			// The table holds each share to within a round's turns.
			entries := map[uint16]int{}
			for _, i := range b.(*maglev).tiers[0].cur.Load().entries {
				entries[i]++
			}
			got := counts(b, int(keys), nil)
			for i, s := range ss {
				want := float64(tt.weights[i]) / float64(sum)
				if n := float64(entries[uint16(i)]); math.Abs(n-want*DefaultMaglevTableSize) > float64(len(ss)+1) {
					t.Errorf("%s owns %v entries, want %.1f", s.Name, n, want*DefaultMaglevTableSize)
				}
				share := float64(got[s]) / keys
				if math.Abs(share-want) > 0.02*want+0.0005 {
					t.Errorf("%s (weight %d) got %.4f of the keys, want %.4f ± 2%%", s.Name, tt.weights[i], share, want)
				}
			}
		})
	}
}

// TestMaglevEvenness: with equal weights every server's share of 1M keys is within 2% of 1/N
// (plus three standard deviations of sampling), for N from 2 to 100 (at 100 servers the table
// has 655 entries each).
func TestMaglevEvenness(t *testing.T) {
	for _, n := range []int{2, 7, 20, 100} {
		t.Run(fmt.Sprintf("servers=%d", n), func(t *testing.T) {
			keys := float64(statKeys())
			ss := namedServers(serverNames(n)...)
			got := counts(mustNew(t, Maglev, ss, Options{}), int(keys), nil)
			want := 1 / float64(n)
			worst := 0.0
			for _, s := range ss {
				dev := math.Abs(float64(got[s])/keys-want) / want
				worst = max(worst, dev)
				if dev > 0.02+3*math.Sqrt(want/keys)/want {
					t.Errorf("%s got %.5f of the keys, want %.5f", s.Name, float64(got[s])/keys, want)
				}
			}
			t.Logf("largest deviation from 1/%d: %.2f%%", n, 100*worst)
		})
	}
}

// TestMaglevTried: a retry goes to another server, the same one on every node, and the keys of
// a tried server spread over the others in proportion to their shares.
func TestMaglevTried(t *testing.T) {
	names := serverNames(5)
	ss := namedServers(names...)
	a := mustNew(t, Maglev, ss, Options{})
	other := namedServers(names...)
	b := mustNew(t, Maglev, other, Options{})
	spread := map[string]int{}
	owned := 0
	for k := range uint64(200_000) {
		first := a.Pick(k, nil)
		second := a.Pick(k, []*backend.Server{first})
		if second == nil || second == first {
			t.Fatalf("key %d: retry after %s got %v", k, first.Name, second)
		}
		var firstB *backend.Server
		for _, s := range other {
			if s.Name == first.Name {
				firstB = s
			}
		}
		if got := b.Pick(k, []*backend.Server{firstB}); got.Name != second.Name {
			t.Fatalf("key %d: the retry goes to %s on one node, %s on the other", k, second.Name, got.Name)
		}
		if first == ss[0] {
			owned++
			spread[second.Name]++
		}
	}
	for _, n := range names[1:] {
		if share := float64(spread[n]) / float64(owned); math.Abs(share-0.25) > 0.03 {
			t.Errorf("retries of %s's keys: %.3f went to %s, want about 1/4 (%v)", names[0], share, n, spread)
		}
	}
}

// TestMaglevPaperListing checks the table builder against a literal transcription of the
// paper's Listing 1 (permutations computed in full, turns in rounds), extended by weights the
// plain way: every server earns its weight each round and takes a turn when its credit reaches
// the largest weight.
func TestMaglevPaperListing(t *testing.T) {
	const size = 1009
	for _, weights := range [][]int{{1, 1, 1, 1, 1}, {3, 3, 3}, {1, 2, 3}, {4, 0, 1, 9, 2, 4, 1}, {1000, 1, 1}} {
		t.Run(fmt.Sprint(weights), func(t *testing.T) {
			ss := newServers(weights...)
			b, err := New(Maglev, ss, Options{MaglevTableSize: size})
			if err != nil {
				t.Fatal(err)
			}
			got := b.(*maglev).tiers[0].cur.Load().entries
			want := referenceMaglev(ss, weights, size)
			for i := range want {
				if int(got[i]) != want[i] {
					t.Fatalf("entry %d: %d, the reference has %d", i, got[i], want[i])
				}
			}
		})
	}
}

// referenceMaglev fills a table the slow and obvious way: each live server with its full
// permutation, in rounds; in each round the servers go heaviest first, then in name order.
func referenceMaglev(ss []*backend.Server, weights []int, m int) []int {
	var order []int
	top := 0
	for i := range ss {
		if weights[i] > 0 {
			order = append(order, i)
			top = max(top, weights[i])
		}
	}
	slices.SortFunc(order, func(a, b int) int {
		if weights[a] != weights[b] {
			return weights[b] - weights[a]
		}
		return strings.Compare(ss[a].Name, ss[b].Name)
	})
	perm := make([][]int, len(order))
	for k, i := range order {
		h1, h2 := maglevHashes(ss[i].Name)
		offset, skip := h1%uint64(m), h2%uint64(m-1)+1
		perm[k] = make([]int, m)
		for j := range m {
			perm[k][j] = int((offset + uint64(j)*skip) % uint64(m))
		}
	}
	entry := slices.Repeat([]int{-1}, m)
	next := make([]int, len(order))
	credit := make([]int, len(order))
	for n := 0; n < m; {
		for k, i := range order {
			credit[k] += weights[i]
			if credit[k] < top || n == m {
				continue
			}
			credit[k] -= top
			c := perm[k][next[k]]
			for entry[c] >= 0 {
				next[k]++
				c = perm[k][next[k]]
			}
			entry[c] = i
			next[k]++
			n++
		}
	}
	return entry
}

// TestMaglevTableSize: the size must be a prime larger than the servers of each tier.
func TestMaglevTableSize(t *testing.T) {
	ss := newServers(1, 1, 1, 1, 1, 1, 1, 1, 1, 1)
	tests := []struct {
		size    int
		wantErr string
	}{
		{size: 0},
		{size: 11},
		{size: 65537},
		{size: 655373},
		{size: 100, wantErr: "table size 100: must be a prime number"},
		{size: 65536, wantErr: "must be a prime number"},
		{size: 1, wantErr: "must be a prime number"},
		{size: -7, wantErr: "must be a prime number"},
		{size: 7, wantErr: "10 servers: more than the table size 7 allows"},
		{size: 4194319, wantErr: "no larger than 4194304"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.size), func(t *testing.T) {
			b, err := New(Maglev, ss, Options{MaglevTableSize: tt.size})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got := counts(b, 10_000, nil); len(got) != len(ss) {
					t.Errorf("%d servers got keys, want all %d", len(got), len(ss))
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "balance: maglev: ") {
				t.Fatalf("New = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
	for n, want := range map[int]bool{2: true, 3: true, 4: false, 9: false, 65537: true, 65539: true, 65541: false, 655373: true} {
		if IsPrime(n) != want {
			t.Errorf("IsPrime(%d) = %v", n, !want)
		}
	}
}

// TestMaglevBuildTime keeps building a default table under 5 ms (it takes 1-2 ms), since a
// Pick builds one whenever the eligible servers change. Skipped under the race detector, which
// slows the build several times.
func TestMaglevBuildTime(t *testing.T) {
	if testing.Short() || raceEnabled() {
		t.Skip("timing")
	}
	for _, n := range []int{5, 50, 1000} {
		ss := namedServers(serverNames(n)...)
		b := mustNew(t, Maglev, ss, Options{}).(*maglev)
		tier := &b.tiers[0]
		weights := tier.cur.Load().weights
		best := time.Hour
		for range 10 {
			start := time.Now()
			tier.build(weights)
			best = min(best, time.Since(start))
		}
		t.Logf("servers=%d: a %d-entry table builds in %v", n, DefaultMaglevTableSize, best)
		if best > 5*time.Millisecond {
			t.Errorf("servers=%d: building took %v", n, best)
		}
	}
}

// raceEnabled reports whether the test binary was built with the race detector.
func raceEnabled() bool {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" {
				return s.Value == "true"
			}
		}
	}
	return false
}

// BenchmarkMaglevBuild measures building a table, for several table sizes and server counts,
// with equal and unequal weights.
func BenchmarkMaglevBuild(b *testing.B) {
	for _, size := range []int{10007, DefaultMaglevTableSize, 655373} {
		for _, n := range []int{5, 50, 500} {
			for _, weighted := range []bool{false, true} {
				ss := namedServers(serverNames(n)...)
				if weighted {
					for i, s := range ss {
						s.SetWeight(1 + i%5)
					}
				}
				bal := mustNew(b, Maglev, ss, Options{MaglevTableSize: size}).(*maglev)
				tier := &bal.tiers[0]
				weights := tier.cur.Load().weights
				b.Run(fmt.Sprintf("size=%d/servers=%d/weighted=%v", size, n, weighted), func(b *testing.B) {
					for b.Loop() {
						tier.build(weights)
					}
				})
			}
		}
	}
}

// BenchmarkMaglevScale compares a maglev pick with a source_ip_hash pick (the hash ring) and
// measures building maglev's default table, for 10, 100 and 1,000 servers; bench/maglev.sh runs
// it and prints the ratios.
func BenchmarkMaglevScale(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		for _, alg := range []string{Maglev, SourceIPHash} {
			bal := mustNew(b, alg, namedServers(serverNames(n)...), Options{})
			b.Run(fmt.Sprintf("pick/%s/servers=%d", alg, n), func(b *testing.B) {
				var key uint64
				for b.Loop() {
					key += 0x9e3779b97f4a7c15
					if bal.Pick(key, nil) == nil {
						b.Fatal("nil pick")
					}
				}
			})
		}
		bal := mustNew(b, Maglev, namedServers(serverNames(n)...), Options{}).(*maglev)
		tier := &bal.tiers[0]
		weights := tier.cur.Load().weights
		b.Run(fmt.Sprintf("build/servers=%d", n), func(b *testing.B) {
			for b.Loop() {
				tier.build(weights)
			}
		})
	}
}
