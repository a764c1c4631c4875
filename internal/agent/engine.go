// Package agent is the node's data plane: the TUN device and its addresses
// and routes (osnet), a wireguard-go device whose Bind is the path-finding
// socket (magicsock), the relay connections (relay.Manager) and a periodic
// network check that decides the endpoints and home relay region the node
// publishes to control. The daemon starts an Engine when the node goes up,
// hands it every new map, and closes it when the node goes down.
//
// Files: engine.go (lifecycle and maps), netcheck.go (endpoints, home
// region, host facts, local address changes), network.go (the host network
// without the TUN's own addresses), routes.go (routing preferences: exit
// node, subnet routes), status.go (status, health and ping), destguard.go
// (where packets from the tunnel may go: this node or its approved
// routes).
//
// Lab tests (lab_test.go, root only) run real weft processes in the seed
// lab.
// BenchmarkLab (bench_test.go) gives the figures in docs/benchmarks.md.
package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"

	"weft/internal/controlclient"
	"weft/internal/filter"
	"weft/internal/idlemem"
	"weft/internal/inflight"
	"weft/internal/key"
	"weft/internal/magicsock"
	"weft/internal/netcheck"
	"weft/internal/node"
	"weft/internal/osdns"
	"weft/internal/osnet"
	"weft/internal/relay"
	"weft/internal/tailnet"
	"weft/internal/wgcfg"
	"weft/internal/wire"
)

// DefaultNetcheckInterval is how often the engine re-measures the network
// (also at start and on every Rebind). Endpoints found by STUN go stale
// when a NAT forgets a mapping, so a home node re-learns them in well under
// a typical 30-60 s UDP mapping lifetime.
const DefaultNetcheckInterval = 25 * time.Second

// dnsCheckInterval is how often the engine looks whether something else
// rewrote the OS's DNS configuration, and re-applies weft's.
const dnsCheckInterval = 5 * time.Second

// Config configures an Engine.
type Config struct {
	// Logger receives the engine's logs; nil discards them.
	Logger *slog.Logger
	// NodeKey and DiscoKey are the node's keys; both are required.
	NodeKey  key.NodePrivate
	DiscoKey key.DiscoPrivate
	// Router, if set, takes the place of the kernel TUN device and host
	// network (userspace networking: a *netstack.Stack); the engine owns
	// and closes it. Nil means osnet.New with TUNName.
	Router Router
	// TUNName is the TUN device's name; "" means osnet.DefaultTUNName.
	TUNName string
	// Port is the UDP port of the WireGuard/discovery socket; 0 picks a
	// random free port.
	Port uint16
	// Hostinfo is the node's host facts; the engine adds NetInfo and
	// publishes it through Publisher. Nil publishes none.
	Hostinfo *wire.Hostinfo
	// Publisher sends endpoints, home region and host facts to control;
	// *controlclient.Client implements it. Nil publishes nothing.
	Publisher Publisher
	// NetcheckInterval is the time between network checks; zero means
	// DefaultNetcheckInterval.
	NetcheckInterval time.Duration
	// Timers tune magicsock's path state machine; zero fields take its
	// defaults.
	Timers magicsock.Timers
	// NoPortMapping stops the engine from asking the gateway (NAT-PMP)
	// to map its UDP port.
	NoPortMapping bool
	// DNS points the OS's resolver at weft's (MagicDNS) while the node
	// accepts DNS; nil leaves the OS's DNS alone (the resolver still
	// runs on 100.100.100.100 when the tailnet has MagicDNS on).
	DNS osdns.Manager
	// InFlight is how many packets each direction of the WireGuard
	// device may hold before its readers wait (package inflight); zero
	// means inflight.DefaultMax. Each costs a 64 KiB buffer.
	InFlight int
	// TLSConfig is for relays reached over https, by the relay
	// connections and netcheck's HTTPS probes alike; nil trusts the
	// system's roots.
	TLSConfig *tls.Config
	// Collector is the garbage collector the data plane drives to give
	// memory back after a burst and to keep the idle heap small
	// (package idlemem); nil leaves the collector alone and only gives
	// back the device's readers' pages. The daemon passes
	// idlemem.Runtime{}.
	Collector idlemem.Collector
}

