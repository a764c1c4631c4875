package controlclient_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"weft/internal/controlclient"
	"weft/internal/key"
	"weft/internal/tstest"
	"weft/internal/tstest/controltest"
	"weft/internal/wire"
)

// TestRedialReconnectsAtOnce: Redial brings a new map stream at once
// however many came before it, and abandons a dial that hangs (as one
// from an address that went away does). The backoff is an hour, so a
// reconnect that waited for it would never come within the test: before
// Redial reset the backoff and cut the wait short, the second of several
// address changes seconds apart waited a backoff grown by the first, and
// a hanging dial ran to its 30 s timeout and then waited as long.
func TestRedialReconnectsAtOnce(t *testing.T) {
	e := controltest.New(t)
	var mu sync.Mutex
	dials, hang := 0, false
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		dials++
		h := hang
		mu.Unlock()
		if h {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	nDials := func() int {
		mu.Lock()
		defer mu.Unlock()
		return dials
	}
	setHang := func(h bool) {
		mu.Lock()
		hang = h
		mu.Unlock()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := controlclient.New(controlclient.Options{
		ServerURL:  e.URL,
		MachineKey: key.NewMachine(), NodeKey: key.NewNode(), DiscoKey: key.NewDisco().Public(),
		Hostinfo:    &wire.Hostinfo{Hostname: "n", OS: "linux"},
		MinBackoff:  time.Hour,
		MaxBackoff:  2 * time.Hour,
		DialContext: dial,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Register(ctx, e.AuthKey(false), key.NodePublic{}); err != nil {
		t.Fatal(err)
	}
	run := make(chan error, 1)
	go func() { run <- c.Run(ctx) }()
	connected := func() bool { ok, _ := c.Connected(); return ok }
	tstest.Eventually(t, "the first map stream", connected)

	for round := range 3 {
		before := nDials()
		c.Redial()
		tstest.Eventually(t, "a new map stream after Redial", func() bool { return nDials() > before && connected() })
		t.Logf("round %d: streaming again", round)
	}

	// A dial that hangs: Redial abandons it and dials again.
	setHang(true)
	before := nDials()
	c.Redial()
	tstest.Eventually(t, "a hanging dial", func() bool { return nDials() > before })
	setHang(false)
	before = nDials()
	c.Redial()
	tstest.Eventually(t, "a new map stream after abandoning the hanging dial", func() bool { return nDials() > before && connected() })

	cancel()
	<-run
}
