package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"weft/internal/key"
	"weft/internal/wire"
)

// ManagerOptions configures a Manager.
type ManagerOptions struct {
	// NodeKey is the node's private key.
	NodeKey key.NodePrivate
	// RelayMap lists the regions; SetRelayMap replaces it later.
	RelayMap *wire.RelayMap
	// Dialer opens TCP connections; nil uses a net.Dialer.
	Dialer func(ctx context.Context, network, addr string) (net.Conn, error)
	// TLSConfig is used for relays not marked InsecureHTTP; nil uses the
	// system roots.
	TLSConfig *tls.Config
	// OnRecv receives every packet from every region. It is called from
	// one goroutine per region and must not block for long: while it
	// runs, that region's connection is not read.
	OnRecv func(region int, src key.NodePublic, data []byte)
	// OnPeerGone, optional, hears that a region cannot reach a peer.
	OnPeerGone func(region int, peer key.NodePublic, reason PeerGoneReason)
	// OnHomeLost, optional, hears that the home region cannot be used:
	// its connection was lost (the relay went away or restarted) or an
	// attempt to connect failed (the relay died while the client was
	// between attempts, or never answered). The agent measures the
	// regions again at once instead of at its next periodic check, so a
	// node whose home relay died moves to another region in seconds. It
	// is called from the region's connection goroutine, at most once per
	// attempt (so as often as the reconnect backoff allows), and must not
	// block.
	OnHomeLost func(region int)
	// IdleTimeout closes a non-home region's connection after this long
	// without traffic; 0 means 60s.
	IdleTimeout time.Duration
	// Logger receives connection events; nil discards them.
	Logger *slog.Logger

	// handshakeTimeout, set by tests, is each client's (zero: the
	// package's handshakeTimeout).
	handshakeTimeout time.Duration
}

// Manager keeps the node's relay connections: always one to the home
// region, others opened on demand by Send or Ping and closed when idle.
type Manager struct {
	opts ManagerOptions
	log  *slog.Logger

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the idle reaper and each region's receiver

	// sendDrops counts packets Send dropped because a region's send
	// queue was full.
	sendDrops atomic.Uint64

	mu       sync.Mutex
	relayMap *wire.RelayMap
	home     int // 0: none yet
	regions  map[int]*regionConn
}

// regionConn is the Manager's connection to one region.
type regionConn struct {
	id       int
	client   *Client
	lastUsed atomic.Int64 // unix nanoseconds of the last send or receive
}

// Manager errors.
var ErrUnknownRegion = errors.New("relay: region not in the relay map")

// NewManager makes a Manager; it connects nothing until SetHome, Send or
// Ping.
func NewManager(opts ManagerOptions) (*Manager, error) {
	if opts.NodeKey.IsZero() {
		return nil, errors.New("relay: manager needs a node key")
	}
	if opts.OnRecv == nil {
		return nil, errors.New("relay: manager needs an OnRecv callback")
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 60 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{
		opts:     opts,
		log:      log.With("component", "relay-manager"),
		ctx:      ctx,
		cancel:   cancel,
		relayMap: opts.RelayMap,
		regions:  make(map[int]*regionConn),
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.reapIdle()
	}()
	return m, nil
}

// SetRelayMap replaces the relay map; connections to regions no longer in
// it are closed (the home too, if it vanished; the agent picks a new one).
func (m *Manager) SetRelayMap(rm *wire.RelayMap) {
	m.mu.Lock()
	m.relayMap = rm
	var gone []*regionConn
	for id, rc := range m.regions {
		if rm == nil || rm.Regions[id] == nil {
			gone = append(gone, rc)
			delete(m.regions, id)
			if id == m.home {
				m.home = 0
			}
		}
	}
	m.mu.Unlock()
	for _, rc := range gone {
		rc.client.Close()
	}
}

// SetHome makes region the home: it is connected and kept, and told it is
// preferred. The previous home becomes an ordinary on-demand region.
func (m *Manager) SetHome(region int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ctx.Err() != nil {
		return ErrClosed
	}
	rc, err := m.regionLocked(region)
	if err != nil {
		return err
	}
	if old := m.regions[m.home]; old != nil && m.home != region {
		old.client.NotePreferred(false)
		old.lastUsed.Store(time.Now().UnixNano()) // idle from now, not before
	}
	m.home = region
	rc.client.NotePreferred(true)
	rc.client.start()
	return nil
}

// Home returns the home region, 0 if none is set.
func (m *Manager) Home() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.home
}

// Send sends pkt to dst through region, connecting to it if needed. While
// a new connection is being made, a few packets are held (see Client.Send).
func (m *Manager) Send(region int, dst key.NodePublic, pkt []byte) error {
	m.mu.Lock()
	if m.ctx.Err() != nil {
		m.mu.Unlock()
		return ErrClosed
	}
	rc, err := m.regionLocked(region)
	m.mu.Unlock()
	if err != nil {
		return err
	}
	rc.lastUsed.Store(time.Now().UnixNano())
	err = rc.client.Send(dst, pkt)
	if errors.Is(err, ErrQueueFull) {
		m.sendDrops.Add(1)
	}
	return err
}

