package wire

import (
	"fmt"
	"net/netip"
	"slices"
)

// IP protocol numbers the packet filter names.
const (
	ProtoICMP   uint8 = 1
	ProtoTCP    uint8 = 6
	ProtoUDP    uint8 = 17
	ProtoICMPv6 uint8 = 58
)

// PacketFilter is what a node lets in from the tunnel, compiled by the
// server from the tailnet's policy for that one node. A node enforces it on
// every packet it receives, so the node that is reached decides, not the
// node that sends. See docs/acl.md and docs/protocol.md.
type PacketFilter struct {
	// AllowAll is set when the tailnet has no policy: everything is
	// allowed. A filter with AllowAll false and no rules allows only
	// replies to flows the node opened itself.
	AllowAll bool         `json:"allow_all,omitempty"`
	Rules    []FilterRule `json:"rules,omitempty"`
}

// FilterRule lets a packet in when its source is in one of Srcs, its
// destination address and port fall in one of Dsts, and its protocol is
// one of Protos.
type FilterRule struct {
	Srcs []netip.Prefix `json:"srcs"`
	Dsts []FilterDst    `json:"dsts"`
	// Protos are IP protocol numbers; empty means TCP, UDP, ICMP and
	// ICMPv6.
	Protos []uint8 `json:"protos,omitempty"`
}

// FilterDst is a destination network and a port range. For protocols
// without ports the range is ignored.
type FilterDst struct {
	Net   netip.Prefix `json:"net"`
	Ports PortRange    `json:"ports"`
}

// PortRange is an inclusive range of ports; 0-65535 is every port.
type PortRange struct {
	First uint16 `json:"first"`
	Last  uint16 `json:"last"`
}

// AllPorts is the range that holds every port.
var AllPorts = PortRange{0, 65535}

// Contains reports whether port is in r.
func (r PortRange) Contains(port uint16) bool { return port >= r.First && port <= r.Last }

func (r PortRange) String() string {
	switch {
	case r == AllPorts:
		return "*"
	case r.First == r.Last:
		return fmt.Sprint(r.First)
	}
	return fmt.Sprintf("%d-%d", r.First, r.Last)
}

// maxFilterRules bounds what a node accepts from a server.
const maxFilterRules = 1 << 16

// Validate checks a filter from the server: a node must not crash on a
// broken one.
func (f *PacketFilter) Validate() error {
	if f == nil {
		return nil
	}
	if len(f.Rules) > maxFilterRules {
		return fmt.Errorf("%w: %d filter rules, limit %d", ErrBadMessage, len(f.Rules), maxFilterRules)
	}
	for i, r := range f.Rules {
		for _, p := range r.Srcs {
			if !p.IsValid() {
				return fmt.Errorf("%w: filter rule %d: invalid source", ErrBadMessage, i)
			}
		}
		for _, d := range r.Dsts {
			if !d.Net.IsValid() || d.Ports.First > d.Ports.Last {
				return fmt.Errorf("%w: filter rule %d: invalid destination", ErrBadMessage, i)
			}
		}
	}
	return nil
}

// Equal reports whether f and g let in the same packets by the same rules
// (nil is equal only to nil). The server uses it to send a filter only
// to the nodes whose filter changed, without encoding every one.
func (f *PacketFilter) Equal(g *PacketFilter) bool {
	if f == nil || g == nil {
		return f == g
	}
	if f.AllowAll != g.AllowAll || len(f.Rules) != len(g.Rules) {
		return false
	}
	for i := range f.Rules {
		a, b := &f.Rules[i], &g.Rules[i]
		if !slices.Equal(a.Srcs, b.Srcs) || !slices.Equal(a.Dsts, b.Dsts) || !slices.Equal(a.Protos, b.Protos) {
			return false
		}
	}
	return true
}
