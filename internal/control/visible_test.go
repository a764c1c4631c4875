package control

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"weft/internal/store"
	"weft/internal/wire"
)

// TestVisibleHookFiltersMapsAndDeltas splits nodes into two groups that
// cannot see each other and checks full maps and deltas respect it.
func TestVisibleHookFiltersMapsAndDeltas(t *testing.T) {
	group := func(n *wire.Node) string { return strings.TrimRight(n.Name, "0123456789") }
	h := newHarness(t, func(c *Config) {
		c.Visible = func(a, b *wire.Node) bool { return group(a) == group(b) }
	})
	k := h.authKey(store.AuthKeyRequest{Reusable: true})
	names := []string{"red1", "red2", "blue1", "blue2"}
	nodes := map[string]*simNode{}
	ctx := context.Background()
	for _, name := range names {
		n := h.newSim(name)
		n.mustRegister(t, k)
		nodes[name] = n
	}
	for _, name := range names {
		if err := nodes[name].stream(ctx); err != nil {
			t.Fatal(err)
		}
		defer nodes[name].close()
		full := nodes[name].next(t)
		for _, p := range full.Peers {
			if group(p) != group(&wire.Node{Name: name}) {
				t.Errorf("%s's full map holds %s", name, p.Name)
			}
		}
	}
	time.Sleep(100 * time.Millisecond)
	for _, n := range nodes {
		for len(n.msgs) > 0 {
			<-n.msgs
		}
	}
	eps := []netipAddrPort{mustAddrPort("192.0.2.1:1")}
	if err := nodes["red1"].sendUpdate(&wire.Update{Endpoints: &eps, HomeRegion: 1}); err != nil {
		t.Fatal(err)
	}
	if r := nodes["red2"].next(t); len(r.PeersPatched) != 1 || r.PeersPatched[0].ID != nodes["red1"].self.ID {
		t.Fatalf("red2 got %+v", r)
	}
	nodes["blue1"].expectQuiet(t, 100*time.Millisecond)
	nodes["blue2"].expectQuiet(t, 10*time.Millisecond)
}

