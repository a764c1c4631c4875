package relay

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"weft/internal/key"
)

// Authorizer decides which node keys may use the relay. A relay that
// forwards for anyone is an open proxy, so every node connection is checked.
// AllowNode must be safe for concurrent use; an error (rather than false)
// means the answer is unknown, and the client is refused with that error.
type Authorizer interface {
	AllowNode(ctx context.Context, k key.NodePublic) (bool, error)
}

// AuthorizerFunc adapts a function to Authorizer.
type AuthorizerFunc func(ctx context.Context, k key.NodePublic) (bool, error)

// AllowNode calls f.
func (f AuthorizerFunc) AllowNode(ctx context.Context, k key.NodePublic) (bool, error) {
	return f(ctx, k)
}

// ServerOptions configures a Server. The zero value of each field is
// documented; a zero ServerOptions makes a relay that refuses every node.
type ServerOptions struct {
	// PrivateKey is the relay's own key, used to open client proofs and
	// as its identity toward other relays of the mesh. Zero: a fresh key
	// (clients do not pin it, so a new one per run is fine).
	PrivateKey key.NodePrivate
	// Authorizer checks every node key. Nil refuses every node (mesh
	// peers, proven by the mesh key, are still accepted).
	Authorizer Authorizer
	// MeshKey is the secret shared by the relays of one region. Empty:
	// no mesh; mesh peers are refused and MeshWith must be empty.
	MeshKey string
	// MeshWith lists the URLs of the other relays of the region
	// ("https://relay2.example:443"). Listing the relay's own URL is
	// harmless: it notices it reached itself and stops that link.
	MeshWith []string
	// MeshDialer dials other relays; nil uses a net.Dialer.
	MeshDialer func(ctx context.Context, network, addr string) (net.Conn, error)
	// MeshTLSConfig is used for https mesh URLs; nil uses the system roots.
	MeshTLSConfig *tls.Config
	// QueueLen is the per-client send queue in packets; 0 means 256. When
	// a client's queue is full, packets for it are dropped and counted, so
	// one slow receiver never stalls the senders.
	QueueLen int
	// QueueBytes bounds the bytes queued for one client; 0 means
	// DefaultQueueBytes. Packets are up to 64 KiB, so a bound in packets
	// alone would let one stalled receiver hold 16 MiB.
	QueueBytes int
	// MaxQueuedBytes bounds the bytes queued for all clients together; 0
	// means DefaultMaxQueuedBytes. Past it, packets are dropped and
	// counted (reason relay_full), so many stalled receivers together
	// cannot exhaust the relay's memory either.
	MaxQueuedBytes int64
	// RateLimit caps the bytes per second each client may send; 0 is no
	// limit.
	RateLimit int64
	// KeepAlive is how often an idle connection gets a keepalive; 0 means
	// 60s. A connection silent for 2×KeepAlive+5s is closed.
	KeepAlive time.Duration
	// Recheck is how often every connected node is checked against the
	// Authorizer again, so that a node removed on the control server loses
	// the relay too; 0 means 1 minute, negative never.
	Recheck time.Duration
	// WriteTimeout bounds one flush to a client; a client that does not
	// read for that long is disconnected. 0 means 10s.
	WriteTimeout time.Duration
	// Registerer receives the relay's Prometheus metrics; nil registers
	// none (Stats still works).
	Registerer prometheus.Registerer
	// Logger receives connection events (never per-packet logs); nil
	// discards them.
	Logger *slog.Logger
}

// Stats is a snapshot of a Server's counters.
type Stats struct {
	Clients          int    // node connections now
	MeshPeers        int    // other relays of the region watching us now
	PacketsForwarded uint64 // packets queued to a local client or mesh peer
	BytesForwarded   uint64 // their payload bytes
	DropsQueueFull   uint64 // dropped because the receiver's queue was full
	DropsRelayFull   uint64 // dropped because all queues together were full
	QueuedBytes      int64  // bytes queued for clients now
	DropsUnknownDest uint64 // dropped because the destination is nowhere
	DropsWrite       uint64 // queued packets lost when a connection died
	Refused          uint64 // handshakes refused
}

