//go:build linux

package osnet

import (
	"context"
	"io"
	"net"
	"slices"
	"testing"
	"time"
	"weft/internal/tstest"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// setupHostLAN gives the namespace a "physical" interface eth0 on
// a LAN (192.168.50.0/24, fd00:50::/64) with default routes via the LAN's
// router, as a home machine has.
func setupHostLAN(t *testing.T, h *netlink.Handle) {
	t.Helper()
	// A veth pair, since the dummy driver may be missing; the peer end
	// just gives eth0 a carrier.
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "eth0-peer"}); err != nil {
		t.Fatalf("add eth0: %v", err)
	}
	var link netlink.Link
	for _, name := range []string{"eth0-peer", "eth0"} {
		var err error
		if link, err = h.LinkByName(name); err != nil {
			t.Fatal(err)
		}
		// No link-local addresses: they appear whenever the kernel gets
		// to it and would make the before/after dumps race.
		if err := h.LinkSetIP6AddrGenMode(link, 1 /* IN6_ADDR_GEN_MODE_NONE */); err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetUp(link); err != nil {
			t.Fatal(err)
		}
	}
	mustAddr(t, h, "eth0", "192.168.50.2/24")
	mustAddr(t, h, "eth0", "fd00:50::2/64")
	mustRoute(t, h, &netlink.Route{LinkIndex: link.Attrs().Index, Gw: net.ParseIP("192.168.50.1")})
	mustRoute(t, h, &netlink.Route{LinkIndex: link.Attrs().Index, Gw: net.ParseIP("fd00:50::1")})
	// The kernel adds an IPv6 address's local route, and each link's
	// multicast route (ff00::/8 in the local table, once the link has its
	// carrier: the link watcher may take up to a second), a moment later;
	// wait (bounded) so they are in the "before" dump.
	for i := 0; ; i++ {
		if routeDev(t, h, "fd00:50::2", 0) == "lo" && hasMulticastRoute(t, h, "eth0") && hasMulticastRoute(t, h, "eth0-peer") {
			break
		}
		if i == 1000 {
			t.Fatal("fd00:50::2 never became local, or the links never got their ff00::/8 routes")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// hasMulticastRoute reports whether dev has its IPv6 multicast route
// (ff00::/8 in the local table), which the kernel adds when it configures
// IPv6 on the link.
func hasMulticastRoute(t *testing.T, h *netlink.Handle, dev string) bool {
	t.Helper()
	idx := linkIndex(t, h, dev)
	_, mc, _ := net.ParseCIDR("ff00::/8")
	routes, err := h.RouteListFiltered(unix.AF_INET6, &netlink.Route{Table: unix.RT_TABLE_LOCAL, Dst: mc, LinkIndex: idx},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_DST|netlink.RT_FILTER_OIF)
	if err != nil {
		t.Fatalf("list routes: %v", err)
	}
	return len(routes) > 0
}

func TestExitNodeClientRouting(t *testing.T) {
	const (
		internet4 = "198.51.100.7"
		internet6 = "2001:db8::7"
		lan4      = "192.168.50.9"
		lan6      = "fd00:50::9"
		peer      = "100.64.0.9"
	)
	tests := []struct {
		name     string
		allowLAN bool
		lanDev   string // where unmarked LAN traffic goes
	}{
		{"without LAN access", false, DefaultTUNName},
		{"with LAN access", true, "eth0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t, 1)
			h := l.handle(0)
			setupHostLAN(t, h)
			beforeWeft := routingDump(t, h)

			r, err := New(Options{})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			base := baseConfig()
			if err := r.Apply(base); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			beforeExit := routingDump(t, h)

			exit := base
			exit.ExitNode, exit.ExitNodeAllowLAN = true, tc.allowLAN
			for range 2 { // the second Apply must change nothing
				if err := r.Apply(exit); err != nil {
					t.Fatalf("Apply exit node: %v", err)
				}
			}
			checks := []struct {
				dst  string
				mark uint32
				want string
			}{
				{internet4, 0, DefaultTUNName},
				{internet6, 0, DefaultTUNName},
				{peer, 0, DefaultTUNName},
				{lan4, 0, tc.lanDev},
				{lan6, 0, tc.lanDev},
				// weft's own marked sockets bypass the tunnel entirely.
				{internet4, DefaultMark, "eth0"},
				{internet6, DefaultMark, "eth0"},
				{lan4, DefaultMark, "eth0"},
				// Only the masked bits count, so other software's low mark
				// bits do not matter.
				{internet4, DefaultMark | 0x1, "eth0"},
				{internet4, 0x1, DefaultTUNName},
			}
			for _, c := range checks {
				if got := routeDev(t, h, c.dst, c.mark); got != c.want {
					t.Errorf("route to %s with mark %#x goes via %s, want %s", c.dst, c.mark, got, c.want)
				}
			}
			// Sockets bound to a device (a DHCP client's) keep using it.
			for _, dst := range []string{lan4, internet4} {
				routes, err := h.RouteGetWithOptions(net.ParseIP(dst), &netlink.RouteGetOptions{Oif: "eth0"})
				if err != nil || len(routes) == 0 || routes[0].LinkIndex != linkIndex(t, h, "eth0") {
					t.Errorf("a socket bound to eth0 does not reach %s via eth0: %v %v", dst, routes, err)
				}
			}
			if got := readSysctl(t, sysctlSrcValidMark); got != "1" {
				t.Errorf("src_valid_mark = %s with an exit node, want 1", got)
			}

			// Clearing the exit node restores routing exactly.
			if err := r.Apply(base); err != nil {
				t.Fatalf("Apply without exit node: %v", err)
			}
			if got := routingDump(t, h); !slices.Equal(got, beforeExit) {
				t.Errorf("routing after clearing the exit node differs:\n got %q\nwant %q", got, beforeExit)
			}
			if got := routeDev(t, h, internet4, 0); got != "eth0" {
				t.Errorf("internet goes via %s after clearing the exit node, want eth0", got)
			}
			if got := readSysctl(t, sysctlSrcValidMark); got != "0" {
				t.Errorf("src_valid_mark = %s after clearing the exit node, want 0", got)
			}

			// Close (after an exit node again) and the TUN's end restore
			// the host as it was before weft.
			if err := r.Apply(exit); err != nil {
				t.Fatal(err)
			}
			if err := r.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			r.TUN().Close()
			if got := routingDump(t, h); !slices.Equal(got, beforeWeft) {
				t.Errorf("routing after Close differs from before weft:\n got %q\nwant %q", got, beforeWeft)
			}
		})
	}
}

// TestExitNodeRulesLeaveForeignRules checks that weft removes only its own
// rules, even ones at neighbouring priorities or pointing at the main
// table the same way.
func TestExitNodeRulesLeaveForeignRules(t *testing.T) {
	l := newLab(t, 1)
	h := l.handle(0)
	setupHostLAN(t, h)
	foreign := []*netlink.Rule{}
	for _, prio := range []int{DefaultRulePriority - 1, DefaultRulePriority + 2} {
		r := netlink.NewRule()
		r.Priority, r.Table, r.Family = prio, 100, unix.AF_INET
		foreign = append(foreign, r)
	}
	sup := netlink.NewRule()
	sup.Priority, sup.Table, sup.SuppressPrefixlen, sup.Family = DefaultRulePriority+1, unix.RT_TABLE_MAIN, 0, unix.AF_INET
	foreign = append(foreign, sup)
	for _, r := range foreign {
		if err := h.RuleAdd(r); err != nil {
			t.Fatalf("add foreign rule %v: %v", r, err)
		}
	}
	before := routingDump(t, h)
	r := newRouter(t, Options{})
	cfg := baseConfig()
	cfg.ExitNode, cfg.ExitNodeAllowLAN = true, true
	if err := r.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r.TUN().Close()
	if err := Cleanup(Options{}); err != nil {
		t.Fatal(err)
	}
	if got := routingDump(t, h); !slices.Equal(got, before) {
		t.Errorf("foreign rules changed:\n got %q\nwant %q", got, before)
	}
}

// readSysctl reads a sysctl in the test's current namespace.
func readSysctl(t *testing.T, name string) string {
	t.Helper()
	v, err := sysctls{root: "/proc/sys"}.get(name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestWeftTrafficBypassesExitNode sends weft's own traffic (marked TCP and
// UDP) to a host on the LAN while an exit node is in use without LAN
// access, with strict reverse-path filtering: the packets must leave by
// eth0, not the tunnel, and the replies must be accepted although the
// unmarked route back to their source is the tunnel.
func TestWeftTrafficBypassesExitNode(t *testing.T) {
	l := newLab(t, 2)
	l.veth(0, "eth0", 1, "eth0")
	h0, h1 := l.handle(0), l.handle(1)
	mustAddr(t, h0, "eth0", "192.168.60.2/24")
	mustAddr(t, h1, "eth0", "192.168.60.1/24")
	sys := sysctls{root: "/proc/sys"}
	for _, name := range []string{"net/ipv4/conf/all/rp_filter", "net/ipv4/conf/eth0/rp_filter"} {
		if err := sys.set(name, "1"); err != nil {
			t.Fatal(err)
		}
	}
	r := newRouter(t, Options{})
	cfg := baseConfig()
	cfg.ExitNode = true
	if err := r.Apply(cfg); err != nil {
		t.Fatal(err)
	}

	// Servers on the LAN host.
	l.enter(1)
	ln, err := net.Listen("tcp", "192.168.60.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tstest.ServeConns(ln, func(c net.Conn) {
		c.Write([]byte("ok"))
		c.Close()
	})
	echo, err := net.ListenPacket("udp", "192.168.60.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		buf := make([]byte, 64)
		for {
			n, from, err := echo.ReadFrom(buf)
			if err != nil {
				return
			}
			echo.WriteTo(buf[:n], from)
		}
	}()
	l.enter(0)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // a hang guard
	defer cancel()
	c, err := Dialer(r.Mark()).DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("marked TCP dial: %v", err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 2)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ok" {
		t.Errorf("marked TCP read = %q, %v", buf, err)
	}
	c.Close()

	pc, err := ListenConfig(r.Mark()).ListenPacket(ctx, "udp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	got := false
	for i := 0; i < 5 && !got; i++ { // the first datagram may wait on ARP
		if _, err := pc.WriteTo([]byte("ping"), echo.LocalAddr()); err != nil {
			t.Fatalf("marked UDP send: %v", err)
		}
		pc.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, _, err := pc.ReadFrom(buf[:cap(buf)])
		got = err == nil && n > 0
	}
	if !got {
		t.Error("no UDP reply to a marked socket")
	}
}

// TestExitNodeSwitchLANAccess toggles LAN access while the exit node stays
// selected: the result must equal selecting the exit node afresh with the
// new setting.
func TestExitNodeSwitchLANAccess(t *testing.T) {
	l := newLab(t, 1)
	h := l.handle(0)
	setupHostLAN(t, h)
	r := newRouter(t, Options{})
	cfg := baseConfig()
	cfg.ExitNode = true
	want := map[bool][]string{}
	for _, allow := range []bool{false, true} {
		cfg.ExitNodeAllowLAN = allow
		if err := r.Apply(baseConfig()); err != nil {
			t.Fatal(err)
		}
		if err := r.Apply(cfg); err != nil {
			t.Fatal(err)
		}
		want[allow] = routingDump(t, h)
	}
	if slices.Equal(want[false], want[true]) {
		t.Fatal("LAN access makes no difference to routing")
	}
	for _, allow := range []bool{false, true, false} {
		cfg.ExitNodeAllowLAN = allow
		if err := r.Apply(cfg); err != nil {
			t.Fatal(err)
		}
		if got := routingDump(t, h); !slices.Equal(got, want[allow]) {
			t.Errorf("after switching LAN access to %v:\n got %q\nwant %q", allow, got, want[allow])
		}
	}
}
