package osnet

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
)

// This file holds the part of the macOS and Windows routers that does not
// need the OS: what addresses and routes a Config asks for, and the
// difference between two of them. It builds on every OS so that its
// tests run on Linux CI, where no macOS or Windows machine is available.

// splitDefaultRoutes are the four half-internet routes a non-Linux exit
// node client puts into the TUN. Together they cover everything the
// default routes cover, but being more specific than 0.0.0.0/0 and ::/0
// they win without replacing the OS's own default routes, which stay in
// place for weft's own sockets (bound to the physical interface, see
// MarkControl) and come back untouched when weft stops.
var splitDefaultRoutes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/1"),
	netip.MustParsePrefix("128.0.0.0/1"),
	netip.MustParsePrefix("::/1"),
	netip.MustParsePrefix("8000::/1"),
}

// ErrForwardingNeedsUserspace is returned by Apply on systems where weft
// does not forward in the kernel: an exit node or subnet router there runs
// with --tun=userspace-networking, whose forwarder re-originates the flows
// from host sockets (docs/userspace.md).
var ErrForwardingNeedsUserspace = fmt.Errorf("osnet: on %s an exit node or subnet router runs in userspace networking mode "+
	"(weft daemon --tun=userspace-networking): the kernel TUN mode does not forward: %w", runtime.GOOS, errors.ErrUnsupported)

// hostPlan is the host state a Config asks for on a system whose router
// only owns the TUN's addresses and the routes pointing into it.
type hostPlan struct {
	Addresses []netip.Prefix
	Routes    []netip.Prefix
}

// planFor returns the addresses and routes cfg asks for. It fails for a
// Config that makes this node forward (see ErrForwardingNeedsUserspace).
// ExitNodeAllowLAN needs no route of its own here: the split default
// routes are less specific than any LAN route, so the LAN stays direct
// either way (docs/os-networking.md says so for macOS and Windows).
func planFor(cfg Config) (hostPlan, error) {
	cfg, err := cfg.normalized()
	if err != nil {
		return hostPlan{}, err
	}
	if cfg.forwards() {
		return hostPlan{}, ErrForwardingNeedsUserspace
	}
	routes := slices.Concat(cfg.TailnetRoutes, cfg.SubnetRoutes)
	if cfg.ExitNode {
		routes = append(routes, splitDefaultRoutes...)
	}
	return hostPlan{Addresses: cfg.Addresses, Routes: normPrefixes(routes, true)}, nil
}

// prefixDiff returns the prefixes of want missing from have (to add) and
// those of have no longer in want (to remove). Both inputs are sorted and
// deduplicated (normPrefixes), as are the results.
func prefixDiff(have, want []netip.Prefix) (add, remove []netip.Prefix) {
	for _, p := range want {
		if !slices.Contains(have, p) {
			add = append(add, p)
		}
	}
	for _, p := range have {
		if !slices.Contains(want, p) {
			remove = append(remove, p)
		}
	}
	return add, remove
}

// family returns "-inet" or "-inet6", the address-family flag of the BSD
// route(8) command, for p.
func family(p netip.Prefix) string {
	if p.Addr().Is4() {
		return "-inet"
	}
	return "-inet6"
}

// macCommands returns the ifconfig(8) and route(8) invocations that take a
// utun device named ifname from the plan have to the plan want. Removals
// come first, so an address moving between families never exists twice.
// utun is a point-to-point device: an IPv4 address needs a destination,
// for which the address itself serves.
func macCommands(ifname string, have, want hostPlan) [][]string {
	var cmds [][]string
	addAddrs, delAddrs := prefixDiff(have.Addresses, want.Addresses)
	addRoutes, delRoutes := prefixDiff(have.Routes, want.Routes)
	for _, p := range delRoutes {
		cmds = append(cmds, []string{"/sbin/route", "-q", "-n", "delete", family(p), p.String(), "-interface", ifname})
	}
	for _, a := range delAddrs {
		if a.Addr().Is4() {
			cmds = append(cmds, []string{"/sbin/ifconfig", ifname, "inet", a.Addr().String(), "-alias"})
		} else {
			cmds = append(cmds, []string{"/sbin/ifconfig", ifname, "inet6", a.Addr().String(), "-alias"})
		}
	}
	for _, a := range addAddrs {
		if a.Addr().Is4() {
			s := a.Addr().String()
			cmds = append(cmds, []string{"/sbin/ifconfig", ifname, "inet", s, s, "alias"})
		} else {
			cmds = append(cmds, []string{"/sbin/ifconfig", ifname, "inet6", a.Addr().String(), "prefixlen", "128", "alias"})
		}
	}
	for _, p := range addRoutes {
		cmds = append(cmds, []string{"/sbin/route", "-q", "-n", "add", family(p), p.String(), "-interface", ifname})
	}
	return cmds
}

// blocksLeaks reports whether a Windows node with cfg runs the firewall
// (WFP) rules that let nothing leave except through the tunnel, weft's
// own process, loopback, DHCP and neighbour discovery: while it uses an
// exit node, unless it keeps its LAN direct (the rules would block the
// LAN too). Without them an application bound to the physical interface
// (as some VPN-unaware software binds) would leave around the exit node.
func blocksLeaks(cfg Config) bool { return cfg.ExitNode && !cfg.ExitNodeAllowLAN }
