// Package adminapi is the administration API of the control server: HTTP
// with JSON bodies over a unix socket in the server's data directory, so
// that only the server's owner (who can open the socket) administers it and
// nothing is exposed on the network. weft server mounts a Server; weft
// admin talks to it with a Client.
//
// Endpoints (all under /v1):
//
//	GET    /users                      list users
//	POST   /users           {name}     create a user
//	DELETE /users/{name}               delete a user (refused while they own nodes)
//	GET    /keys[?user=U]              list pre-auth keys
//	POST   /keys            KeyRequest create a key; the reply holds the secret, once
//	POST   /keys/{prefix}/expire       expire a key
//	GET    /nodes                      list nodes
//	GET    /nodes/{node}               one node, by name or ID
//	POST   /nodes/{node}/rename {name} rename
//	POST   /nodes/{node}/expire        expire the node key
//	DELETE /nodes/{node}               delete
//	GET    /nodes/{node}/health[?since=D&peer=P]  health table
//	GET    /nodes/{node}/health/samples[?since=D] health samples, for plots
//	GET    /routes                     list routes
//	POST   /nodes/{node}/routes/approve {prefixes}
//	POST   /nodes/{node}/routes/reject  {prefixes}
//	POST   /nodes/{node}/tags  {tags}  make the node owned by tags
//	GET    /policy[?version=N]         the policy in force, or an old version
//	POST   /policy          {body}     check and apply a policy (refused: nothing changes)
//	POST   /policy/check    {body}     check a policy without applying it
//	GET    /policy/history             every accepted version
//	POST   /users/{name}/role {role}  make a user an admin or a member
//	POST   /keys/{prefix}/revoke       the same as expire
//	GET    /audit[?limit=N&before=ID] the audit log, newest first
//	GET    /apikeys                    list API keys of the REST API
//	POST   /apikeys  APIKeyRequest     create one; the reply holds the secret, once
//	POST   /apikeys/{prefix}/revoke    revoke one for good
//	POST   /console-link               a one-time login link to the web console
//
// Routes in routes.go is the table of these endpoints, with who may call
// each (see Actor) and the audit action each change records.
//
// Errors come back as an ErrorReply with a status code; the Client turns
// them into *Error values that unwrap to the store's sentinel errors.
package adminapi

import (
	"errors"
	"net/netip"
	"path/filepath"

	"weft/internal/store"
	"weft/internal/wire"
)

// SocketPath is where the admin socket of the server with data directory
// dataDir lives.
func SocketPath(dataDir string) string { return filepath.Join(dataDir, "admin.sock") }

// Notifier is told about every node an admin action changed, so the control
// server can reload it from the store and send peers a delta. The control
// server implements it; its methods must not block for long.
type Notifier interface {
	// NodeChanged: the node's stored state changed (name, key expiry,
	// routes); reload it.
	NodeChanged(id wire.NodeID)
	// NodeRemoved: the node was deleted; drop it and close its stream.
	NodeRemoved(id wire.NodeID)
	// DNSChanged: the tailnet's DNS settings changed; reload and send them.
	DNSChanged()
}

// NameRequest is the body of user create and node rename.
type NameRequest struct {
	Name string `json:"name"`
}

// KeyRequest is the body of key create.
type KeyRequest struct {
	User      string   `json:"user"`
	Reusable  bool     `json:"reusable,omitempty"`
	Ephemeral bool     `json:"ephemeral,omitempty"`
	Tags      []string `json:"tags,omitempty"`
	// Expiry is a Go duration ("24h") counted from when the server
	// receives the request; empty or "0" means the key never expires.
	Expiry string `json:"expiry,omitempty"`
}

// KeyReply is the reply to key create: the only time the secret is shown.
type KeyReply struct {
	Key  string        `json:"key"`
	Info store.AuthKey `json:"info"`
}

// Node is a node as the admin API shows it: the stored node plus whether
// it is connected now, which only the running server knows.
type Node struct {
	store.Node
	// Online is nil when the server does not track presence.
	Online *bool `json:"online,omitempty"`
}

// RoutesRequest is the body of route approve and reject.
type RoutesRequest struct {
	Prefixes []netip.Prefix `json:"prefixes"`
}

// ErrorReply is the body of every non-2xx reply.
type ErrorReply struct {
	Code    string `json:"code"`    // one of the Code* constants
	Message string `json:"message"` // for people
}

// Error codes, each tied to a store sentinel.
const (
	CodeNotFound  = "not_found"
	CodeExists    = "exists"
	CodeInvalid   = "invalid"
	CodeUserInUse = "user_in_use"
	CodeInternal  = "internal"
	// CodeForbidden: the actor's role does not allow the request.
	CodeForbidden = "forbidden"
	// CodeUnauthorized: no signed-in actor (the REST API: no live key).
	CodeUnauthorized = "unauthorized"
)

var codeErrors = []struct {
	code   string
	err    error
	status int
}{
	{CodeNotFound, store.ErrNotFound, 404},
	{CodeExists, store.ErrExists, 409},
	{CodeUserInUse, store.ErrUserInUse, 409},
	{CodeInvalid, store.ErrInvalid, 400},
	{CodeForbidden, ErrForbidden, 403},
}

// Error is an error the server reported.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

// Unwrap returns the store sentinel matching the code, so callers can use
// errors.Is(err, store.ErrNotFound).
func (e *Error) Unwrap() error {
	for _, c := range codeErrors {
		if c.code == e.Code {
			return c.err
		}
	}
	return nil
}

// ErrServerNotRunning is returned by Client methods when nothing answers
// on the socket.
var ErrServerNotRunning = errors.New("adminapi: the control server is not running")
