// Package controlclient is the node side of the control plane: it fetches
// and pins the server's key, registers the node, holds the map stream with
// reconnects, and keeps the node's current NetMap. The node daemon
// (internal/node) drives it.
package controlclient

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"weft/internal/key"
	"weft/internal/netutil"
	"weft/internal/noiseconn"
	"weft/internal/wire"
)

// Errors the client returns; each message says what to do.
var (
	// ErrServerKeyChanged: the server presents a key other than the one
	// pinned on first contact.
	ErrServerKeyChanged = errors.New("server key changed")
	// ErrUnreachable: the server could not be reached.
	ErrUnreachable = errors.New("server unreachable")
)

// Defaults for Options' zero fields.
const (
	DefaultKeepAlive  = 30 * time.Second
	DefaultMinBackoff = 500 * time.Millisecond
	DefaultMaxBackoff = 60 * time.Second
)

// Options configures a Client.
type Options struct {
	// ServerURL is the control server's base URL, or several servers of
	// one tailnet separated by commas (see ServerURLs): the client uses
	// one at a time and moves to the next whenever a connection fails.
	// Every one must present the same (pinned) server key. Required.
	ServerURL string
	// MachineKey is the node's long-term key. Required.
	MachineKey key.MachinePrivate
	// NodeKey is the node's current node key. Required.
	NodeKey key.NodePrivate
	// DiscoKey is this run's disco key; zero sends none.
	DiscoKey key.DiscoPublic
	// Hostinfo describes the node; nil sends none.
	Hostinfo *wire.Hostinfo
	// AdvertisedRoutes are the routes the node offers (see
	// SetAdvertisedRoutes); nil offers none.
	AdvertisedRoutes []netip.Prefix
	// ServerKey is the pinned server key; zero means not yet pinned, in
	// which case the first key fetched is pinned through OnPin.
	ServerKey key.MachinePublic
	// OnPin persists a newly pinned server key; nil keeps it in memory.
	// An error from it aborts the connection.
	OnPin func(key.MachinePublic) error
	// OnMap is called from the Run goroutine with a copy of the NetMap
	// after every map message; nil means no callback. It must not block
	// for long.
	OnMap func(*NetMap)
	// Logger receives logs; nil discards them.
	Logger *slog.Logger
	// KeepAlive is how often the client sends a keepalive; the stream is
	// deemed dead after four of these without a message from the server.
	// Zero means DefaultKeepAlive.
	KeepAlive time.Duration
	// MinBackoff and MaxBackoff bound the reconnect delay; zero means
	// the defaults.
	MinBackoff, MaxBackoff time.Duration
	// HTTPClient fetches /key; nil means a client with a 10 s timeout.
	HTTPClient *http.Client
	// DialContext dials the server (an address of its name); nil means
	// a net.Dialer.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// Lookup resolves the server's name; nil means the system's
	// resolver. Each address races the whole setup of a connection
	// (connect, TLS, upgrade, handshake): netutil.Race.
	Lookup netutil.LookupFunc
	// TLSConfig is used for https server URLs (the /key fetch when
	// HTTPClient is nil, and the control channel); nil trusts the
	// system's roots (see netutil.TrustTLS for a private CA).
	// SetTLSConfig changes it on a running Client.
	TLSConfig *tls.Config
}

// Client talks to the control server for one node.
type Client struct {
	opts Options
	log  *slog.Logger
	urls []string // the servers, from opts.ServerURL

	mu         sync.Mutex // guards the fields below
	cur        int        // index in urls of the server in use
	serverKey  key.MachinePublic
	endpoints  []netip.AddrPort
	homeRegion int
	hostinfo   *wire.Hostinfo
	routes     []netip.Prefix  // advertised routes
	conn       *noiseconn.Conn // the live stream's channel, or nil
	nm         *NetMap
	lastErr    error
	connected  bool
	// cancelStream ends the stream Run holds or is dialling; nil
	// outside Run.
	cancelStream context.CancelFunc
	// tlsConfig and hc are the trust and the /key client in use, from
	// opts until SetTLSConfig; ownHTTP says hc was made here (from
	// TLSConfig), not given in opts.
	tlsConfig *tls.Config
	hc        *http.Client
	ownHTTP   bool
	// keyFetchTimeout is the /key client's bound: keyFetchTimeout,
	// shorter in tests.
	keyFetchTimeout time.Duration

	// redial, of capacity one, carries Redial's request to Run: connect
	// again now, from MinBackoff.
	redial chan struct{}
}

