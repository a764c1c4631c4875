//go:build windows

package osnet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"golang.org/x/sys/windows"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/windows/tunnel/firewall"
	"golang.zx2c4.com/wireguard/windows/tunnel/winipcfg"
)

// Router owns weft's wintun adapter on Windows: its addresses and the
// routes pointing into it (IP Helper, through winipcfg), and while an
// exit node is in use the WFP rules that keep traffic from leaving around
// it. The WFP session is dynamic: Windows removes its rules when the
// process ends, also when it was killed.
type Router struct {
	opts Options
	dev  tun.Device
	luid winipcfg.LUID

	mu       sync.Mutex // guards the fields below
	have     hostPlan
	firewall bool     // the WFP rules are in place
	warnings []string // from the last Apply
	closed   bool
}

// New creates the wintun adapter named opts.TUNName (wintun.dll must sit
// beside weft.exe, see docs/install.md) and sets its MTU.
func New(opts Options) (*Router, error) {
	opts = opts.withDefaults()
	dev, err := tun.CreateTUN(opts.TUNName, opts.MTU)
	if err != nil {
		if exe, e := os.Executable(); e == nil {
			if e := missingWintun(filepath.Dir(exe), runtime.GOARCH); e != nil {
				return nil, fmt.Errorf("%w (creating wintun adapter %q: %v)", e, opts.TUNName, err)
			}
		}
		return nil, fmt.Errorf("osnet: creating wintun adapter %q (is wintun.dll beside weft.exe, and weft running as Administrator or SYSTEM?): %w", opts.TUNName, err)
	}
	nt, ok := dev.(*tun.NativeTun)
	if !ok {
		dev.Close()
		return nil, fmt.Errorf("osnet: unexpected TUN type %T", dev)
	}
	r := &Router{opts: opts, dev: dev, luid: winipcfg.LUID(nt.LUID())}
	for _, fam := range []winipcfg.AddressFamily{windows.AF_INET, windows.AF_INET6} {
		if err := r.setMTU(fam); err != nil {
			dev.Close()
			return nil, err
		}
	}
	opts.Logger.Info("created TUN device", "name", opts.TUNName, "mtu", opts.MTU)
	return r, nil
}

func (r *Router) setMTU(fam winipcfg.AddressFamily) error { return r.setFamilyMTU(fam, r.opts.MTU) }

func (r *Router) setFamilyMTU(fam winipcfg.AddressFamily, mtu int) error {
	row, err := r.luid.IPInterface(fam)
	if err != nil {
		if fam == windows.AF_INET6 && errors.Is(err, windows.ERROR_NOT_FOUND) {
			return nil // IPv6 disabled on this machine
		}
		return fmt.Errorf("osnet: reading the adapter's IP interface: %w", err)
	}
	if row.NLMTU == uint32(mtu) {
		return nil
	}
	row.NLMTU = uint32(mtu)
	if err := row.Set(); err != nil {
		return fmt.Errorf("osnet: setting the adapter's MTU to %d: %w", mtu, err)
	}
	return nil
}

// SetMTU sets the adapter's MTU for both families (path MTU discovery
// picks it). Values below 1280 are refused: the tailnet carries IPv6.
func (r *Router) SetMTU(mtu int) error {
	if mtu < 1280 {
		return fmt.Errorf("osnet: MTU %d is below 1280, the least IPv6 needs", mtu)
	}
	return errors.Join(r.setFamilyMTU(windows.AF_INET, mtu), r.setFamilyMTU(windows.AF_INET6, mtu))
}

// TUN returns the wintun device, for wireguard-go.
func (r *Router) TUN() tun.Device { return r.dev }

// Name returns the adapter's name.
func (r *Router) Name() string { return r.opts.TUNName }

// Mark returns the configured mark; on Windows any non-zero mark means
// "bind to the physical interface" (see MarkControl).
func (r *Router) Mark() uint32 { return r.opts.Mark }

// Warnings says what the last Apply could not do but worked around: the
// leak-blocking firewall needs weft to run as its Windows service (the
// rules permit the service's own SID), so a daemon started by hand uses
// an exit node without them.
func (r *Router) Warnings() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.warnings
}

