// Package natsim is an in-memory packet network with simulated NAT
// routers, for testing magicsock's path finding without namespaces.
//
// Hosts sit either on the "internet" (a public address) or behind a NAT.
// Two NAT kinds are modelled, as home routers behave:
//
//   - Easy (Linux masquerade): one external port per inside socket,
//     the inside port kept when free; only replies from an address:port
//     the socket has sent to are let in.
//   - Hard: a new random external port for every (inside socket,
//     destination) pair; the same filtering.
//
// Port choices are a hash of a seed and the mapping, so they do not
// depend on goroutine scheduling and a seeded run is repeatable. Packets are delivered through buffered channels;
// a full queue drops, as a real socket would.
package natsim

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"weft/internal/magicsock"
)

// Kind is a NAT's behaviour.
type Kind int

// The NAT kinds.
const (
	Easy Kind = iota
	Hard
)

func (k Kind) String() string {
	if k == Hard {
		return "hard"
	}
	return "easy"
}

// Network is the whole simulated network.
type Network struct {
	mu    sync.Mutex
	seed  uint64
	socks map[netip.AddrPort]*socket
	nats  map[netip.Addr]*NAT
	// drop, if set, drops packets for which it returns true, seen with
	// their on-the-wire source (after NAT) and destination.
	drop func(src, dst netip.AddrPort) bool
	// tap, if set, sees every packet sent, before any routing.
	tap   func(src, dst netip.AddrPort, size int)
	delay time.Duration
	// maxPayload, if not zero, drops packets with a larger payload.
	maxPayload int

	Stats Stats
}

// Stats counts packets; read them under no lock only after traffic stops,
// or through Network.Snapshot.
type Stats struct {
	Delivered, Filtered, NoRoute, Dropped int
}

// New makes an empty network whose random choices come from seed.
func New(seed uint64) *Network {
	return &Network{
		seed:  seed,
		socks: make(map[netip.AddrPort]*socket),
		nats:  make(map[netip.Addr]*NAT),
	}
}

// Snapshot returns the packet counters.
func (n *Network) Snapshot() Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.Stats
}

// SetDelay makes every later packet arrive d after it was sent (one way),
// so round trips have a realistic size and RTT comparisons mean something.
func (n *Network) SetDelay(d time.Duration) {
	n.mu.Lock()
	n.delay = d
	n.mu.Unlock()
}

// SetDrop installs (or, with nil, removes) a drop rule.
func (n *Network) SetDrop(f func(src, dst netip.AddrPort) bool) {
	n.mu.Lock()
	n.drop = f
	n.mu.Unlock()
}

// SetTap installs (or, with nil, removes) f, which sees every packet any
// socket sends, with the sending socket's own address, the destination
// and the payload size, whether or not it is then delivered. Tests use
// it to count what a node sends to an address.
func (n *Network) SetTap(f func(src, dst netip.AddrPort, size int)) {
	n.mu.Lock()
	n.tap = f
	n.mu.Unlock()
}

// SetMaxPayload makes the network drop every later packet whose UDP
// payload is larger than n bytes, as a hop with a small MTU drops a
// packet with Don't Fragment set; 0 lifts the limit.
func (n *Network) SetMaxPayload(size int) {
	n.mu.Lock()
	n.maxPayload = size
	n.mu.Unlock()
}

// NAT is one NAT router with one public address.
type NAT struct {
	net      *Network
	kind     Kind
	public   netip.Addr
	mappings map[mapKey]*mapping // guarded by Network.mu
	byPort   map[uint16]*mapping
	flushed  bool // after a Flush, no port is kept
	epoch    uint64
}

type mapKey struct {
	inside netip.AddrPort
	dst    netip.AddrPort // zero for an easy NAT
}

type mapping struct {
	key     mapKey
	port    uint16
	allowed map[netip.AddrPort]bool
}

// NewNAT adds a NAT router with the given public address.
func (n *Network) NewNAT(kind Kind, public netip.Addr) *NAT {
	n.mu.Lock()
	defer n.mu.Unlock()
	nat := &NAT{net: n, kind: kind, public: public,
		mappings: make(map[mapKey]*mapping), byPort: make(map[uint16]*mapping)}
	n.nats[public] = nat
	return nat
}

// Public returns the NAT's public address.
func (nat *NAT) Public() netip.Addr { return nat.public }

