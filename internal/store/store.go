// Package store keeps the control server's durable state: users, pre-auth
// keys, nodes with their keys and tailnet addresses, and subnet/exit routes.
//
// Store is the interface the control server and the admin API program
// against. It has two implementations sharing one set of queries and one
// migration list (sqlStore): Open returns the SQLite one, the default, a
// file in the server's data directory; OpenPostgres the PostgreSQL one,
// which several servers may share (docs/postgres.md). The queries use only
// SQL both accept (RETURNING, ON CONFLICT, BOOLEAN, BIGINT) with "?"
// placeholders that the dialect rewrites to $n in one place (dialect.go).
//
// Every mutating method runs in one database transaction and has committed
// (durably, see Open) when it returns nil. A context made by WithAudit
// makes the first such transaction also record an audit log entry. What is NOT stored: whether a node
// is online (the control server keeps that in memory) and any change feed
// (the control server knows what it changed; admin actions tell it through
// adminapi.Notifier).
package store

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"weft/internal/key"
	"weft/internal/wire"
)

// Errors returned by Store methods. Callers test them with errors.Is; the
// returned error usually wraps one of these with more context.
var (
	// ErrNotFound: the user, key, node or route named does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrExists: a user of that name, or a node of that name, already exists.
	ErrExists = errors.New("store: already exists")
	// ErrInvalid: an argument failed validation (bad name, tag, prefix...).
	ErrInvalid = errors.New("store: invalid argument")
	// ErrUserInUse: DeleteUser refused because the user still owns nodes.
	ErrUserInUse = errors.New("store: user still owns nodes")

	// ErrKeyInvalid: no pre-auth key matches what the node presented.
	ErrKeyInvalid = errors.New("store: auth key invalid")
	// ErrKeyExpired: the pre-auth key exists but has expired (or was
	// expired by an administrator).
	ErrKeyExpired = errors.New("store: auth key expired")
	// ErrKeyUsed: the one-off pre-auth key was already used.
	ErrKeyUsed = errors.New("store: auth key already used")
	// ErrAPIKeyInvalid: no live API key matches what the client presented.
	ErrAPIKeyInvalid = errors.New("store: API key invalid, expired or revoked")
)

// DefaultNodeKeyLifetime is how long a node key registered by an untagged
// node stays valid when RegisterRequest.KeyLifetime is zero.
const DefaultNodeKeyLifetime = 180 * 24 * time.Hour

// UserID identifies a user in the store.
type UserID int64

// User is a person (or team) who owns nodes and pre-auth keys.
type User struct {
	ID   UserID `json:"id"`
	Name string `json:"name"`
	// Role is RoleAdmin or RoleMember; it decides what the user's API
	// keys and console sessions may see and change.
	Role      string    `json:"role"`
	CreatedAt time.Time `json:"created_at"`
	// Issuer is the identity provider the user signs in with; empty for
	// users made with `weft admin users create`.
	Issuer string `json:"issuer,omitempty"`
	// Email and Groups are what the provider said at the last sign-in.
	// Email is shown, never used to find the user.
	Email  string   `json:"email,omitempty"`
	Groups []string `json:"groups,omitempty"`
}

// Roles of users. An admin administers the whole tailnet; a member (an
// ordinary user) sees and changes only their own nodes and pre-auth keys.
// New users are members.
const (
	RoleAdmin  = "admin"
	RoleMember = "member"
)

