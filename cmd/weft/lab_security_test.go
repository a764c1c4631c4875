//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"weft/internal/localapi"
	"weft/internal/scenario"
)

// tailnetAddr4 is host's own IPv4 tailnet address, from its status.
func (l *exitLab) tailnetAddr4(host string) netip.Addr {
	l.t.Helper()
	var st localapi.Status
	if err := json.Unmarshal([]byte(l.cli(host, "status", "--json")), &st); err != nil || st.Self == nil {
		l.t.Fatalf("%s's status: %v", host, err)
	}
	return netip.MustParseAddr(firstAddr(st.Self))
}

// TestLabExitNodeLANCannotEnterTailnet: nas, a plain host on the exit
// node's LAN, routes the tailnet (100.64.0.0/10) via busan's LAN address.
// mac uses busan as exit node, so busan's allowed IPs on mac cover every
// source address; still nas must not open a connection to mac, because
// busan lets into the tunnel from other interfaces only packets of
// connections a tailnet node opened. busan counts what it drops, in
// `weft status --json`, and mac's own traffic through busan still flows.
func TestLabExitNodeLANCannotEnterTailnet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	l := startExitLab(t, ctx)
	busanWAN, busanLAN := l.lab.Node("r-busan").WANAddr, l.lab.Node("busan").LANAddr

	l.useBusanExit(t)
	macTailnet := l.tailnetAddr4("mac")
	// mac reaches busan's LAN through the exit node: the way back
	// (nas → busan → tunnel) is a reply and must pass.
	l.awaitReach("mac", "nas", "mac reaches nas through the exit node")

	err := l.lab.Node("nas").Do(func() error {
		return netlink.RouteAdd(&netlink.Route{Dst: netipNet(netip.MustParsePrefix("100.64.0.0/10")), Gw: busanLAN.AsSlice()})
	})
	if err != nil {
		t.Fatal(err)
	}
	before := l.lanDrops("busan")
	for range 3 {
		if src, err := l.reachAddr("nas", "mac", macTailnet); err == nil {
			t.Fatalf("nas, on busan's LAN, opened a connection to mac's tailnet address %v (mac saw it from %v)", macTailnet, src)
		}
	}
	if after := l.lanDrops("busan"); after <= before {
		t.Errorf("busan's status counts %d dropped LAN packets before and %d after nas's attempts; want more", before, after)
	}
	// mac's own flows through busan are untouched.
	if a, err := l.whoami("mac"); err != nil || a != busanWAN {
		t.Errorf("after nas's attempts web sees mac as %v (%v), want r-busan %v", a, err, busanWAN)
	}
	if _, err := l.reach("mac", "nas"); err != nil {
		t.Errorf("mac no longer reaches nas through the exit node: %v", err)
	}
}

// lanDrops is the count of packets host refused to let from another
// interface into the tunnel, as `weft status --json` reports it.
func (l *exitLab) lanDrops(host string) uint64 { return l.drops(host).IntoTunnel }

// drops is host's drop counters from `weft status --json`.
func (l *exitLab) drops(host string) localapi.Drops {
	l.t.Helper()
	var st localapi.Status
	if err := json.Unmarshal([]byte(l.cli(host, "status", "--json")), &st); err != nil {
		l.t.Fatalf("%s's status: %v", host, err)
	}
	if st.Drops == nil {
		return localapi.Drops{}
	}
	return *st.Drops
}

// expectRefused runs send, which sends three packets through busan that
// busan must refuse, and fails t when one reaches sink within two
// seconds (the way on from busan may be a delayed link away) or when
// busan's count of refused tunnel packets grew by fewer than three.
func (l *exitLab) expectRefused(t *testing.T, sink <-chan string, what string, send func()) {
	t.Helper()
	before := l.drops("busan").FromTunnel
	send()
	select {
	case m := <-sink:
		t.Fatalf("%s arrived: %q", what, m)
	case <-time.After(2 * time.Second):
	}
	if after := l.drops("busan").FromTunnel; after < before+3 {
		t.Errorf("busan counts %d refused tunnel packets before and %d after; want at least 3 more", before, after)
	}
}

// udpSink collects the datagrams that reach addr on host until the test
// ends.
func (l *exitLab) udpSink(host string, addr netip.AddrPort) <-chan string {
	l.t.Helper()
	ln, err := l.lab.Node(host).ListenUDP(addr)
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { ln.Close() })
	got := make(chan string, 64)
	go func() {
		buf := make([]byte, 1500)
		for {
			n, _, err := ln.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			select {
			case got <- string(buf[:n]):
			default:
			}
		}
	}()
	return got
}