// New returns a Client; it does not connect until Register or Run.
func New(opts Options) (*Client, error) {
	if opts.ServerURL == "" {
		return nil, errors.New("controlclient: no server URL")
	}
	if opts.MachineKey.IsZero() || opts.NodeKey.IsZero() {
		return nil, errors.New("controlclient: machine and node keys are required")
	}
	urls := ServerURLs(opts.ServerURL)
	if len(urls) == 0 {
		return nil, errors.New("controlclient: no server URL")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	opts.KeepAlive = cmp.Or(opts.KeepAlive, DefaultKeepAlive)
	opts.MinBackoff = cmp.Or(opts.MinBackoff, DefaultMinBackoff)
	opts.MaxBackoff = cmp.Or(opts.MaxBackoff, DefaultMaxBackoff)
	c := &Client{opts: opts, log: opts.Logger, urls: urls, serverKey: opts.ServerKey, hostinfo: opts.Hostinfo,
		routes: opts.AdvertisedRoutes, redial: make(chan struct{}, 1), tlsConfig: opts.TLSConfig, hc: opts.HTTPClient,
		keyFetchTimeout: keyFetchTimeout}
	if c.hc == nil {
		c.hc, c.ownHTTP = c.newHTTPClient(opts.TLSConfig), true
	}
	return c, nil
}

// keyFetchTimeout bounds a /key fetch, and each connection the /key
// client dials for it.
const keyFetchTimeout = 10 * time.Second

// newHTTPClient is the /key client for trust tc. Its https connections
// race connect and TLS over every address of the server's name, as the
// control channel does (noiseconn.Dialer). Each dial has its own bound:
// net/http goes on dialing after the request that asked for the
// connection has given up, and a TLS handshake over a connection whose
// packets vanish would otherwise wait for ever.
func (c *Client) newHTTPClient(tc *tls.Config) *http.Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, c.keyFetchTimeout)
			defer cancel()
			addrs, err := netutil.RaceAddrs(ctx, c.opts.Lookup, addr)
			if err != nil {
				return nil, err
			}
			return netutil.DialRace(ctx, c.dialContext(), network, addrs, netutil.HeadStart)
		},
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, c.keyFetchTimeout)
			defer cancel()
			return netutil.DialTLSRace(ctx, c.dialContext(), c.opts.Lookup, addr, tc)
		},
	}
	return &http.Client{Timeout: c.keyFetchTimeout, Transport: tr}
}

// dialContext is Options.DialContext, or a net.Dialer's.
func (c *Client) dialContext() netutil.DialFunc {
	if c.opts.DialContext != nil {
		return c.opts.DialContext
	}
	return (&net.Dialer{}).DialContext
}

// SetTLSConfig makes the Client trust tc for the server's TLS from now on
// (`weft up --ca-file` on a running node) and redials: the live map
// stream, made with the old trust, is dropped and Run connects again at
// once with tc. A Client given Options.HTTPClient keeps that for /key.
func (c *Client) SetTLSConfig(tc *tls.Config) {
	c.mu.Lock()
	c.tlsConfig = tc
	var old *http.Client
	if c.ownHTTP {
		old, c.hc = c.hc, c.newHTTPClient(tc)
	}
	c.mu.Unlock()
	if old != nil {
		old.CloseIdleConnections()
	}
	c.Redial()
}

// trust returns the /key client and the TLS configuration in use.
func (c *Client) trust() (*http.Client, *tls.Config) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hc, c.tlsConfig
}

