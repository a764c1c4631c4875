package netstack

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"weft/internal/osnet"
	"weft/internal/tailnet"
)

var (
	addrA   = netip.MustParsePrefix("100.64.0.1/32")
	addrB   = netip.MustParsePrefix("100.64.0.2/32")
	webHost = netip.MustParseAddrPort("198.51.100.7:80")
)

func TestDecide(t *testing.T) {
	own := []netip.Prefix{addrB, netip.MustParsePrefix("fd7a:1::2/128")}
	tn := []netip.Prefix{tailnet.V4Range, netip.MustParsePrefix("fd7a:1::/48")}
	lan := netip.MustParsePrefix("192.168.7.0/24")
	cases := []struct {
		name string
		cfg  osnet.Config
		dst  string
		want verdict
	}{
		{"own v4", osnet.Config{Addresses: own}, "100.64.0.2", toLocalhost},
		{"own v6", osnet.Config{Addresses: own}, "fd7a:1::2", toLocalhost},
		{"internet, not an exit node", osnet.Config{Addresses: own, TailnetRoutes: tn}, "198.51.100.7", refuse},
		{"internet, exit node", osnet.Config{Addresses: own, TailnetRoutes: tn, AdvertiseExitNode: true}, "198.51.100.7", toHost},
		{"internet v6, exit node", osnet.Config{Addresses: own, TailnetRoutes: tn, AdvertiseExitNode: true}, "2001:db8::1", toHost},
		{"another tailnet node, exit node", osnet.Config{Addresses: own, TailnetRoutes: tn, AdvertiseExitNode: true}, "100.64.0.9", refuse},
		{"another tailnet v6, exit node", osnet.Config{Addresses: own, TailnetRoutes: tn, AdvertiseExitNode: true}, "fd7a:1::9", refuse},
		{"loopback, exit node", osnet.Config{Addresses: own, AdvertiseExitNode: true}, "127.0.0.1", refuse},
		{"link-local, exit node", osnet.Config{Addresses: own, AdvertiseExitNode: true}, "169.254.1.1", refuse},
		{"multicast, exit node", osnet.Config{Addresses: own, AdvertiseExitNode: true}, "224.0.0.251", refuse},
		{"broadcast, exit node", osnet.Config{Addresses: own, AdvertiseExitNode: true}, "255.255.255.255", refuse},
		{"advertised subnet", osnet.Config{Addresses: own, AdvertiseRoutes: []netip.Prefix{lan}}, "192.168.7.5", toHost},
		{"outside advertised subnet", osnet.Config{Addresses: own, AdvertiseRoutes: []netip.Prefix{lan}}, "192.168.8.5", refuse},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := decide(&c.cfg, netip.MustParseAddr(c.dst)); got != c.want {
				t.Errorf("decide(%s) = %d, want %d", c.dst, got, c.want)
			}
		})
	}
}

// pair joins two stacks back to back, as WireGuard would between two
// nodes, and returns them.
func pair(t *testing.T, hostB HostDialer) (a, b *Stack) {
	return pumpedPair(t, hostB, nil)
}

// pumpedPair is pair with a's packets held until start is closed (nil:
// at once).
func pumpedPair(t *testing.T, hostB HostDialer, start <-chan struct{}) (a, b *Stack) {
	t.Helper()
	var err error
	if a, err = New(Options{}); err != nil {
		t.Fatal(err)
	}
	if b, err = New(Options{HostDialer: hostB}); err != nil {
		t.Fatal(err)
	}
	go pump(a, b, start)
	go pump(b, a, nil)
	t.Cleanup(func() { a.TUN().Close(); b.TUN().Close() })
	return a, b
}

// tailnetPair is pumpedPair with a at addrA and b at addrB on the IPv4
// tailnet range.
func tailnetPair(t *testing.T, start <-chan struct{}) (a, b *Stack) {
	t.Helper()
	a, b = pumpedPair(t, nil, start)
	tn := []netip.Prefix{tailnet.V4Range}
	a.Apply(osnet.Config{Addresses: []netip.Prefix{addrA}, TailnetRoutes: tn})
	b.Apply(osnet.Config{Addresses: []netip.Prefix{addrB}, TailnetRoutes: tn})
	return a, b
}

// pump carries packets from one stack's device to the other's, in
// batches as wireguard-go does, once start is closed (nil: at once),
// until the device closes.
func pump(from, to *Stack, start <-chan struct{}) {
	if start != nil {
		<-start
	}
	bufs, sizes := make([][]byte, from.TUN().BatchSize()), make([]int, from.TUN().BatchSize())
	for i := range bufs {
		bufs[i] = make([]byte, 2000)
	}
	for {
		n, err := from.TUN().Read(bufs, sizes, 0)
		if err != nil {
			return
		}
		out := make([][]byte, n)
		for i := range n {
			out[i] = bufs[i][:sizes[i]]
		}
		to.TUN().Write(out, 0)
	}
}

