// Package node is the node daemon: it keeps the node's preferences in its
// state directory, runs the control client while the user wants the node
// up (also across restarts), starts and stops the data plane, resolves the
// chosen exit node, and answers the local API.
package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"weft/internal/controlclient"
	"weft/internal/key"
	"weft/internal/localapi"
	"weft/internal/netutil"
	"weft/internal/nodestate"
	"weft/internal/version"
	"weft/internal/wire"
)

// DaemonConfig configures a Daemon.
type DaemonConfig struct {
	// State is the node's state directory. Required.
	State *nodestate.Dir
	// Logger receives logs; nil discards them.
	Logger *slog.Logger
	// Tune, if set, adjusts each Client's options before it is made
	// (tests shorten backoffs and keepalives with it).
	Tune func(*controlclient.Options)
	// OnHealthEvent, if set, receives events the daemon itself decides
	// on (an exit node failover), for the health history.
	OnHealthEvent func(localapi.HealthEvent)
	// CAPEM is PEM certificates trusted for every server's TLS besides
	// the system's roots and the node's own (weft daemon --ca-file);
	// nil for none.
	CAPEM []byte
	// NewEngine, if set, starts the data plane (internal/agent) each time
	// the node goes up; the daemon hands it every new map and closes it on
	// down, logout and Close. Nil runs the control plane alone.
	NewEngine func(EngineParams) (Engine, error)
}

// EngineParams is what the data plane needs from the daemon.
type EngineParams struct {
	NodeKey  key.NodePrivate
	DiscoKey key.DiscoPrivate // the one this run's maps announce
	// Client publishes endpoints, home region and host facts.
	Client *controlclient.Client
	// Hostinfo is the node's host facts without NetInfo.
	Hostinfo *wire.Hostinfo
	// TLSConfig is for relays reached over https; nil trusts the
	// system's roots.
	TLSConfig *tls.Config
}

// Engine is the data plane as the daemon drives it.
type Engine interface {
	// SetNetMap applies a new map; it must not block for long.
	SetNetMap(nm *controlclient.NetMap)
	// FillStatus adds per-peer paths, counters and health to st.
	FillStatus(st *localapi.Status)
	// Ping sends one disco ping to a peer named by name or address.
	Ping(ctx context.Context, req localapi.PingRequest) (*localapi.PingResult, error)
	// Close stops the data plane and undoes its host changes.
	Close() error
}

// Daemon is the node daemon's control side: it keeps the node's
// preferences in the state directory, runs the Client while the user wants
// the node up (also across restarts), and answers the local API.
type Daemon struct {
	cfg     DaemonConfig
	st      *nodestate.Dir
	log     *slog.Logger
	machine key.MachinePrivate
	disco   key.DiscoPrivate // kept in the state dir across runs

	opMu sync.Mutex // serialises Up, Down and Logout

	mu      sync.Mutex // guards the fields below
	prefs   nodestate.Prefs
	client  *controlclient.Client
	cancel  context.CancelFunc // stops client's Run
	done    chan struct{}      // closed when client's Run returned
	nm      *controlclient.NetMap
	lastErr error
	saving  bool   // a netmap save is scheduled
	engine  Engine // the data plane while up; nil otherwise
	engErr  error  // why the data plane did not start
	// expired, when set, says this node's own key expired; its data
	// plane is stopped until a new `weft up --auth-key` (expiry.go).
	expired  error
	expTimer *time.Timer // fires at the next key expiry in nm
}

var (
	_ localapi.Backend = (*Daemon)(nil)
	_ localapi.Pinger  = (*Daemon)(nil)
)

