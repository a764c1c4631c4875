package control

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"weft/internal/store"
	"weft/internal/wire"
)

// FuzzRegisteredMachineStream feeds a registered machine's message stream
// (inside its Noise channel, so past authentication) into a running
// control server. Whatever the messages, the server must not crash, must
// answer or close only that channel, and another node's stream must stay
// up. The state carries over between runs, as it would for a real node.
func FuzzRegisteredMachineStream(f *testing.F) {
	h := newHarness(f, nil)
	k := h.authKey(store.AuthKeyRequest{Reusable: true})
	good, fz := h.newSim("good"), h.newSim("fz")
	good.mustRegister(f, k)
	fz.mustRegister(f, k)
	if err := good.stream(context.Background()); err != nil {
		f.Fatal(err)
	}
	defer good.close()
	good.next(f)

	msg := func(t wire.MsgType, v any) []byte {
		body := []byte(nil)
		if v != nil {
			body = mustJSON(v)
		}
		return wire.AppendMessage(nil, t, body)
	}
	eps := []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:41641")}
	routes := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}
	mapReq := msg(wire.MsgMapRequest, &wire.MapRequest{NodeKey: fz.node.Public(), DiscoKey: fz.disco.Public(), Endpoints: eps})
	f.Add(msg(wire.MsgKeepAlive, nil))
	f.Add(msg(wire.MsgRegisterRequest, &wire.RegisterRequest{NodeKey: fz.node.Public(), DiscoKey: fz.disco.Public()}))
	f.Add(append(append([]byte(nil), mapReq...), msg(wire.MsgUpdate, &wire.Update{Endpoints: &eps, HomeRegion: 2, AdvertisedRoutes: &routes})...))
	f.Add(append(append([]byte(nil), mapReq...), mapReq...))
	f.Add(msg(wire.MsgUpdate, &wire.Update{HomeRegion: 1}))
	f.Add(msg(wire.MsgRegisterRequest, &wire.RegisterRequest{NodeKey: good.node.Public(), OldNodeKey: fz.node.Public()}))
	f.Add(msg(wire.MsgMapRequest, &wire.MapRequest{NodeKey: good.node.Public()}))
	f.Add([]byte{byte(wire.MsgMapRequest), 0, 0, 0, 1, '{'})
	f.Add([]byte{200, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, stream []byte) {
		c, err := fz.dial(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		c.Write(stream)
		// Read what the server answers until it closes the channel or
		// has nothing more to say.
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		for {
			if _, _, err := wire.ReadMessage(c, wire.MaxServerMessage); err != nil {
				break
			}
		}
		c.Close()
		select {
		case err := <-good.errc:
			t.Fatalf("another node's stream ended: %v", err)
		default:
		}
		if !h.srv.Online(good.self.ID) {
			t.Fatal("another node went offline")
		}
	})
}
