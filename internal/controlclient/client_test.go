package controlclient_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"weft/internal/controlclient"
	"weft/internal/key"
	"weft/internal/tstest"
	"weft/internal/tstest/controltest"
	"weft/internal/wire"
)

func TestPinning(t *testing.T) {
	e := controltest.New(t)
	var pinned key.MachinePublic
	c, _ := controlclient.New(controlclient.Options{
		ServerURL: e.URL, MachineKey: key.NewMachine(), NodeKey: key.NewNode(),
		OnPin: func(k key.MachinePublic) error { pinned = k; return nil },
	})
	if _, err := c.Register(context.Background(), e.AuthKey(false), key.NodePublic{}); err != nil {
		t.Fatal(err)
	}
	if pinned != e.Key.Public() {
		t.Fatalf("pinned %v, want the server's key", pinned)
	}

	// The server is replaced by one with another key at the same URL.
	e.Start(key.NewMachine())
	c2 := e.Client("x", pinned, nil)
	_, err := c2.Register(context.Background(), e.AuthKey(false), key.NodePublic{})
	if !errors.Is(err, controlclient.ErrServerKeyChanged) {
		t.Fatalf("err = %v, want ErrServerKeyChanged", err)
	}
	if !strings.Contains(err.Error(), "weft logout") {
		t.Errorf("error %q does not say what to do", err)
	}
}

func TestUnreachable(t *testing.T) {
	c, _ := controlclient.New(controlclient.Options{ServerURL: "http://127.0.0.1:1", MachineKey: key.NewMachine(), NodeKey: key.NewNode()})
	_, err := c.Register(context.Background(), "k", key.NodePublic{})
	if !errors.Is(err, controlclient.ErrUnreachable) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
}

func TestRegisterRefusalIsPlainWords(t *testing.T) {
	e := controltest.New(t)
	_, err := e.Client("x", key.MachinePublic{}, nil).Register(context.Background(), "nope", key.NodePublic{})
	var em *wire.ErrorMessage
	if !errors.As(err, &em) || em.Code != wire.CodeInvalidKey || !strings.Contains(em.Message, "invalid auth key") {
		t.Fatalf("err = %#v", err)
	}
}

// TestStreamReconnectsAndResumes runs two clients, restarts the server
// under them, and checks that they come back and see each other, and that
// endpoint updates flow.
func TestStreamReconnectsAndResumes(t *testing.T) {
	e := controltest.New(t)
	k := e.AuthKey(true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var clients []*controlclient.Client
	runs := make(chan error, 2)
	for _, name := range []string{"a", "b"} {
		c := e.Client(name, key.MachinePublic{}, nil)
		if _, err := c.Register(ctx, k, key.NodePublic{}); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		go func() { runs <- c.Run(ctx) }()
	}
	seesOnline := func(c *controlclient.Client, name string) bool {
		nm := c.NetMap()
		if nm == nil {
			return false
		}
		for _, p := range nm.Peers {
			if p.Name == name && p.Online {
				return true
			}
		}
		return false
	}
	tstest.Eventually(t, "a sees b", func() bool { return seesOnline(clients[0], "b") })
	tstest.Eventually(t, "b sees a", func() bool { return seesOnline(clients[1], "a") })

	ep := netip.MustParseAddrPort("192.0.2.1:41641")
	clients[0].SetEndpoints([]netip.AddrPort{ep}, 1)
	tstest.Eventually(t, "b sees a's endpoint", func() bool {
		for _, p := range clients[1].NetMap().Peers {
			if p.Name == "a" && len(p.Endpoints) == 1 && p.Endpoints[0] == ep && p.HomeRegion == 1 {
				return true
			}
		}
		return false
	})

	e.Start(e.Key) // a server restart drops every stream
	tstest.Eventually(t, "a disconnected", func() bool { ok, _ := clients[0].Connected(); return !ok })
	tstest.Eventually(t, "a reconnected", func() bool { ok, _ := clients[0].Connected(); return ok })
	tstest.Eventually(t, "a sees b again", func() bool { return seesOnline(clients[0], "b") })
	// The endpoint set before the restart is re-sent with the new stream.
	tstest.Eventually(t, "b sees a's endpoint again", func() bool {
		for _, p := range clients[1].NetMap().Peers {
			if p.Name == "a" && len(p.Endpoints) == 1 {
				return true
			}
		}
		return false
	})
	cancel()
	for range clients {
		if err := <-runs; !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v", err)
		}
	}
}
