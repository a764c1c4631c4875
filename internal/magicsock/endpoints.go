package magicsock

import (
	"net/netip"
	"slices"
)

// LocalEndpoints returns the addresses peers may reach our main socket at:
// each interface address with our port, then the public endpoints STUN saw.
func (c *Conn) LocalEndpoints() []netip.AddrPort {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.endpoints)
}

// SetNetReport gives the Conn what netcheck found: our public endpoints
// (published as endpoints) and whether our NAT is hard (which decides our
// side in port guessing).
func (c *Conn) SetNetReport(r NetReport) {
	c.mu.Lock()
	c.report = r
	c.updateEndpointsLocked()
	c.unlock()
}

// SetPortMapped gives the Conn the public address:port the gateway maps
// to our main socket (UPnP, NAT-PMP or PCP), published first among our
// endpoints; the zero value withdraws it. Behind a hard NAT it is the one
// public endpoint every peer can reach.
func (c *Conn) SetPortMapped(ap netip.AddrPort) {
	c.mu.Lock()
	c.mapped = ap
	c.updateEndpointsLocked()
	c.unlock()
}

// updateEndpointsLocked recomputes our endpoints and, if they changed,
// queues the OnEndpoints callback.
func (c *Conn) updateEndpointsLocked() {
	if !c.open {
		return
	}
	var eps []netip.AddrPort
	add := func(ap netip.AddrPort) {
		if ap.IsValid() && ap.Port() != 0 && !slices.Contains(eps, ap) {
			eps = append(eps, ap)
		}
	}
	add(c.mapped)
	add(c.report.GlobalV4)
	add(c.report.GlobalV6)
	for _, ap := range c.observed {
		add(ap)
	}
	addrs, err := c.network.LocalAddrs()
	if err != nil {
		c.log.Warn("local addresses", "err", err)
	}
	if lp, ok := c.network.(localPrefixer); ok {
		lans, err := lp.LocalPrefixes()
		if err != nil {
			c.log.Warn("local networks", "err", err)
		}
		c.lans = lans
	}
	for _, a := range addrs {
		port := c.port
		if a.Is6() && !a.Is4In6() {
			port = c.port6
		}
		add(netip.AddrPortFrom(a, port))
	}
	if slices.Equal(eps, c.endpoints) {
		return
	}
	c.endpoints = eps
	if f := c.opts.OnEndpoints; f != nil {
		cp := slices.Clone(eps)
		c.callbacks = append(c.callbacks, func() { f(cp) })
	}
}

// maxObserved bounds the addresses learned from pongs.
const maxObserved = 4

// noteObservedLocked takes the address a peer saw our main socket's ping
// come from (a pong's Src). Over the internet that is our public mapping,
// so a pong doubles as a STUN answer: it is published as an endpoint,
// which helps when no STUN server answered. Behind a hard NAT the mapping
// differs per peer and means nothing to others, so it is not published.
func (c *Conn) noteObservedLocked(ap netip.AddrPort) {
	if !ap.IsValid() || ap.Port() == 0 || c.report.MappingVariesByDestIP || slices.Contains(c.observed, ap) {
		return
	}
	a := ap.Addr()
	if !a.IsGlobalUnicast() || a.IsPrivate() || isTailnetAddr(a) {
		return // a LAN peer saw our LAN address: already an endpoint
	}
	c.observed = append(c.observed, ap)
	if len(c.observed) > maxObserved {
		c.observed = c.observed[1:]
	}
	c.updateEndpointsLocked()
}
