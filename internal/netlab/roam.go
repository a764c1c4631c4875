//go:build linux

package netlab

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// MoveHost carries host from its router's LAN to the LAN of router to,
// as a laptop is carried from one home to another: its link goes away and
// comes back on the other LAN with the first free host address there and
// that router as its gateway. Processes on the host keep running; every
// socket bound to the old address loses it.
func (l *Lab) MoveHost(host, to string) error {
	n, r := l.Node(host), l.Node(to)
	switch {
	case n == nil || n.Kind != KindHost:
		return fmt.Errorf("netlab: move: %q is not a host of this lab", host)
	case r == nil || r.Kind != KindRouter:
		return fmt.Errorf("netlab: move %s: %q is not a router of this lab", host, to)
	case n.Router == to:
		return fmt.Errorf("netlab: move %s: it is on %s's LAN already", host, to)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	addr, err := l.freeHostAddrLocked(r)
	if err != nil {
		return err
	}
	hns, hh, err := openNS(n)
	if err != nil {
		return err
	}
	defer hns.Close()
	defer hh.Close()
	rns, rh, err := openNS(r)
	if err != nil {
		return err
	}
	defer rns.Close()
	defer rh.Close()
	// Deleting one end of the veth pair deletes the old router's port too.
	if old, err := hh.LinkByName(nodeIf); err == nil {
		if err := hh.LinkDel(old); err != nil {
			return fmt.Errorf("netlab: move %s: unplug: %w", host, err)
		}
	}
	if err := plugHost(hh, rh, rns, host, r, addr); err != nil {
		return fmt.Errorf("netlab: move %s to %s: %w", host, to, err)
	}
	n.Router, n.LAN, n.LANAddr = r.Name, r.LAN, addr
	return l.saveLocked()
}

// freeHostAddrLocked returns the first host address of r's LAN that no
// host of the lab holds. l.mu must be held.
func (l *Lab) freeHostAddrLocked(r *Node) (netip.Addr, error) {
	used := map[netip.Addr]bool{}
	for _, m := range l.nodes {
		if m.Kind == KindHost {
			used[m.LANAddr] = true
		}
	}
	for i := range 200 {
		if a := hostAddr(r.LAN, i); !used[a] {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("netlab: %s's LAN has no free address", r.Name)
}

// plugHost connects host (netlink handle hh) to router r's LAN bridge
// (handle rh in namespace rns) with address addr and r as its gateway.
func plugHost(hh, rh *netlink.Handle, rns netns.NsHandle, host string, r *Node, addr netip.Addr) error {
	eth, port, err := veth(hh, nodeIf, rh, rns, hostPortPfx+host)
	if err != nil {
		return err
	}
	lan, err := rh.LinkByName(routerLAN)
	if err == nil {
		err = rh.LinkSetMaster(port, lan)
	}
	if err != nil {
		return fmt.Errorf("attach to %s's LAN: %w", r.Name, err)
	}
	if err := addAddr(hh, eth, addr, r.LAN.Bits()); err != nil {
		return err
	}
	if err := errors.Join(up(rh, port), up(hh, eth)); err != nil {
		return err
	}
	if err := hh.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: r.LANAddr.AsSlice()}); err != nil {
		return fmt.Errorf("default route: %w", err)
	}
	return nil
}

// openNS opens n's namespace and a netlink handle in it; close both.
func openNS(n *Node) (netns.NsHandle, *netlink.Handle, error) {
	ns, err := netns.GetFromPath(filepath.Join(netnsDir, n.NS))
	if err != nil {
		return 0, nil, fmt.Errorf("netlab: %s: %w", n.Name, err)
	}
	nh, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		return 0, nil, fmt.Errorf("netlab: %s: netlink: %w", n.Name, err)
	}
	return ns, nh, nil
}
