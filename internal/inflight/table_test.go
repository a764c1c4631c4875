package inflight

import (
	"math/rand/v2"
	"testing"
)

// TestTableMatchesAMap runs random puts, takes and drops on a table and
// on a Go map side by side, with addresses drawn from a small set (so
// that probe runs collide, wrap around the end and get shifted back),
// and fails at the first difference.
func TestTableMatchesAMap(t *testing.T) {
	for _, tc := range []struct {
		name  string
		addrs int // distinct addresses
		step  uintptr
	}{
		{"few, 64 KiB apart", 40, 64 << 10},
		{"many, 8 bytes apart", 3000, 8},
		{"growing past its start", 500, 4096},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(tc.addrs)))
			tab := newTable(8)
			ref := map[uintptr]entry{}
			for op := range 200000 {
				a := 0x10000 + uintptr(rng.IntN(tc.addrs))*tc.step
				switch k := rng.IntN(100); {
				case k < 50:
					e := entry{dir: Dir(rng.IntN(2)), at: int64(op)}
					old, was := tab.put(a, e)
					refOld, refWas := ref[a]
					if was != refWas || old != refOld {
						t.Fatalf("op %d: put(%#x) = %v, %v; want %v, %v", op, a, old, was, refOld, refWas)
					}
					ref[a] = e
				case k < 99:
					e, ok := tab.take(a)
					refE, refOK := ref[a]
					if ok != refOK || e != refE {
						t.Fatalf("op %d: take(%#x) = %v, %v; want %v, %v", op, a, e, ok, refE, refOK)
					}
					delete(ref, a)
				default:
					cut := int64(op - 1000)
					n := tab.drop(func(e entry) bool { return e.dir == Out && e.at <= cut })
					want := 0
					for a, e := range ref {
						if e.dir == Out && e.at <= cut {
							delete(ref, a)
							want++
						}
					}
					if n != want {
						t.Fatalf("op %d: drop took %d, want %d", op, n, want)
					}
				}
				if tab.n != len(ref) {
					t.Fatalf("op %d: %d entries, want %d", op, tab.n, len(ref))
				}
			}
			for a, e := range ref {
				if got, ok := tab.take(a); !ok || got != e {
					t.Fatalf("at the end take(%#x) = %v, %v; want %v", a, got, ok, e)
				}
			}
			if tab.n != 0 || len(tab.slots) != tab.min {
				t.Errorf("emptied: %d entries in %d slots, want 0 in its first %d", tab.n, len(tab.slots), tab.min)
			}
		})
	}
}