// Publisher is the slice of the control client the engine needs.
type Publisher interface {
	SetEndpoints(eps []netip.AddrPort, homeRegion int)
	SetHostinfo(hi *wire.Hostinfo)
}

var _ Publisher = (*controlclient.Client)(nil)

// Engine runs the data plane. Make one with New; its methods are safe for
// concurrent use, also after Close.
type Engine struct {
	cfg    Config
	log    *slog.Logger
	router Router
	conn   *magicsock.Conn
	relays *relay.Manager
	nc     *netcheck.Client
	dev    *device.Device
	guard  *destGuard        // the TUN as wireguard-go writes to it
	bound  *inflight.Bound   // the packets the WireGuard device may hold
	idle   *idlemem.Releaser // gives the readers' memory back after a burst
	net    hostNetwork
	filter *filter.Filter // the packet filter on every packet from the tunnel
	dns    *dnsState      // used by the map loop, and by Close after it stopped

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the map and netcheck loops

	// maps carries the latest map to the map loop; a newer map replaces
	// one not yet taken, so a slow apply never queues stale maps.
	maps chan *controlclient.NetMap
	// recheck asks the netcheck loop for an early report.
	recheck chan struct{}

	// pubMu guards what was last published to control; it is taken
	// without mu held and held while publishing.
	pubMu      sync.Mutex
	pubSent    bool
	pubEps     []netip.AddrPort
	pubHome    int
	pubNetInfo *wire.NetInfo

	mu       sync.Mutex // guards the fields below
	closed   bool
	nm       *controlclient.NetMap // last applied
	wgc      wgcfg.Config          // last applied to the device
	wgSet    bool                  // whether wgc was applied at least once
	osCfg    osnet.Config          // last applied to the host
	relayMap *wire.RelayMap
	home     int
	report   *netcheck.Report // last network report; nil before the first
	eps      []netip.AddrPort // last endpoints from magicsock
	rs       routeState       // routing preferences (routes.go)
}

