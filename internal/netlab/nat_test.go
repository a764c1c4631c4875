//go:build linux

package netlab_test

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"weft/internal/netlab"
)

// natTopology has one router of each NAT kind, each with one host, and
// three public servers.
func natTopology() netlab.Topology {
	pub := func(name, a string) netlab.PublicHost {
		return netlab.PublicHost{Name: name, Addr: netip.MustParseAddr(a)}
	}
	return netlab.Topology{
		Routers: []netlab.Router{
			{Name: "r-easy", NAT: netlab.NATEasy, Hosts: []string{"he"}},
			{Name: "r-hard", NAT: netlab.NATHard, Hosts: []string{"hh"}},
			{Name: "r-udpb", NAT: netlab.NATUDPBlocked, Hosts: []string{"hu"}},
		},
		Public: []netlab.PublicHost{pub("s1", "203.0.113.10"), pub("s2", "203.0.113.11"), pub("s3", "203.0.113.12")},
	}
}

// udpServer listens on port in node and reports the source of every
// datagram it receives. It stops at test cleanup.
type udpServer struct {
	conn *net.UDPConn
	from chan netip.AddrPort
}

func newUDPServer(t *testing.T, n *netlab.Node, port uint16) *udpServer {
	t.Helper()
	c, err := n.ListenUDP(netip.AddrPortFrom(n.WANAddr, port))
	if err != nil {
		t.Fatalf("listen on %s: %v", n.Name, err)
	}
	s := &udpServer{conn: c, from: make(chan netip.AddrPort, 64)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			_, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			s.from <- netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return s
}

func (s *udpServer) addr() netip.AddrPort {
	a := s.conn.LocalAddr().(*net.UDPAddr).AddrPort()
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// quiet is how long a test waits to conclude that a datagram was dropped.
const quiet = 300 * time.Millisecond

// recv waits for the next datagram source, failing the test if none comes.
func (s *udpServer) recv(t *testing.T) netip.AddrPort {
	t.Helper()
	select {
	case a := <-s.from:
		return a
	case <-time.After(5 * time.Second):
		t.Fatalf("server %v received nothing", s.addr())
		return netip.AddrPort{}
	}
}

// send writes a datagram from c to dst. The kernel queues it while the
// neighbour is resolved, so a first datagram is not lost to ARP.
func send(t *testing.T, c *net.UDPConn, dst netip.AddrPort) {
	t.Helper()
	if _, err := c.WriteToUDPAddrPort([]byte("hello"), dst); err != nil {
		t.Fatalf("send to %v: %v", dst, err)
	}
}

func TestNATKinds(t *testing.T) {
	l := upLab(t, natTopology())
	s1 := newUDPServer(t, l.Node("s1"), 4000)
	s2 := newUDPServer(t, l.Node("s2"), 4001)

	// observed sends from one socket on host to s1 and s2 and returns the
	// sources they saw.
	observed := func(t *testing.T, host string) (a, b netip.AddrPort) {
		c, err := l.Node(host).ListenUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), 0))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		send(t, c, s1.addr())
		a = s1.recv(t)
		send(t, c, s2.addr())
		b = s2.recv(t)
		return a, b
	}

	t.Run("easy keeps one mapping for every destination", func(t *testing.T) {
		a, b := observed(t, "he")
		wan := l.Node("r-easy").WANAddr
		if a.Addr() != wan || b.Addr() != wan {
			t.Fatalf("sources %v, %v; want the router's WAN %v", a, b, wan)
		}
		if a.Port() != b.Port() {
			t.Errorf("easy NAT: s1 saw port %d, s2 saw %d; want the same", a.Port(), b.Port())
		}
	})
	t.Run("hard maps each destination to a new port", func(t *testing.T) {
		a, b := observed(t, "hh")
		wan := l.Node("r-hard").WANAddr
		if a.Addr() != wan || b.Addr() != wan {
			t.Fatalf("sources %v, %v; want the router's WAN %v", a, b, wan)
		}
		if a.Port() == b.Port() {
			t.Errorf("hard NAT: s1 and s2 both saw port %d; want different ports", a.Port())
		}
	})
	t.Run("udp-blocked drops UDP", func(t *testing.T) {
		c, err := l.Node("hu").ListenUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), 0))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for range 3 {
			send(t, c, s1.addr())
			send(t, c, s2.addr())
		}
		select {
		case a := <-s1.from:
			t.Errorf("s1 received UDP from %v behind udp-blocked", a)
		case a := <-s2.from:
			t.Errorf("s2 received UDP from %v behind udp-blocked", a)
		case <-time.After(quiet):
		}
	})
	t.Run("udp-blocked passes TCP", func(t *testing.T) {
		ln, err := l.Node("s1").Listen("tcp4", "203.0.113.10:4100")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		got := make(chan string, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				got <- err.Error()
				return
			}
			got <- c.RemoteAddr().String()
			c.Close()
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := l.Node("hu").DialContext(ctx, "tcp4", "203.0.113.10:4100")
		if err != nil {
			t.Fatalf("TCP through udp-blocked: %v", err)
		}
		c.Close()
		from, _, _ := net.SplitHostPort(<-got)
		if want := l.Node("r-udpb").WANAddr.String(); from != want {
			t.Errorf("TCP arrived from %s; want %s", from, want)
		}
	})
}

