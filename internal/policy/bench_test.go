package policy

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"weft/internal/wire"
)

// bigTailnet is n nodes of 100 users, every tenth one tagged, with
// addresses given out in order as the store does.
func bigTailnet(n int) []*wire.Node {
	nodes := make([]*wire.Node, n)
	for i := range nodes {
		v4 := netip.AddrFrom4([4]byte{100, 64 + byte(i>>16), byte(i >> 8), byte(i)})
		v6 := netip.AddrFrom16([16]byte{0xfd, 0x7a, 14: byte(i >> 8), 15: byte(i)})
		nd := &wire.Node{ID: wire.NodeID(i + 1), Name: fmt.Sprintf("n%d", i), User: fmt.Sprintf("u%d", i%100),
			Addresses: []netip.Prefix{netip.PrefixFrom(v4, 32), netip.PrefixFrom(v6, 128)}}
		if i%10 == 0 {
			nd.User, nd.Tags = "", []string{fmt.Sprintf("tag:t%d", i%50)}
		}
		nodes[i] = nd
	}
	return nodes
}

// bigPolicy is rules rules: each lets one user's nodes (or a group of
// users, or a tag) reach one tag's nodes or one user's nodes on a port.
func bigPolicy(rules int) string {
	var b strings.Builder
	b.WriteString(`{"groups": {`)
	for g := range 10 {
		if g > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"group:g%d": ["u%d@", "u%d@", "u%d@"]`, g, g, g+10, g+20)
	}
	b.WriteString(`}, "tagOwners": {`)
	for t := range 50 {
		if t > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"tag:t%d": ["u0@"]`, t)
	}
	b.WriteString(`}, "acls": [`)
	for r := range rules {
		if r > 0 {
			b.WriteString(",")
		}
		src := fmt.Sprintf("u%d@", r%100)
		switch r % 3 {
		case 1:
			src = fmt.Sprintf("group:g%d", r%10)
		case 2:
			src = fmt.Sprintf("tag:t%d", r%50)
		}
		dst := fmt.Sprintf("tag:t%d:%d", (r+7)%50, 1000+r)
		if r%2 == 1 {
			dst = fmt.Sprintf("u%d@:%d", (r+3)%100, 1000+r)
		}
		fmt.Fprintf(&b, `{"action": "accept", "src": [%q], "dst": [%q]}`, src, dst)
	}
	b.WriteString(`]}`)
	return b.String()
}

// BenchmarkCompile compiles a 1,000-rule policy for 10,000 nodes; the
// reported bytes/node are the JSON of one node's filter, on average.
func BenchmarkCompile(b *testing.B) {
	for _, size := range []struct{ rules, nodes int }{{100, 1000}, {1000, 10000}} {
		b.Run(fmt.Sprintf("rules=%d/nodes=%d", size.rules, size.nodes), func(b *testing.B) {
			p, err := Parse([]byte(bigPolicy(size.rules)))
			if err != nil {
				b.Fatal(err)
			}
			nodes := bigTailnet(size.nodes)
			b.ReportAllocs()
			var c *Compiled
			for b.Loop() {
				c = p.Compile(nodes)
			}
			total := 0
			for _, n := range nodes[:100] {
				enc, _ := json.Marshal(c.Filter(n.ID))
				total += len(enc)
			}
			b.ReportMetric(float64(total)/100, "filter-bytes/node")
		})
	}
}

// BenchmarkOneRuleChange adds one rule to a 1,000-rule policy at 10,000
// nodes and counts what the control server then sends: the new filter of
// each node whose filter changed (its JSON) and a peer record (about
// 0.5 KiB) to each end of each pair that came into view. The time is the
// server's work: compiling and comparing views.
func BenchmarkOneRuleChange(b *testing.B) {
	const nodesN = 10000
	nodes := bigTailnet(nodesN)
	src := bigPolicy(1000)
	oldP, err := Parse([]byte(src))
	if err != nil {
		b.Fatal(err)
	}
	newP, err := Parse([]byte(strings.Replace(src, `"acls": [`, `"acls": [{"action": "accept", "src": ["u5@"], "dst": ["tag:t10:9999"]},`, 1)))
	if err != nil {
		b.Fatal(err)
	}
	oldC := oldP.Compile(nodes)
	for b.Loop() {
		t0 := time.Now()
		newC := newP.Compile(nodes)
		compile := time.Since(t0)
		changed, filterBytes, pairs := 0, 0, 0
		for _, n := range nodes {
			if nf := newC.Filter(n.ID); !nf.Equal(oldC.Filter(n.ID)) {
				enc, _ := json.Marshal(nf)
				changed++
				filterBytes += len(enc)
			}
		}
		ids := make([]wire.NodeID, len(nodes))
		for i, n := range nodes {
			ids[i] = n.ID
		}
		t1 := time.Now()
		ViewChanges(oldC, newC, ids, func(a, b wire.NodeID, visible bool) { pairs++ })
		b.ReportMetric(float64(compile.Milliseconds()), "compile-ms")
		b.ReportMetric(float64(time.Since(t1).Milliseconds()), "views-ms")
		b.ReportMetric(float64(changed), "filters-changed")
		b.ReportMetric(float64(filterBytes), "filter-bytes")
		b.ReportMetric(float64(pairs), "pairs-changed")
		b.ReportMetric(float64(filterBytes+pairs*2*512), "bytes-sent")
	}
}
