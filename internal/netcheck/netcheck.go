// Package netcheck measures what a node's network allows: whether UDP gets
// out, the public address:port the NAT maps it to, whether that mapping
// changes with the destination (a "hard" NAT, which defeats hole punching),
// the latency to every relay region, and which port-mapping protocols the
// gateway speaks. docs/netcheck.md describes the method and the report.
//
// A Client either opens its own UDP sockets (the `weft netcheck` command)
// or sends through the caller's socket (the node's path-finding UDP conn),
// so that the mapping reported is the one of the socket WireGuard uses.
package netcheck

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"weft/internal/portmap"
	"weft/internal/wire"
)

// Defaults for the Client's zero-valued fields.
const (
	// DefaultTimeout bounds a whole report.
	DefaultTimeout = 3 * time.Second
	// DefaultSTUNTimeout bounds the STUN phase; regions that have not
	// answered by then are measured over HTTP in the time that is left.
	DefaultSTUNTimeout = time.Second
)

// Report is one network report. Its JSON form is the output of
// `weft netcheck --json` and is documented in docs/netcheck.md.
type Report struct {
	// UDP is true when at least one STUN server answered.
	UDP bool `json:"udp"`
	// IPv4 and IPv6 say whether a STUN answer came over that family.
	IPv4 bool `json:"ipv4"`
	IPv6 bool `json:"ipv6"`
	// GlobalV4 and GlobalV6 are the public address:port STUN servers saw
	// (from the nearest server that answered); empty when unknown.
	GlobalV4 netip.AddrPort `json:"global_v4"`
	GlobalV6 netip.AddrPort `json:"global_v6"`
	// MappingVariesByDestIP is true when two STUN servers (distinct
	// address:port) saw different public IPv4 address:ports for the same
	// local socket. Nil (JSON null) means unknown: fewer than two servers
	// answered over IPv4.
	MappingVariesByDestIP *bool `json:"mapping_varies_by_dest_ip"`
	// PreferredRegion is the region with the lowest latency (with
	// hysteresis against the Client's previous report); 0 when no region
	// answered.
	PreferredRegion int `json:"preferred_region"`
	// RegionLatencyMS is the best round-trip time to each region that
	// answered, in milliseconds.
	RegionLatencyMS map[int]float64 `json:"region_latency_ms"`
	// RegionLatencyVia says how each region's latency was measured:
	// "stun" or "http".
	RegionLatencyVia map[int]string `json:"region_latency_via"`
	// UPnP, PMP and PCP say whether the gateway answered each
	// port-mapping protocol. They are false when not probed.
	UPnP bool `json:"upnp"`
	PMP  bool `json:"pmp"`
	PCP  bool `json:"pcp"`

	// RegionLatency is RegionLatencyMS at full precision.
	RegionLatency map[int]time.Duration `json:"-"`
}

// UnmarshalJSON reads a report written by encoding/json (the daemon's
// local API sends them) and restores RegionLatency from RegionLatencyMS.
func (r *Report) UnmarshalJSON(b []byte) error {
	type plain Report
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*r = Report(p)
	r.RegionLatency = make(map[int]time.Duration, len(r.RegionLatencyMS))
	for id, ms := range r.RegionLatencyMS {
		if ms >= 0 && ms < float64(time.Hour/time.Millisecond) {
			r.RegionLatency[id] = time.Duration(ms * float64(time.Millisecond))
		}
	}
	return nil
}

// HardNAT reports whether the mapping is known to vary by destination.
func (r *Report) HardNAT() bool {
	return r.MappingVariesByDestIP != nil && *r.MappingVariesByDestIP
}

// NetInfo summarises r in the form a node sends to the control server.
func (r *Report) NetInfo() *wire.NetInfo {
	ni := &wire.NetInfo{
		MappingVariesByDestIP: r.HardNAT(),
		UDP:                   r.UDP,
		PreferredRegion:       r.PreferredRegion,
	}
	if len(r.RegionLatency) > 0 {
		ni.RegionLatencyMS = make(map[int]int, len(r.RegionLatency))
		for id, d := range r.RegionLatency {
			ni.RegionLatencyMS[id] = int(math.Ceil(float64(d) / float64(time.Millisecond)))
		}
	}
	return ni
}

