package adminapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"weft/internal/policy"
	"weft/internal/store"
	"weft/internal/wire"
)

// PolicyNotifier is told when a new policy is in force. The control
// server implements it beside Notifier; a Notifier that does not is not
// told (the policy then applies from the server's next start).
type PolicyNotifier interface {
	PolicyChanged(p *policy.Policy)
}

// PolicyRequest is the body of policy set and check: the file as written.
type PolicyRequest struct {
	Body string `json:"body"`
}

// PolicyReply describes a policy version. None is set, and the rest
// empty, when the tailnet has no policy: everything is allowed.
type PolicyReply struct {
	None      bool      `json:"none,omitempty"`
	Version   int64     `json:"version,omitempty"`
	CreatedAt time.Time `json:"created_at,omitzero"`
	Body      string    `json:"body,omitempty"`
	// Author and Credential say who set the version (see
	// store.PolicyVersion); absent when not known.
	Author     string `json:"author,omitempty"`
	Credential string `json:"credential,omitempty"`
}

// CheckPolicy parses a policy file and checks it against the tailnet in
// st: syntax, references (users and node names must exist) and its tests.
// It returns the parsed policy, or an error wrapping store.ErrInvalid
// that gives the line and column of the mistake.
func CheckPolicy(ctx context.Context, st store.Store, body []byte) (*policy.Policy, error) {
	p, err := policy.Parse(body)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", store.ErrInvalid, err)
	}
	users, err := st.ListUsers(ctx)
	if err != nil {
		return nil, err
	}
	nodes, err := st.ListNodes(ctx)
	if err != nil {
		return nil, err
	}
	d := directory{users: map[string]bool{}, nodes: map[string]bool{}}
	for _, u := range users {
		d.users[u.Name] = true
	}
	wn := make([]*wire.Node, 0, len(nodes))
	for i := range nodes {
		d.nodes[nodes[i].Name] = true
		w := nodes[i].Wire()
		wn = append(wn, &w)
	}
	if err := p.Check(d); err != nil {
		return nil, fmt.Errorf("%w: %w", store.ErrInvalid, err)
	}
	if err := p.RunTests(wn); err != nil {
		return nil, fmt.Errorf("%w: the policy's tests fail:\n%w", store.ErrInvalid, err)
	}
	return p, nil
}

type directory struct{ users, nodes map[string]bool }

func (d directory) HasUser(n string) bool { return d.users[n] }
func (d directory) HasNode(n string) bool { return d.nodes[n] }

// SetPolicy checks body as CheckPolicy does and, if it passes, keeps it
// as the new version in force, set by the context's Actor (the policy's
// history names them). A refused policy changes nothing.
func SetPolicy(ctx context.Context, st store.Store, body []byte) (*policy.Policy, store.PolicyVersion, error) {
	p, err := CheckPolicy(ctx, st, body)
	if err != nil {
		return nil, store.PolicyVersion{}, err
	}
	a, _ := ActorFrom(ctx)
	pv, err := st.AddPolicy(ctx, store.PolicyVersion{Body: body, Author: a.User, Credential: a.Credential})
	if err != nil {
		return nil, store.PolicyVersion{}, err
	}
	return p, pv, nil
}

// CurrentPolicy returns the policy in force, or nil when there is none.
// A stored policy that no longer parses (written by another weft build)
// is an error, never "no policy".
func CurrentPolicy(ctx context.Context, st store.Store) (*policy.Policy, error) {
	pv, err := st.GetPolicy(ctx, 0)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	p, err := policy.Parse(pv.Body)
	if err != nil {
		return nil, fmt.Errorf("policy version %d in the store does not parse: %w", pv.Version, err)
	}
	return p, nil
}

func (s *Server) getPolicy(w http.ResponseWriter, r *http.Request) {
	var v int64
	if q := r.URL.Query().Get("version"); q != "" {
		n, err := strconv.ParseInt(q, 10, 64)
		if err != nil || n <= 0 {
			s.fail(w, r, badRequest("version %q: want a positive number from `weft admin policy history`", q))
			return
		}
		v = n
	}
	pv, err := s.Store.GetPolicy(r.Context(), v)
	if v == 0 && errors.Is(err, store.ErrNotFound) {
		writeJSON(w, http.StatusOK, PolicyReply{None: true})
		return
	} else if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, PolicyReply{Version: pv.Version, CreatedAt: pv.CreatedAt, Body: string(pv.Body),
		Author: pv.Author, Credential: pv.Credential})
}

