package filter

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"weft/internal/tstest"
	"weft/internal/wire"
)

// Addresses of the tests: this node is busan; mac and pc are peers.
var (
	busan  = netip.MustParseAddr("100.64.0.1")
	mac    = netip.MustParseAddr("100.64.0.2")
	pc     = netip.MustParseAddr("100.64.0.3")
	web    = netip.MustParseAddr("203.0.113.80")
	lan    = netip.MustParseAddr("192.168.1.20")
	busan6 = netip.MustParseAddr("fd7a::1")
	mac6   = netip.MustParseAddr("fd7a::2")
	other  = netip.MustParseAddr("100.64.0.9") // a peer no rule names
)

// transportHdr builds a TCP (20 bytes), UDP (8) or ICMP (8) header.
func transportHdr(proto uint8, sport, dport uint16, flags uint8) []byte {
	switch proto {
	case 6:
		h := make([]byte, 20)
		binary.BigEndian.PutUint16(h[0:], sport)
		binary.BigEndian.PutUint16(h[2:], dport)
		h[12], h[13] = 5<<4, flags
		return h
	case 17:
		h := make([]byte, 8)
		binary.BigEndian.PutUint16(h[0:], sport)
		binary.BigEndian.PutUint16(h[2:], dport)
		return h
	default: // ICMP: type in dport's low byte, echo id in sport
		h := make([]byte, 8)
		h[0] = uint8(dport)
		binary.BigEndian.PutUint16(h[4:], sport)
		return h
	}
}

func ip4(src, dst netip.Addr, proto uint8, payload []byte) []byte {
	b := make([]byte, 20, 20+len(payload))
	b[0], b[8], b[9] = 0x45, 64, proto
	binary.BigEndian.PutUint16(b[2:], uint16(20+len(payload)))
	copy(b[12:], src.AsSlice())
	copy(b[16:], dst.AsSlice())
	return append(b, payload...)
}

// ip6 builds an IPv6 packet; ext are extension headers as (type, body)
// pairs placed before the payload.
func ip6(src, dst netip.Addr, proto uint8, payload []byte, ext ...[]byte) []byte {
	b := make([]byte, 40)
	b[0], b[7] = 0x60, 64
	copy(b[8:], src.AsSlice())
	copy(b[24:], dst.AsSlice())
	next := proto
	var chain []byte
	for i := len(ext) - 1; i >= 0; i-- {
		h := append([]byte{next}, ext[i][1:]...)
		chain = append(h, chain...)
		next = ext[i][0]
	}
	b[6] = next
	b = append(b, chain...)
	b = append(b, payload...)
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)-40))
	return b
}

func tcp4(src, dst netip.Addr, sport, dport uint16, flags uint8) []byte {
	return ip4(src, dst, 6, transportHdr(6, sport, dport, flags))
}
func udp4(src, dst netip.Addr, sport, dport uint16) []byte {
	return ip4(src, dst, 17, transportHdr(17, sport, dport, 0))
}
func echo4(src, dst netip.Addr, id uint16, typ uint8) []byte {
	return ip4(src, dst, 1, transportHdr(1, id, uint16(typ), 0))
}

