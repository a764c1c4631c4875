package magicsock_test

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"weft/internal/key"
	"weft/internal/magicsock"
)

// loopNet is the host network restricted to loopback, with a switch that
// makes every direct send vanish (a dead direct path). Its main sockets
// are newBind's, a StdNetBind if nil.
type loopNet struct {
	magicsock.HostNetwork
	blocked *atomic.Bool
	newBind func() conn.Bind
}

func (n loopNet) NewBind() conn.Bind {
	if n.newBind == nil {
		return &blockBind{Bind: conn.NewStdNetBind(), blocked: n.blocked}
	}
	return &blockBind{Bind: n.newBind(), blocked: n.blocked}
}

func (loopNet) LocalAddrs() ([]netip.Addr, error) {
	return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
}

type blockBind struct {
	conn.Bind
	blocked *atomic.Bool
}

func (b *blockBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	if b.blocked.Load() {
		return nil
	}
	return b.Bind.Send(bufs, ep)
}

// wgNode is a wireguard-go device on a channel TUN over some bind.
type wgNode struct {
	key  key.NodePrivate
	ip   netip.Addr
	tun  *tuntest.ChannelTUN
	dev  *device.Device
	conn *magicsock.Conn // nil for the StdNetBind baseline
}

func hexKey(k [32]byte) string { return hex.EncodeToString(k[:]) }

func newWGNode(t testing.TB, ip string, bind conn.Bind, k key.NodePrivate) *wgNode {
	t.Helper()
	n := &wgNode{key: k, ip: netip.MustParseAddr(ip), tun: tuntest.NewChannelTUN()}
	n.dev = device.NewDevice(n.tun.TUN(), bind, device.NewLogger(device.LogLevelSilent, ""))
	if err := n.dev.IpcSet("private_key=" + hexKey(k.Raw32()) + "\nlisten_port=0\n"); err != nil {
		t.Fatal(err)
	}
	if err := n.dev.Up(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.dev.Close)
	return n
}

func (n *wgNode) port(t testing.TB) uint16 {
	s, err := n.dev.IpcGet()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(s, "\n") {
		if v, ok := strings.CutPrefix(line, "listen_port="); ok {
			p, _ := strconv.Atoi(v)
			return uint16(p)
		}
	}
	t.Fatal("no listen_port")
	return 0
}

// addPeer tells n about peer, reached at endpoint (a node key for
// magicsock, ip:port for StdNetBind).
func (n *wgNode) addPeer(t testing.TB, peer *wgNode, endpoint string) {
	t.Helper()
	pub := peer.key.Public().Raw32()
	cfg := fmt.Sprintf("public_key=%s\nendpoint=%s\nallowed_ip=%s/32\n", hexKey(pub), endpoint, peer.ip)
	if err := n.dev.IpcSet(cfg); err != nil {
		t.Fatal(err)
	}
}

// ipPacket makes an IPv4/UDP packet of size bytes carrying seq.
func ipPacket(src, dst netip.Addr, seq uint32, size int) []byte {
	p := make([]byte, size)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(size))
	p[8] = 64
	p[9] = 17
	s, d := src.As4(), dst.As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	binary.BigEndian.PutUint16(p[20:], 1000)
	binary.BigEndian.PutUint16(p[22:], 2000)
	binary.BigEndian.PutUint16(p[24:], uint16(size-20))
	binary.BigEndian.PutUint32(p[28:], seq)
	return p
}

func seqOf(p []byte) uint32 { return binary.BigEndian.Uint32(p[28:]) }

// deliver sends packet seq from a to b through the tunnel and waits for it
// at b, sending again on a timeout as a transport protocol would. It fails
// the test if the packet never arrives.
// deliverBoth returns a function that delivers one packet from a to b and
// one back (deliver), numbering them on from 1 across its calls.
func deliverBoth(t *testing.T, a, b *wgNode) func() {
	seq := uint32(0)
	return func() {
		t.Helper()
		seq++
		deliver(t, a, b, seq)
		seq++
		deliver(t, b, a, seq)
	}
}

func deliver(t *testing.T, a, b *wgNode, seq uint32) {
	t.Helper()
	pkt := ipPacket(a.ip, b.ip, seq, 200)
	for try := 0; try < 10; try++ {
		select {
		case a.tun.Outbound <- pkt:
		case <-time.After(5 * time.Second):
			t.Fatal("tunnel not reading")
		}
		timeout := time.After(time.Second)
		for {
			select {
			case got := <-b.tun.Inbound:
				if seqOf(got) == seq {
					return
				}
				continue // a late duplicate of an earlier retry
			case <-timeout:
			}
			break
		}
	}
	t.Fatalf("packet %d from %v never arrived at %v", seq, a.ip, b.ip)
}