func echoTCP(t *testing.T, ln net.Listener) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
}

func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	if string(buf) != msg {
		t.Fatalf("echo %q, want %q", buf, msg)
	}
}

func TestInboundReachesLocalhost(t *testing.T) {
	a, _ := tailnetPair(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	echoTCP(t, ln)
	port := ln.Addr().(*net.TCPAddr).Port
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := a.Dial(ctx, "tcp", netip.AddrPortFrom(addrB.Addr(), uint16(port)))
	if err != nil {
		t.Fatalf("dial B's tailnet address: %v", err)
	}
	defer c.Close()
	roundTrip(t, c, "hello through the stack")

	// A port nobody listens on is refused, not left hanging.
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln2.Addr().(*net.TCPAddr).Port
	ln2.Close()
	if _, err := a.Dial(ctx, "tcp", netip.AddrPortFrom(addrB.Addr(), uint16(closed))); err == nil {
		t.Fatal("dial to a closed localhost port succeeded")
	}
}

// redirectDialer stands in for the host's network: it records what the
// exit node dials and connects it to a local listener instead.
type redirectDialer struct {
	mu     sync.Mutex
	dialed []string
	to     map[string]string // network -> local address
}

func (d *redirectDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	d.mu.Lock()
	d.dialed = append(d.dialed, network+" "+address)
	d.mu.Unlock()
	var nd net.Dialer
	return nd.DialContext(ctx, network, d.to[network])
}

func TestExitNodeReoriginatesFlows(t *testing.T) {
	tln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tln.Close()
	echoTCP(t, tln)
	uc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := uc.ReadFrom(buf)
			if err != nil {
				return
			}
			uc.WriteTo(buf[:n], from)
		}
	}()
	host := &redirectDialer{to: map[string]string{"tcp": tln.Addr().String(), "udp": uc.LocalAddr().String()}}
	a, b := pair(t, host)
	tn := []netip.Prefix{tailnet.V4Range}
	a.Apply(osnet.Config{Addresses: []netip.Prefix{addrA}, TailnetRoutes: tn, ExitNode: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Not yet an exit node: refused.
	b.Apply(osnet.Config{Addresses: []netip.Prefix{addrB}, TailnetRoutes: tn})
	if _, err := a.Dial(ctx, "tcp", webHost); err == nil {
		t.Fatal("a node that is not an exit node forwarded a TCP flow")
	}

	b.Apply(osnet.Config{Addresses: []netip.Prefix{addrB}, TailnetRoutes: tn, AdvertiseExitNode: true})
	c, err := a.Dial(ctx, "tcp", webHost)
	if err != nil {
		t.Fatalf("TCP through the exit node: %v", err)
	}
	roundTrip(t, c, "tcp via exit")
	c.Close()
	u, err := a.Dial(ctx, "udp", webHost)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, u, "udp via exit")
	u.Close()
	host.mu.Lock()
	defer host.mu.Unlock()
	want := []string{"tcp " + webHost.String(), "udp " + webHost.String()}
	if len(host.dialed) != 2 || host.dialed[0] != want[0] || host.dialed[1] != want[1] {
		t.Errorf("exit node dialed %q from the host, want %q", host.dialed, want)
	}
}

func TestDialerSendsOnlyTunnelTrafficThroughTheStack(t *testing.T) {
	host := &redirectDialer{to: map[string]string{}}
	d := &Dialer{Host: host}
	ctx := context.Background()
	if _, err := d.DialContext(ctx, "tcp", "100.64.0.2:80"); !errors.Is(err, ErrDown) {
		t.Errorf("tailnet dial while down: %v, want ErrDown", err)
	}
	s, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.TUN().Close()
	s.Apply(osnet.Config{Addresses: []netip.Prefix{addrA}, TailnetRoutes: []netip.Prefix{tailnet.V4Range}})
	d.Set(s)
	for _, c := range []struct {
		dst    string
		tunnel bool
		exit   bool
	}{
		{"100.64.0.2", true, false},
		{"198.51.100.7", false, false},
		{"198.51.100.7", true, true},
		{"127.0.0.1", false, true},
	} {
		cfg := *s.cfg.Load()
		cfg.ExitNode = c.exit
		s.Apply(cfg)
		if got := s.viaTunnel(netip.MustParseAddr(c.dst)); got != c.tunnel {
			t.Errorf("viaTunnel(%s) with exit node %v = %v, want %v", c.dst, c.exit, got, c.tunnel)
		}
	}
}