// New creates the TUN device, the wireguard-go device over magicsock and
// the relay manager, brings the device up and starts the network check.
// The host is left as it was when New fails.
func New(cfg Config) (*Engine, error) {
	if cfg.NodeKey.IsZero() || cfg.DiscoKey.IsZero() {
		return nil, errors.New("agent: node and disco keys are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.NetcheckInterval <= 0 {
		cfg.NetcheckInterval = DefaultNetcheckInterval
	}
	e := &Engine{
		cfg:     cfg,
		log:     cfg.Logger,
		maps:    make(chan *controlclient.NetMap, 1),
		recheck: make(chan struct{}, 1),
	}
	e.rs.kick = make(chan chan struct{}, 1)
	// A data plane on a userspace stack changes nothing on the host: no
	// resolver on the host's loopback either.
	e.dns = newDNSState(e.log.With("sub", "dns"), cfg.DNS, cfg.Router == nil)
	e.ctx, e.cancel = context.WithCancel(context.Background())

	if err := e.openNet(); err != nil {
		return nil, err
	}
	if err := e.startWireGuard(); err != nil {
		e.closeParts()
		return nil, err
	}
	e.log.Info("data plane up", "tun", e.router.Name(), "port", e.conn.Port())
	e.wg.Add(2)
	go e.mapLoop()
	go e.netcheckLoop()
	if !cfg.NoPortMapping {
		e.wg.Go(e.portMapLoop)
	}
	return e, nil
}

// openNet opens the host side of the data plane: the TUN device and its
// router, the relay manager, the network check and the magicsock Conn.
// On failure it closes what it opened.
func (e *Engine) openNet() error {
	cfg := e.cfg
	router := cfg.Router
	if router == nil {
		r, err := osnet.New(osnet.Options{TUNName: cfg.TUNName, Logger: e.log.With("sub", "osnet")})
		if err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		router = r
	}
	e.router = router
	e.net = hostNetwork{tun: router.Name(), tunneled: &e.rs.tunneled}
	dialer := osnet.Dialer(router.Mark())
	if router.Mark() == 0 {
		// Nothing is routed by mark (userspace networking), and marking
		// would need privileges.
		dialer = &net.Dialer{}
	}
	var err error
	e.relays, err = relay.NewManager(relay.ManagerOptions{
		NodeKey:   cfg.NodeKey,
		Dialer:    dialer.DialContext,
		TLSConfig: cfg.TLSConfig,
		OnRecv: func(region int, src key.NodePublic, data []byte) {
			e.conn.InjectRelayed(region, src, data)
		},
		// The home relay went away: measure now, so the node moves to
		// another region in seconds rather than at the next periodic
		// check, and peers learn the new home from control.
		OnHomeLost: func(int) { e.kickNetcheck() },
		Logger:     e.log.With("sub", "relay"),
	})
	if err != nil {
		router.TUN().Close()
		router.Close()
		return fmt.Errorf("agent: %w", err)
	}
	e.nc = &netcheck.Client{
		Logger:      e.log.With("sub", "netcheck"),
		SendPacket:  func(pkt []byte, dst netip.AddrPort) error { return e.conn.SendPacket(pkt, dst) },
		DialContext: dialer.DialContext,
		TLSConfig:   cfg.TLSConfig,
	}
	e.conn, err = magicsock.New(magicsock.Options{
		Logger:      e.log.With("sub", "magicsock"),
		DiscoKey:    cfg.DiscoKey,
		NodeKey:     cfg.NodeKey.Public(),
		Relay:       e.relays,
		OnSTUN:      e.nc.ReceiveSTUNPacket,
		OnEndpoints: e.onEndpoints,
		OnTunnelMTU: e.setTunnelMTU,
		Timers:      cfg.Timers,
		Network:     e.net,
	})
	if err != nil {
		e.relays.Close()
		router.TUN().Close()
		router.Close()
		return fmt.Errorf("agent: %w", err)
	}
	return nil
}

// startWireGuard makes the wireguard-go device over the TUN and magicsock,
// gives it the node's key, port and mark, and brings it up. The caller
// closes the parts if it fails.
func (e *Engine) startWireGuard() error {
	// wireguard-go's device owns the TUN from here: closing the device
	// closes it. Every packet it decrypts (after wireguard-go checked its
	// source against the sending peer's allowed addresses) passes two
	// checks on its way to the OS: its destination (destGuard: this
	// node or an approved route) and the tailnet's policy (the packet
	// filter).
	e.filter = filter.New(filter.Options{})
	e.guard = &destGuard{Device: filter.Wrap(e.router.TUN(), e.filter)}
	// The bound wraps the TUN and the socket, so that it sees every
	// packet the device reads and hands on; the idle release wraps them
	// outermost, so that it sees what the device's readers hold.
	e.bound = inflight.New(inflight.Options{Max: e.cfg.InFlight})
	e.idle = idlemem.New(idlemem.Options{Logger: e.log.With("sub", "idlemem"), Collector: e.cfg.Collector})
	var tunFile idlemem.DeadlineFile
	if f, ok := e.router.TUN().(interface{ File() *os.File }); ok && f.File() != nil {
		tunFile = f.File()
	}
	e.dev = device.NewDevice(
		e.idle.TUN(inflight.TUN(e.guard, e.bound), tunFile),
		e.idle.Bind(inflight.Bind(e.conn, e.bound), e.conn.WakeReceivers),
		wgLogger(e.log.With("sub", "wireguard")))
	base := fmt.Sprintf("private_key=%x\nlisten_port=%d\n", e.cfg.NodeKey.Raw32(), e.cfg.Port)
	if m := e.router.Mark(); m != 0 {
		base += fmt.Sprintf("fwmark=%d\n", m)
	}
	if err := e.dev.IpcSet(base); err != nil {
		return fmt.Errorf("agent: configure WireGuard: %w", err)
	}
	if err := e.dev.Up(); err != nil {
		return fmt.Errorf("agent: bring WireGuard up: %w", err)
	}
	return nil
}

// Port returns the UDP port the data plane is bound to.
func (e *Engine) Port() uint16 { return e.conn.Port() }

// Router returns the data plane's host side.
func (e *Engine) Router() Router { return e.router }

// LookupName resolves a MagicDNS name ("busan", "busan.<domain>", an
// extra record) from the current map; ok is false when the name is not
// the tailnet's (MagicDNS off, or another domain). The userspace proxies
// use it, as no resolver listens in that mode.
func (e *Engine) LookupName(name string) (addrs []netip.Addr, ok bool) { return e.dns.Lookup(name) }

// Router is the host side of the data plane: the packet device and the
// host network it configures. *osnet.Router (a kernel TUN) and
// *netstack.Stack (userspace networking) implement it.
type Router interface {
	// TUN is the packet device; wireguard-go's device closes it.
	TUN() tun.Device
	// Name names the device (a TUN's interface name).
	Name() string
	// Mark is the socket mark weft's own sockets need; 0 for none.
	Mark() uint32
	// Apply makes the host match cfg.
	Apply(cfg osnet.Config) error
	// Warnings are host problems the last Apply worked around.
	Warnings() []string
	// Changes notifies of host address and link changes (nil channel:
	// none are announced).
	Changes(ctx context.Context) (<-chan struct{}, error)
	// IntoTunnelDrops counts packets a firewall kept out of the tunnel.
	IntoTunnelDrops() (uint64, error)
	// Close undoes what Apply did.
	Close() error
}

var _ Router = (*osnet.Router)(nil)

// mtuSetter is implemented by a Router whose device MTU can follow path
// MTU discovery (*osnet.Router on Linux, mtu_linux.go); userspace
// networking, and the macOS and Windows routers for now, keep their MTU.
type mtuSetter interface {
	SetMTU(mtu int) error
}

// setTunnelMTU sets the TUN device's MTU to what the peers' direct paths
// carry (magicsock's path MTU discovery). Local TCP follows a lowered MTU
// at its next send; forwarded traffic gets the kernel's "fragmentation
// needed" answers and the MSS clamp (docs/os-networking.md).
func (e *Engine) setTunnelMTU(mtu int) {
	ms, ok := e.router.(mtuSetter)
	if !ok {
		return
	}
	if err := ms.SetMTU(mtu); err != nil {
		e.log.Warn("cannot set the tunnel MTU", "mtu", mtu, "err", err)
		return
	}
	e.log.Info("tunnel MTU", "mtu", mtu)
}

// wgLogger sends wireguard-go's errors to log and drops its verbose lines,
// which are per packet.
func wgLogger(log *slog.Logger) *device.Logger {
	return &device.Logger{
		Verbosef: device.DiscardLogf,
		Errorf:   func(format string, args ...any) { log.Debug(fmt.Sprintf(format, args...)) },
	}
}

// closeParts closes the device (and with it the TUN and magicsock), the
// relays and the router, in that order. The bound goes first, so that no
// device reader waits for room while the device closes.
func (e *Engine) closeParts() error {
	if e.bound != nil {
		e.bound.Close()
	}
	if e.idle != nil {
		e.idle.Close()
	}
	e.dev.Close()
	e.relays.Close()
	return e.router.Close()
}

// Close stops the data plane: the device and TUN go away, the relay
// connections close, and the host's addresses, routes and rules are
// removed. It is idempotent.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.mu.Unlock()
	e.cancel()
	e.wg.Wait()
	// DNS first: the OS must never point at a resolver that is gone.
	err := errors.Join(e.dns.close(), e.closeParts())
	e.log.Info("data plane down")
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	return nil
}

