// Package control is weft's coordination server: it registers nodes with
// pre-auth keys, keeps each connected node's map stream, and fans out what
// changes. It hands out keys and metadata only; it never carries traffic.
//
// Nodes reach it over the Noise control channel (internal/noiseconn) and
// speak the messages of internal/wire (docs/protocol.md). Durable state
// lives in a store.Store; which nodes are online, and the streams, live in
// memory here.
package control

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"weft/internal/changefeed"
	"weft/internal/dnsconf"
	"weft/internal/key"
	"weft/internal/noiseconn"
	"weft/internal/store"
	"weft/internal/wire"
)

// Defaults for Config's zero fields.
const (
	DefaultBatchWindow      = 25 * time.Millisecond
	DefaultKeepAlive        = 30 * time.Second
	DefaultEphemeralTimeout = 5 * time.Minute
	DefaultMaxQueue         = 128 << 20
	DefaultWriteTimeout     = 30 * time.Second
	DefaultRegisterRate     = 1.0 // registrations per second per source address
	DefaultRegisterBurst    = 20
)

// DefaultPreStreamTimeout is Config.PreStreamTimeout's default.
const DefaultPreStreamTimeout = 15 * time.Second

// VisibleFunc reports whether node a may see node b in its map. It
// replaces the access policy's peer visibility (tests use it); it must be
// cheap and must not block, since it runs under the server's lock for each
// affected pair.
type VisibleFunc func(a, b *wire.Node) bool

// HealthSink keeps nodes' reported health samples (samples.Dir is one).
type HealthSink interface {
	Append(id wire.NodeID, ss []wire.HealthSample) error
}

// Config configures a Server.
type Config struct {
	// Store holds users, keys and nodes. Required.
	Store store.Store
	// Key is the server's long-term Noise key. Required.
	Key key.MachinePrivate
	// RelayMap is sent to every node; nil sends an empty map.
	RelayMap *wire.RelayMap
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
	// BatchWindow is how long changes are gathered before they are sent,
	// so that a burst costs one delta per node; zero means
	// DefaultBatchWindow.
	BatchWindow time.Duration
	// KeepAlive is how often an idle stream gets a keepalive; a node
	// silent for three of these is dropped. Zero means DefaultKeepAlive.
	KeepAlive time.Duration
	// EphemeralTimeout is how long an ephemeral node may stay
	// disconnected before it is deleted. Zero means
	// DefaultEphemeralTimeout.
	EphemeralTimeout time.Duration
	// NodeKeyLifetime is how long a new untagged node key is valid; zero
	// means the store's default (180 days).
	NodeKeyLifetime time.Duration
	// RegisterRate and RegisterBurst limit registrations per source IP
	// (token bucket). Zero means the defaults; a negative rate disables
	// the limit.
	RegisterRate  float64
	RegisterBurst int
	// MaxQueue bounds the bytes waiting for one slow node; past it the
	// node's stream is closed (it reconnects and gets a full map). Zero
	// means DefaultMaxQueue.
	MaxQueue int
	// WriteTimeout bounds one write to a node; a node that does not read
	// for this long is dropped. Zero means DefaultWriteTimeout.
	WriteTimeout time.Duration
	// PersistInterval is how often changed runtime facts (endpoints,
	// last seen...) are written to the store; zero means one second.
	PersistInterval time.Duration
	// Health keeps the health samples nodes report; nil drops them.
	Health HealthSink
	// Visible, when set, decides who sees whom instead of the policy in
	// the store (whose packet filters still apply); nil: the policy.
	Visible VisibleFunc
	// UpdateRate and UpdateBurst limit the updates one node's changes
	// cause (token bucket per stream; see updlimit.go). Zero means the
	// defaults.
	UpdateRate  float64
	UpdateBurst int
	// PreStreamTimeout bounds the time from a channel's handshake to its
	// first real request (register, logout or map request); keepalives do
	// not extend it, since anyone can complete the handshake with a key of
	// their own. Zero means DefaultPreStreamTimeout.
	PreStreamTimeout time.Duration
	// Now returns the time; nil means time.Now.
	Now func() time.Time
	// Feed carries change events between the servers sharing Store
	// (feed.go); nil means a feed of the server's own with nobody else
	// on it, right for one server. With a Feed the server also keeps a
	// liveness row in Store and watches the other servers' (liveness.go).
	Feed changefeed.Feed
	// LoginsChanged is called when another server says an interactive
	// node login was approved, or after a resync (events may have been
	// missed): the waiting logins read their rows again
	// (nodelogin.Manager.Wake). nil: nobody is told.
	LoginsChanged func()
	// HeartbeatInterval is how often the server bumps its liveness row
	// and reads the others'; zero means DefaultHeartbeatInterval.
	// ServerTimeout is how long another server's row may stand still
	// before it is taken for dead and its nodes are marked offline; zero
	// means DefaultServerTimeout. Both apply only with a Feed.
	HeartbeatInterval time.Duration
	ServerTimeout     time.Duration
}

