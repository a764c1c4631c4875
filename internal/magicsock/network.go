package magicsock

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"

	"golang.zx2c4.com/wireguard/conn"

	"weft/internal/tailnet"
)

// Network is the host network as a Conn sees it. The real one is
// HostNetwork; tests plug in an in-memory network with simulated NATs
// (package natsim) through the same interface.
type Network interface {
	// NewBind returns the bind that owns the main UDP socket(s). Its
	// endpoints must be *conn.StdNetEndpoint, whose AddrPort names the
	// remote address; the Conn reads them on the receive path.
	NewBind() conn.Bind
	// ListenUDP4 opens an extra IPv4 UDP socket on a random port, with
	// mark as its SO_MARK when not zero (the mark wireguard-go set on the
	// main sockets, which keeps tunnel traffic out of the tunnel). The
	// port-guessing round on a hard-NAT node opens many of these.
	ListenUDP4(mark uint32) (PacketConn, error)
	// LocalAddrs lists the host's interface addresses a peer might reach
	// it on (no loopback or link-local unless the network is a test's).
	LocalAddrs() ([]netip.Addr, error)
}

// localPrefixer is implemented by a Network that can list the networks
// the host's interfaces are on (HostNetwork, natsim's hosts). With it the
// Conn refuses to send disco, at a peer's word, into the host's own LAN
// unless the peer is on that LAN too; without it that check is skipped.
type localPrefixer interface {
	LocalPrefixes() ([]netip.Prefix, error)
}

// PacketConn is one extra UDP socket. Reads and writes may run
// concurrently; after Close, ReadFrom returns an error.
type PacketConn interface {
	ReadFrom(b []byte) (int, netip.AddrPort, error)
	WriteTo(b []byte, dst netip.AddrPort) error
	Close() error
}

// HostNetwork is the operating system's network: wireguard-go's StdNetBind
// (batched reads and writes, UDP GSO/GRO where the kernel has them) for the
// main sockets, weft's own sockBind on macOS (newHostBind), and plain UDP
// sockets for the extra ones.
type HostNetwork struct{}

var _ Network = HostNetwork{}

// NewBind implements Network: newHostBind for this OS.
func (HostNetwork) NewBind() conn.Bind { return newHostBind(runtime.GOOS) }

// newHostBind returns the main-socket bind for the OS goos: a bind for
// each family (familyBind, which says why). They are wireguard-go's
// StdNetBinds, except on macOS ("darwin"), where StdNetBind's sockets
// cannot be bound to an interface (it ignores SetMark and offers no way to
// reach them): there they are sockBinds, whose sockets SetMark binds to
// the default route's interface (markControl), so that an exit node's
// split default routes do not carry the WireGuard packets into the
// tunnel. Elsewhere StdNetBind's batching and offloads are kept.
func newHostBind(goos string) conn.Bind {
	if goos == "darwin" {
		return newFamilyBind(newSockBind(markControl), newSockBind(markControl))
	}
	return newFamilyBind(conn.NewStdNetBind(), conn.NewStdNetBind())
}

// ListenUDP4 implements Network.
func (HostNetwork) ListenUDP4(mark uint32) (PacketConn, error) {
	lc := net.ListenConfig{Control: markControl(mark)}
	pc, err := lc.ListenPacket(context.Background(), "udp4", ":0")
	if err != nil {
		return nil, fmt.Errorf("magicsock: extra socket: %w", err)
	}
	return udpPacketConn{pc.(*net.UDPConn)}, nil
}

// LocalAddrs implements Network. It lists global and private unicast
// addresses of interfaces that are up.
func (HostNetwork) LocalAddrs() ([]netip.Addr, error) {
	pfxs, err := interfacePrefixes()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, p := range pfxs {
		if ip := p.Addr(); ip.IsGlobalUnicast() && !isTailnetAddr(ip) {
			out = append(out, ip)
		}
	}
	return out, nil
}

var _ localPrefixer = HostNetwork{}

// LocalPrefixes lists the networks of the host's interfaces that are up,
// loopback excepted, with their prefix lengths.
func (HostNetwork) LocalPrefixes() ([]netip.Prefix, error) {
	pfxs, err := interfacePrefixes()
	if err != nil {
		return nil, err
	}
	for i, p := range pfxs {
		pfxs[i] = p.Masked()
	}
	return pfxs, nil
}

// interfacePrefixes lists the addresses, with their prefix lengths, of
// the host's interfaces that are up, loopback excepted. An interface
// whose addresses cannot be read is passed over.
func interfacePrefixes() ([]netip.Prefix, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("magicsock: interfaces: %w", err)
	}
	var out []netip.Prefix
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if !ok {
				continue
			}
			ones, _ := ipn.Mask.Size()
			out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
		}
	}
	return out, nil
}

// isTailnetAddr reports addresses in the CGNAT range, where tailnet IPv4
// addresses live: advertising them as endpoints would loop. The tailnet's
// IPv6 prefix is a random ULA per server, unknown here; the agent's
// Network leaves out the TUN device's addresses, which covers both.
func isTailnetAddr(ip netip.Addr) bool {
	return tailnet.V4Range.Contains(ip)
}

type udpPacketConn struct{ c *net.UDPConn }

func (u udpPacketConn) ReadFrom(b []byte) (int, netip.AddrPort, error) {
	n, ap, err := u.c.ReadFromUDPAddrPort(b)
	return n, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), err
}

func (u udpPacketConn) WriteTo(b []byte, dst netip.AddrPort) error {
	_, err := u.c.WriteToUDPAddrPort(b, dst)
	return err
}

func (u udpPacketConn) Close() error { return u.c.Close() }
