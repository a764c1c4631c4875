//go:build linux

package osnet

import (
	"context"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Namespaces of the forwarding lab.
const (
	nsClient = 0 // a tailnet node (100.64.0.2) that uses the exit node
	nsExit   = 1 // the exit node, with weft's Router
	nsWeb    = 2 // a host on the internet side
)

// exitLab builds client --(10.99.0.0/24)-- exit --(203.0.113.0/24)-- web.
// The client's packets carry its tailnet source address, as they would
// leaving the exit node's TUN; the web host can route the tailnet back to
// the exit node, so without masquerading it sees tailnet sources. The exit
// node's route to the web host has MTU 1300, so a clamped SYN is visible.
func exitLab(t *testing.T) *lab {
	t.Helper()
	l := newLab(t, 3)
	for i := range l.ns {
		// Addresses usable at once: no duplicate address detection wait.
		l.enter(i)
		for _, name := range []string{"net/ipv6/conf/all/accept_dad", "net/ipv6/conf/default/accept_dad"} {
			if err := (sysctls{root: "/proc/sys"}).set(name, "0"); err != nil {
				t.Fatal(err)
			}
		}
	}
	l.enter(nsExit)
	l.veth(nsClient, "c0", nsExit, "tside")
	l.veth(nsExit, "wan0", nsWeb, "w0")
	hc, he, hw := l.handle(nsClient), l.handle(nsExit), l.handle(nsWeb)

	mustAddr(t, hc, "c0", "10.99.0.2/24")
	mustAddr(t, hc, "c0", "fd99::2/64")
	mustAddr(t, hc, "c0", "100.64.0.2/32")
	mustAddr(t, hc, "c0", "fd7a:115c:a1e0::2/128")
	c0 := linkIndex(t, hc, "c0")
	mustRoute(t, hc, &netlink.Route{LinkIndex: c0, Gw: net.ParseIP("10.99.0.1"), Src: net.ParseIP("100.64.0.2")})
	mustRoute(t, hc, &netlink.Route{LinkIndex: c0, Gw: net.ParseIP("fd99::1"), Src: net.ParseIP("fd7a:115c:a1e0::2")})

	mustAddr(t, he, "tside", "10.99.0.1/24")
	mustAddr(t, he, "tside", "fd99::1/64")
	mustAddr(t, he, "wan0", "203.0.113.1/24")
	mustAddr(t, he, "wan0", "2001:db8:1::1/64")
	tside, wan := linkIndex(t, he, "tside"), linkIndex(t, he, "wan0")
	mustRoute(t, he, &netlink.Route{LinkIndex: tside, Dst: ipNet(netip.MustParsePrefix("100.64.0.2/32")), Gw: net.ParseIP("10.99.0.2")})
	mustRoute(t, he, &netlink.Route{LinkIndex: tside, Dst: ipNet(netip.MustParsePrefix("fd7a:115c:a1e0::2/128")), Gw: net.ParseIP("fd99::2")})
	mustRoute(t, he, &netlink.Route{LinkIndex: wan, Dst: ipNet(netip.MustParsePrefix("203.0.113.2/32")), Scope: netlink.SCOPE_LINK, MTU: 1300})

	mustAddr(t, hw, "w0", "203.0.113.2/24")
	mustAddr(t, hw, "w0", "2001:db8:1::2/64")
	w0 := linkIndex(t, hw, "w0")
	mustRoute(t, hw, &netlink.Route{LinkIndex: w0, Dst: ipNet(tailnet4), Gw: net.ParseIP("203.0.113.1")})
	mustRoute(t, hw, &netlink.Route{LinkIndex: w0, Dst: ipNet(tailnet6), Gw: net.ParseIP("2001:db8:1::1")})
	return l
}

// seen is what the web host observed of one connection from the client.
type seen struct {
	src netip.Addr
	mss int // the web side's TCP MSS; 0 for UDP
}

// observe makes one TCP connection (or sends one UDP datagram) from the
// client to the web host's address dst and reports what the web host saw.
// It leaves the test in the exit namespace.
func observe(t *testing.T, l *lab, network, dst string) seen {
	t.Helper()
	defer l.enter(nsExit)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // a hang guard
	defer cancel()
	l.enter(nsWeb)
	if network == "udp" {
		pc, err := net.ListenPacket("udp", net.JoinHostPort(dst, "0"))
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		l.enter(nsClient)
		c, err := (&net.Dialer{}).DialContext(ctx, "udp", pc.LocalAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		pc.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 16)
		// A few datagrams in case the first meets an unresolved neighbour.
		for i := 0; i < 5; i++ {
			if _, err := c.Write([]byte("hi")); err != nil {
				t.Fatal(err)
			}
			pc.SetReadDeadline(time.Now().Add(2 * time.Second))
			_, from, err := pc.ReadFrom(buf)
			if err == nil {
				return seen{src: from.(*net.UDPAddr).AddrPort().Addr().Unmap()}
			}
		}
		t.Fatalf("udp to %s: no datagram arrived", dst)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(dst, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type accepted struct {
		s   seen
		err error
	}
	got := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- accepted{err: err}
			return
		}
		defer c.Close()
		s := seen{src: c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()}
		s.mss, err = tcpMSS(c.(syscall.Conn))
		got <- accepted{s, err}
	}()
	l.enter(nsClient)
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("tcp to %s: %v", dst, err)
	}
	defer c.Close()
	select {
	case a := <-got:
		if a.err != nil {
			t.Fatal(a.err)
		}
		return a.s
	case <-ctx.Done():
		t.Fatal("web host never accepted")
	}
	return seen{}
}