func (s *Server) setPolicy(w http.ResponseWriter, r *http.Request) {
	var req PolicyRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	p, pv, err := SetPolicy(r.Context(), s.Store, []byte(req.Body))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if pn, ok := s.Notifier.(PolicyNotifier); ok {
		pn.PolicyChanged(p)
	}
	writeJSON(w, http.StatusOK, PolicyReply{Version: pv.Version, CreatedAt: pv.CreatedAt})
}

func (s *Server) checkPolicy(w http.ResponseWriter, r *http.Request) {
	var req PolicyRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if _, err := CheckPolicy(r.Context(), s.Store, []byte(req.Body)); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) policyHistory(w http.ResponseWriter, r *http.Request) {
	pvs, err := s.Store.ListPolicies(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, nonNil(pvs))
}

// TagsRequest is the body of node tag.
type TagsRequest struct {
	Tags []string `json:"tags"`
}

// tagNode makes a node owned by tags. With a policy in force each tag
// must be one its tagOwners define.
func (s *Server) tagNode(w http.ResponseWriter, r *http.Request) {
	var req TagsRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	p, err := CurrentPolicy(r.Context(), s.Store)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	for _, t := range req.Tags {
		if p != nil && !p.DefinesTag(t) {
			s.fail(w, r, badRequest("tag %q is not in the policy's tagOwners; add it there first (weft admin policy set)", t))
			return
		}
	}
	s.nodeAction(w, r, func(n store.Node) (store.Node, error) {
		return s.Store.SetNodeTags(r.Context(), n.ID, req.Tags)
	})
}

// checkKeyTags refuses a tagged key whose user may not apply its tags
// under the policy in force. With no policy every user may apply any tag.
func (s *Server) checkKeyTags(ctx context.Context, user string, tags []string) error {
	if len(tags) == 0 {
		return nil
	}
	p, err := CurrentPolicy(ctx, s.Store)
	if err != nil || p == nil {
		return err
	}
	for _, t := range tags {
		if !p.MayApplyTag(user, t) {
			return badRequest("user %q may not apply %s: the policy's tagOwners do not name them (or a group of theirs) for it", user, t)
		}
	}
	return nil
}

// GetPolicy returns the policy in force (version 0) or an old version.
func (c *Client) GetPolicy(ctx context.Context, version int64) (PolicyReply, error) {
	p := "/v1/policy"
	if version > 0 {
		p += "?version=" + strconv.FormatInt(version, 10)
	}
	var r PolicyReply
	err := c.do(ctx, http.MethodGet, p, nil, &r)
	return r, err
}

// SetPolicy checks and applies a policy file.
func (c *Client) SetPolicy(ctx context.Context, body []byte) (PolicyReply, error) {
	var r PolicyReply
	err := c.do(ctx, http.MethodPost, "/v1/policy", PolicyRequest{Body: string(body)}, &r)
	return r, err
}

// CheckPolicy checks a policy file without applying it.
func (c *Client) CheckPolicy(ctx context.Context, body []byte) error {
	return c.do(ctx, http.MethodPost, "/v1/policy/check", PolicyRequest{Body: string(body)}, nil)
}

// PolicyHistory lists every accepted policy version.
func (c *Client) PolicyHistory(ctx context.Context) ([]store.PolicyVersion, error) {
	var pvs []store.PolicyVersion
	err := c.do(ctx, http.MethodGet, "/v1/policy/history", nil, &pvs)
	return pvs, err
}

// TagNode makes the node ref owned by tags.
func (c *Client) TagNode(ctx context.Context, ref string, tags []string) (Node, error) {
	var n Node
	err := c.do(ctx, http.MethodPost, "/v1/nodes/"+url.PathEscape(ref)+"/tags", TagsRequest{Tags: tags}, &n)
	return n, err
}
