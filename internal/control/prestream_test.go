package control

import (
	"context"
	"testing"
	"time"

	"weft/internal/wire"
)

// TestKeepAlivesDoNotHoldAnUnauthenticatedChannel: anyone can complete
// the Noise handshake with a key of their own; such a channel must make a
// real request (register, logout, map request) within PreStreamTimeout of
// opening, and keepalives do not extend that.
func TestKeepAlivesDoNotHoldAnUnauthenticatedChannel(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.PreStreamTimeout = 300 * time.Millisecond })
	c, err := h.newSim("idler").dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		for {
			if _, _, err := wire.ReadMessage(c, wire.MaxServerMessage); err != nil {
				return
			}
		}
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case <-closed:
			return
		case <-tick.C:
			if err := wire.WriteMessage(c, wire.MsgKeepAlive, nil); err != nil {
				return // closed by the server
			}
		case <-deadline:
			t.Fatal("a channel that only sends keepalives is still open after 20s")
		}
	}
}
