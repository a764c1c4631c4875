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

// TestRegisterAllAddressesStalled: every address of the control server's
// name connects and then never answers the TLS ClientHello. The /key
// fetch has its own bound, so Register fails with that fetch's error
// long before a caller's generous context ends (without the bound it
// would wait on the stalled connections until the context did), and
// every stalled connection is closed.
func TestRegisterAllAddressesStalled(t *testing.T) {
	stalledA, stalledB := tstest.StallAndWork(t)
	stallA, stallB := tstest.NewStallListener(t, stalledA), tstest.NewStallListener(t, stalledB)
	ipA := stalledA.Addr().(*net.TCPAddr).AddrPort().Addr()
	port := stalledB.Addr().(*net.TCPAddr).Port
	ca := tstest.NewCA(t, "private CA")
	tc, err := netutil.TrustTLS(ca.PEM)
	if err != nil {
		t.Fatal(err)
	}
	c, err := controlclient.New(controlclient.Options{
		ServerURL:  "https://ctl.example:" + strconv.Itoa(port),
		MachineKey: key.NewMachine(), NodeKey: key.NewNode(), DiscoKey: key.NewDisco().Public(),
		Hostinfo:  &wire.Hostinfo{Hostname: "n", OS: "linux"},
		TLSConfig: tc,
		Lookup: func(context.Context, string) ([]netip.Addr, error) {
			return []netip.Addr{ipA, netip.MustParseAddr("127.0.0.1")}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	controlclient.SetKeyFetchTimeout(c, 500*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err = c.Register(ctx, "tskey-unused", key.NodePublic{})
	if err == nil {
		t.Fatal("Register succeeded with every address stalled")
	}
	if ctx.Err() != nil {
		t.Fatalf("Register returned only when its context ended (%v): the /key fetch is not bounded", err)
	}
	for name, s := range map[string]*tstest.StallListener{"first": stallA, "second": stallB} {
		if accepted, _ := s.Counts(); accepted == 0 {
			t.Errorf("the %s stalled address was never dialled: the test did not exercise the bound", name)
		}
		tstest.Eventually(t, "the "+name+" address's stalled connections closed", func() bool {
			accepted, closed := s.Counts()
			return closed == accepted
		})
	}
}
