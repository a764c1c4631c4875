package magicdns

import (
	"context"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// BenchmarkResolver measures queries through the resolver over UDP on
// loopback, one client at a time, against a same-run baseline: the
// upstream DNS server (miekg/dns, answering from memory) asked directly.
// Each sub-benchmark reports qps and p50/p99 latency; docs/benchmarks.md
// has the figures.
//
//	go test -run XXX -bench Resolver ./internal/magicdns/
func BenchmarkResolver(b *testing.B) {
	u := startUpstream(b)
	r := New(Options{})
	r.SetConfig(testConfig(u.addr))
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Serve(ctx, pc, nil)
	resolver := pc.LocalAddr().String()

	for _, bc := range []struct {
		name, server string
		qname        func(i int) string
	}{
		{"baseline-upstream-direct", u.addr.String(), func(int) string { return "www.example.com." }},
		{"tailnet-name", resolver, func(int) string { return "mac.weft.internal." }},
		{"upstream-cached", resolver, func(int) string { return "www.example.com." }},
		{"upstream-uncached", resolver, func(i int) string { return fmt.Sprintf("n%d-%d.example.com.", time.Now().UnixNano(), i) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			conn, err := net.Dial("udp", bc.server)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			co := &dns.Conn{Conn: conn}
			lat := make([]time.Duration, 0, b.N)
			q := new(dns.Msg)
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				q.SetQuestion(bc.qname(i), dns.TypeA)
				t0 := time.Now()
				if err := co.WriteMsg(q); err != nil {
					b.Fatal(err)
				}
				conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				m, err := co.ReadMsg()
				if err != nil || len(m.Answer) != 1 {
					b.Fatalf("%s: %v %v", bc.qname(i), m, err)
				}
				lat = append(lat, time.Since(t0))
			}
			elapsed := time.Since(start)
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "qps")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}
