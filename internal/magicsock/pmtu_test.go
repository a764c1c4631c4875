package magicsock

import (
	"net/netip"
	"testing"

	"weft/internal/disco"
	"weft/internal/key"
)

func TestTunnelMTUFor(t *testing.T) {
	tests := []struct{ size, want int }{
		{0, MinTunnelMTU},    // nothing confirmed
		{1340, MinTunnelMTU}, // 1260 would be below IPv6's minimum
		{1400, 1320},
		{1460, 1380},
		{1492, 1412},
		{1500, 1420},
	}
	for _, tt := range tests {
		if got := tunnelMTUFor(tt.size); got != tt.want {
			t.Errorf("tunnelMTUFor(%d) = %d, want %d", tt.size, got, tt.want)
		}
	}
}

// TestProbeDatagramSize: a probe for an IP packet of each probe size,
// sealed, makes a datagram of exactly that size over IPv4 and IPv6.
func TestProbeDatagramSize(t *testing.T) {
	a, b := key.NewDisco(), key.NewDisco()
	sk := disco.NewSharedKey(a, b.Public())
	for _, dst := range []netip.AddrPort{netip.MustParseAddrPort("198.51.100.1:41641"), netip.MustParseAddrPort("[2001:db8::1]:41641")} {
		hdr := 28
		if dst.Addr().Is6() {
			hdr = 48
		}
		for _, size := range probeSizes {
			pkt := sk.Seal(&disco.Ping{TxID: disco.NewTxID(), Padding: disco.PaddingFor(probePayload(size, dst))})
			if got := len(pkt) + hdr; got != size {
				t.Errorf("probe of %d bytes to %v makes a %d-byte IP packet", size, dst, got)
			}
		}
	}
}
