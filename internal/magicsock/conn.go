// Package magicsock is weft's path-finding UDP socket: a wireguard-go
// conn.Bind whose endpoints are peers, not addresses. A packet to a peer
// leaves by the peer's current best path, a confirmed direct UDP address or
// the relay, and the Conn finds and keeps direct paths with disco pings
// (hole punching, heartbeats, fallback, re-probes and, for an easy/hard NAT
// pair, a port-guessing round). docs/disco.md describes the state machine,
// timers and packet budget.
//
// Files: conn.go (the Bind and its lifecycle), bind.go (the host's main
// sockets, one bind per family), sockbind.go (weft's own bind for them,
// used on macOS), recv.go (the receive path),
// peer.go (one peer's path state), discoio.go (disco messages), guess.go
// (port guessing), endpoints.go (our own endpoints), status.go (status and
// ping for the CLI), network.go (the host network seam), pmtu.go (path MTU
// discovery and the tunnel MTU).
package magicsock

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"weft/internal/disco"
	"weft/internal/key"
)

// Relay is the part of the relay client the Conn needs: send a packet to a
// peer through a region. Send must not keep pkt after it returns. The relay
// hands packets back through Conn.InjectRelayed.
type Relay interface {
	Send(region int, dst key.NodePublic, pkt []byte) error
}

// relayReacher is implemented by a Relay that knows whether any relay
// region is connected now. With a Relay that does not, a relay is taken to
// be reachable.
type relayReacher interface {
	Reachable() bool
}

// relayChecker is implemented by a Relay that can check that its
// connection to a region still carries packets, and reconnect if not.
// The Conn asks when a direct path stopped answering and traffic falls
// back to the relay: whatever broke the path (a NAT that forgot its
// mappings, a router reboot) may have broken the relay's TCP connection
// too, silently until its keepalive.
type relayChecker interface {
	CheckRelay(region int)
}

// ErrNoPath is returned by Send when a peer has neither a direct path nor
// a relay region to reach it through.
var ErrNoPath = errors.New("magicsock: no path to peer")

// ErrClosed is returned by calls on a Conn that is not open.
var ErrClosed = errors.New("magicsock: closed")

// Options configure a Conn. DiscoKey and NodeKey are required.
type Options struct {
	// Logger receives path changes and errors. If nil, logs are dropped.
	Logger *slog.Logger
	// DiscoKey is this run's disco private key.
	DiscoKey key.DiscoPrivate
	// NodeKey is our own node public key; it goes into pings so a peer can
	// check our disco key belongs to us.
	NodeKey key.NodePublic
	// Relay sends through the relay. If nil, there is no relay path and
	// peers are reachable only directly.
	Relay Relay
	// Network is the host network. If nil, HostNetwork.
	Network Network
	// OnSTUN receives STUN packets arriving on the main socket (netcheck
	// runs over it). If nil, they are dropped.
	OnSTUN func(pkt []byte, src netip.AddrPort)
	// OnEndpoints is called, outside any lock, with our endpoints whenever
	// they change, so the agent can publish them to control. May be nil.
	OnEndpoints func([]netip.AddrPort)
	// Timers tune the path state machine; zero fields take defaults.
	Timers Timers
	// Guess is the port-guessing budget; zero fields take defaults.
	Guess GuessBudget
	// OnTunnelMTU is called, outside any lock, with the tunnel MTU the
	// peers' direct paths allow whenever it changes (path MTU discovery,
	// pmtu.go); it starts at MinTunnelMTU. May be nil.
	OnTunnelMTU func(mtu int)
	// Rand picks the ports probed while guessing. If nil, a random seed.
	// Tests pass a seeded source for a repeatable round.
	Rand *rand.Rand
}

// Timers are the durations of the path state machine (docs/disco.md).
type Timers struct {
	// Tick is how often peer state is checked. Default 250ms.
	Tick time.Duration
	// Heartbeat is the ping interval on a direct path in use. Default 2s.
	Heartbeat time.Duration
	// TrustWindow is how long a direct path stays trusted after its last
	// pong. Default 6.5s, so two lost heartbeats do not drop it.
	TrustWindow time.Duration
	// Discovery is the interval between discovery rounds (ping every
	// candidate, call-me-maybe) while a peer in use has no direct path.
	// Default 5s.
	Discovery time.Duration
	// Reprobe is the interval between discovery rounds while a direct
	// path is in use, to find a better one. Default 30s.
	Reprobe time.Duration
	// Active is how long after the last packet sent a peer counts as in
	// use. Default 45s.
	Active time.Duration
	// PingTimeout is how long a ping waits for its pong. Default 5s.
	PingTimeout time.Duration
}