// fakePinger answers pings to up and fails others, without any traffic.
type fakePinger struct{ up netip.Addr }

func (f fakePinger) Ping(_ context.Context, dst netip.Addr, _ uint16, data []byte) ([]byte, error) {
	if dst != f.up {
		return nil, errors.New("timeout")
	}
	return data, nil
}

// echoRequest builds an ICMP echo request from src to dst, IPv4 or IPv6
// as the addresses are.
func echoRequest(src, dst netip.Addr, id, seq uint16, payload string) []byte {
	return echoPacket(false, src, dst, id, seq, []byte(payload))
}

// readTUN sends each packet s's device gives out on the channel it
// returns, which it closes when the device closes.
func readTUN(s *Stack) <-chan []byte {
	out := make(chan []byte, 4)
	go func() {
		bufs, sizes := [][]byte{make([]byte, 2000)}, []int{0}
		for {
			if _, err := s.TUN().Read(bufs, sizes, 0); err != nil {
				close(out)
				return
			}
			out <- append([]byte(nil), bufs[0][:sizes[0]]...)
		}
	}()
	return out
}

// TestEchoThroughExitNode: an exit node in userspace mode answers a ping
// to another host only when the host really answered it (the pinger), and
// never answers one for a host it does not forward to.
func TestEchoThroughExitNode(t *testing.T) {
	down := netip.MustParseAddr("198.51.100.99")
	s, err := New(Options{Pinger: fakePinger{up: webHost.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	out := readTUN(s)
	s.Apply(osnet.Config{Addresses: []netip.Prefix{addrB}, TailnetRoutes: []netip.Prefix{tailnet.V4Range}})
	s.TUN().Write([][]byte{echoRequest(addrA.Addr(), webHost.Addr(), 7, 1, "not an exit node")}, 0)
	s.Apply(osnet.Config{Addresses: []netip.Prefix{addrB}, TailnetRoutes: []netip.Prefix{tailnet.V4Range}, AdvertiseExitNode: true})
	s.TUN().Write([][]byte{echoRequest(addrA.Addr(), down, 7, 2, "to a host that is down")}, 0)
	s.TUN().Write([][]byte{echoRequest(addrA.Addr(), webHost.Addr(), 7, 3, "hello web")}, 0)
	select {
	case pkt := <-out:
		ip := header.IPv4(pkt)
		ic := header.ICMPv4(pkt[ip.HeaderLength():])
		src, _ := netip.AddrFromSlice(ip.SourceAddressSlice())
		dst, _ := netip.AddrFromSlice(ip.DestinationAddressSlice())
		if src != webHost.Addr() || dst != addrA.Addr() || ic.Type() != header.ICMPv4EchoReply || ic.Ident() != 7 || ic.Sequence() != 3 || string(ic.Payload()) != "hello web" {
			t.Errorf("reply %s -> %s type %d id %d seq %d %q; want web's reply to seq 3", src, dst, ic.Type(), ic.Ident(), ic.Sequence(), ic.Payload())
		}
		if !ip.IsChecksumValid() || checksum(ic) != 0xffff {
			t.Error("reply has a bad checksum")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no echo reply from the exit node")
	}
	select {
	case pkt := <-out:
		t.Errorf("a second packet came out: %x", pkt)
	case <-time.After(300 * time.Millisecond):
	}
	s.TUN().Close()
}

func TestAdmit(t *testing.T) {
	s, err := New(Options{Pinger: fakePinger{}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.TUN().Close()
	s.Apply(osnet.Config{Addresses: []netip.Prefix{addrB}, AdvertiseExitNode: true})
	if !s.admit(echoRequest(addrA.Addr(), addrB.Addr(), 1, 1, "")) {
		t.Error("echo to the node's own address dropped")
	}
	if s.admit(echoRequest(addrA.Addr(), webHost.Addr(), 1, 1, "")) {
		t.Error("echo to an internet address entered the stack: it would answer for that host")
	}
	reply := echoRequest(addrA.Addr(), webHost.Addr(), 1, 1, "")
	header.ICMPv4(reply[header.IPv4MinimumSize:]).SetType(header.ICMPv4EchoReply)
	if !s.admit(reply) {
		t.Error("a non-echo ICMP packet was dropped")
	}
	if s.admit([]byte{0x45, 0}) {
		t.Error("a truncated packet was admitted")
	}
}

// TestEcho6ThroughExitNode: an IPv6 ping through a userspace exit node is
// answered only when the host really answered it, with a reply whose
// ICMPv6 checksum (over the pseudo-header) is valid.
func TestEcho6ThroughExitNode(t *testing.T) {
	me6 := netip.MustParsePrefix("fd7a:115c:a1e0::2/128")
	peer6 := netip.MustParseAddr("fd7a:115c:a1e0::1")
	web6 := netip.MustParseAddr("2001:db8::7")
	down6 := netip.MustParseAddr("2001:db8::99")
	s, err := New(Options{Pinger: fakePinger{up: web6}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.TUN().Close()
	out := readTUN(s)
	s.Apply(osnet.Config{Addresses: []netip.Prefix{addrB, me6}, TailnetRoutes: []netip.Prefix{tailnet.V4Range, netip.MustParsePrefix("fd7a:115c:a1e0::/48")}, AdvertiseExitNode: true})
	s.TUN().Write([][]byte{echoRequest(peer6, down6, 9, 1, "to a host that is down")}, 0)
	s.TUN().Write([][]byte{echoRequest(peer6, web6, 9, 2, "hello web6")}, 0)
	select {
	case pkt, ok := <-out:
		if !ok {
			t.Fatal("TUN closed")
		}
		ip := header.IPv6(pkt)
		ic := header.ICMPv6(ip.Payload())
		src, _ := netip.AddrFromSlice(ip.SourceAddressSlice())
		dst, _ := netip.AddrFromSlice(ip.DestinationAddressSlice())
		if src != web6 || dst != peer6 || ic.Type() != header.ICMPv6EchoReply || ic.Ident() != 9 || ic.Sequence() != 2 ||
			string(ic[header.ICMPv6EchoMinimumSize:]) != "hello web6" {
			t.Errorf("reply %s -> %s type %d id %d seq %d %q; want web6's reply to seq 2", src, dst, ic.Type(), ic.Ident(), ic.Sequence(), ic[header.ICMPv6EchoMinimumSize:])
		}
		want := header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: ic, Src: ip.SourceAddress(), Dst: ip.DestinationAddress()})
		if ic.Checksum() != want {
			t.Errorf("reply checksum %#x, want %#x", ic.Checksum(), want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no IPv6 echo reply from the exit node")
	}
	select {
	case pkt := <-out:
		t.Errorf("a second packet came out: %x", pkt)
	case <-time.After(300 * time.Millisecond):
	}
}

// TestDialerResolvesTailnetNames: while a stack with the tailnet's names
// is current, the Dialer takes a name's address from them (IPv4 first),
// refuses an unknown tailnet name without asking the host's resolver, and
// leaves other names to the host's resolver.
func TestDialerResolvesTailnetNames(t *testing.T) {
	v4, v6 := netip.MustParseAddr("100.64.0.2"), netip.MustParseAddr("fd7a::2")
	names := func(name string) ([]netip.Addr, bool) {
		switch strings.TrimSuffix(strings.ToLower(name), ".") {
		case "mac", "mac.weft.internal":
			return []netip.Addr{v6, v4}, true
		case "v6only":
			return []netip.Addr{v6}, true
		case "nobody.weft.internal":
			return nil, true
		}
		return nil, false
	}
	// The host's resolver: a server that answers nothing, so a name
	// that reaches it fails with its own error.
	hostRes := &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("host resolver asked")
	}}
	d := &Dialer{Resolver: hostRes}
	ctx := context.Background()
	if _, err := d.resolve(ctx, nil, "mac"); err == nil || !strings.Contains(err.Error(), "host resolver asked") {
		t.Errorf("with no stack, mac went elsewhere than the host's resolver: %v", err)
	}
	s, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.TUN().Close()
	s.SetNames(names)
	for _, tt := range []struct {
		name, want, err string
	}{
		{"mac", "100.64.0.2", ""},
		{"MAC.weft.internal.", "100.64.0.2", ""},
		{"v6only", "fd7a::2", ""},
		{"nobody.weft.internal", "", "no such name in the tailnet"},
		{"example.com", "", "host resolver asked"},
	} {
		got, err := d.resolve(ctx, s, tt.name)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("resolve(%q) = %v, %v; want an error with %q", tt.name, got, err, tt.err)
			}
			continue
		}
		if err != nil || got.String() != tt.want {
			t.Errorf("resolve(%q) = %v, %v; want %s", tt.name, got, err, tt.want)
		}
	}
	s.SetNames(nil)
	if _, err := d.resolve(ctx, s, "mac"); err == nil || !strings.Contains(err.Error(), "host resolver asked") {
		t.Errorf("after SetNames(nil) mac did not go to the host's resolver: %v", err)
	}
}
