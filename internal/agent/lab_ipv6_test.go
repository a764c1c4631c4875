//go:build linux

package agent_test

import (
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"weft/internal/localapi"
	"weft/internal/netlab"
	"weft/internal/scenario"
)

// netcheckReport is the part of `weft netcheck --json` the IPv6 tests read.
type netcheckReport struct {
	UDP      bool   `json:"udp"`
	IPv4     bool   `json:"ipv4"`
	IPv6     bool   `json:"ipv6"`
	GlobalV4 string `json:"global_v4"`
	GlobalV6 string `json:"global_v6"`
}

// netcheck runs `weft netcheck --json` on host through its daemon.
func (n *labNet) netcheck(host string) (netcheckReport, string) {
	n.t.Helper()
	out, err := n.tn.CLI(n.ctx, host, "netcheck", "--json")
	if err != nil {
		n.t.Fatal(err)
	}
	var rep netcheckReport
	if err := json.Unmarshal(out, &rep); err != nil {
		n.t.Fatalf("weft netcheck --json on %s: %v: %s", host, err, out)
	}
	return rep, string(out)
}

// endpointAddr is the address of a direct path's endpoint, zero if it
// does not parse.
func endpointAddr(p *localapi.PeerStatus) netip.Addr {
	ap, err := netip.ParseAddrPort(p.Path.Endpoint)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr()
}

// TestLabIPv6Direct: busan and mac on dual-stack sites whose routers are
// hard NATs for IPv4 (no IPv4 path can be punched: TestLabHardHard) and
// stateful firewalls for IPv6. Each node discovers its global IPv6
// address (its interface, and STUN over IPv6 through its daemon, which
// sees the same address: no NAT66), publishes it, and the two punch
// through each other's firewall: the path is direct, over IPv6, at the
// other's own global address. netcheck reports global_v6.
func TestLabIPv6Direct(t *testing.T) {
	n := startNet(t, 2*time.Minute, []string{"busan", "mac"}, netlab.DualStack,
		setNAT("r-busan", netlab.NATHard), setNAT("r-fukuoka", netlab.NATHard))
	n.pair("mac", "busan")
	busan6, mac6 := n.lab.Node("busan").Addr6(), n.lab.Node("mac").Addr6()
	p := n.waitPath("mac", "busan", localapi.PathDirect, 30*time.Second)
	if got := endpointAddr(p); got != busan6 {
		t.Errorf("mac's direct endpoint for busan is %q, want busan's global IPv6 address %v", p.Path.Endpoint, busan6)
	}
	p = n.waitPath("busan", "mac", localapi.PathDirect, 30*time.Second)
	if got := endpointAddr(p); got != mac6 {
		t.Errorf("busan's direct endpoint for mac is %q, want mac's global IPv6 address %v", p.Path.Endpoint, mac6)
	}
	out, err := n.tn.CLI(n.ctx, "mac", "ping", "--until-direct", "-c", "20", "busan")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if last := lines[len(lines)-1]; !strings.Contains(last, " via ["+busan6.String()+"]:") {
		t.Errorf("weft ping --until-direct did not end with a pong over IPv6:\n%s", out)
	}

	rep, raw := n.netcheck("mac")
	v6, err := netip.ParseAddrPort(rep.GlobalV6)
	if !rep.UDP || !rep.IPv4 || !rep.IPv6 || err != nil || v6.Addr() != mac6 || rep.GlobalV4 == "" {
		t.Errorf("netcheck on dual-stack mac: %s (want ipv6 true and global_v6 at %v, its own address)", raw, mac6)
	}
	st, err := n.status("busan")
	if err != nil {
		t.Fatal(err)
	}
	for _, peer := range st.Peers {
		if peer.Name == "mac" && !slices.ContainsFunc(peer.Endpoints, func(ap netip.AddrPort) bool { return ap.Addr() == mac6 }) {
			t.Errorf("busan's map lists mac's endpoints %v, without mac's global IPv6 address", peer.Endpoints)
		}
	}
}

