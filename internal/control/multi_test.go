package control

import (
	"context"
	"net/http/httptest"
	"net/netip"
	"slices"
	"testing"
	"time"

	"weft/internal/changefeed"
	"weft/internal/key"
	"weft/internal/store"
	"weft/internal/wire"
)

// Several servers on one store: these tests run two control servers in one
// process on one SQLite store, joined by a changefeed.Hub, and check that
// what one server changes reaches the nodes the other streams. The same
// code runs over PostgreSQL's LISTEN/NOTIFY in the lab tests
// (cmd/weft/lab_ha_test.go).

// newPair returns two harnesses on one store and one hub, with one
// server key, as `weft server` processes sharing a database are.
func newPair(t *testing.T) (a, b *harness) {
	t.Helper()
	_, a, b = newPairWith(t, nil)
	return a, b
}

// newPairWith is newPair with mod, if set, adjusting both servers'
// Config; it returns the hub too.
func newPairWith(t *testing.T, mod func(*Config)) (hub *changefeed.Hub, a, b *harness) {
	t.Helper()
	hub = changefeed.NewHub()
	sk := key.NewMachine()
	shared := func(c *Config) {
		c.Key, c.Feed, c.PersistInterval = sk, hub.Feed(), 10*time.Millisecond
		if mod != nil {
			mod(c)
		}
	}
	a = newHarness(t, shared)
	cfg := Config{Store: a.st, BatchWindow: 5 * time.Millisecond, RegisterRate: -1}
	shared(&cfg)
	srv, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	b = &harness{t: t, st: a.st, srv: srv, url: hs.URL, hs: hs}
	// b shares a's store: a's cleanup closes it, after b stopped.
	t.Cleanup(func() { hs.Close(); srv.Close() })
	return hub, a, b
}

// feedView is what a node knows of its peers, folded from its map
// messages.
type feedView struct {
	peers map[wire.NodeID]wire.Node
	dns   *wire.DNSConfig
}

func (v *feedView) apply(r *wire.MapResponse) {
	if r.Full {
		v.peers = map[wire.NodeID]wire.Node{}
		for _, p := range r.Peers {
			v.peers[p.ID] = *p
		}
	}
	for _, p := range r.PeersChanged {
		v.peers[p.ID] = *p
	}
	for _, pp := range r.PeersPatched {
		p, ok := v.peers[pp.ID]
		if !ok {
			continue
		}
		if pp.Online != nil {
			p.Online = *pp.Online
		}
		if pp.Endpoints != nil {
			p.Endpoints = *pp.Endpoints
		}
		v.peers[pp.ID] = p
	}
	for _, id := range r.PeersRemoved {
		delete(v.peers, id)
	}
	if r.DNS != nil {
		v.dns = r.DNS
	}
}

// await folds n's messages into v until cond holds.
func (v *feedView) await(t *testing.T, n *simNode, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for !cond() {
		select {
		case r := <-n.msgs:
			v.apply(r)
		case err := <-n.errc:
			t.Fatalf("%s: stream ended waiting for %s: %v", n.name, what, err)
		case <-deadline:
			t.Fatalf("%s: no map saying %s; peers %+v", n.name, what, v.peers)
		}
	}
}

