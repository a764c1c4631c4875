package stunserver

import (
	"net"
	"net/netip"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// replyConn reads datagrams together with the local address each was sent
// to, and answers from that same address.
//
// This matters on a host with several addresses listening on a wildcard
// socket: left to itself the kernel picks the answer's source address by
// route, so a request that arrived on 203.0.113.1 may be answered from
// 198.51.100.1. A NAT in front of the asker drops such an answer, since it
// does not match the flow it opened, and netcheck concludes that UDP is
// blocked. IP_PKTINFO / IPV6_PKTINFO carry the address both ways.
type replyConn interface {
	// readFrom returns the datagram's size, its source, and the local
	// address it was sent to (invalid when the socket cannot tell).
	readFrom(b []byte) (n int, src netip.AddrPort, local netip.Addr, err error)
	// writeTo sends b to dst from local (the kernel's choice when local
	// is invalid).
	writeTo(b []byte, local netip.Addr, dst netip.AddrPort) error
}

// newReplyConn wraps pc. A UDP socket gets packet-info control messages
// where the OS supports them; anything else is served as it is.
func newReplyConn(pc net.PacketConn) replyConn {
	uc, ok := pc.(*net.UDPConn)
	if !ok {
		return plainConn{pc}
	}
	la, _ := uc.LocalAddr().(*net.UDPAddr)
	if la != nil && la.IP.To4() != nil {
		p := ipv4.NewPacketConn(uc)
		if p.SetControlMessage(ipv4.FlagDst, true) == nil {
			return v4Conn{p}
		}
		return plainConn{pc}
	}
	// An IPv6 socket. When it is dual-stack (Serve given a socket bound
	// to the wildcard by the caller), IPv4 arrivals are answered with
	// the kernel's choice of source: IPV6_PKTINFO cannot carry an IPv4
	// source portably. ListenAndServe avoids this by opening an IPv4 and
	// an IPv6-only socket.
	p := ipv6.NewPacketConn(uc)
	if p.SetControlMessage(ipv6.FlagDst, true) == nil {
		return v6Conn{p}
	}
	return plainConn{pc}
}

type v4Conn struct{ p *ipv4.PacketConn }

func (c v4Conn) readFrom(b []byte) (int, netip.AddrPort, netip.Addr, error) {
	n, cm, a, err := c.p.ReadFrom(b)
	if err != nil {
		return 0, netip.AddrPort{}, netip.Addr{}, err
	}
	var local netip.Addr
	if cm != nil {
		local, _ = netip.AddrFromSlice(cm.Dst)
	}
	return n, addrPortOf(a), local.Unmap(), nil
}

func (c v4Conn) writeTo(b []byte, local netip.Addr, dst netip.AddrPort) error {
	var cm *ipv4.ControlMessage
	if local.Is4() && !local.IsMulticast() {
		cm = &ipv4.ControlMessage{Src: local.AsSlice()}
	}
	_, err := c.p.WriteTo(b, cm, net.UDPAddrFromAddrPort(dst))
	return err
}

type v6Conn struct{ p *ipv6.PacketConn }

func (c v6Conn) readFrom(b []byte) (int, netip.AddrPort, netip.Addr, error) {
	n, cm, a, err := c.p.ReadFrom(b)
	if err != nil {
		return 0, netip.AddrPort{}, netip.Addr{}, err
	}
	var local netip.Addr
	if cm != nil {
		local, _ = netip.AddrFromSlice(cm.Dst)
	}
	return n, addrPortOf(a), local, nil
}

func (c v6Conn) writeTo(b []byte, local netip.Addr, dst netip.AddrPort) error {
	var cm *ipv6.ControlMessage
	if local.Is6() && !local.Is4In6() && !local.IsMulticast() {
		cm = &ipv6.ControlMessage{Src: local.AsSlice()}
	}
	to := dst
	if to.Addr().Is4() {
		to = netip.AddrPortFrom(netip.AddrFrom16(to.Addr().As16()), to.Port())
	}
	_, err := c.p.WriteTo(b, cm, net.UDPAddrFromAddrPort(to))
	return err
}

// plainConn serves a socket without packet info: the kernel picks the
// source address.
type plainConn struct{ pc net.PacketConn }

func (c plainConn) readFrom(b []byte) (int, netip.AddrPort, netip.Addr, error) {
	n, a, err := c.pc.ReadFrom(b)
	if err != nil {
		return 0, netip.AddrPort{}, netip.Addr{}, err
	}
	return n, addrPortOf(a), netip.Addr{}, nil
}

func (c plainConn) writeTo(b []byte, _ netip.Addr, dst netip.AddrPort) error {
	_, err := c.pc.WriteTo(b, net.UDPAddrFromAddrPort(dst))
	return err
}
