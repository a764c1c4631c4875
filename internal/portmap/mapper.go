package portmap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	natpmp "github.com/jackpal/go-nat-pmp"
)

// Mapping lifetimes and retry pacing. RFC 6886 recommends two hours for a
// mapping and renewing it at half its lifetime.
const (
	DefaultLifetime = 2 * time.Hour
	minRetry        = 30 * time.Second
	maxRetry        = 10 * time.Minute
)

// Mapper keeps a UDP port of this host mapped on the gateway with PCP,
// or NAT-PMP where the gateway does not answer PCP, or UPnP IGD where it
// speaks neither (many consumer routers speak only UPnP), so that a node behind a NAT whose
// mapping varies by destination (a hard NAT) still has one public
// address:port that every peer can reach. It renews the mapping before it
// lapses and deletes it when Run returns.
type Mapper struct {
	// Logger receives one line per mapping made, lost or deleted. Nil
	// discards.
	Logger *slog.Logger
	// Gateway returns the gateway to ask. Nil means DefaultGateway.
	Gateway func() (netip.Addr, error)
	// Timeout bounds each request. Zero means DefaultTimeout.
	Timeout time.Duration
	// Lifetime is the mapping's requested lifetime. Zero means
	// DefaultLifetime.
	Lifetime time.Duration
	// RetryAfter is the first wait after a failed request; it doubles up
	// to maxRetry. Zero means 30 s.
	RetryAfter time.Duration
	// NoPCP and NoNATPMP skip PCP and NAT-PMP; for tests.
	NoPCP, NoNATPMP bool
}

// Protocols a mapping was made with, as Run's log lines name them.
const (
	viaPCP    = "pcp"
	viaNATPMP = "nat-pmp"
	viaUPnP   = "upnp"
)

// mapState is what Run keeps between requests: the UPnP device found and
// the PCP nonce, which renewals and the deletion must repeat.
type mapState struct {
	igd   upnpIGD
	nonce pcpNonce

	gw     netip.Addr
	mapped uint16 // the internal port mapped on gw, 0 if none
	via    string // the protocol of the mapping
}

// unmap deletes st's mapping on its gateway, by the protocol that made it.
func (m *Mapper) unmap(st *mapState) error {
	ctx, cancel := context.WithTimeout(context.Background(), m.timeout())
	defer cancel()
	switch st.via {
	case viaUPnP:
		return st.igd.unmap(ctx, st.mapped)
	case viaPCP:
		_, err := pcpMap(ctx, netip.AddrPortFrom(st.gw, Port), pcpMapRequest{Nonce: st.nonce, Port: st.mapped})
		return err
	}
	return m.unmapPMP(st.gw, st.mapped)
}

// Run maps the port that localPort returns (asked again before every
// renewal, since the socket may be rebound) until ctx is done, calling
// onChange with the public address:port whenever it changes, and with the
// zero value when the mapping is lost. When ctx ends, the mapping is
// deleted on the gateway and Run returns.
func (m *Mapper) Run(ctx context.Context, localPort func() uint16, onChange func(netip.AddrPort)) {
	log := m.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	first := m.RetryAfter
	if first <= 0 {
		first = minRetry
	}
	retry := first
	var cur netip.AddrPort // what onChange last heard
	st := mapState{nonce: newPCPNonce()}
	set := func(ap netip.AddrPort) {
		if ap != cur {
			cur = ap
			onChange(ap)
		}
	}
	defer func() {
		if st.mapped != 0 {
			err := m.unmap(&st)
			log.Info("port mapping deleted", "gateway", st.gw, "port", st.mapped, "via", st.via, "err", err)
		}
	}()
	wait := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		port := localPort()
		g, err := m.gateway()
		if err == nil && port == 0 {
			err = errors.New("portmap: no local port to map yet")
		}
		var ap netip.AddrPort
		var life time.Duration
		if err == nil {
			if st.mapped != 0 && (g != st.gw || st.mapped != port) {
				m.unmap(&st)
				st.mapped = 0
			}
			st.gw = g
			ap, life, st.via, err = m.mapAny(ctx, &st, st.gw, port)
		}
		if err != nil {
			if cur.IsValid() {
				log.Warn("port mapping lost", "gateway", st.gw, "err", err)
			} else {
				log.Debug("no port mapping", "err", err)
			}
			set(netip.AddrPort{})
			st.mapped = 0
			wait = retry
			retry = min(2*retry, maxRetry)
			continue
		}
		if !cur.IsValid() || ap != cur {
			log.Info("port mapped", "gateway", st.gw, "local_port", port, "public", ap, "lifetime", life, "via", st.via)
		}
		st.mapped = port
		set(ap)
		retry = first
		wait = max(life/2, time.Second)
	}
}

