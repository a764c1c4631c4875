//go:build linux

package labtest_test

import (
	"io"
	"strings"
	"testing"

	"weft/internal/netlab"
	"weft/internal/netlab/labtest"
)

// TestSeedWithWeftBinary runs the lab's helpers from a real weft build:
// the whoami service answers with the router's WAN address, through the
// delay line of a hard NAT.
func TestSeedWithWeftBinary(t *testing.T) {
	l := labtest.Seed(t, func(tp *netlab.Topology) {
		tp.SetNAT("r-fukuoka", netlab.NATHard)
		tp.SetDelay("r-fukuoka", 5)
	})
	resp, err := l.Node("mac").HTTPClient().Get("http://203.0.113.80/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if got, want := strings.TrimSpace(string(b)), l.Node("r-fukuoka").WANAddr.String(); got != want {
		t.Errorf("whoami = %q; want %s", got, want)
	}
	if n := l.Node("r-fukuoka"); n.NAT != netlab.NATHard || n.DelayMS != 5 {
		t.Errorf("r-fukuoka is %s with %dms; want hard with 5ms", n.NAT, n.DelayMS)
	}
}
