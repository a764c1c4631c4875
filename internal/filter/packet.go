package filter

import (
	"encoding/binary"
	"net/netip"
)

// packet is what the filter reads from an IP packet's headers.
type packet struct {
	src, dst netip.Addr
	proto    uint8
	// sport and dport are the TCP/UDP/SCTP ports; for ICMP echo, sport
	// is the echo identifier and dport 0.
	sport, dport uint16
	tcpFlags     uint8
	icmpType     uint8
	// inner is set for ICMP errors: the offset in the packet of the
	// original packet the error is about.
	inner int
}

// Drop reasons, as counted and shown in weft status --json.
const (
	ReasonNoRule    = "no_rule"    // no rule of the policy accepts it
	ReasonMalformed = "malformed"  // too short, or not IPv4 or IPv6
	ReasonFragment  = "fragment"   // a fragment whose transport header is not in it
	ReasonIPv6Ext   = "ipv6_ext"   // an IPv6 extension header weft does not walk
	ReasonICMPError = "icmp_error" // an ICMP error about no flow this node has
)

const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

// hasPorts reports whether the protocol carries ports right after its
// header start.
func hasPorts(proto uint8) bool { return proto == 6 || proto == 17 || proto == 132 }

// parse reads b's headers. It returns a drop reason when the transport
// header cannot be found: the filter never guesses.
func parse(b []byte, p *packet) string {
	if len(b) < 1 {
		return ReasonMalformed
	}
	switch b[0] >> 4 {
	case 4:
		return parse4(b, p)
	case 6:
		return parse6(b, p)
	}
	return ReasonMalformed
}

func parse4(b []byte, p *packet) string {
	if len(b) < 20 {
		return ReasonMalformed
	}
	ihl := int(b[0]&0x0f) * 4
	if ihl < 20 || len(b) < ihl {
		return ReasonMalformed
	}
	p.src = netip.AddrFrom4([4]byte(b[12:16]))
	p.dst = netip.AddrFrom4([4]byte(b[16:20]))
	p.proto = b[9]
	if binary.BigEndian.Uint16(b[6:8])&0x1fff != 0 {
		// A later fragment: its transport header is in the first.
		return ReasonFragment
	}
	return transport(b, ihl, p, false)
}

// IPv6 extension headers the filter walks through.
const (
	ext6HopByHop = 0
	ext6Routing  = 43
	ext6Fragment = 44
	ext6Dest     = 60
	ext6None     = 59
)

// maxExtHeaders bounds the walk, so a chain of headers costs little.
const maxExtHeaders = 8

func parse6(b []byte, p *packet) string {
	if len(b) < 40 {
		return ReasonMalformed
	}
	p.src = netip.AddrFrom16([16]byte(b[8:24]))
	p.dst = netip.AddrFrom16([16]byte(b[24:40]))
	next, off := b[6], 40
	for range maxExtHeaders {
		switch next {
		case ext6HopByHop, ext6Routing, ext6Dest:
			if len(b) < off+8 {
				return ReasonMalformed
			}
			next, off = b[off], off+8+int(b[off+1])*8
		case ext6Fragment:
			if len(b) < off+8 {
				return ReasonMalformed
			}
			if binary.BigEndian.Uint16(b[off+2:off+4])&0xfff8 != 0 {
				return ReasonFragment
			}
			next, off = b[off], off+8
		case 51, 50, ext6None: // AH, ESP, no next header: carried as protocols
			p.proto = next
			return transport(b, off, p, true)
		default:
			if isExt6(next) {
				return ReasonIPv6Ext
			}
			p.proto = next
			return transport(b, off, p, true)
		}
		if off > len(b) {
			return ReasonMalformed
		}
	}
	return ReasonIPv6Ext
}

// isExt6 reports extension headers weft does not walk (mobility, HIP,
// shim6, experimental): a packet carrying one is dropped.
func isExt6(n uint8) bool {
	switch n {
	case 135, 139, 140, 253, 254:
		return true
	}
	return false
}

// transport reads the ports (or ICMP type and identifier) at off.
func transport(b []byte, off int, p *packet, v6 bool) string {
	t := b[off:]
	switch {
	case hasPorts(p.proto):
		// The whole fixed header must be here (TCP 20 bytes, UDP 8,
		// SCTP 12): a first fragment cut inside it is dropped.
		if len(t) < fixedHeader(p.proto) {
			return ReasonFragment
		}
		p.sport, p.dport = binary.BigEndian.Uint16(t[0:2]), binary.BigEndian.Uint16(t[2:4])
		if p.proto == 6 {
			p.tcpFlags = t[13]
		}
	case p.proto == 1 && !v6, p.proto == 58 && v6:
		if len(t) < 8 {
			return ReasonMalformed
		}
		p.icmpType = t[0]
		switch {
		case isEcho(p.proto, p.icmpType) || isEchoReply(p.proto, p.icmpType):
			p.sport = binary.BigEndian.Uint16(t[4:6])
		case isICMPError(p.proto, p.icmpType):
			p.inner = off + 8
		}
	}
	return ""
}

func isEcho(proto, typ uint8) bool      { return proto == 1 && typ == 8 || proto == 58 && typ == 128 }
func isEchoReply(proto, typ uint8) bool { return proto == 1 && typ == 0 || proto == 58 && typ == 129 }

// isICMPError: destination unreachable, time exceeded, parameter problem
// (and ICMPv6's packet too big).
func isICMPError(proto, typ uint8) bool {
	if proto == 1 {
		return typ == 3 || typ == 11 || typ == 12
	}
	return typ >= 1 && typ <= 4
}

// fixedHeader is the length of a port-carrying protocol's fixed header.
func fixedHeader(proto uint8) int {
	switch proto {
	case 6:
		return 20
	case 132:
		return 12
	}
	return 8
}
