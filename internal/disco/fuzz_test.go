package disco

import (
	"bytes"
	"net/netip"
	"testing"

	"weft/internal/key"
)

// FuzzParse checks that Parse never panics and that whatever it accepts
// re-encodes to something it parses to the same message.
func FuzzParse(f *testing.F) {
	f.Add((&Ping{TxID: NewTxID()}).AppendMarshal(nil))
	f.Add((&Ping{TxID: NewTxID(), Padding: 1400}).AppendMarshal(nil))
	f.Add((&Pong{Src: netip.MustParseAddrPort("1.2.3.4:5")}).AppendMarshal(nil))
	f.Add((&CallMeMaybe{Endpoints: []netip.AddrPort{netip.MustParseAddrPort("[::1]:2")}}).AppendMarshal(nil))
	f.Add((&PortGuess{Hard: true, Sockets: 1}).AppendMarshal(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			return
		}
		if p, ok := m.(*Ping); ok && (p.Padding < 0 || p.Padding > MaxPadding) {
			t.Fatalf("ping padding %d out of [0, %d]", p.Padding, MaxPadding)
		}
		again, err := Parse(m.AppendMarshal(nil))
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if !bytes.Equal(again.AppendMarshal(nil), m.AppendMarshal(nil)) {
			t.Fatal("encoding not stable")
		}
	})
}

// FuzzOpen feeds arbitrary packets to the opener: it must never panic and
// must never accept a packet it did not see sealed by the right key.
func FuzzOpen(f *testing.F) {
	a, b := key.NewDisco(), key.NewDisco()
	ab, ba := NewSharedKey(a, b.Public()), NewSharedKey(b, a.Public())
	good := ab.Seal(&Ping{TxID: NewTxID()})
	f.Add(good)
	f.Add(ab.Seal(&Ping{TxID: NewTxID(), Padding: 1392}))
	f.Add([]byte(Magic))
	f.Add(append([]byte(Magic), make([]byte, 100)...))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		_, _ = Sender(pkt)
		m, err := ba.Open(pkt)
		if err == nil && m == nil {
			t.Fatal("nil message without error")
		}
		if err == nil {
			// Whatever opens must stop opening when one byte of the
			// box changes: the box authenticates every byte.
			bad := append([]byte(nil), pkt...)
			bad[len(bad)-1] ^= 0x80
			if _, err := ba.Open(bad); err == nil {
				t.Fatal("tampered packet opened")
			}
		}
	})
}