// newMagicPair makes two wireguard-go devices over magicsock Conns on
// loopback, joined by a fake relay; direct sends are blocked until the
// test unblocks them.
func newMagicPair(t testing.TB, blocked *atomic.Bool) (a, b *wgNode, relay *fakeRelay) {
	t.Helper()
	return newMagicPairOver(t, blocked, nil)
}

// newMagicPairOver is newMagicPair with main sockets newBind makes (a
// StdNetBind if nil).
func newMagicPairOver(t testing.TB, blocked *atomic.Bool, newBind func() conn.Bind) (a, b *wgNode, relay *fakeRelay) {
	t.Helper()
	relay = newFakeRelay()
	mk := func(ip string) (*wgNode, key.DiscoPrivate) {
		nk, dk := key.NewNode(), key.NewDisco()
		c, err := magicsock.New(magicsock.Options{
			DiscoKey: dk,
			NodeKey:  nk.Public(),
			Relay:    relay.client(nk.Public()),
			Network:  loopNet{blocked: blocked, newBind: newBind},
			Timers:   fastTimers,
		})
		if err != nil {
			t.Fatal(err)
		}
		relay.add(nk.Public(), c)
		n := newWGNode(t, ip, c, nk)
		n.conn = c
		return n, dk
	}
	a, da := mk("10.0.0.1")
	b, db := mk("10.0.0.2")
	a.conn.SetPeers([]magicsock.Peer{{NodeKey: b.key.Public(), DiscoKey: db.Public(), HomeRegion: 1,
		Endpoints: b.conn.LocalEndpoints()}})
	b.conn.SetPeers([]magicsock.Peer{{NodeKey: a.key.Public(), DiscoKey: da.Public(), HomeRegion: 1,
		Endpoints: a.conn.LocalEndpoints()}})
	a.addPeer(t, b, b.key.Public().String())
	b.addPeer(t, a, a.key.Public().String())
	return a, b, relay
}

func pathKind(a, b *wgNode) magicsock.PathKind {
	st, _ := a.conn.PeerStatus(b.key.Public())
	return st.Path.Kind
}

// TestWireGuardRelayThenDirect runs two real wireguard-go devices over
// magicsock: traffic starts on the relay, moves to the direct path when it
// opens, falls back to the relay when it dies, and no packet is lost for
// good on the way. It runs over a StdNetBind and over the main-socket
// bind macOS uses (sockBind).
func TestWireGuardRelayThenDirect(t *testing.T) {
	binds := []struct {
		name    string
		newBind func() conn.Bind
	}{
		{"StdNetBind", nil},
		{"darwin", func() conn.Bind { return magicsock.NewHostBindFor("darwin") }},
	}
	for _, bind := range binds {
		t.Run(bind.name, func(t *testing.T) { testWireGuardRelayThenDirect(t, bind.newBind) })
	}
}

func testWireGuardRelayThenDirect(t *testing.T, newBind func() conn.Bind) {
	var blocked atomic.Bool
	blocked.Store(true)
	a, b, relay := newMagicPairOver(t, &blocked, newBind)
	both := deliverBoth(t, a, b)

	both()
	if relay.data.Load() == 0 {
		t.Fatal("first packets did not go through the relay")
	}
	if k := pathKind(a, b); k != magicsock.PathRelay {
		t.Fatalf("path before any direct contact = %v; want relay", k)
	}

	blocked.Store(false)
	deadline := time.Now().Add(20 * time.Second)
	for pathKind(a, b) != magicsock.PathDirect || pathKind(b, a) != magicsock.PathDirect {
		if time.Now().After(deadline) {
			t.Fatal("path never became direct")
		}
		both() // traffic keeps flowing across the switch
	}
	st, _ := a.conn.PeerStatus(b.key.Public())
	if want := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), b.conn.Port()); st.Path.Endpoint != want {
		t.Fatalf("direct path = %v; want %v", st.Path.Endpoint, want)
	}
	relayed := relay.data.Load()
	for range 20 {
		both()
	}
	// 40 packets and their retries: nearly all must have gone direct (a
	// path may flap briefly when a busy machine delays heartbeats).
	if moved := relay.data.Load() - relayed; moved > 10 {
		t.Fatalf("%d packets went through the relay on a direct path", moved)
	}

	blocked.Store(true)
	deadline = time.Now().Add(20 * time.Second)
	for pathKind(a, b) != magicsock.PathRelay || pathKind(b, a) != magicsock.PathRelay {
		if time.Now().After(deadline) {
			t.Fatal("path never fell back to the relay")
		}
		both() // retransmits carry the packets lost while the path dies
	}
	relayed = relay.data.Load()
	for range 10 {
		both()
	}
	if relay.data.Load() < relayed+20 {
		t.Fatal("traffic after fallback did not go through the relay")
	}
}

