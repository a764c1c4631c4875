package node

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"time"

	"weft/internal/speedtest"
)

// speedtestRetry is how often ServeSpeedtest looks at the node's tailnet
// address: the listener follows it (bound once the data plane has put it
// on the TUN).
const speedtestRetry = 500 * time.Millisecond

// ServeSpeedtest serves `weft speedtest` for the tailnet's peers on this
// node's tailnet IPv4 address and port until ctx ends. It listens on no
// other address, and answers only connections from a peer's tailnet
// address in the current map. A node without its address yet (down, or
// the TUN not configured) serves nothing until it has one.
func (d *Daemon) ServeSpeedtest(ctx context.Context, port int) {
	srv := &speedtest.Server{Allow: d.isPeerAddr, Logger: d.log.With("sub", "speedtest")}
	var cur netip.Addr
	var stop context.CancelFunc = func() {}
	defer func() { stop() }()
	t := time.NewTicker(speedtestRetry)
	defer t.Stop()
	for {
		if a := d.selfV4(); a != cur {
			stop()
			cur, stop = netip.Addr{}, func() {}
			if a.IsValid() {
				ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp4", net.JoinHostPort(a.String(), strconv.Itoa(port)))
				if err != nil {
					d.log.Debug("speed test server: not listening yet", "err", err)
				} else {
					sctx, cancel := context.WithCancel(ctx)
					done := make(chan struct{})
					go func() {
						defer close(done)
						if err := srv.Serve(sctx, ln); err != nil && !errors.Is(err, net.ErrClosed) {
							d.log.Warn("speed test server stopped", "err", err)
						}
					}()
					cur, stop = a, func() { cancel(); <-done }
					d.log.Info("serving speed tests to tailnet peers", "addr", ln.Addr())
				}
				// Not bound (the address is not on the TUN yet): tried
				// again at the next tick.
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// selfV4 is the node's tailnet IPv4 address while the data plane runs.
func (d *Daemon) selfV4() netip.Addr {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.engine == nil || d.nm == nil || d.nm.Self == nil {
		return netip.Addr{}
	}
	for _, p := range d.nm.Self.Addresses {
		if p.Addr().Is4() {
			return p.Addr()
		}
	}
	return netip.Addr{}
}

// isPeerAddr reports whether a is a tailnet address of a peer in the
// current map.
func (d *Daemon) isPeerAddr(a netip.Addr) bool {
	d.mu.Lock()
	nm := d.nm
	d.mu.Unlock()
	if nm == nil {
		return false
	}
	for _, n := range nm.Peers {
		if n.HasAddr(a) {
			return true
		}
	}
	return false
}