func pfx(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

// busanFilter is what the policy compiles to on busan: mac and pc
// may reach busan:22 and the internet through it.
func busanFilter() *wire.PacketFilter {
	src := []netip.Prefix{pfx(mac), pfx(pc), pfx(mac6)}
	return &wire.PacketFilter{Rules: []wire.FilterRule{{
		Srcs: src,
		Dsts: []wire.FilterDst{
			{Net: pfx(busan), Ports: wire.PortRange{First: 22, Last: 22}},
			{Net: pfx(busan6), Ports: wire.PortRange{First: 22, Last: 22}},
			{Net: netip.MustParsePrefix("200.0.0.0/5"), Ports: wire.AllPorts},
		},
	}, {
		Srcs:   src,
		Dsts:   []wire.FilterDst{{Net: pfx(busan), Ports: wire.PortRange{First: 5000, Last: 5010}}},
		Protos: []uint8{wire.ProtoUDP},
	}}}
}

func TestInbound(t *testing.T) {
	const syn, synack, ack, fin = tcpSYN, tcpSYN | tcpACK, tcpACK, tcpFIN | tcpACK
	frag := func(b []byte, off uint16) []byte { binary.BigEndian.PutUint16(b[6:], off); return b }
	fragHdr := func(off uint16) []byte {
		h := make([]byte, 8)
		h[0] = 44
		binary.BigEndian.PutUint16(h[2:], off<<3)
		return h
	}
	hopByHop := []byte{0, 0, 1, 4, 0, 0, 0, 0}
	tests := []struct {
		name     string
		outbound [][]byte // sent by busan first
		in       []byte
		want     string
	}{
		{"ssh from mac", nil, tcp4(mac, busan, 40000, 22, syn), ""},
		{"ssh from pc", nil, tcp4(pc, busan, 40000, 22, ack), ""},
		{"web port from mac", nil, tcp4(mac, busan, 40000, 80, syn), ReasonNoRule},
		{"udp 22 by default protos", nil, udp4(mac, busan, 40000, 22), ""},
		{"udp range", nil, udp4(mac, busan, 1, 5005), ""},
		{"tcp on the udp range", nil, tcp4(mac, busan, 1, 5005, syn), ReasonNoRule},
		{"ping from mac", nil, echo4(mac, busan, 7, 8), ""},
		{"gre from mac", nil, ip4(mac, busan, 47, make([]byte, 8)), ReasonNoRule},
		{"stranger", nil, tcp4(other, busan, 1, 22, syn), ReasonNoRule},
		{"exit traffic to the internet", nil, tcp4(mac, web, 40000, 443, syn), ""},
		{"exit traffic to the LAN", nil, tcp4(mac, lan, 40000, 443, syn), ReasonNoRule},
		{"reply to busan's connection", [][]byte{tcp4(busan, mac, 50000, 8080, syn)}, tcp4(mac, busan, 8080, 50000, synack), ""},
		{"reply from the wrong port", [][]byte{tcp4(busan, mac, 50000, 8080, syn)}, tcp4(mac, busan, 8081, 50000, synack), ReasonNoRule},
		{"reply from another peer", [][]byte{tcp4(busan, mac, 50000, 8080, syn)}, tcp4(pc, busan, 8080, 50000, synack), ReasonNoRule},
		{"fin after close", [][]byte{tcp4(busan, mac, 50000, 8080, syn), tcp4(busan, mac, 50000, 8080, fin)}, tcp4(mac, busan, 8080, 50000, fin), ""},
		{"udp reply", [][]byte{udp4(busan, mac, 53000, 53)}, udp4(mac, busan, 53, 53000), ""},
		{"echo reply", [][]byte{echo4(busan, other, 99, 8)}, echo4(other, busan, 99, 0), ""},
		{"echo reply, other id", [][]byte{echo4(busan, other, 99, 8)}, echo4(other, busan, 98, 0), ReasonNoRule},
		{"unsolicited echo reply", nil, echo4(other, busan, 99, 0), ReasonNoRule},
		{"ping from a stranger", nil, echo4(other, busan, 99, 8), ReasonNoRule},
		{"icmp error about busan's flow", [][]byte{udp4(busan, mac, 53000, 53)},
			ip4(mac, busan, 1, append([]byte{3, 3, 0, 0, 0, 0, 0, 0}, udp4(busan, mac, 53000, 53)...)), ""},
		{"icmp error about nothing", nil,
			ip4(mac, busan, 1, append([]byte{3, 3, 0, 0, 0, 0, 0, 0}, udp4(busan, mac, 53000, 53)...)), ReasonICMPError},
		{"later ipv4 fragment", nil, frag(tcp4(mac, busan, 40000, 22, syn), 100), ReasonFragment},
		{"first ipv4 fragment", nil, frag(tcp4(mac, busan, 40000, 22, syn), 0x2000), ""},
		{"truncated", nil, tcp4(mac, busan, 40000, 22, syn)[:22], ReasonFragment},
		{"not ip", nil, []byte{0x20, 0, 0}, ReasonMalformed},
		{"short header", nil, []byte{0x45, 0, 0}, ReasonMalformed},
		{"ipv6 ssh", nil, ip6(mac6, busan6, 6, transportHdr(6, 1, 22, syn)), ""},
		{"ipv6 web", nil, ip6(mac6, busan6, 6, transportHdr(6, 1, 80, syn)), ReasonNoRule},
		{"ipv6 hop-by-hop then ssh", nil, ip6(mac6, busan6, 6, transportHdr(6, 1, 22, syn), hopByHop), ""},
		{"ipv6 hop-by-hop then web", nil, ip6(mac6, busan6, 6, transportHdr(6, 1, 80, syn), hopByHop), ReasonNoRule},
		{"ipv6 first fragment", nil, ip6(mac6, busan6, 6, transportHdr(6, 1, 22, syn), fragHdr(0)), ""},
		{"ipv6 later fragment", nil, ip6(mac6, busan6, 6, transportHdr(6, 1, 22, syn), fragHdr(3)), ReasonFragment},
		{"ipv6 unknown header", nil, ip6(mac6, busan6, 6, transportHdr(6, 1, 22, syn), []byte{135, 0, 0, 0, 0, 0, 0, 0}), ReasonIPv6Ext},
		{"ipv6 header chain too long", nil, ip6(mac6, busan6, 6, transportHdr(6, 1, 22, syn),
			hopByHop, hopByHop, hopByHop, hopByHop, hopByHop, hopByHop, hopByHop, hopByHop, hopByHop), ReasonIPv6Ext},
		{"ipv6 header past the end", nil, ip6(mac6, busan6, 6, nil, []byte{0, 9, 0, 0, 0, 0, 0, 0}), ReasonMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := New(Options{})
			f.Set(busanFilter())
			for _, o := range tt.outbound {
				f.Outbound(o)
			}
			if got := f.Inbound(tt.in); got != tt.want {
				t.Fatalf("Inbound = %q, want %q", got, tt.want)
			}
			if d := f.Drops(); tt.want != "" && d[tt.want] != 1 {
				t.Errorf("drops = %v, want one %s", d, tt.want)
			}
		})
	}
}

