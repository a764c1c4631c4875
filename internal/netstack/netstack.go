// Package netstack is weft's userspace networking mode: a TCP/IP stack
// (gVisor) in the daemon's own process takes the place of the kernel's TUN
// device, so a node needs no root, no /dev/net/tun and changes nothing in
// the host's network. wireguard-go reads and writes the stack's packets as
// it would a TUN's.
//
// Applications reach the tailnet through the daemon's SOCKS5 server and
// HTTP proxy, which dial through Dialer. Connections that peers open to the
// node's tailnet address are forwarded to the same port on localhost; on
// an exit node or subnet router, connections to other addresses are
// terminated in the stack and re-originated from ordinary host sockets
// (forward.go), so such a node needs no kernel forwarding or NAT either.
//
// wireguard-go ships a netstack TUN of its own, but it keeps its stack
// private, and forwarding needs the stack's promiscuous mode and transport
// handlers; this package is the same channel-endpoint design with those.
package netstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"weft/internal/osnet"
)

// Name is what the daemon's --tun flag says for this mode, and what the
// data plane reports as its device name.
const Name = "userspace-networking"

// nicID is the stack's one network interface.
const nicID tcpip.NICID = 1

// Options configure a Stack.
type Options struct {
	// Logger receives one line per refused or failed flow at debug level;
	// nil discards them.
	Logger *slog.Logger
	// MTU is the stack's link MTU; 0 means osnet.DefaultMTU.
	MTU int
	// Pinger forwards an exit node's pings; nil pings from an
	// unprivileged ICMP socket.
	Pinger Pinger
	// HostDialer opens the host sockets flows are re-originated from and
	// the localhost connections inbound flows are handed to; nil means a
	// plain net.Dialer.
	HostDialer HostDialer
}

// Stack is one userspace TCP/IP stack with its packet device. It plays
// the part osnet.Router plays in kernel mode: Apply takes the same Config.
type Stack struct {
	log  *slog.Logger
	mtu  int
	st   *stack.Stack
	ep   *link
	dev  *device
	host HostDialer
	// pinger forwards pings; echoes bounds those in flight.
	pinger   Pinger
	echoes   chan struct{}
	cfg      atomic.Pointer[osnet.Config] // last applied
	udpFlows atomic.Int64                 // forwarded UDP flows open now
	names    atomic.Pointer[NamesFunc]    // the tailnet's names (SetNames); nil: none

	ctx    context.Context // cancelled by Close; ends forwarded flows
	cancel context.CancelFunc

	mu     sync.Mutex // guards addrs and closed
	addrs  []netip.Prefix
	closed bool
}

