//go:build linux

package agent_test

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"time"

	"weft/internal/localapi"
)

// every calls f every interval until ctx ends: the clock of the lab
// benchmarks' datagram senders and path watchers.
func every(ctx context.Context, interval time.Duration, f func()) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		f()
	}
}

// listenUDPPair opens the two ends of a tailnet UDP flow: rx on toHost at
// to, and tx on fromHost at from (any port). The caller closes both.
func listenUDPPair(n *labNet, fromHost string, from netip.Addr, toHost string, to netip.AddrPort) (tx, rx *net.UDPConn, err error) {
	rx, err = n.lab.Node(toHost).ListenUDP(to)
	if err != nil {
		return nil, nil, err
	}
	tx, err = n.lab.Node(fromHost).ListenUDP(netip.AddrPortFrom(from, 0))
	if err != nil {
		rx.Close()
		return nil, nil, err
	}
	return tx, rx, nil
}

// pingUntilDirect pings peer through c, starting one ping every 25 ms
// (each waiting up to 1 s, at most 40 at a time), until a pong comes back
// over a direct path; it returns how long after start that was, or ctx's
// error when ctx ends first.
func pingUntilDirect(ctx context.Context, c *localapi.Client, peer string, start time.Time) (time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	got := make(chan time.Duration, 1)
	sem := make(chan struct{}, 40)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case d := <-got:
			return d, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-tick.C:
		}
		select {
		case sem <- struct{}{}:
		default:
			continue // 40 in flight: wait for the next tick
		}
		wg.Go(func() {
			defer func() { <-sem }()
			pctx, pcancel := context.WithTimeout(ctx, time.Second)
			defer pcancel()
			res, err := c.Ping(pctx, localapi.PingRequest{Peer: peer})
			if err == nil && res.Path.Kind == localapi.PathDirect {
				select {
				case got <- time.Since(start):
				default:
				}
			}
		})
	}
}
