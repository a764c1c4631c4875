//go:build linux

package agent_test

import (
	"testing"
	"time"

	"weft/internal/localapi"
	"weft/internal/netlab"
)

// TestLabNATRebindingMidTransfer: mac sits behind a hard NAT, which gives
// every new mapping a fresh random port. Halfway into a 50 MB transfer
// to busan over a direct path, r-fukuoka forgets all its mappings (a
// router reboot, a NAT timeout), so mac's next packets leave from new
// ports: busan sees mac's traffic rebound to another address. The
// transfer completes with a matching checksum.
func TestLabNATRebindingMidTransfer(t *testing.T) {
	n := startNet(t, 3*time.Minute, []string{"busan", "mac"}, setNAT("r-fukuoka", netlab.NATHard))
	n.pair("mac", "busan")
	before := n.waitPath("busan", "mac", localapi.PathDirect, 60*time.Second)
	n.transfer("mac", "busan", 50<<20, func() {
		if err := n.lab.FlushConntrack("r-fukuoka"); err != nil {
			t.Fatal(err)
		}
	})
	after := n.peer("busan", "mac")
	t.Logf("busan's path to mac: %s %s before the rebinding, %s %s after", before.Path.Kind, before.Path.Endpoint, after.Path.Kind, after.Path.Endpoint)
	n.echo("busan", "mac", addr4(after))
}