func TestRelayMapParsing(t *testing.T) {
	tests := []struct {
		name, in string
		ok       bool
	}{
		{"hujson", `{ // comment
			"regions": {"1": {"id": 1, "code": "tok", "nodes": [{"name": "1a", "host": "relay.example"},]}}}`, true},
		{"id mismatch", `{"regions": {"1": {"id": 2, "nodes": [{"host": "x"}]}}}`, false},
		{"no nodes", `{"regions": {"1": {"id": 1, "nodes": []}}}`, false},
		{"no host", `{"regions": {"1": {"id": 1, "nodes": [{"name": "a"}]}}}`, false},
		{"empty", `{}`, false},
		{"ipv4 and ipv6", `{"regions": {"1": {"id": 1, "nodes": [{"host": "relay.example", "ipv4": "203.0.113.10", "ipv6": "2001:db8::10"}]}}}`, true},
		{"ipv6 given an IPv4 address", `{"regions": {"1": {"id": 1, "nodes": [{"host": "x", "ipv6": "203.0.113.10"}]}}}`, false},
		{"ipv4 given an IPv6 address", `{"regions": {"1": {"id": 1, "nodes": [{"host": "x", "ipv4": "2001:db8::10"}]}}}`, false},
		{"ipv4 not an address", `{"regions": {"1": {"id": 1, "nodes": [{"host": "x", "ipv4": "relay.example"}]}}}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseRelayMap([]byte(tt.in))
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
			if tt.ok && m.Regions[1].Nodes[0].RegionID != 1 {
				t.Errorf("node region not filled in: %+v", m.Regions[1].Nodes[0])
			}
		})
	}
	m, err := DefaultRelayMap("http://203.0.113.1:8080")
	if err != nil {
		t.Fatal(err)
	}
	n := m.Regions[1].Nodes[0]
	if m.Regions[1].Code != "home" || n.Host != "203.0.113.1" || n.Port != 8080 || !n.InsecureHTTP || n.STUNPort != -1 {
		t.Errorf("default relay map = %+v %+v", m.Regions[1], n)
	}
	if _, err := ParseRelayMap(relayMapJSON(t, m)); err != nil {
		t.Errorf("default relay map without STUN: %v", err)
	}
	m, err = DefaultRelayMap("https://ctrl.example", 3478, 3479)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseRelayMap(relayMapJSON(t, m)); err != nil {
		t.Errorf("default relay map with two STUN ports: %v", err)
	}
	nodes := m.Regions[1].Nodes
	if len(nodes) != 2 || nodes[0].Name != "1a" || nodes[1].Name != "1b" ||
		nodes[0].STUNPort != 3478 || nodes[1].STUNPort != 3479 ||
		nodes[1].Host != "ctrl.example" || nodes[1].InsecureHTTP {
		t.Errorf("default relay map with two STUN ports: %+v %+v", nodes[0], nodes[len(nodes)-1])
	}
	if _, err := DefaultRelayMap("http://ctrl.example", 0); err == nil {
		t.Error("STUN port 0 accepted")
	}
}

func relayMapJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestServerKeyFile(t *testing.T) {
	p := t.TempDir() + "/server.key"
	k1, err := LoadOrCreateKey(p)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := LoadOrCreateKey(p)
	if err != nil || k2.Public() != k1.Public() {
		t.Fatalf("second load = %v, %v", k2.Public(), err)
	}
	if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("server.key mode: %v %v", st.Mode(), err)
	}
}

func FuzzParseRelayMap(f *testing.F) {
	f.Add([]byte(`{"regions":{"1":{"id":1,"nodes":[{"host":"a"}]}}}`))
	f.Add([]byte(`{"regions":{"1":null}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseRelayMap(b)
		if err != nil {
			return
		}
		for id, r := range m.Regions {
			if r.ID != id || len(r.Nodes) == 0 {
				t.Fatalf("accepted bad region %d: %+v", id, r)
			}
		}
	})
}

func TestAllowNodeKey(t *testing.T) {
	h := newHarness(t, nil)
	n := h.newSim("a")
	n.mustRegister(t, h.authKey(store.AuthKeyRequest{}))
	ctx := context.Background()
	if ok, err := h.srv.AllowNodeKey(ctx, n.node.Public()); !ok || err != nil {
		t.Errorf("registered node key refused: %v %v", ok, err)
	}
	if ok, _ := h.srv.AllowNodeKey(ctx, newNodeKey().Public()); ok {
		t.Error("unknown node key allowed")
	}
	if _, err := h.st.ExpireNode(ctx, n.self.ID); err != nil {
		t.Fatal(err)
	}
	h.srv.NodeChanged(n.self.ID)
	if ok, _ := h.srv.AllowNodeKey(ctx, n.node.Public()); ok {
		t.Error("expired node key allowed")
	}
}

func TestRelaySecretFile(t *testing.T) {
	p := t.TempDir() + "/relay.secret"
	s1, err := LoadOrCreateRelaySecret(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(s1) != 64 {
		t.Errorf("new secret %q: want 64 hex digits", s1)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file mode %v, %v; want 0600", fi.Mode(), err)
	}
	s2, err := LoadOrCreateRelaySecret(p)
	if err != nil || s2 != s1 {
		t.Fatalf("second load = %q, %v; want the first secret", s2, err)
	}
	if err := os.WriteFile(p, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateRelaySecret(p); err == nil || !strings.Contains(err.Error(), "shorter") {
		t.Errorf("short secret: err = %v", err)
	}
}

func TestAddRelayAddrs(t *testing.T) {
	v4, v6 := netip.MustParseAddr("203.0.113.10"), netip.MustParseAddr("2001:db8::10")
	for _, tc := range []struct {
		name, url    string
		addrs        []netip.Addr
		want4, want6 netip.Addr
		wantErr      string
	}{
		{"IPv6 beside an IPv4 URL", "http://203.0.113.10:8080", []netip.Addr{v6}, netip.Addr{}, v6, ""},
		{"URL's own address repeated", "http://203.0.113.10:8080", []netip.Addr{v4, v6}, v4, v6, ""},
		{"both beside a name", "https://ctrl.example", []netip.Addr{v4, v6}, v4, v6, ""},
		{"another IPv4 than the URL's", "http://203.0.113.10:8080", []netip.Addr{netip.MustParseAddr("198.51.100.10")}, netip.Addr{}, netip.Addr{}, "already names 203.0.113.10"},
		{"two IPv6", "https://ctrl.example", []netip.Addr{v6, netip.MustParseAddr("2001:db8::11")}, netip.Addr{}, netip.Addr{}, "of one family"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := DefaultRelayMap(tc.url, 3478, 3479)
			if err != nil {
				t.Fatal(err)
			}
			err = AddRelayAddrs(m, tc.addrs)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range m.Regions[1].Nodes {
				if n.IPv4 != tc.want4 || n.IPv6 != tc.want6 {
					t.Errorf("node %s: ipv4 %v ipv6 %v, want %v %v", n.Name, n.IPv4, n.IPv6, tc.want4, tc.want6)
				}
			}
			if _, err := ParseRelayMap(relayMapJSON(t, m)); err != nil {
				t.Errorf("the map does not parse back: %v", err)
			}
		})
	}
}
