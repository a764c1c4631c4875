package wire

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"
	"unicode/utf8"

	"weft/internal/key"
	"weft/internal/tailnet"
)

// MsgType is the first byte of every control message. Messages travel over
// the Noise control channel (internal/noiseconn) framed as: type (1 byte),
// body length (uint32 big-endian), body (JSON). See docs/protocol.md.
type MsgType uint8

// The control messages. "→ server" messages are sent by the node.
const (
	MsgRegisterRequest  MsgType = 1 // → server: join or re-join
	MsgRegisterResponse MsgType = 2 // → node: the registered node, or why not
	MsgMapRequest       MsgType = 3 // → server: start the map stream
	MsgMapResponse      MsgType = 4 // → node: full map, then deltas
	MsgUpdate           MsgType = 5 // → server: new endpoints, home region, hostinfo
	MsgKeepAlive        MsgType = 6 // either way: empty body, keeps NATs and proxies open
	MsgError            MsgType = 7 // → node: the server closes the channel after it
	MsgLogoutRequest    MsgType = 8 // → server: this node is logging out; disable its key
	MsgLogoutResponse   MsgType = 9 // → node: done, or why not

	maxMsgType = MsgLogoutResponse
)

func (t MsgType) String() string {
	switch t {
	case MsgRegisterRequest:
		return "RegisterRequest"
	case MsgRegisterResponse:
		return "RegisterResponse"
	case MsgMapRequest:
		return "MapRequest"
	case MsgMapResponse:
		return "MapResponse"
	case MsgUpdate:
		return "Update"
	case MsgKeepAlive:
		return "KeepAlive"
	case MsgError:
		return "Error"
	case MsgLogoutRequest:
		return "LogoutRequest"
	case MsgLogoutResponse:
		return "LogoutResponse"
	}
	return fmt.Sprintf("MsgType(%d)", uint8(t))
}

// Message size limits. The node's messages are small; the server's full map
// grows with the tailnet (about 0.5 KiB per peer).
const (
	MaxNodeMessage   = 64 << 10
	MaxServerMessage = 64 << 20
	msgHeaderSize    = 5
)

// Decoding errors.
var (
	ErrMessageTooLarge = errors.New("wire: control message too large")
	ErrBadMessage      = errors.New("wire: malformed control message")
)

// AppendMessage appends one framed message with the given JSON body.
func AppendMessage(b []byte, t MsgType, body []byte) []byte {
	b = append(b, byte(t))
	b = binary.BigEndian.AppendUint32(b, uint32(len(body)))
	return append(b, body...)
}

// WriteMessage marshals v as JSON (nil: empty body) and writes it as one
// message with a single Write.
func WriteMessage(w io.Writer, t MsgType, v any) error {
	var body []byte
	if v != nil {
		var err error
		if body, err = json.Marshal(v); err != nil {
			return fmt.Errorf("wire: encoding %v: %w", t, err)
		}
	}
	_, err := w.Write(AppendMessage(make([]byte, 0, msgHeaderSize+len(body)), t, body))
	return err
}