// Flush forgets every mapping, as a conntrack flush or router reboot
// does. With newPorts, later mappings get fresh ports even on an easy NAT,
// so peers see the node move (NAT rebinding); without, an easy NAT gives
// the same ports again, as Linux masquerade does when they are free.
func (nat *NAT) Flush(newPorts bool) {
	nat.net.mu.Lock()
	defer nat.net.mu.Unlock()
	clear(nat.mappings)
	clear(nat.byPort)
	if newPorts {
		nat.flushed = true
		nat.epoch++
	}
}

// MappedPort returns the external port of inside's mapping toward dst
// (any destination on an easy NAT), and whether one exists. Tests use it
// as their STUN.
func (nat *NAT) MappedPort(inside, dst netip.AddrPort) (uint16, bool) {
	nat.net.mu.Lock()
	defer nat.net.mu.Unlock()
	k := mapKey{inside: inside}
	if nat.kind == Hard {
		k.dst = dst
	}
	m := nat.mappings[k]
	if m == nil {
		return 0, false
	}
	return m.port, true
}

// outboundLocked translates a packet leaving inside for dst and returns
// the source address the outside sees.
func (nat *NAT) outboundLocked(inside, dst netip.AddrPort) netip.AddrPort {
	k := mapKey{inside: inside}
	if nat.kind == Hard {
		k.dst = dst
	}
	m := nat.mappings[k]
	if m == nil {
		port := inside.Port()
		if nat.kind == Hard || nat.flushed || nat.byPort[port] != nil {
			for try := uint64(0); ; try++ {
				port = nat.pickPort(k, try)
				if nat.byPort[port] == nil {
					break
				}
			}
		}
		m = &mapping{key: k, port: port, allowed: make(map[netip.AddrPort]bool)}
		nat.mappings[k] = m
		nat.byPort[port] = m
	}
	m.allowed[dst] = true
	return netip.AddrPortFrom(nat.public, m.port)
}

// pickPort chooses an external port from a hash of the network's seed and
// the mapping, not from a shared random stream, so the port a mapping gets
// does not depend on the order goroutines happened to send in.
func (nat *NAT) pickPort(k mapKey, try uint64) uint16 {
	h := fnv.New64a()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], nat.net.seed^nat.epoch<<32^try)
	h.Write(b[:])
	for _, ap := range []netip.AddrPort{k.inside, k.dst} {
		ab, _ := ap.MarshalBinary()
		h.Write(ab)
	}
	return uint16(1024 + h.Sum64()%(65536-1024))
}

// Host is one machine on the network.
type Host struct {
	net *Network
	ip  netip.Addr
	nat *NAT // nil: on the internet

	mu       sync.Mutex
	nextPort uint16
}

var _ magicsock.Network = (*Host)(nil)

// NewHost adds a host with address ip behind nat (nil: a public host).
func (n *Network) NewHost(ip netip.Addr, nat *NAT) *Host {
	return &Host{net: n, ip: ip, nat: nat, nextPort: 40000}
}

// IP returns the host's own address.
func (h *Host) IP() netip.Addr { return h.ip }

// NAT returns the host's NAT, nil for a public host.
func (h *Host) NAT() *NAT { return h.nat }

// LocalAddrs implements magicsock.Network.
func (h *Host) LocalAddrs() ([]netip.Addr, error) { return []netip.Addr{h.ip}, nil }

// LocalPrefixes tells magicsock the network the host is on: the /24
// around its address when that is private (its LAN), none on the internet.
func (h *Host) LocalPrefixes() ([]netip.Prefix, error) {
	if !h.ip.IsPrivate() {
		return nil, nil
	}
	p, err := h.ip.Prefix(24)
	if err != nil {
		return nil, err
	}
	return []netip.Prefix{p}, nil
}

// ListenUDP4 implements magicsock.Network.
func (h *Host) ListenUDP4(uint32) (magicsock.PacketConn, error) { return h.listen(0) }

// NewBind implements magicsock.Network.
func (h *Host) NewBind() conn.Bind { return &bind{h: h} }

func (h *Host) listen(port uint16) (*socket, error) {
	h.net.mu.Lock()
	defer h.net.mu.Unlock()
	if port == 0 {
		h.mu.Lock()
		for {
			h.nextPort++
			if h.net.socks[netip.AddrPortFrom(h.ip, h.nextPort)] == nil {
				break
			}
		}
		port = h.nextPort
		h.mu.Unlock()
	}
	addr := netip.AddrPortFrom(h.ip, port)
	if h.net.socks[addr] != nil {
		return nil, fmt.Errorf("natsim: %v in use", addr)
	}
	s := &socket{h: h, addr: addr, in: make(chan packet, 4096), closed: make(chan struct{})}
	h.net.socks[addr] = s
	return s, nil
}

