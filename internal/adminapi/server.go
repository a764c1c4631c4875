package adminapi

import (
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
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"weft/internal/nodelogin"
	"weft/internal/ownersock"
	"weft/internal/store"
	"weft/internal/wire"
)

// maxBody bounds request bodies: admin requests are a few hundred bytes,
// a DNS settings file at most 1 MiB before JSON escaping.
const maxBody = 4 << 20

// Server serves the admin API for one store. Set the fields, then call
// Serve; a Server serves once.
type Server struct {
	// Store is required.
	Store store.Store
	// Notifier is told which nodes each action changed; nil means no one
	// is told (tests, or a server without live streams).
	Notifier Notifier
	// Online reports whether a node is connected now; nil leaves
	// Node.Online unset in replies.
	Online func(wire.NodeID) bool
	// Health gives the health samples nodes reported; nil answers every
	// node's health with an empty table.
	Health HealthSource
	// Console makes login links for the web console; nil answers
	// console-link with not found.
	Console ConsoleLinker
	// Logins are the interactive node logins waiting for approval; nil
	// answers the login endpoints with not found.
	Logins *nodelogin.Manager
	// Logger receives one line per failed request; nil discards.
	Logger *slog.Logger

	mu  sync.Mutex
	srv *http.Server // set by Serve
}

// Serve listens on the unix socket at path and serves until ctx is done
// or Shutdown is called; then it returns nil. A stale socket file left by
// a crashed server is removed; a live one (another server answering) is an
// error. The socket is owner-only (0600) from the moment it is reachable:
// it is created in a fresh 0700 directory beside path, chmodded there, and
// then renamed into place, which avoids touching the process-wide umask.
func (s *Server) Serve(ctx context.Context, path string) error {
	ln, err := Listen(path)
	if err != nil {
		return err
	}
	return s.ServeListener(ctx, ln, path)
}

// Listen opens the admin socket at path, owner-only. A server that must
// not look ready before `weft admin` can reach it (weft server answers
// /healthz only after this) listens first and then calls ServeListener.
func Listen(path string) (net.Listener, error) { return listenPrivate(path) }

// ServeListener is Serve on a socket opened by Listen at path; it removes
// the socket file when it returns.
func (s *Server) ServeListener(ctx context.Context, ln net.Listener, path string) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	s.mu.Lock()
	if s.srv != nil {
		s.mu.Unlock()
		ln.Close()
		os.Remove(path)
		return errors.New("adminapi: Serve called twice")
	}
	s.srv = srv
	s.mu.Unlock()

	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	})
	defer stop()
	err := srv.Serve(ln)
	os.Remove(path)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("adminapi: serving %s: %w", path, err)
}

// Shutdown stops the server gracefully, waiting for requests in flight
// until ctx is done. It is a no-op before Serve.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	return srv.Shutdown(ctx)
}

func listenPrivate(path string) (net.Listener, error) {
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("adminapi: another server is already listening on %s", path)
	}
	if fi, err := os.Lstat(path); err == nil {
		// Only ever remove a socket: a regular file of that name is
		// someone's data, not a leftover of ours.
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("adminapi: %s exists and is not a socket; move it away", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("adminapi: removing stale socket: %w", err)
		}
	}
	ln, err := ownersock.Listen(path)
	if err != nil {
		return nil, fmt.Errorf("adminapi: %w", err)
	}
	return ln, nil
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func (s *Server) changed(id wire.NodeID) {
	if s.Notifier != nil {
		s.Notifier.NodeChanged(id)
	}
}

func (s *Server) removed(id wire.NodeID) {
	if s.Notifier != nil {
		s.Notifier.NodeRemoved(id)
	}
}

func (s *Server) node(n store.Node) Node {
	out := Node{Node: n}
	if s.Online != nil {
		on := s.Online(n.ID)
		out.Online = &on
	}
	return out
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// fail replies with err, mapped to a status and code.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code, status := CodeInternal, http.StatusInternalServerError
	for _, c := range codeErrors {
		if errors.Is(err, c.err) {
			code, status = c.code, c.status
			break
		}
	}
	msg := humanMessage(err)
	if status == http.StatusInternalServerError {
		// The full chain is for the server's log; the person gets it
		// too, as there is nothing secret in it and it helps a report.
		s.logger().Error("admin request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		msg = err.Error()
		if store.Full(err) {
			msg = "the server's disk is full, so nothing was saved; free space in its data directory and try again (" + msg + ")"
		}
	}
	writeJSON(w, status, ErrorReply{Code: code, Message: msg})
}

// humanMessage drops the "store: Op: " context from a store error for
// people, who need the reason, not the call chain: "store: CreateUser:
// store: already exists: user \"alice\"" becomes "already exists: user
// \"alice\"".
func humanMessage(err error) string {
	msg := err.Error()
	for _, c := range codeErrors {
		if errors.Is(err, c.err) {
			if i := strings.Index(msg, c.err.Error()); i >= 0 {
				return strings.TrimPrefix(strings.TrimPrefix(msg[i:], "store: "), "adminapi: ")
			}
		}
	}
	return msg
}

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{store.ErrInvalid}, args...)...)
}

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("request body: %v", err)
	}
	return nil
}