var _ node.TrustEngine = (*Engine)(nil)

// SetTLSConfig implements node.TrustEngine. It makes the relay connections and the network checks' HTTPS
// probes trust tc from now on (`weft up --ca-file` on a node that is up):
// the relay connections made with the old trust close, the home region's
// connects again at once, and the network is measured again with tc.
func (e *Engine) SetTLSConfig(tc *tls.Config) error {
	e.nc.SetTLSConfig(tc)
	if err := e.relays.SetTLSConfig(tc); err != nil {
		return fmt.Errorf("agent: relays: %w", err)
	}
	e.kickNetcheck()
	return nil
}

// SetNetMap hands the engine a new map. It never blocks: the map loop
// applies the latest one.
func (e *Engine) SetNetMap(nm *controlclient.NetMap) {
	if nm == nil {
		return
	}
	for {
		select {
		case e.maps <- nm:
			return
		default:
		}
		select {
		case <-e.maps: // drop the older map nobody took yet
		default:
		}
	}
}

func (e *Engine) mapLoop() {
	defer e.wg.Done()
	dnsCheck := time.NewTicker(dnsCheckInterval)
	defer dnsCheck.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-dnsCheck.C:
			e.dns.check()
		case nm := <-e.maps:
			if err := e.apply(nm); err != nil {
				e.log.Error("applying map", "err", err)
			}
		case done := <-e.rs.kick:
			e.reapply(done)
		}
	}
}