// setLatency records d for region unless a better one is known.
func (r *Report) setLatency(region int, d time.Duration, via string) {
	if old, ok := r.RegionLatency[region]; ok && old <= d {
		return
	}
	r.RegionLatency[region] = d
	r.RegionLatencyMS[region] = math.Round(float64(d)/float64(time.Millisecond)*10) / 10
	r.RegionLatencyVia[region] = via
}

// PortMapper probes the gateway's port-mapping protocols;
// *portmap.Prober implements it.
type PortMapper interface {
	Probe(ctx context.Context) (portmap.Result, error)
}

var _ PortMapper = (*portmap.Prober)(nil)

// Client produces network reports. Its zero value opens its own sockets
// and does not probe port mapping. A Client may be reused; it remembers
// the previous preferred region for hysteresis. GetReport calls are
// serialised.
type Client struct {
	// Logger receives debug lines about each phase. Nil discards.
	Logger *slog.Logger
	// SendPacket, when set, sends STUN requests through the caller's
	// socket instead of sockets the Client opens; the caller must then
	// hand every STUN packet it receives to ReceiveSTUNPacket. It must
	// not block for long.
	SendPacket func(pkt []byte, dst netip.AddrPort) error
	// DialContext, when set, opens the HTTP latency probes' connections,
	// so a daemon can give them the mark that keeps them out of its own
	// tunnel (an exit node would otherwise carry them). Nil uses
	// net.Dialer.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// TLSConfig is whom the HTTPS latency probes trust: the node's trust
	// (the system's roots and a private CA given with --ca-file, built by
	// netutil.TrustTLS), so a relay with a private CA's certificate is
	// measured, not refused. Nil trusts the system's roots. On a Client in
	// use, change it with SetTLSConfig.
	TLSConfig *tls.Config
	// PortMapper, when set, is run alongside the STUN probes. Nil skips
	// the port-mapping probe (its fields in the report stay false).
	PortMapper PortMapper
	// Timeout bounds a whole report; zero means DefaultTimeout.
	Timeout time.Duration
	// STUNTimeout bounds the STUN phase; zero means DefaultSTUNTimeout.
	STUNTimeout time.Duration

	reportMu sync.Mutex // held for a whole GetReport

	mu            sync.Mutex
	inflight      map[txID]*stunTx // guarded by mu
	lastPreferred int              // guarded by mu
}

// SetTLSConfig replaces TLSConfig on a Client that may be in use: the next
// report's HTTPS probes trust tc (`weft up --ca-file` on a running node).
func (c *Client) SetTLSConfig(tc *tls.Config) {
	c.mu.Lock()
	c.TLSConfig = tc
	c.mu.Unlock()
}

// Errors returned by GetReport.
var (
	ErrNoRelayMap = errors.New("netcheck: relay map is empty")
)

func (c *Client) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

// GetReport measures the network against the relay map rm. It returns
// within the Client's Timeout (or earlier when ctx is done); a region or
// probe that does not answer in time is simply absent from the report.
// The error is non-nil only when no measurement could be attempted.
func (c *Client) GetReport(ctx context.Context, rm *wire.RelayMap) (*Report, error) {
	if rm == nil || len(rm.Regions) == 0 {
		return nil, ErrNoRelayMap
	}
	c.reportMu.Lock()
	defer c.reportMu.Unlock()

	timeout := cmp.Or(c.Timeout, DefaultTimeout)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	log := c.logger()

	r := &Report{
		RegionLatencyMS:  map[int]float64{},
		RegionLatencyVia: map[int]string{},
		RegionLatency:    map[int]time.Duration{},
	}

	pmCh := c.startPortMapProbe(ctx, log)
	c.measureSTUN(ctx, log, rm, r)
	c.measureMissingOverHTTP(ctx, log, rm, r)

	if pmCh != nil {
		select {
		case pm := <-pmCh:
			r.UPnP, r.PMP, r.PCP = pm.UPnP, pm.PMP, pm.PCP
		case <-ctx.Done():
			log.Debug("netcheck: port mapping probe overran the report's deadline")
		}
	}

	c.mu.Lock()
	r.PreferredRegion = PreferredRegion(r.RegionLatency, c.lastPreferred)
	if r.PreferredRegion != 0 {
		c.lastPreferred = r.PreferredRegion
	}
	c.mu.Unlock()
	return r, nil
}

