package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	"weft/internal/localapi"
	"weft/internal/magicsock"
	"weft/internal/netcheck"
	"weft/internal/portmap"
	"weft/internal/relay"
	"weft/internal/wire"
)

// netcheckLoop measures the network over magicsock's socket at start (as
// soon as a relay map is known), every NetcheckInterval, whenever
// kickNetcheck asks and whenever local addresses change, and acts on each
// report.
func (e *Engine) netcheckLoop() {
	defer e.wg.Done()
	t := time.NewTicker(e.cfg.NetcheckInterval)
	defer t.Stop()
	// Local addresses are looked at whenever the kernel announces an
	// address or link change, and polled (cheaply) as a fallback far
	// more often than the network is checked: a new or lost address
	// means paths may be dead and endpoints stale, which Rebind and a
	// fresh report fix.
	changes, err := e.router.Changes(e.ctx)
	if err != nil {
		e.log.Warn("no netlink change notices; polling local addresses only", "err", err)
	}
	addrTick := time.NewTicker(addrPollInterval)
	defer addrTick.Stop()
	lastAddrs, _ := e.net.LocalAddrs()
	for {
		var look bool
		select {
		case <-e.ctx.Done():
			return
		case <-t.C:
		case <-e.recheck:
		case <-changes:
			look = true
		case <-addrTick.C:
			look = true
		}
		if look {
			addrs, err := e.net.LocalAddrs()
			if err != nil || slices.Equal(addrs, lastAddrs) {
				continue
			}
			e.log.Info("local addresses changed", "from", lastAddrs, "to", addrs)
			lost := slices.ContainsFunc(lastAddrs, func(a netip.Addr) bool { return !slices.Contains(addrs, a) })
			lastAddrs = addrs
			e.conn.Rebind("local addresses changed")
			if lost {
				e.redialTCP()
			}
		}
		e.mu.Lock()
		rm := e.relayMap
		e.mu.Unlock()
		if rm == nil {
			continue
		}
		r, err := e.nc.GetReport(e.ctx, rm)
		if err != nil {
			if e.ctx.Err() == nil {
				e.log.Warn("network check failed", "err", err)
			}
			continue
		}
		e.useReport(r)
	}
}

// redialTCP makes the relay and control connections connect again: after
// a local address went away, a connection from it is dead, and its
// keepalive would notice only minutes later.
func (e *Engine) redialTCP() {
	e.log.Info("a local address went away; reconnecting to relays and control")
	e.relays.Redial()
	if r, ok := e.cfg.Publisher.(interface{ Redial() }); ok {
		r.Redial()
	}
}

// addrPollInterval is how often the engine looks for changed local
// addresses.
const addrPollInterval = 2 * time.Second

// kickNetcheck asks the netcheck loop for a report now.
func (e *Engine) kickNetcheck() {
	select {
	case e.recheck <- struct{}{}:
	default:
	}
}

// Rebind tells the engine the local network changed: magicsock looks for
// paths again and a fresh network check runs.
func (e *Engine) Rebind(reason string) {
	e.conn.Rebind(reason)
	e.kickNetcheck()
}

// useReport gives a report to magicsock (public endpoints, hard NAT),
// picks the home region and publishes host facts and endpoints.
func (e *Engine) useReport(r *netcheck.Report) {
	e.log.Debug("network report", "udp", r.UDP, "v4", r.GlobalV4, "hard_nat", r.HardNAT(), "preferred", r.PreferredRegion)
	e.mu.Lock()
	first := e.report == nil
	e.report = r
	e.mu.Unlock()
	// SetNetReport publishes endpoints through onEndpoints if they
	// changed; the home region is chosen first so they go out together.
	e.ensureHome(r.RegionLatency)
	e.conn.SetNetReport(magicsock.NetReport{
		MappingVariesByDestIP: r.HardNAT(),
		GlobalV4:              r.GlobalV4,
		GlobalV6:              r.GlobalV6,
	})
	if first {
		// Discovery that ran before the first report knew neither our
		// public endpoint nor our NAT's kind, so it could not start a
		// port-guessing round; run it again now rather than at the
		// next discovery interval.
		e.conn.Rebind("first network report")
	}
	e.publishHostinfo(r.NetInfo())
	e.publishEndpoints()
}

