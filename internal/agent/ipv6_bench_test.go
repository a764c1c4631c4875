//go:build linux

package agent_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"weft/internal/localapi"
	"weft/internal/netlab"
	"weft/internal/netlab/labtest"
)

// familyPairs changes the seed topology into two pairs of sites that
// differ only in their address family: busan and mac on IPv6-only sites
// (r-busan, r-fukuoka), seoul and osaka on IPv4-only ones behind easy NATs
// (r-seoul, r-osaka); ctrl is dual stack.
func familyPairs(t *netlab.Topology) {
	netlab.V6Only(t)
	t.SetIPv6("r-busan", netlab.IPv6Only)
	for i := range t.Routers {
		if t.Routers[i].Name == "r-fukuoka" {
			t.Routers[i].Hosts = []string{"mac"}
		}
	}
	t.Routers = append(t.Routers,
		netlab.Router{Name: "r-seoul", NAT: netlab.NATEasy, Hosts: []string{"seoul"}},
		netlab.Router{Name: "r-osaka", NAT: netlab.NATEasy, Hosts: []string{"osaka"}})
}

// BenchmarkLabFirstDirectV6 times, in the same lab, how long a peer that
// starts sending takes to get its first packet through a direct path over
// IPv6 (mac → busan, both on IPv6-only sites) and over IPv4 (osaka →
// seoul, both behind easy NATs), as the heal benchmark's to-direct: from
// the first tailnet datagram (then one every 10 ms) until the first disco
// pong that came back over a direct path (a local API ping started every
// 25 ms). Both pairs start idle, after both ends know each other from
// the map; each iteration is a fresh lab, and the order of the two pairs
// alternates between iterations (root only):
//
//	go test -run '^$' -bench BenchmarkLabFirstDirectV6 -benchtime 5x ./internal/agent/
//
// Reported: the median, min and max of each family in milliseconds, and
// the ratio of the IPv6 median to the IPv4 one. No threshold.
func BenchmarkLabFirstDirectV6(b *testing.B) {
	labtest.SkipUnlessRoot(b)
	pairs := []struct{ family, from, to string }{{"v6", "mac", "busan"}, {"v4", "osaka", "seoul"}}
	times := map[string][]time.Duration{}
	for i := range b.N {
		n := startNetB(b, []string{"busan", "mac", "seoul", "osaka"}, familyPairs)
		for j := range pairs {
			p := pairs[(i+j)%len(pairs)]
			to := addr4(n.peer(p.from, p.to))
			n.peer(p.to, p.from)
			d, err := firstDirect(n, p.from, p.to, to)
			if err != nil {
				b.Fatalf("%s (%s → %s): %v", p.family, p.from, p.to, err)
			}
			st, err := n.status(p.from)
			if err != nil {
				b.Fatal(err)
			}
			for _, ps := range st.Peers {
				if ps.Name == p.to {
					b.Logf("round %d: %s %s → %s direct after %v at %s", i, p.family, p.from, p.to, d, ps.Path.Endpoint)
					if ep, err := netip.ParseAddrPort(ps.Path.Endpoint); err != nil || ep.Addr().Is6() != (p.family == "v6") {
						b.Fatalf("%s pair's direct path is at %q", p.family, ps.Path.Endpoint)
					}
				}
			}
			times[p.family] = append(times[p.family], d)
		}
	}
	reportSpread(b, "v6-to-direct", times["v6"])
	reportSpread(b, "v4-to-direct", times["v4"])
	if m4, m6 := median(times["v4"]), median(times["v6"]); m4 > 0 {
		b.ReportMetric(float64(m6)/float64(m4), "v6/v4-median")
	}
}

// median is the middle of ds (the upper one of an even count).
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// firstDirect starts a stream of tailnet UDP datagrams from host from to
// peer to (at its tailnet address toAddr), one every 10 ms, and returns
// how long after the first one a local API ping from from got a pong over
// a direct path (pings started every 25 ms, each waiting up to 1 s, at
// most 40 at a time).
func firstDirect(n *labNet, from, to string, toAddr netip.Addr) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(n.ctx, 60*time.Second)
	defer cancel()
	var tx *net.UDPConn
	err := n.lab.Node(from).Do(func() error {
		var err error
		tx, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(toAddr, 4777)))
		return err
	})
	if err != nil {
		return 0, err
	}
	defer tx.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	start := time.Now()
	tx.Write([]byte("first"))
	wg.Go(func() { every(ctx, 10*time.Millisecond, func() { tx.Write([]byte("more")) }) })
	d, err := pingUntilDirect(ctx, &localapi.Client{Socket: n.tn.Socket(from)}, to, start)
	if err != nil {
		return 0, fmt.Errorf("no direct pong from %s within 60 s", to)
	}
	return d, nil
}
