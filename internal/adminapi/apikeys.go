package adminapi

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"weft/internal/store"
)

// APIKeyRequest is the body of API key create.
type APIKeyRequest struct {
	// Expiry is how long the key works, counted from when the server
	// receives the request: a Go duration ("720h") or whole days ("90d");
	// empty or "0" means the key never expires.
	Expiry string `json:"expiry,omitempty"`
	// User is the user the key acts for, with their role; empty: the
	// server's administrator.
	User string `json:"user,omitempty"`
}

// APIKeyReply is the reply to API key create: the only time the secret
// is shown.
type APIKeyReply struct {
	Key  string       `json:"key"`
	Info store.APIKey `json:"info"`
}

// ParseExpiry reads a key lifetime: whole days such as "90d", or a Go
// duration such as "720h"; "" and "0" mean never (zero). A negative or
// unreadable lifetime is an error wrapping store.ErrInvalid.
func ParseExpiry(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" {
		return 0, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n <= 0 || n > 100*365 {
			return 0, badRequest("expiry %q: want whole days from 1 to 36500, such as 90d", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, badRequest("expiry %q: want a positive duration such as 90d or 720h, or 0 for never", s)
	}
	return d, nil
}

func (s *Server) listAPIKeys(w http.ResponseWriter, r *http.Request) {
	keys, err := s.Store.ListAPIKeys(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, nonNil(keys))
}

func (s *Server) createAPIKey(w http.ResponseWriter, r *http.Request) {
	var req APIKeyRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	d, err := ParseExpiry(req.Expiry)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var expiry time.Time
	if d > 0 {
		expiry = time.Now().Add(d)
	}
	secret, info, err := s.Store.CreateAPIKey(r.Context(), store.APIKeyRequest{User: req.User, Expiry: expiry})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, APIKeyReply{Key: secret, Info: info})
}

func (s *Server) revokeAPIKey(w http.ResponseWriter, r *http.Request) {
	if err := s.Store.RevokeAPIKey(r.Context(), r.PathValue("prefix")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// CreateAPIKey makes an API key for the REST API; the reply holds the
// secret, shown this once.
func (c *Client) CreateAPIKey(ctx context.Context, req APIKeyRequest) (APIKeyReply, error) {
	var out APIKeyReply
	err := c.do(ctx, http.MethodPost, "/v1/apikeys", req, &out)
	return out, err
}

// ListAPIKeys lists API keys without their secrets.
func (c *Client) ListAPIKeys(ctx context.Context) ([]store.APIKey, error) {
	var out []store.APIKey
	err := c.do(ctx, http.MethodGet, "/v1/apikeys", nil, &out)
	return out, err
}

// RevokeAPIKey revokes the API key with this prefix (or full secret).
func (c *Client) RevokeAPIKey(ctx context.Context, prefix string) error {
	return c.do(ctx, http.MethodPost, "/v1/apikeys/"+url.PathEscape(prefix)+"/revoke", nil, nil)
}
