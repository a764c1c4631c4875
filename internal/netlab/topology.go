//go:build linux

// Package netlab builds test networks out of Linux network namespaces: an
// "internet" bridge with public hosts, NAT routers of a chosen kind with
// hosts on their LANs, per-link delay and rate caps, and processes started
// inside any of those namespaces. Every networking feature of weft is proven
// in such a lab.
//
// The lab never touches the root namespace: no link of the lab is attached
// to it, and its routes, DNS and firewall stay as they are. Everything is
// built through netlink and nftables from Go, so the weft binary and root
// are all a machine needs.
package netlab

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"time"

	"weft/internal/tailnet"
)

// NATKind is the behaviour of a router's NAT.
type NATKind string

const (
	// NATEasy maps endpoint-independently (a LAN socket keeps one public
	// port whatever the destination) and filters address-and-port
	// dependently: plain Linux masquerade, like most home routers.
	NATEasy NATKind = "easy"
	// NATHard maps endpoint-dependently: every new destination gets a new
	// random public port (symmetric NAT).
	NATHard NATKind = "hard"
	// NATUDPBlocked is an easy NAT that drops all UDP from the LAN to the
	// internet; TCP passes.
	NATUDPBlocked NATKind = "udp-blocked"
)

// NATKinds lists the kinds a router may have, in the order help texts show
// them.
var NATKinds = []NATKind{NATEasy, NATHard, NATUDPBlocked}

// Valid reports whether k is one of NATKinds.
func (k NATKind) Valid() bool { return slices.Contains(NATKinds, k) }

// The internet of every lab is one link carrying two public /24s. Every
// public address is on-link for every other, as if the ISPs' routers were
// not there, but a host with an address in only one of them answers the
// other from that one address, and a host with addresses in both (a
// multi-homed server) picks its source address by route, as a real one
// does.
var (
	InternetPrefix = netip.MustParsePrefix("203.0.113.0/24")
	// SecondInternetPrefix is the other public /24.
	SecondInternetPrefix = netip.MustParsePrefix("198.51.100.0/24")
	InternetPrefixes     = []netip.Prefix{InternetPrefix, SecondInternetPrefix}
)

