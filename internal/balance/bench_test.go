package balance

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// BenchmarkPick measures one Pick per algorithm with 3 and 50 healthy servers, serially and from
// all Ps at once (the parallel numbers show contention: round robin's mutex, the tie counter).
// Servers carry some in-flight load and latency so the least_* algorithms compare real costs.
func BenchmarkPick(b *testing.B) {
	for _, alg := range Algorithms {
		for _, n := range []int{3, 50} {
			weights := make([]int, n)
			for i := range weights {
				weights[i] = 1 + i%3
			}
			ss := newServers(weights...)
			for i, s := range ss {
				setInFlight(s, i%5)
				s.ObserveLatency(time.Duration(1+i%4) * time.Millisecond)
			}
			bal := mustNew(b, alg, ss, Options{})
			b.Run(fmt.Sprintf("%s/servers=%d", alg, n), func(b *testing.B) {
				var key uint64
				for b.Loop() {
					key++
					if bal.Pick(key, nil) == nil {
						b.Fatal("nil pick")
					}
				}
			})
			b.Run(fmt.Sprintf("%s/servers=%d/parallel", alg, n), func(b *testing.B) {
				b.RunParallel(func(pb *testing.PB) {
					var key uint64
					for pb.Next() {
						key++
						if bal.Pick(key, nil) == nil {
							b.Fatal("nil pick")
						}
					}
				})
			})
		}
	}
}

// BenchmarkPickDegraded measures the skipping paths: a third of 50 servers down and one server
// already tried.
func BenchmarkPickDegraded(b *testing.B) {
	for _, alg := range Algorithms {
		ss := newServers(slices.Repeat([]int{1}, 50)...)
		for i, s := range ss {
			if i%3 == 0 {
				s.SetHealthy(false)
			}
		}
		tried := ss[1:2]
		bal := mustNew(b, alg, ss, Options{})
		b.Run(alg, func(b *testing.B) {
			var key uint64
			for b.Loop() {
				key++
				if bal.Pick(key, tried) == nil {
					b.Fatal("nil pick")
				}
			}
		})
	}
}

func BenchmarkHashString(b *testing.B) {
	for b.Loop() {
		HashString("/api/v1/users/12345")
	}
}

func BenchmarkCookie(b *testing.B) {
	ss := newServers(slices.Repeat([]int{1}, 50)...)
	v := CookieValue(ss[49])
	b.Run("ServerByCookie/servers=50", func(b *testing.B) {
		for b.Loop() {
			ServerByCookie(ss, v)
		}
	})
	ix := NewCookieIndex(ss)
	b.Run("CookieIndex/servers=50", func(b *testing.B) {
		for b.Loop() {
			ix.Server(v)
		}
	})
}

func BenchmarkNewRing(b *testing.B) {
	for _, n := range []int{3, 50} {
		ss := newServers(slices.Repeat([]int{1}, n)...)
		b.Run(fmt.Sprintf("servers=%d", n), func(b *testing.B) {
			for b.Loop() {
				newConsistent(tiers{ss})
			}
		})
	}
}