// Apply makes the adapter's addresses, routes and the leak-blocking
// firewall match cfg, changing only the difference from the last Apply.
func (r *Router) Apply(cfg Config) error {
	want, err := planFor(cfg)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	err = r.sync(want)
	if err != nil {
		r.have = hostPlan{} // replay everything next time
	} else {
		r.have = want
	}
	r.warnings = nil
	if ferr := r.setFirewall(blocksLeaks(cfg)); ferr != nil {
		r.warnings = append(r.warnings, ferr.Error())
	}
	return err
}

func (r *Router) sync(want hostPlan) error {
	var errs []error
	addAddrs, delAddrs := prefixDiff(r.have.Addresses, want.Addresses)
	addRoutes, delRoutes := prefixDiff(r.have.Routes, want.Routes)
	for _, p := range delRoutes {
		if err := r.luid.DeleteRoute(p, onLink(p)); err != nil && !errors.Is(err, windows.ERROR_NOT_FOUND) {
			errs = append(errs, fmt.Errorf("osnet: deleting route %s: %w", p, err))
		}
	}
	for _, a := range delAddrs {
		if err := r.luid.DeleteIPAddress(a); err != nil && !errors.Is(err, windows.ERROR_NOT_FOUND) {
			errs = append(errs, fmt.Errorf("osnet: deleting address %s: %w", a, err))
		}
	}
	for _, a := range addAddrs {
		if err := r.luid.AddIPAddress(a); err != nil && !errors.Is(err, windows.ERROR_OBJECT_ALREADY_EXISTS) {
			errs = append(errs, fmt.Errorf("osnet: adding address %s: %w", a, err))
		}
	}
	for _, p := range addRoutes {
		if err := r.luid.AddRoute(p, onLink(p), 0); err != nil && !errors.Is(err, windows.ERROR_OBJECT_ALREADY_EXISTS) {
			errs = append(errs, fmt.Errorf("osnet: adding route %s: %w", p, err))
		}
	}
	if len(addAddrs)+len(delAddrs)+len(addRoutes)+len(delRoutes) > 0 {
		r.opts.Logger.Info("host network", "addresses", want.Addresses, "routes", want.Routes)
	}
	return errors.Join(errs...)
}

// onLink is the next hop of a route straight into the adapter.
func onLink(p netip.Prefix) netip.Addr {
	if p.Addr().Is4() {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}

func (r *Router) setFirewall(on bool) error {
	switch {
	case on && !r.firewall:
		if err := firewall.EnableFirewall(uint64(r.luid), false, nil); err != nil {
			return fmt.Errorf("osnet: traffic around the exit node is not blocked (WFP rules need weft to run as its service: weft service install): %w", err)
		}
		r.opts.Logger.Info("host network: traffic outside the tunnel blocked while the exit node is used")
	case !on && r.firewall:
		firewall.DisableFirewall()
		r.opts.Logger.Info("host network: exit-node firewall removed")
	}
	r.firewall = on
	return nil
}

// Changes notifies of unicast address changes on any interface.
func (r *Router) Changes(ctx context.Context) (<-chan struct{}, error) {
	ch := make(chan struct{}, 1)
	cb, err := winipcfg.RegisterUnicastAddressChangeCallback(func(winipcfg.MibNotificationType, *winipcfg.MibUnicastIPAddressRow) {
		select {
		case ch <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return nil, fmt.Errorf("osnet: address change notices: %w", err)
	}
	context.AfterFunc(ctx, func() { cb.Unregister() })
	return ch, nil
}

// IntoTunnelDrops reports 0: the WFP rules do not count.
func (r *Router) IntoTunnelDrops() (uint64, error) { return 0, nil }

// Close removes the routes, addresses and firewall rules Apply added. The
// adapter itself is closed by wireguard-go.
func (r *Router) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	err := r.sync(hostPlan{})
	r.have = hostPlan{}
	return errors.Join(err, r.setFirewall(false))
}

// Cleanup has nothing to remove: the WFP session is dynamic and the
// adapter's addresses and routes go with the adapter.
func Cleanup(Options) error { return nil }

// Leftovers finds nothing, for the same reason.
func Leftovers(Options) ([]string, error) { return nil, nil }
