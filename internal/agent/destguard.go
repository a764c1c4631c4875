package agent

import (
	"net/netip"
	"slices"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/tun"

	"weft/internal/controlclient"
	"weft/internal/node"
	"weft/internal/tailnet"
)

// destPolicy is where packets from the tunnel may go on this node: to the
// node itself (its tailnet addresses), or on through it to a route it
// offers and control approved. WireGuard has already checked a packet's
// source against the sending peer's allowed IPs; nothing checks its
// destination, so without this a peer could reach the internet or the
// LAN through a node whose exit or subnet route was never approved, or
// through any host that forwards already (a Docker host). The ACL filter
// (the policy's rules on sources, protocols and ports) sits beside it.
type destPolicy struct {
	self   []netip.Addr   // the node's tailnet addresses
	tail6  netip.Prefix   // the tailnet's IPv6 /48 (around self's IPv6 address); zero if none
	routes []netip.Prefix // offered by this node and approved by control
}

// Reasons check gives for a refused packet.
const (
	refusedNotRouted = "destination is neither this node nor an approved route"
	refusedNever     = "destination is never forwarded (loopback, link-local, metadata, multicast, broadcast, tailnet)"
)

// check reports why a packet from the tunnel to dst is refused, or "" if
// it may pass. Even under an approved exit route some destinations are
// refused: loopback, link-local (with the cloud metadata address
// 169.254.169.254 in it), multicast, unspecified and broadcast addresses
// belong to the exit node's own host and link, never to a peer; and the
// tailnet's own range is reached directly, never through another node.
func (p *destPolicy) check(dst netip.Addr) string {
	if p == nil {
		return refusedNotRouted
	}
	if slices.Contains(p.self, dst) {
		return ""
	}
	if !dst.IsGlobalUnicast() || tailnet.V4Range.Contains(dst) || p.tail6.Contains(dst) {
		return refusedNever
	}
	for _, r := range p.routes {
		if r.Contains(dst) {
			return ""
		}
	}
	return refusedNotRouted
}

// newDestPolicy is the policy for nm under the node's preferences: the
// node's own addresses, and the routes it offers (rp) that the map says
// are approved (nm.Self.Routes holds only approved, offered routes; the
// offer is checked here too, so a withdrawn offer stops forwarding before
// control hears of it).
func newDestPolicy(nm *controlclient.NetMap, rp node.RoutePrefs) *destPolicy {
	p := &destPolicy{}
	if nm == nil || nm.Self == nil {
		return p
	}
	for _, a := range nm.Self.Addresses {
		p.self = append(p.self, a.Addr())
		if a.Addr().Is6() {
			p.tail6, _ = a.Addr().Prefix(48)
		}
	}
	for _, r := range nm.Self.Routes {
		offered := slices.Contains(rp.AdvertiseRoutes, r)
		if r.Bits() == 0 {
			offered = rp.AdvertiseExitNode
		}
		if offered {
			p.routes = append(p.routes, r)
		}
	}
	return p
}

// destGuard is the TUN device as wireguard-go sees it: packets
// wireguard-go decrypted and writes toward the host pass destPolicy or
// are dropped and counted; reads pass unchanged.
type destGuard struct {
	tun.Device
	policy atomic.Pointer[destPolicy] // nil until the first map: nothing passes
	drops  atomic.Uint64
}

var _ tun.Device = (*destGuard)(nil)

// Write hands the host the packets destPolicy lets through. It reports
// every packet as written: a refused packet is no error to wireguard-go.
func (g *destGuard) Write(bufs [][]byte, offset int) (int, error) {
	pol := g.policy.Load()
	var kept [][]byte
	for i, b := range bufs {
		if pol.check(packetDst(b[offset:])) == "" {
			if kept != nil {
				kept = append(kept, b)
			}
			continue
		}
		g.drops.Add(1)
		if kept == nil {
			kept = append(make([][]byte, 0, len(bufs)), bufs[:i]...)
		}
	}
	if kept == nil {
		return g.Device.Write(bufs, offset)
	}
	if len(kept) > 0 {
		if _, err := g.Device.Write(kept, offset); err != nil {
			return 0, err
		}
	}
	return len(bufs), nil
}

// packetDst is an IP packet's destination address; the zero Addr (which
// check refuses) when b is not a whole IPv4 or IPv6 header.
func packetDst(b []byte) netip.Addr {
	if len(b) == 0 {
		return netip.Addr{}
	}
	switch b[0] >> 4 {
	case 4:
		if len(b) >= 20 {
			return netip.AddrFrom4([4]byte(b[16:20]))
		}
	case 6:
		if len(b) >= 40 {
			return netip.AddrFrom16([16]byte(b[24:40]))
		}
	}
	return netip.Addr{}
}
