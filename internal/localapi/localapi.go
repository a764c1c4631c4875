// Package localapi is the node daemon's API for the weft CLI: HTTP with
// JSON bodies over a unix socket that only the owner may open. Backend is
// what the daemon implements; Handler serves it and Client calls it.
package localapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"weft/internal/netcheck"
	"weft/internal/ownersock"
	"weft/internal/wire"
)

// UpRequest asks the daemon to join a tailnet and connect.
type UpRequest struct {
	// ServerURL is the control server; empty means the one from the
	// last up.
	ServerURL string `json:"server_url,omitempty"`
	// AuthKey is a pre-auth key; empty for a node already registered.
	AuthKey string `json:"auth_key,omitempty"`
	// Hostname is the name to register with; empty means the OS's.
	Hostname string `json:"hostname,omitempty"`
	// Prefs changes routing preferences as part of up; nil changes none.
	Prefs *PrefsEdit `json:"prefs,omitempty"`
	// RotateKey replaces the node's WireGuard key with a new one; the
	// node keeps its identity, name and addresses. It needs a node that
	// is registered (and whose key has not expired) or an AuthKey.
	RotateKey bool `json:"rotate_key,omitempty"`
	// ServerCA is PEM certificates the node trusts for the server's TLS
	// (and its relays'), besides the system's roots: a private CA's, for
	// a server whose certificate it signed (`weft up --ca-file`). The
	// daemon keeps it with the server URL; empty keeps what it had.
	ServerCA string `json:"server_ca,omitempty"`
}

// Backend states, as Status.BackendState reports them.
const (
	StateNeedsLogin = "NeedsLogin" // never registered, or logged out
	StateStopped    = "Stopped"    // registered, but down
	StateStarting   = "Starting"   // up, no map stream yet
	StateRunning    = "Running"    // up, map stream live
)

// Status is what `weft status` shows. docs/status.md documents its JSON
// form.
type Status struct {
	BackendState string `json:"backend_state"`
	ServerURL    string `json:"server_url,omitempty"`
	// ControlServer is the server of ServerURL's list the node uses now
	// (several servers of one tailnet: docs/ha.md); empty when down.
	ControlServer string `json:"control_server,omitempty"`
	// Prefs are the routing preferences in force (weft up, weft set).
	Prefs *Prefs `json:"prefs,omitempty"`
	// ExitNode is the name of the exit node this node's internet
	// traffic goes through now: chosen, in the map and online. Empty
	// when none (none chosen, or the chosen one is away and traffic
	// waits for it).
	ExitNode string `json:"exit_node"`
	// LastError is why the daemon is not connected, in plain words.
	LastError string        `json:"last_error,omitempty"`
	Self      *wire.Node    `json:"self,omitempty"`
	Peers     []*PeerStatus `json:"peers"`
	// Health lists problems in plain words (no relay reachable, UDP
	// blocked, control unreachable, key expiring soon); empty when all
	// is well.
	Health []string `json:"health,omitempty"`
	// Buffers is the WireGuard device's in-flight bound and what it
	// did; nil while the data plane is down.
	Buffers *BufferStats `json:"buffers,omitempty"`
	// Drops counts packets the data plane refused to carry; nil while
	// the data plane is down.
	Drops *Drops `json:"drops,omitempty"`
	// Notices, only in the answer to `up`, say what that `up` did that
	// the user may not have meant (a tagged node registered with an
	// untagged key lost its tags), with what to run instead.
	Notices []string `json:"notices,omitempty"`
	// DNS is the node's MagicDNS state; nil while the data plane is
	// down.
	DNS *DNSStatus `json:"dns,omitempty"`
	// Netstack is the userspace network stack's counters; nil in kernel
	// mode and while the data plane is down.
	Netstack *NetstackStats `json:"netstack,omitempty"`
}

