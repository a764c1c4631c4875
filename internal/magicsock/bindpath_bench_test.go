package magicsock

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"weft/internal/key"
)

// nullNet is a Network whose main bind costs nothing: its one receive
// function fills every batch with WireGuard data packets from src at
// once, and Send counts and discards. It isolates what the Conn adds per
// packet and per batch from the syscalls under it.
type nullNet struct {
	HostNetwork
	src netip.AddrPort
}

func (n nullNet) NewBind() conn.Bind { return &nullBind{src: n.src} }

func (nullNet) LocalAddrs() ([]netip.Addr, error) { return nil, nil }

type nullBind struct {
	src  netip.AddrPort
	sent int
}

// nullPacketSize is a full WireGuard data packet at the tunnel's usual
// MTU of 1420 (header 16, tag 16).
const nullPacketSize = 1420 + 32

func (b *nullBind) Open(uint16) ([]conn.ReceiveFunc, uint16, error) {
	ep := &conn.StdNetEndpoint{AddrPort: b.src}
	fn := func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		for i := range bufs {
			binary.LittleEndian.PutUint32(bufs[i], 4) // transport data
			sizes[i] = nullPacketSize
			eps[i] = ep
		}
		return len(bufs), nil
	}
	return []conn.ReceiveFunc{fn}, 41641, nil
}

func (b *nullBind) Close() error         { return nil }
func (b *nullBind) SetMark(uint32) error { return nil }
func (b *nullBind) BatchSize() int       { return conn.IdealBatchSize }
func (b *nullBind) Send(bufs [][]byte, _ conn.Endpoint) error {
	b.sent += len(bufs)
	return nil
}
func (b *nullBind) ParseEndpoint(s string) (conn.Endpoint, error) {
	a, err := netip.ParseAddrPort(s)
	return &conn.StdNetEndpoint{AddrPort: a}, err
}

// BenchmarkBindPath measures what the Conn adds on the data path over its
// main bind, per batch of conn.IdealBatchSize (128) full-size packets:
// Send to a peer on a direct path, and a receive of a batch from that
// peer's address, each beside the bare bind doing the same. The bind
// under both costs nothing (nullNet), so the difference is the Conn's own
// work; -benchmem shows its allocations per batch.
//
//	go test -run '^$' -bench BindPath -benchmem ./internal/magicsock/
func BenchmarkBindPath(b *testing.B) {
	src := netip.MustParseAddrPort("198.51.100.7:41641")
	c, ep, inner := newNullConn(b, src)
	bufs := make([][]byte, conn.IdealBatchSize)
	for i := range bufs {
		bufs[i] = make([]byte, nullPacketSize)
	}
	sizes := make([]int, len(bufs))
	eps := make([]conn.Endpoint, len(bufs))
	fns, _, err := c.inner.Open(0) // the bare bind's receive function
	if err != nil {
		b.Fatal(err)
	}
	recv := c.wrapReceive(fns[0])
	innerEP := &conn.StdNetEndpoint{AddrPort: src}
	// perPacket runs fn b.N times and reports the wall time and the
	// process's CPU time per packet: on a shared machine the CPU time
	// is the figure to compare.
	perPacket := func(fn func(b *testing.B)) func(b *testing.B) {
		return func(b *testing.B) {
			c0, ok := processCPU()
			fn(b)
			c1, _ := processCPU()
			packets := float64(b.N * len(bufs))
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/packets, "ns/packet")
			if ok {
				b.ReportMetric(float64((c1-c0).Nanoseconds())/packets, "cpu-ns/packet")
			}
		}
	}
	b.Run("send/bind", perPacket(func(b *testing.B) {
		for range b.N {
			inner.Send(bufs, innerEP)
		}
	}))
	b.Run("send/conn", perPacket(func(b *testing.B) {
		for range b.N {
			if err := c.Send(bufs, ep); err != nil {
				b.Fatal(err)
			}
		}
	}))
	b.Run("receive/bind", perPacket(func(b *testing.B) {
		for range b.N {
			fns[0](bufs, sizes, eps)
		}
	}))
	b.Run("receive/conn", perPacket(func(b *testing.B) {
		for range b.N {
			n, err := recv(bufs, sizes, eps)
			if err != nil || n != len(bufs) || eps[0] != ep {
				b.Fatalf("receive: %d packets, endpoint %v, %v", n, eps[0], err)
			}
		}
	}))
}

// newNullConn makes an open Conn over nullNet with one peer whose direct
// path is src, and returns it, the peer's endpoint and the bare bind.
func newNullConn(b *testing.B, src netip.AddrPort) (*Conn, conn.Endpoint, *nullBind) {
	idle := time.Hour // no timer fires during the benchmark
	c, err := New(Options{
		DiscoKey: key.NewDisco(),
		NodeKey:  key.NewNode().Public(),
		Network:  nullNet{src: src},
		Timers:   Timers{Tick: idle, Heartbeat: idle, TrustWindow: idle, Discovery: idle, Reprobe: idle, Active: idle},
	})
	if err != nil {
		b.Fatal(err)
	}
	if _, _, err := c.Open(0); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	peerKey := key.NewNode().Public()
	c.SetPeers([]Peer{{NodeKey: peerKey, DiscoKey: key.NewDisco().Public(), Endpoints: []netip.AddrPort{src}}})
	ep, err := c.ParseEndpoint(peerKey.String())
	if err != nil {
		b.Fatal(err)
	}
	c.mu.Lock()
	p := c.peers[peerKey]
	innerEP, _ := c.inner.ParseEndpoint(src.String())
	p.path.Store(&path{addr: src, innerEP: innerEP})
	p.nextDiscovery.Store(time.Now().Add(idle).UnixNano())
	c.mu.Unlock()
	if (*c.byAddr.Load())[src] != p {
		b.Fatal("the peer's address is not in the receive path's map")
	}
	return c, ep, c.inner.(*nullBind)
}