// TestWireGuardOverHostBind runs two plain wireguard-go devices (peers
// at ip:port, no magicsock) over the host's main-socket bind of each OS
// kind, Linux's StdNetBinds and macOS's sockBinds, through IPv4 and,
// where the host has it, IPv6 loopback: the tunnel carries packets both
// ways over each family's socket.
func TestWireGuardOverHostBind(t *testing.T) {
	for _, goos := range []string{"linux", "darwin"} {
		for _, fam := range []string{"v4", "v6"} {
			t.Run(goos+"/"+fam, func(t *testing.T) {
				if fam == "v6" && !hasIPv6Loopback() {
					t.Skip("no IPv6 loopback here")
				}
				bx, by := magicsock.NewHostBindFor(goos), magicsock.NewHostBindFor(goos)
				x := newWGNode(t, "10.0.0.1", bx, key.NewNode())
				y := newWGNode(t, "10.0.0.2", by, key.NewNode())
				at := func(n *wgNode, b conn.Bind) string {
					if fam == "v6" {
						return fmt.Sprintf("[::1]:%d", b.(magicsock.IPv6Porter).Port6())
					}
					return fmt.Sprintf("127.0.0.1:%d", n.port(t))
				}
				x.addPeer(t, y, at(y, by))
				y.addPeer(t, x, at(x, bx))
				both := deliverBoth(t, x, y)
				for range 5 {
					both()
				}
			})
		}
	}
}

// hasIPv6Loopback reports whether ::1 can be bound here.
func hasIPv6Loopback() bool {
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// TestWireGuardOverSimulatedNATs runs two wireguard-go devices over
// magicsock across the NAT simulator: traffic flows over the relay from
// the first packet and keeps flowing while the path turns direct (by hole
// punching, or by port guessing for easy/hard), or stays on the relay for
// hard/hard.
func TestWireGuardOverSimulatedNATs(t *testing.T) {
	tests := []struct {
		a, b       siteKind
		wantDirect bool
	}{
		{easy, easy, true},
		{easy, hard, true},
		{hard, hard, false},
	}
	for _, tt := range tests {
		t.Run(tt.a.String()+"/"+tt.b.String(), func(t *testing.T) {
			sp := newSimPair(t, tt.a, tt.b, 11)
			// The sim pair's Conns are open for the test driver;
			// wireguard-go wants to open them itself.
			sp.a.close()
			sp.b.close()
			a := newWGNode(t, "10.0.0.1", sp.a.conn, sp.a.node)
			a.conn = sp.a.conn
			b := newWGNode(t, "10.0.0.2", sp.b.conn, sp.b.node)
			b.conn = sp.b.conn
			// Reopening moved the ports; publish the new ones.
			sp.a.conn.SetNetReport(magicsock.NetReport{MappingVariesByDestIP: tt.a == hard,
				GlobalV4: netip.AddrPortFrom(publicA, a.conn.Port())})
			sp.b.conn.SetNetReport(magicsock.NetReport{MappingVariesByDestIP: tt.b == hard,
				GlobalV4: netip.AddrPortFrom(publicB, b.conn.Port())})
			a.conn.SetPeers([]magicsock.Peer{peerOf(sp.b, b.conn.LocalEndpoints(), tt.b == hard)})
			b.conn.SetPeers([]magicsock.Peer{peerOf(sp.a, a.conn.LocalEndpoints(), tt.a == hard)})
			a.addPeer(t, b, b.key.Public().String())
			b.addPeer(t, a, a.key.Public().String())

			both := deliverBoth(t, a, b)
			// While no direct path can open, the tunnel works over
			// the relay from the first packet.
			sp.sim.SetDrop(func(src, dst netip.AddrPort) bool { return true })
			both()
			if sp.relay.data.Load() == 0 {
				t.Fatal("first packets did not go through the relay")
			}
			sp.sim.SetDrop(nil)
			if tt.wantDirect {
				deadline := time.Now().Add(20 * time.Second)
				for pathKind(a, b) != magicsock.PathDirect || pathKind(b, a) != magicsock.PathDirect {
					if time.Now().After(deadline) {
						t.Fatal("path never became direct")
					}
					both()
				}
				relayed := sp.relay.data.Load()
				for range 20 {
					both()
				}
				if moved := sp.relay.data.Load() - relayed; moved > 10 {
					t.Fatalf("%d packets went through the relay on a direct path", moved)
				}
				return
			}
			for range 40 {
				both()
				time.Sleep(fastTimers.Discovery / 10)
			}
			if pathKind(a, b) != magicsock.PathRelay || pathKind(b, a) != magicsock.PathRelay {
				t.Fatalf("hard/hard path left the relay: %v, %v", pathKind(a, b), pathKind(b, a))
			}
		})
	}
}