// NetstackStats are a userspace node's stack counters since the node
// went up (docs/userspace.md).
type NetstackStats struct {
	// LinkHanded are packets the stack sent toward the tunnel, LinkRead
	// those WireGuard read of them.
	LinkHanded uint64 `json:"link_handed"`
	LinkRead   uint64 `json:"link_read"`
	// LinkDrops are packets the stack sent that never reached
	// WireGuard; LinkWaits the sends that found its queue full.
	LinkDrops uint64 `json:"link_drops"`
	LinkWaits uint64 `json:"link_waits"`
	// TCP counters of the stack's own connections: segments sent
	// again, retransmit timeouts, fast retransmits.
	TCPRetransmits     uint64 `json:"tcp_retransmits"`
	TCPTimeouts        uint64 `json:"tcp_timeouts"`
	TCPFastRetransmits uint64 `json:"tcp_fast_retransmits"`
}

// DNSStatus is what `weft dns status` shows of the node's DNS.
type DNSStatus struct {
	// MagicDNS: the tailnet has it on and the node answers its names
	// (the resolver, or in userspace mode the proxies; Listen is then
	// empty).
	MagicDNS bool `json:"magic_dns"`
	// Mode is how the OS was pointed at the resolver: "resolved",
	// "resolv.conf", or "off" (accept-dns false, MagicDNS off, or no
	// OS integration).
	Mode   string `json:"mode"`
	Domain string `json:"domain,omitempty"`
	// Listen are the resolver's addresses (port 53, UDP and TCP).
	Listen []netip.Addr `json:"listen,omitempty"`
	// Upstreams answer what is not the tailnet's: the tailnet's
	// nameservers, or the OS's own from before weft.
	Upstreams []netip.AddrPort            `json:"upstreams,omitempty"`
	Routes    map[string][]netip.AddrPort `json:"routes,omitempty"`
	Search    []string                    `json:"search_domains,omitempty"`
	// Problem is why DNS is not as it should be; empty when all is well.
	Problem string `json:"problem,omitempty"`
	// Overwritten says when something else last rewrote the OS's DNS
	// configuration (weft re-applied it); zero if never.
	Overwritten time.Time `json:"overwritten,omitzero"`
	Stats       DNSStats  `json:"stats"`
}

// DNSStats count the resolver's work since the node went up.
type DNSStats struct {
	Queries   uint64 `json:"queries"`
	Local     uint64 `json:"local"`
	Forwarded uint64 `json:"forwarded"`
	Cached    uint64 `json:"cached"`
	Failed    uint64 `json:"failed"`
	Malformed uint64 `json:"malformed"`
}

// BufferStats are the WireGuard device's in-flight bound (docs/metrics.md):
// how many packets each direction may hold, holds now, and how often the
// bound made a reader wait; Out is TUN → peers, In peers → TUN. Counters
// run since the node went up.
type BufferStats struct {
	Max         int `json:"max"`
	InFlightOut int `json:"in_flight_out"`
	InFlightIn  int `json:"in_flight_in"`
	// Waits are reads that waited for room (back-pressure: the TUN's
	// or the socket's queue then drops what does not fit).
	WaitsOut uint64 `json:"waits_out"`
	WaitsIn  uint64 `json:"waits_in"`
	// Forgotten are packets the device dropped inside, taken out of
	// the count after a stall.
	ForgottenOut uint64 `json:"forgotten_out"`
	ForgottenIn  uint64 `json:"forgotten_in"`
	// RelayedDrops are packets from the relay dropped because the
	// device did not take them fast enough.
	RelayedDrops uint64 `json:"relayed_drops"`
	// RelaySendDrops are packets for the relay dropped because its
	// send queue was full.
	RelaySendDrops uint64 `json:"relay_send_drops"`
	// IdleReleases counts the times the data plane gave the memory its
	// readers touched back to the system after a burst (package
	// idlemem).
	IdleReleases uint64 `json:"idle_releases"`
}

