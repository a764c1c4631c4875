//go:build linux

package netlab

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// IPv6 in the lab. A site with IPv6 gets a global /64 out of the
// documentation prefix 2001:db8::/32 on its LAN and a global address on
// the internet link (InternetPrefix6, 2001:db8::/64). Its router does not
// translate IPv6 (there is no NAT66 on real home routers): it forwards
// the site's own addresses and firewalls them statefully, as home routers
// do (RFC 6092): whatever the LAN sends out passes, and so do the answers
// (conntrack established/related); anything else arriving from the
// internet is dropped. An unsolicited packet to a host's global address
// never arrives, which is why IPv6 still needs hole punching: both sides
// send first, and each one's outgoing packet opens its firewall for the
// other's.
//
// The internet link is one segment for IPv6 as for IPv4: every node on it
// reaches every other's address on-link, and every site's /64 is routed
// through that site's router (a route per site on every internet node).
// There is no default IPv6 route anywhere, so a packet to an address
// outside the lab fails at once with "network unreachable", and so does
// any IPv6 from a host whose site has none.

// IPv6Mode is which address families a router's site has.
type IPv6Mode string

const (
	// IPv6None is an IPv4-only site behind NAT: today's internet for
	// many, and the lab's default.
	IPv6None IPv6Mode = ""
	// IPv6Dual is a dual-stack site: IPv4 behind the router's NAT and
	// global IPv6 behind its stateful firewall.
	IPv6Dual IPv6Mode = "dual"
	// IPv6Only is a site with global IPv6 and no IPv4 at all, as some
	// mobile carriers run: the router has no IPv4 WAN address and its
	// hosts no IPv4 address.
	IPv6Only IPv6Mode = "only"
)

// IPv6Modes lists the modes a router may have, in the order help texts
// show them ("none" stands for IPv6None).
var IPv6Modes = []IPv6Mode{IPv6None, IPv6Dual, IPv6Only}

// Valid reports whether m is one of IPv6Modes.
func (m IPv6Mode) Valid() bool { return slices.Contains(IPv6Modes, m) }

// ParseIPv6Mode reads a mode as flags write it: "none", "dual" or "only".
func ParseIPv6Mode(s string) (IPv6Mode, error) {
	if s == "none" {
		return IPv6None, nil
	}
	if m := IPv6Mode(s); m != IPv6None && m.Valid() {
		return m, nil
	}
	return IPv6None, fmt.Errorf("netlab: unknown IPv6 mode %q (modes: none, dual, only)", s)
}

// The lab's IPv6 internet and the prefix every site's /64 comes from.
var (
	// InternetPrefix6 is the internet link's IPv6 subnet: public hosts'
	// and routers' WAN addresses.
	InternetPrefix6 = netip.MustParsePrefix("2001:db8::/64")
	// DocPrefix6 is the documentation prefix (RFC 3849); every IPv6
	// address of the lab is inside it.
	DocPrefix6 = netip.MustParsePrefix("2001:db8::/32")
)

// DualStackTopology is the seed's network with IPv6 on both sites and on
// the public hosts: r-busan and r-fukuoka are dual stack (LANs
// 2001:db8:1::/64 and 2001:db8:2::/64, WANs 2001:db8::21 and ::22), ctrl
// is 2001:db8::10 and web 2001:db8::80 besides their IPv4 addresses.
func DualStackTopology() Topology {
	t := SeedTopology()
	t.Name = "dual-stack"
	DualStack(&t)
	return t
}

// DualStack makes every router on the internet dual stack and gives
// every public host without one an IPv6 address (DefaultPublicV6 of its
// IPv4 address); tests pass it as a modifier.
func DualStack(t *Topology) {
	for i := range t.Routers {
		if t.Routers[i].Upstream == "" && t.Routers[i].IPv6 == IPv6None {
			t.Routers[i].IPv6 = IPv6Dual
		}
	}
	t.defaultPublicV6()
}

// V6OnlyTopology is the seed's network with Fukuoka's site on IPv6 only
// (mac and pc have no IPv4 address) and Busan's on IPv4 only; the public
// hosts are dual stack, so a node on either site reaches the control
// server and its relay.
func V6OnlyTopology() Topology {
	t := SeedTopology()
	t.Name = "v6-only"
	V6Only(&t)
	return t
}