// NewDaemon loads the state directory. Call Start to reconnect if the node
// was up when it last ran.
func NewDaemon(cfg DaemonConfig) (*Daemon, error) {
	if cfg.State == nil {
		return nil, errors.New("controlclient: DaemonConfig.State is nil")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	var damaged []error
	mk, err := loadRecovering(cfg.State.MachineKey, &damaged, cfg.Logger)
	if err != nil {
		return nil, err
	}
	newMachine := len(damaged) > 0
	prefs, err := loadRecovering(cfg.State.LoadPrefs, &damaged, cfg.Logger)
	if err != nil {
		return nil, err
	}
	if newMachine && prefs.Registered {
		// A new machine key is a machine the server does not know.
		prefs.Registered = false
	}
	dk, err := loadRecovering(cfg.State.DiscoKey, &damaged, cfg.Logger)
	if err != nil {
		return nil, err
	}
	d := &Daemon{cfg: cfg, st: cfg.State, log: cfg.Logger, machine: mk, disco: dk, prefs: prefs, lastErr: errors.Join(damaged...)}
	var nm controlclient.NetMap
	if err := cfg.State.LoadNetMap(&nm); err == nil && nm.Self != nil {
		d.nm = &nm
	}
	return d, nil
}

// Start reconnects if the node was up before: unattended nodes come back
// by themselves after a reboot.
func (d *Daemon) Start() {
	d.opMu.Lock()
	defer d.opMu.Unlock()
	d.mu.Lock()
	p := d.prefs
	d.mu.Unlock()
	if !p.WantUp || !p.Registered || p.ServerURL == "" {
		return
	}
	d.mu.Lock()
	if expired, at := d.nm.SelfExpired(time.Now()); expired {
		// The last map says the key ran out while the daemon was
		// stopped: no data plane until a new `weft up --auth-key`.
		d.selfExpiredLocked(at)
		d.mu.Unlock()
		return
	}
	d.mu.Unlock()
	c, err := d.newClient(p, nil)
	if err != nil {
		d.setErr(err)
		return
	}
	d.log.Info("reconnecting to control server", "server", p.ServerURL)
	d.run(c, true)
}

// Close stops the client; the preferences stay as they are.
func (d *Daemon) Close() {
	d.opMu.Lock()
	defer d.opMu.Unlock()
	d.stop()
	d.saveNetMap()
}

func defaultHostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "weft-node"
	}
	return h
}

func (d *Daemon) hostinfo(p nodestate.Prefs) *wire.Hostinfo {
	name := p.Hostname
	if name == "" {
		name = defaultHostname()
	}
	return &wire.Hostinfo{Hostname: name, OS: runtime.GOOS, Version: version.Get().Version}
}

// newClient makes a Client for p. onPin receives a newly pinned server
// key; nil saves it into the daemon's prefs.
func (d *Daemon) newClient(p nodestate.Prefs, onPin func(key.MachinePublic) error) (*controlclient.Client, error) {
	if onPin == nil {
		onPin = func(k key.MachinePublic) error {
			d.mu.Lock()
			defer d.mu.Unlock()
			d.prefs.ServerKey = k
			return d.st.SavePrefs(d.prefs)
		}
	}
	tc, err := d.trust(p)
	if err != nil {
		return nil, err
	}
	opts := controlclient.Options{
		TLSConfig:  tc,
		ServerURL:  p.ServerURL,
		MachineKey: d.machine,
		NodeKey:    p.NodeKey,
		DiscoKey:   d.disco.Public(),
		Hostinfo:   d.hostinfo(p),
		ServerKey:  p.ServerKey,
		Logger:     d.log,
		OnPin:      onPin,
		OnMap:      d.onMap,
	}
	opts.AdvertisedRoutes = AdvertisedRoutes(p)
	if d.cfg.Tune != nil {
		d.cfg.Tune(&opts)
	}
	return controlclient.New(opts)
}

func (d *Daemon) setErr(err error) {
	d.mu.Lock()
	d.lastErr = err
	d.mu.Unlock()
}

