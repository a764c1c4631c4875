package netutil

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// HeadStart is how long a dial race lets one address try before it starts
// the next (RFC 8305 recommends 250 ms): long enough that a working
// preferred address nearly always wins alone, short enough that a
// black-holed one (a broken IPv6 route whose SYNs vanish) costs a quarter
// second instead of a whole connect timeout.
const HeadStart = 250 * time.Millisecond

// DialFunc opens a connection, as net.Dialer.DialContext does.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// DialRace connects to the first of addrs that answers, "Happy Eyeballs"
// style (RFC 8305), as Race runs attempts: the first connection made wins
// and the other attempts are cancelled, or closed if they connect anyway.
// net.Dialer races only the addresses one host name resolves to; this
// races addresses the caller already knows, such as a relay's ipv4 and
// ipv6. dial must return when its context is cancelled. The error, when
// all fail, joins every attempt's. A client that speaks TLS or a protocol
// after the connect races the whole setup with Race instead: a family
// whose TCP connects but whose later packets vanish would otherwise win
// here and then stall.
func DialRace(ctx context.Context, dial DialFunc, network string, addrs []string, headStart time.Duration) (net.Conn, error) {
	return Race(ctx, addrs, headStart,
		func(ctx context.Context, addr string) (net.Conn, error) { return dial(ctx, network, addr) },
		func(c net.Conn) { c.Close() })
}

// Race runs attempt for the first of addrs that gets through it, "Happy
// Eyeballs" style (RFC 8305): it starts attempt(addrs[0]), starts the next
// address headStart later or at once when every attempt so far has
// failed, and so on; the first attempt that succeeds wins, the others are
// cancelled through their context, and discard receives any that succeed
// anyway (after the win), so nothing they opened leaks. An attempt is
// everything a connection needs before it is usable (connect, TLS, the
// HTTP upgrade, the protocol's handshake), so that an address whose TCP
// connects but which then stalls (a broken path MTU, a middlebox eating
// the TLS ClientHello) loses to one that works instead of holding the
// caller until its timeout. attempt must return when its context is
// cancelled, having closed what it opened when it fails; the winner's
// result must not depend on its context once returned (it is cancelled
// when Race returns). Race returns when it has a winner or every attempt
// has failed, without waiting for the cancelled losers, which end in the
// background. The error, when all fail, joins every attempt's.
func Race[T any](ctx context.Context, addrs []string, headStart time.Duration, attempt func(ctx context.Context, addr string) (T, error), discard func(T)) (T, error) {
	var zero T
	if len(addrs) == 0 {
		return zero, errors.New("dial race: no address to dial")
	}
	if len(addrs) == 1 {
		return attempt(ctx, addrs[0])
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan raceResult[T], len(addrs)) // buffered: no attempt blocks on a gone race
	next, pending := 0, 0
	start := func() {
		addr := addrs[next]
		next++
		pending++
		go func() {
			v, err := attempt(ctx, addr)
			results <- raceResult[T]{v, err}
		}()
	}
	start()
	timer := time.NewTimer(headStart)
	defer timer.Stop()
	var errs []error
	for pending > 0 {
		select {
		case r := <-results:
			pending--
			if r.err == nil {
				discardLosers(results, pending, discard)
				return r.v, nil
			}
			errs = append(errs, r.err)
			if next < len(addrs) {
				start()
				timer.Reset(headStart)
			}
		case <-timer.C:
			if next < len(addrs) {
				start()
				timer.Reset(headStart)
			}
		}
	}
	return zero, errors.Join(errs...)
}

// discardLosers waits, in the background, for the n attempts still
// running (cancelled by then) and discards any that succeeded in the
// meantime.
func discardLosers[T any](results <-chan raceResult[T], n int, discard func(T)) {
	if n == 0 {
		return
	}
	go func() {
		for range n {
			if r := <-results; r.err == nil {
				discard(r.v)
			}
		}
	}()
}

// raceResult is one attempt's outcome in Race.
type raceResult[T any] struct {
	v   T
	err error
}

// InterleaveFamilies orders addrs (host:port, host an IP literal or a
// name) so that the families alternate after the first, as RFC 8305 asks:
// when one family black-holes, the next attempt is of the other family.
// The first address stays first and addresses of one family keep their
// order; names, of neither family, go after the literals.
func InterleaveFamilies(addrs []string) []string {
	if len(addrs) < 3 {
		return addrs
	}
	out := []string{addrs[0]}
	var v4, v6, other []string
	for _, a := range addrs[1:] {
		switch family(a) {
		case 4:
			v4 = append(v4, a)
		case 6:
			v6 = append(v6, a)
		default:
			other = append(other, a)
		}
	}
	last := family(addrs[0])
	for len(v4)+len(v6) > 0 {
		if (last == 4 && len(v6) > 0) || len(v4) == 0 {
			out, v6, last = append(out, v6[0]), v6[1:], 6
		} else {
			out, v4, last = append(out, v4[0]), v4[1:], 4
		}
	}
	return append(out, other...)
}

// family is 4 or 6 for a host:port whose host is an IP literal, else 0.
func family(hostport string) int {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	ip, err := netip.ParseAddr(host)
	switch {
	case err != nil:
		return 0
	case ip.Unmap().Is4():
		return 4
	default:
		return 6
	}
}

// LookupFunc resolves a host name to its addresses, as
// (*net.Resolver).LookupNetIP does with network "ip".
type LookupFunc func(ctx context.Context, host string) ([]netip.Addr, error)

// RaceAddrs returns the addresses a race (Race, DialRace) should try for
// hostport: hostport itself when its host is an IP literal, else every
// address the name resolves to (by lookup; nil means the system's
// resolver), in the resolver's order of preference with the families
// then alternating (InterleaveFamilies). A client that lets its dialer
// resolve the name gets a race of TCP connects only, and on a network
// whose IPv6 connects but then loses its larger packets, a TLS handshake
// over the winner stalls; resolving first lets the caller race its whole
// setup per address.
func RaceAddrs(ctx context.Context, lookup LookupFunc, hostport string) ([]string, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", hostport, err)
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return []string{hostport}, nil
	}
	if lookup == nil {
		lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	ips, err := lookup(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", host, err)
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("resolving %s: no address", host)
	}
	addrs := make([]string, len(ips))
	for i, ip := range ips {
		addrs[i] = net.JoinHostPort(ip.Unmap().String(), port)
	}
	return InterleaveFamilies(addrs), nil
}

// DialTLSRace connects to hostport and completes a TLS handshake with it
// (verifying its host name under cfg), racing the whole of both over
// every address of the host (RaceAddrs, Race). It fits
// http.Transport.DialTLSContext, whose own dial would race the TCP
// connect alone. dial nil means a net.Dialer.
func DialTLSRace(ctx context.Context, dial DialFunc, lookup LookupFunc, hostport string, cfg *tls.Config) (net.Conn, error) {
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", hostport, err)
	}
	addrs, err := RaceAddrs(ctx, lookup, hostport)
	if err != nil {
		return nil, err
	}
	return Race(ctx, addrs, HeadStart, func(ctx context.Context, addr string) (net.Conn, error) {
		conn, err := dial(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		tc, err := ClientTLS(ctx, conn, cfg, host)
		if err != nil {
			conn.Close()
			return nil, err
		}
		return tc, nil
	}, func(c net.Conn) { c.Close() })
}