// Drops counts, since the node went up, packets this node's data plane
// refused because they could let someone into or through the tailnet.
type Drops struct {
	// IntoTunnel are packets from this node's other networks (its LAN)
	// that tried to enter the tunnel without belonging to a connection
	// a tailnet node opened. Only an exit node or subnet router forwards
	// into the tunnel, so elsewhere it stays 0.
	IntoTunnel uint64 `json:"into_tunnel"`
	// Filter are packets from the tunnel that the tailnet's policy did
	// not let in, by reason: no_rule (no rule accepts it), fragment (a
	// fragment without its transport header), ipv6_ext (an IPv6
	// extension header weft does not walk), malformed, icmp_error (about
	// no flow of this node). See docs/acl.md.
	Filter map[string]uint64 `json:"filter,omitempty"`
	// FromTunnel are packets from peers whose destination was neither
	// this node nor a route it offers and control approved, or an
	// address never forwarded (loopback, link-local with the cloud
	// metadata address, multicast, broadcast, another tailnet address).
	FromTunnel uint64 `json:"from_tunnel"`
}

// FilterTotal is the number of packets the packet filter dropped.
func (d *Drops) FilterTotal() uint64 {
	var n uint64
	if d != nil {
		for _, v := range d.Filter {
			n += v
		}
	}
	return n
}

// FilterSummary says in a few words what the filter dropped, such as
// "no_rule 12, fragment 1", sorted by reason; "" when nothing.
func (d *Drops) FilterSummary() string {
	if d.FilterTotal() == 0 {
		return ""
	}
	keys := make([]string, 0, len(d.Filter))
	for k := range d.Filter {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, d.Filter[k]))
	}
	return strings.Join(parts, ", ")
}

// PeerStatus is one peer: its map entry (whose fields appear at the top
// level of the JSON object) and what the data plane knows of it. The data
// plane fields are zero while the node is down.
type PeerStatus struct {
	*wire.Node
	// Path is how packets to the peer travel now.
	Path Path `json:"path"`
	// RTTMS is the last disco round trip on the direct path, in
	// milliseconds; 0 when unknown or on the relay.
	RTTMS float64 `json:"rtt_ms"`
	// RxBytes and TxBytes count WireGuard bytes from and to the peer
	// since the node went up.
	RxBytes int64 `json:"rx_bytes"`
	TxBytes int64 `json:"tx_bytes"`
	// LastHandshake is the last completed WireGuard handshake; zero if
	// none yet.
	LastHandshake time.Time `json:"last_handshake,omitzero"`
	// DNSName is the peer's full name under the tailnet domain
	// ("mac.weft.internal"); empty when the tailnet has no domain.
	DNSName string `json:"dns_name,omitempty"`
}

// Path kinds, as Path.Kind reports them.
const (
	PathDirect = "direct"
	PathRelay  = "relay"
	PathNone   = "none"
)

// Path is how packets to a peer travel.
type Path struct {
	// Kind is PathDirect, PathRelay or PathNone.
	Kind string `json:"kind"`
	// Endpoint is the peer's address:port on a direct path.
	Endpoint string `json:"endpoint,omitempty"`
	// RelayRegion is the relay region's ID on the relay path, and
	// RelayCode its short name.
	RelayRegion int    `json:"relay_region,omitempty"`
	RelayCode   string `json:"relay_code,omitempty"`
	// MTU is the tunnel MTU the direct path carries, as path MTU
	// discovery confirmed it (1280 until a larger probe is answered);
	// 0 on the relay.
	MTU int `json:"mtu,omitempty"`
}

// String is the path as people read it: "direct IP:PORT", "relay CODE",
// or "idle".
func (p Path) String() string {
	switch p.Kind {
	case PathDirect:
		return "direct " + p.Endpoint
	case PathRelay:
		if p.RelayCode != "" {
			return "relay " + p.RelayCode
		}
		return fmt.Sprintf("relay %d", p.RelayRegion)
	}
	return "idle"
}

// PingRequest asks for one disco ping of a peer.
type PingRequest struct {
	// Peer is the peer's name or one of its tailnet addresses.
	Peer string `json:"peer"`
}

