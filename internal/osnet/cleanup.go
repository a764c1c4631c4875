//go:build linux

package osnet

import (
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// hostHandles are netlink and nftables connections bound to the calling
// thread's network namespace, for the package-level functions.
type hostHandles struct {
	ns  netns.NsHandle
	h   *netlink.Handle
	nft *nftables.Conn
}

func openHost() (*hostHandles, error) {
	ns, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("osnet: current network namespace: %w", err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("osnet: netlink: %w", err)
	}
	nft, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		h.Close()
		ns.Close()
		return nil, fmt.Errorf("osnet: nftables: %w", err)
	}
	return &hostHandles{ns: ns, h: h, nft: nft}, nil
}

func (hh *hostHandles) close() {
	hh.h.Close()
	hh.ns.Close()
}

// Leftovers describes the host-wide state weft has in the calling
// thread's network namespace, one line per item: weft's policy rules,
// routes in weft's routing table, and weft's nftables table. It is empty
// after `weft down`, after Close, and after Cleanup; lab tests and
// diagnostics use it. Addresses and routes on the TUN device are not
// listed: they vanish with the device.
func Leftovers(opts Options) ([]string, error) {
	opts = opts.withDefaults()
	pol := opts.policy()
	hh, err := openHost()
	if err != nil {
		return nil, err
	}
	defer hh.close()
	var out []string
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		rules, err := hh.h.RuleList(fam)
		if fam == unix.AF_INET6 && errors.Is(err, unix.EAFNOSUPPORT) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("osnet: list %s rules: %w", familyName(fam), err)
		}
		for _, r := range rules {
			if pol.isWeft(r) {
				out = append(out, fmt.Sprintf("%s rule: %s", familyName(fam), r))
			}
		}
	}
	routes, err := hh.h.RouteListFiltered(unix.AF_UNSPEC, &netlink.Route{Table: pol.table}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("osnet: list routes in table %d: %w", pol.table, err)
	}
	for _, r := range routes {
		if r.Table == pol.table {
			out = append(out, fmt.Sprintf("route in table %d: %s", pol.table, r))
		}
	}
	tables, err := hh.nft.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("osnet: list nftables tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == NFTableName {
			out = append(out, "nftables table inet "+NFTableName)
		}
	}
	return out, nil
}

// tunExists reports whether a network device called name exists in the
// calling thread's network namespace.
func tunExists(name string) (bool, error) {
	_, err := netlink.LinkByName(name)
	var nf netlink.LinkNotFoundError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &nf):
		return false, nil
	default:
		return false, fmt.Errorf("osnet: looking for device %s: %w", name, err)
	}
}

// Cleanup removes weft's leftovers from a run that ended without Close (a
// crash or SIGKILL) in the calling thread's network namespace: weft's
// nftables table, weft's policy rules and every route in weft's routing
// table. The daemon calls it once at start, before New, with the same
// Options; it must not run while another weft uses the same namespace and
// numbers, and refuses with ErrInUse when the TUN device exists (a live
// daemon holds it). The TUN device needs no cleanup: the kernel deletes
// it when its last file closes. Forwarding sysctls are left as they are,
// because a crashed run's earlier values are unknown.
func Cleanup(opts Options) error {
	opts = opts.withDefaults()
	pol := opts.policy()
	if live, err := tunExists(opts.TUNName); err != nil {
		return err
	} else if live {
		// The kernel removes a TUN device with its last file: one
		// that exists belongs to a daemon that is alive, whose rules
		// and table these are.
		return fmt.Errorf("%w: the TUN device %s exists, so another weft daemon runs in this network namespace; stop it first", ErrInUse, opts.TUNName)
	}
	found, err := Leftovers(opts)
	if err != nil {
		return err
	}
	if len(found) == 0 {
		return nil
	}
	hh, err := openHost()
	if err != nil {
		return err
	}
	defer hh.close()
	var errs []error
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		err := pol.syncRules(opts.Logger, hh.h, fam, nil)
		if fam == unix.AF_INET6 && errors.Is(err, unix.EAFNOSUPPORT) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := flushTable(opts.Logger, hh.h, pol.table); err != nil {
		errs = append(errs, err)
	}
	if _, err := deleteNFT(hh.nft); err != nil {
		errs = append(errs, err)
	}
	opts.Logger.Info("removed state left by an earlier weft run", "items", found)
	return errors.Join(errs...)
}