func TestTwoServersShareChanges(t *testing.T) {
	a, b := newPair(t)
	ctx := context.Background()
	k := a.authKey(store.AuthKeyRequest{Reusable: true})
	na, nb := a.newSim("na"), b.newSim("nb")
	na.routes = []netip.Prefix{netip.MustParsePrefix("10.9.0.0/24")}
	na.mustRegister(t, k) // through server A
	nb.mustRegister(t, k) // through server B
	for _, n := range []*simNode{na, nb} {
		if err := n.stream(ctx, "198.51.100.1:41641"); err != nil {
			t.Fatal(err)
		}
		defer n.close()
	}
	var va, vb feedView
	idA, idB := na.self.ID, nb.self.ID

	t.Run("registration and online state cross", func(t *testing.T) {
		vb.await(t, nb, "na online", func() bool { return vb.peers[idA].Online })
		va.await(t, na, "nb online", func() bool { return va.peers[idB].Online })
		if !b.srv.Online(idA) || !a.srv.Online(idB) {
			t.Fatal("Server.Online does not count streams at the other server")
		}
	})
	t.Run("endpoint update on A reaches a node on B", func(t *testing.T) {
		eps := []netip.AddrPort{netip.MustParseAddrPort("203.0.113.7:41641")}
		if err := na.sendUpdate(&wire.Update{Endpoints: &eps, HomeRegion: -1}); err != nil {
			t.Fatal(err)
		}
		vb.await(t, nb, "na's new endpoint", func() bool {
			p := vb.peers[idA]
			return len(p.Endpoints) == 1 && p.Endpoints[0] == eps[0]
		})
	})
	t.Run("route approval on A reaches a node on B", func(t *testing.T) {
		if _, err := a.st.ApproveRoute(ctx, idA, na.routes[0]); err != nil {
			t.Fatal(err)
		}
		a.srv.NodeChanged(idA) // what the admin API of server A does
		vb.await(t, nb, "na's approved route", func() bool {
			return len(vb.peers[idA].Routes) == 1 && vb.peers[idA].Routes[0] == na.routes[0]
		})
	})
	t.Run("DNS change on B reaches a node on A", func(t *testing.T) {
		if err := a.st.SetDNSSettings(ctx, []byte(`{"nameservers": ["198.51.100.53"]}`)); err != nil {
			t.Fatal(err)
		}
		b.srv.DNSChanged()
		va.await(t, na, "the new DNS settings", func() bool {
			return va.dns != nil && len(va.dns.Nameservers) == 1
		})
	})
	t.Run("a node moving from A to B stays online for the others", func(t *testing.T) {
		nc := a.newSim("nc")
		nc.mustRegister(t, k)
		if err := nc.stream(ctx); err != nil {
			t.Fatal(err)
		}
		idC := nc.self.ID
		vb.await(t, nb, "nc online", func() bool { return vb.peers[idC].Online })
		// nc switches to B, as a node does when A dies: its new stream
		// opens on B before A notices the old one is gone.
		old := nc.conn
		nc.h = b
		if err := nc.stream(ctx); err != nil {
			t.Fatal(err)
		}
		defer nc.close()
		// stream returns once its request is written; the move is made
		// when B holds the stream, which is what a node sees as its
		// first map from B.
		deadline := time.Now().Add(20 * time.Second)
		for !slices.Contains(b.srv.m.streaming(), idC) {
			if time.Now().After(deadline) {
				t.Fatal("B never took nc's stream")
			}
			time.Sleep(5 * time.Millisecond)
		}
		old.Close()
		// Once A saw the old stream end, it says nc went offline there,
		// and then (a marker) that the DNS settings changed: when nb, on
		// B, gets the DNS change, B has handled A's word about nc too.
		deadline = time.Now().Add(20 * time.Second)
		for len(a.srv.m.streaming()) > 1 { // na alone streams at A
			if time.Now().After(deadline) {
				t.Fatal("A never saw nc's old stream end")
			}
			time.Sleep(5 * time.Millisecond)
		}
		if err := a.st.SetDNSSettings(ctx, []byte(`{"nameservers": ["198.51.100.54"]}`)); err != nil {
			t.Fatal(err)
		}
		a.srv.DNSChanged()
		vb.await(t, nb, "the marker DNS change", func() bool {
			return vb.dns != nil && len(vb.dns.Nameservers) == 1 && vb.dns.Nameservers[0].Addr().String() == "198.51.100.54"
		})
		va.await(t, na, "nc online", func() bool { return va.peers[idC].Online })
		if !vb.peers[idC].Online || !a.srv.Online(idC) || !b.srv.Online(idC) {
			t.Fatalf("after the move, online for nb: %v, at A: %v, at B: %v", vb.peers[idC].Online, a.srv.Online(idC), b.srv.Online(idC))
		}
	})
	t.Run("deletion on B reaches A and ends the node's stream there", func(t *testing.T) {
		if err := a.st.DeleteNode(ctx, idA); err != nil {
			t.Fatal(err)
		}
		b.srv.NodeRemoved(idA)
		vb.await(t, nb, "na removed", func() bool { _, ok := vb.peers[idA]; return !ok })
		select {
		case <-na.errc:
		case <-time.After(20 * time.Second):
			t.Fatal("na's stream on A still open after B deleted it")
		}
	})
}

// TestServerJoiningLearnsWhoIsOnline: a server started after another
// already streams nodes learns which (its hello is answered), so its own
// nodes see them online.
func TestServerJoiningLearnsWhoIsOnline(t *testing.T) {
	hub := changefeed.NewHub()
	sk := key.NewMachine()
	a := newHarness(t, func(c *Config) { c.Key, c.Feed = sk, hub.Feed() })
	k := a.authKey(store.AuthKeyRequest{Reusable: true})
	na := a.newSim("na")
	na.mustRegister(t, k)
	if err := na.stream(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer na.close()
	na.next(t)
	srv, err := New(context.Background(), Config{Store: a.st, Key: sk, Feed: hub.Feed(), BatchWindow: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	deadline := time.Now().Add(20 * time.Second)
	for !srv.Online(na.self.ID) {
		if time.Now().After(deadline) {
			t.Fatal("the new server never learnt that na streams at the first")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLoginApprovalReachesOtherServer: an interactive login approved at
// one server (AnnounceLogin) wakes the logins waiting at the other
// (Config.LoginsChanged), through the change feed.
func TestLoginApprovalReachesOtherServer(t *testing.T) {
	hub := changefeed.NewHub()
	sk := key.NewMachine()
	woken := make(chan struct{}, 1)
	a := newHarness(t, func(c *Config) { c.Key, c.Feed = sk, hub.Feed() })
	b, err := New(context.Background(), Config{Store: a.st, Key: sk, Feed: hub.Feed(), RegisterRate: -1,
		LoginsChanged: func() {
			select {
			case woken <- struct{}{}:
			default:
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	a.srv.AnnounceLogin()
	select {
	case <-woken:
	case <-time.After(10 * time.Second):
		t.Fatal("the other server was not told of the approval")
	}
}