func tcpMSS(c syscall.Conn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var mss int
	var gerr error
	if err := rc.Control(func(fd uintptr) { mss, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG) }); err != nil {
		return 0, err
	}
	return mss, gerr
}

func TestExitForwardingEndToEnd(t *testing.T) {
	l := exitLab(t)
	// Forwarding on before weft, so the path works without weft and the
	// tests see exactly what weft's table changes.
	for _, name := range []string{sysctlIPv4Forward, sysctlIPv6Forward} {
		if err := (sysctls{root: "/proc/sys"}).set(name, "1"); err != nil {
			t.Fatal(err)
		}
	}
	client4, client6 := netip.MustParseAddr("100.64.0.2"), netip.MustParseAddr("fd7a:115c:a1e0::2")
	wan4, wan6 := netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("2001:db8:1::1")
	const web4, web6 = "203.0.113.2", "2001:db8:1::2"

	type check struct {
		network, dst string
		wantSrc      netip.Addr
	}
	run := func(stage string, checks []check, wantClamp bool) {
		t.Helper()
		for _, c := range checks {
			s := observe(t, l, c.network, c.dst)
			if s.src != c.wantSrc {
				t.Errorf("%s: %s to %s arrived from %s, want %s", stage, c.network, c.dst, s.src, c.wantSrc)
			}
			if c.network == "tcp" && c.dst == web4 {
				// The route to the web host has MTU 1300: a clamped SYN
				// carries MSS 1260 (less 12 for timestamps once established).
				if clamped := s.mss <= 1260; clamped != wantClamp {
					t.Errorf("%s: web side MSS = %d, want clamped=%v (<= 1260)", stage, s.mss, wantClamp)
				}
			}
		}
	}
	direct := []check{{"tcp", web4, client4}, {"udp", web4, client4}, {"tcp", web6, client6}, {"udp", web6, client6}}
	run("before weft", direct, false)

	r := newRouter(t, Options{})
	exit := Config{
		Addresses:         []netip.Prefix{netip.MustParsePrefix("100.64.0.1/32"), netip.MustParsePrefix("fd7a:115c:a1e0::1/128")},
		TailnetRoutes:     []netip.Prefix{tailnet4, tailnet6},
		AdvertiseExitNode: true,
	}
	if err := r.Apply(exit); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	run("exit node", []check{{"tcp", web4, wan4}, {"udp", web4, wan4}, {"tcp", web6, wan6}, {"udp", web6, wan6}}, true)

	// A subnet router with SNAT off keeps tailnet sources toward its
	// advertised routes.
	subnet := exit
	subnet.AdvertiseExitNode = false
	subnet.AdvertiseRoutes = []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8:1::/64")}
	subnet.NoSNATSubnetRoutes = true
	if err := r.Apply(subnet); err != nil {
		t.Fatalf("Apply subnet router: %v", err)
	}
	run("subnet router without SNAT", direct, true)

	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	run("after Close", direct, false)
	if got := readSysctl(t, sysctlIPv4Forward); got != "1" {
		t.Errorf("ip_forward = %s after Close, want 1 (it was on before weft)", got)
	}
}
