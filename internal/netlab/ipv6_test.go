//go:build linux

package netlab_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"weft/internal/netlab"
)

// udpRecv reads one datagram on c and reports its payload and source,
// or an error when none came within wait.
func udpRecv(c *net.UDPConn, wait time.Duration) (string, netip.AddrPort, error) {
	buf := make([]byte, 1500)
	c.SetReadDeadline(time.Now().Add(wait))
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		return "", netip.AddrPort{}, err
	}
	return string(buf[:n]), netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), nil
}

func listen6(t *testing.T, n *netlab.Node) *net.UDPConn {
	t.Helper()
	if !n.Addr6().IsValid() {
		t.Fatalf("%s has no IPv6 address", n.Name)
	}
	c, err := n.ListenUDP(netip.AddrPortFrom(n.Addr6(), 0))
	if err != nil {
		t.Fatalf("listen on %s: %v", n.Name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func send6(t *testing.T, c *net.UDPConn, dst netip.AddrPort, msg string) {
	t.Helper()
	if _, err := c.WriteToUDPAddrPort([]byte(msg), dst); err != nil {
		t.Fatalf("send to %v: %v", dst, err)
	}
}

func local(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

// TestIPv6DualStack: on a dual-stack lab, a host's IPv6 reaches a public
// host with its own global address (no NAT66) and the answer comes back;
// an unsolicited datagram from the internet to the host is dropped by
// its router's firewall; two hosts on different sites meet once both
// have sent (hole punching through two stateful firewalls); IPv4 is
// still translated as before.
func TestIPv6DualStack(t *testing.T) {
	l := upLab(t, netlab.DualStackTopology())
	mac, busan, ctrl := l.Node("mac"), l.Node("busan"), l.Node("ctrl")
	if got, want := mac.Addr6(), netip.MustParseAddr("2001:db8:2::10"); got != want {
		t.Errorf("mac's IPv6 address = %v, want %v", got, want)
	}
	if got, want := ctrl.Addr6(), netip.MustParseAddr("2001:db8::10"); got != want {
		t.Errorf("ctrl's IPv6 address = %v, want %v", got, want)
	}
	if !mac.LANAddr.Is4() {
		t.Errorf("dual-stack mac has no IPv4 address: %v", mac.LANAddr)
	}

	t.Run("outbound keeps the global address, the answer returns", func(t *testing.T) {
		cm, cc := listen6(t, mac), listen6(t, ctrl)
		send6(t, cm, local(cc), "hello")
		msg, from, err := udpRecv(cc, 5*time.Second)
		if err != nil || msg != "hello" {
			t.Fatalf("ctrl got %q, %v", msg, err)
		}
		if from != local(cm) {
			t.Errorf("ctrl saw the datagram from %v, want mac's own %v (no translation)", from, local(cm))
		}
		send6(t, cc, from, "answer")
		if msg, _, err := udpRecv(cm, 5*time.Second); err != nil || msg != "answer" {
			t.Errorf("mac got %q, %v; want the answer through its firewall", msg, err)
		}
	})

	t.Run("unsolicited inbound is dropped", func(t *testing.T) {
		cm, cc := listen6(t, mac), listen6(t, ctrl)
		send6(t, cc, local(cm), "unsolicited")
		if msg, _, err := udpRecv(cm, 2*time.Second); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("mac received %q (err %v); r-fukuoka's firewall should drop it", msg, err)
		}
	})

	t.Run("hole punching between two sites", func(t *testing.T) {
		cm, cb := listen6(t, mac), listen6(t, busan)
		// mac's first datagram opens r-fukuoka but dies at r-busan.
		send6(t, cm, local(cb), "punch from mac")
		if msg, _, err := udpRecv(cb, time.Second); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("busan received %q (err %v) before it sent anything", msg, err)
		}
		// busan's answer to mac passes both firewalls now...
		send6(t, cb, local(cm), "punch from busan")
		if msg, _, err := udpRecv(cm, 5*time.Second); err != nil || msg != "punch from busan" {
			t.Fatalf("mac got %q, %v", msg, err)
		}
		// ... and so does mac's next datagram.
		send6(t, cm, local(cb), "again")
		if msg, _, err := udpRecv(cb, 5*time.Second); err != nil || msg != "again" {
			t.Errorf("busan got %q, %v", msg, err)
		}
	})

	t.Run("IPv4 is still translated", func(t *testing.T) {
		c, err := mac.ListenUDP(netip.AddrPortFrom(mac.LANAddr, 0))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cc, err := ctrl.ListenUDP(netip.AddrPortFrom(ctrl.WANAddr, 0))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		send6(t, c, local(cc), "v4")
		_, from, err := udpRecv(cc, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if from.Addr() != l.Node("r-fukuoka").WANAddr {
			t.Errorf("ctrl saw mac's IPv4 from %v, want r-fukuoka's WAN", from)
		}
	})
}

// TestIPv6Only: on Fukuoka's IPv6-only site mac has no IPv4 address and
// no IPv4 route, yet reaches the dual-stack ctrl over IPv6; Busan's site
// has no IPv6 at all.
func TestIPv6Only(t *testing.T) {
	l := upLab(t, netlab.V6OnlyTopology())
	mac, busan, ctrl := l.Node("mac"), l.Node("busan"), l.Node("ctrl")
	if mac.LANAddr.IsValid() || mac.Addr() != mac.Addr6() || !mac.Addr6().Is6() {
		t.Errorf("IPv6-only mac: LANAddr %v, Addr %v, Addr6 %v", mac.LANAddr, mac.Addr(), mac.Addr6())
	}
	if busan.Addr6().IsValid() {
		t.Errorf("IPv4-only busan has an IPv6 address %v", busan.Addr6())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, tc := range []struct {
		from *netlab.Node
		dst  netip.Addr
	}{{mac, ctrl.WANAddr}, {busan, ctrl.Addr6()}} {
		_, err := tc.from.DialContext(ctx, "udp", netip.AddrPortFrom(tc.dst, 9).String())
		if err == nil || !strings.Contains(err.Error(), "unreachable") {
			t.Errorf("%s dialing %v: err %v, want network unreachable", tc.from.Name, tc.dst, err)
		}
	}
	cm, cc := listen6(t, mac), listen6(t, ctrl)
	send6(t, cm, local(cc), "v6 only")
	if msg, from, err := udpRecv(cc, 5*time.Second); err != nil || msg != "v6 only" || from != local(cm) {
		t.Errorf("ctrl got %q from %v (%v), want it from %v", msg, from, err, local(cm))
	}
}
