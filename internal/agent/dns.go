package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"weft/internal/controlclient"
	"weft/internal/localapi"
	"weft/internal/magicdns"
	"weft/internal/node"
	"weft/internal/osdns"
	"weft/internal/tailnet"
	"weft/internal/wire"
)

// dnsState runs MagicDNS for the engine: the resolver on the loopback
// device at 100.100.100.100 (and the tailnet's resolver IPv6 address), and
// the OS's resolver pointed at it while the node accepts DNS. It is only
// used from the map loop and Close, which never run at once.
type dnsState struct {
	log  *slog.Logger
	os   osdns.Manager // nil: never touch the OS's DNS
	host bool          // the resolver may listen on the host (a kernel TUN)
	res  *magicdns.Resolver

	cancel context.CancelFunc // stops the listeners; nil when not serving
	wg     sync.WaitGroup     // the listeners
	want   []netip.Addr       // where the resolver was asked to listen
	addrs  []netip.Addr       // where it does

	osSet bool // the OS points at the resolver
	last  osdns.Config

	mu          sync.Mutex // guards the fields below, read by Status
	status      localapi.DNSStatus
	overwritten time.Time // when the OS's configuration was last found overwritten
}

func newDNSState(log *slog.Logger, m osdns.Manager, host bool) *dnsState {
	if !host {
		m = nil
	}
	return &dnsState{log: log, os: m, host: host, res: magicdns.New(magicdns.Options{Logger: log})}
}

// apply makes DNS match the map and preferences. Without a host network
// (userspace mode) nothing listens and the OS is left alone, but the
// resolver still knows the tailnet's names, for the proxies (Lookup).
func (d *dnsState) apply(ctx context.Context, nm *controlclient.NetMap, rp node.RoutePrefs) error {
	magic := nm.DNS != nil && nm.DNS.MagicDNS
	if !magic {
		d.res.SetConfig(magicdns.Config{})
	}
	if !magic || !d.host {
		err := errors.Join(d.restoreOS(), d.stopServing())
		st := localapi.DNSStatus{Mode: osdns.ModeOff, Problem: errString(err)}
		if magic {
			d.res.SetConfig(magicdns.ConfigFor(nm.DNS, nm.Self, slices.Collect(maps.Values(nm.Peers)), nil))
			st.MagicDNS, st.Domain, st.Search = true, nm.DNS.Domain, nm.DNS.SearchDomains
		}
		d.setStatus(st)
		return err
	}
	var fallback []netip.AddrPort
	if d.os != nil {
		fallback = d.os.Fallback()
	}
	d.res.SetConfig(magicdns.ConfigFor(nm.DNS, nm.Self, slices.Collect(maps.Values(nm.Peers)), fallback))
	listen := []netip.Addr{tailnet.ResolverV4}
	for _, p := range nm.Self.Addresses {
		if v6 := tailnet.ResolverV6(p.Addr()); v6.IsValid() {
			listen = append(listen, v6)
		}
	}
	var errs []error
	if err := d.serve(ctx, listen, nm.Self); err != nil {
		errs = append(errs, err)
	}
	mode := osdns.ModeOff
	switch {
	case d.os == nil:
	case !rp.AcceptDNS:
		errs = append(errs, d.restoreOS())
	default:
		if err := d.setOS(osConfig(nm.DNS, d.addrs)); err != nil {
			errs = append(errs, err)
		} else {
			mode = d.os.Mode()
		}
	}
	err := errors.Join(errs...)
	d.setStatus(localapi.DNSStatus{MagicDNS: true, Mode: mode, Domain: nm.DNS.Domain, Listen: d.addrs,
		Upstreams: d.res.Config().Upstreams, Routes: nm.DNS.Routes, Search: nm.DNS.SearchDomains, Problem: errString(err)})
	return err
}

// osConfig is what the OS is asked: weft's resolver for the tailnet
// domain and the split-DNS suffixes, for everything when the tailnet says
// so.
func osConfig(c *wire.DNSConfig, listen []netip.Addr) osdns.Config {
	oc := osdns.Config{Nameservers: listen, All: c.OverrideLocalDNS}
	if c.Domain != "" {
		oc.SearchDomains = append(oc.SearchDomains, c.Domain)
	}
	oc.SearchDomains = append(oc.SearchDomains, c.SearchDomains...)
	if c.Domain != "" {
		oc.MatchDomains = append(oc.MatchDomains, c.Domain)
	}
	oc.MatchDomains = append(oc.MatchDomains, slices.Sorted(maps.Keys(c.Routes))...)
	return oc
}

func (d *dnsState) setOS(c osdns.Config) error {
	if d.osSet && equalOSConfig(c, d.last) {
		return nil
	}
	if err := d.os.Set(c); err != nil {
		return fmt.Errorf("pointing the OS at weft's resolver (%s): %w", d.os.Mode(), err)
	}
	d.osSet, d.last = true, c
	d.log.Info("OS DNS pointed at weft's resolver", "mode", d.os.Mode(), "search", c.SearchDomains)
	return nil
}

func equalOSConfig(a, b osdns.Config) bool {
	return slices.Equal(a.Nameservers, b.Nameservers) && slices.Equal(a.SearchDomains, b.SearchDomains) &&
		slices.Equal(a.MatchDomains, b.MatchDomains) && a.All == b.All
}