// SendDrops counts the packets Send dropped because a region's send queue
// (512 packets, also while connecting) was full.
func (m *Manager) SendDrops() uint64 { return m.sendDrops.Load() }

// Ping measures the round trip to region's relay, connecting first if
// needed (connecting is not counted). It is how the agent measures regions
// over TCP when choosing a home.
func (m *Manager) Ping(ctx context.Context, region int) (time.Duration, error) {
	m.mu.Lock()
	if m.ctx.Err() != nil {
		m.mu.Unlock()
		return 0, ErrClosed
	}
	rc, err := m.regionLocked(region)
	m.mu.Unlock()
	if err != nil {
		return 0, err
	}
	rc.lastUsed.Store(time.Now().UnixNano())
	return rc.client.Ping(ctx)
}

// Close closes every connection and waits for the Manager's goroutines.
func (m *Manager) Close() error {
	m.mu.Lock()
	m.cancel()
	regions := m.regions
	m.regions = make(map[int]*regionConn)
	m.mu.Unlock()
	for _, rc := range regions {
		rc.client.Close()
	}
	m.wg.Wait()
	return nil
}

// Redial drops every region's connection so each connects again at once
// (see Client.Redial).
func (m *Manager) Redial() {
	m.mu.Lock()
	clients := make([]*Client, 0, len(m.regions))
	for _, rc := range m.regions {
		clients = append(clients, rc.client)
	}
	m.mu.Unlock()
	for _, c := range clients {
		c.Redial()
	}
}

// SetTLSConfig makes the Manager trust tc for https relays from now on
// (`weft up --ca-file` on a running node): every region's connection,
// made with the old trust, is closed; the home region connects again at
// once with tc, the others when next used.
func (m *Manager) SetTLSConfig(tc *tls.Config) error {
	m.mu.Lock()
	if m.ctx.Err() != nil {
		m.mu.Unlock()
		return ErrClosed
	}
	m.opts.TLSConfig = tc
	old := m.regions
	m.regions = make(map[int]*regionConn)
	var err error
	if m.home != 0 {
		var rc *regionConn
		if rc, err = m.regionLocked(m.home); err == nil {
			rc.client.NotePreferred(true)
			rc.client.start()
		}
	}
	m.mu.Unlock()
	for _, rc := range old {
		rc.client.Close()
	}
	return err
}

// CheckRelay checks that region's connection, if there is one, still
// carries frames, and reconnects it if not (see Client.Check).
func (m *Manager) CheckRelay(region int) {
	m.mu.Lock()
	rc := m.regions[region]
	m.mu.Unlock()
	if rc != nil {
		rc.client.Check()
	}
}

// regionLocked returns region's connection, making it if needed. m.mu
// must be held.
func (m *Manager) regionLocked(region int) (*regionConn, error) {
	if rc := m.regions[region]; rc != nil {
		return rc, nil
	}
	var r *wire.RelayRegion
	if m.relayMap != nil {
		r = m.relayMap.Regions[region]
	}
	if r == nil || len(r.Nodes) == 0 {
		return nil, fmt.Errorf("%w: %d", ErrUnknownRegion, region)
	}
	var urls []string
	for _, n := range r.Nodes {
		urls = append(urls, RelayNodeURL(n))
	}
	c, err := NewClient(ClientOptions{
		URLs:             urls,
		NodeKey:          m.opts.NodeKey,
		Dialer:           m.opts.Dialer,
		TLSConfig:        m.opts.TLSConfig,
		Preferred:        region == m.home,
		Logger:           m.log.With("region", region),
		altAddrs:         altAddrs(r.Nodes),
		handshakeTimeout: m.opts.handshakeTimeout,
		onDown:           func() { m.down(region) },
	})
	if err != nil {
		return nil, err
	}
	rc := &regionConn{id: region, client: c}
	rc.lastUsed.Store(time.Now().UnixNano())
	m.regions[region] = rc
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.receive(rc)
	}()
	return rc, nil
}

// down runs when region's connection was lost or an attempt to make it
// failed; it tells OnHomeLost if region is the home.
func (m *Manager) down(region int) {
	m.mu.Lock()
	home := m.home == region && m.ctx.Err() == nil
	m.mu.Unlock()
	if home && m.opts.OnHomeLost != nil {
		m.log.Info("the home relay region cannot be used", "region", region)
		m.opts.OnHomeLost(region)
	}
}

// receive delivers what region rc receives until its client is closed.
func (m *Manager) receive(rc *regionConn) {
	for {
		msg, err := rc.client.Recv(m.ctx)
		if err != nil {
			return
		}
		rc.lastUsed.Store(time.Now().UnixNano())
		switch msg := msg.(type) {
		case ReceivedPacket:
			m.opts.OnRecv(rc.id, msg.Src, msg.Data)
		case PeerGone:
			if m.opts.OnPeerGone != nil {
				m.opts.OnPeerGone(rc.id, msg.Key, msg.Reason)
			}
		}
	}
}