// Server is the relay. It is an http.Handler for GET /relay; weft server
// mounts it, and weft relay serves it alone. Start nothing before NewServer
// returns; call Close to stop the mesh links and drop every connection.
type Server struct {
	opts ServerOptions
	priv key.NodePrivate
	pub  key.NodePublic
	log  *slog.Logger

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // hijacked connections being served, and mesh links

	packetsForwarded, bytesForwarded         atomic.Uint64
	dropsQueueFull, dropsUnknown, dropsWrite atomic.Uint64
	dropsRelayFull                           atomic.Uint64
	queued                                   atomic.Int64 // bytes queued for all clients
	refused                                  atomic.Uint64

	mu       sync.RWMutex
	clients  map[key.NodePublic]*sconn // local node connections, by key
	watchers map[*sconn]struct{}       // mesh peers that sent watch-conns
	all      map[*sconn]struct{}       // every live connection, for Close
	routes   map[key.NodePublic]*meshLink
	links    []*meshLink
	closed   bool
}

// NewServer makes a relay and starts its mesh links.
func NewServer(opts ServerOptions) (*Server, error) {
	if len(opts.MeshWith) > 0 && opts.MeshKey == "" {
		return nil, errors.New("relay: mesh URLs given without a mesh key; set the same mesh key on every relay of the region")
	}
	opts = opts.withDefaults()
	if opts.RateLimit < 0 {
		return nil, fmt.Errorf("relay: negative rate limit %d", opts.RateLimit)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	priv := opts.PrivateKey
	if priv.IsZero() {
		priv = key.NewNode()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		opts:     opts,
		priv:     priv,
		pub:      priv.Public(),
		log:      log.With("component", "relay"),
		ctx:      ctx,
		cancel:   cancel,
		clients:  make(map[key.NodePublic]*sconn),
		watchers: make(map[*sconn]struct{}),
		all:      make(map[*sconn]struct{}),
		routes:   make(map[key.NodePublic]*meshLink),
	}
	if err := s.registerMetrics(opts.Registerer); err != nil {
		cancel()
		return nil, err
	}
	for _, u := range opts.MeshWith {
		l, err := newMeshLink(s, u)
		if err != nil {
			cancel()
			return nil, err
		}
		s.links = append(s.links, l)
	}
	for _, l := range s.links {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			l.run(ctx)
		}()
	}
	if opts.Recheck > 0 && opts.Authorizer != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.recheckLoop(ctx)
		}()
	}
	return s, nil
}

// withDefaults fills o's zero fields with their defaults.
func (o ServerOptions) withDefaults() ServerOptions {
	if o.QueueLen <= 0 {
		o.QueueLen = 256
	}
	if o.QueueBytes <= 0 {
		o.QueueBytes = DefaultQueueBytes
	}
	if o.MaxQueuedBytes <= 0 {
		o.MaxQueuedBytes = DefaultMaxQueuedBytes
	}
	if o.KeepAlive <= 0 {
		o.KeepAlive = 60 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.Recheck == 0 {
		o.Recheck = time.Minute
	}
	return o
}

// recheckLoop asks the Authorizer again about every connected node each
// Recheck interval, until ctx ends.
func (s *Server) recheckLoop(ctx context.Context) {
	t := time.NewTicker(s.opts.Recheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.recheck(ctx)
		}
	}
}

// RateLimit returns the bytes per second each client may send; 0 is no
// limit.
func (s *Server) RateLimit() int64 { return s.opts.RateLimit }

// PublicKey returns the relay's public key.
func (s *Server) PublicKey() key.NodePublic { return s.pub }

