package agent

import (
	"net/netip"
	"testing"

	"weft/internal/wire"
)

type fakePublisher struct {
	eps       [][]netip.AddrPort
	hostinfos []*wire.Hostinfo
}

func (f *fakePublisher) SetEndpoints(eps []netip.AddrPort, home int) { f.eps = append(f.eps, eps) }
func (f *fakePublisher) SetHostinfo(hi *wire.Hostinfo)               { f.hostinfos = append(f.hostinfos, hi) }

func TestPublishOnlyChanges(t *testing.T) {
	pub := &fakePublisher{}
	e := &Engine{cfg: Config{Publisher: pub, Hostinfo: &wire.Hostinfo{Hostname: "mac"}}}
	ep := netip.MustParseAddrPort("203.0.113.22:41641")

	e.onEndpoints([]netip.AddrPort{ep})
	e.publishEndpoints() // a repeat
	e.onEndpoints([]netip.AddrPort{ep, netip.MustParseAddrPort("192.168.2.10:41641")})
	if len(pub.eps) != 2 {
		t.Errorf("endpoints published %d times, want 2 (the repeat dropped): %v", len(pub.eps), pub.eps)
	}

	ni := func(hard bool, lat map[int]int) *wire.NetInfo {
		return &wire.NetInfo{UDP: true, MappingVariesByDestIP: hard, PreferredRegion: 1, RegionLatencyMS: lat}
	}
	e.publishHostinfo(ni(false, map[int]int{1: 12}))
	e.publishHostinfo(ni(false, map[int]int{1: 13})) // only latency moved
	e.publishHostinfo(ni(true, map[int]int{1: 13}))  // NAT kind changed
	e.publishHostinfo(ni(true, map[int]int{1: 13, 2: 40}))
	if len(pub.hostinfos) != 3 {
		t.Fatalf("host facts published %d times, want 3", len(pub.hostinfos))
	}
	if hi := pub.hostinfos[1]; hi.Hostname != "mac" || !hi.NetInfo.MappingVariesByDestIP {
		t.Errorf("second publication %+v", hi)
	}
}

func TestNetInfoChanged(t *testing.T) {
	base := wire.NetInfo{UDP: true, PreferredRegion: 1, RegionLatencyMS: map[int]int{1: 10}}
	tests := []struct {
		name   string
		change func(*wire.NetInfo)
		want   bool
	}{
		{"same", func(*wire.NetInfo) {}, false},
		{"latency moved", func(n *wire.NetInfo) { n.RegionLatencyMS = map[int]int{1: 30} }, false},
		{"hard NAT", func(n *wire.NetInfo) { n.MappingVariesByDestIP = true }, true},
		{"UDP lost", func(n *wire.NetInfo) { n.UDP = false }, true},
		{"preferred region", func(n *wire.NetInfo) { n.PreferredRegion = 2 }, true},
		{"region stopped answering", func(n *wire.NetInfo) { n.RegionLatencyMS = map[int]int{} }, true},
		{"other region", func(n *wire.NetInfo) { n.RegionLatencyMS = map[int]int{2: 10} }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := base
			tt.change(&b)
			if got := netInfoChanged(&base, &b); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}