// deliver sends a fresh datagram from the rogue to dst until sink gets it,
// and returns the other datagrams sink got meanwhile. It doubles as a
// barrier: what the rogue sent earlier on the same tunnel has had its
// chance to arrive once this one has.
func (r *rogue) deliver(ctx context.Context, sink <-chan string, dst netip.AddrPort) (others []string) {
	r.t.Helper()
	want := fmt.Sprintf("barrier %d", time.Now().UnixNano())
	err := scenario.WaitFor(ctx, 30*time.Second, "a datagram from the rogue to "+dst.String(), func() (bool, error) {
		r.sendUDP(dst, want)
		deadline := time.After(300 * time.Millisecond)
		for {
			select {
			case m := <-sink:
				if m == want {
					return true, nil
				}
				others = append(others, m)
			case <-deadline:
				return false, nil
			}
		}
	})
	if err != nil {
		r.t.Fatal(err)
	}
	return others
}

// TestLabWireGuardReplayDropped: a WireGuard data packet sent again,
// byte for byte (captured on the way, here by the sending peer itself),
// is delivered once: busan's WireGuard refuses a counter it has seen.
func TestLabWireGuardReplayDropped(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l := startExitLab(t, ctx)
	busan := netip.AddrPortFrom(l.tailnetAddr4("busan"), 4450)
	toBusan := l.udpSink("busan", busan)
	r := startRogue(t, ctx, l, "pc")
	r.route("busan", netip.PrefixFrom(busan.Addr(), 32))
	r.deliver(ctx, toBusan, busan)

	r.out.record(true)
	r.sendUDP(busan, "once")
	// Late copies of the barrier may come first.
	deadline := time.After(10 * time.Second)
	for got := ""; got != "once"; {
		select {
		case got = <-toBusan:
		case <-deadline:
			t.Fatal("the datagram to replay never arrived")
		}
	}
	sent := r.out.record(false)
	if len(sent) == 0 {
		t.Fatal("no WireGuard data packet was captured: nothing to replay")
	}
	for range 3 {
		for _, pkt := range sent {
			r.replay(pkt)
		}
	}
	// The relay keeps order, so once the barrier is through, so are the
	// replays.
	for _, m := range r.deliver(ctx, toBusan, busan) {
		if m == "once" {
			t.Fatalf("a replayed WireGuard packet was delivered again")
		}
	}
}