// Stats returns the current counters.
func (s *Server) Stats() Stats {
	s.mu.RLock()
	clients, watchers := len(s.clients), len(s.watchers)
	s.mu.RUnlock()
	return Stats{
		Clients:          clients,
		MeshPeers:        watchers,
		PacketsForwarded: s.packetsForwarded.Load(),
		BytesForwarded:   s.bytesForwarded.Load(),
		DropsQueueFull:   s.dropsQueueFull.Load(),
		DropsRelayFull:   s.dropsRelayFull.Load(),
		QueuedBytes:      s.queued.Load(),
		DropsUnknownDest: s.dropsUnknown.Load(),
		DropsWrite:       s.dropsWrite.Load(),
		Refused:          s.refused.Load(),
	}
}

// Close stops the mesh links, closes every connection and waits for the
// goroutines the server started. Hijacked connections are not tracked by
// http.Server, so Close is how they end.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	conns := make([]*sconn, 0, len(s.all))
	for c := range s.all {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	s.cancel()
	for _, c := range conns {
		c.nc.Close()
	}
	s.wg.Wait()
	return nil
}

// ProbeHandler answers 204 to any request: an HTTP latency probe for
// clients whose UDP (and so STUN) is blocked. Mount it at /relay/probe.
func (s *Server) ProbeHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusNoContent)
	})
}

// upgradeToken is the Upgrade header value of the relay protocol.
const upgradeToken = "weft-relay"

// ServeHTTP upgrades GET /relay to the relay protocol and serves the
// connection until it ends.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "relay: use GET with Upgrade: weft-relay", http.StatusMethodNotAllowed)
		return
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), upgradeToken) {
		w.Header().Set("Upgrade", upgradeToken)
		http.Error(w, "this is a weft relay: connect with a weft node (Upgrade: weft-relay)", http.StatusUpgradeRequired)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "relay: connection cannot be upgraded (HTTP/2?); use HTTP/1.1", http.StatusInternalServerError)
		return
	}
	nc, brw, err := hj.Hijack()
	if err != nil {
		s.log.Warn("hijack failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	// The request may not carry a body, so whatever the server buffered
	// past the headers is already relay frames.
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\nConnection: Upgrade\r\n\r\n", upgradeToken)
	if err := brw.Flush(); err != nil {
		nc.Close()
		return
	}
	// net/http's reader is only 4 KiB; read through a larger one of our
	// own (connBufSize), starting with whatever net/http had buffered.
	var rd io.Reader = nc
	if n := brw.Reader.Buffered(); n > 0 {
		early, _ := brw.Reader.Peek(n)
		rd = io.MultiReader(bytes.NewReader(bytes.Clone(early)), nc)
	}
	s.serveConn(nc, bufio.NewReaderSize(rd, connBufSize), r.RemoteAddr)
}

// connBufSize is the read and write buffer of each connection. A relay
// holds many mostly idle connections, so this is a trade: 16 KiB each way
// still moves about ten full-size packets per system call.
const connBufSize = 16 << 10

// handshakeTimeout bounds the whole handshake, authorization included.
const handshakeTimeout = 10 * time.Second

func (s *Server) serveConn(nc net.Conn, br *bufio.Reader, remote string) {
	c := &sconn{
		s:        s,
		nc:       nc,
		br:       br,
		bw:       bufio.NewWriterSize(nc, connBufSize),
		remote:   remote,
		packets:  make(chan queuedPacket, s.opts.QueueLen),
		ctrl:     make(chan ctrlFrame, 32),
		done:     make(chan struct{}),
		psig:     make(chan struct{}, 1),
		goneSent: make(map[key.NodePublic]time.Time),
	}
	if !s.track(c) {
		nc.Close()
		return
	}
	defer s.untrack(c)
	defer nc.Close()

	if err := s.handshake(c); err != nil {
		s.log.Info("relay handshake failed", "remote", remote, "key", c.key.ShortString(), "err", err)
		return
	}
	defer s.unregister(c)
	if err := s.accept(c); err != nil {
		return
	}

	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		c.writeLoop()
	}()
	err := c.readLoop()
	close(c.done)
	<-wrote
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		s.log.Debug("relay connection ended", "key", c.key.ShortString(), "mesh", c.mesh, "err", err)
	}
}