// V6Only changes a seed-shaped topology as V6OnlyTopology describes; tests
// pass it as a modifier.
func V6Only(t *Topology) {
	t.SetIPv6("r-fukuoka", IPv6Only)
	t.defaultPublicV6()
}

// defaultPublicV6 gives every public host without an IPv6 address its
// DefaultPublicV6, as DualStack and V6Only do.
func (t *Topology) defaultPublicV6() {
	for i := range t.Public {
		if !t.Public[i].Addr6.IsValid() {
			t.Public[i].Addr6 = DefaultPublicV6(t.Public[i].Addr)
		}
	}
}

// DefaultPublicV6 is the IPv6 address DualStack gives a public host whose
// IPv4 address is a: 2001:db8:: followed by a's last byte written in the
// same digits (203.0.113.10 → 2001:db8::10), so the two read alike.
func DefaultPublicV6(a netip.Addr) netip.Addr {
	if !a.Is4() {
		return netip.Addr{}
	}
	return netip.MustParseAddr("2001:db8::" + strconv.Itoa(int(a.As4()[3])))
}

// SetIPv6 sets which address families router's site has. IPv6Only also
// clears the router's IPv4 WAN address, which such a site does not have.
func (t *Topology) SetIPv6(router string, m IPv6Mode) {
	var bad error
	if !m.Valid() {
		bad = fmt.Errorf("netlab: unknown IPv6 mode %q for %s (modes: none, dual, only)", m, router)
	}
	t.setRouter(router, bad, func(r *Router) {
		r.IPv6 = m
		if m == IPv6Only {
			r.WAN = netip.Addr{}
		}
	})
}

// SetPublicV6 gives the public host an IPv6 address (in InternetPrefix6).
func (t *Topology) SetPublicV6(host string, a netip.Addr) {
	for i := range t.Public {
		if t.Public[i].Name == host {
			t.Public[i].Addr6 = a
			return
		}
	}
	t.errs = append(t.errs, fmt.Errorf("netlab: no public host %q", host))
}

// validateIPv6 fills in the default IPv6 addresses of sites with IPv6
// and checks every IPv6 address and prefix of the topology.
func (t *Topology) validateIPv6() []error {
	var errs []error
	addrs := map[netip.Addr]string{}
	addr := func(owner string, a netip.Addr) {
		if !a.Is6() || a.Is4In6() || !InternetPrefix6.Contains(a) || a == InternetPrefix6.Addr() {
			errs = append(errs, fmt.Errorf("netlab: %s: IPv6 address %v is not a host in %v", owner, a, InternetPrefix6))
		}
		if o, ok := addrs[a]; ok {
			errs = append(errs, fmt.Errorf("netlab: %s and %s both have address %v", o, owner, a))
		}
		addrs[a] = owner
	}
	lans := map[netip.Prefix]string{}
	for i := range t.Routers {
		r := &t.Routers[i]
		if !r.IPv6.Valid() {
			errs = append(errs, fmt.Errorf("netlab: %s: unknown IPv6 mode %q (modes: none, dual, only)", r.Name, r.IPv6))
			continue
		}
		if r.IPv6 == IPv6None {
			if r.WAN6.IsValid() || r.LAN6.IsValid() {
				errs = append(errs, fmt.Errorf("netlab: %s: IPv6 addresses on a site without IPv6 (set Router.IPv6)", r.Name))
			}
			continue
		}
		if r.IPv6 == IPv6Only && (r.WAN.IsValid() || r.PortMap) {
			errs = append(errs, fmt.Errorf("netlab: %s: an IPv6-only site has no IPv4 WAN address and no port mapping", r.Name))
		}
		if !r.WAN6.IsValid() {
			r.WAN6 = netip.MustParseAddr("2001:db8::" + strconv.Itoa(21+i))
		}
		addr(r.Name, r.WAN6)
		if !r.LAN6.IsValid() {
			r.LAN6 = netip.MustParsePrefix(fmt.Sprintf("2001:db8:%d::/64", i+1))
		}
		if !r.LAN6.Addr().Is6() || r.LAN6.Bits() != 64 || r.LAN6 != r.LAN6.Masked() || !DocPrefix6.Contains(r.LAN6.Addr()) ||
			r.LAN6.Overlaps(InternetPrefix6) {
			errs = append(errs, fmt.Errorf("netlab: %s: LAN %v must be a /64 in %v other than the internet's %v", r.Name, r.LAN6, DocPrefix6, InternetPrefix6))
		}
		if o, ok := lans[r.LAN6]; ok {
			errs = append(errs, fmt.Errorf("netlab: IPv6 LANs of %s and %s overlap", o, r.Name))
		}
		lans[r.LAN6] = r.Name
	}
	for _, p := range t.Public {
		if p.Addr6.IsValid() {
			addr(p.Name, p.Addr6)
		}
	}
	return errs
}

