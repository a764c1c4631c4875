package magicsock_test

import (
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"weft/internal/disco"
	"weft/internal/key"
	"weft/internal/magicsock"
)

// fakeRelay is an in-memory relay: it hands each packet straight to the
// destination Conn's InjectRelayed, and counts the WireGuard (non-disco)
// packets it carried.
type fakeRelay struct {
	mu    sync.Mutex
	conns map[key.NodePublic]*magicsock.Conn
	down  bool

	data atomic.Int64
}

func newFakeRelay() *fakeRelay {
	return &fakeRelay{conns: make(map[key.NodePublic]*magicsock.Conn)}
}

func (r *fakeRelay) add(k key.NodePublic, c *magicsock.Conn) {
	r.mu.Lock()
	r.conns[k] = c
	r.mu.Unlock()
}

// client returns the relay as node self sees it.
func (r *fakeRelay) client(self key.NodePublic) magicsock.Relay {
	return relayClient{r: r, self: self}
}

type relayClient struct {
	r    *fakeRelay
	self key.NodePublic
}

func (rc relayClient) Send(region int, dst key.NodePublic, pkt []byte) error {
	rc.r.mu.Lock()
	c, down := rc.r.conns[dst], rc.r.down
	rc.r.mu.Unlock()
	if c == nil || down {
		return errors.New("fake relay: peer not connected")
	}
	if !disco.LooksLikeDisco(pkt) {
		rc.r.data.Add(1)
	}
	c.InjectRelayed(region, rc.self, pkt)
	return nil
}

// fastTimers shrink the state machine so tests run in well under a second
// per transition. Behaviour, not speed, is asserted.
var fastTimers = magicsock.Timers{
	Tick:        10 * time.Millisecond,
	Heartbeat:   100 * time.Millisecond,
	TrustWindow: time.Second, // long enough to ride out a busy CI machine
	Discovery:   100 * time.Millisecond,
	Reprobe:     time.Second,
	Active:      5 * time.Second,
	PingTimeout: time.Second,
}

// tnode is one Conn driven by the test in place of wireguard-go: it pumps
// the receive functions and records the payloads that arrive.
type tnode struct {
	t        *testing.T
	name     string
	node     key.NodePrivate
	disco    key.DiscoPrivate
	conn     *magicsock.Conn
	received atomic.Int64
	wg       sync.WaitGroup
}

func testLogger(t *testing.T, name string) *slog.Logger {
	if os.Getenv("MAGICSOCK_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", name)
}

func newTNode(t *testing.T, name string, network magicsock.Network, relay *fakeRelay, seed uint64, guess magicsock.GuessBudget) *tnode {
	t.Helper()
	return newTNodeTimers(t, name, network, relay, seed, guess, fastTimers)
}

func newTNodeTimers(t *testing.T, name string, network magicsock.Network, relay *fakeRelay, seed uint64, guess magicsock.GuessBudget, timers magicsock.Timers) *tnode {
	t.Helper()
	n := &tnode{t: t, name: name, node: key.NewNode(), disco: key.NewDisco()}
	c, err := magicsock.New(magicsock.Options{
		Logger:   testLogger(t, name),
		DiscoKey: n.disco,
		NodeKey:  n.node.Public(),
		Relay:    relay.client(n.node.Public()),
		Network:  network,
		Timers:   timers,
		Guess:    guess,
		Rand:     rand.New(rand.NewPCG(seed, seed+1)),
	})
	if err != nil {
		t.Fatal(err)
	}
	n.conn = c
	relay.add(n.node.Public(), c)
	fns, _, err := c.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	for _, fn := range fns {
		n.wg.Add(1)
		go n.pump(fn)
	}
	t.Cleanup(n.close)
	return n
}

func (n *tnode) pump(fn conn.ReceiveFunc) {
	defer n.wg.Done()
	bs := n.conn.BatchSize()
	bufs := make([][]byte, bs)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	sizes := make([]int, bs)
	eps := make([]conn.Endpoint, bs)
	for {
		k, err := fn(bufs, sizes, eps)
		if err != nil {
			return
		}
		for i := range k {
			if sizes[i] > 0 {
				n.received.Add(1)
			}
		}
	}
}

func (n *tnode) close() {
	n.conn.Close()
	n.wg.Wait()
}

// send sends one data packet to peer, as wireguard-go would.
func (n *tnode) send(peer *tnode) error {
	ep, err := n.conn.ParseEndpoint(peer.node.Public().String())
	if err != nil {
		return err
	}
	return n.conn.Send([][]byte{[]byte("data packet, not disco, not stun")}, ep)
}

func (n *tnode) path(peer *tnode) magicsock.PathInfo {
	st, ok := n.conn.PeerStatus(peer.node.Public())
	if !ok {
		return magicsock.PathInfo{}
	}
	return st.Path
}

// traffic makes a and b send to each other every few milliseconds until
// the test ends, so both count as in use.
func traffic(t *testing.T, a, b *tnode) {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tk := time.NewTicker(5 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				a.send(b)
				b.send(a)
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
}

func peerOf(n *tnode, eps []netip.AddrPort, hard bool) magicsock.Peer {
	return magicsock.Peer{
		NodeKey:    n.node.Public(),
		DiscoKey:   n.disco.Public(),
		Endpoints:  eps,
		HomeRegion: 1,
		HardNAT:    hard,
	}
}