// AuthKey describes a pre-auth key. The secret itself is never stored or
// returned after creation; only its SHA-256 and a public Prefix, which is
// also the key's identifier in listings and in ExpireAuthKey.
type AuthKey struct {
	Prefix    string    `json:"prefix"` // public part of the key, such as "wk3f9a0c1d2e4b"
	User      string    `json:"user"`   // the user who created it
	Reusable  bool      `json:"reusable"`
	Ephemeral bool      `json:"ephemeral"`
	Tags      []string  `json:"tags,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	Expiry    time.Time `json:"expiry,omitzero"` // zero: never expires
	Uses      int       `json:"uses"`            // successful registrations with this key
	LastUsed  time.Time `json:"last_used,omitzero"`
}

// Expired reports whether the key is past its expiry at now.
func (k AuthKey) Expired(now time.Time) bool {
	return !k.Expiry.IsZero() && !now.Before(k.Expiry)
}

// Usable reports whether the key could register a node at now.
func (k AuthKey) Usable(now time.Time) bool {
	return !k.Expired(now) && (k.Reusable || k.Uses == 0)
}

// AuthKeyRequest describes a pre-auth key to create.
type AuthKeyRequest struct {
	User      string   // required; must exist
	Reusable  bool     // false: the key registers exactly one node
	Ephemeral bool     // nodes registered with it are removed after they disconnect
	Tags      []string // each like "tag:server"; nodes registered with a tagged key belong to no user and their keys never expire
	// Expiry is when the key stops working; zero means never.
	Expiry time.Time
}

// Node is a registered machine as the store holds it.
type Node struct {
	ID         wire.NodeID       `json:"id"`
	Name       string            `json:"name"` // unique DNS label
	User       string            `json:"user"` // empty for tagged nodes
	Tags       []string          `json:"tags,omitempty"`
	MachineKey key.MachinePublic `json:"machine_key"`
	NodeKey    key.NodePublic    `json:"node_key"`
	// KeyExpiry is when NodeKey stops being valid; zero means never
	// (tagged nodes).
	KeyExpiry time.Time  `json:"key_expiry,omitzero"`
	Ephemeral bool       `json:"ephemeral"`
	AuthKey   string     `json:"auth_key,omitempty"` // Prefix of the key it last registered with
	IPv4      netip.Addr `json:"ipv4"`
	IPv6      netip.Addr `json:"ipv6"`
	Hostname  string     `json:"hostname"` // as the node reported it, before sanitising
	OS        string     `json:"os,omitempty"`
	NodeRuntime
	// AdvertisedRoutes are the prefixes the node offers to route;
	// ApprovedRoutes are those an administrator allowed, whether or not
	// still advertised. The routes in effect are the intersection, see
	// EnabledRoutes.
	AdvertisedRoutes []netip.Prefix `json:"advertised_routes,omitempty"`
	ApprovedRoutes   []netip.Prefix `json:"approved_routes,omitempty"`
	CreatedAt        time.Time      `json:"created_at"`
}

// NodeRuntime is the part of a node the control server rewrites as the node
// reports in. It is written with UpdateNodeRuntime.
type NodeRuntime struct {
	DiscoKey   key.DiscoPublic  `json:"disco_key"` // fresh each node run
	Endpoints  []netip.AddrPort `json:"endpoints,omitempty"`
	HomeRegion int              `json:"home_region,omitempty"`
	Hostinfo   *wire.Hostinfo   `json:"hostinfo,omitempty"`
	LastSeen   time.Time        `json:"last_seen,omitzero"`
}

// KeyExpired reports whether the node's key is expired at now.
func (n *Node) KeyExpired(now time.Time) bool {
	return !n.KeyExpiry.IsZero() && !now.Before(n.KeyExpiry)
}

// Route is one prefix a node advertises or an administrator approved.
type Route struct {
	NodeID     wire.NodeID  `json:"node_id"`
	NodeName   string       `json:"node_name"`
	Prefix     netip.Prefix `json:"prefix"`
	Advertised bool         `json:"advertised"`
	Approved   bool         `json:"approved"`
	// AutoApprovedBy names the policy rule that approved the route
	// (autoApprovers), or is empty when an administrator did.
	AutoApprovedBy string `json:"auto_approved_by,omitempty"`
}

// Enabled reports whether the route is in effect: advertised and approved.
func (r Route) Enabled() bool { return r.Advertised && r.Approved }

// RegisterRequest is what a node presents to join, after the control
// channel has authenticated its machine key.
type RegisterRequest struct {
	// AuthKey is the full pre-auth key secret as the user typed it.
	AuthKey    string
	MachineKey key.MachinePublic
	NodeKey    key.NodePublic
	DiscoKey   key.DiscoPublic
	// Hostname is the node's own name; the store sanitises it into a
	// unique DNS label for a new node and ignores it for a known machine.
	Hostname string
	Hostinfo *wire.Hostinfo
	// KeyLifetime is how long the node key stays valid for an untagged
	// node; zero means DefaultNodeKeyLifetime. Tagged nodes never expire.
	KeyLifetime time.Duration
}

// Options tunes Open. The zero value is ready to use.
type Options struct {
	// Now returns the current time; nil means time.Now. Tests inject a
	// clock to check expiry without sleeping.
	Now func() time.Time

	// busyTimeout, when not zero, replaces SQLite's busy timeout (10 s),
	// for tests of what happens past it.
	busyTimeout time.Duration
}

// Store is the control server's durable state. All methods are safe for
// concurrent use. Methods taking a node ID return an error wrapping
// ErrNotFound for an unknown ID.
type Store interface {
	// CreateUser adds a user. The name must be 1-64 characters of
	// a-z 0-9 . _ @ - starting with a letter or digit (ErrInvalid), and
	// unused (ErrExists).
	CreateUser(ctx context.Context, name string) (User, error)
	ListUsers(ctx context.Context) ([]User, error)
	// DeleteUser removes a user and their pre-auth keys. It refuses with
	// ErrUserInUse while the user owns nodes: delete or re-register those
	// first. Tagged nodes registered with the user's keys belong to no
	// user and are kept.
	DeleteUser(ctx context.Context, name string) error
	// GetUser returns one user by name (ErrNotFound).
	GetUser(ctx context.Context, name string) (User, error)
	// SetUserRole makes a user RoleAdmin or RoleMember (ErrInvalid for
	// another role, ErrNotFound for an unknown user).
	SetUserRole(ctx context.Context, name, role string) (User, error)
	// OIDCUser returns the user who signs in as id.Subject at id.Issuer,
	// recording the email and groups of this sign-in, or makes a new
	// member for a subject seen for the first time, named after the
	// email's local part (or id.Name) with -2, -3... when taken. A user
	// is never found by email or name: a new subject is always a new
	// user.
	OIDCUser(ctx context.Context, id OIDCIdentity) (User, error)

	// CreateAuthKey makes a new pre-auth key and returns its secret, which
	// is shown this once and never again.
	CreateAuthKey(ctx context.Context, req AuthKeyRequest) (secret string, k AuthKey, err error)
	// ListAuthKeys lists keys, all users' when user is empty.
	ListAuthKeys(ctx context.Context, user string) ([]AuthKey, error)
	// ExpireAuthKey makes a key unusable from now on. id is the key's
	// Prefix or the full secret.
	ExpireAuthKey(ctx context.Context, id string) error

	// Register joins a node with a pre-auth key, atomically: the key is
	// checked and consumed (ErrKeyInvalid, ErrKeyExpired, ErrKeyUsed),
	// and the node is created or, for a known machine key, updated, in one
	// transaction. Re-registering a known machine keeps its ID, addresses
	// and name and takes the new node key, disco key, owner and tags.
	Register(ctx context.Context, req RegisterRequest) (Node, error)
	GetNode(ctx context.Context, id wire.NodeID) (Node, error)
	// GetNodes returns the nodes with the given IDs that exist, in ID
	// order, each once, read in one transaction (however many IDs: they
	// are asked for in chunks). An unknown ID is left out, not an error:
	// a server re-reading the nodes another one changed learns that way
	// which were deleted.
	GetNodes(ctx context.Context, ids []wire.NodeID) ([]Node, error)
	GetNodeByName(ctx context.Context, name string) (Node, error)
	GetNodeByMachineKey(ctx context.Context, mk key.MachinePublic) (Node, error)
	GetNodeByNodeKey(ctx context.Context, nk key.NodePublic) (Node, error)
	ListNodes(ctx context.Context) ([]Node, error)
	// ListNodesPage lists the nodes q selects, in q's order, cut to q's
	// page, with the number the filters match in all; it reads only that
	// page (and a count), so a page of a 10k-node tailnet costs a page:
	// the admin API's and the console's node list. A negative limit or
	// offset, an unknown sort, or After with a sort other than SortID is
	// ErrInvalid.
	ListNodesPage(ctx context.Context, q NodePage) (NodeList, error)
	// ListNodeIDs lists the IDs of every node q selects, in q's order
	// (q's Offset and Limit ignored), reading nothing but the IDs: for
	// an order or filter the store cannot apply (whether a node is online
	// now), made on the IDs before reading the page's nodes by IDs.
	ListNodeIDs(ctx context.Context, q NodePage) ([]wire.NodeID, error)
	// RotateNodeKey replaces the node key of a node, keeping its ID, name,
	// addresses and key expiry. The new key must not belong to another
	// node (ErrExists).
	RotateNodeKey(ctx context.Context, id wire.NodeID, nk key.NodePublic) (Node, error)
	// UpdateNodeRuntime reads the node's runtime fields, lets fn change
	// them, and writes them back in one transaction.
	UpdateNodeRuntime(ctx context.Context, id wire.NodeID, fn func(*NodeRuntime)) (Node, error)
	// SetNodeRuntimes replaces the runtime fields of many nodes at once,
	// as UpdateNodeRuntime with an fn that overwrites them would one by
	// one, in a few transactions instead of one each: the control
	// server's write-behind of what its streams reported. It returns the
	// IDs it found no node for (deleted meanwhile), which is no error.
	// After an error some of the nodes may have been written; writing
	// them again is harmless.
	SetNodeRuntimes(ctx context.Context, rts map[wire.NodeID]NodeRuntime) (missing []wire.NodeID, err error)
	// RenameNode gives a node a new name, which must already be a valid
	// DNS label (ErrInvalid) and unused by other nodes (ErrExists).
	RenameNode(ctx context.Context, id wire.NodeID, name string) (Node, error)
	// ExpireNode sets the node's key expiry to now, so it must
	// re-register with a pre-auth key.
	ExpireNode(ctx context.Context, id wire.NodeID) (Node, error)
	// DeleteNode removes the node and its routes. Its addresses may be
	// handed out again later, to another node.
	DeleteNode(ctx context.Context, id wire.NodeID) error

	// SetAdvertisedRoutes replaces the set of prefixes the node offers.
	// Approvals of prefixes it stops advertising are remembered, so an
	// exit node that is switched off and on again stays approved.
	SetAdvertisedRoutes(ctx context.Context, id wire.NodeID, prefixes []netip.Prefix) (Node, error)
	// ApproveRoute approves advertised prefixes, all or none, in one
	// transaction (ErrNotFound if the node does not advertise one).
	ApproveRoute(ctx context.Context, id wire.NodeID, ps ...netip.Prefix) (Node, error)
	// RejectRoute withdraws approval of prefixes, all or none, in one
	// transaction (ErrNotFound if one was neither advertised nor
	// approved).
	RejectRoute(ctx context.Context, id wire.NodeID, ps ...netip.Prefix) (Node, error)
	// ListRoutes lists all routes of all nodes, ordered by node and prefix.
	ListRoutes(ctx context.Context) ([]Route, error)
	// ListNodeRoutes lists the routes of one node, ordered by prefix
	// (none for a node that has none or does not exist).
	ListNodeRoutes(ctx context.Context, id wire.NodeID) ([]Route, error)
	// AutoApproveRoute approves an advertised prefix on the word of a
	// policy rule, which ListRoutes then names (ErrNotFound if the node
	// does not advertise it).
	AutoApproveRoute(ctx context.Context, id wire.NodeID, p netip.Prefix, rule string) (Node, error)

	// SetNodeTags makes the node owned by tags (one or more, each like
	// tag:server) instead of a user; its key then never expires.
	SetNodeTags(ctx context.Context, id wire.NodeID, tags []string) (Node, error)

	// AddPolicy keeps pv's Body (already checked by the caller) as a new
	// policy version, set by pv's Author with pv's Credential, and returns
	// it; it is the policy in force from now on.
	AddPolicy(ctx context.Context, pv PolicyVersion) (PolicyVersion, error)
	// GetPolicy returns a policy version, or the one in force when
	// version is 0 (ErrNotFound when none was ever set).
	GetPolicy(ctx context.Context, version int64) (PolicyVersion, error)
	// ListPolicies lists every version, oldest first, without bodies.
	ListPolicies(ctx context.Context) ([]PolicyVersion, error)

	// DNSSettings returns the tailnet's DNS settings file as last set and
	// when it was set; an empty source and zero time when never set. The
	// store does not parse it: internal/dnsconf does, before SetDNSSettings.
	DNSSettings(ctx context.Context) (source []byte, updated time.Time, err error)
	// SetDNSSettings replaces the DNS settings file.
	SetDNSSettings(ctx context.Context, source []byte) error

	// CreateAPIKey makes a new API key for the REST API and returns its
	// secret, shown this once and never again. The key acts for req.User
	// (which must exist), or for the server's administrator when empty.
	CreateAPIKey(ctx context.Context, req APIKeyRequest) (secret string, k APIKey, err error)
	// ListAPIKeys lists every API key, revoked ones too, oldest first.
	ListAPIKeys(ctx context.Context) ([]APIKey, error)
	// RevokeAPIKey makes a key unusable for good. id is the key's Prefix
	// or the full secret (ErrNotFound when no key matches).
	RevokeAPIKey(ctx context.Context, id string) error
	// CheckAPIKey returns the key whose secret is full, after recording
	// now as its last use; ErrAPIKeyInvalid when no live key matches
	// (unknown, wrong secret, expired or revoked: callers must not tell
	// them apart to the client).
	CheckAPIKey(ctx context.Context, full string) (APIKey, error)

	// AppendAudit records one change in the audit log; At zero means now.
	AppendAudit(ctx context.Context, e AuditEntry) (AuditEntry, error)
	// ListAudit lists audit entries newest first, with IDs below
	// q.Before (0: from the newest), at most q.Limit (0: all).
	ListAudit(ctx context.Context, q AuditQuery) ([]AuditEntry, error)

	// StartNodeLogin records an interactive node login waiting for
	// approval, after dropping expired ones (ErrTooManyLogins past the
	// request's bounds).
	StartNodeLogin(ctx context.Context, req NodeLoginStart) (NodeLogin, error)
	// PendingNodeLogins lists the logins waiting, oldest first.
	PendingNodeLogins(ctx context.Context) ([]NodeLogin, error)
	// GetNodeLogin returns a waiting login by its code (ErrNotFound when
	// unknown, approved or expired).
	GetNodeLogin(ctx context.Context, code string) (NodeLogin, error)
	// ApproveNodeLogin lets a waiting login join as user, once
	// (ErrNotFound for an unknown, approved or expired code, or an
	// unknown user).
	ApproveNodeLogin(ctx context.Context, code, user string) (NodeLogin, error)
	// TakeNodeLogin answers the waiting node: its login while it waits;
	// once approved, the login is gone and a one-off pre-auth key of the
	// user is made, in one transaction (ErrNotFound when no live login
	// has the poll hash).
	TakeNodeLogin(ctx context.Context, pollHash string, keyExpiry time.Time) (NodeLoginGrant, error)

	// CreateConsoleLink records a web console login link by the SHA-256
	// of its token, good until expires (console.go).
	CreateConsoleLink(ctx context.Context, hash string, expires time.Time) error
	// UseConsoleLink spends a live login link and starts the session st
	// in one transaction; a link is spent once, whichever servers present
	// it at once (ErrNotFound for an unknown, used or expired link).
	UseConsoleLink(ctx context.Context, linkHash string, st ConsoleSessionStart) (ConsoleSession, error)
	// StartConsoleSession starts a console session (a sign-in with the
	// identity provider; ErrNotFound for an unknown user).
	StartConsoleSession(ctx context.Context, st ConsoleSessionStart) (ConsoleSession, error)
	// CheckConsoleSession returns the live session with the token hash
	// (ErrNotFound when unknown, ended or expired).
	CheckConsoleSession(ctx context.Context, hash string) (ConsoleSession, error)
	// EndConsoleSession ends a session: a sign-out (ErrNotFound when it
	// had ended already).
	EndConsoleSession(ctx context.Context, hash string) error

	// StartOIDCFlow records a sign-in in progress at the identity
	// provider (ErrTooManyFlows when max are in progress already; 0: no
	// bound); TakeOIDCFlow finishes it once, at any server (ErrNotFound
	// when unknown, finished or expired).
	StartOIDCFlow(ctx context.Context, f OIDCFlow, max int) error
	TakeOIDCFlow(ctx context.Context, stateHash string) (OIDCFlow, error)

	// Heartbeat records that the control server origin (its change-feed
	// origin) is alive, setting its liveness row's counter to beat. It
	// reports whether the row was there: false at the server's first
	// beat, or when the other servers took it for dead and removed it
	// (servers.go).
	Heartbeat(ctx context.Context, origin string, beat int64) (known bool, err error)
	// ListServers lists the servers' liveness rows, by origin.
	ListServers(ctx context.Context) ([]ServerBeat, error)
	// ClaimDeadServer removes origin's liveness row if its counter is
	// still beat, in one transaction, and reports whether it did: of
	// several servers claiming the same silent server, exactly one wins
	// and announces it gone.
	ClaimDeadServer(ctx context.Context, origin string, beat int64) (claimed bool, err error)
	// RemoveServer removes origin's liveness row: the server stops
	// cleanly, having said its streams ended.
	RemoveServer(ctx context.Context, origin string) error

	// AddressPrefixes returns the tailnet's IPv4 and IPv6 prefixes:
	// 100.64.0.0/10 and this store's ULA /48.
	AddressPrefixes() (v4, v6 netip.Prefix)

	Close() error
}

// EnabledRoutes returns the routes in effect for n: advertised and approved.
func (n *Node) EnabledRoutes() []netip.Prefix {
	var out []netip.Prefix
	for _, a := range n.AdvertisedRoutes {
		for _, b := range n.ApprovedRoutes {
			if a == b {
				out = append(out, a)
				break
			}
		}
	}
	return out
}

// Addresses returns the node's tailnet addresses as single-host prefixes.
func (n *Node) Addresses() []netip.Prefix {
	var out []netip.Prefix
	for _, a := range []netip.Addr{n.IPv4, n.IPv6} {
		if a.IsValid() {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return out
}

// Wire converts n to the form the peer map carries. Online is left false;
// the control server sets it.
func (n *Node) Wire() wire.Node {
	addrs := n.Addresses()
	routes := n.EnabledRoutes()
	allowed := append(append([]netip.Prefix(nil), addrs...), routes...)
	return wire.Node{
		ID:         n.ID,
		Name:       n.Name,
		User:       n.User,
		Tags:       append([]string(nil), n.Tags...),
		MachineKey: n.MachineKey,
		NodeKey:    n.NodeKey,
		KeyExpiry:  n.KeyExpiry,
		DiscoKey:   n.DiscoKey,
		Addresses:  addrs,
		AllowedIPs: allowed,
		Endpoints:  append([]netip.AddrPort(nil), n.Endpoints...),
		HomeRegion: n.HomeRegion,
		LastSeen:   n.LastSeen,
		OS:         n.OS,
		Hostinfo:   n.Hostinfo,
		Routes:     routes,
	}
}
