package control

import (
	"fmt"
	"net"
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
		}
	}
	return &m, nil
}

// DefaultRelayMap is the relay map when none is configured: one region,
// "home" (ID 1), served by the control server's own embedded relay at
// serverURL's host and port.
func DefaultRelayMap(serverURL string) (*wire.RelayMap, error) {
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
	return &wire.RelayMap{Regions: map[int]*wire.RelayRegion{
		1: {ID: 1, Code: "home", Name: "home", Nodes: []*wire.RelayNode{{
			Name:         "1a",
			RegionID:     1,
			Host:         host,
			Port:         port,
			InsecureHTTP: u.Scheme == "http",
		}}},
	}}, nil
}
