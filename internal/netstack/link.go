package netstack

import (
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/stack/gro"
)

// outQueue is how many packets the stack may have sent that wireguard-go
// has not read yet.
const outQueue = 1024

// link is the stack's network interface. Packets from the tunnel are
// injected through the embedded channel endpoint; packets the stack sends
// go to out, which the device's Read drains.
//
// When wireguard-go reads slower than the stack sends (its in-flight
// bound makes its reader wait, or the host is busy), out fills. gVisor's
// channel endpoint drops what does not fit, silently: the stack's TCP
// then sees loss nobody on the path caused, retransmits into the same
// full queue and backs off, and a stream nearly stalls (measured in
// docs/benchmarks.md: 1,400-1,700 drops per 160 MiB, a 32 MiB transfer
// taking 25-33 s instead of 3 or never ending). The link waits for room
// instead, and counts what it is handed, what is read and what it drops
// (only at close), so that loss here would show.
type link struct {
	*channel.Endpoint
	out  chan *stack.PacketBuffer
	done <-chan struct{} // closed with the stack

	// dispatcher is the stack's receive path, set by Attach; gros
	// holds *gro.GRO for the device's Write.
	dispatcher atomic.Pointer[stack.NetworkDispatcher]
	gros       sync.Pool

	handed atomic.Uint64 // packets the stack handed to the link
	read   atomic.Uint64 // packets the device's Read returned
	waits  atomic.Uint64 // writes that found out full
	drops  atomic.Uint64 // packets never queued
}

var _ stack.LinkEndpoint = (*link)(nil)

func newLink(mtu int, done <-chan struct{}) *link {
	// The channel endpoint's own outbound queue is never used.
	ep := channel.New(1, uint32(mtu), "")
	// Checksums of packets from the tunnel count as checked: WireGuard
	// authenticated each packet, so nothing on the path can have
	// altered it, and receive offload checks the TCP segments it joins
	// itself (the IPv4 header checksum of a joined segment is stale by
	// design, and the stack would reject it if it checked).
	ep.LinkEPCapabilities = stack.CapabilityRXChecksumOffload
	return &link{
		Endpoint: ep,
		out:      make(chan *stack.PacketBuffer, outQueue),
		done:     done,
	}
}

// Attach implements stack.LinkEndpoint: the stack hands the link its
// receive path (nil when the interface goes away).
func (l *link) Attach(d stack.NetworkDispatcher) {
	l.Endpoint.Attach(d)
	if d == nil {
		l.dispatcher.Store(nil)
		return
	}
	l.dispatcher.Store(&d)
}

// gro returns a receive offload engine delivering to the stack, or nil
// when the link is not attached; putGRO gives it back after Flush.
func (l *link) gro() *gro.GRO {
	d := l.dispatcher.Load()
	if d == nil {
		return nil
	}
	g, _ := l.gros.Get().(*gro.GRO)
	if g == nil {
		g = new(gro.GRO)
		g.Init(true)
	}
	g.Dispatcher = *d
	return g
}

func (l *link) putGRO(g *gro.GRO) {
	g.Dispatcher = nil
	l.gros.Put(g)
}

// WritePackets queues the stack's packets for the device. While the queue
// is full it waits for the device to read, as a kernel stack's sender
// waits on its queueing discipline: the stack's TCP then slows to the
// pace WireGuard can carry, and loses nothing. Only a closed stack drops.
func (l *link) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	all := pkts.AsSlice()
	l.handed.Add(uint64(len(all)))
	for i, pkt := range all {
		p := pkt.IncRef()
		select {
		case l.out <- p:
			continue
		default:
		}
		l.waits.Add(1)
		select {
		case l.out <- p:
		case <-l.done:
			p.DecRef()
			l.drops.Add(uint64(len(all) - i))
			return i, &tcpip.ErrClosedForSend{}
		}
	}
	return len(all), nil
}

// drain releases what is left in the queue once the stack is closed.
func (l *link) drain() {
	for {
		select {
		case p := <-l.out:
			l.drops.Add(1)
			p.DecRef()
		default:
			return
		}
	}
}

// copyPacket copies pkt into b and returns its length, or -1 when it does
// not fit.
func copyPacket(pkt *stack.PacketBuffer, b []byte) int {
	if pkt.Size() > len(b) {
		return -1
	}
	n := 0
	for _, s := range pkt.AsSlices() {
		n += copy(b[n:], s)
	}
	return n
}
