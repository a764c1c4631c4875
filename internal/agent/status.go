package agent

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"weft/internal/controlclient"
	"weft/internal/inflight"
	"weft/internal/key"
	"weft/internal/localapi"
	"weft/internal/magicsock"
	"weft/internal/netcheck"
	"weft/internal/netstack"
	"weft/internal/wire"
)

// KeyExpiryWarning is how long before the node key expires status starts
// to warn about it.
const KeyExpiryWarning = 7 * 24 * time.Hour

// wgPeerStats is what wireguard-go counts for one peer.
type wgPeerStats struct {
	rx, tx        int64
	lastHandshake time.Time
}

// parseIpcGet reads the per-peer counters from wireguard-go's UAPI "get"
// text.
func parseIpcGet(s string) map[[32]byte]wgPeerStats {
	out := map[[32]byte]wgPeerStats{}
	var cur [32]byte
	var st wgPeerStats
	var sec, nsec int64
	have := false
	flush := func() {
		if have {
			if sec != 0 || nsec != 0 {
				st.lastHandshake = time.Unix(sec, nsec)
			}
			out[cur] = st
		}
	}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		switch k {
		case "public_key":
			flush()
			b, err := hex.DecodeString(v)
			have = err == nil && len(b) == 32
			copy(cur[:], b)
			st, sec, nsec = wgPeerStats{}, 0, 0
		case "rx_bytes":
			st.rx, _ = strconv.ParseInt(v, 10, 64)
		case "tx_bytes":
			st.tx, _ = strconv.ParseInt(v, 10, 64)
		case "last_handshake_time_sec":
			sec, _ = strconv.ParseInt(v, 10, 64)
		case "last_handshake_time_nsec":
			nsec, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	flush()
	return out
}

// path turns magicsock's path into the local API's.
func path(pi magicsock.PathInfo, rm *wire.RelayMap) localapi.Path {
	p := localapi.Path{Kind: string(pi.Kind)}
	switch pi.Kind {
	case magicsock.PathDirect:
		p.Endpoint = pi.Endpoint.String()
		p.MTU = pi.MTU
	case magicsock.PathRelay:
		p.RelayRegion = pi.RelayRegion
		p.RelayCode = relayCode(rm, pi.RelayRegion)
	default:
		p.Kind = localapi.PathNone
	}
	return p
}

// FillStatus adds each peer's path, RTT, counters and last handshake to
// st, and the data plane's health problems.
func (e *Engine) FillStatus(st *localapi.Status) {
	e.mu.Lock()
	closed, rm, report, home, nm := e.closed, e.relayMap, e.report, e.home, e.nm
	e.mu.Unlock()
	if closed {
		return
	}
	var stats map[[32]byte]wgPeerStats
	if s, err := e.dev.IpcGet(); err == nil {
		stats = parseIpcGet(s)
	}
	for _, p := range st.Peers {
		if p.Node == nil {
			continue
		}
		if ps, ok := e.conn.PeerStatus(p.NodeKey); ok {
			p.Path = path(ps.Path, rm)
			if ps.Path.Kind == magicsock.PathRelay && !ps.Active {
				// Nothing was sent to the peer lately, so nothing
				// goes through the relay and no direct path is
				// being looked for: idle, not "on the relay",
				// which would read as if NAT traversal had failed.
				p.Path = localapi.Path{Kind: localapi.PathNone}
			}
			if ps.Path.Kind == magicsock.PathDirect && ps.RTT > 0 {
				p.RTTMS = float64(ps.RTT.Microseconds()) / 1000
			}
		}
		if ws, ok := stats[p.NodeKey.Raw32()]; ok {
			p.RxBytes, p.TxBytes, p.LastHandshake = ws.rx, ws.tx, ws.lastHandshake
		}
	}
	st.Health = append(st.Health, e.health(rm, report, home, nm, time.Now())...)
	st.Health = append(st.Health, e.routeHealth(nm)...)
	st.Health = append(st.Health, e.dns.health(time.Now())...)
	st.Drops = e.drops()
	st.Buffers = e.buffers()
	st.Netstack = e.netstackStats()
	ds := e.dns.Status()
	st.DNS = &ds
}

// drops gathers the data plane's refusal counters.
func (e *Engine) drops() *localapi.Drops {
	d := &localapi.Drops{}
	n, err := e.router.IntoTunnelDrops()
	if err != nil {
		e.log.Debug("reading the into-tunnel drop counter", "err", err)
	}
	d.IntoTunnel = n
	d.FromTunnel = e.guard.drops.Load()
	d.Filter = e.filter.Drops()
	return d
}

// buffers reports the in-flight bound's counters.
func (e *Engine) buffers() *localapi.BufferStats {
	s := e.bound.Stats()
	return &localapi.BufferStats{
		Max:            s.Max,
		InFlightOut:    s.InFlight[inflight.Out],
		InFlightIn:     s.InFlight[inflight.In],
		WaitsOut:       s.Waits[inflight.Out],
		WaitsIn:        s.Waits[inflight.In],
		ForgottenOut:   s.Forgotten[inflight.Out],
		ForgottenIn:    s.Forgotten[inflight.In],
		RelayedDrops:   e.conn.InjectDrops(),
		RelaySendDrops: e.relays.SendDrops(),
		IdleReleases:   e.idle.Stats().Releases,
	}
}

// health lists the data plane's problems in plain words.
func (e *Engine) health(rm *wire.RelayMap, report *netcheck.Report, home int, nm *controlclient.NetMap, now time.Time) []string {
	var out []string
	if rm == nil || len(rm.Regions) == 0 {
		out = append(out, "no relay map from the control server yet: peers that cannot be reached directly are unreachable")
	} else {
		reachable := false
		var lastErr string
		for _, rs := range e.relays.Status() {
			if rs.Connected {
				reachable = true
			} else if rs.Home && rs.LastError != "" {
				lastErr = rs.LastError
			}
		}
		if !reachable && home != 0 {
			msg := "no relay reachable"
			if lastErr != "" {
				msg += " (" + lastErr + ")"
			}
			out = append(out, msg+": peers behind strict NATs or firewalls cannot be reached until one is")
		}
	}
	if report != nil {
		if ni := report.NetInfo(); !ni.UDP {
			out = append(out, "UDP is blocked on this network: every peer is reached through the relay, which is slower")
		}
	}
	if nm != nil && nm.Self != nil && !nm.Self.KeyExpiry.IsZero() {
		left := nm.Self.KeyExpiry.Sub(now)
		switch {
		case left <= 0:
			out = append(out, "this node's key has expired: run `weft up --auth-key KEY` to log in again")
		case left < KeyExpiryWarning:
			out = append(out, fmt.Sprintf("this node's key expires in %s: run `weft up --auth-key KEY` to renew it", left.Round(time.Hour)))
		}
	}
	return out
}

// Ping sends one disco ping to the peer named by req.Peer (its name or a
// tailnet address) and reports the path its pong came back over.
func (e *Engine) Ping(ctx context.Context, req localapi.PingRequest) (*localapi.PingResult, error) {
	e.mu.Lock()
	nm, rm := e.nm, e.relayMap
	e.mu.Unlock()
	if nm == nil {
		return nil, fmt.Errorf("no peer map yet: wait for the node to connect")
	}
	n := findPeer(nm, req.Peer)
	if n == nil {
		return nil, localapi.Permanent(fmt.Errorf("no peer %q in the tailnet: see `weft status` for names and addresses", req.Peer))
	}
	res, err := e.conn.Ping(ctx, n.NodeKey)
	if errors.Is(err, magicsock.ErrNoPath) {
		return nil, noPathError(n, time.Now())
	}
	if err != nil {
		return nil, err
	}
	out := &localapi.PingResult{Name: n.Name, Path: path(res.Path, rm), RTTMS: float64(res.RTT.Microseconds()) / 1000}
	for _, a := range n.Addresses {
		if out.Address == "" || a.Addr().Is4() {
			out.Address = a.Addr().String()
		}
	}
	return out, nil
}

// noPathError says in plain words why a ping could not even be sent to n:
// no direct path and no relay region to reach it through, most often
// because it is offline.
func noPathError(n *wire.Node, now time.Time) error {
	if !n.Online {
		seen := ""
		if !n.LastSeen.IsZero() {
			seen = fmt.Sprintf(" (last seen %s ago)", now.Sub(n.LastSeen).Round(time.Second))
		}
		return fmt.Errorf("%s is offline%s: no direct path to it and no relay knows where it is; try again once it is back", n.Name, seen)
	}
	return fmt.Errorf("no way to reach %s yet: no direct path and no relay region for it; `weft status` and `weft netcheck` show why", n.Name)
}

// findPeer finds a peer by name or tailnet address.
func findPeer(nm *controlclient.NetMap, s string) *wire.Node {
	for _, n := range nm.SortedPeers() {
		if n.Matches(s) {
			return n
		}
		if k, err := key.ParsePublic[key.NodeKind](s); err == nil && k == n.NodeKey {
			return n
		}
	}
	return nil
}

// netstackStats reports a userspace stack's counters; nil in kernel mode.
func (e *Engine) netstackStats() *localapi.NetstackStats {
	ns, ok := e.router.(*netstack.Stack)
	if !ok {
		return nil
	}
	s := ns.Stats()
	return &localapi.NetstackStats{
		LinkHanded:         s.LinkHanded,
		LinkRead:           s.LinkRead,
		LinkDrops:          s.LinkDrops,
		LinkWaits:          s.LinkWaits,
		TCPRetransmits:     s.TCPRetransmits,
		TCPTimeouts:        s.TCPTimeouts,
		TCPFastRetransmits: s.TCPFastRetransmits,
	}
}