// mapAny maps port with PCP, or failing that NAT-PMP, or failing that
// UPnP IGD, and says which one did it. PCP goes first: it is NAT-PMP's
// successor (RFC 6887), and a mapping it makes is tied to our nonce, so
// no other host can delete or take it over.
func (m *Mapper) mapAny(ctx context.Context, st *mapState, gw netip.Addr, port uint16) (netip.AddrPort, time.Duration, string, error) {
	var errs []error
	if !m.NoPCP {
		ap, life, err := m.mapPCP(ctx, st.nonce, gw, port)
		if err == nil {
			return ap, life, viaPCP, nil
		}
		errs = append(errs, err)
	}
	if !m.NoNATPMP {
		ap, life, err := m.mapPort(ctx, gw, port)
		if err == nil {
			return ap, life, viaNATPMP, nil
		}
		errs = append(errs, err)
	}
	uctx, cancel := context.WithTimeout(ctx, m.timeout()+minUPnPWait)
	defer cancel()
	ap, life, err := st.igd.mapPort(uctx, gw, port, m.lifetime())
	if err != nil {
		return ap, life, "", errors.Join(append(errs, err)...)
	}
	return ap, life, viaUPnP, nil
}

// mapPCP asks gw with PCP MAP to forward UDP port (suggesting the same
// external port) and returns the public address:port and the lifetime
// granted.
func (m *Mapper) mapPCP(ctx context.Context, nonce pcpNonce, gw netip.Addr, port uint16) (netip.AddrPort, time.Duration, error) {
	if !gw.Is4() {
		return netip.AddrPort{}, 0, errors.New("portmap: PCP here maps IPv4 only")
	}
	ctx, cancel := context.WithTimeout(ctx, m.timeout())
	defer cancel()
	life := uint32(m.lifetime() / time.Second)
	r, err := pcpMap(ctx, netip.AddrPortFrom(gw, Port), pcpMapRequest{Nonce: nonce, Port: port, Suggest: port, Lifetime: life})
	if err != nil {
		return netip.AddrPort{}, 0, err
	}
	if !r.External.Addr().Is4() || !r.External.Addr().IsGlobalUnicast() || r.External.Port() == 0 || r.Lifetime == 0 {
		return netip.AddrPort{}, 0, fmt.Errorf("portmap: PCP gave an unusable mapping %v for %ds", r.External, r.Lifetime)
	}
	return r.External, time.Duration(r.Lifetime) * time.Second, nil
}

func (m *Mapper) timeout() time.Duration {
	if m.Timeout <= 0 {
		return DefaultTimeout
	}
	return m.Timeout
}

func (m *Mapper) lifetime() time.Duration {
	if m.Lifetime <= 0 {
		return DefaultLifetime
	}
	return m.Lifetime
}

func (m *Mapper) gateway() (netip.Addr, error) {
	if m.Gateway != nil {
		return m.Gateway()
	}
	return DefaultGateway()
}

func (m *Mapper) client(gw netip.Addr) (*natpmp.Client, error) {
	if !gw.Is4() {
		return nil, errors.New("portmap: NAT-PMP needs an IPv4 gateway")
	}
	return natpmp.NewClientWithTimeout(net.IP(gw.AsSlice()), m.timeout()), nil
}

// mapPort asks gw to map UDP port to the same external port (the gateway
// may give another) and returns the public address:port and the lifetime
// granted.
func (m *Mapper) mapPort(ctx context.Context, gw netip.Addr, port uint16) (netip.AddrPort, time.Duration, error) {
	c, err := m.client(gw)
	if err != nil {
		return netip.AddrPort{}, 0, err
	}
	life := m.lifetime()
	type answer struct {
		ap   netip.AddrPort
		life time.Duration
		err  error
	}
	// The library blocks for at most its timeout (with its retries);
	// ctx lets Run stop waiting sooner.
	done := make(chan answer, 1)
	go func() {
		ext, err := c.GetExternalAddress()
		if err != nil {
			done <- answer{err: fmt.Errorf("portmap: NAT-PMP external address: %w", err)}
			return
		}
		r, err := c.AddPortMapping("udp", int(port), int(port), int(life/time.Second))
		if err != nil {
			done <- answer{err: fmt.Errorf("portmap: NAT-PMP map UDP %d: %w", port, err)}
			return
		}
		addr := netip.AddrFrom4(ext.ExternalIPAddress)
		if !addr.IsGlobalUnicast() || r.MappedExternalPort == 0 || r.PortMappingLifetimeInSeconds == 0 {
			done <- answer{err: fmt.Errorf("portmap: NAT-PMP gave an unusable mapping %v:%d for %ds", addr, r.MappedExternalPort, r.PortMappingLifetimeInSeconds)}
			return
		}
		done <- answer{ap: netip.AddrPortFrom(addr, r.MappedExternalPort), life: time.Duration(r.PortMappingLifetimeInSeconds) * time.Second}
	}()
	select {
	case a := <-done:
		return a.ap, a.life, a.err
	case <-ctx.Done():
		return netip.AddrPort{}, 0, ctx.Err()
	}
}

// unmapPMP deletes the NAT-PMP mapping of port on gw (lifetime 0).
func (m *Mapper) unmapPMP(gw netip.Addr, port uint16) error {
	c, err := m.client(gw)
	if err != nil {
		return err
	}
	_, err = c.AddPortMapping("udp", int(port), 0, 0)
	return err
}