// ServerURLs splits a list of control server URLs separated by commas
// (one URL is a list of one), trimming spaces and trailing slashes and
// dropping empty entries and repeats.
func ServerURLs(s string) []string {
	var out []string
	for _, u := range strings.Split(s, ",") {
		u = strings.TrimSuffix(strings.TrimSpace(u), "/")
		if u != "" && !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	return out
}

// SameTailnet reports whether two server lists name a server in common:
// then they are one tailnet's servers, and a node moving from one list to
// the other keeps its registration and pinned key.
func SameTailnet(a, b string) bool {
	bs := ServerURLs(b)
	for _, u := range ServerURLs(a) {
		if slices.Contains(bs, u) {
			return true
		}
	}
	return false
}

// Server returns the URL of the server in use (of the list in
// Options.ServerURL, the one the last connection went to).
func (c *Client) Server() string { return c.serverURL() }

// serverURL is the server in use.
func (c *Client) serverURL() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.urls[c.cur]
}

// nextServer moves to the next server of the list, after a failure.
func (c *Client) nextServer() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.urls) > 1 {
		c.cur = (c.cur + 1) % len(c.urls)
		c.log.Info("trying the next control server", "server", c.urls[c.cur])
	}
}

// eachServer runs f with servers of the list, starting with the one in
// use, until f returns nil or an error other than ErrUnreachable (a
// server's refusal is final: the others share its database). The server
// that answered stays in use.
func (c *Client) eachServer(f func() error) error {
	var err error
	for range c.urls {
		if err = f(); err == nil || !errors.Is(err, ErrUnreachable) {
			return err
		}
		c.nextServer()
	}
	return err
}

// CheckTrust fetches the server's key with the Client's trust from the
// servers of the list in turn until one answers, and checks it against
// the pin. A node runs it before it takes new trust (`weft up --ca-file`)
// so that certificates that do not verify the server are refused before
// anything changes: the error then wraps the TLS verification error.
func (c *Client) CheckTrust(ctx context.Context) error {
	return c.eachServer(func() error {
		_, err := c.checkServer(ctx)
		return err
	})
}

// CheckServerURL checks a control server URL, or a comma-separated list
// of them, as a user typed it, so that a missing scheme or host is said
// plainly before anything is dialed.
func CheckServerURL(s string) error {
	n := 0
	for _, u := range strings.Split(s, ",") {
		if u = strings.TrimSpace(u); u == "" {
			continue
		}
		n++
		if err := checkOneServerURL(u); err != nil {
			return err
		}
	}
	if n == 0 {
		return fmt.Errorf("server URL %q names no server", s)
	}
	return nil
}