func (s *Server) track(c *sconn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.all[c] = struct{}{}
	s.wg.Add(1) // under s.mu with closed false, so never after Close's Wait began
	return true
}

func (s *Server) untrack(c *sconn) {
	s.mu.Lock()
	delete(s.all, c)
	s.mu.Unlock()
	s.wg.Done()
}

// handshake runs the server's side of the handshake up to the decision and
// leaves c.key and c.mesh set on success; accept completes it. A refused
// client gets a refused frame first.
func (s *Server) handshake(c *sconn) error {
	ctx, cancel := context.WithTimeout(s.ctx, handshakeTimeout)
	defer cancel()
	c.nc.SetDeadline(time.Now().Add(handshakeTimeout))
	sk := serverKeyMsg{Key: s.pub}
	if _, err := rand.Read(sk.Challenge[:]); err != nil {
		return fmt.Errorf("relay: challenge: %w", err)
	}
	if err := writeFrame(c.bw, FrameServerKey, sk.marshal()); err != nil {
		return err
	}
	if err := c.bw.Flush(); err != nil {
		return err
	}
	t, b, err := readFrame(c.br, maxHandshakePayload)
	if err != nil {
		return fmt.Errorf("relay: reading client-info: %w", err)
	}
	if t != FrameClientInfo {
		return s.refuse(c, fmt.Sprintf("expected client-info, got %s", t))
	}
	k, info, err := openClientInfo(b, s.priv, sk.Challenge)
	c.key = k
	if err != nil {
		return s.refuse(c, err.Error())
	}
	if info.Version != ProtocolVersion {
		return s.refuse(c, fmt.Sprintf("relay protocol version %d not supported; this relay speaks %d: upgrade weft on the older side", info.Version, ProtocolVersion))
	}
	switch {
	case len(info.MeshProof) > 0:
		if s.opts.MeshKey == "" {
			return s.refuse(c, "this relay has no mesh configured")
		}
		want := meshProof(s.opts.MeshKey, sk.Challenge, s.pub, k)
		if !hmac.Equal(want, info.MeshProof) {
			return s.refuse(c, "mesh key mismatch: give every relay of the region the same mesh key")
		}
		c.mesh = true
	case s.opts.Authorizer == nil:
		return s.refuse(c, "relay has no authorizer configured and accepts no nodes")
	default:
		ok, err := s.opts.Authorizer.AllowNode(ctx, k)
		if err != nil {
			return s.refuse(c, fmt.Sprintf("cannot check node key right now (%v); try again later", err))
		}
		if !ok {
			return s.refuse(c, fmt.Sprintf("node key %s is not authorized on this relay: is the node registered with the control server?", k))
		}
	}
	c.preferred.Store(info.Preferred)
	return nil
}

// accept registers c and then answers its handshake, in that order, so
// that a client that has its server-info is already reachable.
func (s *Server) accept(c *sconn) error {
	s.register(c)
	si := serverInfo{
		Version:         ProtocolVersion,
		KeepAliveMillis: s.opts.KeepAlive.Milliseconds(),
		RateBytesPerSec: s.opts.RateLimit,
	}
	if err := writeFrame(c.bw, FrameServerInfo, mustJSON(si)); err != nil {
		return err
	}
	if err := c.bw.Flush(); err != nil {
		return err
	}
	c.nc.SetDeadline(time.Time{})
	return nil
}

// refuse tells the client why it is refused and returns that as an error.
func (s *Server) refuse(c *sconn, reason string) error {
	s.refused.Add(1)
	if err := writeFrame(c.bw, FrameRefused, []byte(reason)); err == nil {
		c.bw.Flush()
	}
	return fmt.Errorf("%w: %s", ErrRefused, reason)
}

