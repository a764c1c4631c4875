package magicsock_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"weft/internal/key"
	"weft/internal/magicsock"
	"weft/internal/magicsock/natsim"
)

// newStdPair makes two wireguard-go devices over the library's own
// StdNetBind on loopback: the baseline magicsock is measured against.
func newStdPair(b testing.TB) (x, y *wgNode) {
	x = newWGNode(b, "10.0.0.1", conn.NewStdNetBind(), key.NewNode())
	y = newWGNode(b, "10.0.0.2", conn.NewStdNetBind(), key.NewNode())
	x.addPeer(b, y, fmt.Sprintf("127.0.0.1:%d", y.port(b)))
	y.addPeer(b, x, fmt.Sprintf("127.0.0.1:%d", x.port(b)))
	return x, y
}

// pump pushes n packets of size bytes from x to y through the tunnel,
// keeping at most window in flight so a slow receiver is not flooded into
// drops, and returns how long they took.
func pump(b testing.TB, x, y *wgNode, n, size int, strict bool) time.Duration {
	const window = 512
	var got atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for got.Load() < int64(n) {
			select {
			case <-y.tun.Inbound:
				got.Add(1)
			case <-time.After(2 * time.Second):
				return
			}
		}
	}()
	pkt := ipPacket(x.ip, y.ip, 0, size)
	start := time.Now()
	for sent := 0; sent < n; sent++ {
		for int64(sent)-got.Load() >= window {
			select {
			case <-done:
				if strict {
					b.Fatalf("tunnel stalled: %d of %d packets arrived", got.Load(), n)
				}
				return time.Since(start)
			default:
			}
			time.Sleep(20 * time.Microsecond)
		}
		x.tun.Outbound <- pkt
	}
	<-done
	d := time.Since(start)
	if strict && got.Load() < int64(n)*9/10 {
		b.Fatalf("only %d of %d packets arrived", got.Load(), n)
	}
	return d
}

// BenchmarkLoopbackThroughput measures WireGuard throughput over magicsock
// (direct path) and over plain StdNetBind in the same run, and reports
// the ratio magicsock/StdNetBind: the cost of path finding on the packet
// path. The channel TUN caps both, so the ratio is the number to read.
func BenchmarkLoopbackThroughput(b *testing.B) {
	const size, perRound = 1400, 20000
	sx, sy := newStdPair(b)
	var blocked atomic.Bool
	mx, my, _ := newMagicPair(b, &blocked)
	// Warm up: handshakes, and the magicsock path turns direct.
	pump(b, sx, sy, 1000, size, false)
	deadline := time.Now().Add(20 * time.Second)
	for pathKind(mx, my) != "direct" {
		if time.Now().After(deadline) {
			b.Fatal("magicsock path never became direct")
		}
		pump(b, mx, my, 100, size, false)
	}
	b.ResetTimer()
	var std, magic time.Duration
	for range b.N {
		std += pump(b, sx, sy, perRound, size, true)
		magic += pump(b, mx, my, perRound, size, true)
	}
	mb := func(d time.Duration) float64 {
		return float64(b.N*perRound*size) / d.Seconds() / 1e6
	}
	b.ReportMetric(mb(std), "std_MB/s")
	b.ReportMetric(mb(magic), "magicsock_MB/s")
	b.ReportMetric(mb(magic)/mb(std), "ratio")
}

// BenchmarkTimeToDirect measures, with the default (production) timers,
// the time from the first packet between two nodes behind easy NATs in
// the simulator to both sides having a direct path. The simulated network
// has no delay, so this is the state machine's own latency; a lab adds the
// relay and link round trips on top.
func BenchmarkTimeToDirect(b *testing.B) {
	for _, kinds := range [][2]natsim.Kind{{natsim.Easy, natsim.Easy}, {natsim.Easy, natsim.Hard}} {
		b.Run(kinds[0].String()+"/"+kinds[1].String(), func(b *testing.B) {
			var total time.Duration
			for i := range b.N {
				total += timeToDirect(b, kinds[0], kinds[1], uint64(i+1))
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms_to_direct")
		})
	}
}

func timeToDirect(b *testing.B, ka, kb natsim.Kind, seed uint64) time.Duration {
	sim := natsim.New(seed)
	relay := newFakeRelay()
	mk := func(name string, kind natsim.Kind, priv, pub netip.Addr) *tnode {
		n := &tnode{name: name, node: key.NewNode(), disco: key.NewDisco()}
		c, err := magicsock.New(magicsock.Options{
			DiscoKey: n.disco, NodeKey: n.node.Public(),
			Relay:   relay.client(n.node.Public()),
			Network: sim.NewHost(priv, sim.NewNAT(kind, pub)),
			Rand:    rand.New(rand.NewPCG(seed, seed)),
		})
		if err != nil {
			b.Fatal(err)
		}
		n.conn = c
		relay.add(n.node.Public(), c)
		fns, _, err := c.Open(0)
		if err != nil {
			b.Fatal(err)
		}
		for _, fn := range fns {
			n.wg.Add(1)
			go n.pump(fn)
		}
		c.SetNetReport(magicsock.NetReport{MappingVariesByDestIP: kind == natsim.Hard, GlobalV4: netip.AddrPortFrom(pub, c.Port())})
		return n
	}
	x := mk("a", ka, privA, publicA)
	y := mk("b", kb, privB, publicB)
	defer x.close()
	defer y.close()
	x.conn.SetPeers([]magicsock.Peer{peerOf(y, y.conn.LocalEndpoints(), kb == natsim.Hard)})
	y.conn.SetPeers([]magicsock.Peer{peerOf(x, x.conn.LocalEndpoints(), ka == natsim.Hard)})
	start := time.Now()
	x.send(y)
	deadline := start.Add(20 * time.Second)
	for x.path(y).Kind != magicsock.PathDirect || y.path(x).Kind != magicsock.PathDirect {
		if time.Now().After(deadline) {
			b.Fatal("never direct")
		}
		x.send(y)
		y.send(x)
		time.Sleep(time.Millisecond)
	}
	return time.Since(start)
}