func (d *dnsState) restoreOS() error {
	if d.os == nil || !d.osSet {
		return nil
	}
	d.osSet = false
	if err := d.os.Restore(); err != nil {
		return err
	}
	d.log.Info("OS DNS restored", "mode", d.os.Mode())
	return nil
}

// check re-applies the OS configuration if something overwrote it; the
// error says so, for health.
func (d *dnsState) check() error {
	if d.os == nil || !d.osSet {
		return nil
	}
	err := d.os.Check()
	if errors.Is(err, osdns.ErrOverwritten) {
		d.mu.Lock()
		d.overwritten = time.Now()
		d.mu.Unlock()
	}
	if err != nil {
		d.log.Warn("DNS configuration", "err", err)
	}
	return err
}

// serve starts the listeners if they are not running on listen.
func (d *dnsState) serve(ctx context.Context, listen []netip.Addr, self *wire.Node) error {
	if d.cancel != nil && slices.Equal(listen, d.want) {
		return nil
	}
	d.stopServing()
	if err := osdns.AddLoopback(listen); err != nil {
		// IPv6 may be off on this host; the IPv4 address is what
		// matters.
		d.log.Warn("resolver address", "err", err)
	}
	allow := allowFrom(self)
	sctx, cancel := context.WithCancel(ctx)
	var errs []error
	var bound []netip.Addr
	for _, a := range listen {
		ap := netip.AddrPortFrom(a, 53)
		pc, err := net.ListenPacket("udp", ap.String())
		if err != nil {
			errs = append(errs, fmt.Errorf("resolver on %s/udp: %w", ap, err))
			continue
		}
		ln, err := net.Listen("tcp", ap.String())
		if err != nil {
			pc.Close()
			errs = append(errs, fmt.Errorf("resolver on %s/tcp: %w", ap, err))
			continue
		}
		bound = append(bound, a)
		d.wg.Add(2)
		go func() {
			defer d.wg.Done()
			defer pc.Close()
			if err := d.res.Serve(sctx, pc, allow); err != nil {
				d.log.Warn("resolver stopped", "addr", ap, "err", err)
			}
		}()
		go func() {
			defer d.wg.Done()
			defer ln.Close()
			if err := d.res.ServeTCP(sctx, ln, allow); err != nil {
				d.log.Warn("resolver stopped", "addr", ap, "err", err)
			}
		}()
	}
	d.cancel, d.want, d.addrs = cancel, listen, bound
	if len(bound) == 0 {
		return fmt.Errorf("agent: no resolver: %w", errors.Join(errs...))
	}
	d.log.Info("resolver listening", "addrs", bound)
	return nil
}

// allowFrom admits this machine (loopback, the resolver's own addresses)
// and the tailnet; a LAN host that routes 100.100.100.100 here is refused.
func allowFrom(self *wire.Node) magicdns.AllowFunc {
	var ula netip.Prefix
	for _, p := range self.Addresses {
		if p.Addr().Is6() {
			ula, _ = p.Addr().Prefix(48)
		}
	}
	return func(a netip.Addr) bool {
		a = a.Unmap()
		return a.IsLoopback() || tailnet.V4Range.Contains(a) || (ula.IsValid() && ula.Contains(a))
	}
}

func (d *dnsState) stopServing() error {
	if d.cancel == nil {
		return nil
	}
	d.cancel()
	d.wg.Wait()
	d.cancel, d.want, d.addrs = nil, nil, nil
	return osdns.RemoveLoopback()
}

// close undoes everything: the OS first, so it never points at a
// resolver that is gone.
func (d *dnsState) close() error {
	err := errors.Join(d.restoreOS(), d.stopServing())
	d.setStatus(localapi.DNSStatus{Mode: osdns.ModeOff})
	return err
}

func (d *dnsState) setStatus(s localapi.DNSStatus) {
	d.mu.Lock()
	d.status = s
	d.mu.Unlock()
}

// Lookup resolves name from the tailnet's own names and records
// (MagicDNS), as the resolver would answer it; ok is false when name is
// not the tailnet's to answer. See magicdns.Resolver.LookupLocal.
func (d *dnsState) Lookup(name string) (addrs []netip.Addr, ok bool) {
	return d.res.LookupLocal(name)
}

// Status returns the DNS state with the resolver's counters.
func (d *dnsState) Status() localapi.DNSStatus {
	d.mu.Lock()
	s := d.status
	s.Overwritten = d.overwritten
	d.mu.Unlock()
	s.Stats = localapi.DNSStats(d.res.Stats())
	return s
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// dnsHealthWindow is how long `weft health` mentions that something
// overwrote the OS's DNS configuration (weft re-applied it at once).
const dnsHealthWindow = 10 * time.Minute

// health lists DNS problems in plain words.
func (d *dnsState) health(now time.Time) []string {
	s := d.Status()
	var out []string
	if s.Problem != "" {
		out = append(out, "DNS: "+s.Problem)
	}
	if !s.Overwritten.IsZero() && now.Sub(s.Overwritten) < dnsHealthWindow {
		out = append(out, fmt.Sprintf("DNS: something else rewrote this machine's DNS configuration at %s; weft re-applied its own (see `weft dns status`)",
			s.Overwritten.Format(time.TimeOnly)))
	}
	return out
}