// Server is the control server. Create it with New, serve Handler, and stop
// it with Close.
type Server struct {
	cfg     Config
	log     *slog.Logger
	noise   *noiseconn.Server
	limiter *rateLimiter
	m       *mapper
	out     *outbox // change events for the other servers
	shared  bool    // Config.Feed was given: other servers may share Store

	feedStats feedStats // what applying other servers' events cost

	ctx    context.Context // cancelled by Close; parent of per-conn work
	cancel context.CancelFunc
	// wg counts the connection goroutines, the mapper's loops, the
	// streams' writers and the goroutines that close streams (see
	// Server.spawn). Add is only called before Close's Wait or for a live
	// stream, whose connection goroutine is still counted, so it never
	// races with a Wait at zero.
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeMu   sync.Mutex // guards closing
	closing   bool       // Close has begun; no new connection goroutines

	stopPersist context.CancelFunc // ends persistLoop, which then writes what is left
	persistDone chan struct{}      // closed when persistLoop returned
}

// New loads the nodes from cfg.Store and returns a running Server.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("control: Config.Store is nil")
	}
	if cfg.Key.IsZero() {
		return nil, errors.New("control: Config.Key is zero")
	}
	cfg.setDefaults()
	shared := cfg.Feed != nil
	if !shared {
		cfg.Feed = changefeed.NewHub().Feed()
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger,
		noise:   &noiseconn.Server{Key: cfg.Key},
		limiter: newRateLimiter(cfg.RegisterRate, cfg.RegisterBurst, cfg.Now),
		out:     newOutbox(cfg.Feed),
		shared:  shared,
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	m, err := newMapper(ctx, s)
	if err != nil {
		return nil, err
	}
	s.m = m
	s.spawn(func() { m.keepAliveLoop(s.ctx) })
	s.spawn(func() { s.out.run(s.ctx, s.log.With("sub", "changefeed")) })
	// The other servers say which nodes stream at theirs.
	s.out.tailnetChanged(changefeed.KindHello)
	s.spawn(func() { cfg.Feed.Run(s.ctx, s.applyEvents) })
	if shared {
		s.spawn(func() { s.livenessLoop(s.ctx) })
	}
	pctx, stopPersist := context.WithCancel(context.Background())
	s.persistDone = make(chan struct{})
	s.stopPersist = stopPersist
	go func() {
		defer close(s.persistDone)
		m.persistLoop(pctx, cfg.PersistInterval)
	}()
	return s, nil
}

