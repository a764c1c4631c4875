// Package sampler takes a node's health samples: every interval it pings
// each online peer, reads the data plane's view of the network, times a
// connection to each probe target, reads the host's facts, and appends the
// result to a samples.Store. docs/health.md lists the metrics.
package sampler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"syscall"
	"time"

	"weft/internal/hostfacts"
	"weft/internal/localapi"
	"weft/internal/samples"
	"weft/internal/wire"
)

// DefaultInterval is the time between samples: the seed's owner sampled
// every 5 minutes.
const DefaultInterval = 5 * time.Minute

// firstWithin bounds the wait for the first sample after start.
const firstWithin = 30 * time.Second

// probeTimeout bounds one ping or probe connection.
const probeTimeout = 5 * time.Second

// Source is what the sampler reads from the node daemon.
type Source interface {
	Status(ctx context.Context) (*localapi.Status, error)
	Ping(ctx context.Context, req localapi.PingRequest) (*localapi.PingResult, error)
	// Network is the data plane's last network report; nil before the
	// first one or while the node is down.
	Network() *localapi.NetworkSummary
}

// Config configures a Sampler.
type Config struct {
	// Source is the node daemon. Required.
	Source Source
	// Store receives the samples. Required.
	Store *samples.Store
	// Interval is the time between samples; zero means DefaultInterval.
	Interval time.Duration
	// Probes are extra host:port targets whose TCP connection time is
	// sampled, besides the control server.
	Probes []string
	// Dial makes the probe connections; nil uses a net.Dialer. The
	// daemon's dialer carries weft's socket mark, so an exit node does
	// not carry the probes.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// TunnelPort is a TCP port on peers' tailnet addresses (the speed
	// test's) whose handshake times a round trip through the tunnel,
	// WireGuard included: peer_tunnel_rtt_ms. A refused connection
	// times it as well. Zero measures none.
	TunnelPort int
	// TunnelDial makes those connections; nil uses a net.Dialer.
	TunnelDial func(ctx context.Context, network, addr string) (net.Conn, error)
	// HostFacts reads the host's facts; nil means hostfacts.Read.
	HostFacts func() map[string]float64
	// Report sends samples to the control server; nil reports none. It
	// fails while the node is not connected; the samples then wait,
	// at most maxPending of them, for the next try.
	Report func([]wire.HealthSample) error
	// Logger receives warnings; nil discards them.
	Logger *slog.Logger
}

// Reporting: samples go to the control server in batches of reportBatch,
// or at least every reportEvery; at most maxPending wait while the
// server is unreachable (the oldest are dropped first).
const (
	reportBatch = 12 // an hour of 5-minute samples
	reportEvery = 15 * time.Minute
	maxPending  = 2000
)

// Sampler takes samples; make one with New and run it with Run.
type Sampler struct {
	cfg Config
	log *slog.Logger
	// last holds each peer's byte counters at the previous sample, so a
	// sample carries the bytes since then. Only the Run goroutine (or a
	// caller of Take, never both) touches it.
	last map[string][2]int64
	// pending are samples not reported yet, and lastReport when a batch
	// last went out; only the Run goroutine touches them.
	pending    []wire.HealthSample
	lastReport time.Time
}