func (t Timers) withDefaults() Timers {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.Tick, 250*time.Millisecond)
	def(&t.Heartbeat, 2*time.Second)
	def(&t.TrustWindow, 6500*time.Millisecond)
	def(&t.Discovery, 5*time.Second)
	def(&t.Reprobe, 30*time.Second)
	def(&t.Active, 45*time.Second)
	def(&t.PingTimeout, 5*time.Second)
	return t
}

// NetReport is what netcheck found about our own network.
type NetReport struct {
	// MappingVariesByDestIP is true behind a "hard" NAT.
	MappingVariesByDestIP bool
	// GlobalV4 and GlobalV6 are our public endpoints as STUN saw them.
	GlobalV4, GlobalV6 netip.AddrPort
}

// Conn is the path-finding conn.Bind. Make one with New, hand it to
// wireguard-go's device.NewDevice, and feed it the peer map with SetPeers.
type Conn struct {
	log     *slog.Logger
	opts    Options
	timers  Timers
	network Network
	inner   conn.Bind // owns the main sockets; created once, reopened by Open
	self    key.DiscoPublic

	// injected carries WireGuard packets from the relay and from extra
	// sockets to the extra ReceiveFunc. Never closed.
	injected chan inbound
	// kick wakes the maintenance loop early (first send to a peer).
	kick chan struct{}
	// wakeInjected makes the extra ReceiveFunc return an empty batch
	// (WakeReceivers); wakeToken is the datagram that does it for the
	// main sockets'.
	wakeInjected chan struct{}
	wakeToken    []byte
	// noRelay is set by the maintenance loop while the Relay reports no
	// region reachable; idle peers are then probed (probeIdleLocked).
	noRelay atomic.Bool
	// injectDrops counts relayed packets dropped because injected was
	// full (wireguard-go did not keep up).
	injectDrops atomic.Uint64
	// byAddr maps a direct source address to its peer, for the receive
	// path. Copy-on-write under mu; read without a lock.
	byAddr atomic.Pointer[map[netip.AddrPort]*peer]

	// mu guards the fields below and the mu-guarded fields of every peer
	// and extraSock. Methods named ...Locked expect it held. Outgoing
	// packets made under mu are queued in pending and sent by unlock, so
	// no network send or callback runs with mu held.
	mu        sync.Mutex
	open      bool
	closed    chan struct{} // closed by Close; made by Open
	port      uint16
	port6     uint16 // the IPv6 socket's port: port, unless the bind is an IPv6Porter
	mark      uint32 // SO_MARK for extra sockets
	peers     map[key.NodePublic]*peer
	retired   map[key.NodePublic]*peer    // removed from the map; kept for their endpoints
	byDisco   map[key.DiscoPublic][]*peer // every peer the map gives each disco key
	report    NetReport
	endpoints []netip.AddrPort // last published
	observed  []netip.AddrPort // our address as peers' pongs saw it, newest last
	mapped    netip.AddrPort   // our main socket's port mapping on the gateway, if any
	lans      []netip.Prefix   // the host's own networks, if Network tells (localPrefixer)
	rand      *rand.Rand
	tunnelMTU int // last told to OnTunnelMTU
	pending   []outPacket
	callbacks []func()
	wg        sync.WaitGroup // goroutines of the current open
}

var _ conn.Bind = (*Conn)(nil)

// inbound is a packet for wireguard-go that did not come from a main socket.
type inbound struct {
	pkt []byte
	p   *peer
}

// outPacket is a packet queued under mu and sent after unlocking.
type outPacket struct {
	pkt    []byte
	dst    netip.AddrPort // direct: destination
	sock   *extraSock     // direct: extra socket to send from; nil = main
	relay  bool
	region int
	peer   key.NodePublic
}

