// Package wire holds the types that cross between a weft node and the
// control server, or that the control server hands out to nodes (the peer
// map, the relay map). Both sides import this one package, so a field added
// here is added for both. Encodings and framing are described in
// docs/protocol.md.
package wire

import (
	"net/netip"
	"slices"
	"time"

	"weft/internal/key"
	"weft/internal/tailnet"
)

// ProtocolVersion is the version of the control protocol spoken by this
// build. Both sides send it in the handshake and refuse a peer whose version
// they do not support. Bump it with a dated line below saying why.
//
//	1 (2026-11-25): first version.
const ProtocolVersion = 1

// NodeID is the control server's stable identifier for a node. It survives
// node-key rotation and re-registration of the same machine.
type NodeID uint64

// Node is one member of a tailnet as the control server describes it to
// other members (and to the node itself, as Self).
type Node struct {
	ID         NodeID            `json:"id"`
	Name       string            `json:"name"` // DNS label, unique in the tailnet
	User       string            `json:"user"` // owning user; empty for tagged nodes
	Tags       []string          `json:"tags,omitempty"`
	MachineKey key.MachinePublic `json:"machine_key"`
	NodeKey    key.NodePublic    `json:"node_key"`
	KeyExpiry  time.Time         `json:"key_expiry,omitzero"` // zero: never expires
	DiscoKey   key.DiscoPublic   `json:"disco_key"`
	Addresses  []netip.Prefix    `json:"addresses"`           // tailnet addresses, /32 and /128
	AllowedIPs []netip.Prefix    `json:"allowed_ips"`         // Addresses plus approved routes
	Endpoints  []netip.AddrPort  `json:"endpoints,omitempty"` // candidate UDP endpoints
	HomeRegion int               `json:"home_region,omitempty"`
	Online     bool              `json:"online"`
	LastSeen   time.Time         `json:"last_seen,omitzero"`
	OS         string            `json:"os,omitempty"`
	Hostinfo   *Hostinfo         `json:"hostinfo,omitempty"`
	Routes     []netip.Prefix    `json:"routes,omitempty"` // approved subnet routes (and 0.0.0.0/0, ::/0 for an exit node)
}

// Hostinfo is what a node says about itself.
type Hostinfo struct {
	Hostname string `json:"hostname"`
	OS       string `json:"os"`
	Version  string `json:"version"` // weft version
	// NetInfo is the node's latest network report summary, used by peers
	// to decide how to reach it (for example, whether it sits behind a NAT
	// whose mapping varies by destination).
	NetInfo *NetInfo `json:"net_info,omitempty"`
}

// NetInfo summarises a node's network as its netcheck sees it.
type NetInfo struct {
	MappingVariesByDestIP bool        `json:"mapping_varies_by_dest_ip"`
	UDP                   bool        `json:"udp"`
	PreferredRegion       int         `json:"preferred_region"`
	RegionLatencyMS       map[int]int `json:"region_latency_ms,omitempty"`
}

// OffersExit reports whether n's approved routes make it an exit node.
func (n *Node) OffersExit() bool {
	return slices.ContainsFunc(n.Routes, tailnet.IsExitRoute)
}

// HasAddr reports whether ip is one of n's tailnet addresses.
func (n *Node) HasAddr(ip netip.Addr) bool {
	return slices.ContainsFunc(n.Addresses, func(p netip.Prefix) bool { return p.Addr() == ip })
}

// Matches reports whether s, as a person types it, names n: its name or
// one of its tailnet addresses.
func (n *Node) Matches(s string) bool {
	if s == "" {
		return false
	}
	if n.Name == s {
		return true
	}
	ip, err := netip.ParseAddr(s)
	return err == nil && n.HasAddr(ip)
}
