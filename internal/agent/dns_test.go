package agent

import (
	"net/netip"
	"reflect"
	"testing"

	"weft/internal/osdns"
	"weft/internal/wire"
)

func TestOSConfig(t *testing.T) {
	listen := []netip.Addr{netip.MustParseAddr("100.100.100.100")}
	ns := []netip.AddrPort{netip.MustParseAddrPort("198.51.100.80:53")}
	for _, tt := range []struct {
		name string
		in   wire.DNSConfig
		want osdns.Config
	}{
		{"defaults", wire.DNSConfig{Domain: "weft.internal", MagicDNS: true},
			osdns.Config{Nameservers: listen, SearchDomains: []string{"weft.internal"}, MatchDomains: []string{"weft.internal"}}},
		{"routes and search", wire.DNSConfig{Domain: "weft.internal", MagicDNS: true, SearchDomains: []string{"corp.example"},
			Routes: map[string][]netip.AddrPort{"z.example": ns, "corp.example": ns}},
			osdns.Config{Nameservers: listen, SearchDomains: []string{"weft.internal", "corp.example"},
				MatchDomains: []string{"weft.internal", "corp.example", "z.example"}}},
		{"override local DNS", wire.DNSConfig{Domain: "weft.internal", MagicDNS: true, OverrideLocalDNS: true},
			osdns.Config{Nameservers: listen, SearchDomains: []string{"weft.internal"}, MatchDomains: []string{"weft.internal"}, All: true}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := osConfig(&tt.in, listen); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("osConfig =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestResolverAllow(t *testing.T) {
	self := &wire.Node{Addresses: []netip.Prefix{netip.MustParsePrefix("100.64.0.1/32"), netip.MustParsePrefix("fd12:3456:789a::6440:1/128")}}
	allow := allowFrom(self)
	for addr, want := range map[string]bool{
		"127.0.0.1":              true,
		"::1":                    true,
		"100.100.100.100":        true, // this machine asking its own resolver
		"100.64.0.7":             true,
		"fd12:3456:789a::6440:7": true,
		"::ffff:100.64.0.7":      true,
		"192.168.1.20":           false, // a LAN host routing 100.100.100.100 here
		"203.0.113.9":            false,
		"fd99:1::1":              false,
	} {
		if got := allow(netip.MustParseAddr(addr)); got != want {
			t.Errorf("allow(%s) = %v, want %v", addr, got, want)
		}
	}
}
