package tstest

import (
	"net/netip"
	"testing"
	"time"

	"weft/internal/key"
)

func TestFill(t *testing.T) {
	type inner struct{ N int }
	var s struct {
		B    bool
		S    string
		T    time.Time
		P    netip.Prefix
		AP   []netip.AddrPort
		K    key.NodePublic
		M    map[int]string
		Ptr  *inner
		Arr  [2]byte
		Nest inner
	}
	Fill(&s)
	if z := ZeroFields(&s); len(z) != 0 {
		t.Fatalf("Fill left %v zero", z)
	}
	if s.K.IsZero() || !s.P.IsValid() || !s.AP[0].IsValid() || s.Ptr.N != 1 {
		t.Fatalf("Fill gave %+v", s)
	}
}
