//go:build linux

package osnet

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"

	"weft/internal/tailnet"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Routing tables by number.
const tableMain = unix.RT_TABLE_MAIN

// syncAddrs makes the TUN's addresses exactly want, leaving the kernel's
// own IPv6 link-local address alone. Addresses already present are not
// touched, so sockets bound to them survive a new peer map.
func syncAddrs(log *slog.Logger, h *netlink.Handle, link netlink.Link, want []netip.Prefix) error {
	have, err := h.AddrList(link, unix.AF_UNSPEC)
	if err != nil {
		return fmt.Errorf("osnet: list addresses of %s: %w", link.Attrs().Name, err)
	}
	haveSet := map[netip.Prefix]bool{}
	var errs []error
	for _, a := range have {
		p, ok := prefixOf(a.IPNet)
		if !ok || p.Addr().IsLinkLocalUnicast() {
			continue
		}
		haveSet[p] = true
		if !slices.Contains(want, p) {
			if err := h.AddrDel(link, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
				errs = append(errs, fmt.Errorf("osnet: remove address %s from %s: %w", p, link.Attrs().Name, err))
			} else {
				log.Info("address removed", "dev", link.Attrs().Name, "addr", p)
			}
		}
	}
	for _, p := range want {
		if haveSet[p] {
			continue
		}
		a := &netlink.Addr{IPNet: ipNet(p)}
		if p.Addr().Is6() {
			// The address is this node's alone in the tailnet; waiting for
			// duplicate address detection would only delay sockets binding it.
			a.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(link, a); err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("osnet: add address %s to %s: %w", p, link.Attrs().Name, err))
		} else {
			log.Info("address added", "dev", link.Attrs().Name, "addr", p)
		}
	}
	return errors.Join(errs...)
}

// syncLinkRoutes makes the routes in table that point at link exactly
// want (all as "dev link", scope link). Routes the kernel made itself
// (IPv6 link-local and multicast) are left alone. A wanted route that
// collides with another interface's route for the same prefix (a peer's
// subnet route equal to the local LAN) is not installed: the host's own
// route wins, and the prefix is returned in conflicts for a warning.
func syncLinkRoutes(log *slog.Logger, h *netlink.Handle, link netlink.Link, table int, want []netip.Prefix) (conflicts []netip.Prefix, _ error) {
	have, err := h.RouteListFiltered(unix.AF_UNSPEC,
		&netlink.Route{LinkIndex: link.Attrs().Index, Table: table},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("osnet: list routes of %s in table %d: %w", link.Attrs().Name, table, err)
	}
	haveSet := map[netip.Prefix]bool{}
	var errs []error
	for _, r := range have {
		if r.Protocol == unix.RTPROT_KERNEL {
			continue
		}
		p, ok := routeDst(r)
		if !ok {
			continue
		}
		haveSet[p] = true
		if !slices.Contains(want, p) {
			if err := h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, fmt.Errorf("osnet: remove route %s dev %s table %d: %w", p, link.Attrs().Name, table, err))
			} else {
				log.Info("route removed", "dst", p, "dev", link.Attrs().Name, "table", table)
			}
		}
	}
	for _, p := range want {
		if haveSet[p] {
			continue
		}
		r := &netlink.Route{
			LinkIndex: link.Attrs().Index,
			Dst:       ipNet(p),
			Scope:     netlink.SCOPE_LINK,
			Table:     table,
			Protocol:  unix.RTPROT_STATIC,
		}
		switch err := h.RouteAdd(r); {
		case errors.Is(err, unix.EEXIST):
			conflicts = append(conflicts, p)
		case err != nil:
			errs = append(errs, fmt.Errorf("osnet: add route %s dev %s table %d: %w", p, link.Attrs().Name, table, err))
		default:
			log.Info("route added", "dst", p, "dev", link.Attrs().Name, "table", table)
		}
	}
	return conflicts, errors.Join(errs...)
}

// flushTable removes every route in table. Only weft's own table number is
// ever passed here.
func flushTable(log *slog.Logger, h *netlink.Handle, table int) error {
	routes, err := h.RouteListFiltered(unix.AF_UNSPEC, &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("osnet: list routes in table %d: %w", table, err)
	}
	var errs []error
	for _, r := range routes {
		if r.Table != table {
			continue
		}
		if err := h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("osnet: remove route %s from table %d: %w", r.Dst, table, err))
		} else {
			log.Info("route removed", "dst", r.Dst, "table", table)
		}
	}
	return errors.Join(errs...)
}

// routeDst is a route's destination; a nil Dst is the default route of the
// route's family.
func routeDst(r netlink.Route) (netip.Prefix, bool) {
	if r.Dst == nil {
		switch r.Family {
		case unix.AF_INET:
			return tailnet.AllV4, true
		case unix.AF_INET6:
			return tailnet.AllV6, true
		}
		return netip.Prefix{}, false
	}
	p, ok := prefixOf(r.Dst)
	if !ok || p.Addr().IsLinkLocalUnicast() || p.Addr().IsMulticast() {
		return netip.Prefix{}, false
	}
	return p, true
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, bits := n.Mask.Size()
	if bits == 0 {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	if a.Is4() && bits == 128 {
		ones -= 96
	}
	return netip.PrefixFrom(a, ones), true
}

func ipNet(p netip.Prefix) *net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), bits)}
}