func checkOneServerURL(s string) error {
	if !strings.Contains(s, "://") {
		return fmt.Errorf("server URL %q has no scheme: add http:// or https:// (for example http://%s)", s, s)
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("server URL %q: %w", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("server URL %q: the scheme must be http:// or https://, not %s://", s, u.Scheme)
	}
	if u.Hostname() == "" {
		return fmt.Errorf("server URL %q has no host: write it like http://ctrl.example:8080", s)
	}
	return nil
}

// unreachableError says why the server at serverURL could not be reached,
// naming a host name that did not resolve as such (a DNS timeout would
// otherwise read as a bare context deadline).
func unreachableError(serverURL string, err error) error {
	if h := netutil.UntrustedCertHint(err, CAFileHint); h != err {
		return fmt.Errorf("%w: %w", ErrUnreachable, h)
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		why := de.Err
		if de.IsNotFound {
			why = "no such host"
		} else if de.IsTimeout {
			why = "the DNS lookup timed out"
		}
		return fmt.Errorf("%w: the server name %q did not resolve (%s); check the spelling of %s and this machine's DNS", ErrUnreachable, de.Name, why, serverURL)
	}
	return fmt.Errorf("%w: %v; check the URL and that the server runs", ErrUnreachable, err)
}

// CAFileHint says how a node comes to trust a server whose certificate
// is from a private CA.
const CAFileHint = "if the server's certificate is from a private CA, run `weft up --ca-file CA.pem` (or start the daemon with --ca-file or $WEFT_CA_FILE)"

// KeyResponse is the body of the server's GET /key.
type KeyResponse struct {
	Version   int               `json:"version"`
	PublicKey key.MachinePublic `json:"public_key"`
}

// FetchServerKey asks the server at serverURL for its public key.
func FetchServerKey(ctx context.Context, hc *http.Client, serverURL string) (KeyResponse, error) {
	var kr KeyResponse
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(serverURL, "/")+"/key", nil)
	if err != nil {
		return kr, fmt.Errorf("controlclient: server URL %q: %w", serverURL, err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return kr, unreachableError(serverURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return kr, fmt.Errorf("%w: GET /key answered %s; is %s a weft server?", ErrUnreachable, resp.Status, serverURL)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&kr); err != nil || kr.PublicKey.IsZero() {
		return kr, fmt.Errorf("%w: GET /key gave no key; is %s a weft server?", ErrUnreachable, serverURL)
	}
	return kr, nil
}

// checkServer fetches the server's key and checks it against the pin,
// pinning it on first contact.
func (c *Client) checkServer(ctx context.Context) (key.MachinePublic, error) {
	serverURL := c.serverURL()
	hc, _ := c.trust()
	kr, err := FetchServerKey(ctx, hc, serverURL)
	if err != nil {
		return key.MachinePublic{}, err
	}
	if kr.Version != wire.ProtocolVersion {
		return key.MachinePublic{}, fmt.Errorf("controlclient: server speaks protocol version %d, this node %d; upgrade weft on the older side", kr.Version, wire.ProtocolVersion)
	}
	c.mu.Lock()
	pinned := c.serverKey
	c.mu.Unlock()
	if pinned.IsZero() {
		if c.opts.OnPin != nil {
			if err := c.opts.OnPin(kr.PublicKey); err != nil {
				return key.MachinePublic{}, fmt.Errorf("controlclient: saving server key: %w", err)
			}
		}
		c.mu.Lock()
		c.serverKey = kr.PublicKey
		c.mu.Unlock()
		c.log.Info("pinned server key", "key", kr.PublicKey.String())
		return kr.PublicKey, nil
	}
	if pinned != kr.PublicKey {
		return key.MachinePublic{}, fmt.Errorf("%w: %s presents %s but this node pinned %s on first contact; if the server was reinstalled on purpose, run `weft logout` (which forgets the pin) and `weft up` again "+
			"(several servers of one tailnet must share one key: docs/ha.md)", ErrServerKeyChanged, serverURL, kr.PublicKey, pinned)
	}
	return pinned, nil
}

func (c *Client) dial(ctx context.Context) (*noiseconn.Conn, error) {
	sk, err := c.checkServer(ctx)
	if err != nil {
		return nil, err
	}
	_, tc := c.trust()
	d := &noiseconn.Dialer{MachineKey: c.opts.MachineKey, ServerKey: sk, DialContext: c.opts.DialContext, Lookup: c.opts.Lookup, TLSConfig: tc}
	serverURL := c.serverURL()
	conn, err := d.Dial(ctx, serverURL)
	if err != nil {
		if h := netutil.UntrustedCertHint(err, CAFileHint); h != err {
			return nil, fmt.Errorf("%w: %w", ErrUnreachable, h)
		}
		var ne net.Error
		if errors.As(err, &ne) || errors.Is(err, net.ErrClosed) {
			return nil, unreachableError(serverURL, err)
		}
		return nil, err
	}
	return conn, nil
}

// Register registers the node with authKey (empty for a known machine
// re-registering or rotating its node key) and returns its record. A
// refusal by the server is a *wire.ErrorMessage.
func (c *Client) Register(ctx context.Context, authKey string, oldNodeKey key.NodePublic) (*wire.Node, error) {
	var n *wire.Node
	err := c.eachServer(func() (err error) {
		n, err = c.registerOnce(ctx, authKey, oldNodeKey)
		return err
	})
	return n, err
}

// registerOnce is Register at the server in use.
func (c *Client) registerOnce(ctx context.Context, authKey string, oldNodeKey key.NodePublic) (*wire.Node, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	c.mu.Lock()
	req := &wire.RegisterRequest{
		AuthKey:    authKey,
		NodeKey:    c.opts.NodeKey.Public(),
		OldNodeKey: oldNodeKey,
		DiscoKey:   c.opts.DiscoKey,
		Hostinfo:   c.hostinfo,
	}
	c.mu.Unlock()
	if err := wire.WriteMessage(conn, wire.MsgRegisterRequest, req); err != nil {
		return nil, fmt.Errorf("%w: sending registration: %v", ErrUnreachable, err)
	}
	typ, body, err := wire.ReadMessage(conn, wire.MaxServerMessage)
	if err != nil {
		return nil, fmt.Errorf("%w: reading registration answer: %v", ErrUnreachable, err)
	}
	if typ != wire.MsgRegisterResponse && typ != wire.MsgError {
		return nil, fmt.Errorf("controlclient: server answered registration with %v", typ)
	}
	if typ == wire.MsgError {
		em := &wire.ErrorMessage{}
		if err := wire.Decode(body, em); err != nil {
			return nil, err
		}
		return nil, em
	}
	var resp wire.RegisterResponse
	if err := wire.Decode(body, &resp); err != nil {
		return nil, err
	}
	if resp.Error != nil {
		return nil, resp.Error
	}
	if resp.Node == nil {
		return nil, errors.New("controlclient: server's registration answer holds no node")
	}
	return resp.Node, nil
}

// Logout asks the server to disable this node's key (an ephemeral node
// is deleted). A refusal by the server is a *wire.ErrorMessage; an older
// server that does not know the message closes the channel, which comes
// back as ErrUnreachable.
func (c *Client) Logout(ctx context.Context) error {
	return c.eachServer(func() error { return c.logoutOnce(ctx) })
}

// logoutOnce is Logout at the server in use.
func (c *Client) logoutOnce(ctx context.Context) error {
	conn, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	req := &wire.LogoutRequest{NodeKey: c.opts.NodeKey.Public()}
	if err := wire.WriteMessage(conn, wire.MsgLogoutRequest, req); err != nil {
		return fmt.Errorf("%w: sending logout: %v", ErrUnreachable, err)
	}
	typ, body, err := wire.ReadMessage(conn, wire.MaxServerMessage)
	if err != nil {
		return fmt.Errorf("%w: reading logout answer: %v", ErrUnreachable, err)
	}
	if typ == wire.MsgError {
		em := &wire.ErrorMessage{}
		if err := wire.Decode(body, em); err != nil {
			return err
		}
		return em
	}
	if typ != wire.MsgLogoutResponse {
		return fmt.Errorf("controlclient: server answered logout with %v", typ)
	}
	var resp wire.LogoutResponse
	if err := wire.Decode(body, &resp); err != nil {
		return err
	}
	if resp.Error != nil {
		return resp.Error
	}
	return nil
}

// SetEndpoints records the node's candidate endpoints and home relay
// region and sends them to the server if a stream is up (otherwise they go
// with the next map request).
func (c *Client) SetEndpoints(eps []netip.AddrPort, homeRegion int) {
	c.mu.Lock()
	c.endpoints = append([]netip.AddrPort(nil), eps...)
	c.homeRegion = homeRegion
	conn := c.conn
	c.mu.Unlock()
	if conn != nil {
		u := &wire.Update{Endpoints: &eps, HomeRegion: homeRegion}
		if err := wire.WriteMessage(conn, wire.MsgUpdate, u); err != nil {
			c.log.Debug("sending update", "err", err)
		}
	}
}

// SetHostinfo records new host facts and sends them if a stream is up.
func (c *Client) SetHostinfo(hi *wire.Hostinfo) {
	c.mu.Lock()
	c.hostinfo = hi
	conn := c.conn
	c.mu.Unlock()
	if conn != nil {
		wire.WriteMessage(conn, wire.MsgUpdate, &wire.Update{Hostinfo: hi, HomeRegion: -1})
	}
}

// ErrNoStream is returned by SendHealthSamples while no map stream is up.
var ErrNoStream = errors.New("controlclient: not connected to the control server")

// SendHealthSamples reports health samples on the map stream, in
// messages of at most wire.MaxHealthSamples samples and healthBatchBytes
// (a sample too large for a message alone is dropped). It fails with
// ErrNoStream while no stream is up, so that the caller keeps them for
// later.
func (c *Client) SendHealthSamples(ss []wire.HealthSample) error {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn == nil {
		return ErrNoStream
	}
	var batch []wire.HealthSample
	size := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := wire.WriteMessage(conn, wire.MsgUpdate, &wire.Update{HomeRegion: -1, HealthSamples: batch})
		batch, size = nil, 0
		if err != nil {
			return fmt.Errorf("controlclient: sending health samples: %w", err)
		}
		return nil
	}
	for _, smp := range ss {
		b, err := json.Marshal(smp)
		if err != nil || len(b) > healthBatchBytes {
			c.log.Warn("health sample too large to report; dropped", "bytes", len(b))
			continue
		}
		if size+len(b) > healthBatchBytes || len(batch) == wire.MaxHealthSamples {
			if err := flush(); err != nil {
				return err
			}
		}
		batch, size = append(batch, smp), size+len(b)+1
	}
	return flush()
}

// healthBatchBytes bounds the samples in one update, well inside
// wire.MaxNodeMessage.
const healthBatchBytes = 48 << 10

// NetMap returns a copy of the current map, or nil before the first one.
func (c *Client) NetMap() *NetMap {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nm.Clone()
}

// Connected reports whether a map stream is up, and the last error.
func (c *Client) Connected() (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.connected, c.lastErr
}

// IsPermanent reports whether err means retrying cannot help until the
// user acts (a new pre-auth key, a forgotten pin).
func IsPermanent(err error) bool {
	var em *wire.ErrorMessage
	if errors.As(err, &em) {
		switch em.Code {
		case wire.CodeNotRegistered, wire.CodeNodeKeyExpired, wire.CodeAuthRequired:
			return true
		}
	}
	return false
}

// Run holds the map stream until ctx ends, reconnecting with exponential
// backoff and jitter; each reconnect starts again with a full map. It
// returns ctx's error, or a permanent error (see IsPermanent).
func (c *Client) Run(ctx context.Context) error {
	backoff := c.opts.MinBackoff
	for {
		start := time.Now()
		sctx, cancel := context.WithCancel(ctx)
		c.mu.Lock()
		c.cancelStream = cancel
		c.mu.Unlock()
		err := c.stream(sctx)
		cancel()
		c.mu.Lock()
		c.connected, c.conn, c.lastErr, c.cancelStream = false, nil, err, nil
		c.mu.Unlock()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if IsPermanent(err) {
			c.log.Warn("control server refused this node", "err", err)
			return err
		}
		if time.Since(start) > 2*c.opts.MaxBackoff {
			backoff = c.opts.MinBackoff // the stream was up a good while
		}
		// With several servers, the next one is tried: the one that
		// failed may be down for good (docs/ha.md).
		c.nextServer()
		if !c.backOff(ctx, &backoff, err) {
			return ctx.Err()
		}
	}
}

// backOff waits before Run's next attempt: a jittered *backoff, which
// then doubles up to MaxBackoff. A Redial, before or during the wait,
// ends it at once and puts *backoff back to MinBackoff. It returns false
// if ctx ended.
func (c *Client) backOff(ctx context.Context, backoff *time.Duration, err error) bool {
	select {
	case <-c.redial:
		c.log.Info("map stream ended for a redial; reconnecting now", "err", err)
		*backoff = c.opts.MinBackoff
		return true
	default:
	}
	// Full jitter: a server restart must not bring every node back in
	// the same instant.
	wait := time.Duration(rand.Int64N(int64(*backoff))) + c.opts.MinBackoff/2
	c.log.Info("map stream ended; reconnecting", "err", err, "in", wait.Round(time.Millisecond))
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		*backoff = min(2**backoff, c.opts.MaxBackoff)
	case <-c.redial:
		*backoff = c.opts.MinBackoff
	}
	return true
}