// internetPrefixOf returns the public /24 that holds a.
func internetPrefixOf(a netip.Addr) (netip.Prefix, bool) {
	for _, p := range InternetPrefixes {
		if p.Contains(a) {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// MaxDelay bounds a router's delay; more than this is a typo, not a test.
const MaxDelay = 10 * time.Second

// Router is a NAT router: a WAN address on the internet, a LAN with hosts.
type Router struct {
	Name string
	NAT  NATKind
	// WAN is the router's address on the internet. If zero, Validate
	// assigns 203.0.113.21 + the router's index.
	WAN netip.Addr
	// LAN is the router's subnet; the router is .1 and its hosts .10 up.
	// If zero, Validate assigns 192.168.(index+1).0/24.
	LAN netip.Prefix
	// Delay is added to every frame in each direction on the WAN link, so
	// a round trip through this router grows by twice Delay. Zero means
	// no delay line at all.
	Delay time.Duration
	// DelayIPv4 and DelayIPv6 are added to Delay for that family's frames
	// only (the delay line holds them longer), so that a path's latency
	// differs by address family, as when one family is tunnelled. Zero:
	// none.
	DelayIPv4, DelayIPv6 time.Duration
	// RateMbit caps the WAN link in each direction (token bucket); zero
	// means uncapped.
	RateMbit int
	// LossPercent drops that share of the frames on the WAN link, at
	// random, in each direction (through the delay line, which a lossy
	// router gets even without Delay); zero drops none.
	LossPercent int
	// MTU is the MTU of the links between the router and its hosts:
	// the narrowest hop of every path into or out of the site, as a
	// PPPoE (1492) or tunnelled (1280) access line is. The router answers
	// a packet too big for it with ICMP, as such a hop does. Zero means
	// 1500.
	MTU int
	// PortMap runs miniupnpd on the router, so its hosts can ask for
	// port mappings with UPnP IGD, NAT-PMP or PCP (needs Debian's
	// miniupnpd-nftables).
	PortMap bool
	// UPnPOnly makes that miniupnpd answer UPnP IGD only, with NAT-PMP
	// and PCP off, as many consumer routers are.
	UPnPOnly bool
	// NoPCP makes that miniupnpd answer NAT-PMP and UPnP IGD but not PCP,
	// as a router whose firmware predates PCP does. miniupnpd serves
	// NAT-PMP and PCP on one port behind one switch, so the router drops
	// the datagrams to that port that carry PCP's version (2).
	NoPCP bool
	// UDPTimeout is how long the router keeps an idle UDP mapping, as
	// conntrack's UDP timeouts (both the unreplied and the "stream"
	// one) in its namespace. Many home and carrier routers forget a
	// mapping after 30 s or less. Zero keeps the kernel's defaults (30 s
	// unreplied, 120 s for a flow that has seen both directions).
	UDPTimeout time.Duration
	// Upstream names the router whose LAN this router's WAN sits on, as
	// a home router behind a carrier's CGNAT does: its WAN address is a
	// host address on that LAN, and the upstream router's NAT translates
	// its traffic a second time. Empty: the WAN is on the internet. One
	// level only; a router with an upstream has no delay, loss, rate or
	// port mapping of its own on its WAN.
	Upstream string
	// IPv6 is which address families the site has (ipv6.go): IPv4 only
	// (the zero value), dual stack, or IPv6 only.
	IPv6 IPv6Mode
	// WAN6 is the router's IPv6 address on the internet, in
	// InternetPrefix6. If zero on a site with IPv6, Validate assigns
	// 2001:db8::21 + the router's index (written like the IPv4 default).
	WAN6 netip.Addr
	// LAN6 is the site's global IPv6 /64; the router is ::1 and its hosts
	// ::10 up. If zero on a site with IPv6, Validate assigns
	// 2001:db8:(index+1)::/64.
	LAN6 netip.Prefix
	// Hosts are the names of the machines on the router's LAN.
	Hosts []string
}

// MinMTU and MaxMTU bound Router.MTU: below 1280 IPv6 cannot run.
const (
	MinMTU = 1280
	MaxMTU = 1500
)

// PublicHost is a machine directly on the internet, without NAT.
type PublicHost struct {
	Name string
	Addr netip.Addr
	// Extra are more public addresses on the same interface: a
	// multi-homed host.
	Extra []netip.Addr
	// Addr6 is the host's IPv6 address on the internet, in
	// InternetPrefix6; zero: the host has no IPv6.
	Addr6 netip.Addr
	// Whoami makes the host serve HTTP on port 80, answering GET / with
	// the caller's source IP as plain text.
	Whoami bool
}

// Topology describes a lab. The zero value is an empty internet; fill it
// with routers and public hosts, or start from SeedTopology.
type Topology struct {
	Name    string
	Routers []Router
	Public  []PublicHost

	// errs collects what the Set methods could not apply; Validate
	// reports them, so a func(*Topology) modifier needs no error return.
	errs []error
}

// SeedTopology is the seed story's network: r-busan (easy) with host busan,
// r-fukuoka (easy) with hosts mac and pc, and the public hosts ctrl
// (203.0.113.10) and web (203.0.113.80, serving "what is my IP").
func SeedTopology() Topology {
	return Topology{
		Name: "seed",
		Routers: []Router{
			{Name: "r-busan", NAT: NATEasy, WAN: netip.MustParseAddr("203.0.113.21"), LAN: netip.MustParsePrefix("192.168.1.0/24"), Hosts: []string{"busan"}},
			{Name: "r-fukuoka", NAT: NATEasy, WAN: netip.MustParseAddr("203.0.113.22"), LAN: netip.MustParsePrefix("192.168.2.0/24"), Hosts: []string{"mac", "pc"}},
		},
		Public: []PublicHost{
			{Name: "ctrl", Addr: netip.MustParseAddr("203.0.113.10")},
			{Name: "web", Addr: netip.MustParseAddr("203.0.113.80"), Whoami: true},
		},
	}
}

// MultiHomedTopology is the seed's network on a public side of two
// subnets: r-fukuoka's WAN is 198.51.100.22, and ctrl has an address in
// each subnet (203.0.113.10 and 198.51.100.10), like a control server on
// a VPS with two addresses. A UDP server on a wildcard socket there must
// answer from the address it was asked on, or Fukuoka's NAT drops the
// answer.
func MultiHomedTopology() Topology {
	t := SeedTopology()
	t.Name = "multihomed"
	MultiHomed(&t)
	return t
}

// MultiHomed changes a seed-shaped topology as MultiHomedTopology
// describes; tests pass it as a modifier.
func MultiHomed(t *Topology) {
	t.SetWAN("r-fukuoka", netip.MustParseAddr("198.51.100.22"))
	t.AddPublicAddr("ctrl", netip.MustParseAddr("198.51.100.10"))
}

// DoubleNATTopology is the seed's network with Fukuoka's home router
// behind a carrier's CGNAT: router isp (easy NAT, WAN 203.0.113.40) has
// the shared address space 100.64.22.0/24 (RFC 6598) as its LAN, and
// r-fukuoka's WAN is 100.64.22.10 on it, so mac and pc are translated
// twice on their way out.
func DoubleNATTopology() Topology {
	t := SeedTopology()
	t.Name = "double-nat"
	DoubleNAT(&t)
	return t
}

// DoubleNAT changes a seed-shaped topology as DoubleNATTopology
// describes; tests pass it as a modifier.
func DoubleNAT(t *Topology) {
	t.Routers = append(t.Routers, Router{Name: "isp", NAT: NATEasy, WAN: netip.MustParseAddr("203.0.113.40"),
		LAN: netip.MustParsePrefix("100.64.22.0/24")})
	if r := t.router("r-fukuoka"); r != nil {
		r.Upstream, r.WAN = "isp", netip.Addr{}
	} else {
		t.errs = append(t.errs, t.unknownRouter("r-fukuoka"))
	}
}

// Topologies returns the named topologies the CLI offers.
func Topologies() map[string]func() Topology {
	return map[string]func() Topology{"seed": SeedTopology, "multihomed": MultiHomedTopology, "double-nat": DoubleNATTopology,
		"dual-stack": DualStackTopology, "v6-only": V6OnlyTopology}
}

// sharedSpace is RFC 6598's shared address space, the LAN side of
// carriers' CGNAT routers. It is the range the tailnet's addresses come
// from too, so it is written once, in package tailnet.
var sharedSpace = tailnet.V4Range

// SetWAN sets router's WAN address (in either public subnet).
func (t *Topology) SetWAN(router string, a netip.Addr) {
	t.setRouter(router, nil, func(r *Router) { r.WAN = a })
}

// AddPublicAddr gives the public host another address on its interface.
func (t *Topology) AddPublicAddr(host string, a netip.Addr) {
	for i := range t.Public {
		if t.Public[i].Name == host {
			t.Public[i].Extra = append(t.Public[i].Extra, a)
			return
		}
	}
	t.errs = append(t.errs, fmt.Errorf("netlab: no public host %q", host))
}

// router returns the router called name. A bare site name ("busan") finds
// "r-busan" too, so flags can name either.
func (t *Topology) router(name string) *Router {
	for i := range t.Routers {
		if t.Routers[i].Name == name {
			return &t.Routers[i]
		}
	}
	for i := range t.Routers {
		if t.Routers[i].Name == "r-"+name {
			return &t.Routers[i]
		}
	}
	return nil
}

func (t *Topology) unknownRouter(name string) error {
	var names []string
	for _, r := range t.Routers {
		names = append(names, r.Name)
	}
	return fmt.Errorf("netlab: unknown site %q (routers: %v)", name, names)
}

// setRouter applies set to the router named router, or records why it
// cannot for Validate and Up: the router is unknown, or bad (the value's
// own error) is not nil.
func (t *Topology) setRouter(router string, bad error, set func(*Router)) {
	r := t.router(router)
	switch {
	case r == nil:
		t.errs = append(t.errs, t.unknownRouter(router))
	case bad != nil:
		t.errs = append(t.errs, bad)
	default:
		set(r)
	}
}

// SetNAT sets the NAT kind of router. Errors (unknown router or kind) are
// reported by Validate and Up.
func (t *Topology) SetNAT(router string, k NATKind) {
	var bad error
	if !k.Valid() {
		bad = fmt.Errorf("netlab: unknown NAT kind %q for %s (kinds: %v)", k, router, NATKinds)
	}
	t.setRouter(router, bad, func(r *Router) {
		r.NAT = k
	})
}

// SetDelay sets the one-way delay of router's WAN link in milliseconds.
func (t *Topology) SetDelay(router string, ms int) {
	var bad error
	if ms < 0 || time.Duration(ms)*time.Millisecond > MaxDelay {
		bad = fmt.Errorf("netlab: delay %dms for %s out of range [0, %d]", ms, router, MaxDelay.Milliseconds())
	}
	t.setRouter(router, bad, func(r *Router) {
		r.Delay = time.Duration(ms) * time.Millisecond
	})
}

// SetLoss makes router's WAN link drop percent of its frames at random
// in each direction.
func (t *Topology) SetLoss(router string, percent int) {
	var bad error
	if percent < 0 || percent >= 100 {
		bad = fmt.Errorf("netlab: loss %d%% for %s out of range [0, 100)", percent, router)
	}
	t.setRouter(router, bad, func(r *Router) {
		r.LossPercent = percent
	})
}

// SetRate caps router's WAN link at mbit megabits per second each way; 0
// removes the cap.
func (t *Topology) SetRate(router string, mbit int) {
	var bad error
	if mbit < 0 || mbit > 100000 {
		bad = fmt.Errorf("netlab: rate %d Mbit/s for %s out of range [0, 100000]", mbit, router)
	}
	t.setRouter(router, bad, func(r *Router) {
		r.RateMbit = mbit
	})
}

// SetPortMap turns miniupnpd on router on or off (Router.PortMap).
func (t *Topology) SetPortMap(router string, on bool) {
	t.setRouter(router, nil, func(r *Router) { r.PortMap = on })
}

// SetUDPTimeout sets how long router keeps an idle UDP mapping
// (Router.UDPTimeout); 0 restores the kernel's defaults.
func (t *Topology) SetUDPTimeout(router string, d time.Duration) {
	var bad error
	if d != 0 && d < time.Second {
		bad = fmt.Errorf("netlab: UDP timeout %v for %s is below conntrack's 1 s resolution", d, router)
	}
	t.setRouter(router, bad, func(r *Router) {
		r.UDPTimeout = d
	})
}

// SetNoPCP runs miniupnpd on router with NAT-PMP and UPnP IGD but no PCP
// (Router.PortMap and Router.NoPCP).
func (t *Topology) SetNoPCP(router string) {
	t.setRouter(router, nil, func(r *Router) { r.PortMap, r.NoPCP = true, true })
}

// SetUPnPOnly runs miniupnpd on router with UPnP IGD only (Router.PortMap
// and Router.UPnPOnly).
func (t *Topology) SetUPnPOnly(router string) {
	t.setRouter(router, nil, func(r *Router) { r.PortMap, r.UPnPOnly = true, true })
}

// SetMTU sets the MTU of router's site (Router.MTU); 0 restores 1500.
func (t *Topology) SetMTU(router string, mtu int) {
	var bad error
	if mtu != 0 && (mtu < MinMTU || mtu > MaxMTU) {
		bad = fmt.Errorf("netlab: MTU %d for %s out of range [%d, %d]", mtu, router, MinMTU, MaxMTU)
	}
	t.setRouter(router, bad, func(r *Router) {
		r.MTU = mtu
	})
}

// nodeName is what a node may be called: it becomes part of interface
// names (at most 15 bytes with a 2-byte prefix) and namespace names.
var nodeName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,11}$`)

// internetName is the node name of the internet namespace itself.
const internetName = "internet"

// Validate fills in default addresses and checks the topology: names are
// unique and short, kinds known, addresses inside their ranges and free.
func (t *Topology) Validate() error {
	errs := append([]error(nil), t.errs...)
	seen := map[string]bool{internetName: true}
	name := func(n string) {
		switch {
		case !nodeName.MatchString(n):
			errs = append(errs, fmt.Errorf("netlab: node name %q: want 1-12 of [a-z0-9-], starting with a letter", n))
		case seen[n]:
			errs = append(errs, fmt.Errorf("netlab: node name %q used twice (or reserved)", n))
		}
		seen[n] = true
	}
	addrs := map[netip.Addr]string{}
	addr := func(owner string, a netip.Addr) {
		if p, ok := internetPrefixOf(a); !ok || a == p.Addr() || a.As4()[3] == 255 {
			errs = append(errs, fmt.Errorf("netlab: %s: address %v is not a host in %v", owner, a, InternetPrefixes))
		}
		if o, ok := addrs[a]; ok {
			errs = append(errs, fmt.Errorf("netlab: %s and %s both have address %v", o, owner, a))
		}
		addrs[a] = owner
	}
	lans := map[netip.Prefix]string{}
	for i := range t.Routers {
		r := &t.Routers[i]
		name(r.Name)
		if r.NAT == "" {
			r.NAT = NATEasy
		}
		if !r.NAT.Valid() {
			errs = append(errs, fmt.Errorf("netlab: %s: unknown NAT kind %q (kinds: %v)", r.Name, r.NAT, NATKinds))
		}
		if r.Upstream == "" && r.IPv6 != IPv6Only {
			if !r.WAN.IsValid() {
				r.WAN = netip.AddrFrom4([4]byte{203, 0, 113, byte(21 + i)})
			}
			addr(r.Name, r.WAN)
		}
		if !r.LAN.IsValid() {
			r.LAN = netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 168, byte(i + 1), 0}), 24)
		}
		lanOK := r.LAN.Addr().IsPrivate() || sharedSpace.Contains(r.LAN.Addr())
		if !r.LAN.Addr().Is4() || r.LAN.Bits() > 24 || r.LAN.Bits() < 8 || !lanOK || r.LAN != r.LAN.Masked() {
			errs = append(errs, fmt.Errorf("netlab: %s: LAN %v must be a private (or RFC 6598 shared) IPv4 network of /8 to /24", r.Name, r.LAN))
		}
		for p, o := range lans {
			if p.Overlaps(r.LAN) {
				errs = append(errs, fmt.Errorf("netlab: LANs of %s and %s overlap", o, r.Name))
			}
		}
		lans[r.LAN] = r.Name
		errs = append(errs, r.checkLink()...)
		for _, h := range r.Hosts {
			name(h)
		}
	}
	errs = append(errs, t.validateUpstreams()...)
	errs = append(errs, t.validateIPv6()...)
	for _, p := range t.Public {
		name(p.Name)
		addr(p.Name, p.Addr)
		for _, a := range p.Extra {
			addr(p.Name, a)
		}
	}
	return errors.Join(errs...)
}

// checkLink checks the router's WAN link settings and its host count.
func (r *Router) checkLink() []error {
	var errs []error
	for _, d := range []time.Duration{r.Delay, r.DelayIPv4, r.DelayIPv6} {
		if d < 0 || d > MaxDelay {
			errs = append(errs, fmt.Errorf("netlab: %s: delay %v out of range [0, %v]", r.Name, d, MaxDelay))
		}
	}
	if r.LossPercent < 0 || r.LossPercent >= 100 {
		errs = append(errs, fmt.Errorf("netlab: %s: loss %d%% out of range [0, 100)", r.Name, r.LossPercent))
	}
	if r.MTU != 0 && (r.MTU < MinMTU || r.MTU > MaxMTU) {
		errs = append(errs, fmt.Errorf("netlab: %s: MTU %d out of range [%d, %d]", r.Name, r.MTU, MinMTU, MaxMTU))
	}
	if r.RateMbit < 0 {
		errs = append(errs, fmt.Errorf("netlab: %s: negative rate %d", r.Name, r.RateMbit))
	}
	if len(r.Hosts) > 200 {
		errs = append(errs, fmt.Errorf("netlab: %s: %d hosts, at most 200", r.Name, len(r.Hosts)))
	}
	return errs
}

// validateUpstreams checks routers behind another router and gives each
// its WAN address on the upstream's LAN (after the upstream's hosts)
// unless one was set.
func (t *Topology) validateUpstreams() []error {
	var errs []error
	behind := map[string]int{} // upstream → routers placed on its LAN so far
	for i := range t.Routers {
		r := &t.Routers[i]
		if r.Upstream == "" {
			continue
		}
		up := t.router(r.Upstream)
		switch {
		case up == nil:
			errs = append(errs, fmt.Errorf("netlab: %s: upstream %q is not a router of the topology", r.Name, r.Upstream))
			continue
		case up.Upstream != "" || up == r:
			errs = append(errs, fmt.Errorf("netlab: %s: upstream %s must sit on the internet (one level of nesting)", r.Name, up.Name))
			continue
		case r.Delay != 0 || r.DelayIPv4 != 0 || r.DelayIPv6 != 0 || r.LossPercent != 0 || r.RateMbit != 0 || r.PortMap:
			errs = append(errs, fmt.Errorf("netlab: %s: delay, loss, rate and port mapping are not supported behind an upstream router", r.Name))
		case r.IPv6 != IPv6None || up.IPv6 != IPv6None:
			errs = append(errs, fmt.Errorf("netlab: %s: IPv6 is not supported behind an upstream router, nor on the upstream", r.Name))
		}
		if !r.WAN.IsValid() {
			r.WAN = hostAddr(up.LAN, len(up.Hosts)+behind[up.Name])
		}
		behind[up.Name]++
		if !up.LAN.Contains(r.WAN) || r.WAN == gatewayAddr(up.LAN) {
			errs = append(errs, fmt.Errorf("netlab: %s: WAN %v is not a host address on %s's LAN %v", r.Name, r.WAN, up.Name, up.LAN))
		}
	}
	return errs
}

// hostAddr is the LAN address of the i-th host of a router.
func hostAddr(lan netip.Prefix, i int) netip.Addr {
	a := lan.Addr().As4()
	a[3] = byte(10 + i)
	return netip.AddrFrom4(a)
}

// gatewayAddr is the router's own LAN address.
func gatewayAddr(lan netip.Prefix) netip.Addr {
	a := lan.Addr().As4()
	a[3] = 1
	return netip.AddrFrom4(a)
}
