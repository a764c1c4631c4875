package control

import (
	"context"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"weft/internal/store"
	"weft/internal/wire"
)

// pipeListener is an in-memory net.Listener: each dial is one net.Pipe.
// With it a control server and its sim nodes run inside a synctest
// bubble, where the server's timers (batch window, keepalive, ephemeral
// expiry) run on a fake clock and a test waits for them without sleeping.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

func (l *pipeListener) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// newBubbleHarness is newHarness over a pipeListener; call it inside a
// synctest bubble. The server keeps its default timers unless mod sets
// them.
func newBubbleHarness(t *testing.T, mod func(*Config)) *harness {
	t.Helper()
	st, srv := newTestServer(t, func(c *Config) {
		c.BatchWindow = 0 // the default, on the fake clock
		if mod != nil {
			mod(c)
		}
	})
	ln := newPipeListener()
	hs := &http.Server{Handler: srv.Handler()}
	go hs.Serve(ln)
	// The URL names an address, not a host name: the pipe stands for it,
	// and a name would be resolved (outside the bubble) before the dial.
	h := &harness{t: t, st: st, srv: srv, url: "http://192.0.2.1", dial: ln.dial, stopHTTP: func() { hs.Close() }}
	t.Cleanup(h.close)
	return h
}

// drained empties n's queue of map messages.
func drained(n *simNode) {
	for len(n.msgs) > 0 {
		<-n.msgs
	}
}

// TestBatchWindowBubble checks that two updates within one batch window
// reach a peer as one patch carrying the later value, and not before the
// window ends.
func TestBatchWindowBubble(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newBubbleHarness(t, nil)
		k := h.authKey(store.AuthKeyRequest{Reusable: true})
		watcher, changer := h.newSim("watcher"), h.newSim("changer")
		for _, n := range []*simNode{watcher, changer} {
			n.mustRegister(t, k)
			if err := n.stream(t.Context()); err != nil {
				t.Fatal(err)
			}
			n.next(t)
		}
		time.Sleep(DefaultBatchWindow)
		synctest.Wait()
		drained(watcher)

		first := []netipAddrPort{mustAddrPort("198.51.100.1:1")}
		second := []netipAddrPort{mustAddrPort("198.51.100.2:2")}
		if err := changer.sendUpdate(&wire.Update{Endpoints: &first, HomeRegion: -1}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(DefaultBatchWindow / 2)
		if err := changer.sendUpdate(&wire.Update{Endpoints: &second, HomeRegion: -1}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if len(watcher.msgs) != 0 {
			t.Fatalf("a patch went out before the batch window ended: %+v", <-watcher.msgs)
		}
		time.Sleep(DefaultBatchWindow)
		synctest.Wait()
		if len(watcher.msgs) != 1 {
			t.Fatalf("%d messages after the window, want one patch", len(watcher.msgs))
		}
		r := <-watcher.msgs
		if len(r.PeersPatched) != 1 || r.PeersPatched[0].Endpoints == nil || !slices.Equal(*r.PeersPatched[0].Endpoints, second) {
			t.Fatalf("got %+v, want one patch with the later endpoints %v", r, second)
		}
	})
}

// TestKeepAliveBubble checks that an idle stream gets keepalives, and
// that a node that sends nothing for three keepalive intervals is
// dropped, and not before. (A keepalive counts as traffic for the next
// tick, so an idle stream gets one every other interval.)
func TestKeepAliveBubble(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newBubbleHarness(t, nil)
		n := h.newSim("quiet")
		n.mustRegister(t, h.authKey(store.AuthKeyRequest{}))
		var mu sync.Mutex
		var keepalives []time.Time
		n.onFrame = func(typ wire.MsgType, body []byte) bool {
			if typ == wire.MsgKeepAlive {
				mu.Lock()
				keepalives = append(keepalives, time.Now())
				mu.Unlock()
			}
			return true
		}
		start := time.Now()
		if err := n.stream(t.Context()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2*DefaultKeepAlive + DefaultKeepAlive/2)
		synctest.Wait()
		mu.Lock()
		got := len(keepalives)
		mu.Unlock()
		if got == 0 {
			t.Fatalf("no keepalive in %v of silence", 2*DefaultKeepAlive+DefaultKeepAlive/2)
		}
		select {
		case err := <-n.errc:
			t.Fatalf("stream ended early: %v", err)
		default:
		}
		time.Sleep(DefaultKeepAlive)
		synctest.Wait()
		select {
		case <-n.errc:
			if d := time.Since(start); d < 3*DefaultKeepAlive {
				t.Fatalf("dropped after %v, before three keepalive intervals", d)
			}
		default:
			t.Fatal("a node silent for three keepalive intervals was not dropped")
		}
	})
}

// TestEphemeralExpiryBubble checks that an ephemeral node that stays
// away for DefaultEphemeralTimeout is deleted and leaves its peers' maps,
// and not a moment before.
func TestEphemeralExpiryBubble(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// The sim watcher sends no keepalives: keep it from being
		// dropped as silent while the minutes pass.
		h := newBubbleHarness(t, func(c *Config) { c.KeepAlive = time.Hour })
		watcher, eph := h.newSim("watcher"), h.newSim("eph")
		watcher.mustRegister(t, h.authKey(store.AuthKeyRequest{}))
		eph.mustRegister(t, h.authKey(store.AuthKeyRequest{Ephemeral: true}))
		for _, n := range []*simNode{watcher, eph} {
			if err := n.stream(t.Context()); err != nil {
				t.Fatal(err)
			}
			n.next(t)
		}
		eph.close()
		synctest.Wait()
		time.Sleep(DefaultEphemeralTimeout - time.Second)
		synctest.Wait()
		if _, err := h.st.GetNode(context.Background(), eph.self.ID); err != nil {
			t.Fatalf("ephemeral node gone before its timeout: %v", err)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if _, err := h.st.GetNode(context.Background(), eph.self.ID); err == nil {
			t.Fatal("ephemeral node still stored after its timeout")
		}
		removed := false
		for len(watcher.msgs) > 0 {
			removed = removed || slices.Contains((<-watcher.msgs).PeersRemoved, eph.self.ID)
		}
		if !removed {
			t.Fatal("the watcher never saw the ephemeral node removed")
		}
	})
}
