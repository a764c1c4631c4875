// Package restapi serves weft's REST API under /api/v1 on the control
// server's port. It is the admin API (internal/adminapi, the same
// endpoints and JSON as on the admin socket) behind authentication with
// an API key: every request carries "Authorization: Bearer KEY", checked
// against the store, and gets 401 without a live key. API key management
// itself stays on the admin socket (`weft admin apikeys`), so a leaked key
// cannot mint more keys. docs/api.md describes the endpoints.
package restapi

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"weft/internal/adminapi"
	"weft/internal/store"
)

// Prefix is where the API is mounted on the server's mux.
const Prefix = "/api/v1/"

// MaxBody bounds request bodies. The largest legitimate one is a policy
// or DNS settings file; 1 MiB is far above either in practice.
const MaxBody = 1 << 20

// CodeUnauthorized and CodeTooLarge are the ErrorReply codes this layer
// adds to the admin API's.
const (
	CodeUnauthorized = adminapi.CodeUnauthorized
	CodeTooLarge     = "too_large"
)

// Handler authenticates requests and hands them to the admin API. Mount
// it at "/api/" on the server's mux.
type Handler struct {
	// Store checks API keys; required.
	Store store.Store
	// Admin is the admin API's handler for signed-in actors
	// (adminapi.Server.APIHandler), which serves the paths below /v1/;
	// required.
	Admin http.Handler
	// Logger receives a line per refused key check that was not the
	// client's fault; nil discards.
	Logger *slog.Logger
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if !strings.HasPrefix(r.URL.Path, Prefix) {
		reply(w, http.StatusNotFound, adminapi.CodeNotFound, "no such endpoint: the API is under "+Prefix+" (docs/api.md)")
		return
	}
	a, ok := h.authenticated(w, r)
	if !ok {
		return
	}
	if localOnly(strings.TrimPrefix(r.URL.Path, Prefix)) {
		reply(w, http.StatusNotFound, adminapi.CodeNotFound,
			"API keys and console login links are made only on the server's machine: run `weft admin apikeys` or `weft admin console-link` there")
		return
	}
	if r.ContentLength > MaxBody {
		reply(w, http.StatusRequestEntityTooLarge, CodeTooLarge, "request body over 1 MiB: nothing was changed")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
	r = r.WithContext(adminapi.WithActor(r.Context(), a))
	http.StripPrefix("/api", h.Admin).ServeHTTP(w, r)
}

// localOnly reports whether path (below /api/v1/) is one of the admin
// endpoints served only on the socket: minting credentials.
func localOnly(rest string) bool {
	for _, p := range []string{"apikeys", "console-link"} {
		if rest == p || strings.HasPrefix(rest, p+"/") {
			return true
		}
	}
	return false
}

// authenticated checks the bearer key and answers 401 when it is missing
// or not live. Which of unknown, wrong, expired or revoked it was is not
// told to the client. A live key acts for its user with the user's role,
// or for the server's administrator when it has no user.
func (h *Handler) authenticated(w http.ResponseWriter, r *http.Request) (adminapi.Actor, bool) {
	auth := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		unauthorized(w, "missing API key: send Authorization: Bearer KEY (make a key with `weft admin apikeys create`)")
		return adminapi.Actor{}, false
	}
	k, err := h.Store.CheckAPIKey(r.Context(), tok)
	if err != nil {
		if !errors.Is(err, store.ErrAPIKeyInvalid) {
			h.logger().Error("checking API key", "err", err)
			reply(w, http.StatusInternalServerError, adminapi.CodeInternal, "could not check the API key; see the server's log")
			return adminapi.Actor{}, false
		}
		unauthorized(w, "API key not valid: unknown, expired or revoked (`weft admin apikeys list` on the server shows keys)")
		return adminapi.Actor{}, false
	}
	a := adminapi.Actor{User: k.User, Role: store.RoleAdmin, Credential: "API key " + k.Prefix, Remote: r.RemoteAddr}
	if k.User != "" {
		u, err := h.Store.GetUser(r.Context(), k.User)
		if err != nil {
			h.logger().Error("reading an API key's user", "key", k.Prefix, "err", err)
			reply(w, http.StatusInternalServerError, adminapi.CodeInternal, "could not read the API key's user; see the server's log")
			return adminapi.Actor{}, false
		}
		a.Role = u.Role
	}
	return a, true
}

func (h *Handler) logger() *slog.Logger {
	if h.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return h.Logger
}

func unauthorized(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="weft"`)
	reply(w, http.StatusUnauthorized, CodeUnauthorized, msg)
}

func reply(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(adminapi.ErrorReply{Code: code, Message: msg})
}
