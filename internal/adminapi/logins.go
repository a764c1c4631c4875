package adminapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"weft/internal/nodelogin"
	"weft/internal/store"
)

// ApproveRequest is the body of login approve: the user the node joins as.
type ApproveRequest struct {
	User string `json:"user"`
}

func (s *Server) logins() (*nodelogin.Manager, error) {
	if s.Logins == nil {
		return nil, fmt.Errorf("%w: this server runs no interactive login", store.ErrNotFound)
	}
	return s.Logins, nil
}

// listLogins serves GET /v1/logins: interactive logins waiting.
func (s *Server) listLogins(w http.ResponseWriter, r *http.Request) {
	m, err := s.logins()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ls, err := m.Pending(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, nonNil(ls))
}

// approveLogin serves POST /v1/logins/{code}/approve: the waiting node,
// at whichever server it waits, receives a one-off pre-auth key of the
// user and joins as them. The approval and its audit entry are one
// transaction.
func (s *Server) approveLogin(w http.ResponseWriter, r *http.Request) {
	m, err := s.logins()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var req ApproveRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.User == "" {
		s.fail(w, r, badRequest("no user: say which user the node joins as (--user NAME)"))
		return
	}
	l, err := m.Approve(r.Context(), r.PathValue("code"), req.User)
	if errors.Is(err, nodelogin.ErrUnknown) {
		err = fmt.Errorf("%w: no login waiting with code %s: unknown, already approved or expired (`weft admin nodes pending` lists them)", store.ErrNotFound, r.PathValue("code"))
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, l)
}

// PendingLogins lists interactive logins waiting for approval.
func (c *Client) PendingLogins(ctx context.Context) ([]nodelogin.Login, error) {
	var out []nodelogin.Login
	err := c.do(ctx, http.MethodGet, "/v1/logins", nil, &out)
	return out, err
}

// ApproveLogin approves the interactive login code for user.
func (c *Client) ApproveLogin(ctx context.Context, code, user string) (nodelogin.Login, error) {
	var out nodelogin.Login
	err := c.do(ctx, http.MethodPost, "/v1/logins/"+url.PathEscape(code)+"/approve", ApproveRequest{User: user}, &out)
	return out, err
}
