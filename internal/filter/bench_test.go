package filter

import (
	"net/netip"
	"testing"

	"weft/internal/tstest"
	"weft/internal/wire"
)

// hundredRules is a 100-rule filter in which only the last rule accepts
// the benchmark's packet. With ownPorts false every rule is for port 22
// (the index by port cannot help: the worst case); with it each rule
// names a port of its own, as compiled policies mostly do.
func hundredRules() *wire.PacketFilter { return rules100(false) }

func rules100(ownPorts bool) *wire.PacketFilter {
	pf := &wire.PacketFilter{}
	for i := range 100 {
		src := netip.AddrFrom4([4]byte{100, 65, byte(i), 1})
		if i == 99 {
			src = mac
		}
		pf.Rules = append(pf.Rules, wire.FilterRule{
			Srcs: []netip.Prefix{pfx(src), netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 66, byte(i), 0}), 24)},
			Dsts: []wire.FilterDst{{Net: pfx(busan), Ports: wire.PortRange{First: 22, Last: 22}}},
		})
		if ownPorts && i < 99 {
			pf.Rules[i].Dsts[0].Ports = wire.PortRange{First: uint16(6000 + i), Last: uint16(6000 + i)}
		}
	}
	return pf
}

// BenchmarkTUNWrite measures one batch of 64 packets written through the
// filter's TUN wrapper to a device that discards them, against the same
// device without the wrapper (none): the filter's cost per packet is the
// difference, divided by 64.
func BenchmarkTUNWrite(b *testing.B) {
	batch := func(pkt []byte) [][]byte {
		bufs := make([][]byte, 64)
		for i := range bufs {
			bufs[i] = append(make([]byte, 16), pkt...)
		}
		return bufs
	}
	in := batch(tcp4(mac, busan, 40000, 22, tcpACK))
	reply := batch(tcp4(mac, busan, 8080, 50000, tcpACK))
	cases := []struct {
		name string
		dev  func() interface {
			Write([][]byte, int) (int, error)
		}
		bufs [][]byte
	}{
		{"none", func() interface {
			Write([][]byte, int) (int, error)
		} {
			return fakeDev{}
		}, in},
		{"allow_all", func() interface {
			Write([][]byte, int) (int, error)
		} {
			return Wrap(fakeDev{}, New(Options{}))
		}, in},
		{"100_rules", func() interface {
			Write([][]byte, int) (int, error)
		} {
			f := New(Options{})
			f.Set(hundredRules())
			return Wrap(fakeDev{}, f)
		}, in},
		{"100_rules_own_ports", func() interface {
			Write([][]byte, int) (int, error)
		} {
			f := New(Options{})
			f.Set(rules100(true))
			return Wrap(fakeDev{}, f)
		}, in},
		{"reply_tracked", func() interface {
			Write([][]byte, int) (int, error)
		} {
			f := New(Options{})
			f.Set(hundredRules())
			f.Outbound(tcp4(busan, mac, 50000, 8080, tcpSYN))
			return Wrap(fakeDev{}, f)
		}, reply},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			d := c.dev()
			b.ReportAllocs()
			for b.Loop() {
				if n, err := d.Write(c.bufs, 16); n != 64 || err != nil {
					b.Fatal(n, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/64, "ns/packet")
		})
	}
}

// BenchmarkDecryptAnchor opens one 1,400-byte ChaCha20-Poly1305 packet, as
// wireguard-go does for every packet it receives: the tunnel's own cost
// per packet, to set the filter's cost against in the same run.
func BenchmarkDecryptAnchor(b *testing.B) {
	b.SetBytes(1400)
	tstest.DecryptAnchor(b)
}
