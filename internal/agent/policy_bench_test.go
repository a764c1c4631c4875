//go:build linux

package agent_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"weft/internal/localapi"
	"weft/internal/netlab/labtest"
)

// hundredRulePolicy lets mac reach busan on port 5202 by its last rule
// only; the 99 before it name sources mac is not in, so busan's filter
// walks them all for every packet of the flow.
func hundredRulePolicy() string {
	var b strings.Builder
	b.WriteString(`{"acls": [`)
	for i := range 99 {
		fmt.Fprintf(&b, `{"action": "accept", "src": ["10.99.%d.0/24"], "dst": ["busan:%d"]},`, i, 6000+i)
	}
	b.WriteString(`{"action": "accept", "src": ["mac"], "dst": ["busan:5202"]}]}`)
	return b.String()
}

// BenchmarkLabPolicyThroughput measures TCP throughput from mac to busan
// through the tunnel with no policy and then, in the same lab, with a
// 100-rule policy whose last rule is the one that lets the flow in. See
// docs/benchmarks.md.
//
//	sudo go test -run '^$' -bench LabPolicyThroughput -benchtime 3x ./internal/agent/
func BenchmarkLabPolicyThroughput(b *testing.B) {
	labtest.SkipUnlessRoot(b)
	n := startNetB(b, []string{"busan", "mac"})
	busan := addr4(n.pair("mac", "busan"))
	n.waitPath("mac", "busan", localapi.PathDirect, 30*time.Second)
	measure := func() float64 {
		var sum float64
		for range b.N {
			tu, err := throughput(n.ctx, n.lab, "mac", "busan", netip.AddrPortFrom(busan, 5202), netip.AddrPortFrom(busan, 5202), 1)
			if err != nil {
				b.Fatalf("throughput: %v", err)
			}
			sum += tu
		}
		return sum / float64(b.N)
	}
	none := measure()
	file := filepath.Join(n.lab.Dir(), "policy-100.hujson")
	if err := os.WriteFile(file, []byte(hundredRulePolicy()), 0o644); err != nil {
		b.Fatal(err)
	}
	if out, err := n.tn.Admin(n.ctx, "policy", "set", file); err != nil {
		b.Fatalf("%v: %s", err, out)
	}
	// Wait until busan enforces it: a port no rule names is closed.
	ln, err := n.lab.Node("busan").Listen("tcp4", netip.AddrPortFrom(busan, 5203).String())
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	for i := 0; ; i++ {
		ctx, cancel := context.WithTimeout(n.ctx, time.Second)
		c, err := n.lab.Node("mac").DialContext(ctx, "tcp4", ln.Addr().String())
		cancel()
		if err != nil {
			break
		}
		c.Close()
		if i == 50 {
			b.Fatal("busan still lets mac in on port 5203 under the policy")
		}
		time.Sleep(200 * time.Millisecond)
	}
	with := measure()
	b.ReportMetric(none, "none-Mbit/s")
	b.ReportMetric(with, "100rules-Mbit/s")
	b.ReportMetric(with/none, "ratio")
}