// hostAddr6 is the IPv6 LAN address of the i-th host of a site: ::10 up,
// in the same digits as the IPv4 default's last byte while they fit.
func hostAddr6(lan netip.Prefix, i int) netip.Addr {
	a := lan.Addr().As16()
	n := 0x10 + i
	a[14], a[15] = byte(n>>8), byte(n)
	return netip.AddrFrom16(a)
}

// gatewayAddr6 is the router's own IPv6 LAN address, ::1.
func gatewayAddr6(lan netip.Prefix) netip.Addr {
	a := lan.Addr().As16()
	a[15] = 1
	return netip.AddrFrom16(a)
}

// addAddr6 puts an IPv6 address on ln without duplicate address
// detection: the lab hands out every address once, and DAD would leave
// it unusable ("tentative") for a second after the build.
func addAddr6(nh *netlink.Handle, ln netlink.Link, a netip.Addr, bits int) error {
	ipn := &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, 128)}
	if err := nh.AddrAdd(ln, &netlink.Addr{IPNet: ipn, Flags: unix.IFA_F_NODAD}); err != nil {
		return fmt.Errorf("netlab: address %v/%d on %s: %w", a, bits, ln.Attrs().Name, err)
	}
	return nil
}

// addSiteRoutes6 routes, out of ln on the internet link, every IPv6
// site's /64 through that site's router, except self's own.
func addSiteRoutes6(nh *netlink.Handle, ln netlink.Link, topo Topology, self string) error {
	for _, r := range topo.Routers {
		if r.IPv6 == IPv6None || r.Name == self || r.Upstream != "" {
			continue
		}
		dst := &net.IPNet{IP: r.LAN6.Addr().AsSlice(), Mask: net.CIDRMask(r.LAN6.Bits(), 128)}
		if err := nh.RouteAdd(&netlink.Route{LinkIndex: ln.Attrs().Index, Dst: dst, Gw: r.WAN6.AsSlice()}); err != nil {
			return fmt.Errorf("route %v via %s: %w", r.LAN6, r.Name, err)
		}
	}
	return nil
}

// setupRouter6 gives router r's LAN bridge its IPv6 address, turns on
// IPv6 forwarding and installs the stateful firewall.
func (l *Lab) setupRouter6(h *nsHandles, r Router, lan netlink.Link) error {
	if err := addAddr6(h.nl[r.Name], lan, gatewayAddr6(r.LAN6), r.LAN6.Bits()); err != nil {
		return err
	}
	err := l.Node(r.Name).Do(func() error { return writeSysctl("net.ipv6.conf.all.forwarding", "1") })
	if err != nil {
		return fmt.Errorf("netlab: %s: IPv6 forwarding: %w", r.Name, err)
	}
	if err := installFirewall6(h.ns[r.Name], r.NAT); err != nil {
		return fmt.Errorf("netlab: %s: %w", r.Name, err)
	}
	return nil
}

// firewall6Table is the nftables table of each router's IPv6 firewall.
const firewall6Table = "weftlab6"

// installFirewall6 writes the router's IPv6 firewall into its namespace:
//
//	forward: iifname "wan" ct state established,related accept
//	         iifname "wan" drop
//	         [udp-blocked: oifname "wan" meta l4proto udp drop]
//
// There is no translation: hosts keep their global addresses end to end.
// The first rule lets in the answers to what the LAN sent (and ICMPv6
// errors about it, such as "packet too big", which conntrack counts as
// related); conntrack matches a UDP answer on both addresses and ports,
// so the filtering is address-and-port dependent, like the IPv4 NAT's.
// kind matters only for udp-blocked: an endpoint-dependent ("hard") NAT
// has no IPv6 counterpart without translation.
func installFirewall6(ns netns.NsHandle, kind NATKind) error {
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return fmt.Errorf("netlab: nftables: %w", err)
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv6, Name: firewall6Table})
	addForward(c, t, kind)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("netlab: install the IPv6 firewall: %w", err)
	}
	return nil
}
