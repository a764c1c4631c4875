package netstack

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Pinger sends one ICMP echo request from the host and waits for its
// reply, returning the reply's payload.
type Pinger interface {
	Ping(ctx context.Context, dst netip.Addr, seq uint16, data []byte) ([]byte, error)
}

// hostPinger pings from an unprivileged ICMP socket (Linux allows it to
// the groups in net.ipv4.ping_group_range, for IPv6 too; macOS always):
// no raw socket, so no privileges.
type hostPinger struct{}

func (hostPinger) Ping(ctx context.Context, dst netip.Addr, seq uint16, data []byte) ([]byte, error) {
	network, listen, proto := "udp4", "0.0.0.0", 1
	var reqType, replyType icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	if dst.Is6() {
		network, listen, proto = "udp6", "::", 58
		reqType, replyType = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
	}
	c, err := icmp.ListenPacket(network, listen)
	if err != nil {
		return nil, fmt.Errorf("netstack: ICMP socket (is this group in net.ipv4.ping_group_range?): %w", err)
	}
	defer c.Close()
	req, err := (&icmp.Message{Type: reqType, Body: &icmp.Echo{ID: 1, Seq: int(seq), Data: data}}).Marshal(nil)
	if err != nil {
		return nil, err
	}
	if _, err := c.WriteTo(req, &net.UDPAddr{IP: dst.AsSlice(), Zone: dst.Zone()}); err != nil {
		return nil, err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(echoTimeout)
	}
	c.SetReadDeadline(deadline)
	buf := make([]byte, 1500)
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			return nil, err
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil {
			continue
		}
		if e, ok := m.Body.(*icmp.Echo); ok && m.Type == replyType && e.Seq == int(seq) {
			return e.Data, nil
		}
	}
}

const (
	// echoTimeout is how long a forwarded ping waits for its reply.
	echoTimeout = 5 * time.Second
	// maxEchoes bounds the pings forwarded at once.
	maxEchoes = 64
)

// echoReq is what forwardEcho needs of an echo request.
type echoReq struct {
	src, dst netip.Addr
	id, seq  uint16
	data     []byte
}

// parseEcho reads an IPv4 or IPv6 echo request as it came from the
// tunnel (admit has checked that it is one).
func parseEcho(pkt []byte) (echoReq, bool) {
	var e echoReq
	var body []byte
	switch pkt[0] >> 4 {
	case 4:
		h := header.IPv4(pkt)
		body = pkt[h.HeaderLength():]
		e.src, _ = netip.AddrFromSlice(h.SourceAddressSlice())
		e.dst, _ = netip.AddrFromSlice(h.DestinationAddressSlice())
	case 6:
		h := header.IPv6(pkt)
		body = pkt[header.IPv6MinimumSize:]
		e.src, _ = netip.AddrFromSlice(h.SourceAddressSlice())
		e.dst, _ = netip.AddrFromSlice(h.DestinationAddressSlice())
	}
	// ICMPv4 and ICMPv6 echo share their layout: type, code, checksum,
	// identifier, sequence, data.
	if len(body) < header.ICMPv4MinimumSize {
		return e, false
	}
	e.id, e.seq = binary.BigEndian.Uint16(body[4:]), binary.BigEndian.Uint16(body[6:])
	e.data = append([]byte(nil), body[header.ICMPv4MinimumSize:]...)
	return e, true
}

// forwardEcho answers an echo request to another host by pinging that
// host from this one: the peer gets a reply only if the host really
// answered. pkt is the request as it came from the tunnel.
func (s *Stack) forwardEcho(pkt []byte) {
	req, ok := parseEcho(pkt)
	if !ok {
		return
	}
	select {
	case s.echoes <- struct{}{}:
	default:
		return // too many in flight: dropped, as a busy router would
	}
	go func() {
		defer func() { <-s.echoes }()
		ctx, cancel := context.WithTimeout(s.ctx, echoTimeout)
		defer cancel()
		got, err := s.pinger.Ping(ctx, req.dst, req.seq, req.data)
		if err != nil {
			s.log.Debug("forwarded ping", "dst", req.dst, "err", err)
			return
		}
		s.sendOut(echoReply(req.dst, req.src, req.id, req.seq, got))
	}()
}

// echoReply builds the echo reply from src to dst, IPv4 or IPv6 as the
// addresses are.
func echoReply(src, dst netip.Addr, id, seq uint16, data []byte) []byte {
	return echoPacket(true, src, dst, id, seq, data)
}

// echoPacket builds an ICMP echo reply (reply) or request from src to
// dst, IPv4 or IPv6 as the addresses are. The tests make their requests
// with it too.
func echoPacket(reply bool, src, dst netip.Addr, id, seq uint16, data []byte) []byte {
	if src.Is6() {
		return echoPacket6(reply, src, dst, id, seq, data)
	}
	pkt := make([]byte, header.IPv4MinimumSize+header.ICMPv4MinimumSize+len(data))
	ip := header.IPv4(pkt)
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(len(pkt)), TTL: 64, Protocol: uint8(header.ICMPv4ProtocolNumber),
		SrcAddr: tcpip.AddrFrom4(src.As4()), DstAddr: tcpip.AddrFrom4(dst.As4()),
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	ic := header.ICMPv4(pkt[header.IPv4MinimumSize:])
	ic.SetType(header.ICMPv4Echo)
	if reply {
		ic.SetType(header.ICMPv4EchoReply)
	}
	ic.SetIdent(id)
	ic.SetSequence(seq)
	copy(ic[header.ICMPv4MinimumSize:], data)
	ic.SetChecksum(0)
	ic.SetChecksum(^checksum(ic))
	return pkt
}

func echoPacket6(reply bool, src, dst netip.Addr, id, seq uint16, data []byte) []byte {
	pkt := make([]byte, header.IPv6MinimumSize+header.ICMPv6EchoMinimumSize+len(data))
	s, d := tcpip.AddrFrom16(src.As16()), tcpip.AddrFrom16(dst.As16())
	header.IPv6(pkt).Encode(&header.IPv6Fields{
		PayloadLength:     uint16(len(pkt) - header.IPv6MinimumSize),
		TransportProtocol: header.ICMPv6ProtocolNumber, HopLimit: 64, SrcAddr: s, DstAddr: d,
	})
	ic := header.ICMPv6(pkt[header.IPv6MinimumSize:])
	ic.SetType(header.ICMPv6EchoRequest)
	if reply {
		ic.SetType(header.ICMPv6EchoReply)
	}
	ic.SetIdent(id)
	ic.SetSequence(seq)
	copy(ic[header.ICMPv6EchoMinimumSize:], data)
	ic.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: ic, Src: s, Dst: d}))
	return pkt
}

// checksum is the Internet checksum's one's-complement sum of b.
func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return uint16(sum)
}

// sendOut queues a packet the stack did not make for the tunnel, as if
// the stack had sent it.
func (s *Stack) sendOut(pkt []byte) {
	pb := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(pkt)})
	defer pb.DecRef()
	var l stack.PacketBufferList
	l.PushBack(pb)
	s.ep.WritePackets(l)
}