// reapIdle closes non-home regions idle for IdleTimeout.
func (m *Manager) reapIdle() {
	t := time.NewTicker(max(m.opts.IdleTimeout/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
		cutoff := time.Now().Add(-m.opts.IdleTimeout).UnixNano()
		var idle []*regionConn
		m.mu.Lock()
		for id, rc := range m.regions {
			if id != m.home && rc.lastUsed.Load() < cutoff {
				idle = append(idle, rc)
				delete(m.regions, id)
			}
		}
		m.mu.Unlock()
		for _, rc := range idle {
			m.log.Debug("closing idle relay region", "region", rc.id)
			rc.client.Close()
		}
	}
}

// RegionStatus is one region's connection as the Manager sees it.
type RegionStatus struct {
	Region    int
	Home      bool
	Connected bool   // a relay of the region has accepted us
	LastError string // of the last failed attempt, if any
}

// Status reports the regions the Manager has a connection for (the home
// and any opened on demand), sorted by region.
func (m *Manager) Status() []RegionStatus {
	m.mu.Lock()
	out := make([]RegionStatus, 0, len(m.regions))
	for id, rc := range m.regions {
		out = append(out, RegionStatus{Region: id, Home: id == m.home})
		st := &out[len(out)-1]
		rc.client.mu.Lock()
		st.Connected = rc.client.cur != nil
		if rc.client.lastErr != nil {
			st.LastError = rc.client.lastErr.Error()
		}
		rc.client.mu.Unlock()
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b RegionStatus) int { return a.Region - b.Region })
	return out
}

// Reachable reports whether a relay of some region has accepted this node
// now. The path-finding socket probes idle peers directly while it is
// false, since nothing can reach them through a relay.
func (m *Manager) Reachable() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, rc := range m.regions {
		rc.client.mu.Lock()
		up := rc.client.cur != nil
		rc.client.mu.Unlock()
		if up {
			return true
		}
	}
	return false
}

// connectedRegions lists the regions with a connection object, for tests.
func (m *Manager) connectedRegions() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ids []int
	for id := range m.regions {
		ids = append(ids, id)
	}
	return ids
}

// RelayNodeURL is the URL a client dials for n: https unless the node is
// marked InsecureHTTP, on its port or the scheme's default.
func RelayNodeURL(n *wire.RelayNode) string {
	scheme, port := "https", 443
	if n.InsecureHTTP {
		scheme, port = "http", 80
	}
	if n.Port > 0 {
		port = n.Port
	}
	return scheme + "://" + net.JoinHostPort(n.Host, strconv.Itoa(port))
}

// altAddrs maps each node's URL host:port to the node's other addresses
// with that port, for a relay whose map entry gives more addresses than
// its URL names (RelayNode.Addrs: an IP-literal Host plus the node's ipv4
// and ipv6). The client races them all through the whole setup (see
// Client.dial): an IPv6-only node cannot reach a relay whose Host is an
// IPv4 literal, but reaches its ipv6 at once; a node whose IPv6 route
// black-holes (SYNs vanish) or stalls after the connect (later packets
// vanish) connects over IPv4 a head start later instead of after the
// whole handshake timeout. The URL's address goes first, so a dual-stack
// node keeps using what it used before.
func altAddrs(nodes []*wire.RelayNode) map[string][]string {
	alts := map[string][]string{}
	for _, n := range nodes {
		u, err := url.Parse(RelayNodeURL(n))
		if err != nil {
			continue
		}
		for _, a := range n.Addrs() {
			if alt := net.JoinHostPort(a.String(), u.Port()); alt != u.Host && !slices.Contains(alts[u.Host], alt) {
				alts[u.Host] = append(alts[u.Host], alt)
			}
		}
	}
	return alts
}

// HomeSwitchRatio is how much better another region must be before
// ChooseHome leaves the current one: its latency below this fraction of
// the current home's. Without the margin a node would flap between two
// regions of similar latency, and every switch re-homes it for its peers.
const HomeSwitchRatio = 2.0 / 3.0

// ChooseHome picks the home region from measured latencies (regions that
// did not answer are absent). It keeps current unless current did not
// answer or the fastest region is clearly better (HomeSwitchRatio). Ties
// between fastest regions go to the lowest ID, so the choice is stable.
// With no latencies at all it keeps current. Region IDs start at 1; 0
// as current means no home yet.
func ChooseHome(current int, latencies map[int]time.Duration) int {
	best, bestLat, found := 0, time.Duration(0), false
	for id, lat := range latencies {
		if !found || lat < bestLat || (lat == bestLat && id < best) {
			best, bestLat, found = id, lat, true
		}
	}
	if !found {
		return current
	}
	cur, ok := latencies[current]
	if !ok {
		return best
	}
	if float64(bestLat) < float64(cur)*HomeSwitchRatio {
		return best
	}
	return current
}