// publishHostinfo sends our host facts with ni if what peers act on
// changed. Every change is fanned out to every peer, so latencies that
// move by a millisecond between reports must not cause one each time.
func (e *Engine) publishHostinfo(ni *wire.NetInfo) {
	if e.cfg.Hostinfo == nil || e.cfg.Publisher == nil {
		return
	}
	e.pubMu.Lock()
	defer e.pubMu.Unlock()
	if e.pubNetInfo != nil && !netInfoChanged(e.pubNetInfo, ni) {
		return
	}
	e.pubNetInfo = ni
	hi := *e.cfg.Hostinfo
	hi.NetInfo = ni
	e.cfg.Publisher.SetHostinfo(&hi)
}

// netInfoChanged reports whether b differs from a in what matters to
// peers: NAT kind, UDP, preferred region, or which regions answered.
func netInfoChanged(a, b *wire.NetInfo) bool {
	if a.MappingVariesByDestIP != b.MappingVariesByDestIP || a.UDP != b.UDP || a.PreferredRegion != b.PreferredRegion {
		return true
	}
	if len(a.RegionLatencyMS) != len(b.RegionLatencyMS) {
		return true
	}
	for id := range a.RegionLatencyMS {
		if _, ok := b.RegionLatencyMS[id]; !ok {
			return true
		}
	}
	return false
}

// ensureHome picks the home region from latencies with hysteresis; with
// no measurement yet it takes the lowest region of the relay map, so the
// node is reachable through a relay from its first moment up.
func (e *Engine) ensureHome(latencies map[int]time.Duration) {
	e.mu.Lock()
	cur, rm := e.home, e.relayMap
	e.mu.Unlock()
	if rm == nil || len(rm.Regions) == 0 {
		return
	}
	home := relay.ChooseHome(cur, latencies)
	if home == 0 || rm.Regions[home] == nil {
		home = slices.Min(slices.Collect(maps.Keys(rm.Regions)))
	}
	if home == cur && e.relays.Home() == home {
		return
	}
	if err := e.relays.SetHome(home); err != nil {
		e.log.Warn("setting home relay region", "region", home, "err", err)
		return
	}
	e.log.Info("home relay region", "region", home, "was", cur)
	e.mu.Lock()
	e.home = home
	e.mu.Unlock()
	e.publishEndpoints()
}

// onEndpoints is magicsock's callback when our endpoints change.
func (e *Engine) onEndpoints(eps []netip.AddrPort) {
	e.mu.Lock()
	e.eps = eps
	e.mu.Unlock()
	e.publishEndpoints()
}

func (e *Engine) publishEndpoints() {
	if e.cfg.Publisher == nil {
		return
	}
	e.mu.Lock()
	eps, home := slices.Clone(e.eps), e.home
	e.mu.Unlock()
	// pubMu orders publications, so an older set never overtakes a
	// newer one, and drops repeats of the last one.
	e.pubMu.Lock()
	defer e.pubMu.Unlock()
	if e.pubSent && home == e.pubHome && slices.Equal(eps, e.pubEps) {
		return
	}
	e.pubSent, e.pubEps, e.pubHome = true, eps, home
	e.cfg.Publisher.SetEndpoints(eps, home)
}

// relayCode is a region's short name, or "" if unknown.
func relayCode(rm *wire.RelayMap, region int) string {
	if rm == nil || rm.Regions[region] == nil {
		return ""
	}
	return rm.Regions[region].Code
}

// Netcheck measures the network now, over the engine's own socket and
// with the relay map from control, for `weft netcheck` on a node that is
// up. The report is also put to use, like one from the netcheck loop.
func (e *Engine) Netcheck(ctx context.Context) (*localapi.NetcheckResult, error) {
	e.mu.Lock()
	rm := e.relayMap
	e.mu.Unlock()
	if rm == nil {
		return nil, errors.New("the node has no relay map from the control server yet; try again in a moment, or pass --server URL")
	}
	r, err := e.nc.GetReport(ctx, rm)
	if err != nil {
		return nil, fmt.Errorf("netcheck: %w", err)
	}
	e.useReport(r)
	return &localapi.NetcheckResult{Report: r, RelayMap: rm}, nil
}

// portMapLoop keeps the data plane's UDP port mapped on the gateway, when
// the gateway speaks NAT-PMP, and publishes the mapped address as our first
// endpoint: behind a hard NAT it is what lets peers reach us directly.
func (e *Engine) portMapLoop() {
	m := &portmap.Mapper{Logger: e.log.With("sub", "portmap")}
	m.Run(e.ctx, e.conn.Port, func(ap netip.AddrPort) {
		e.conn.SetPortMapped(ap)
	})
}