// New makes a stack with no addresses yet; Apply gives it the node's.
func New(opts Options) (*Stack, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MTU == 0 {
		opts.MTU = osnet.DefaultMTU
	}
	if opts.HostDialer == nil {
		opts.HostDialer = plainDialer{}
	}
	if opts.Pinger == nil {
		opts.Pinger = hostPinger{}
	}
	s := &Stack{
		log:    opts.Logger,
		mtu:    opts.MTU,
		host:   opts.HostDialer,
		pinger: opts.Pinger,
		echoes: make(chan struct{}, maxEchoes),
		st: stack.New(stack.Options{
			NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
			TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
			// Not HandleLocal: with promiscuous mode every source
			// address would count as the stack's own and be dropped.
			HandleLocal: false,
		}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.ep = newLink(opts.MTU, s.ctx.Done())
	s.cfg.Store(&osnet.Config{})
	fail := func(what string, e tcpip.Error) (*Stack, error) {
		s.st.Close()
		return nil, fmt.Errorf("netstack: %s: %s", what, e)
	}
	sack := tcpip.TCPSACKEnabled(true)
	if e := s.st.SetTransportProtocolOption(tcp.ProtocolNumber, &sack); e != nil {
		return fail("enable TCP SACK", e)
	}
	// gVisor's default TCP buffers (1 MB at most) cap one stream well
	// below what the tunnel carries; let them grow like Linux's do.
	rx := tcpip.TCPReceiveBufferSizeRangeOption{Min: tcp.MinBufferSize, Default: tcp.DefaultReceiveBufferSize, Max: 8 << 20}
	if e := s.st.SetTransportProtocolOption(tcp.ProtocolNumber, &rx); e != nil {
		return fail("TCP receive buffer", e)
	}
	tx := tcpip.TCPSendBufferSizeRangeOption{Min: tcp.MinBufferSize, Default: tcp.DefaultSendBufferSize, Max: 6 << 20}
	if e := s.st.SetTransportProtocolOption(tcp.ProtocolNumber, &tx); e != nil {
		return fail("TCP send buffer", e)
	}
	if e := s.st.CreateNIC(nicID, s.ep); e != nil {
		return fail("create interface", e)
	}
	// Promiscuous mode hands the stack packets for any destination, and
	// spoofing lets it answer from that destination: together they let
	// an exit node terminate flows to the whole internet.
	if e := s.st.SetPromiscuousMode(nicID, true); e != nil {
		return fail("promiscuous mode", e)
	}
	if e := s.st.SetSpoofing(nicID, true); e != nil {
		return fail("spoofing", e)
	}
	s.st.SetRouteTable([]tcpip.Route{
		{Destination: header.IPv4EmptySubnet, NIC: nicID},
		{Destination: header.IPv6EmptySubnet, NIC: nicID},
	})
	s.installForwarders()
	s.dev = &device{s: s, events: make(chan tun.Event, 1)}
	s.dev.events <- tun.EventUp
	return s, nil
}

// TUN returns the packet device for wireguard-go, whose device closes it.
func (s *Stack) TUN() tun.Device { return s.dev }

// Name returns Name.
func (s *Stack) Name() string { return Name }

// Mark returns 0: nothing is routed by socket mark in this mode, and
// setting one would need privileges this mode does without.
func (s *Stack) Mark() uint32 { return 0 }

// Warnings returns nothing; the stack has no host problems to report.
func (s *Stack) Warnings() []string { return nil }

// IntoTunnelDrops returns 0: the stack opens nothing into the tunnel on a
// LAN host's behalf, so there is nothing to drop.
func (s *Stack) IntoTunnelDrops() (uint64, error) { return 0, nil }

// Changes returns a channel that never fires: the stack's addresses change
// only through Apply. The caller keeps polling the host's own addresses.
func (s *Stack) Changes(context.Context) (<-chan struct{}, error) { return nil, nil }

// Apply gives the stack the node's addresses and the forwarding policy in
// cfg (AdvertiseExitNode, AdvertiseRoutes, TailnetRoutes, SubnetRoutes,
// ExitNode); nothing on the host changes.
func (s *Stack) Apply(cfg osnet.Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return osnet.ErrClosed
	}
	var errs []error
	want := slices.Clone(cfg.Addresses)
	for _, a := range s.addrs {
		if !slices.Contains(want, a) {
			if e := s.st.RemoveAddress(nicID, tcpip.AddrFromSlice(a.Addr().AsSlice())); e != nil {
				errs = append(errs, fmt.Errorf("remove address %s: %s", a, e))
			}
		}
	}
	for _, a := range want {
		if slices.Contains(s.addrs, a) {
			continue
		}
		proto := ipv4.ProtocolNumber
		if a.Addr().Is6() {
			proto = ipv6.ProtocolNumber
		}
		pa := tcpip.ProtocolAddress{Protocol: proto, AddressWithPrefix: tcpip.AddrFromSlice(a.Addr().AsSlice()).WithPrefix()}
		if e := s.st.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); e != nil {
			errs = append(errs, fmt.Errorf("add address %s: %s", a, e))
		}
	}
	s.addrs = want
	c := cfg
	s.cfg.Store(&c)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("netstack: %w", err)
	}
	return nil
}

// Close ends every forwarded flow and the stack. The device is closed by
// its owner (wireguard-go); Close is idempotent.
func (s *Stack) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.st.Close()
	return nil
}

