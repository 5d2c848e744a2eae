package balance

import (
	"testing"

	"github.com/waage/waage/internal/backend"
)

// FuzzPick builds a backend from the input (weights, states, backups, tried), then interleaves
// state changes and picks. Every pick must return a candidate of the right tier, and nil only
// when there is none.
func FuzzPick(f *testing.F) {
	f.Add(uint8(0), uint64(0), []byte{3, 1, 0, 2, 0, 3, 0, 0, 0, 0})
	f.Add(uint8(2), uint64(42), []byte{5, 1, 0, 0, 0x40, 1, 0x80, 2, 0x10, 1, 0x20, 1, 3, 0, 5, 0})
	f.Add(uint8(3), uint64(1<<63), []byte{8, 1, 0x40, 1, 0x40, 0, 0, 1, 0x08, 2, 0, 3, 0, 4, 0, 5, 0x80, 7, 9, 11, 0, 2, 4})
	f.Add(uint8(4), uint64(7), []byte{2, 0, 0, 0, 0x40, 1, 3, 5, 7})
	f.Add(uint8(5), uint64(99), []byte{4, 5, 0x80, 1, 0x80, 2, 0x80, 3, 0x80})
	f.Fuzz(func(t *testing.T, alg uint8, key uint64, data []byte) {
		if len(data) == 0 {
			return
		}
		n := 1 + int(data[0])%8
		data = data[1:]
		ss := make([]*backend.Server, n)
		var tried []*backend.Server
		for i := range ss {
			var w, flags byte
			if len(data) >= 2 {
				w, flags, data = data[0], data[1], data[2:]
			}
			s := backend.NewServer("fuzz", string(rune('a'+i)), "x")
			s.SetWeight(int(w % 6))
			s.SetHealthy(flags&0x08 == 0)
			s.SetState(backend.State(flags>>4&3) % 3)
			s.Backup = flags&0x40 != 0
			if flags&0x80 != 0 {
				tried = append(tried, s)
			}
			ss[i] = s
		}
		algorithm := Algorithms[int(alg)%len(Algorithms)]
		rnd := key
		b, err := New(algorithm, ss, Options{Rand: func() uint64 { rnd += 0x9e3779b97f4a7c15; return mix(rnd) }})
		if err != nil {
			t.Fatal(err)
		}
		weights := []int{0, 1, 2, 7, 1 << 20, 1<<31 - 1}
		check := func(k uint64) {
			got := b.Pick(k, tried)
			want := wantTier(ss, tried)
			if got == nil {
				if len(want) != 0 {
					t.Fatalf("%s: nil with candidates %v", algorithm, want)
				}
				return
			}
			if !isCandidate(got, tried) {
				t.Fatalf("%s: picked %s (usable %v, tried %v)", algorithm, got.Name, got.Usable(), isTried(got, tried))
			}
			if len(want) == 0 || got.Backup != want[0].Backup {
				t.Fatalf("%s: picked %s (backup %v) but the candidates are %v", algorithm, got.Name, got.Backup, want)
			}
		}
		check(key)
		for i, op := range data {
			s := ss[int(op>>2)%n]
			switch op & 3 {
			case 0:
				check(key + uint64(i))
			case 1:
				s.SetHealthy(!s.Healthy())
			case 2:
				s.SetState(backend.State(op>>5) % 3)
			case 3:
				s.SetWeight(weights[int(op>>5)%len(weights)])
			}
			if op&0x80 != 0 {
				s.Acquire() // changes the least_* answers; nothing releases, which is fine
			}
		}
		check(key ^ 0xdeadbeef)
	})
}