// ReadMessage reads one message whose body may be at most limit bytes.
// A longer one is refused before its body is read.
func ReadMessage(r io.Reader, limit int) (MsgType, []byte, error) {
	var hdr [msgHeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	t := MsgType(hdr[0])
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > uint32(limit) {
		return t, nil, fmt.Errorf("%w: %v of %d bytes, limit %d", ErrMessageTooLarge, t, n, limit)
	}
	if t == 0 || t > maxMsgType {
		return t, nil, fmt.Errorf("%w: unknown type %d", ErrBadMessage, hdr[0])
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return t, nil, fmt.Errorf("wire: reading %v body: %w", t, err)
	}
	return t, body, nil
}

// ErrorCode classifies a refusal so the node can react without parsing text.
type ErrorCode string

// The error codes the server sends.
const (
	CodeInvalidKey     ErrorCode = "invalid_key"      // no such pre-auth key
	CodeExpiredKey     ErrorCode = "expired_key"      // the pre-auth key has expired
	CodeKeyUsed        ErrorCode = "key_used"         // the one-off pre-auth key was already used
	CodeAuthRequired   ErrorCode = "auth_required"    // unknown machine and no pre-auth key
	CodeNodeKeyExpired ErrorCode = "node_key_expired" // re-register with a pre-auth key
	CodeNotRegistered  ErrorCode = "not_registered"   // map request for a node key the server does not know
	CodeRateLimited    ErrorCode = "rate_limited"     // too many registrations from this address
	CodeBadRequest     ErrorCode = "bad_request"      // the message failed validation
	CodeInternal       ErrorCode = "internal"         // the server failed; try again later
)

// ErrorMessage is a refusal in plain words. Message is meant for people and
// says what to do next.
type ErrorMessage struct {
	Code    ErrorCode `json:"code"`
	Message string    `json:"message"`
}

func (e *ErrorMessage) Error() string { return e.Message }

// RegisterRequest asks to join the tailnet, or for a known machine to
// re-join or rotate its node key. The machine key is not in the message: the
// Noise handshake authenticated it.
type RegisterRequest struct {
	// AuthKey is a pre-auth key. It may be empty for a machine the
	// server already knows whose node key has not expired.
	AuthKey string `json:"auth_key,omitempty"`
	// NodeKey is the node key to register.
	NodeKey key.NodePublic `json:"node_key"`
	// OldNodeKey, when set, is the node key being replaced (rotation).
	OldNodeKey key.NodePublic  `json:"old_node_key,omitzero"`
	DiscoKey   key.DiscoPublic `json:"disco_key,omitzero"`
	Hostinfo   *Hostinfo       `json:"hostinfo,omitempty"`
}

// RegisterResponse answers a RegisterRequest: exactly one of Node and Error
// is set.
type RegisterResponse struct {
	Node  *Node         `json:"node,omitempty"`
	Error *ErrorMessage `json:"error,omitempty"`
}

// MapRequest starts the map stream. The node sends it once per channel
// after registering; the server answers with a full map and then deltas.
type MapRequest struct {
	NodeKey    key.NodePublic   `json:"node_key"`
	DiscoKey   key.DiscoPublic  `json:"disco_key,omitzero"`
	Endpoints  []netip.AddrPort `json:"endpoints,omitempty"`
	HomeRegion int              `json:"home_region,omitempty"`
	Hostinfo   *Hostinfo        `json:"hostinfo,omitempty"`
	// AdvertisedRoutes are the prefixes the node offers to route for the
	// tailnet (0.0.0.0/0 and ::/0 for an exit node). They replace what the
	// server recorded; none means the node offers nothing. Peers see a
	// route only once an administrator approved it.
	AdvertisedRoutes []netip.Prefix `json:"advertised_routes,omitempty"`
}

// Update carries the node's changed runtime facts during a stream. Each
// field replaces what the server holds; a nil Endpoints or Hostinfo leaves
// that field as it was, and HomeRegion -1 leaves the region.
type Update struct {
	Endpoints  *[]netip.AddrPort `json:"endpoints,omitempty"`
	HomeRegion int               `json:"home_region"`
	DiscoKey   key.DiscoPublic   `json:"disco_key,omitzero"`
	Hostinfo   *Hostinfo         `json:"hostinfo,omitempty"`
	// AdvertisedRoutes, when set, replaces the routes the node offers
	// (see MapRequest); an empty list withdraws every offer.
	AdvertisedRoutes *[]netip.Prefix `json:"advertised_routes,omitempty"`
	// HealthSamples are the node's health samples not yet reported, a
	// batch at most MaxHealthSamples long (docs/health.md). A server that
	// does not keep samples ignores them.
	HealthSamples []HealthSample `json:"health_samples,omitempty"`
}

// Bounds on reported health samples.
const (
	MaxHealthSamples = 64  // per Update
	maxSampleMetrics = 512 // per sample
	maxSampleFacts   = 16
	maxSampleName    = 128 // bytes in a metric or fact name, or a fact
)

func checkHealthSamples(ss []HealthSample) error {
	if len(ss) > MaxHealthSamples {
		return fmt.Errorf("%w: %d health samples in one update, at most %d", ErrBadMessage, len(ss), MaxHealthSamples)
	}
	for _, s := range ss {
		if s.Time.IsZero() || len(s.Metrics) > maxSampleMetrics || len(s.Facts) > maxSampleFacts {
			return fmt.Errorf("%w: health sample without a time or with too many metrics", ErrBadMessage)
		}
		for k, v := range s.Metrics {
			if len(k) == 0 || len(k) > maxSampleName || v != v {
				return fmt.Errorf("%w: health metric %.40q", ErrBadMessage, k)
			}
		}
		for k, v := range s.Facts {
			if len(k) == 0 || len(k) > maxSampleName || len(v) > maxSampleName {
				return fmt.Errorf("%w: health fact %.40q", ErrBadMessage, k)
			}
		}
	}
	return nil
}

// MapResponse is one message of the map stream. The first one on a stream
// has Full set and carries Self, all Peers, RelayMap, DNS and PacketFilter;
// later ones are deltas carrying only what changed. Deltas are idempotent:
// each carries the new value of what changed, never an increment, so the
// same delta applied twice gives the same map.
type MapResponse struct {
	// Seq orders messages on a stream; it only grows. Gaps are normal
	// (the number is shared by all streams).
	Seq  uint64 `json:"seq"`
	Full bool   `json:"full,omitempty"`
	// ServerTime is the server's clock when it built a full map. The node
	// measures its own clock's offset from it, so that it can tell a
	// peer's (or its own) key expiry on the server's time also while the
	// server is unreachable.
	ServerTime time.Time `json:"server_time,omitzero"`
	// Self is the node's own record, sent in full maps and whenever it
	// changed.
	Self *Node `json:"self,omitempty"`
	// Peers is the complete peer list; only in full maps.
	Peers []*Node `json:"peers,omitempty"`
	// PeersChanged are peers added, or whose record changed in ways a
	// patch does not cover; each replaces the node's whole record.
	PeersChanged []*Node `json:"peers_changed,omitempty"`
	// PeersRemoved are IDs of peers that left the map.
	PeersRemoved []NodeID `json:"peers_removed,omitempty"`
	// PeersPatched are small changes to known peers.
	PeersPatched []*PeerPatch `json:"peers_patched,omitempty"`
	// RelayMap replaces the relay map when set.
	RelayMap *RelayMap `json:"relay_map,omitempty"`
	// DNS replaces the DNS configuration when set.
	DNS *DNSConfig `json:"dns,omitempty"`
	// PacketFilter replaces the node's packet filter when set: what the
	// node lets in from the tunnel, compiled from the tailnet's policy
	// for this node (see PacketFilter). A full map always carries one.
	PacketFilter *PacketFilter `json:"packet_filter,omitempty"`
}

// PeerPatch changes a few fields of a known peer; nil fields are unchanged.
type PeerPatch struct {
	ID         NodeID            `json:"id"`
	Online     *bool             `json:"online,omitempty"`
	LastSeen   *time.Time        `json:"last_seen,omitempty"`
	Endpoints  *[]netip.AddrPort `json:"endpoints,omitempty"`
	HomeRegion *int              `json:"home_region,omitempty"`
	DiscoKey   *key.DiscoPublic  `json:"disco_key,omitempty"`
	// Hostinfo replaces the peer's host facts; it travels alone, so a
	// node's new network report costs its peers a small patch, not its
	// whole record.
	Hostinfo *Hostinfo `json:"hostinfo,omitempty"`
}

// DNSConfig is the tailnet's DNS configuration for nodes, made from the
// administrator's settings file by internal/dnsconf (which validates it).
// Names are lower case without a trailing dot. See docs/dns.md.
type DNSConfig struct {
	// Domain is the tailnet's base domain: node "busan" is also
	// "busan.<Domain>".
	Domain string `json:"domain,omitempty"`
	// MagicDNS: the node runs its resolver and points the OS at it.
	// False: the node leaves the OS's DNS alone.
	MagicDNS bool `json:"magic_dns"`
	// Nameservers answer what is neither a tailnet name nor under a
	// route; none means the resolvers the OS had before weft.
	Nameservers []netip.AddrPort `json:"nameservers,omitempty"`
	// OverrideLocalDNS sends every query of the OS to weft's resolver
	// (systemd-resolved's "~." routing domain); otherwise only the
	// tailnet domain and the routes' suffixes go to it where the OS
	// routes DNS per link.
	OverrideLocalDNS bool `json:"override_local_dns,omitempty"`
	// Routes maps a domain suffix to the nameservers for names under it
	// (split DNS).
	Routes map[string][]netip.AddrPort `json:"routes,omitempty"`
	// SearchDomains are added after the tailnet domain to the OS's search
	// list.
	SearchDomains []string `json:"search_domains,omitempty"`
	// ExtraRecords are answered by every node's resolver.
	ExtraRecords []DNSRecord `json:"extra_records,omitempty"`
}

// FQDN is node name's full name under the tailnet domain
// ("mac.weft.internal"), or "" without a domain or name.
func (c *DNSConfig) FQDN(name string) string {
	if c == nil || c.Domain == "" || name == "" {
		return ""
	}
	return name + "." + c.Domain
}

// DNSRecord is one extra record: Type is A, AAAA, CNAME or TXT, and Value
// an address, a name or text accordingly.
type DNSRecord struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	Value string `json:"value"`
}

