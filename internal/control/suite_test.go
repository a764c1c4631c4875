package control

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"weft/internal/noiseconn"
	"weft/internal/store"
	"weft/internal/tstest"
	"weft/internal/wire"
)

// The standing suite's control cases (issue 15), each named after its
// case. TestExpiredNodeRevokedEverywhere (expiry_test.go) is the "expired
// or revoked key" case.

func TestParallelRegistrationsWithOneSingleUseKeyMakeOneNode(t *testing.T) {
	const n = 16
	h := newHarness(t, nil)
	k := h.authKey(store.AuthKeyRequest{})
	var wg sync.WaitGroup
	var ok atomic.Int32
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := h.newSim(fmt.Sprint("racer", i)).register(context.Background(), k)
			if err != nil {
				t.Error(err)
				return
			}
			if resp.Error == nil {
				ok.Add(1)
			} else if resp.Error.Code != wire.CodeKeyUsed {
				t.Errorf("refusal %v, want key_used", resp.Error)
			}
		}()
	}
	wg.Wait()
	nodes, err := h.st.ListNodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if ok.Load() != 1 || len(nodes) != 1 {
		t.Fatalf("%d registrations succeeded and %d nodes stored, want exactly one of each", ok.Load(), len(nodes))
	}
}

func TestNoiseSessionOfMachineAAskingForNodeBRefused(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, nil)
	nodes := h.registeredNodes(t, "a", "b")
	a, b := nodes[0], nodes[1]
	if err := b.stream(ctx); err != nil {
		t.Fatal(err)
	}
	defer b.close()
	b.next(t)
	// ask sends one message on a fresh channel of machine a and returns
	// the server's answer, an Error or the typed response.
	ask := func(typ wire.MsgType, v any) (wire.MsgType, []byte) {
		c, err := a.dial(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := wire.WriteMessage(c, typ, v); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		rt, body, err := wire.ReadMessage(c, wire.MaxServerMessage)
		if err != nil {
			t.Fatalf("%v: no answer: %v", typ, err)
		}
		return rt, body
	}
	if typ, body := ask(wire.MsgMapRequest, &wire.MapRequest{NodeKey: b.node.Public()}); typ != wire.MsgError {
		t.Fatalf("machine a asking for node b's map got %v %s", typ, body)
	}
	typ, body := ask(wire.MsgLogoutRequest, &wire.LogoutRequest{NodeKey: b.node.Public()})
	var lr wire.LogoutResponse
	if typ != wire.MsgLogoutResponse || wire.Decode(body, &lr) != nil || lr.Error == nil {
		t.Fatalf("machine a logging out node b got %v %s", typ, body)
	}
	typ, body = ask(wire.MsgRegisterRequest, &wire.RegisterRequest{NodeKey: b.node.Public()})
	var rr wire.RegisterResponse
	if typ != wire.MsgRegisterResponse || wire.Decode(body, &rr) != nil || rr.Error == nil {
		t.Fatalf("machine a taking node b's key got %v %s", typ, body)
	}
	// Node b is untouched: same key, not expired, stream up.
	n, err := h.st.GetNode(ctx, b.self.ID)
	if err != nil || n.NodeKey != b.node.Public() || n.KeyExpired(time.Now()) || !h.srv.Online(b.self.ID) {
		t.Fatalf("node b after machine a's attempts: %+v, %v, online %v", n, err, h.srv.Online(b.self.ID))
	}
}

// tamperConn alters what a node writes after its Noise handshake: mode 1
// flips a bit of each frame's tag, mode 2 writes each frame twice (a
// replay).
type tamperConn struct {
	net.Conn
	mode atomic.Int32
}

func (c *tamperConn) Write(p []byte) (int, error) {
	switch c.mode.Load() {
	case 1:
		q := bytes.Clone(p)
		q[len(q)-1] ^= 1
		return c.Conn.Write(q)
	case 2:
		if _, err := c.Conn.Write(p); err != nil {
			return 0, err
		}
		return c.Conn.Write(p)
	}
	return c.Conn.Write(p)
}

func TestTamperedAndReplayedNoiseFramesCloseTheConnection(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name      string
		mode      int32
		wantNodes int // nodes registered by the one-off key afterwards
	}{
		{"tampered frame", 1, 0},
		{"replayed frame", 2, 1}, // the first copy registers; its replay does nothing
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			k := h.authKey(store.AuthKeyRequest{})
			n := h.newSim("victim")
			var tc *tamperConn
			d := &noiseconn.Dialer{MachineKey: n.machine, ServerKey: h.srv.PublicKey(),
				DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
					c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
					tc = &tamperConn{Conn: c}
					return tc, err
				}}
			c, err := d.Dial(ctx, h.url)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			tc.mode.Store(tt.mode)
			req := &wire.RegisterRequest{AuthKey: k, NodeKey: n.node.Public(), DiscoKey: n.disco.Public()}
			if err := wire.WriteMessage(c, wire.MsgRegisterRequest, req); err != nil {
				t.Fatal(err)
			}
			// The server closes the channel (after answering the
			// genuine copy of a replayed frame).
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			for {
				_, _, err := wire.ReadMessage(c, wire.MaxServerMessage)
				if err == nil {
					continue
				}
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatal("the server kept the channel open")
				}
				break
			}
			nodes, _ := h.st.ListNodes(ctx)
			if len(nodes) != tt.wantNodes {
				t.Fatalf("%d nodes stored, want %d", len(nodes), tt.wantNodes)
			}
			// Nothing else changed: the key works (tampered) or is used
			// exactly once (replayed).
			resp, err := h.newSim("other").register(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			if (tt.wantNodes == 0) != (resp.Error == nil) {
				t.Fatalf("registering with the key afterwards: %+v", resp)
			}
		})
	}
}

func TestKeysTokensAndSecretsNeverInLogs(t *testing.T) {
	var logs tstest.Buffer
	h := newHarness(t, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	ctx := context.Background()
	k := h.authKey(store.AuthKeyRequest{Reusable: true})
	n := h.newSim("a")
	n.mustRegister(t, k)
	if resp, _ := h.newSim("b").register(ctx, k+"x"); resp == nil || resp.Error == nil {
		t.Fatal("a wrong key registered")
	}
	if err := n.stream(ctx); err != nil {
		t.Fatal(err)
	}
	n.next(t)
	n.close()
	if em := h.srv.logout(ctx, n.machine.Public(), &wire.LogoutRequest{NodeKey: n.node.Public()}, h.srv.log); em != nil {
		t.Fatal(em)
	}
	h.close()
	out := logs.String()
	if !strings.Contains(out, "node registered") {
		t.Fatalf("the test's logs are not the server's:\n%s", out)
	}
	secret := func(b [32]byte) string { return hex.EncodeToString(b[:]) }
	mk, _ := n.machine.MarshalText()
	nk, _ := n.node.MarshalText()
	for what, s := range map[string]string{
		"the pre-auth key":            k,
		"a wrong pre-auth key":        k + "x",
		"a machine private key":       string(mk),
		"a node private key":          string(nk),
		"a node private key (hex)":    secret(n.node.Raw32()),
		"the server's private key":    secret(h.srv.cfg.Key.Raw32()),
		"the disco private key (hex)": secret(n.disco.Raw32()),
	} {
		if strings.Contains(out, s) {
			t.Errorf("%s appears in the server's logs", what)
		}
	}
}