func TestAllowAllAndNil(t *testing.T) {
	for _, pf := range []*wire.PacketFilter{nil, {AllowAll: true}} {
		f := New(Options{})
		f.Set(busanFilter())
		f.Set(pf)
		for _, b := range [][]byte{tcp4(mac, busan, 1, 80, tcpSYN), {0xff}} {
			if got := f.Inbound(b); got != "" {
				t.Errorf("filter %+v dropped a packet: %s", pf, got)
			}
		}
	}
	f := New(Options{})
	f.Set(&wire.PacketFilter{})
	if got := f.Inbound(tcp4(mac, busan, 1, 22, tcpSYN)); got != ReasonNoRule {
		t.Errorf("an empty filter let a packet in (%q)", got)
	}
}

func TestFlowTimeoutsAndBound(t *testing.T) {
	c := tstest.NewClock(time.Unix(1000, 0))
	f := New(Options{Now: c.Now, MaxFlows: 3})
	f.Set(&wire.PacketFilter{})
	f.Outbound(udp4(busan, mac, 1, 53))
	f.Outbound(tcp4(busan, mac, 2, 22, tcpSYN))
	f.Outbound(echo4(busan, mac, 3, 8))
	c.Advance(udpTimeout + time.Second)
	if got := f.Inbound(udp4(mac, busan, 53, 1)); got != ReasonNoRule {
		t.Errorf("udp reply after the timeout: %q", got)
	}
	if got := f.Inbound(echo4(mac, busan, 3, 0)); got != ReasonNoRule {
		t.Errorf("echo reply after the timeout: %q", got)
	}
	if got := f.Inbound(tcp4(mac, busan, 22, 2, tcpACK)); got != "" {
		t.Errorf("tcp reply within its timeout: %q", got)
	}
	for i := range 10 {
		f.Outbound(udp4(busan, pc, uint16(100+i), 53))
	}
	if n := f.Flows(); n > 3 {
		t.Errorf("%d flows tracked, bound 3", n)
	}
	if got := f.Inbound(udp4(pc, busan, 53, 109)); got != "" {
		t.Errorf("the newest flow was not kept: %q", got)
	}
}