// setDefaults fills in the zero fields of cfg that have defaults (all
// but Feed, which New handles).
func (cfg *Config) setDefaults() {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	cfg.BatchWindow = cmp.Or(cfg.BatchWindow, DefaultBatchWindow)
	cfg.KeepAlive = cmp.Or(cfg.KeepAlive, DefaultKeepAlive)
	cfg.EphemeralTimeout = cmp.Or(cfg.EphemeralTimeout, DefaultEphemeralTimeout)
	cfg.RegisterRate = cmp.Or(cfg.RegisterRate, DefaultRegisterRate)
	cfg.RegisterBurst = cmp.Or(cfg.RegisterBurst, DefaultRegisterBurst)
	cfg.MaxQueue = cmp.Or(cfg.MaxQueue, DefaultMaxQueue)
	cfg.WriteTimeout = cmp.Or(cfg.WriteTimeout, DefaultWriteTimeout)
	if cfg.UpdateRate <= 0 {
		cfg.UpdateRate = DefaultUpdateRate
	}
	if cfg.UpdateBurst <= 0 {
		cfg.UpdateBurst = DefaultUpdateBurst
	}
	cfg.PreStreamTimeout = cmp.Or(cfg.PreStreamTimeout, DefaultPreStreamTimeout)
	cfg.PersistInterval = cmp.Or(cfg.PersistInterval, time.Second)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RelayMap == nil {
		cfg.RelayMap = &wire.RelayMap{Regions: map[int]*wire.RelayRegion{}}
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.ServerTimeout <= 0 {
		cfg.ServerTimeout = DefaultServerTimeout
	}
}

// PublicKey returns the server's public Noise key, which nodes pin.
func (s *Server) PublicKey() key.MachinePublic { return s.cfg.Key.Public() }

// KeyResponse is the body of GET /key.
type KeyResponse struct {
	Version   int               `json:"version"`
	PublicKey key.MachinePublic `json:"public_key"`
}

// Handler returns the server's HTTP routes: /key, /healthz, /relaymap,
// /whoami and the control
// upgrade at noiseconn.Path. Mount it at the root of the listener; other
// components (the relay, the console) add their own paths beside it.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /key", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(KeyResponse{Version: wire.ProtocolVersion, PublicKey: s.PublicKey()})
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := s.Healthy(r.Context()); err != nil {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "unhealthy: "+err.Error()+"\n")
			return
		}
		io.WriteString(w, "ok\n")
	})
	// The relay map is what every node gets in its map anyway; serving
	// it lets `weft netcheck --server URL` measure before joining.
	mux.HandleFunc("GET /relaymap", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(s.m.relay)
	})
	// The caller's address, as this server sees it: `weft exit-node
	// check` asks it by default, since a tailnet's own control server is
	// reachable where a public address-echo service may not be.
	mux.HandleFunc("GET /whoami", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		io.WriteString(w, host+"\n")
	})
	mux.HandleFunc(noiseconn.Path, s.serveUpgrade)
	return mux
}

func (s *Server) serveUpgrade(w http.ResponseWriter, r *http.Request) {
	if s.ctx.Err() != nil {
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	conn, err := s.noise.Accept(w, r)
	if err != nil {
		s.log.Info("control channel refused", "remote", r.RemoteAddr, "err", err)
		return
	}
	// The connection runs on its own goroutine so that net/http frees
	// the request's buffers now rather than for the life of the stream.
	// A handler is not counted in wg, so it starts one only while Close
	// has not begun to wait.
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closing {
		conn.Close()
		return
	}
	s.spawn(func() { s.serveConn(conn) })
}

// spawn runs f on a goroutine that Close waits for.
func (s *Server) spawn(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// Close drops every stream, stops the server's goroutines and waits for
// them, and writes the nodes' last runtime facts. It does not close the
// Store. Calls after the first wait for the first to finish and do
// nothing more.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.closeMu.Lock()
		s.closing = true
		s.closeMu.Unlock()
		s.cancel()
		s.m.closeAll()
		s.wg.Wait()
		// Only now, with every stream ended and marked offline, the
		// last runtime facts are written.
		s.stopPersist()
		<-s.persistDone
		if s.shared {
			s.leave()
		}
	})
	return nil
}

// NodeChanged tells the server that a node's stored record changed behind
// its back (an administrator renamed or expired it, approved a route): it
// is reloaded and the change sent to the nodes that see it, here and, by
// the change feed, at the other servers. An expired key revokes the node
// everywhere (expiry.go).
func (s *Server) NodeChanged(id wire.NodeID) {
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	s.reloadNodes(ctx, []wire.NodeID{id})
	s.out.nodes(changefeed.KindNode, id)
}

// DNSChanged tells the server the tailnet's DNS settings changed in the
// store: it reloads them and sends every connected node the new
// configuration, here and at the other servers.
func (s *Server) DNSChanged() {
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	s.reloadDNS(ctx)
	s.out.tailnetChanged(changefeed.KindDNS)
}

// AnnounceLogin tells the other servers that an interactive node login
// was approved here, so that the node waiting at one of them gets its key
// (docs/changefeed.md, kind "login").
func (s *Server) AnnounceLogin() {
	s.out.tailnetChanged(changefeed.KindLogin)
}

// reloadDNS reads the DNS settings and sends them to this server's nodes.
func (s *Server) reloadDNS(ctx context.Context) {
	cfg, err := loadDNS(ctx, s)
	if err != nil {
		s.log.Error("reloading DNS settings", "err", err)
		return
	}
	s.m.setDNS(&cfg)
}