// New makes a Conn. It opens no socket until wireguard-go calls Open.
func New(opts Options) (*Conn, error) {
	if opts.DiscoKey.IsZero() {
		return nil, errors.New("magicsock: Options.DiscoKey is required")
	}
	if opts.NodeKey.IsZero() {
		return nil, errors.New("magicsock: Options.NodeKey is required")
	}
	c := &Conn{
		log:          opts.Logger,
		opts:         opts,
		timers:       opts.Timers.withDefaults(),
		network:      opts.Network,
		self:         opts.DiscoKey.Public(),
		injected:     make(chan inbound, 1024),
		kick:         make(chan struct{}, 1),
		peers:        make(map[key.NodePublic]*peer),
		retired:      make(map[key.NodePublic]*peer),
		byDisco:      make(map[key.DiscoPublic][]*peer),
		rand:         opts.Rand,
		wakeInjected: make(chan struct{}, 1),
		wakeToken:    newWakeToken(),

		tunnelMTU: MinTunnelMTU,
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.network == nil {
		c.network = HostNetwork{}
	}
	if c.rand == nil {
		c.rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	c.opts.Guess = c.opts.Guess.withDefaults()
	c.inner = c.network.NewBind()
	empty := map[netip.AddrPort]*peer{}
	c.byAddr.Store(&empty)
	return c, nil
}

// unlock releases mu, then sends the packets and runs the callbacks queued
// while it was held.
func (c *Conn) unlock() {
	out, cbs := c.pending, c.callbacks
	c.pending, c.callbacks = nil, nil
	c.mu.Unlock()
	for _, o := range out {
		c.write(o)
	}
	for _, f := range cbs {
		f()
	}
}

func (c *Conn) write(o outPacket) {
	var err error
	switch {
	case o.relay:
		if c.opts.Relay == nil || o.region == 0 {
			return
		}
		err = c.opts.Relay.Send(o.region, o.peer, o.pkt)
	case o.sock != nil:
		err = o.sock.pc.WriteTo(o.pkt, o.dst)
	default:
		err = c.sendDirect([][]byte{o.pkt}, o.dst, nil)
	}
	if err != nil {
		c.log.Debug("disco send failed", "dst", o.dst, "relay", o.relay, "err", err)
	}
}

// sendDirect sends bufs from the main socket. ep, if not nil, is a cached
// inner endpoint for dst.
func (c *Conn) sendDirect(bufs [][]byte, dst netip.AddrPort, ep conn.Endpoint) error {
	if ep == nil {
		var err error
		ep, err = c.inner.ParseEndpoint(dst.String())
		if err != nil {
			return fmt.Errorf("magicsock: %w", err)
		}
	}
	return c.inner.Send(bufs, ep)
}

// Open implements conn.Bind. It opens the main sockets (one per address
// family) and starts the maintenance loop.
func (c *Conn) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	c.mu.Lock()
	if c.open {
		c.mu.Unlock()
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	fns, actual, err := c.inner.Open(port)
	if err != nil {
		c.mu.Unlock()
		return nil, 0, fmt.Errorf("magicsock: open: %w", err)
	}
	c.open = true
	c.port, c.port6 = actual, actual
	if pp, ok := c.inner.(IPv6Porter); ok && pp.Port6() != 0 {
		c.port6 = pp.Port6()
	}
	closed := make(chan struct{})
	c.closed = closed
	out := make([]conn.ReceiveFunc, 0, len(fns)+1)
	for _, fn := range fns {
		out = append(out, c.wrapReceive(fn))
	}
	out = append(out, c.receiveInjected(closed))
	c.wg.Add(1)
	go c.maintain(closed)
	c.updateEndpointsLocked()
	c.unlock()
	return out, actual, nil
}

// Close implements conn.Bind. The ReceiveFuncs of the last Open return
// net.ErrClosed afterwards. Extra sockets are closed too, so a path over
// one falls back to the relay until found again.
func (c *Conn) Close() error {
	c.mu.Lock()
	if !c.open {
		c.mu.Unlock()
		return nil
	}
	c.open = false
	close(c.closed)
	err := c.inner.Close()
	for _, p := range c.peers {
		p.closeSocketsLocked(c, nil)
	}
	c.mu.Unlock()
	c.wg.Wait()
	if err != nil {
		return fmt.Errorf("magicsock: close: %w", err)
	}
	return nil
}

// SetMark implements conn.Bind. The mark also goes on extra sockets
// opened later (port guessing). The inner bind's SetMark runs under mu,
// as its Open and Close do, since Rebind calls it too.
func (c *Conn) SetMark(mark uint32) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mark = mark
	return c.inner.SetMark(mark)
}

// BatchSize implements conn.Bind.
func (c *Conn) BatchSize() int { return c.inner.BatchSize() }

// ParseEndpoint implements conn.Bind. s is a peer's node key in its text
// form ("nodekey:<hex>"); the endpoint stands for that peer whatever path
// it takes. A peer not yet in the map gets a placeholder that SetPeers
// fills in.
func (c *Conn) ParseEndpoint(s string) (conn.Endpoint, error) {
	k, err := key.ParsePublic[key.NodeKind](s)
	if err != nil {
		return nil, fmt.Errorf("magicsock: endpoint %q is not a node key: %w", s, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.peerLocked(k).ep, nil
}

// Send implements conn.Bind: bufs go to the peer's current best path.
func (c *Conn) Send(bufs [][]byte, ep conn.Endpoint) error {
	pe, ok := ep.(*peerEndpoint)
	if !ok {
		return conn.ErrWrongEndpointType
	}
	p := pe.p
	now := time.Now().UnixNano()
	p.lastSend.Store(now)
	if now >= p.nextDiscovery.Load() {
		c.wake()
	}
	if p.removed.Load() {
		return ErrNoPath
	}
	if pa := p.path.Load(); pa != nil {
		err := c.sendPath(bufs, pa)
		if err == nil {
			return nil
		}
		// A direct send that fails locally (no route after a link
		// change, a closed extra socket) goes by the relay instead;
		// the path's trust runs out on its own if it stays dead.
		c.log.Debug("direct send failed, trying relay", "peer", p.key.ShortString(), "err", err)
	}
	region := int(p.homeRegion.Load())
	if c.opts.Relay == nil || region == 0 {
		return ErrNoPath
	}
	for _, b := range bufs {
		// Relay.Send copies what it queues (its contract), so b,
		// which wireguard-go reuses, goes as is.
		if err := c.opts.Relay.Send(region, p.key, b); err != nil {
			return fmt.Errorf("magicsock: relay send: %w", err)
		}
	}
	return nil
}

// sendPath sends bufs along a direct path.
func (c *Conn) sendPath(bufs [][]byte, pa *path) error {
	if pa.sock != nil {
		for _, b := range bufs {
			if err := pa.sock.pc.WriteTo(b, pa.addr); err != nil {
				return fmt.Errorf("magicsock: send: %w", err)
			}
		}
		return nil
	}
	err := c.inner.Send(bufs, pa.innerEP)
	if err == nil {
		// Before errors.As, whose target escapes: one allocation
		// per batch otherwise (BenchmarkBindPath).
		return nil
	}
	var gso conn.ErrUDPGSODisabled
	if errors.As(err, &gso) && gso.RetryErr == nil {
		// The kernel refused segmentation offload; StdNetBind
		// turned it off and sent the packets without it.
		return nil
	}
	return err
}

func (c *Conn) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// SendPacket sends pkt from the main socket to dst. netcheck uses it to
// send STUN requests over the socket peers see, so the mapping it learns
// is the one peers will reach.
func (c *Conn) SendPacket(pkt []byte, dst netip.AddrPort) error {
	c.mu.Lock()
	open := c.open
	c.mu.Unlock()
	if !open {
		return ErrClosed
	}
	return c.sendDirect([][]byte{pkt}, dst, nil)
}

// maintain runs the timers of every peer until closed is closed.
func (c *Conn) maintain(closed chan struct{}) {
	defer c.wg.Done()
	t := time.NewTicker(c.timers.Tick)
	defer t.Stop()
	for {
		select {
		case <-closed:
			return
		case <-t.C:
		case <-c.kick:
		}
		// Asked outside mu: the relay's own locks come first.
		c.noRelay.Store(c.relayUnreachable())
		c.mu.Lock()
		now := time.Now()
		for _, p := range c.peers {
			p.maintainLocked(c, now)
		}
		c.noteTunnelMTULocked()
		c.unlock()
	}
}

// relayUnreachable reports whether the Relay says no region is connected.
func (c *Conn) relayUnreachable() bool {
	r, ok := c.opts.Relay.(relayReacher)
	return ok && !r.Reachable()
}

// Rebind tells the Conn the local network changed (an interface came or
// went, the default route moved). It republishes our endpoints and starts
// discovery toward every peer in use at once, since old paths may be dead;
// a path that is in fact dead stops answering and traffic falls back to
// the relay until a pong brings a direct path back.
//
// With a mark set it also sets it again on the main sockets: on macOS and
// Windows the mark binds them to the interface of the default route, which
// may have moved (Wi-Fi to Ethernet); on Linux it is SO_MARK again.
func (c *Conn) Rebind(reason string) {
	c.mu.Lock()
	c.log.Info("rebind", "reason", reason)
	if c.open && c.mark != 0 {
		if err := c.inner.SetMark(c.mark); err != nil {
			c.log.Warn("rebind: binding the main sockets to the default route's interface failed", "err", err)
		}
	}
	c.updateEndpointsLocked()
	for _, p := range c.peers {
		p.lastDiscovery = time.Time{}
		p.nextDiscovery.Store(0)
	}
	c.unlock()
	c.wake()
}

// Port returns the bound port of the main IPv4 socket, 0 if not open.
func (c *Conn) Port() uint16 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.port
}

// Port6 returns the bound port of the main IPv6 socket, 0 if not open.
// It differs from Port on the host's network (familyBind says why).
func (c *Conn) Port6() uint16 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.port6
}

// errClosedNet reports whether err means a socket was closed.
func errClosedNet(err error) bool { return errors.Is(err, net.ErrClosed) }

// sealLocked seals m for p. It returns nil if p has no disco key.
func (c *Conn) sealLocked(p *peer, m disco.Message) []byte {
	if p.shared == nil {
		return nil
	}
	return p.shared.Seal(m)
}