// Validation limits for what nodes send.
const (
	maxEndpoints  = 64
	maxShortField = 256
)

func checkText(field, s string, max int) error {
	if len(s) > max || !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s too long or not UTF-8", ErrBadMessage, field)
	}
	return nil
}

// Validate checks the fields a node controls.
func (h *Hostinfo) Validate() error {
	if h == nil {
		return nil
	}
	for _, f := range []struct{ name, v string }{{"hostname", h.Hostname}, {"os", h.OS}, {"version", h.Version}} {
		if err := checkText(f.name, f.v, maxShortField); err != nil {
			return err
		}
	}
	if h.NetInfo != nil && len(h.NetInfo.RegionLatencyMS) > 256 {
		return fmt.Errorf("%w: too many region latencies", ErrBadMessage)
	}
	return nil
}

func checkEndpoints(eps []netip.AddrPort) error {
	if len(eps) > maxEndpoints {
		return fmt.Errorf("%w: %d endpoints, limit %d", ErrBadMessage, len(eps), maxEndpoints)
	}
	for _, ep := range eps {
		if !ep.IsValid() || ep.Port() == 0 {
			return fmt.Errorf("%w: endpoint %v", ErrBadMessage, ep)
		}
	}
	return nil
}

// maxRoutes bounds the prefixes one node may advertise.
const maxRoutes = 1024