// Healthy reports why the server cannot change the tailnet now: its store
// does not answer, or its change feed is not receiving the other servers'
// changes. Nil means healthy. Streams already up keep their last good
// maps either way.
func (s *Server) Healthy(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := pingStore(ctx, s.cfg.Store); err != nil {
		return fmt.Errorf("database unreachable: %w", err)
	}
	if err := s.cfg.Feed.Err(); err != nil {
		return fmt.Errorf("change feed down: %w", err)
	}
	return nil
}

// pingStore checks that st answers: by its Ping when it has one, else by
// the cheapest read there is.
func pingStore(ctx context.Context, st store.Store) error {
	if p, ok := st.(interface{ Ping(context.Context) error }); ok {
		return p.Ping(ctx)
	}
	_, _, err := st.DNSSettings(ctx)
	return err
}

// loadDNS reads the DNS settings from the store. A stored file that no
// longer parses (written by a newer weft, say) is logged and replaced by
// the defaults rather than keeping the server down.
func loadDNS(ctx context.Context, s *Server) (wire.DNSConfig, error) {
	src, _, err := s.cfg.Store.DNSSettings(ctx)
	if err != nil {
		return wire.DNSConfig{}, fmt.Errorf("control: loading DNS settings: %w", err)
	}
	cfg, err := dnsconf.Parse(src)
	if err != nil {
		s.log.Error("stored DNS settings do not parse; nodes get the defaults until `weft admin dns set` fixes them", "err", err)
		cfg = dnsconf.Default()
	}
	return cfg, nil
}

// NodeRemoved tells the server a node was deleted: it leaves every map and
// its own stream is closed.
func (s *Server) NodeRemoved(id wire.NodeID) {
	s.m.remove(id, "this node was deleted by an administrator; run `weft up` with a pre-auth key to join again")
	s.out.nodes(changefeed.KindRemoved, id)
}

// remoteIP returns the IP of a connection's peer, for rate limiting.
func remoteIP(c net.Conn) string {
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String()
	}
	return host
}

// channel is one node's control channel as serveConn reads it: the
// connection, who is on the other end, and the map stream once started.
type channel struct {
	s    *Server
	conn *noiseconn.Conn
	mk   key.MachinePublic
	log  *slog.Logger
	sess *session       // set once the map stream has started
	lim  *updateLimiter // the stream's updates; set with sess
	// until is when a channel without a stream must have made its next
	// real request; keepalives leave it alone.
	until time.Time
}

// serveConn reads a node's messages until the channel ends. Each message
// type has its own handler, which reports whether the channel stays open.
func (s *Server) serveConn(conn *noiseconn.Conn) {
	defer conn.Close()
	mk := conn.Peer()
	c := &channel{s: s, conn: conn, mk: mk, log: s.log.With("machine", mk.ShortString(), "remote", conn.RemoteAddr().String()),
		until: time.Now().Add(s.cfg.PreStreamTimeout)}
	// Close may cancel s.ctx at any moment; the close it starts is
	// waited for here, so that Close, waiting for this goroutine, also
	// waits for the socket's close however slow it is.
	aborted := make(chan struct{})
	stop := context.AfterFunc(s.ctx, func() {
		defer close(aborted)
		conn.Close()
	})
	defer func() {
		if !stop() {
			<-aborted
		}
	}()
	defer func() {
		if c.lim != nil {
			c.lim.stop()
		}
		if c.sess != nil {
			s.m.disconnected(c.sess)
		}
	}()
	for {
		typ, body, err := c.read()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && s.ctx.Err() == nil {
				c.log.Info("control channel closed", "err", err)
			}
			return
		}
		if !c.handle(typ, body) {
			return
		}
	}
}

// read reads the next message. Anyone can complete the handshake with a
// key of their own, so a channel without a stream gets little time: it
// must register or start its stream promptly, and keepalives do not buy
// it more (c.until moves only after a real request).
func (c *channel) read() (wire.MsgType, []byte, error) {
	if c.sess == nil {
		c.conn.SetReadDeadline(c.until)
	} else {
		c.conn.SetReadDeadline(time.Now().Add(3 * c.s.cfg.KeepAlive))
	}
	typ, body, err := wire.ReadMessage(c.conn, wire.MaxNodeMessage)
	if err == nil && typ != wire.MsgKeepAlive {
		c.until = time.Now().Add(c.s.cfg.PreStreamTimeout)
	}
	return typ, body, err
}