// findNode resolves a node reference: "id:N" or all digits is a node ID
// (no node name is all digits), anything else a name. A node named with
// digits before such names were refused is still found by name when no
// node has that ID, and a reference both could mean is refused.
func (s *Server) findNode(r *http.Request) (store.Node, error) {
	ref := r.PathValue("node")
	id, isID := store.IsNodeIDRef(ref)
	if !isID {
		n, err := s.Store.GetNodeByName(r.Context(), ref)
		if errors.Is(err, store.ErrNotFound) {
			return n, fmt.Errorf("%w: no node named %q (`weft admin nodes list` shows them)", store.ErrNotFound, ref)
		}
		return n, err
	}
	n, err := s.Store.GetNode(r.Context(), wire.NodeID(id))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return n, err
	}
	if strings.HasPrefix(ref, "id:") {
		if err != nil {
			return n, fmt.Errorf("%w: no node with ID %d (`weft admin nodes list` shows them)", store.ErrNotFound, id)
		}
		return n, nil
	}
	named, nerr := s.Store.GetNodeByName(r.Context(), ref)
	switch {
	case nerr == nil && err == nil && named.ID != n.ID:
		return store.Node{}, fmt.Errorf("%w: %q is node %d's ID and node %d's name; say id:%d, and rename node %d (`weft admin nodes rename id:%d NEW-NAME`)",
			store.ErrInvalid, ref, n.ID, named.ID, n.ID, named.ID, named.ID)
	case err == nil:
		return n, nil
	case nerr == nil:
		return named, nil
	case !errors.Is(nerr, store.ErrNotFound):
		return named, nerr
	}
	return store.Node{}, fmt.Errorf("%w: no node with ID %s (`weft admin nodes list` shows them)", store.ErrNotFound, ref)
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) {
	users, err := s.Store.ListUsers(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if a := actor(r); !a.Admin() {
		users = slices.DeleteFunc(users, func(u store.User) bool { return u.Name != a.User })
	}
	writeJSON(w, http.StatusOK, nonNil(users))
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request) {
	var req NameRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	u, err := s.Store.CreateUser(r.Context(), req.Name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, u)
}

func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request) {
	// DeleteUser refuses while the user owns nodes, so no node changes.
	if err := s.Store.DeleteUser(r.Context(), r.PathValue("name")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request) {
	user, err := ownUser(actor(r), r.URL.Query().Get("user"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	keys, err := s.Store.ListAuthKeys(r.Context(), user)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, nonNil(keys))
}

func (s *Server) createKey(w http.ResponseWriter, r *http.Request) {
	var err error
	var req KeyRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if a := actor(r); !a.Admin() {
		if req.User, err = ownUser(a, req.User); err != nil || len(req.Tags) > 0 {
			s.fail(w, r, forbidden("a pre-auth key with tags or for another user"))
			return
		}
	}
	var expiry time.Time
	if req.Expiry != "" && req.Expiry != "0" {
		d, err := time.ParseDuration(req.Expiry)
		if err != nil || d <= 0 {
			s.fail(w, r, badRequest("expiry %q: want a positive duration such as 1h or 720h, or 0 for never", req.Expiry))
			return
		}
		expiry = time.Now().Add(d)
	}
	if err := s.checkKeyTags(r.Context(), req.User, req.Tags); err != nil {
		s.fail(w, r, err)
		return
	}
	secret, info, err := s.Store.CreateAuthKey(r.Context(), store.AuthKeyRequest{
		User: req.User, Reusable: req.Reusable, Ephemeral: req.Ephemeral, Tags: req.Tags, Expiry: expiry,
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, KeyReply{Key: secret, Info: info})
}

func (s *Server) expireKey(w http.ResponseWriter, r *http.Request) {
	if err := s.ownKey(r); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.Store.ExpireAuthKey(r.Context(), r.PathValue("prefix")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) listNodes(w http.ResponseWriter, r *http.Request) {
	q, err := parseNodeQuery(r.URL.Query())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if q.User, err = ownUser(actor(r), q.User); err != nil {
		s.fail(w, r, err)
		return
	}
	l, err := s.listNodePage(r.Context(), q)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if l.next != 0 {
		w.Header().Set(NextAfterHeader, strconv.FormatInt(int64(l.next), 10))
	}
	w.Header().Set(TotalHeader, strconv.Itoa(l.matched))
	out := make([]Node, 0, len(l.nodes))
	for _, n := range l.nodes {
		out = append(out, s.node(n))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getNode(w http.ResponseWriter, r *http.Request) {
	n, err := s.findNode(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.node(n))
}

// nodeAction resolves the node, runs fn on it, notifies, and replies with
// the node as fn left it.
func (s *Server) nodeAction(w http.ResponseWriter, r *http.Request, fn func(n store.Node) (store.Node, error)) {
	n, err := s.findNode(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	n, err = fn(n)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.changed(n.ID)
	writeJSON(w, http.StatusOK, s.node(n))
}

func (s *Server) renameNode(w http.ResponseWriter, r *http.Request) {
	var req NameRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	s.nodeAction(w, r, func(n store.Node) (store.Node, error) {
		return s.Store.RenameNode(r.Context(), n.ID, req.Name)
	})
}

func (s *Server) expireNode(w http.ResponseWriter, r *http.Request) {
	s.nodeAction(w, r, func(n store.Node) (store.Node, error) {
		return s.Store.ExpireNode(r.Context(), n.ID)
	})
}

func (s *Server) deleteNode(w http.ResponseWriter, r *http.Request) {
	n, err := s.findNode(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.Store.DeleteNode(r.Context(), n.ID); err != nil {
		s.fail(w, r, err)
		return
	}
	s.removed(n.ID)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) listRoutes(w http.ResponseWriter, r *http.Request) {
	rs, err := s.Store.ListRoutes(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if a := actor(r); !a.Admin() {
		// A member's own node IDs alone, not every node read whole.
		mine := map[wire.NodeID]bool{}
		if a.User != "" {
			ids, err := s.Store.ListNodeIDs(r.Context(), store.NodePage{User: a.User})
			if err != nil {
				s.fail(w, r, err)
				return
			}
			for _, id := range ids {
				mine[id] = true
			}
		}
		rs = slices.DeleteFunc(rs, func(rt store.Route) bool { return !mine[rt.NodeID] })
	}
	writeJSON(w, http.StatusOK, nonNil(rs))
}

// nodeRoutes serves one node's routes, read from the store by the node
// alone: a page about one node (the console's) need not read the routes
// of the whole tailnet.
func (s *Server) nodeRoutes(w http.ResponseWriter, r *http.Request) {
	n, err := s.findNode(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	rs, err := s.Store.ListNodeRoutes(r.Context(), n.ID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, nonNil(rs))
}

func (s *Server) approveRoutes(w http.ResponseWriter, r *http.Request) {
	s.routeAction(w, r, s.Store.ApproveRoute)
}

func (s *Server) rejectRoutes(w http.ResponseWriter, r *http.Request) {
	s.routeAction(w, r, s.Store.RejectRoute)
}

// routeAction applies op to the request's prefixes, all or none, in one
// transaction.
func (s *Server) routeAction(w http.ResponseWriter, r *http.Request,
	op func(context.Context, wire.NodeID, ...netip.Prefix) (store.Node, error)) {
	var req RoutesRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if len(req.Prefixes) == 0 {
		s.fail(w, r, badRequest("no prefixes given"))
		return
	}
	s.nodeAction(w, r, func(n store.Node) (store.Node, error) {
		return op(r.Context(), n.ID, req.Prefixes...)
	})
}

// nonNil makes empty lists encode as [] rather than null, for scripts.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// ownUser is the user a list or a new key is for: what was asked for an
// admin; for a member, themselves (asking for another user is refused).
func ownUser(a Actor, asked string) (string, error) {
	if a.Admin() {
		return asked, nil
	}
	if asked != "" && asked != a.User {
		return "", forbidden("another user's nodes and keys")
	}
	return a.User, nil
}

// ownKey refuses a member's change to a pre-auth key that is not theirs,
// as not found.
func (s *Server) ownKey(r *http.Request) error {
	a := actor(r)
	if a.Admin() {
		return nil
	}
	prefix, _, _ := strings.Cut(strings.TrimSpace(r.PathValue("prefix")), "_")
	keys, err := s.Store.ListAuthKeys(r.Context(), a.User)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if k.Prefix == prefix {
			return nil
		}
	}
	return fmt.Errorf("%w: no pre-auth key %s of yours (`weft admin keys list`)", store.ErrNotFound, prefix)
}

// RoleRequest is the body of user role.
type RoleRequest struct {
	Role string `json:"role"`
}

func (s *Server) setUserRole(w http.ResponseWriter, r *http.Request) {
	var req RoleRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	u, err := s.Store.SetUserRole(r.Context(), r.PathValue("name"), req.Role)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, u)
}
