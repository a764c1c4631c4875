package filter

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"weft/internal/wire"
)

// FuzzInbound feeds random packets to a filter that allows one thing
// only: TCP from mac to busan port 22 (and no flows are tracked). It must
// never panic, and whatever it lets in must be exactly that, judged by a
// plain reading of the headers independent of the filter's own parser.
func FuzzInbound(f *testing.F) {
	for _, b := range [][]byte{
		tcp4(mac, busan, 1, 22, tcpSYN),
		tcp4(mac, busan, 1, 80, tcpSYN),
		udp4(mac, busan, 1, 22),
		echo4(mac, busan, 1, 8),
		ip6(mac6, busan6, 6, transportHdr(6, 1, 22, tcpSYN), []byte{0, 0, 0, 0, 0, 0, 0, 0}),
		ip4(mac, busan, 1, append([]byte{3, 3, 0, 0, 0, 0, 0, 0}, udp4(busan, mac, 53000, 53)...)),
	} {
		f.Add(b)
	}
	flt := New(Options{})
	flt.Set(&wire.PacketFilter{Rules: []wire.FilterRule{{
		Srcs:   []netip.Prefix{pfx(mac)},
		Dsts:   []wire.FilterDst{{Net: pfx(busan), Ports: wire.PortRange{First: 22, Last: 22}}},
		Protos: []uint8{wire.ProtoTCP},
	}}})
	f.Fuzz(func(t *testing.T, b []byte) {
		if flt.Inbound(b) != "" {
			return
		}
		// Let in: it must be IPv4 TCP from mac to busan:22, unfragmented
		// or a first fragment holding the whole TCP header.
		if len(b) < 20 || b[0]>>4 != 4 || b[9] != 6 {
			t.Fatalf("let in a packet that is not IPv4 TCP: % x", b)
		}
		ihl := int(b[0]&0xf) * 4
		if netip.AddrFrom4([4]byte(b[12:16])) != mac || netip.AddrFrom4([4]byte(b[16:20])) != busan {
			t.Fatalf("let in a packet not from mac to busan: % x", b)
		}
		if binary.BigEndian.Uint16(b[6:8])&0x1fff != 0 || len(b) < ihl+20 {
			t.Fatalf("let in a fragment or a truncated header: % x", b)
		}
		if binary.BigEndian.Uint16(b[ihl+2:]) != 22 {
			t.Fatalf("let in a packet to port %d: % x", binary.BigEndian.Uint16(b[ihl+2:]), b)
		}
	})
}