// PingResult is one pong.
type PingResult struct {
	Name    string  `json:"name"`
	Address string  `json:"address"`
	Path    Path    `json:"path"`
	RTTMS   float64 `json:"rtt_ms"`
}

// Pinger is implemented by a Backend that can ping peers; Handler serves
// POST /ping only for such a Backend.
type Pinger interface {
	Ping(ctx context.Context, req PingRequest) (*PingResult, error)
}

// HealthEvent is one change in the node's health or connectivity that a
// person may want to read about later: a problem that appeared or
// cleared, a peer's path moving between direct and relay, a peer going
// offline or coming back, the node's state changing.
type HealthEvent struct {
	Time time.Time `json:"time"`
	// Kind is one of the HealthEvent kinds below.
	Kind string `json:"kind"`
	// Peer names the peer the event is about; empty for the node itself.
	Peer string `json:"peer,omitempty"`
	// Text says what happened in plain words.
	Text string `json:"text"`
	// Recovery holds the figures of a recovery event; nil otherwise.
	Recovery *Recovery `json:"recovery,omitempty"`
}

// Recovery is how long a restarted daemon took to get back: from its
// start to the control server's first map (registered) and to the first
// pong from a peer over a direct path. A figure not reached within the
// measurement's bound is zero.
type Recovery struct {
	Started      time.Time `json:"started"`
	RegisteredMS float64   `json:"registered_ms,omitempty"`
	DirectMS     float64   `json:"direct_ms,omitempty"`
	// DirectPeer is the peer whose pong came first over a direct path.
	DirectPeer string `json:"direct_peer,omitempty"`
	// Unclean is set when the previous run left host state behind (TUN,
	// routes, rules): it was killed or the power went, not stopped.
	Unclean bool `json:"unclean,omitempty"`
}

// HealthEvent kinds.
const (
	EventProblem  = "problem"  // a health problem appeared
	EventResolved = "resolved" // a health problem went away
	EventPath     = "path"     // a peer's path changed between direct and relay
	EventPeer     = "peer"     // a peer went offline or came back
	EventState    = "state"    // the node's state changed, or the daemon started
	EventExit     = "exit"     // the exit node in use changed (failover)
	EventRecovery = "recovery" // a restarted daemon is back: how long it took
)

// HistoryKeeper is implemented by a Backend that keeps a health history;
// Handler serves GET /health-history only for such a Backend.
type HistoryKeeper interface {
	// HealthHistory returns the recorded events, oldest first.
	HealthHistory(ctx context.Context) ([]HealthEvent, error)
}

// Backend is implemented by the node daemon.
type Backend interface {
	// Up registers if needed and connects. It returns once the server
	// accepted the node, or with the server's refusal in plain words.
	Up(ctx context.Context, req UpRequest) (*Status, error)
	// Down disconnects and stays disconnected across restarts.
	Down(ctx context.Context) error
	// Logout disconnects and forgets the registration and pinned key.
	Logout(ctx context.Context) error
	Status(ctx context.Context) (*Status, error)
}

// errorBody is the JSON body of every failed request. Code is
// "permanent" for an error that asking again will not change.
type errorBody struct {
	Error string `json:"error"`
	Code  string `json:"code,omitempty"`
}

// ErrPermanent marks an error that asking again will not change (a peer
// that is not in the tailnet, a node that is down): `weft ping` stops at
// once instead of trying again. It crosses the local API as the code
// "permanent".
var ErrPermanent = errors.New("localapi: permanent")

// Permanent marks err with ErrPermanent; its message stays err's.
func Permanent(err error) error { return permanentError{err} }

type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() []error {
	return []error{e.err, ErrPermanent}
}

