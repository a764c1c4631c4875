package osdns

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"weft/internal/tailnet"
)

// The resolver's addresses live on the loopback device, not on the TUN:
// on the TUN, 100.100.100.100 could become the source address the kernel
// picks for traffic to peers, whose WireGuard would drop it.

// AddLoopback puts addrs on the loopback device so this machine's
// programs reach the resolver there. Addresses already present are fine.
func AddLoopback(addrs []netip.Addr) error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("osdns: loopback device: %w", err)
	}
	var errs []error
	for _, a := range addrs {
		na := &netlink.Addr{IPNet: netlink.NewIPNet(a.AsSlice())}
		if a.Is6() {
			na.Flags = unix.IFA_F_NODAD
		}
		if err := netlink.AddrAdd(lo, na); err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("osdns: adding %s to lo: %w", a, err))
		}
	}
	return errors.Join(errs...)
}

// RemoveLoopback takes the resolver's addresses off the loopback device:
// ResolverV4 and any tailnet resolver IPv6 address (tailnet.ResolverV6).
func RemoveLoopback() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("osdns: loopback device: %w", err)
	}
	have, err := netlink.AddrList(lo, unix.AF_UNSPEC)
	if err != nil {
		return fmt.Errorf("osdns: listing lo's addresses: %w", err)
	}
	var errs []error
	for _, na := range have {
		a, ok := netip.AddrFromSlice(na.IP)
		if !ok {
			continue
		}
		a = a.Unmap()
		if a != tailnet.ResolverV4 && (!a.Is6() || tailnet.ResolverV6(a) != a) {
			continue
		}
		if err := netlink.AddrDel(lo, &na); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			errs = append(errs, fmt.Errorf("osdns: removing %s from lo: %w", a, err))
		}
	}
	return errors.Join(errs...)
}