// device is the Stack seen as a TUN by wireguard-go: what it writes goes
// into the stack, and what the stack sends comes out of Read.
type device struct {
	s         *Stack
	events    chan tun.Event
	closeOnce sync.Once
}

var _ tun.Device = (*device)(nil)

func (d *device) File() *os.File           { return nil }
func (d *device) Name() (string, error)    { return Name, nil }
func (d *device) MTU() (int, error)        { return d.s.mtu, nil }
func (d *device) Events() <-chan tun.Event { return d.events }
func (d *device) BatchSize() int           { return conn.IdealBatchSize }

// Read waits for a packet the stack sends and returns it with as many
// more as are queued and fit in bufs, so that wireguard-go seals and
// sends them as one batch.
func (d *device) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	l := d.s.ep
	n := 0
	for n == 0 {
		var pkt *stack.PacketBuffer
		select {
		case pkt = <-l.out:
		case <-d.s.ctx.Done():
			return 0, os.ErrClosed
		}
		for pkt != nil {
			if m := copyPacket(pkt, bufs[n][offset:]); m >= 0 {
				sizes[n] = m
				n++
			} else {
				// Larger than wireguard-go's buffer: the stack
				// sends nothing over its MTU, so this cannot
				// happen; drop it.
				l.drops.Add(1)
			}
			pkt.DecRef()
			pkt = nil
			if n < len(bufs) {
				select {
				case pkt = <-l.out:
				default:
				}
			}
		}
	}
	l.read.Add(uint64(n))
	return n, nil
}

// Write hands packets from the tunnel to the stack. The packets of one
// call (one batch wireguard-go opened) pass through generic receive
// offload: consecutive segments of a TCP stream are joined into one
// before the stack sees them, so its TCP processes and acknowledges a
// batch at a time, as a kernel's does after GRO.
func (d *device) Write(bufs [][]byte, offset int) (int, error) {
	g := d.s.ep.gro()
	if g == nil {
		return len(bufs), nil // not attached: the stack is closing
	}
	defer d.s.ep.putGRO(g)
	for _, b := range bufs {
		pkt := b[offset:]
		if len(pkt) == 0 {
			continue
		}
		var proto tcpip.NetworkProtocolNumber
		switch pkt[0] >> 4 {
		case 4:
			proto = ipv4.ProtocolNumber
		case 6:
			proto = ipv6.ProtocolNumber
		default:
			continue
		}
		if !d.s.admit(pkt) {
			continue
		}
		pb := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(pkt)})
		pb.NetworkProtocolNumber = proto
		g.Enqueue(pb)
		pb.DecRef()
	}
	g.Flush()
	return len(bufs), nil
}

// Close closes the device and the stack.
func (d *device) Close() error {
	d.closeOnce.Do(func() {
		d.s.Close()
		d.s.ep.Close()
		d.s.ep.drain()
		close(d.events)
	})
	return nil
}

// Stats are a stack's counters since it was made.
type Stats struct {
	// LinkHanded is the packets the stack sent toward the tunnel, and
	// LinkRead those wireguard-go read of them; the difference is
	// queued or dropped.
	LinkHanded, LinkRead uint64
	// LinkDrops is the packets the stack sent that never reached
	// wireguard-go; LinkWaits the writes that found the queue full.
	LinkDrops, LinkWaits uint64
	// TCPRetransmits, TCPTimeouts and TCPFastRetransmits are gVisor's
	// TCP counters for all connections: segments sent again, retransmit
	// timer expiries, and fast retransmits.
	TCPRetransmits, TCPTimeouts, TCPFastRetransmits uint64
}

// Stats returns the stack's counters.
func (s *Stack) Stats() Stats {
	tcp := s.st.Stats().TCP
	return Stats{
		LinkHanded:         s.ep.handed.Load(),
		LinkRead:           s.ep.read.Load(),
		LinkDrops:          s.ep.drops.Load(),
		LinkWaits:          s.ep.waits.Load(),
		TCPRetransmits:     tcp.Retransmits.Value(),
		TCPTimeouts:        tcp.Timeouts.Value(),
		TCPFastRetransmits: tcp.FastRetransmit.Value(),
	}
}
