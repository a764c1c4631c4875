package osdns

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
)

// resolved sets per-link DNS on the TUN through systemd-resolved's D-Bus
// API. Nothing is written to disk: resolved drops a link's settings when
// the link disappears, which the TUN does when the daemon exits or dies.
type resolved struct {
	link string
	bus  busObject

	mu  sync.Mutex // guards the fields below
	set bool
	cfg Config
}

// busObject is the slice of a D-Bus object the manager calls; tests fake
// it.
type busObject interface {
	CallWithContext(ctx context.Context, method string, flags dbus.Flags, args ...any) *dbus.Call
}

const resolvedIface = "org.freedesktop.resolve1.Manager"

// busTimeout bounds one call to resolved.
const busTimeout = 5 * time.Second

func newResolved(ctx context.Context, opts Options) (*resolved, error) {
	conn, err := dbus.ConnectSystemBus(dbus.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("osdns: system bus: %w", err)
	}
	obj := conn.Object("org.freedesktop.resolve1", "/org/freedesktop/resolve1")
	var v dbus.Variant
	if err := obj.CallWithContext(ctx, "org.freedesktop.DBus.Properties.Get", 0, resolvedIface, "DNSStubListener").Store(&v); err != nil {
		conn.Close()
		return nil, fmt.Errorf("osdns: systemd-resolved does not answer: %w", err)
	}
	return &resolved{link: opts.Link, bus: obj}, nil
}

func (r *resolved) Mode() string { return ModeResolved }

// linkDNS is resolved's (family, address) pair.
type linkDNS struct {
	Family  int32
	Address []byte
}

// linkDomain is resolved's (domain, routing-only) pair.
type linkDomain struct {
	Domain      string
	RoutingOnly bool
}

func (r *resolved) Set(cfg Config) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.applyLocked(cfg); err != nil {
		return err
	}
	r.set, r.cfg = true, cfg
	return nil
}

func (r *resolved) applyLocked(cfg Config) error {
	idx, err := r.index()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), busTimeout)
	defer cancel()
	var servers []linkDNS
	for _, a := range cfg.Nameservers {
		fam := int32(2) // AF_INET
		if a.Is6() {
			fam = 10 // AF_INET6
		}
		servers = append(servers, linkDNS{fam, a.AsSlice()})
	}
	var domains []linkDomain
	for _, d := range cfg.SearchDomains {
		domains = append(domains, linkDomain{d, false})
	}
	for _, d := range cfg.MatchDomains {
		domains = append(domains, linkDomain{d, true})
	}
	if cfg.All {
		domains = append(domains, linkDomain{".", true})
	}
	calls := []struct {
		method string
		args   []any
	}{
		{"SetLinkDNS", []any{idx, servers}},
		{"SetLinkDomains", []any{idx, domains}},
		{"SetLinkDefaultRoute", []any{idx, cfg.All}},
	}
	for _, c := range calls {
		if err := r.bus.CallWithContext(ctx, resolvedIface+"."+c.method, 0, c.args...).Err; err != nil {
			return fmt.Errorf("osdns: systemd-resolved %s on %s: %w", c.method, r.link, err)
		}
	}
	return nil
}

func (r *resolved) index() (int32, error) {
	ifi, err := net.InterfaceByName(r.link)
	if err != nil {
		return 0, fmt.Errorf("osdns: %w", err)
	}
	return int32(ifi.Index), nil
}

func (r *resolved) Restore() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.set {
		return nil
	}
	r.set = false
	idx, err := r.index()
	if err != nil {
		return nil // the link is gone, and its settings with it
	}
	ctx, cancel := context.WithTimeout(context.Background(), busTimeout)
	defer cancel()
	if err := r.bus.CallWithContext(ctx, resolvedIface+".RevertLink", 0, idx).Err; err != nil {
		return fmt.Errorf("osdns: systemd-resolved RevertLink on %s: %w", r.link, err)
	}
	return nil
}

// Check re-sends the settings: a restarted resolved forgets per-link
// DNS, and the calls are idempotent.
func (r *resolved) Check() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.set {
		return nil
	}
	return r.applyLocked(r.cfg)
}

func (r *resolved) Fallback() []netip.AddrPort {
	return Nameservers(readFallback(resolvedUpstreams))
}
