package wire

import (
	"net/netip"
	"slices"
)

// RelayMap lists the relay regions a node may use. It is configured on the
// control server and sent to nodes in the peer map.
type RelayMap struct {
	Regions map[int]*RelayRegion `json:"regions"`
}

// RelayRegion is a set of relay servers that forward to each other, so two
// nodes homed on different servers of one region still meet.
type RelayRegion struct {
	ID    int          `json:"id"`
	Code  string       `json:"code"` // short name, such as "tok"
	Name  string       `json:"name"` // for people, such as "Tokyo"
	Nodes []*RelayNode `json:"nodes"`
}

// RelayNode is one relay server.
type RelayNode struct {
	Name     string `json:"name"`
	RegionID int    `json:"region_id"`
	// Host is a DNS name or IP literal.
	Host string `json:"host"`
	// IPv4 and IPv6 are addresses of the relay to use for that family
	// instead of resolving Host (or besides Host, when Host is an IP
	// literal of the other family): a relay whose Host names one address
	// lists its other family here, so that IPv6-only and dual-stack nodes
	// reach its STUN and relay over IPv6. Zero: Host alone says.
	IPv4 netip.Addr `json:"ipv4,omitzero"`
	IPv6 netip.Addr `json:"ipv6,omitzero"`
	// Port is the relay's HTTP(S) port; 0 means 443 with TLS, 80 without.
	Port int `json:"port,omitempty"`
	// STUNPort is the UDP STUN port; 0 means 3478, -1 means none.
	STUNPort int `json:"stun_port,omitempty"`
	// InsecureHTTP makes clients speak plain HTTP to this relay (labs, or
	// behind a TLS-terminating proxy). Relay frames are still sealed end to
	// end by WireGuard; only the relay handshake is unprotected by TLS.
	InsecureHTTP bool `json:"insecure_http,omitempty"`
}

// Addrs returns the IP addresses n names for itself: Host if it is an IP
// literal, then IPv4 and IPv6, without repeats. Empty when Host is a DNS
// name and neither IPv4 nor IPv6 is set: then Host must be resolved.
func (n *RelayNode) Addrs() []netip.Addr {
	var out []netip.Addr
	add := func(a netip.Addr) {
		if a.IsValid() && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	if ip, err := netip.ParseAddr(n.Host); err == nil {
		add(ip.Unmap())
	}
	add(n.IPv4)
	add(n.IPv6)
	return out
}