// startPortMapProbe starts the port-mapping probe alongside everything
// else, if there is a PortMapper; nil otherwise. Its channel is buffered
// so that a prober that overruns the deadline finishes on its own instead
// of holding up the report.
func (c *Client) startPortMapProbe(ctx context.Context, log *slog.Logger) chan portmap.Result {
	if c.PortMapper == nil {
		return nil
	}
	pmCh := make(chan portmap.Result, 1)
	go func() {
		res, err := c.PortMapper.Probe(ctx)
		if err != nil {
			log.Debug("netcheck: port mapping probe", "err", err)
		}
		pmCh <- res
	}()
	return pmCh
}

// measureSTUN probes the regions' STUN servers and fills r with what
// answered.
func (c *Client) measureSTUN(ctx context.Context, log *slog.Logger, rm *wire.RelayMap, r *Report) {
	targets := resolveTargets(ctx, log, rm)
	if len(targets) == 0 {
		return
	}
	send := c.SendPacket
	if send == nil {
		socks, err := openSockets(targets, c.ReceiveSTUNPacket)
		if err != nil {
			log.Debug("netcheck: no UDP socket", "err", err)
			return
		}
		defer socks.close()
		send = socks.send
	}
	stunCtx, stunCancel := context.WithTimeout(ctx, cmp.Or(c.STUNTimeout, DefaultSTUNTimeout))
	answers := c.probeSTUN(stunCtx, send, targets)
	stunCancel()
	summarise(r, answers)
}

// measureMissingOverHTTP measures, over HTTP in the time left, the regions
// STUN could not measure (UDP blocked, or no STUN port).
func (c *Client) measureMissingOverHTTP(ctx context.Context, log *slog.Logger, rm *wire.RelayMap, r *Report) {
	var missing []*wire.RelayRegion
	for _, id := range slices.Sorted(maps.Keys(rm.Regions)) {
		if _, ok := r.RegionLatency[id]; !ok && rm.Regions[id] != nil {
			missing = append(missing, rm.Regions[id])
		}
	}
	if len(missing) == 0 {
		return
	}
	c.mu.Lock()
	tc := c.TLSConfig
	c.mu.Unlock()
	for id, d := range measureHTTP(ctx, log, c.DialContext, tc, missing) {
		r.setLatency(id, d, "http")
	}
}

// summarise fills r's STUN-derived fields from the answers.
func summarise(r *Report, answers []stunAnswer) {
	// The nearest answer gives the global address; answers are sorted by
	// RTT so the first of each family wins.
	slices.SortStableFunc(answers, func(a, b stunAnswer) int { return cmp.Compare(a.rtt, b.rtt) })
	v4ByServer := map[netip.AddrPort]netip.AddrPort{}
	varies := false
	for _, a := range answers {
		r.UDP = true
		r.setLatency(a.target.region, a.rtt, "stun")
		if a.target.addr.Addr().Is4() {
			if !r.IPv4 {
				r.IPv4, r.GlobalV4 = true, a.mapped
			}
			if prev, ok := v4ByServer[a.target.addr]; ok && prev != a.mapped {
				// One server saw two mappings for one socket: the
				// NAT re-mapped between tries. Count it as varying.
				varies = true
			}
			v4ByServer[a.target.addr] = a.mapped
		} else {
			if !r.IPv6 {
				r.IPv6, r.GlobalV6 = true, a.mapped
			}
		}
	}
	if len(v4ByServer) >= 2 {
		seen := map[netip.AddrPort]bool{}
		for _, m := range v4ByServer {
			seen[m] = true
		}
		varies = varies || len(seen) > 1
		r.MappingVariesByDestIP = &varies
	} else if varies {
		r.MappingVariesByDestIP = &varies
	}
}

// PreferredRegion picks the region with the lowest latency, except that
// it keeps prev while prev is not much worse than the best: switching
// home region costs a reconnect, so a few milliseconds of jitter must not
// cause one. "Much worse" is more than half again the best latency and
// more than 10ms. Ties go to the lower region ID. It returns 0 when
// latency is empty.
func PreferredRegion(latency map[int]time.Duration, prev int) int {
	best := 0
	for _, id := range slices.Sorted(maps.Keys(latency)) {
		if best == 0 || latency[id] < latency[best] {
			best = id
		}
	}
	if best == 0 || prev == 0 || prev == best {
		return best
	}
	p, ok := latency[prev]
	if !ok {
		return best
	}
	b := latency[best]
	if p <= b+b/2 || p-b <= 10*time.Millisecond {
		return prev
	}
	return best
}

// fmtErr wraps err with the package prefix.
func fmtErr(op string, err error) error { return fmt.Errorf("netcheck: %s: %w", op, err) }
