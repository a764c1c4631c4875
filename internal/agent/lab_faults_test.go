//go:build linux

package agent_test

import (
	"net/netip"
	"testing"
	"time"

	"weft/internal/localapi"
	"weft/internal/netlab"
)

// TestLabLoss20Percent: busan's internet link loses 20% of its frames at
// random, each way (control, relay, disco and WireGuard alike). The nodes
// still come up, find the direct path, and a transfer completes intact.
func TestLabLoss20Percent(t *testing.T) {
	n := startNet(t, 4*time.Minute, []string{"busan", "mac"}, func(tp *netlab.Topology) {
		tp.SetLoss("r-busan", 20)
	})
	// The link does lose: of 40 pings from busan to ctrl (through the
	// lossy link both ways, so ~36% lost) some go unanswered. All 40
	// answered would happen by chance once in 10^8 runs.
	lost := 0
	for range 40 {
		if _, err := n.lab.Node("busan").Ping(n.ctx, netip.MustParseAddr(ctrlAddr), 1, 0, 300*time.Millisecond); err != nil {
			lost++
		}
	}
	t.Logf("%d of 40 pings across busan's link lost", lost)
	if lost == 0 {
		t.Fatal("no ping across busan's lossy link was lost: the loss is not in place")
	}
	n.pair("mac", "busan")
	n.waitPath("mac", "busan", localapi.PathDirect, 90*time.Second)
	n.transfer("mac", "busan", 2<<20, nil)
}
