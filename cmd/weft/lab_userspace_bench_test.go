//go:build linux

package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"golang.org/x/net/proxy"

	"weft/internal/demo"
	"weft/internal/netlab"
	"weft/internal/tstest"
)

// BenchmarkLabUserspace measures userspace networking against kernel mode
// in one lab run (docs/benchmarks.md): busan (userspace, no capabilities)
// and seoul (kernel TUN) sit on the same LAN behind r-busan, both exit
// nodes; mac (kernel) measures one TCP stream and TCP connect times to
// each one's tailnet address, then the internet (web) through each as
// exit node; busan also sends through its own SOCKS5 server to seoul. Run
// it with
//
//	go test -run '^$' -bench LabUserspace -benchtime 3x ./cmd/weft
func BenchmarkLabUserspace(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	l := startTwoExitLab(b, ctx, "seoul", userspaceBusan())
	lab, tn := l.lab, l.tn
	for _, peer := range []string{"busan", "seoul"} {
		path := "relay"
		for range 4 {
			if _, err := tn.CLI(ctx, "mac", "ping", "--until-direct", "-c", "20", peer); err == nil {
				path = "direct"
				break
			}
		}
		b.Logf("mac → %s path: %s", peer, path)
	}
	busanTN, seoulTN := l.tailnetAddr("busan"), l.tailnetAddr("seoul")
	mac, busan, seoul, web := lab.Node("mac"), lab.Node("busan"), lab.Node("seoul"), lab.Node("web")
	socks, err := proxy.SOCKS5("tcp", usSOCKS, nil, nodeDialer{busan})
	if err != nil {
		b.Fatal(err)
	}
	socksDial := socks.(proxy.ContextDialer).DialContext
	const d = 3 * time.Second
	var m struct{ kTun, uTun, kRTT, uRTT, socks, kExit, uExit rate }
	b.ResetTimer()
	for range b.N {
		m.kTun.add(stream(ctx, b, seoul, seoulTN.String(), seoulTN, mac.DialContext, d))
		m.uTun.add(stream(ctx, b, busan, "127.0.0.1", busanTN, mac.DialContext, d))
		m.socks.add(stream(ctx, b, seoul, seoulTN.String(), seoulTN, socksDial, d))
		m.kRTT.addDur(connectTime(ctx, b, seoul, seoulTN.String(), seoulTN, mac))
		m.uRTT.addDur(connectTime(ctx, b, busan, "127.0.0.1", busanTN, mac))
	}
	for _, ex := range []struct {
		node string
		r    *rate
	}{{"seoul", &m.kExit}, {"busan", &m.uExit}} {
		l.cli("mac", "set", "--exit-node", ex.node)
		l.awaitWhoami("mac", lab.Node("r-busan").WANAddr, "traffic through "+ex.node)
		for range b.N {
			ex.r.add(stream(ctx, b, web, web.WANAddr.String(), web.WANAddr, mac.DialContext, d))
		}
	}
	b.StopTimer()
	b.ReportMetric(m.kTun.mbit(), "kernel-tunnel-Mbit/s")
	b.ReportMetric(m.uTun.mbit(), "us-tunnel-Mbit/s")
	b.ReportMetric(m.uTun.mbit()/m.kTun.mbit(), "us/kernel-tunnel")
	b.ReportMetric(m.kRTT.ms(), "kernel-connect-ms")
	b.ReportMetric(m.uRTT.ms(), "us-connect-ms")
	b.ReportMetric(m.socks.mbit(), "socks5-Mbit/s")
	b.ReportMetric(m.kExit.mbit(), "kernel-exit-Mbit/s")
	b.ReportMetric(m.uExit.mbit(), "us-exit-Mbit/s")
	b.ReportMetric(m.uExit.mbit()/m.kExit.mbit(), "us/kernel-exit")
}

// rate sums bytes over time, or durations for a median.
type rate struct {
	bytes int64
	took  time.Duration
	durs  []time.Duration
}

func (r *rate) add(n int64, took time.Duration) { r.bytes += n; r.took += took }
func (r *rate) addDur(ds []time.Duration)       { r.durs = append(r.durs, ds...) }
func (r *rate) mbit() float64                   { return float64(r.bytes) * 8 / r.took.Seconds() / 1e6 }
func (r *rate) ms() float64 {
	slices.Sort(r.durs)
	return float64(r.durs[len(r.durs)/2].Microseconds()) / 1000
}

type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// stream sends one TCP stream for d to a listener on srv at listenAddr,
// dialled as dst:port through dial, and returns the bytes received.
func stream(ctx context.Context, b *testing.B, srv *netlab.Node, listenAddr string, dst netip.Addr, dial dialFunc, d time.Duration) (int64, time.Duration) {
	b.Helper()
	n, took, err := demo.MeasureTCPDial(ctx, srv, listenAddr, dst.String(), dial, d)
	if err != nil {
		b.Fatal(err)
	}
	return n, took
}

// connectTime is 20 TCP connect times from cli to dst (a listener on srv
// at listenAddr): one round trip through the tunnel each.
func connectTime(ctx context.Context, b *testing.B, srv *netlab.Node, listenAddr string, dst netip.Addr, cli *netlab.Node) []time.Duration {
	b.Helper()
	ln, err := srv.Listen("tcp4", net.JoinHostPort(listenAddr, "0"))
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	tstest.ServeConns(ln, nil)
	addr := net.JoinHostPort(dst.String(), fmt.Sprint(ln.Addr().(*net.TCPAddr).Port))
	var out []time.Duration
	for range 20 {
		start := time.Now()
		c, err := cli.DialContext(ctx, "tcp4", addr)
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, time.Since(start))
		c.Close()
	}
	return out
}
