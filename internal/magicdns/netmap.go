package magicdns

import (
	"net/netip"

	"weft/internal/wire"
)

// ConfigFor builds the resolver's Config from the tailnet's DNS settings
// and the nodes in the map. fallback are the resolvers the OS had before
// weft, used when the tailnet names no nameservers.
func ConfigFor(d *wire.DNSConfig, self *wire.Node, peers []*wire.Node, fallback []netip.AddrPort) Config {
	c := Config{Hosts: map[string][]netip.Addr{}}
	if d != nil {
		c.Domain = d.Domain
		c.ExtraRecords = d.ExtraRecords
		c.Routes = d.Routes
		c.Upstreams = d.Nameservers
	}
	if len(c.Upstreams) == 0 {
		c.Upstreams = fallback
	}
	for _, n := range append([]*wire.Node{self}, peers...) {
		if n == nil || n.Name == "" {
			continue
		}
		var addrs []netip.Addr
		for _, p := range n.Addresses {
			addrs = append(addrs, p.Addr())
		}
		c.Hosts[n.Name] = addrs
	}
	return c
}
