package control

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"

	"github.com/tailscale/hujson"

	"weft/internal/wire"
)

// LoadRelayMap reads a relay map from a JSON file; comments and trailing
// commas (HuJSON) are allowed.
func LoadRelayMap(path string) (*wire.RelayMap, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("control: relay map: %w", err)
	}
	return ParseRelayMap(b)
}

// ParseRelayMap parses and checks a relay map in JSON or HuJSON.
func ParseRelayMap(b []byte) (*wire.RelayMap, error) {
	std, err := hujson.Standardize(b)
	if err != nil {
		return nil, fmt.Errorf("control: relay map: %w", err)
	}
	var m wire.RelayMap
	if err := wire.Decode(std, &m); err != nil {
		return nil, fmt.Errorf("control: relay map: %w", err)
	}
	if len(m.Regions) == 0 {
		return nil, fmt.Errorf("control: relay map has no regions")
	}
	for id, r := range m.Regions {
		if r == nil || r.ID != id || id <= 0 {
			return nil, fmt.Errorf("control: relay map: region key %d must match its positive id", id)
		}
		if len(r.Nodes) == 0 {
			return nil, fmt.Errorf("control: relay map: region %d has no nodes", id)
		}
		for _, n := range r.Nodes {
			if n == nil || n.Host == "" {
				return nil, fmt.Errorf("control: relay map: region %d has a node without a host", id)
			}
			if n.RegionID == 0 {
				n.RegionID = id
			}
			if n.RegionID != id {
				return nil, fmt.Errorf("control: relay map: node %q is in region %d but says %d", n.Name, id, n.RegionID)
			}
			if (n.IPv4.IsValid() && !n.IPv4.Is4()) || (n.IPv6.IsValid() && (!n.IPv6.Is6() || n.IPv6.Is4In6())) {
				return nil, fmt.Errorf("control: relay map: node %q: \"ipv4\" must be an IPv4 address and \"ipv6\" an IPv6 one", n.Name)
			}
		}
	}
	return &m, nil
}

// DefaultRelayMap is the relay map when none is configured: one region,
// "home" (ID 1), served by the control server's own embedded relay at
// serverURL's host and port. The relay is listed once per STUN port (1a,
// 1b, ...), because netcheck can only tell a hard NAT from an easy one by
// asking two STUN servers and comparing what they saw; with no STUN port
// it is listed once, without STUN.
func DefaultRelayMap(serverURL string, stunPorts ...int) (*wire.RelayMap, error) {
	u, err := url.Parse(serverURL)
	if err != nil || u.Hostname() == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("control: server URL %q must be http:// or https:// with a host", serverURL)
	}
	port := 0
	if p := u.Port(); p != "" {
		if port, err = strconv.Atoi(p); err != nil {
			return nil, fmt.Errorf("control: server URL port %q: %w", p, err)
		}
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); ip != nil {
		host = ip.String()
	}
	if len(stunPorts) == 0 {
		stunPorts = []int{-1}
	}
	if len(stunPorts) > 26 {
		return nil, fmt.Errorf("control: %d STUN ports; at most 26", len(stunPorts))
	}
	region := &wire.RelayRegion{ID: 1, Code: "home", Name: "home"}
	for i, sp := range stunPorts {
		if sp == 0 || sp < -1 || sp > 65535 {
			return nil, fmt.Errorf("control: STUN port %d out of range", sp)
		}
		region.Nodes = append(region.Nodes, &wire.RelayNode{
			Name:         fmt.Sprintf("1%c", 'a'+i),
			RegionID:     1,
			Host:         host,
			Port:         port,
			STUNPort:     sp,
			InsecureHTTP: u.Scheme == "http",
		})
	}
	return &wire.RelayMap{Regions: map[int]*wire.RelayRegion{1: region}}, nil
}

// AddRelayAddrs lists addrs, the control host's own public addresses
// besides the one its URL names (one per family at most), on every relay
// node of the default relay map m, as their IPv4 or IPv6 address: a
// server whose URL is an IPv4 literal then tells dual-stack and IPv6-only
// nodes where its relay and STUN answer over IPv6. An address of the
// family the URL's literal already names must be that same address.
func AddRelayAddrs(m *wire.RelayMap, addrs []netip.Addr) error {
	var v4, v6 netip.Addr
	for _, a := range addrs {
		a = a.Unmap()
		p := &v6
		if a.Is4() {
			p = &v4
		}
		if p.IsValid() && *p != a {
			return fmt.Errorf("control: relay addresses %v and %v are of one family; give at most one IPv4 and one IPv6 address", *p, a)
		}
		*p = a
	}
	for _, r := range m.Regions {
		for _, n := range r.Nodes {
			if host, err := netip.ParseAddr(n.Host); err == nil {
				host = host.Unmap()
				if (host.Is4() && v4.IsValid() && v4 != host) || (host.Is6() && v6.IsValid() && v6 != host) {
					return fmt.Errorf("control: relay address %v: the server URL already names %v for that family", ofFamily(host, v4, v6), host)
				}
			}
			n.IPv4, n.IPv6 = v4, v6
		}
	}
	return nil
}

// ofFamily returns whichever of v4 and v6 has host's family.
func ofFamily(host, v4, v6 netip.Addr) netip.Addr {
	if host.Is4() {
		return v4
	}
	return v6
}
