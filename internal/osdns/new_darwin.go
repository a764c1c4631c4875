//go:build darwin

package osdns

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"

	"weft/internal/tailnet"
)

// New returns the macOS Manager: per-domain files in /etc/resolver, which
// send the tailnet's names to weft's resolver and leave every other name
// to the system's resolvers.
func New(opts Options) (Manager, error) {
	return NewResolverDir(DefaultResolverDir, opts.ResolvConf)
}

// AddLoopback puts addrs on lo0 so this machine's programs reach the
// resolver there. Addresses already present are fine.
func AddLoopback(addrs []netip.Addr) error {
	var errs []error
	for _, a := range addrs {
		args := []string{"lo0", "inet", a.String() + "/32", "alias"}
		if a.Is6() {
			args = []string{"lo0", "inet6", a.String(), "prefixlen", "128", "alias"}
		}
		if out, err := exec.Command("/sbin/ifconfig", args...).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("osdns: ifconfig %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out))))
		}
	}
	return errors.Join(errs...)
}

// RemoveLoopback takes the resolver's addresses off lo0: ResolverV4 and
// any tailnet resolver IPv6 address.
func RemoveLoopback() error {
	lo, err := net.InterfaceByName("lo0")
	if err != nil {
		return fmt.Errorf("osdns: loopback device: %w", err)
	}
	have, err := lo.Addrs()
	if err != nil {
		return fmt.Errorf("osdns: listing lo0's addresses: %w", err)
	}
	var errs []error
	for _, na := range have {
		ipn, ok := na.(*net.IPNet)
		if !ok {
			continue
		}
		a, ok := netip.AddrFromSlice(ipn.IP)
		if !ok {
			continue
		}
		a = a.Unmap()
		if a != tailnet.ResolverV4 && (!a.Is6() || tailnet.ResolverV6(a) != a) {
			continue
		}
		fam := "inet"
		if a.Is6() {
			fam = "inet6"
		}
		if out, err := exec.Command("/sbin/ifconfig", "lo0", fam, a.String(), "-alias").CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("osdns: removing %s from lo0: %w: %s", a, err, strings.TrimSpace(string(out))))
		}
	}
	return errors.Join(errs...)
}