// handle dispatches one message and reports whether to keep reading.
func (c *channel) handle(typ wire.MsgType, body []byte) bool {
	switch typ {
	case wire.MsgKeepAlive:
		return true
	case wire.MsgRegisterRequest:
		return c.handleRegister(body)
	case wire.MsgLogoutRequest:
		c.handleLogout(body)
		return false
	case wire.MsgMapRequest:
		return c.handleMapRequest(body)
	case wire.MsgUpdate:
		return c.handleUpdate(body)
	default:
		c.log.Info("unexpected message from node; closing", "type", typ)
		return false
	}
}

// handleRegister answers a register request; it is refused during a map
// stream.
func (c *channel) handleRegister(body []byte) bool {
	if c.sess != nil {
		c.log.Info("register request during a map stream; closing")
		return false
	}
	var req wire.RegisterRequest
	resp := &wire.RegisterResponse{}
	if err := wire.Decode(body, &req); err != nil {
		resp.Error = &wire.ErrorMessage{Code: wire.CodeBadRequest, Message: err.Error()}
	} else {
		resp = c.s.register(c.s.ctx, c.mk, remoteIP(c.conn), &req, c.log)
	}
	if err := wire.WriteMessage(c.conn, wire.MsgRegisterResponse, resp); err != nil {
		c.log.Info("writing register response", "err", err)
		return false
	}
	return true
}

// handleLogout answers a logout request; the channel closes after it.
func (c *channel) handleLogout(body []byte) {
	if c.sess != nil {
		c.log.Info("logout request during a map stream; closing")
		return
	}
	var req wire.LogoutRequest
	resp := &wire.LogoutResponse{}
	if err := wire.Decode(body, &req); err != nil {
		resp.Error = &wire.ErrorMessage{Code: wire.CodeBadRequest, Message: err.Error()}
	} else {
		resp.Error = c.s.logout(c.s.ctx, c.mk, &req, c.log)
	}
	if err := wire.WriteMessage(c.conn, wire.MsgLogoutResponse, resp); err != nil {
		c.log.Info("writing logout response", "err", err)
	}
}

// handleMapRequest starts the channel's map stream; one per channel.
func (c *channel) handleMapRequest(body []byte) bool {
	if c.sess != nil {
		c.log.Info("second map request on one channel; closing")
		return false
	}
	var req wire.MapRequest
	if err := wire.Decode(body, &req); err != nil {
		c.s.refuse(c.conn, &wire.ErrorMessage{Code: wire.CodeBadRequest, Message: err.Error()}, c.log)
		return false
	}
	sess, em := c.s.startStream(c.s.ctx, c.conn, c.mk, &req, c.log)
	if em != nil {
		c.s.refuse(c.conn, em, c.log)
		return false
	}
	c.sess = sess
	return true
}

// handleUpdate applies a node's update to its running stream.
func (c *channel) handleUpdate(body []byte) bool {
	if c.sess == nil {
		c.s.refuse(c.conn, &wire.ErrorMessage{Code: wire.CodeBadRequest, Message: "update before map request"}, c.log)
		return false
	}
	var u wire.Update
	if err := wire.Decode(body, &u); err != nil {
		c.log.Info("bad update; closing", "err", err)
		return false
	}
	// Health samples are the node's own history, kept by the server
	// and sent to nobody: they bypass the rate limit below, which is
	// about what peers are sent.
	if len(u.HealthSamples) > 0 && c.s.cfg.Health != nil {
		if err := c.s.cfg.Health.Append(c.sess.id, u.HealthSamples); err != nil {
			c.log.Warn("health samples not kept", "err", err)
		}
	}
	u.HealthSamples = nil
	if c.lim == nil {
		id := c.sess.id
		c.lim = newUpdateLimiter(c.s.cfg.UpdateRate, c.s.cfg.UpdateBurst, c.s.cfg.Now, func(u *wire.Update) { c.applyUpdate(id, u) })
	}
	c.lim.offer(&u)
	return true
}

// applyUpdate applies an Update of node id that passed its rate limit.
func (c *channel) applyUpdate(id wire.NodeID, u *wire.Update) {
	if u.AdvertisedRoutes != nil {
		if err := c.s.updateAdvertised(c.s.ctx, id, *u.AdvertisedRoutes); err != nil {
			c.log.Warn("advertised routes not recorded", "err", err)
		}
	}
	c.s.m.update(id, u)
}

