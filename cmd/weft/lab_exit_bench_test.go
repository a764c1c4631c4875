//go:build linux

package main

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"weft/internal/demo"
	"weft/internal/localapi"
	"weft/internal/netlab"
)

// BenchmarkLabExitNodeThroughput measures, in one lab run, one TCP stream
// from mac to web on the internet through busan as exit node, and from mac
// to busan's tailnet address through the tunnel, and reports the ratio
// (docs/benchmarks.md). Each iteration measures both, one after the
// other, for 3 s each. Run it with
//
//	go test -run '^$' -bench LabExitNode -benchtime 3x ./cmd/weft
func BenchmarkLabExitNodeThroughput(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// 50 ms round trip between Busan and Fukuoka, all of it on
	// Fukuoka's link: both measured paths then have the same round trip
	// (busan's hop to web adds none), so a single TCP stream's ratio
	// shows what forwarding at the exit node costs, not a longer path.
	l := startExitLab(b, ctx, func(tp *netlab.Topology) {
		tp.SetDelay("r-fukuoka", 25)
	})
	l.admin("routes", "approve", "busan", "exit")
	path := "relay"
	for range 4 {
		if _, err := l.tn.CLI(ctx, "mac", "ping", "--until-direct", "-c", "20", "busan"); err == nil {
			path = "direct"
			break
		}
	}
	b.Logf("mac → busan path: %s", path)
	l.cli("mac", "set", "--exit-node", "busan")
	l.awaitWhoami("mac", l.lab.Node("r-busan").WANAddr, "traffic through busan")
	var st localapi.Status
	if err := json.Unmarshal([]byte(l.cli("busan", "status", "--json")), &st); err != nil || st.Self == nil {
		b.Fatalf("busan's status: %v", err)
	}
	busanTailnet := firstAddr(st.Self)
	const d = 3 * time.Second
	var tunnelBytes, exitBytes int64
	var tunnelTime, exitTime time.Duration
	b.ResetTimer()
	for range b.N {
		n, took, err := demo.MeasureTCP(ctx, l.lab.Node("busan"), l.lab.Node("mac"), busanTailnet, d)
		if err != nil {
			b.Fatal(err)
		}
		tunnelBytes, tunnelTime = tunnelBytes+n, tunnelTime+took
		n, took, err = demo.MeasureTCP(ctx, l.lab.Node("web"), l.lab.Node("mac"), l.lab.Node("web").WANAddr.String(), d)
		if err != nil {
			b.Fatal(err)
		}
		exitBytes, exitTime = exitBytes+n, exitTime+took
	}
	b.StopTimer()
	tunnel := float64(tunnelBytes) * 8 / tunnelTime.Seconds() / 1e6
	exit := float64(exitBytes) * 8 / exitTime.Seconds() / 1e6
	b.ReportMetric(tunnel, "tunnel-Mbit/s")
	b.ReportMetric(exit, "exit-Mbit/s")
	b.ReportMetric(exit/tunnel, "exit/tunnel")
}