// sources reports the source of every datagram c receives until it is
// closed.
func sources(c *net.UDPConn) <-chan netip.AddrPort {
	got := make(chan netip.AddrPort, 16)
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			got <- netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		}
	}()
	return got
}

// mappedSocket opens a UDP socket on host and sends from it to s, which
// reports the public address:port the NAT mapped it to. It returns the
// socket (closed at the end of the test), the sources of what it receives,
// and the mapping.
func mappedSocket(t *testing.T, host *netlab.Node, s *udpServer) (*net.UDPConn, <-chan netip.AddrPort, netip.AddrPort) {
	t.Helper()
	c, err := host.ListenUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	got := sources(c)
	send(t, c, s.addr())
	return c, got, s.recv(t)
}

// TestEasyNATFilters checks address-and-port-dependent filtering: the
// server the mapping was made for can answer, anyone else is dropped.
func TestEasyNATFilters(t *testing.T) {
	l := upLab(t, natTopology())
	s1 := newUDPServer(t, l.Node("s1"), 4000)
	s1other := newUDPServer(t, l.Node("s1"), 4002)
	s3 := newUDPServer(t, l.Node("s3"), 4000)
	_, got, mapped := mappedSocket(t, l.Node("he"), s1)

	// The strangers speak first, so that the wanted reply, once it
	// arrives, proves any stranger's datagram had its chance too.
	for _, s := range []*udpServer{s3, s1other} {
		if _, err := s.conn.WriteToUDPAddrPort([]byte("unsolicited"), mapped); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(quiet)
	if _, err := s1.conn.WriteToUDPAddrPort([]byte("reply"), mapped); err != nil {
		t.Fatal(err)
	}
	select {
	case from := <-got:
		if from != s1.addr() {
			t.Fatalf("host received from %v first; want only %v through the mapping", from, s1.addr())
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("the reply from %v to mapping %v never arrived", s1.addr(), mapped)
	}
	select {
	case from := <-got:
		t.Errorf("host received unsolicited datagram from %v", from)
	default:
	}
}

// TestFlushConntrack shows that flushing forgets NAT mappings: behind the
// hard NAT the same destination keeps its port until the flush, then gets
// a new one.
func TestFlushConntrack(t *testing.T) {
	l := upLab(t, natTopology())
	s1 := newUDPServer(t, l.Node("s1"), 4000)
	c, err := l.Node("hh").ListenUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), 0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	send(t, c, s1.addr())
	first := s1.recv(t)
	send(t, c, s1.addr())
	if again := s1.recv(t); again != first {
		t.Fatalf("same destination seen from %v then %v; want one mapping", first, again)
	}
	if err := l.FlushConntrack("r-hard"); err != nil {
		t.Fatal(err)
	}
	send(t, c, s1.addr())
	if after := s1.recv(t); after == first {
		t.Errorf("after flush the mapping is still %v; want a new port", after)
	}
	if err := l.FlushConntrack("s1"); err == nil {
		t.Error("FlushConntrack on a public host: want an error")
	}
}

// TestEasyNATEarlyPunch is hole punching's order problem: the peer's punch
// reaches the router before the host's own first packet to that peer. The
// router must drop it without remembering it, so that the host's packet
// still leaves from the port it keeps for every destination and the
// peer's next packet gets in.
func TestEasyNATEarlyPunch(t *testing.T) {
	l := upLab(t, natTopology())
	s1 := newUDPServer(t, l.Node("s1"), 4000)
	peer := newUDPServer(t, l.Node("s3"), 4000)
	c, got, mapped := mappedSocket(t, l.Node("he"), s1) // what STUN would tell the host, and the peer

	if _, err := peer.conn.WriteToUDPAddrPort([]byte("early punch"), mapped); err != nil {
		t.Fatal(err)
	}
	time.Sleep(quiet)
	select {
	case from := <-got:
		t.Fatalf("the early punch from %v got in before the host sent anything to it", from)
	default:
	}
	send(t, c, peer.addr())
	if seen := peer.recv(t); seen != mapped {
		t.Fatalf("after an early punch the host's packet left from %v; want its mapping %v", seen, mapped)
	}
	if _, err := peer.conn.WriteToUDPAddrPort([]byte("punch"), mapped); err != nil {
		t.Fatal(err)
	}
	select {
	case from := <-got:
		if from != peer.addr() {
			t.Fatalf("host received from %v; want %v", from, peer.addr())
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("the peer's punch to %v never arrived after the host opened it", mapped)
	}
}