// Redial drops the live map stream, or abandons the dial in progress, and
// makes Run connect again at once, its backoff back at MinBackoff (a wait
// between attempts is cut short). The node calls it when one of its local
// addresses goes away, which leaves the stream's TCP connection dead but
// unnoticed until the next keepalive deadline. Address changes can come
// seconds apart, and each must reconnect as fast as the first: the
// backoff is for a server that fails, not for a network that changed.
func (c *Client) Redial() {
	select {
	case c.redial <- struct{}{}:
	default: // already asked
	}
	c.mu.Lock()
	conn, cancel := c.conn, c.cancelStream
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if conn != nil {
		conn.Close()
	}
}

// stream runs one map stream until it fails.
func (c *Client) stream(ctx context.Context) error {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	conn, err := c.dial(dctx)
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if err := c.startStream(conn); err != nil {
		return fmt.Errorf("%w: %v", ErrUnreachable, err)
	}
	done := make(chan struct{})
	defer close(done)
	go c.keepAlive(conn, done)

	nm := &NetMap{}
	for {
		conn.SetReadDeadline(time.Now().Add(4 * c.opts.KeepAlive))
		typ, body, err := wire.ReadMessage(conn, wire.MaxServerMessage)
		if err != nil {
			return fmt.Errorf("%w: map stream: %v", ErrUnreachable, err)
		}
		switch typ {
		case wire.MsgKeepAlive:
		case wire.MsgError:
			em := &wire.ErrorMessage{}
			if err := wire.Decode(body, em); err != nil {
				return err
			}
			return em
		case wire.MsgMapResponse:
			if err := c.applyMap(nm, body); err != nil {
				return err
			}
		default:
			return fmt.Errorf("controlclient: unexpected %v in map stream", typ)
		}
	}
}

