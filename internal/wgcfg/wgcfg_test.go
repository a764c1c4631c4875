package wgcfg

import (
	"math/rand/v2"
	"net/netip"
	"sort"
	"strings"
	"testing"

	"golang.zx2c4.com/wireguard/conn/bindtest"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"weft/internal/key"
	"weft/internal/wire"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func TestFromNetmapRoutes(t *testing.T) {
	exit := wire.Node{NodeKey: key.NewNode().Public(), Addresses: []netip.Prefix{pfx("100.64.0.1/32")},
		Routes: []netip.Prefix{pfx("0.0.0.0/0"), pfx("::/0"), pfx("192.168.1.0/24")}}
	other := wire.Node{NodeKey: key.NewNode().Public(), Addresses: []netip.Prefix{pfx("100.64.0.2/32"), pfx("fd00::2/128")}}
	tests := []struct {
		name string
		opts Options
		want map[key.NodePublic]string
	}{
		{"plain", Options{}, map[key.NodePublic]string{exit.NodeKey: "100.64.0.1/32", other.NodeKey: "100.64.0.2/32 fd00::2/128"}},
		{"accept routes", Options{AcceptRoutes: true}, map[key.NodePublic]string{exit.NodeKey: "100.64.0.1/32 192.168.1.0/24", other.NodeKey: "100.64.0.2/32 fd00::2/128"}},
		{"exit node", Options{ExitNode: exit.NodeKey}, map[key.NodePublic]string{exit.NodeKey: "0.0.0.0/0 100.64.0.1/32 ::/0", other.NodeKey: "100.64.0.2/32 fd00::2/128"}},
		{"exit elsewhere", Options{ExitNode: other.NodeKey}, map[key.NodePublic]string{exit.NodeKey: "100.64.0.1/32", other.NodeKey: "100.64.0.2/32 fd00::2/128"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := FromNetmap(key.NewNode(), []wire.Node{exit, other}, tt.opts)
			for _, p := range cfg.Peers {
				var got []string
				for _, a := range p.AllowedIPs {
					got = append(got, a.String())
				}
				sort.Strings(got)
				if g := strings.Join(got, " "); g != tt.want[p.PublicKey] {
					t.Errorf("peer %v allowed IPs %q, want %q", p.PublicKey.ShortString(), g, tt.want[p.PublicKey])
				}
			}
		})
	}
}

// deviceState reads a device's peers and their allowed IPs, the parts of
// its state that the UAPI diff manages.
func deviceState(t *testing.T, dev *device.Device) map[string][]string {
	t.Helper()
	s, err := dev.IpcGet()
	if err != nil {
		t.Fatal(err)
	}
	state := map[string][]string{}
	var cur string
	for _, line := range strings.Split(s, "\n") {
		k, v, _ := strings.Cut(line, "=")
		switch k {
		case "public_key":
			cur = v
			state[cur] = []string{}
		case "allowed_ip":
			state[cur] = append(state[cur], v)
		}
	}
	for _, v := range state {
		sort.Strings(v)
	}
	return state
}

func wantState(c Config) map[string][]string {
	m := map[string][]string{}
	for _, p := range c.Peers {
		var ips []string
		for _, a := range p.AllowedIPs {
			ips = append(ips, a.String())
		}
		sort.Strings(ips)
		if ips == nil {
			ips = []string{}
		}
		m[hexKey(p.PublicKey.Raw32())] = ips
	}
	return m
}

// TestUAPIDiffOnDevice applies a random sequence of peer maps to a real
// wireguard-go device by differences and checks after each step that the
// device holds exactly the configuration a fresh full apply would give.
func TestUAPIDiffOnDevice(t *testing.T) {
	tun := tuntest.NewChannelTUN()
	binds := bindtest.NewChannelBinds()
	dev := device.NewDevice(tun.TUN(), binds[0], device.NewLogger(device.LogLevelSilent, ""))
	defer dev.Close()

	rng := rand.New(rand.NewPCG(1, 2))
	pool := make([]wire.Node, 8)
	for i := range pool {
		pool[i] = wire.Node{NodeKey: key.NewNode().Public(),
			Addresses: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64, 0, byte(i + 1)}), 32)}}
	}
	priv := key.NewNode()
	var prev *Config
	for step := 0; step < 40; step++ {
		var peers []wire.Node
		for _, n := range pool {
			if rng.IntN(3) == 0 {
				continue
			}
			if rng.IntN(2) == 0 {
				n.Routes = []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(rng.IntN(3)), 0, 0}), 16)}
			}
			peers = append(peers, n)
		}
		opts := Options{AcceptRoutes: rng.IntN(2) == 0, EndpointFor: func(key.NodePublic) string { return "127.0.0.1:1" }}
		cfg := FromNetmap(priv, peers, opts)
		uapi := cfg.UAPI(prev)
		if err := dev.IpcSet(uapi); err != nil {
			t.Fatalf("step %d: IpcSet(%q): %v", step, uapi, err)
		}
		got, want := deviceState(t, dev), wantState(cfg)
		if len(got) != len(want) {
			t.Fatalf("step %d: device has %d peers, want %d", step, len(got), len(want))
		}
		for k, w := range want {
			if strings.Join(got[k], " ") != strings.Join(w, " ") {
				t.Fatalf("step %d: peer %s allowed IPs %v, want %v", step, k[:8], got[k], w)
			}
		}
		prev = &cfg
	}
}

func TestUAPIUnchangedPeerNotMentioned(t *testing.T) {
	a := wire.Node{NodeKey: key.NewNode().Public(), Addresses: []netip.Prefix{pfx("100.64.0.1/32")}}
	b := wire.Node{NodeKey: key.NewNode().Public(), Addresses: []netip.Prefix{pfx("100.64.0.2/32")}}
	priv := key.NewNode()
	old := FromNetmap(priv, []wire.Node{a}, Options{})
	cur := FromNetmap(priv, []wire.Node{a, b}, Options{})
	u := cur.UAPI(&old)
	if strings.Contains(u, hexKey(a.NodeKey.Raw32())) {
		t.Errorf("unchanged peer mentioned in diff:\n%s", u)
	}
	if !strings.Contains(u, hexKey(b.NodeKey.Raw32())) {
		t.Errorf("new peer missing from diff:\n%s", u)
	}
	if strings.Contains(u, "private_key") || strings.Contains(u, "replace_peers") {
		t.Errorf("diff resets the device:\n%s", u)
	}
}

func TestSharedRouteGoesToOnePeer(t *testing.T) {
	lan := pfx("192.168.1.0/24")
	a := wire.Node{NodeKey: key.NewNode().Public(), Addresses: []netip.Prefix{pfx("100.64.0.1/32")}, Routes: []netip.Prefix{lan}}
	b := wire.Node{NodeKey: key.NewNode().Public(), Addresses: []netip.Prefix{pfx("100.64.0.2/32")}, Routes: []netip.Prefix{lan, pfx("100.64.0.1/32")}}
	cfg := FromNetmap(key.NewNode(), []wire.Node{a, b}, Options{AcceptRoutes: true})
	owners := 0
	for _, p := range cfg.Peers {
		for _, ip := range p.AllowedIPs {
			if ip == lan {
				owners++
			}
			if ip == pfx("100.64.0.1/32") && p.PublicKey != a.NodeKey {
				t.Errorf("peer b claimed peer a's address through a route")
			}
		}
	}
	if owners != 1 {
		t.Fatalf("%v is routed to %d peers, want 1", lan, owners)
	}
}