// apply makes the data plane match nm: relay map, peers' paths, WireGuard
// peers (by difference, so sessions survive) and the host's addresses and
// routes (by difference too).
func (e *Engine) apply(nm *controlclient.NetMap) error {
	if nm.Self == nil {
		return nil
	}
	e.mu.Lock()
	newRelays := nm.RelayMap != nil && !relayMapEqual(nm.RelayMap, e.relayMap)
	if newRelays {
		e.relayMap = nm.RelayMap
	}
	prevWG, wgSet := e.wgc, e.wgSet
	prevOS := e.osCfg
	rp := e.rs.prefs
	e.mu.Unlock()

	if newRelays {
		e.relays.SetRelayMap(nm.RelayMap)
		e.ensureHome(nil)
		e.kickNetcheck()
	}

	e.filter.Set(nm.PacketFilter)
	reachable := e.reachableFilter(nm, rp)
	peers := make([]magicsock.Peer, 0, len(nm.Peers))
	nodes := make([]wire.Node, 0, len(nm.Peers))
	for _, n := range nm.SortedPeers() {
		if n.NodeKey.IsZero() {
			continue
		}
		peers = append(peers, magicsock.PeerFromNode(reachable(n)))
		nodes = append(nodes, *n)
	}
	e.conn.SetPeers(peers)
	e.guard.policy.Store(newDestPolicy(nm, rp))

	// What failed to apply is not recorded as applied, so the next map
	// (or preference change) tries it again.
	var wgErr, osErr error
	wc := wgcfg.FromNetmap(e.cfg.NodeKey, nodes, e.wgOptions(nm, rp))
	var uapi string
	if wgSet {
		uapi = wc.UAPI(&prevWG)
	} else {
		uapi = wc.UAPI(nil)
	}
	if uapi != "" {
		if err := e.dev.IpcSet(uapi); err != nil {
			wgErr = fmt.Errorf("WireGuard config: %w", err)
		}
	}

	oc := osnet.Config{Addresses: nm.Self.Addresses, TailnetRoutes: tailnetRoutes(nm.Self)}
	addRoutePrefs(&oc, nm, rp)
	osChanged := !osConfigEqual(oc, prevOS)
	if osChanged {
		osErr = e.router.Apply(oc)
	}

	dnsErr := e.dns.apply(e.ctx, nm, rp)

	e.mu.Lock()
	e.nm = nm
	if wgErr == nil {
		e.wgc, e.wgSet = wc, true
	}
	if osErr == nil {
		e.osCfg = oc
	}
	e.mu.Unlock()
	if err := errors.Join(wgErr, osErr, dnsErr); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	return nil
}

// tailnetRoutes are the ranges routed into the TUN: 100.64.0.0/10 and the
// ULA /48 the node's own IPv6 address is in (the tailnet gives every node
// an address from one /48).
func tailnetRoutes(self *wire.Node) []netip.Prefix {
	routes := []netip.Prefix{tailnet.V4Range}
	for _, a := range self.Addresses {
		if a.Addr().Is6() {
			p, err := a.Addr().Prefix(48)
			if err == nil {
				routes = append(routes, p)
			}
		}
	}
	return routes
}

func osConfigEqual(a, b osnet.Config) bool {
	return slices.Equal(a.Addresses, b.Addresses) && slices.Equal(a.TailnetRoutes, b.TailnetRoutes) && routePartsEqual(a, b)
}

func relayMapEqual(a, b *wire.RelayMap) bool {
	if a == nil || b == nil {
		return a == b
	}
	if len(a.Regions) != len(b.Regions) {
		return false
	}
	for id, ra := range a.Regions {
		rb := b.Regions[id]
		if rb == nil || ra.Code != rb.Code || len(ra.Nodes) != len(rb.Nodes) {
			return false
		}
		for i, na := range ra.Nodes {
			if *na != *rb.Nodes[i] {
				return false
			}
		}
	}
	return true
}