// TestLabUnapprovedRouteDropped: busan offers itself as exit node and its
// LAN as a subnet route, and nothing is approved. A modified peer (the
// rogue) that routes everything to busan anyway reaches busan itself, but
// neither the internet nor busan's LAN through it: busan drops tunnel
// packets whose destination is neither busan nor an approved route, and
// counts them. Once the exit route is approved the internet is reached.
// With every offer withdrawn and IP forwarding on already (as on a Docker
// host), busan still forwards nothing from the tunnel.
func TestLabUnapprovedRouteDropped(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	l := startExitLab(t, ctx)
	web := netip.AddrPortFrom(l.lab.Node("web").WANAddr, 4445)
	nas := netip.AddrPortFrom(l.lab.Node("nas").LANAddr, 4446)
	busan := netip.AddrPortFrom(l.tailnetAddr4("busan"), 4444)
	toBusan, toWeb, toNAS := l.udpSink("busan", busan), l.udpSink("web", web), l.udpSink("nas", nas)

	r := startRogue(t, ctx, l, "pc")
	r.route("busan", netip.MustParsePrefix("0.0.0.0/0"))
	r.deliver(ctx, toBusan, busan)

	refused := func(t *testing.T, sink <-chan string, dst netip.AddrPort) {
		t.Helper()
		l.expectRefused(t, sink, fmt.Sprintf("the rogue's datagram to %v through busan", dst), func() {
			for range 3 {
				r.sendUDP(dst, "through busan")
			}
			r.deliver(ctx, toBusan, busan)
		})
	}
	t.Run("exit offered, not approved: the internet", func(t *testing.T) { refused(t, toWeb, web) })
	t.Run("subnet offered, not approved: the LAN", func(t *testing.T) { refused(t, toNAS, nas) })
	t.Run("exit approved: the internet", func(t *testing.T) {
		l.admin("routes", "approve", "busan", "exit")
		r.deliver(ctx, toWeb, web)
	})
	t.Run("no offer, forwarding on already: the LAN", func(t *testing.T) {
		l.cli("busan", "set", "--advertise-exit-node=false", "--advertise-routes=")
		err := l.lab.Node("busan").Do(func() error {
			return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644)
		})
		if err != nil {
			t.Fatal(err)
		}
		refused(t, toNAS, nas)
		refused(t, toWeb, web)
	})
	t.Run("with a policy that lets everything else in", func(t *testing.T) {
		// The policy accepts every address on every port but one of
		// busan's, so it is seen to be in force when that port
		// closes; nas stays out of reach all the same.
		file := filepath.Join(t.TempDir(), "policy.hujson")
		policy := `{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:1-4448,4450-65535"]}]}`
		if err := os.WriteFile(file, []byte(policy), 0o644); err != nil {
			t.Fatal(err)
		}
		l.admin("policy", "set", file)
		closed := netip.AddrPortFrom(busan.Addr(), 4449)
		toClosed := l.udpSink("busan", closed)
		err := scenario.WaitFor(ctx, 30*time.Second, "the policy in force on busan (port 4449 closed)", func() (bool, error) {
			for len(toClosed) > 0 {
				<-toClosed
			}
			r.sendUDP(closed, "probe")
			r.deliver(ctx, toBusan, busan)
			return len(toClosed) == 0, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		refused(t, toNAS, nas)
	})
}

// TestLabExitNodeRefusesLocalDestinations: through an exit node a client
// reaches the internet, never the exit node's own host and link: busan,
// whose LAN holds a "cloud metadata" service at 169.254.169.254 that busan
// itself reaches, refuses mac's packets to it, and a modified peer's
// packets to busan's loopback.
func TestLabExitNodeRefusesLocalDestinations(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	l := startExitLab(t, ctx)
	nasLAN := l.lab.Node("nas").LANAddr
	metadata := netip.AddrPortFrom(netip.MustParseAddr("169.254.169.254"), 80)

	// The metadata service: an address on nas, routed to by busan.
	err := l.lab.Node("nas").Do(func() error {
		links, err := netlink.LinkList()
		if err != nil {
			return err
		}
		for _, ln := range links {
			addrs, _ := netlink.AddrList(ln, netlink.FAMILY_V4)
			for _, a := range addrs {
				if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == nasLAN {
					return netlink.AddrAdd(ln, &netlink.Addr{IPNet: netipNet(netip.PrefixFrom(metadata.Addr(), 32))})
				}
			}
		}
		return fmt.Errorf("nas has no link with %v", nasLAN)
	})
	if err != nil {
		t.Fatal(err)
	}
	err = l.lab.Node("busan").Do(func() error {
		return netlink.RouteAdd(&netlink.Route{Dst: netipNet(netip.PrefixFrom(metadata.Addr(), 32)), Gw: nasLAN.AsSlice()})
	})
	if err != nil {
		t.Fatal(err)
	}
	toMetadata := l.udpSink("nas", metadata)
	sendFrom := func(host, payload string) {
		t.Helper()
		c, err := l.lab.Node(host).DialContext(ctx, "udp4", metadata.String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte(payload)); err != nil {
			t.Fatal(err)
		}
	}
	err = scenario.WaitFor(ctx, 10*time.Second, "busan itself reaches the metadata service", func() (bool, error) {
		sendFrom("busan", "from busan")
		select {
		case <-toMetadata:
			return true, nil
		case <-time.After(200 * time.Millisecond):
			return false, nil
		}
	})
	if err != nil {
		t.Fatal(err)
	}

	l.useBusanExit(t)

	t.Run("cloud metadata", func(t *testing.T) {
		l.expectRefused(t, toMetadata, "mac's datagram to the metadata address through the exit node", func() {
			for range 3 {
				sendFrom("mac", "from mac")
			}
		})
	})
	t.Run("loopback", func(t *testing.T) {
		busan := netip.AddrPortFrom(l.tailnetAddr4("busan"), 4444)
		loop := netip.MustParseAddrPort("127.0.0.1:4447")
		toBusan, toLoop := l.udpSink("busan", busan), l.udpSink("busan", loop)
		r := startRogue(t, ctx, l, "pc")
		r.route("busan", netip.MustParsePrefix("0.0.0.0/0"))
		r.deliver(ctx, toBusan, busan)
		l.expectRefused(t, toLoop, "the rogue's datagram to busan's loopback", func() {
			for range 3 {
				r.sendUDP(loop, "to busan's loopback")
			}
			r.deliver(ctx, toBusan, busan)
		})
	})
}