// fakeTUN records what reaches the OS.
type fakeTUN struct {
	written [][]byte
	fakeDev
}

func (d *fakeTUN) Write(bufs [][]byte, offset int) (int, error) {
	for _, b := range bufs {
		d.written = append(d.written, b[offset:])
	}
	return len(bufs), nil
}

func TestTUNWrapperDropsOnlyDenied(t *testing.T) {
	dev := &fakeTUN{}
	f := New(Options{})
	f.Set(busanFilter())
	w := Wrap(dev, f)
	const off = 16
	pad := func(b []byte) []byte { return append(make([]byte, off), b...) }
	bufs := [][]byte{pad(tcp4(mac, busan, 1, 22, tcpSYN)), pad(tcp4(mac, busan, 1, 80, tcpSYN)), pad(udp4(pc, busan, 1, 5001))}
	n, err := w.Write(bufs, off)
	if err != nil || n != 3 {
		t.Fatalf("Write = %d, %v; want all 3 reported written", n, err)
	}
	if len(dev.written) != 2 || binary.BigEndian.Uint16(dev.written[0][22:]) != 22 || dev.written[1][9] != 17 {
		t.Fatalf("the OS got %d packets, want the ssh and udp ones", len(dev.written))
	}
	dev.written = nil
	if n, _ := w.Write([][]byte{pad(tcp4(mac, busan, 1, 80, tcpSYN))}, off); n != 1 || len(dev.written) != 0 {
		t.Fatalf("a denied batch reached the OS")
	}
}

// TestPortIndex mixes rules of single ports, several single ports and
// ranges, which the filter indexes differently.
func TestPortIndex(t *testing.T) {
	one := func(p uint16) wire.PortRange { return wire.PortRange{First: p, Last: p} }
	f := New(Options{})
	f.Set(&wire.PacketFilter{Rules: []wire.FilterRule{
		{Srcs: []netip.Prefix{pfx(mac)}, Dsts: []wire.FilterDst{{Net: pfx(busan), Ports: one(22)}}},
		{Srcs: []netip.Prefix{pfx(pc)}, Dsts: []wire.FilterDst{{Net: pfx(busan), Ports: one(80)}, {Net: pfx(busan), Ports: one(443)}}},
		{Srcs: []netip.Prefix{pfx(mac)}, Dsts: []wire.FilterDst{{Net: pfx(busan), Ports: wire.PortRange{First: 1000, Last: 2000}}}},
	}})
	tests := []struct {
		name string
		pkt  []byte
		want string
	}{
		{"mac 22", tcp4(mac, busan, 1, 22, tcpSYN), ""},
		{"mac 80", tcp4(mac, busan, 1, 80, tcpSYN), ReasonNoRule},
		{"pc 443", tcp4(pc, busan, 1, 443, tcpSYN), ""},
		{"pc 80 udp", udp4(pc, busan, 1, 80), ""},
		{"pc 22", tcp4(pc, busan, 1, 22, tcpSYN), ReasonNoRule},
		{"mac 1500", tcp4(mac, busan, 1, 1500, tcpSYN), ""},
		{"pc 1500", tcp4(pc, busan, 1, 1500, tcpSYN), ReasonNoRule},
		{"mac 2001", tcp4(mac, busan, 1, 2001, tcpSYN), ReasonNoRule},
		{"ping from pc", echo4(pc, busan, 1, 8), ""},
		{"ping from other", echo4(other, busan, 1, 8), ReasonNoRule},
	}
	for _, tt := range tests {
		if got := f.Inbound(tt.pkt); got != tt.want {
			t.Errorf("%s: Inbound = %q, want %q", tt.name, got, tt.want)
		}
	}
}