// startStream sends the map request on conn and makes conn the live
// stream's channel. The request is written under c.mu, and c.conn set
// with it, so that an Update from SetEndpoints can neither be lost nor
// overtake it.
func (c *Client) startStream(conn *noiseconn.Conn) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	req := &wire.MapRequest{
		NodeKey:    c.opts.NodeKey.Public(),
		DiscoKey:   c.opts.DiscoKey,
		Endpoints:  c.endpoints,
		HomeRegion: c.homeRegion,
		Hostinfo:   c.hostinfo,

		AdvertisedRoutes: c.routes,
	}
	if err := wire.WriteMessage(conn, wire.MsgMapRequest, req); err != nil {
		return err
	}
	c.conn = conn
	return nil
}

// keepAlive sends a keepalive on conn every interval until done is closed
// or a write fails.
func (c *Client) keepAlive(conn *noiseconn.Conn, done <-chan struct{}) {
	t := time.NewTicker(c.opts.KeepAlive)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			if wire.WriteMessage(conn, wire.MsgKeepAlive, nil) != nil {
				return
			}
		}
	}
}

// applyMap folds one map message into nm, publishes a copy as the
// client's map and hands it to OnMap.
func (c *Client) applyMap(nm *NetMap, body []byte) error {
	var r wire.MapResponse
	if err := wire.Decode(body, &r); err != nil {
		return err
	}
	if nm.Self == nil && !r.Full {
		return errors.New("controlclient: map stream began with a delta")
	}
	nm.Apply(&r)
	if r.Full && !r.ServerTime.IsZero() {
		nm.ClockOffset = r.ServerTime.Sub(time.Now())
	}
	snap := nm.Clone()
	c.mu.Lock()
	c.nm, c.connected, c.lastErr = snap, true, nil
	c.mu.Unlock()
	if c.opts.OnMap != nil {
		c.opts.OnMap(snap)
	}
	return nil
}

// SetAdvertisedRoutes changes the routes the node offers and sends them
// if a stream is up (otherwise they go with the next map request).
func (c *Client) SetAdvertisedRoutes(routes []netip.Prefix) {
	routes = slices.Clone(routes)
	if routes == nil {
		routes = []netip.Prefix{}
	}
	c.mu.Lock()
	c.routes = routes
	conn := c.conn
	c.mu.Unlock()
	if conn != nil {
		if err := wire.WriteMessage(conn, wire.MsgUpdate, &wire.Update{HomeRegion: -1, AdvertisedRoutes: &routes}); err != nil {
			c.log.Debug("sending advertised routes", "err", err)
		}
	}
}