// logout disables the node of machine mk at its own request: its key is
// expired, as `weft admin nodes expire` does, so the node stays listed
// and keeps its name and addresses for a later `weft up` with a pre-auth
// key; an ephemeral node is deleted.
func (s *Server) logout(ctx context.Context, mk key.MachinePublic, req *wire.LogoutRequest, log *slog.Logger) *wire.ErrorMessage {
	n, err := s.cfg.Store.GetNodeByMachineKey(ctx, mk)
	if errors.Is(err, store.ErrNotFound) || (err == nil && n.NodeKey != req.NodeKey) {
		return &wire.ErrorMessage{Code: wire.CodeNotRegistered, Message: "this node is not registered here (or under another key); nothing to log out"}
	}
	if err != nil {
		log.Error("loading node for logout", "err", err)
		return &wire.ErrorMessage{Code: wire.CodeInternal, Message: "server error; try again later"}
	}
	if n.Ephemeral {
		if err := s.cfg.Store.DeleteNode(ctx, n.ID); err != nil {
			log.Error("deleting ephemeral node at logout", "node", n.ID, "err", err)
			return &wire.ErrorMessage{Code: wire.CodeInternal, Message: "server error; try again later"}
		}
		log.Info("node logged out and deleted (ephemeral)", "node", n.ID, "name", n.Name)
		s.NodeRemoved(n.ID)
		return nil
	}
	if !n.KeyExpired(s.cfg.Now()) {
		if _, err := s.cfg.Store.ExpireNode(ctx, n.ID); err != nil {
			log.Error("expiring node at logout", "node", n.ID, "err", err)
			return &wire.ErrorMessage{Code: wire.CodeInternal, Message: "server error; try again later"}
		}
	}
	log.Info("node logged out; key expired", "node", n.ID, "name", n.Name)
	s.NodeChanged(n.ID)
	return nil
}

// refuse sends an error message and lets the caller close the channel.
func (s *Server) refuse(conn *noiseconn.Conn, em *wire.ErrorMessage, log *slog.Logger) {
	log.Info("refusing node", "code", em.Code, "reason", em.Message)
	conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	wire.WriteMessage(conn, wire.MsgError, em)
}

// startStream checks a map request against the store, records the node's
// runtime facts, and starts its stream with a full map.
func (s *Server) startStream(ctx context.Context, conn *noiseconn.Conn, mk key.MachinePublic, req *wire.MapRequest, log *slog.Logger) (*session, *wire.ErrorMessage) {
	n, err := s.cfg.Store.GetNodeByMachineKey(ctx, mk)
	if errors.Is(err, store.ErrNotFound) {
		return nil, &wire.ErrorMessage{Code: wire.CodeNotRegistered, Message: "this machine is not registered; run `weft up` with a pre-auth key"}
	}
	if err != nil {
		log.Error("loading node", "err", err)
		if herr := s.Healthy(ctx); herr != nil {
			return nil, &wire.ErrorMessage{Code: wire.CodeInternal, Message: "the control server cannot start map streams now (" + herr.Error() + "); try again later, or another control server"}
		}
		return nil, &wire.ErrorMessage{Code: wire.CodeInternal, Message: "server error; try again later"}
	}
	if n.NodeKey != req.NodeKey {
		return nil, &wire.ErrorMessage{Code: wire.CodeNotRegistered, Message: "this node key is not registered (it was rotated or the node re-registered elsewhere); run `weft up` again"}
	}
	if n.KeyExpired(s.cfg.Now()) {
		return nil, expiredError(n.KeyExpiry)
	}
	if routed, _, err := s.setAdvertised(ctx, n, req.AdvertisedRoutes); err != nil {
		log.Warn("advertised routes not recorded", "err", err)
	} else {
		n = routed
	}
	// Runtime facts are soft state: they go to the store in the
	// background (see mapper.persistLoop), so that a reconnect storm after
	// a server restart is not serialised behind one fsync per node.
	if !req.DiscoKey.IsZero() {
		n.DiscoKey = req.DiscoKey
	}
	n.Endpoints = req.Endpoints
	n.HomeRegion = req.HomeRegion
	if req.Hostinfo != nil {
		n.Hostinfo = req.Hostinfo
	}
	n.LastSeen = s.cfg.Now().UTC()
	sess := newSession(s, n.ID, conn)
	if em := s.m.connected(&n, sess); em != nil {
		return nil, em
	}
	log.Debug("map stream started", "node", n.ID, "name", n.Name)
	return sess, nil
}