// TestLabIPv6OnlyToIPv4Only: mac on an IPv6-only site (no IPv4 at all)
// and busan on an IPv4-only one share no address family, so no direct
// path can exist; mac comes up through the control server's IPv6 address,
// reaches the relay at the IPv6 address the relay map gives beside its
// IPv4 host, and the two talk through it. netcheck shows each node's one
// family.
func TestLabIPv6OnlyToIPv4Only(t *testing.T) {
	n := startNet(t, 2*time.Minute, []string{"busan", "mac"}, netlab.V6Only)
	n.pair("mac", "busan")
	n.waitPath("mac", "busan", localapi.PathRelay, 10*time.Second)
	// A discovery round (several seconds) must not find a direct path.
	time.Sleep(8 * time.Second)
	for _, pair := range [][2]string{{"mac", "busan"}, {"busan", "mac"}} {
		st, err := n.status(pair[0])
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range st.Peers {
			if p.Name == pair[1] && p.Path.Kind != localapi.PathRelay {
				t.Errorf("%s's path to %s is %+v, want relay", pair[0], pair[1], p.Path)
			}
		}
	}
	out, err := n.tn.CLI(n.ctx, "mac", "ping", "-c", "2", "busan")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "via relay home in") {
		t.Errorf("weft ping from the IPv6-only mac over the relay:\n%s", out)
	}

	rep, raw := n.netcheck("mac")
	if v6, err := netip.ParseAddrPort(rep.GlobalV6); !rep.UDP || rep.IPv4 || !rep.IPv6 || err != nil ||
		v6.Addr() != n.lab.Node("mac").Addr6() || rep.GlobalV4 != "" {
		t.Errorf("netcheck on IPv6-only mac: %s", raw)
	}
	rep, raw = n.netcheck("busan")
	if !rep.UDP || !rep.IPv4 || rep.IPv6 || rep.GlobalV6 != "" {
		t.Errorf("netcheck on IPv4-only busan: %s (want ipv6 false, global_v6 empty)", raw)
	}
}

// TestLabIPv6LatencyDecides: two dual-stack sites behind easy NATs can
// punch both families; r-busan's line holds one family's packets 40 ms
// longer each way. The path in use is the other family's: the disco pong
// latency decides between IPv4 and IPv6, not the family itself.
func TestLabIPv6LatencyDecides(t *testing.T) {
	for _, tc := range []struct {
		name     string
		slow     func(*netlab.Router)
		wantIPv6 bool
	}{
		{"IPv6 slower", func(r *netlab.Router) { r.DelayIPv6 = 40 * time.Millisecond }, false},
		{"IPv4 slower", func(r *netlab.Router) { r.DelayIPv4 = 40 * time.Millisecond }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := startNet(t, 3*time.Minute, []string{"busan", "mac"}, netlab.DualStack, func(tp *netlab.Topology) {
				for i := range tp.Routers {
					if tp.Routers[i].Name == "r-busan" {
						tc.slow(&tp.Routers[i])
					}
				}
			})
			n.pair("mac", "busan")
			want := n.lab.Node("r-busan").WANAddr
			if tc.wantIPv6 {
				want = n.lab.Node("busan").Addr6()
			}
			// The faster path may be found only at a re-probe (30 s)
			// if its first pings died in a NAT not yet open.
			var last string
			err := scenario.WaitFor(n.ctx, 60*time.Second, "mac's path to busan at "+want.String(), func() (bool, error) {
				st, err := n.status("mac")
				if err != nil {
					return false, err
				}
				for _, p := range st.Peers {
					if p.Name == "busan" {
						last = p.Path.Kind + " " + p.Path.Endpoint
						return p.Path.Kind == localapi.PathDirect && endpointAddr(p) == want, nil
					}
				}
				return false, nil
			})
			if err != nil {
				t.Fatalf("%v (last: %s)", err, last)
			}
			t.Logf("mac's path to busan: %s", last)
		})
	}
}
