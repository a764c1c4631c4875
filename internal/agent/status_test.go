package agent

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"weft/internal/controlclient"
	"weft/internal/key"
	"weft/internal/wire"
)

func TestParseIpcGet(t *testing.T) {
	k1, k2 := key.NewNode().Public(), key.NewNode().Public()
	hex := func(k key.NodePublic) string {
		b := k.Raw32()
		return string(appendHex(nil, b[:]))
	}
	tests := []struct {
		name string
		in   string
		want map[key.NodePublic]wgPeerStats
	}{
		{"empty", "", map[key.NodePublic]wgPeerStats{}},
		{"device only", "private_key=00\nlisten_port=41641\n", map[key.NodePublic]wgPeerStats{}},
		{
			"two peers",
			"private_key=00\nlisten_port=1\npublic_key=" + hex(k1) + "\nrx_bytes=10\ntx_bytes=20\nlast_handshake_time_sec=1700000000\nlast_handshake_time_nsec=5\n" +
				"public_key=" + hex(k2) + "\nrx_bytes=0\ntx_bytes=148\nlast_handshake_time_sec=0\nlast_handshake_time_nsec=0\n",
			map[key.NodePublic]wgPeerStats{
				k1: {rx: 10, tx: 20, lastHandshake: time.Unix(1700000000, 5)},
				k2: {tx: 148},
			},
		},
		{"bad key skipped", "public_key=zz\nrx_bytes=10\n", map[key.NodePublic]wgPeerStats{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseIpcGet(tt.in)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d peers %v, want %d", len(got), got, len(tt.want))
			}
			for k, w := range tt.want {
				g, ok := got[k.Raw32()]
				if !ok || g.rx != w.rx || g.tx != w.tx || !g.lastHandshake.Equal(w.lastHandshake) {
					t.Errorf("peer %s: got %+v, want %+v", k.ShortString(), g, w)
				}
			}
		})
	}
}

func FuzzParseIpcGet(f *testing.F) {
	f.Add("public_key=" + string(appendHex(nil, make([]byte, 32))) + "\nrx_bytes=1\ntx_bytes=2\nlast_handshake_time_sec=3\n")
	f.Add("=\n==\npublic_key=\n")
	f.Fuzz(func(t *testing.T, s string) {
		for _, st := range parseIpcGet(s) {
			_ = st
		}
	})
}

func appendHex(dst, b []byte) []byte {
	const digits = "0123456789abcdef"
	for _, c := range b {
		dst = append(dst, digits[c>>4], digits[c&15])
	}
	return dst
}

func TestFindPeer(t *testing.T) {
	mk := func(id wire.NodeID, name, v4 string) *wire.Node {
		return &wire.Node{ID: id, Name: name, NodeKey: key.NewNode().Public(), Addresses: []netip.Prefix{netip.MustParsePrefix(v4 + "/32")}}
	}
	mac, busan := mk(2, "mac", "100.64.0.2"), mk(1, "busan", "100.64.0.1")
	nm := &controlclient.NetMap{Peers: map[wire.NodeID]*wire.Node{1: busan, 2: mac}}
	tests := []struct {
		in   string
		want *wire.Node
	}{
		{"mac", mac},
		{"100.64.0.1", busan},
		{mac.NodeKey.String(), mac},
		{"pc", nil},
		{"100.64.0.9", nil},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := findPeer(nm, tt.in); got != tt.want {
				t.Errorf("findPeer(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestTailnetRoutes(t *testing.T) {
	self := &wire.Node{Addresses: []netip.Prefix{netip.MustParsePrefix("100.64.0.7/32"), netip.MustParsePrefix("fd12:3456:789a::6440:7/128")}}
	got := tailnetRoutes(self)
	want := []netip.Prefix{netip.MustParsePrefix("100.64.0.0/10"), netip.MustParsePrefix("fd12:3456:789a::/48")}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("tailnetRoutes = %v, want %v", got, want)
	}
}

func TestRelayMapEqual(t *testing.T) {
	mk := func(port int) *wire.RelayMap {
		return &wire.RelayMap{Regions: map[int]*wire.RelayRegion{1: {ID: 1, Code: "home", Nodes: []*wire.RelayNode{{Name: "1a", RegionID: 1, Host: "h", Port: port}}}}}
	}
	tests := []struct {
		name string
		a, b *wire.RelayMap
		want bool
	}{
		{"same content", mk(80), mk(80), true},
		{"port differs", mk(80), mk(81), false},
		{"nil and map", nil, mk(80), false},
		{"both nil", nil, nil, true},
		{"region added", mk(80), &wire.RelayMap{Regions: map[int]*wire.RelayRegion{}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := relayMapEqual(tt.a, tt.b); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestHealthKeyExpiry(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	e := &Engine{}
	tests := []struct {
		name   string
		expiry time.Time
		want   string
	}{
		{"never", time.Time{}, ""},
		{"far", now.Add(90 * 24 * time.Hour), ""},
		{"soon", now.Add(48 * time.Hour), "this node's key expires in 48h0m0s: run `weft up --auth-key KEY` to renew it"},
		{"expired", now.Add(-time.Hour), "this node's key has expired: run `weft up --auth-key KEY` to log in again"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nm := &controlclient.NetMap{Self: &wire.Node{KeyExpiry: tt.expiry}}
			got := e.health(nil, nil, 0, nm, now)
			// Without a relay map the first line is about that.
			if len(got) < 1 || got[0] == "" {
				t.Fatalf("health = %q", got)
			}
			got = got[1:]
			switch {
			case tt.want == "" && len(got) != 0:
				t.Errorf("health = %q, want nothing about the key", got)
			case tt.want != "" && (len(got) != 1 || got[0] != tt.want):
				t.Errorf("health = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestNoPathError: a ping that cannot even be sent says why in plain
// words, not the path-finding socket's internal error.
func TestNoPathError(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		n    *wire.Node
		want string
	}{
		{"offline, seen", &wire.Node{Name: "busan", LastSeen: now.Add(-90 * time.Second)}, "busan is offline (last seen 1m30s ago): no direct path"},
		{"offline, never seen", &wire.Node{Name: "busan"}, "busan is offline: no direct path"},
		{"online without a path", &wire.Node{Name: "busan", Online: true}, "no way to reach busan yet"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := noPathError(tt.n, now)
			if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "magicsock") {
				t.Fatalf("noPathError = %q, want it to say %q", err, tt.want)
			}
		})
	}
}