// checkRoutes refuses too many prefixes, invalid ones, and prefixes with
// host bits set (the server stores routes canonical).
func checkRoutes(ps []netip.Prefix) error {
	if len(ps) > maxRoutes {
		return fmt.Errorf("%w: %d advertised routes, limit %d", ErrBadMessage, len(ps), maxRoutes)
	}
	for _, p := range ps {
		if err := tailnet.CheckRoute(p); err != nil {
			return fmt.Errorf("%w: advertised %w", ErrBadMessage, err)
		}
	}
	return nil
}

// Validate checks a RegisterRequest from a node.
func (r *RegisterRequest) Validate() error {
	if r.NodeKey.IsZero() {
		return fmt.Errorf("%w: node key missing", ErrBadMessage)
	}
	if err := checkText("auth key", r.AuthKey, maxShortField); err != nil {
		return err
	}
	return r.Hostinfo.Validate()
}

// Validate checks a MapRequest from a node.
func (r *MapRequest) Validate() error {
	if r.NodeKey.IsZero() {
		return fmt.Errorf("%w: node key missing", ErrBadMessage)
	}
	if r.HomeRegion < 0 {
		return fmt.Errorf("%w: home region %d", ErrBadMessage, r.HomeRegion)
	}
	if err := checkEndpoints(r.Endpoints); err != nil {
		return err
	}
	if err := checkRoutes(r.AdvertisedRoutes); err != nil {
		return err
	}
	return r.Hostinfo.Validate()
}