type packet struct {
	b   []byte
	src netip.AddrPort
}

// socket is one bound UDP socket.
type socket struct {
	h      *Host
	addr   netip.AddrPort
	in     chan packet
	once   sync.Once
	closed chan struct{}
}

var _ magicsock.PacketConn = (*socket)(nil)

func (s *socket) ReadFrom(b []byte) (int, netip.AddrPort, error) {
	select {
	case <-s.closed:
		return 0, netip.AddrPort{}, net.ErrClosed
	case p := <-s.in:
		return copy(b, p.b), p.src, nil
	}
}

func (s *socket) WriteTo(b []byte, dst netip.AddrPort) error {
	select {
	case <-s.closed:
		return net.ErrClosed
	default:
	}
	s.h.net.send(s, dst, b)
	return nil
}

func (s *socket) Close() error {
	s.once.Do(func() {
		close(s.closed)
		n := s.h.net
		n.mu.Lock()
		if n.socks[s.addr] == s {
			delete(n.socks, s.addr)
		}
		n.mu.Unlock()
	})
	return nil
}

// send routes one packet from s to dst through the NATs on the way.
func (n *Network) send(s *socket, dst netip.AddrPort, b []byte) {
	n.mu.Lock()
	src := s.addr
	from := s.h.nat
	if n.tap != nil {
		n.tap(src, dst, len(b))
	}
	var target *socket
	if t := n.socks[dst]; t != nil && from != nil && t.h.nat == from {
		// Same LAN behind the same NAT: straight there.
		target = t
	} else {
		if from != nil {
			src = from.outboundLocked(s.addr, dst)
		}
		if nat := n.nats[dst.Addr()]; nat != nil {
			m := nat.byPort[dst.Port()]
			if m == nil || !m.allowed[src] {
				n.Stats.Filtered++
				n.mu.Unlock()
				return
			}
			target = n.socks[m.key.inside]
		} else if t := n.socks[dst]; t != nil && t.h.nat == nil {
			target = t
		}
	}
	if target == nil {
		n.Stats.NoRoute++
		n.mu.Unlock()
		return
	}
	if (n.drop != nil && n.drop(src, dst)) || (n.maxPayload > 0 && len(b) > n.maxPayload) {
		n.Stats.Dropped++
		n.mu.Unlock()
		return
	}
	n.Stats.Delivered++
	delay := n.delay
	n.mu.Unlock()
	pkt := packet{b: append([]byte(nil), b...), src: src}
	deliver := func() {
		select {
		case target.in <- pkt:
		case <-target.closed:
		default:
		}
	}
	if delay > 0 {
		time.AfterFunc(delay, deliver)
		return
	}
	deliver()
}

// bind is a conn.Bind over one simulated IPv4 socket.
type bind struct {
	h  *Host
	mu sync.Mutex
	s  *socket
}

var _ conn.Bind = (*bind)(nil)

func (b *bind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.s != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	s, err := b.h.listen(port)
	if err != nil {
		return nil, 0, err
	}
	b.s = s
	recv := func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		var p packet
		select {
		case <-s.closed:
			return 0, net.ErrClosed
		case p = <-s.in:
		}
		n := 0
		for {
			sizes[n] = copy(bufs[n], p.b)
			eps[n] = &conn.StdNetEndpoint{AddrPort: p.src}
			n++
			if n == len(bufs) {
				return n, nil
			}
			select {
			case p = <-s.in:
			default:
				return n, nil
			}
		}
	}
	return []conn.ReceiveFunc{recv}, s.addr.Port(), nil
}

func (b *bind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.s != nil {
		b.s.Close()
		b.s = nil
	}
	return nil
}

func (b *bind) SetMark(uint32) error { return nil }
func (b *bind) BatchSize() int       { return 16 }

func (b *bind) ParseEndpoint(s string) (conn.Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, err
	}
	return &conn.StdNetEndpoint{AddrPort: ap}, nil
}

func (b *bind) Send(bufs [][]byte, ep conn.Endpoint) error {
	se, ok := ep.(*conn.StdNetEndpoint)
	if !ok {
		return conn.ErrWrongEndpointType
	}
	b.mu.Lock()
	s := b.s
	b.mu.Unlock()
	if s == nil {
		return net.ErrClosed
	}
	for _, buf := range bufs {
		if err := s.WriteTo(buf, se.AddrPort); err != nil {
			return err
		}
	}
	return nil
}
