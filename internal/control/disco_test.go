package control

import (
	"context"
	"testing"
	"time"

	"weft/internal/store"
	"weft/internal/wire"
)

// TestDiscoKeyHeldByAnotherNodeRefused: a node that copies another's disco
// key (it is in every peer's map) must not take it over, whether it
// registers, starts a stream or sends an update with it; otherwise peers
// would send the victim's disco traffic to the thief.
func TestDiscoKeyHeldByAnotherNodeRefused(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, nil)
	k := h.authKey(store.AuthKeyRequest{Reusable: true})
	victim, thief := h.newSim("victim"), h.newSim("thief")
	victim.mustRegister(t, k)
	if err := victim.stream(ctx); err != nil {
		t.Fatal(err)
	}
	defer victim.close()
	victim.next(t)
	stolen := victim.disco

	t.Run("register", func(t *testing.T) {
		thief.disco = stolen
		resp, err := thief.register(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Error == nil || resp.Error.Code != wire.CodeBadRequest {
			t.Fatalf("registration with another node's disco key: %+v", resp)
		}
	})
	thief.disco = h.newSim("x").disco
	thief.mustRegister(t, k)
	t.Run("map request", func(t *testing.T) {
		own := thief.disco
		thief.disco = stolen
		defer func() { thief.disco = own }()
		if err := thief.stream(ctx); err != nil {
			t.Fatal(err)
		}
		defer thief.close()
		select {
		case err := <-thief.errc:
			if em, ok := err.(*wire.ErrorMessage); !ok || em.Code != wire.CodeBadRequest {
				t.Fatalf("stream with another node's disco key ended with %v", err)
			}
		case r := <-thief.msgs:
			t.Fatalf("stream with another node's disco key got a map: %+v", r)
		case <-time.After(10 * time.Second):
			t.Fatal("no answer")
		}
	})
	t.Run("update", func(t *testing.T) {
		thief.msgs = nil
		if err := thief.stream(ctx); err != nil {
			t.Fatal(err)
		}
		defer thief.close()
		thief.next(t)
		if err := thief.sendUpdate(&wire.Update{HomeRegion: -1, DiscoKey: stolen.Public()}); err != nil {
			t.Fatal(err)
		}
		// A later update from the thief is seen by the victim after the
		// disco key one; by then the server has dealt with it.
		eps := []netipAddrPort{mustAddrPort("192.0.2.1:1")}
		if err := thief.sendUpdate(&wire.Update{HomeRegion: -1, Endpoints: &eps}); err != nil {
			t.Fatal(err)
		}
		for {
			r := victim.next(t)
			for _, p := range r.PeersPatched {
				if p.ID != thief.self.ID {
					continue
				}
				if p.DiscoKey != nil && *p.DiscoKey == stolen.Public() {
					t.Fatalf("the victim was told the thief holds its disco key: %+v", p)
				}
				if p.Endpoints != nil && len(*p.Endpoints) == 1 {
					return
				}
			}
		}
	})
	// The victim's own key stays its own: it reconnects with it.
	victim.msgs = nil
	if err := victim.stream(ctx); err != nil {
		t.Fatal(err)
	}
	if r := victim.next(t); !r.Full || r.Self.DiscoKey != stolen.Public() {
		t.Fatalf("victim reconnecting with its own disco key: %+v", r)
	}
}
