package adminapi

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"weft/internal/store"
)

// NextBeforeHeader is set on an audit log page that has older entries
// after it; its value is the before= of the next page.
const NextBeforeHeader = "Weft-Next-Before"

// listAudit serves GET /v1/audit?limit=N&before=ID, newest first.
func (s *Server) listAudit(w http.ResponseWriter, r *http.Request) {
	q, err := parseAuditQuery(r.URL.Query())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	want := q.Limit
	if want > 0 {
		q.Limit++ // one more, to know whether a next page exists
	}
	es, err := s.Store.ListAudit(r.Context(), q)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if want > 0 && len(es) > want {
		es = es[:want]
		w.Header().Set(NextBeforeHeader, strconv.FormatInt(es[want-1].ID, 10))
	}
	writeJSON(w, http.StatusOK, nonNil(es))
}

func parseAuditQuery(v url.Values) (store.AuditQuery, error) {
	var q store.AuditQuery
	for k := range v {
		if k != "limit" && k != "before" {
			return q, badRequest("unknown query parameter %q: the audit log takes limit and before", k)
		}
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxPageSize {
			return q, badRequest("limit %q: want a whole number from 1 to %d", s, MaxPageSize)
		}
		q.Limit = n
	}
	if s := v.Get("before"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 {
			return q, badRequest("before %q: want the entry ID from the %s header of the previous page", s, NextBeforeHeader)
		}
		q.Before = n
	}
	return q, nil
}

// Audit lists the audit log, newest first: at most limit entries (0: all)
// older than before (0: from the newest).
func (c *Client) Audit(ctx context.Context, limit int, before int64) ([]store.AuditEntry, error) {
	v := url.Values{}
	if limit > 0 {
		v.Set("limit", strconv.Itoa(limit))
	}
	if before > 0 {
		v.Set("before", strconv.FormatInt(before, 10))
	}
	p := "/v1/audit"
	if len(v) > 0 {
		p += "?" + v.Encode()
	}
	var out []store.AuditEntry
	err := c.do(ctx, http.MethodGet, p, nil, &out)
	return out, err
}

// SetUserRole makes a user an admin or a member.
func (c *Client) SetUserRole(ctx context.Context, name, role string) (store.User, error) {
	var u store.User
	err := c.do(ctx, http.MethodPost, "/v1/users/"+url.PathEscape(name)+"/role", RoleRequest{Role: role}, &u)
	return u, err
}