// recheck asks the Authorizer again about every connected node and drops
// those no longer allowed. An Authorizer error keeps the node: an outage of
// the control server should not cut every relayed path.
func (s *Server) recheck(ctx context.Context) {
	s.mu.RLock()
	conns := make([]*sconn, 0, len(s.clients))
	for _, c := range s.clients {
		conns = append(conns, c)
	}
	s.mu.RUnlock()
	for _, c := range conns {
		ok, err := s.opts.Authorizer.AllowNode(ctx, c.key)
		if err != nil || ok {
			continue
		}
		s.log.Info("relay client no longer authorized; disconnecting", "key", c.key.ShortString())
		c.nc.Close()
	}
}

// register makes a node connection reachable by its key; a newer
// connection for the same key replaces (and closes) the older one, as
// happens when a node roams and reconnects before the old TCP dies.
func (s *Server) register(c *sconn) {
	if c.mesh {
		return // mesh peers become watchers on watch-conns
	}
	s.mu.Lock()
	old := s.clients[c.key]
	s.clients[c.key] = c
	if old == nil {
		s.notePresenceLocked(c.key, true)
	}
	s.mu.Unlock()
	if old != nil {
		s.log.Info("relay client replaced by a newer connection", "key", c.key.ShortString(), "old", old.remote, "new", c.remote)
		old.nc.Close()
	}
	s.log.Debug("relay client connected", "key", c.key.ShortString(), "remote", c.remote)
}

func (s *Server) unregister(c *sconn) {
	s.mu.Lock()
	if c.mesh {
		delete(s.watchers, c)
	} else if s.clients[c.key] == c {
		delete(s.clients, c.key)
		s.notePresenceLocked(c.key, false)
	}
	s.mu.Unlock()
	// Whatever is still queued will never be written.
	s.dropsWrite.Add(uint64(c.closeQueue()))
}

// notePresenceLocked tells every watching mesh peer that k came or went.
// s.mu must be held.
func (s *Server) notePresenceLocked(k key.NodePublic, present bool) {
	for w := range s.watchers {
		w.notePresence(k, present)
	}
}

func (c *sconn) notePresence(k key.NodePublic, present bool) {
	c.pmu.Lock()
	if c.pending == nil {
		c.pending = make(map[key.NodePublic]bool)
	}
	c.pending[k] = present
	c.pmu.Unlock()
	select {
	case c.psig <- struct{}{}:
	default:
	}
}

// addWatcher makes mesh peer c a watcher and queues every current client
// as present for it.
func (s *Server) addWatcher(c *sconn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.watchers[c] = struct{}{}
	for k := range s.clients {
		c.notePresence(k, true)
	}
}

// forward delivers data from src to dst: to a local client, else through
// the mesh link where dst is present (unless the packet already came over
// the mesh: one mesh hop at most, so no loops), else nowhere.
func (s *Server) forward(from *sconn, src, dst key.NodePublic, data []byte) {
	s.mu.RLock()
	dc := s.clients[dst]
	var link *meshLink
	if dc == nil && !from.mesh {
		link = s.routes[dst]
	}
	s.mu.RUnlock()
	switch {
	case dc != nil:
		switch dc.enqueue(queuedPacket{src: src, data: data}) {
		case queued:
			s.packetsForwarded.Add(1)
			s.bytesForwarded.Add(uint64(len(data)))
		case relayFull:
			s.dropsRelayFull.Add(1)
		case queueFull:
			s.dropsQueueFull.Add(1)
		case connGone:
			s.dropsWrite.Add(1)
		}
	case link != nil:
		if link.enqueue(src, dst, data) {
			s.packetsForwarded.Add(1)
			s.bytesForwarded.Add(uint64(len(data)))
		} else {
			s.dropsQueueFull.Add(1)
		}
	default:
		s.dropsUnknown.Add(1)
		if !from.mesh {
			from.peerGone(dst, PeerGoneNotHere)
		}
	}
}

// ErrRefused reports a handshake the relay refused; the error text carries
// the relay's reason.
var ErrRefused = errors.New("relay: refused")

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("relay: encoding " + fmt.Sprintf("%T", v) + ": " + err.Error())
	}
	return b
}
