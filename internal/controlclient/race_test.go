package controlclient_test

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"weft/internal/controlclient"
	"weft/internal/key"
	"weft/internal/netutil"
	"weft/internal/tstest"
	"weft/internal/tstest/controltest"
	"weft/internal/wire"
)

// TestRegisterRacesStalledAddress: the control server's name resolves to
// two addresses; the preferred one's TCP connects but never answers the
// TLS ClientHello (a broken IPv6 path MTU, a middlebox). Both of the
// client's connections, the /key fetch and the control channel, race
// their whole setup per address, so Register succeeds through the other
// address long before its context ends (a client whose dialer raced the
// TCP connect alone would sit on the stalled connection until then), and
// every stalled connection is closed.
func TestRegisterRacesStalledAddress(t *testing.T) {
	e := controltest.New(t)
	stalledLn, workingLn := tstest.StallAndWork(t)
	stall := tstest.NewStallListener(t, stalledLn)
	ca := tstest.NewCA(t, "private CA")
	e.StartTLSOn(workingLn, ca.Issue(t, "ctl.example"))
	tc, err := netutil.TrustTLS(ca.PEM)
	if err != nil {
		t.Fatal(err)
	}
	stallIP := stalledLn.Addr().(*net.TCPAddr).AddrPort().Addr()
	c, err := controlclient.New(controlclient.Options{
		ServerURL:  "https://ctl.example:" + strconv.Itoa(workingLn.Addr().(*net.TCPAddr).Port),
		MachineKey: key.NewMachine(), NodeKey: key.NewNode(), DiscoKey: key.NewDisco().Public(),
		Hostinfo:  &wire.Hostinfo{Hostname: "n", OS: "linux"},
		TLSConfig: tc,
		Lookup: func(_ context.Context, host string) ([]netip.Addr, error) {
			if host != "ctl.example" {
				t.Errorf("looked up %q, want ctl.example", host)
			}
			return []netip.Addr{stallIP, netip.MustParseAddr("127.0.0.1")}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	// The context is the only bound: a dial stuck on the stalled
	// address fails with its end.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Register(ctx, e.AuthKey(false), key.NodePublic{}); err != nil {
		t.Fatalf("Register (stuck on the stalled address?): %v", err)
	}
	if accepted, _ := stall.Counts(); accepted < 2 {
		t.Fatalf("the stalled address was dialled %d times, want at least 2 (the /key fetch and the control channel)", accepted)
	}
	tstest.Eventually(t, "the stalled connections closed", func() bool {
		accepted, closed := stall.Counts()
		return closed == accepted
	})
}
