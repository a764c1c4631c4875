package controlclient_test

import (
	"errors"
	"net/netip"
	"testing"
	"weft/internal/controlclient"
	"weft/internal/tailnet"
	"weft/internal/wire"
)

func TestResolveExitNode(t *testing.T) {
	pfx := netip.MustParsePrefix
	self := &wire.Node{ID: 1, Name: "mac", Addresses: []netip.Prefix{pfx("100.64.0.1/32")}}
	busan := &wire.Node{ID: 2, Name: "busan", Online: true, Addresses: []netip.Prefix{pfx("100.64.0.2/32"), pfx("fd7a::2/128")},
		Routes: tailnet.ExitRoutes()}
	pc := &wire.Node{ID: 3, Name: "pc", Online: true, Addresses: []netip.Prefix{pfx("100.64.0.3/32")}, Routes: []netip.Prefix{pfx("10.0.0.0/8")}}
	nm := &controlclient.NetMap{Self: self, Peers: map[wire.NodeID]*wire.Node{2: busan, 3: pc}}
	tests := []struct {
		name    string
		nm      *controlclient.NetMap
		in      string
		want    wire.NodeID
		wantErr error
	}{
		{"by name", nm, "busan", 2, nil},
		{"by IPv4", nm, "100.64.0.2", 2, nil},
		{"by IPv6", nm, "fd7a::2", 2, nil},
		{"subnet router is no exit node", nm, "pc", 0, controlclient.ErrNotAnExitNode},
		{"unknown", nm, "seoul", 0, controlclient.ErrExitNodeNotFound},
		{"self", nm, "100.64.0.1", 0, controlclient.ErrExitNodeIsSelf},
		{"no map", nil, "busan", 0, controlclient.ErrExitNodeNeedsAMap},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := controlclient.ResolveExitNode(tt.nm, tt.in)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil || n.ID != tt.want {
				t.Fatalf("got %+v, %v; want node %d", n, err, tt.want)
			}
		})
	}
}
