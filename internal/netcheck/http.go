package netcheck

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strconv"
	"sync"
	"time"

	"weft/internal/netutil"
	"weft/internal/wire"
)

// HTTP latency: when STUN gets no answer from a region (UDP blocked, or
// the region has no STUN port), its latency is the round trip of an HTTP
// request to a relay of the region. The path is /healthz; any HTTP answer,
// even an error status, is a complete round trip and counts.
const (
	latencyPath  = "/healthz"
	httpRequests = 3 // on one connection; the first also times the TCP connect
)

// dialFunc opens a connection, as net.Dialer.DialContext does.
type dialFunc = netutil.DialFunc

// measureHTTP measures each region concurrently and returns the best
// latency per region that answered before ctx is done.
func measureHTTP(ctx context.Context, log *slog.Logger, dial dialFunc, tc *tls.Config, regions []*wire.RelayRegion) map[int]time.Duration {
	var mu sync.Mutex
	out := map[int]time.Duration{}
	var wg sync.WaitGroup
	for _, reg := range regions {
		wg.Go(func() {
			// Try the region's relays in order; the first that answers
			// speaks for the region.
			for _, n := range reg.Nodes {
				if n == nil || n.Host == "" {
					continue
				}
				d, err := httpLatency(ctx, dial, tc, n)
				if err != nil {
					log.Debug("netcheck: HTTP latency", "region", reg.ID, "node", n.Name, "err", err)
					continue
				}
				mu.Lock()
				out[reg.ID] = d
				mu.Unlock()
				return
			}
		})
	}
	wg.Wait()
	return out
}

// relayURL is the base URL of relay n.
func relayURL(n *wire.RelayNode) string {
	scheme, port := "https", n.Port
	if n.InsecureHTTP {
		scheme = "http"
	}
	if port == 0 {
		port = 443
		if n.InsecureHTTP {
			port = 80
		}
	}
	return scheme + "://" + net.JoinHostPort(n.Host, strconv.Itoa(port))
}

// familyDialer dials n's host:port with dial (nil: net.Dialer's) and, when
// the map gives n an ipv4 or ipv6 besides, races those against it for the
// TCP connect (netutil.DialRace): a relay whose host is an IPv4
// literal is measured at its ipv6 from an IPv6-only node, and a family
// that black-holes costs a head start instead of the probe's whole time.
// The URL, the Host header and the name TLS verifies stay n's host.
func familyDialer(dial dialFunc, n *wire.RelayNode) dialFunc {
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			return dial(ctx, network, addr)
		}
		addrs := []string{addr}
		for _, a := range n.Addrs() {
			if alt := net.JoinHostPort(a.String(), port); !slices.Contains(addrs, alt) {
				addrs = append(addrs, alt)
			}
		}
		return netutil.DialRace(ctx, dial, network, netutil.InterleaveFamilies(addrs), netutil.HeadStart)
	}
}

// httpLatency returns the smallest of: the TCP connect time, and the
// durations of up to httpRequests requests on the same connection after
// the first. The TCP handshake is one round trip; a request on an open
// connection is one round trip plus the server's (tiny) work. The first
// request, which pays for TLS, is not counted. An https relay is trusted
// by tc (nil: the system's roots) with n.Host as the name to verify.
func httpLatency(ctx context.Context, dial dialFunc, tc *tls.Config, n *wire.RelayNode) (time.Duration, error) {
	tc = tc.Clone()
	if tc == nil {
		tc = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	tc.ServerName = n.Host
	tr := &http.Transport{
		DialContext:         familyDialer(dial, n),
		Proxy:               nil, // the latency to the relay, not to a proxy
		MaxIdleConnsPerHost: 1,
		TLSClientConfig:     tc,
		ForceAttemptHTTP2:   false,
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	url := relayURL(n) + latencyPath

	best := time.Duration(0)
	record := func(d time.Duration) {
		if d > 0 && (best == 0 || d < best) {
			best = d
		}
	}
	var connectStart time.Time
	trace := &httptrace.ClientTrace{
		ConnectStart: func(string, string) { connectStart = time.Now() },
		ConnectDone: func(_, _ string, err error) {
			if err == nil && !connectStart.IsZero() {
				record(time.Since(connectStart))
			}
		},
	}
	var firstErr error
	for i := range httpRequests {
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, url, nil)
		if err != nil {
			return 0, fmtErr("HTTP latency", err)
		}
		start := time.Now()
		resp, err := hc.Do(req)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			break
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if i > 0 {
			record(time.Since(start))
		}
	}
	var untrusted *tls.CertificateVerificationError
	if best == 0 || errors.As(firstErr, &untrusted) {
		// A relay whose certificate this node does not trust cannot
		// carry its traffic: its TCP connect time does not count.
		if firstErr == nil {
			firstErr = context.DeadlineExceeded
		}
		return 0, fmtErr("HTTP latency to "+url, firstErr)
	}
	return best, nil
}