// New checks cfg and fills its defaults.
func New(cfg Config) (*Sampler, error) {
	if cfg.Source == nil || cfg.Store == nil {
		return nil, fmt.Errorf("sampler: Source and Store are required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Dial == nil {
		cfg.Dial = (&net.Dialer{}).DialContext
	}
	if cfg.TunnelDial == nil {
		cfg.TunnelDial = (&net.Dialer{}).DialContext
	}
	if cfg.HostFacts == nil {
		cfg.HostFacts = hostfacts.Read
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Sampler{cfg: cfg, log: cfg.Logger, last: map[string][2]int64{}}, nil
}

// Run takes the first sample within firstWithin (or one interval, if
// shorter) and then one every interval until ctx ends. A sample that
// cannot be written (a full disk) is logged; sampling goes on.
func (s *Sampler) Run(ctx context.Context) {
	first := time.NewTimer(min(s.cfg.Interval, firstWithin))
	defer first.Stop()
	select {
	case <-ctx.Done():
		return
	case <-first.C:
	}
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		smp := s.Take(ctx)
		if ctx.Err() != nil {
			return
		}
		if err := s.cfg.Store.Append(smp); err != nil {
			s.log.Warn("health sample not recorded", "err", err)
		}
		s.report(smp)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Take measures one sample now. What cannot be measured is left out.
func (s *Sampler) Take(ctx context.Context) wire.HealthSample {
	smp := wire.HealthSample{Time: time.Now().UTC(), Metrics: map[string]float64{}, Facts: map[string]string{}}
	var mu sync.Mutex // guards smp's maps while the measurements run
	set := func(name string, v float64) {
		mu.Lock()
		smp.Metrics[name] = v
		mu.Unlock()
	}
	st, err := s.cfg.Source.Status(ctx)
	if err != nil {
		s.log.Debug("health sample: status", "err", err)
		st = &localapi.Status{}
	}
	var wg sync.WaitGroup
	if st.BackendState == localapi.StateRunning {
		for _, p := range st.Peers {
			if p == nil || p.Node == nil || !p.Online {
				continue
			}
			s.peerBytes(p, set)
			wg.Add(2)
			go func() {
				defer wg.Done()
				s.pingPeer(ctx, p.Name, set)
			}()
			go func() {
				defer wg.Done()
				s.tunnelPing(ctx, p, set)
			}()
		}
	}
	for _, target := range s.targets(st) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.probe(ctx, target, set)
		}()
	}
	if ns := s.cfg.Source.Network(); ns != nil {
		set("udp", boolMetric(ns.UDP))
		for code, ms := range ns.RelayRTTMS {
			set("relay_rtt_ms:"+code, ms)
		}
		if ns.PublicAddr != "" {
			smp.Facts["public_addr"] = ns.PublicAddr
		}
	}
	for k, v := range s.cfg.HostFacts() {
		set(k, v)
	}
	wg.Wait()
	return smp
}

func boolMetric(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// peerBytes records the bytes from and to p since the last sample. A
// counter that went down started again (the node went down and up): its
// value is all there is since.
func (s *Sampler) peerBytes(p *localapi.PeerStatus, set func(string, float64)) {
	prev := s.last[p.Name]
	rx, tx := p.RxBytes-prev[0], p.TxBytes-prev[1]
	if rx < 0 || tx < 0 {
		rx, tx = p.RxBytes, p.TxBytes
	}
	s.last[p.Name] = [2]int64{p.RxBytes, p.TxBytes}
	set("peer_rx_bytes:"+p.Name, float64(rx))
	set("peer_tx_bytes:"+p.Name, float64(tx))
}

// pingPeer records a disco ping's round trip and the path its pong came
// over (peer_direct is 1 for direct, 0 for relay).
func (s *Sampler) pingPeer(ctx context.Context, name string, set func(string, float64)) {
	pctx, cancel := context.WithTimeout(ctx, min(s.cfg.Interval, probeTimeout))
	defer cancel()
	res, err := s.cfg.Source.Ping(pctx, localapi.PingRequest{Peer: name})
	if err != nil {
		s.log.Debug("health sample: ping", "peer", name, "err", err)
		return
	}
	set("peer_rtt_ms:"+name, res.RTTMS)
	set("peer_direct:"+name, boolMetric(res.Path.Kind == localapi.PathDirect))
}

// tunnelPing times a TCP handshake with the peer's tailnet address:
// through the TUN, WireGuard and back, as the peer's applications see it.
// A refusal (a peer without the port open) is an answer too.
func (s *Sampler) tunnelPing(ctx context.Context, p *localapi.PeerStatus, set func(string, float64)) {
	if s.cfg.TunnelPort == 0 {
		return
	}
	var addr netip.Addr
	for _, a := range p.Addresses {
		if a.Addr().Is4() {
			addr = a.Addr()
		}
	}
	if !addr.IsValid() {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, min(s.cfg.Interval, probeTimeout))
	defer cancel()
	start := time.Now()
	c, err := s.cfg.TunnelDial(pctx, "tcp", net.JoinHostPort(addr.String(), strconv.Itoa(s.cfg.TunnelPort)))
	rtt := time.Since(start)
	switch {
	case err == nil:
		c.Close()
	case !errors.Is(err, syscall.ECONNREFUSED):
		s.log.Debug("health sample: tunnel ping", "peer", p.Name, "err", err)
		return
	}
	set("peer_tunnel_rtt_ms:"+p.Name, float64(rtt.Microseconds())/1000)
}

// targets are the probe targets: the control server, then the configured
// ones.
func (s *Sampler) targets(st *localapi.Status) []string {
	var out []string
	if hp := hostPort(st.ServerURL); hp != "" {
		out = append(out, hp)
	}
	return append(out, s.cfg.Probes...)
}

// hostPort is a URL's host:port, with the scheme's default port.
func hostPort(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Hostname() == "" {
		return ""
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// probe records how long a TCP connection to target takes to open: one
// round trip, as a ping would measure, without needing raw sockets.
func (s *Sampler) probe(ctx context.Context, target string, set func(string, float64)) {
	pctx, cancel := context.WithTimeout(ctx, min(s.cfg.Interval, probeTimeout))
	defer cancel()
	start := time.Now()
	c, err := s.cfg.Dial(pctx, "tcp", target)
	if err != nil {
		s.log.Debug("health sample: probe", "target", target, "err", err)
		return
	}
	rtt := time.Since(start)
	c.Close()
	set("probe_rtt_ms:"+target, float64(rtt.Microseconds())/1000)
}

// report queues smp for the control server and sends the queue when a
// batch is full or has waited reportEvery.
func (s *Sampler) report(smp wire.HealthSample) {
	if s.cfg.Report == nil {
		return
	}
	s.pending = append(s.pending, smp)
	if n := len(s.pending) - maxPending; n > 0 {
		s.pending = append([]wire.HealthSample(nil), s.pending[n:]...)
	}
	if len(s.pending) < reportBatch && time.Since(s.lastReport) < reportEvery {
		return
	}
	if err := s.cfg.Report(s.pending); err != nil {
		s.log.Debug("health samples not reported yet", "pending", len(s.pending), "err", err)
		return
	}
	s.pending, s.lastReport = nil, time.Now()
}