// Up registers if needed, saves the wish to be up, and starts the map
// stream. It waits briefly for the first map so that a status right after
// shows the peers. On a node that is up already, an `up` that keeps the
// server and the node key changes only what it was given, in place: the
// map stream and the data plane go on (an exit node's clients lose
// nothing).
func (d *Daemon) Up(ctx context.Context, req localapi.UpRequest) (*localapi.Status, error) {
	d.opMu.Lock()
	defer d.opMu.Unlock()

	d.mu.Lock()
	old, nm, c := d.prefs, d.nm, d.client
	d.mu.Unlock()
	p, oldNodeKey, err := upPrefs(old, nm, req)
	if err != nil {
		return nil, err
	}
	if old.ServerURL != "" && p.ServerURL != old.ServerURL {
		d.log.Info("switching control server", "from", old.ServerURL, "to", p.ServerURL)
	}
	var notices []string
	if !p.Registered || req.AuthKey != "" || !oldNodeKey.IsZero() {
		// Register on a client of its own before touching the running
		// stream or the saved prefs: a refused `up` (wrong key, server
		// unreachable) leaves the node as it was.
		rc, err := d.newClient(p, func(k key.MachinePublic) error { p.ServerKey = k; return nil })
		if err != nil {
			return nil, err
		}
		n, err := rc.Register(ctx, req.AuthKey, oldNodeKey)
		if err != nil {
			return nil, upError(err)
		}
		if !oldNodeKey.IsZero() {
			d.log.Info("node key rotated", "old", oldNodeKey.ShortString(), "new", p.NodeKey.Public().ShortString())
		}
		if old.ServerURL == p.ServerURL && nm != nil && nm.Self != nil {
			notices = tagNotices(nm.Self, n)
		}
	}
	p.Registered, p.WantUp = true, true
	inPlace := c != nil && old.Registered && old.WantUp && old.ServerURL == p.ServerURL &&
		old.NodeKey.Public() == p.NodeKey.Public()
	newCA := p.ServerCA != old.ServerCA
	if inPlace && newCA {
		// New certificates to trust on a node that is up: checked
		// against the server first, then its live connections are
		// made again with them (a data plane that cannot take them in
		// place starts again).
		if err := d.checkTrust(ctx, p); err != nil {
			return nil, err
		}
		inPlace = d.canRetrust()
	}
	if inPlace {
		if err := d.setPrefs(p); err != nil {
			return nil, err
		}
		if newCA {
			if err := d.retrust(c, p); err != nil {
				return nil, err
			}
		}
	} else if c, err = d.restart(ctx, p); err != nil {
		return nil, err
	}
	if err := d.checkExitAfterUp(req.Prefs, c); err != nil {
		return nil, err
	}
	st, err := d.Status(ctx)
	if st != nil {
		st.Notices = notices
	}
	return st, err
}

// upPrefs are the preferences an `up` asks for, starting from the saved
// ones: a new server starts over, the routing flags given change, and a
// rotation (or a first up) makes a new node key, whose predecessor it
// returns for the registration. A new --hostname on a registered node is
// refused: the server keeps a registered node's name, and only an
// administrator changes it.
func upPrefs(old nodestate.Prefs, nm *controlclient.NetMap, req localapi.UpRequest) (nodestate.Prefs, key.NodePublic, error) {
	p := old
	if req.ServerURL != "" && req.ServerURL != p.ServerURL {
		if err := controlclient.CheckServerURL(req.ServerURL); err != nil {
			return p, key.NodePublic{}, err
		}
		if controlclient.SameTailnet(req.ServerURL, p.ServerURL) {
			// Servers added to or dropped from one tailnet's list:
			// same pin, same registration.
			p.ServerURL = req.ServerURL
		} else {
			// A new server: new pin, new registration.
			p = nodestate.Prefs{ServerURL: req.ServerURL, Hostname: p.Hostname}
		}
	}
	if p.ServerURL == "" {
		return p, key.NodePublic{}, errors.New("no control server given: pass --server URL")
	}
	if req.Hostname != "" && req.Hostname != p.Hostname && p.Registered && nm != nil && nm.Self != nil && nm.Self.Name != req.Hostname {
		return p, key.NodePublic{}, fmt.Errorf("this node is registered as %s and keeps that name (--hostname %s changed nothing): "+
			"a registered node is renamed on the server, with `weft admin nodes rename %s %s`", nm.Self.Name, req.Hostname, nm.Self.Name, req.Hostname)
	}
	if req.Hostname != "" {
		p.Hostname = req.Hostname
	}
	if req.ServerCA != "" {
		if _, err := netutil.TrustTLS([]byte(req.ServerCA)); err != nil {
			return p, key.NodePublic{}, fmt.Errorf("--ca-file: %w", err)
		}
		p.ServerCA = req.ServerCA
	}
	// An exit node is checked once the first map is in (checkExitAfterUp).
	if err := applyEdit(&p, req.Prefs, nil); err != nil {
		return p, key.NodePublic{}, err
	}
	var oldNodeKey key.NodePublic
	if req.RotateKey && !p.NodeKey.IsZero() {
		oldNodeKey = p.NodeKey.Public()
		p.NodeKey = key.NodePrivate{}
	}
	if p.NodeKey.IsZero() {
		p.NodeKey = key.NewNode()
	}
	return p, oldNodeKey, nil
}

