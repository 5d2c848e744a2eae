package balance

import (
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/waage/waage/internal/backend"
)

// TestConcurrentPick runs 8 goroutines x 10k picks per algorithm (under -race in CI) while
// another goroutine keeps flipping health, state and weight. Servers that never become usable,
// or that are always in tried, must never be picked; and once the flipping stops every pick
// must succeed again.
func TestConcurrentPick(t *testing.T) {
	const (
		pickers = 8
		picks   = 10_000
	)
	for _, alg := range Algorithms {
		t.Run(alg, func(t *testing.T) {
			flip := newServers(1, 2, 3, 1, 1, 1, 2)
			flip[5].Backup, flip[6].Backup = true, true
			never := backend.NewServer("web", "never", "x")
			never.SetState(backend.Maintenance)
			neverBackup := backend.NewServer("web", "never-backup", "x")
			neverBackup.Backup = true
			neverBackup.SetHealthy(false)
			triedS := backend.NewServer("web", "tried", "x")
			servers := append([]*backend.Server{never, triedS, neverBackup}, flip...)
			b := mustNew(t, alg, servers, Options{})
			tried := []*backend.Server{triedS}

			stop := make(chan struct{})
			var flips atomic.Int64
			var flipper sync.WaitGroup
			flipper.Go(func() {
				rng := rand.New(rand.NewPCG(1, 1))
				for {
					select {
					case <-stop:
						return
					default:
					}
					s := flip[rng.IntN(len(flip))]
					switch rng.IntN(3) {
					case 0:
						s.SetHealthy(rng.IntN(4) != 0)
					case 1:
						s.SetState(backend.State(max(0, rng.IntN(4)-1))) // ready half the time
					case 2:
						s.SetWeight(rng.IntN(5))
					}
					flips.Add(1)
				}
			})

			var nils atomic.Int64
			var pickersWG sync.WaitGroup
			for g := range pickers {
				pickersWG.Go(func() {
					for i := range picks {
						if i%64 == 0 {
							runtime.Gosched() // let the flipper in even on one CPU
						}
						key := uint64(g*picks + i)
						s := b.Pick(key, tried)
						if s == nil {
							nils.Add(1)
							continue
						}
						if s == never || s == triedS || s == neverBackup {
							t.Errorf("picked %s", s.Name)
							return
						}
						s.Acquire()
						s.ObserveLatency(time.Duration(1+key%7) * time.Millisecond)
						s.Release()
					}
				})
			}
			pickersWG.Wait()
			close(stop)
			flipper.Wait()
			t.Logf("%d flips, %d nil picks of %d", flips.Load(), nils.Load(), pickers*picks)
			if flips.Load() < 100 {
				t.Errorf("only %d flips happened during the picks", flips.Load())
			}

			for _, s := range flip {
				s.SetHealthy(true)
				s.SetState(backend.Ready)
				s.SetWeight(1)
				if s.InFlight() != 0 {
					t.Errorf("%s: in-flight %d after all releases", s.Name, s.InFlight())
				}
			}
			for i := range 100 {
				s := b.Pick(uint64(i), tried)
				if s == nil || s.Backup || s == never || s == triedS {
					t.Fatalf("after the flipping stopped: Pick = %v", s)
				}
			}
		})
	}
}