// Validate checks an Update from a node.
func (u *Update) Validate() error {
	if u.HomeRegion < -1 {
		return fmt.Errorf("%w: home region %d", ErrBadMessage, u.HomeRegion)
	}
	if u.Endpoints != nil {
		if err := checkEndpoints(*u.Endpoints); err != nil {
			return err
		}
	}
	if u.AdvertisedRoutes != nil {
		if err := checkRoutes(*u.AdvertisedRoutes); err != nil {
			return err
		}
	}
	if err := checkHealthSamples(u.HealthSamples); err != nil {
		return err
	}
	return u.Hostinfo.Validate()
}

// Validate checks a MapResponse from the server: a node must not crash on
// a broken or hostile one.
func (r *MapResponse) Validate() error {
	for _, l := range [][]*Node{r.Peers, r.PeersChanged} {
		for _, n := range l {
			if n == nil {
				return fmt.Errorf("%w: null peer in map", ErrBadMessage)
			}
		}
	}
	for _, p := range r.PeersPatched {
		if p == nil {
			return fmt.Errorf("%w: null peer patch in map", ErrBadMessage)
		}
	}
	if err := r.PacketFilter.Validate(); err != nil {
		return err
	}
	if r.RelayMap != nil {
		for id, reg := range r.RelayMap.Regions {
			if reg == nil {
				return fmt.Errorf("%w: null relay region %d", ErrBadMessage, id)
			}
			for _, n := range reg.Nodes {
				if n == nil {
					return fmt.Errorf("%w: null relay node in region %d", ErrBadMessage, id)
				}
			}
		}
	}
	return nil
}

// Validate checks a RegisterResponse from the server.
func (r *RegisterResponse) Validate() error {
	if (r.Node == nil) == (r.Error == nil) {
		return fmt.Errorf("%w: register response needs exactly one of node and error", ErrBadMessage)
	}
	return nil
}

// LogoutRequest asks the server to disable the node that sends it (weft
// logout): its key is expired, or an ephemeral node is deleted. NodeKey
// must be the node's current key, so a stale request cannot disable a
// node that has since re-registered.
type LogoutRequest struct {
	NodeKey key.NodePublic `json:"node_key"`
}

// Validate checks a LogoutRequest from a node.
func (r *LogoutRequest) Validate() error {
	if r.NodeKey.IsZero() {
		return fmt.Errorf("%w: node key missing", ErrBadMessage)
	}
	return nil
}

// LogoutResponse answers a LogoutRequest: no error means the node's key no
// longer works on this server.
type LogoutResponse struct {
	Error *ErrorMessage `json:"error,omitempty"`
}

// Decode unmarshals a message body into v (a pointer to one of the message
// types) and validates it when v has a Validate method.
func Decode(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%w: %v", ErrBadMessage, err)
	}
	if val, ok := v.(interface{ Validate() error }); ok {
		return val.Validate()
	}
	return nil
}