// Handler serves b's methods: POST /up, /down, /logout; GET /status;
// POST /ping if b is a Pinger; GET /health-history if b is a
// HistoryKeeper; GET /health-stats if b is a StatsKeeper; POST
// /server-ca if b is a TrustKeeper (trust.go); and the
// runtime profiles under GET /debug/pprof/ (debug.go).
func Handler(b Backend, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, v any, err error) {
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			eb := errorBody{Error: err.Error()}
			if errors.Is(err, ErrPermanent) {
				eb.Code = "permanent"
			}
			json.NewEncoder(w).Encode(eb)
			return
		}
		json.NewEncoder(w).Encode(v)
	}
	handleJSON(mux, "POST /up", 64<<10, reply, b.Up)
	mux.HandleFunc("POST /down", func(w http.ResponseWriter, r *http.Request) {
		reply(w, struct{}{}, b.Down(r.Context()))
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		reply(w, struct{}{}, b.Logout(r.Context()))
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		st, err := b.Status(r.Context())
		reply(w, st, err)
	})
	if p, ok := b.(Pinger); ok {
		handleJSON(mux, "POST /ping", 64<<10, reply, p.Ping)
	}
	if hk, ok := b.(HistoryKeeper); ok {
		mux.HandleFunc("GET /health-history", func(w http.ResponseWriter, r *http.Request) {
			evs, err := hk.HealthHistory(r.Context())
			if evs == nil {
				evs = []HealthEvent{}
			}
			reply(w, evs, err)
		})
	}
	if nc, ok := b.(Netchecker); ok {
		mux.HandleFunc("POST /netcheck", func(w http.ResponseWriter, r *http.Request) {
			res, err := nc.Netcheck(r.Context())
			reply(w, res, err)
		})
	}
	handlePrefs(mux, b, reply)
	handleTrust(mux, b, reply)
	handleHealthStats(mux, b, reply)
	handleDebug(mux, reply)
	return mux
}

// handleJSON serves pattern on mux: it decodes the request's JSON body
// (at most limit bytes) into a Req, calls do with it and replies with what
// do returns. A body that does not decode is a bad request, and do is not
// called.
func handleJSON[Req, Res any](mux *http.ServeMux, pattern string, limit int64, reply func(http.ResponseWriter, any, error), do func(context.Context, Req) (Res, error)) {
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		var req Req
		if err := json.NewDecoder(io.LimitReader(r.Body, limit)).Decode(&req); err != nil {
			reply(w, nil, fmt.Errorf("bad request: %v", err))
			return
		}
		res, err := do(r.Context(), req)
		reply(w, res, err)
	})
}

// ErrSocketInUse: another process answers on the socket.
var ErrSocketInUse = errors.New("localapi: the socket is in use")

// Listen opens the unix socket at path, owner-only, replacing a stale
// socket file left by a previous run. A socket that still answers belongs
// to a running daemon: Listen refuses with ErrSocketInUse and leaves it
// alone, since taking it over would cut that daemon off from the CLI.
//
// A path that names a Windows named pipe (\\.\pipe\NAME) is listened on
// as one, open to SYSTEM and Administrators only (pipe_windows.go).
func Listen(path string) (net.Listener, error) {
	if IsPipe(path) {
		return listenPipe(path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("localapi: %w", err)
	}
	if st, err := os.Lstat(path); err == nil && st.Mode()&os.ModeSocket != 0 {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%w: another weft daemon is already running and answers on %s; stop it first, or give this daemon its own --socket and --state-dir", ErrSocketInUse, path)
		}
		os.Remove(path)
	}
	return listenPrivate(path)
}

