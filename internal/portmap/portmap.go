// Package portmap talks to the local gateway's port-mapping protocols.
// Prober asks which of UPnP IGD, NAT-PMP and PCP it speaks, for netcheck's
// report; Mapper keeps the data plane's UDP port mapped with PCP (or
// NAT-PMP, or UPnP IGD, where the ones before get no answer), so a node
// behind a hard NAT has one public endpoint every peer can reach.
//
// Every probe sends only to the default gateway (and, for UPnP, the SSDP
// multicast group on the local link), with short timeouts inside the
// caller's context.
package portmap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	natpmp "github.com/jackpal/go-nat-pmp"
)

// Port is the UDP port NAT-PMP and PCP servers listen on (RFC 6886, RFC
// 6887).
const Port = 5351

// DefaultTimeout bounds each probe when Prober.Timeout is zero. Gateways
// answer in milliseconds; waiting longer only slows netcheck down.
const DefaultTimeout = time.Second

// minUPnPWait is the shortest UPnP search: an SSDP search announces its
// wait in whole seconds (at least one), and the search library listens for
// answers until its deadline, so the UPnP probe always takes about this
// long, whatever Timeout says.
const minUPnPWait = 1500 * time.Millisecond

// Result says which protocols answered.
type Result struct {
	UPnP bool `json:"upnp"`
	PMP  bool `json:"pmp"`
	PCP  bool `json:"pcp"`
}

// Prober probes the gateway. The zero value probes the system's default
// IPv4 gateway with DefaultTimeout.
type Prober struct {
	// Logger receives one debug line per probe outcome. Nil discards.
	Logger *slog.Logger
	// Gateway returns the gateway to probe for NAT-PMP and PCP. Nil
	// means the default route's gateway (Linux only; elsewhere those two
	// probes report false).
	Gateway func() (netip.Addr, error)
	// Timeout bounds each probe. Zero means DefaultTimeout.
	Timeout time.Duration
	// DisableUPnP skips the SSDP search (which multicasts on every
	// interface); tests use it, and so may callers on networks where
	// multicast is unwelcome.
	DisableUPnP bool
}

// Probe runs the three probes concurrently and returns when all have
// answered or timed out, or ctx is done. The UPnP search takes at least
// 1.5s unless ctx ends sooner (see minUPnPWait). A protocol that does not answer
// is false; only a failure to run any probe at all is an error.
func (p *Prober) Probe(ctx context.Context) (Result, error) {
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	log := p.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	var res Result
	var mu sync.Mutex // guards res
	var wg sync.WaitGroup

	gw, gwErr := p.gateway()
	if gwErr != nil {
		log.Debug("portmap: no gateway", "err", gwErr)
	} else {
		wg.Go(func() {
			ok, err := probePMP(ctx, gw)
			log.Debug("portmap: NAT-PMP probe", "gateway", gw, "ok", ok, "err", err)
			mu.Lock()
			res.PMP = ok
			mu.Unlock()
		})
		wg.Go(func() {
			ok, err := probePCP(ctx, netip.AddrPortFrom(gw, Port))
			log.Debug("portmap: PCP probe", "gateway", gw, "ok", ok, "err", err)
			mu.Lock()
			res.PCP = ok
			mu.Unlock()
		})
	}
	if !p.DisableUPnP {
		wg.Go(func() {
			uctx, cancel := context.WithTimeout(parent, max(timeout, minUPnPWait))
			defer cancel()
			ok, err := probeUPnP(uctx)
			log.Debug("portmap: UPnP probe", "ok", ok, "err", err)
			mu.Lock()
			res.UPnP = ok
			mu.Unlock()
		})
	}
	wg.Wait()
	if gwErr != nil && p.DisableUPnP {
		return res, fmt.Errorf("portmap: %w", gwErr)
	}
	return res, nil
}

func (p *Prober) gateway() (netip.Addr, error) {
	if p.Gateway != nil {
		return p.Gateway()
	}
	return DefaultGateway()
}

// ErrNoGateway means the system has no default IPv4 route with a gateway.
var ErrNoGateway = errors.New("portmap: no default gateway")

// probePMP asks the gateway for its external address over NAT-PMP: any
// well-formed success answer means NAT-PMP is spoken there.
func probePMP(ctx context.Context, gw netip.Addr) (bool, error) {
	if !gw.Is4() {
		return false, errors.New("portmap: NAT-PMP needs an IPv4 gateway")
	}
	timeout := time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	if timeout <= 0 {
		return false, ctx.Err()
	}
	// The library call blocks for at most timeout; the goroutine ends by
	// itself, and ctx lets us stop waiting for it sooner.
	done := make(chan error, 1)
	go func() {
		c := natpmp.NewClientWithTimeout(net.IP(gw.AsSlice()), timeout)
		_, err := c.GetExternalAddress()
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return false, fmt.Errorf("portmap: NAT-PMP: %w", err)
		}
		return true, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}
