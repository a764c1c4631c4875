package magicsock

import (
	"net/netip"
	"testing"
)

// TestHostPathMTU: the route MTU toward loopback is lo's, read without
// sending anything.
func TestHostPathMTU(t *testing.T) {
	mtu, err := HostNetwork{}.PathMTU(netip.MustParseAddrPort("127.0.0.1:9"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if mtu < 1500 {
		t.Errorf("path MTU toward 127.0.0.1 = %d, want lo's (65536 usually)", mtu)
	}
}