// listenPrivate creates the socket owner-only before anyone can reach it
// (ownersock.Listen). Close removes the socket if it is still the one
// this listener made.
func listenPrivate(path string) (net.Listener, error) {
	ln, err := ownersock.Listen(path)
	if err != nil {
		return nil, fmt.Errorf("localapi: %w", err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("localapi: %w", err)
	}
	return &privateListener{Listener: ln, path: path, fi: fi}, nil
}

// privateListener removes its socket file on Close, unless another
// daemon has replaced it since.
type privateListener struct {
	net.Listener
	path string
	fi   os.FileInfo
}

func (l *privateListener) Close() error {
	err := l.Listener.Close()
	if fi, serr := os.Lstat(l.path); serr == nil && os.SameFile(fi, l.fi) {
		os.Remove(l.path)
	}
	return err
}

// ErrDaemonNotRunning: nothing listens on the socket.
var ErrDaemonNotRunning = errors.New("localapi: the weft daemon is not running")

// Client calls a daemon's local API.
type Client struct {
	// Socket is the path of the daemon's socket.
	Socket string
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			if IsPipe(c.Socket) {
				return dialPipe(ctx, c.Socket)
			}
			return (&net.Dialer{}).DialContext(ctx, "unix", c.Socket)
		},
	}}
	defer hc.CloseIdleConnections()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://local"+path, body)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		var ne *net.OpError
		if errors.As(err, &ne) && ne.Op == "dial" {
			return fmt.Errorf("%w (socket %s): start it with `weft daemon`, or pass --socket", ErrDaemonNotRunning, c.Socket)
		}
		return fmt.Errorf("localapi: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var eb errorBody
		if json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&eb) == nil && eb.Error != "" {
			if eb.Code == "permanent" {
				return Permanent(errors.New(eb.Error))
			}
			return errors.New(eb.Error)
		}
		return fmt.Errorf("localapi: daemon answered %s", resp.Status)
	}
	switch out := out.(type) {
	case nil:
		return nil
	case io.Writer: // a raw body (profiles)
		if _, err := io.Copy(out, resp.Body); err != nil {
			return fmt.Errorf("localapi: %w", err)
		}
		return nil
	default:
		return json.NewDecoder(resp.Body).Decode(out)
	}
}

// Up asks the daemon to join and connect; the error is the daemon's (or
// the server's) in plain words.
func (c *Client) Up(ctx context.Context, req UpRequest) (*Status, error) {
	var st Status
	if err := c.do(ctx, http.MethodPost, "/up", req, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// Down asks the daemon to disconnect.
func (c *Client) Down(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/down", struct{}{}, nil)
}

// Logout asks the daemon to forget its registration.
func (c *Client) Logout(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/logout", struct{}{}, nil)
}

// Status returns the daemon's status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var st Status
	if err := c.do(ctx, http.MethodGet, "/status", nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// Ping asks the daemon for one disco ping of a peer.
func (c *Client) Ping(ctx context.Context, req PingRequest) (*PingResult, error) {
	var res PingResult
	if err := c.do(ctx, http.MethodPost, "/ping", req, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// HealthHistory asks the daemon for its health history, oldest first.
func (c *Client) HealthHistory(ctx context.Context) ([]HealthEvent, error) {
	var evs []HealthEvent
	if err := c.do(ctx, http.MethodGet, "/health-history", nil, &evs); err != nil {
		return nil, err
	}
	return evs, nil
}

// Serve serves h on ln until ctx ends, then shuts down gracefully.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	return nil
}

// NetcheckResult is a network report measured by the daemon over its own
// socket, with the relay map it measured against.
type NetcheckResult struct {
	Report   *netcheck.Report `json:"report"`
	RelayMap *wire.RelayMap   `json:"relay_map"`
}

// Netchecker is implemented by a Backend that can measure the network
// for `weft netcheck`; Handler serves POST /netcheck only for such a
// Backend.
type Netchecker interface {
	Netcheck(ctx context.Context) (*NetcheckResult, error)
}

// Netcheck asks the daemon for a fresh network report.
func (c *Client) Netcheck(ctx context.Context) (*NetcheckResult, error) {
	var res NetcheckResult
	if err := c.do(ctx, http.MethodPost, "/netcheck", struct{}{}, &res); err != nil {
		return nil, err
	}
	if res.Report == nil || res.RelayMap == nil {
		return nil, errors.New("localapi: netcheck: the daemon sent no report")
	}
	return &res, nil
}
