package adminapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"weft/internal/store"
)

// Actor is who makes a request: a user with a role, or the server's
// administrator (User empty), and how they signed in. Every request the
// admin API serves has one; Handler gives socket requests the server's
// administrator, and APIHandler takes it from the request's context,
// where the REST API or the console put it with WithActor.
type Actor struct {
	// User is the signed-in user; empty for the server's administrator.
	User string
	// Role is store.RoleAdmin or store.RoleMember.
	Role string
	// Credential says how the actor signed in, for the audit log:
	// "admin socket", "API key wa…", "console session".
	Credential string
	// Remote is the client's address, for the audit log.
	Remote string
}

// Admin reports whether the actor may administer the whole tailnet.
func (a Actor) Admin() bool { return a.Role == store.RoleAdmin }

// owns reports whether the actor may see and change a node of user
// owner: admins any node, members only their own (never a tagged one).
func (a Actor) owns(owner string) bool { return a.Admin() || (a.User != "" && owner == a.User) }

// socketActor is the actor of every request on the admin socket: only
// the server's owner can open it.
var socketActor = Actor{Role: store.RoleAdmin, Credential: "admin socket", Remote: "local"}

type actorKey struct{}

// WithActor returns ctx carrying the actor of a request, for APIHandler.
func WithActor(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// ActorFrom returns the actor WithActor put in ctx.
func ActorFrom(ctx context.Context) (Actor, bool) {
	a, ok := ctx.Value(actorKey{}).(Actor)
	return a, ok
}

func actor(r *http.Request) Actor {
	a, _ := ActorFrom(r.Context())
	return a
}

// access is who may call an endpoint.
type access int

const (
	// accessAdmin: admins only.
	accessAdmin access = iota
	// accessMember: every signed-in user; the handler shows a member
	// only their own things (nodes, routes, keys, themselves).
	accessMember
	// accessOwnNode: admins, and members for their own {node}; another
	// user's node answers 404 as if it did not exist.
	accessOwnNode
)

// ErrForbidden: the actor's role does not allow the request.
var ErrForbidden = errors.New("adminapi: not allowed")

func forbidden(what string) error {
	return fmt.Errorf("%w: %s needs an admin (a member sees and changes only their own nodes and keys; `weft admin users role NAME admin` makes an admin)", ErrForbidden, what)
}

// guard enforces rt's access and records successful changes in the
// audit log.
func (s *Server) guard(rt Route, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a, ok := ActorFrom(r.Context())
		if !ok {
			writeJSON(w, http.StatusUnauthorized, ErrorReply{Code: CodeUnauthorized, Message: "not signed in"})
			return
		}
		switch rt.access {
		case accessAdmin:
			if !a.Admin() {
				s.fail(w, r, forbidden(rt.Method+" "+rt.Path))
				return
			}
		case accessOwnNode:
			n, err := s.findNode(r)
			if err == nil && !a.owns(n.User) {
				err = fmt.Errorf("%w: no node named %q (`weft admin nodes list` shows them)", store.ErrNotFound, r.PathValue("node"))
			}
			if err != nil {
				s.fail(w, r, err)
				return
			}
		}
		if rt.Action == "" {
			h(w, r)
			return
		}
		s.audited(w, r, rt, a, h)
	}
}

// audited runs h with the audit entry of the request in its context, so
// that the store records it in the transaction of the change
// (store.WithAudit): a change that fails leaves no entry, and an entry
// that cannot be written undoes the change. A change h makes outside the
// store (none today: console links are rows too) is recorded after it,
// on its own.
func (s *Server) audited(w http.ResponseWriter, r *http.Request, rt Route, a Actor, h http.HandlerFunc) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		s.fail(w, r, badRequest("request body: %v", err))
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	e := store.AuditEntry{Actor: a.User, Credential: a.Credential, Remote: a.Remote,
		Action: rt.Action, Target: auditTarget(r), Detail: auditDetail(rt.Action, body)}
	ctx := store.WithAudit(r.Context(), e)
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	h(sw, r.WithContext(ctx))
	if sw.status/100 != 2 || store.AuditRecorded(ctx) {
		return
	}
	if _, err := s.Store.AppendAudit(r.Context(), e); err != nil {
		s.logger().Error("audit log", "action", rt.Action, "err", err)
	}
}

// auditTarget names what the request changed, from its path; a key is
// named by its public prefix even when the path held the whole secret.
func auditTarget(r *http.Request) string {
	var parts []string
	for _, p := range []struct{ name, word string }{{"node", "node"}, {"name", "user"}, {"prefix", "key"}, {"code", "login"}} {
		if v := r.PathValue(p.name); v != "" {
			if p.name == "prefix" {
				v, _, _ = strings.Cut(v, "_")
			}
			parts = append(parts, p.word+" "+v)
		}
	}
	return strings.Join(parts, ", ")
}

// auditDetail is the request body, compacted; policy and DNS files are
// kept in their own history and only sized here.
func auditDetail(action string, body []byte) string {
	if len(body) == 0 {
		return ""
	}
	if action == "policy.set" || action == "dns.set" {
		return fmt.Sprintf("%d bytes", len(body))
	}
	var buf bytes.Buffer
	if json.Compact(&buf, body) != nil {
		return fmt.Sprintf("%d bytes", len(body))
	}
	return buf.String()
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}
