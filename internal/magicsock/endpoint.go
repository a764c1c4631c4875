package magicsock

import (
	"net/netip"

	"golang.zx2c4.com/wireguard/conn"
)

// peerEndpoint is the conn.Endpoint wireguard-go holds for one peer. It
// names the peer, not an address: Send looks up the peer's current best
// path each time, so a path change needs no reconfiguration of the device
// and wireguard-go's roaming never pins a stale address.
type peerEndpoint struct {
	p *peer
}

var _ conn.Endpoint = (*peerEndpoint)(nil)

// ClearSrc implements conn.Endpoint; the Conn keeps no sticky source.
func (e *peerEndpoint) ClearSrc() {}

// SrcToString implements conn.Endpoint.
func (e *peerEndpoint) SrcToString() string { return "" }

// DstToString returns the peer's node key, the same string ParseEndpoint
// takes, so a UAPI "get" round-trips.
func (e *peerEndpoint) DstToString() string { return e.p.key.String() }

// DstToBytes returns the node key, a stable identity for wireguard-go's
// cookie (mac2) bookkeeping even while the path moves.
func (e *peerEndpoint) DstToBytes() []byte {
	k := e.p.key.Raw32()
	return k[:]
}

// DstIP returns the current direct address. On the relay it returns an
// address made from the node key in the discard-only prefix 100::/64
// (RFC 6666): wireguard-go rate-limits handshakes under load per DstIP,
// and relayed peers must not share one bucket.
func (e *peerEndpoint) DstIP() netip.Addr {
	if pa := e.p.path.Load(); pa != nil {
		return pa.addr.Addr()
	}
	var a [16]byte
	a[0] = 0x01
	k := e.p.key.Raw32()
	copy(a[8:], k[:8])
	return netip.AddrFrom16(a)
}

// SrcIP implements conn.Endpoint.
func (e *peerEndpoint) SrcIP() netip.Addr { return netip.Addr{} }