// tagNotices says what a registration changed that the user may not have
// meant: a tagged node registered again with an untagged key belongs to
// a user from then on (and its key expires), or its tags changed.
func tagNotices(before, after *wire.Node) []string {
	if after == nil || slices.Equal(before.Tags, after.Tags) {
		return nil
	}
	was := strings.Join(before.Tags, ",")
	if len(after.Tags) == 0 {
		return []string{fmt.Sprintf("this node was tagged %s; the key given has no tags, so the node lost them and now belongs to user %s. "+
			"To tag it again, register with a tagged key: `weft admin keys create --user %s --tags %s`, then `weft up --auth-key KEY`",
			was, after.User, after.User, was)}
	}
	return []string{fmt.Sprintf("this node's tags changed from %q to %q with the key given", was, strings.Join(after.Tags, ","))}
}

// restart replaces the map stream and the data plane with new ones for p,
// saves p, and waits a few seconds for the first map (or a refusal).
// d.opMu is held.
func (d *Daemon) restart(ctx context.Context, p nodestate.Prefs) (*controlclient.Client, error) {
	d.stop()
	d.mu.Lock()
	d.prefs = p
	err := d.st.SavePrefs(p)
	d.mu.Unlock()
	if err != nil {
		return nil, err
	}
	c, err := d.newClient(p, nil)
	if err != nil {
		return nil, err
	}
	d.run(c, false)
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for wctx.Err() == nil {
		if ok, err := c.Connected(); ok || controlclient.IsPermanent(err) {
			break
		}
		select {
		case <-wctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
	return c, nil
}

// upError turns a registration failure into what `weft up` prints.
func upError(err error) error {
	var em *wire.ErrorMessage
	if errors.As(err, &em) {
		return fmt.Errorf("the control server refused this node: %s", em.Message)
	}
	return err
}

// run starts the data plane, if configured, and c's map stream. d.opMu is
// held.
//
// With fromCache the data plane starts from the last saved map before the
// stream delivers a new one: after a restart while the control server is
// down, the peers' last endpoints and disco keys (this node's own disco
// key is kept across runs) are enough to reach them directly.
func (d *Daemon) run(c *controlclient.Client, fromCache bool) {
	var eng Engine
	var engErr error
	if d.cfg.NewEngine != nil {
		d.mu.Lock()
		p := d.prefs
		d.mu.Unlock()
		tc, _ := d.trust(p) // checked when the client was made
		eng, engErr = d.cfg.NewEngine(EngineParams{NodeKey: p.NodeKey, DiscoKey: d.disco, Client: c, Hostinfo: d.hostinfo(p), TLSConfig: tc})
		if engErr != nil {
			d.log.Error("data plane did not start", "err", engErr)
			eng = nil // a failed maker may return a typed nil
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	d.mu.Lock()
	d.client, d.cancel, d.done, d.lastErr = c, cancel, done, nil
	d.engine, d.engErr, d.expired = eng, engErr, nil
	var stale Engine
	if fromCache && d.nm != nil {
		stale = d.checkExpiryLocked()
	}
	d.mu.Unlock()
	d.closeEngine(stale)
	d.pushRoutePrefs()
	go func() {
		defer close(done)
		err := c.Run(ctx)
		if ctx.Err() != nil {
			return
		}
		// A permanent refusal: the node must log in again, and its
		// data plane stops (an expired or deleted node keeps no tunnel).
		d.mu.Lock()
		d.lastErr = err
		d.prefs.Registered = false
		if serr := d.st.SavePrefs(d.prefs); serr != nil {
			d.log.Error("saving prefs", "err", serr)
		}
		eng := d.engine
		d.engine = nil
		d.mu.Unlock()
		d.closeEngine(eng)
	}()
}

// stop ends the running client, if any, and waits for it. d.opMu is held.
func (d *Daemon) stop() {
	d.mu.Lock()
	cancel, done, eng := d.cancel, d.done, d.engine
	d.client, d.cancel, d.done, d.engine, d.engErr = nil, nil, nil, nil, nil
	if d.expTimer != nil {
		d.expTimer.Stop()
		d.expTimer = nil
	}
	d.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	if eng != nil {
		if err := eng.Close(); err != nil {
			d.log.Error("closing the data plane", "err", err)
		}
	}
}

func (d *Daemon) onMap(nm *controlclient.NetMap) {
	d.mu.Lock()
	d.nm = nm
	eng := d.checkExpiryLocked()
	// The last map is saved at most every couple of seconds: it only
	// serves to show something before the next connection.
	if !d.saving {
		d.saving = true
		time.AfterFunc(2*time.Second, func() {
			d.mu.Lock()
			d.saving = false
			d.mu.Unlock()
			d.saveNetMap()
		})
	}
	changed := d.followExitNodeLocked(nm)
	d.mu.Unlock()
	d.closeEngine(eng)
	if changed {
		d.pushRoutePrefs()
	}
}

// followExitNodeLocked keeps the chosen exit node in step with the map: a
// choice still waiting by name or address (made before the first map, or
// saved by an older weft) is stored by the node's ID once it resolves, and
// a renamed exit node's new name is recorded for display. It reports
// whether the preferences changed. d.mu is held.
func (d *Daemon) followExitNodeLocked(nm *controlclient.NetMap) bool {
	p := d.prefs
	var n *wire.Node
	switch {
	case p.ExitNodeID != 0:
		n = nm.Peers[p.ExitNodeID]
	case p.ExitNode != "":
		n, _ = controlclient.ResolveExitNode(nm, p.ExitNode)
	}
	if n == nil || (n.ID == p.ExitNodeID && n.Name == p.ExitNode) {
		return false
	}
	if p.ExitNodeID != 0 {
		d.log.Info("exit node renamed", "id", n.ID, "from", p.ExitNode, "to", n.Name)
	}
	d.prefs.ExitNodeID, d.prefs.ExitNode = n.ID, n.Name
	if err := d.st.SavePrefs(d.prefs); err != nil {
		d.log.Error("saving prefs", "err", err)
	}
	return true
}

func (d *Daemon) saveNetMap() {
	d.mu.Lock()
	nm := d.nm
	d.mu.Unlock()
	if nm == nil {
		return
	}
	if err := d.st.SaveNetMap(nm); err != nil {
		d.log.Error("saving last map", "err", err)
	}
}

// Down disconnects and remembers to stay down.
func (d *Daemon) Down(ctx context.Context) error {
	d.opMu.Lock()
	defer d.opMu.Unlock()
	d.stop()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.prefs.WantUp = false
	return d.st.SavePrefs(d.prefs)
}

// Logout disconnects and forgets the server, its pinned key, the node key
// and the last map. The machine key stays, so logging in again to the same
// server gives back the same node.
func (d *Daemon) Logout(ctx context.Context) error {
	d.opMu.Lock()
	defer d.opMu.Unlock()
	d.stop()
	d.mu.Lock()
	p := d.prefs
	d.mu.Unlock()
	// Tell the server first, while the node still has its keys; the
	// node forgets them whatever the answer, since that is what the user
	// asked for.
	var serverErr error
	if p.Registered && p.ServerURL != "" && !p.NodeKey.IsZero() {
		lctx, cancel := context.WithTimeout(ctx, logoutWait)
		c, err := d.newClient(p, func(key.MachinePublic) error { return nil })
		if err == nil {
			err = c.Logout(lctx)
		}
		cancel()
		if err != nil {
			serverErr = fmt.Errorf("logged out on this node, but the control server could not be told (%v); "+
				"an administrator can disable it with `weft admin nodes expire`", err)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.prefs, d.nm, d.lastErr = nodestate.Prefs{}, nil, nil
	if err := d.st.Forget(); err != nil {
		return err
	}
	return serverErr
}

// logoutWait bounds how long weft logout waits for the control server.
const logoutWait = 10 * time.Second

// Status reports the daemon's state and the peers of the current map.
func (d *Daemon) Status(ctx context.Context) (*localapi.Status, error) {
	d.mu.Lock()
	p, c, nm, lastErr, eng, engErr, expired := d.prefs, d.client, d.nm, d.lastErr, d.engine, d.engErr, d.expired
	d.mu.Unlock()
	// Peers whose keys expired are gone from the data plane; they are
	// not shown either, also while control is unreachable.
	nm, _ = nm.Live(time.Now())
	st := &localapi.Status{ServerURL: p.ServerURL, Peers: []*localapi.PeerStatus{}}
	connected := false
	if c != nil {
		var cerr error
		connected, cerr = c.Connected()
		if cerr != nil {
			lastErr = cerr
		}
		if connected {
			st.ControlServer = c.Server()
		}
	}
	st.Prefs = publicPrefs(p)
	st.ExitNode = exitInUse(p, nm)
	switch {
	case !p.Registered:
		st.BackendState = localapi.StateNeedsLogin
	case !p.WantUp:
		st.BackendState = localapi.StateStopped
	case connected:
		st.BackendState = localapi.StateRunning
	default:
		st.BackendState = localapi.StateStarting
	}
	if lastErr != nil && !connected {
		st.LastError = lastErr.Error()
	}
	if expired != nil {
		st.LastError = expired.Error()
	}
	if nm != nil {
		st.Self = nm.Self
		for _, n := range nm.SortedPeers() {
			st.Peers = append(st.Peers, &localapi.PeerStatus{Node: n, Path: localapi.Path{Kind: localapi.PathNone}, DNSName: nm.DNS.FQDN(n.Name)})
		}
	}
	if p.WantUp && p.Registered && c != nil && !connected && expired == nil {
		msg := "control server unreachable"
		if lastErr != nil {
			msg += ": " + lastErr.Error()
		}
		st.Health = append(st.Health, msg+"; existing connections keep working, new peers and changes wait")
	}
	if engErr != nil {
		st.Health = append(st.Health, "the data plane did not start: "+engErr.Error())
	}
	if h := exitHealth(p, nm); h != "" && p.WantUp {
		st.Health = append(st.Health, h)
	}
	if eng != nil {
		eng.FillStatus(st)
	}
	return st, nil
}

// Ping sends one disco ping to a peer through the data plane.
func (d *Daemon) Ping(ctx context.Context, req localapi.PingRequest) (*localapi.PingResult, error) {
	d.mu.Lock()
	eng := d.engine
	d.mu.Unlock()
	if eng == nil {
		return nil, localapi.Permanent(errors.New("the node is down: run `weft up` first"))
	}
	return eng.Ping(ctx, req)
}
