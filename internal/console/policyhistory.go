package console

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"weft/internal/store"
)

// policyHistoryView is the policy's history: every version put in force,
// newest first, and which one is in force.
type policyHistoryView struct {
	Versions []store.PolicyVersion
	Current  int64
}

// policyHistoryPage lists every policy version: when it was set, by
// whom, its size, and a link to read it.
func (s *Server) policyHistoryPage(w http.ResponseWriter, r *http.Request, sess session) {
	pvs, err := s.api.PolicyHistory(r.Context())
	if err != nil {
		s.apiFailure(w, r, sess, err)
		return
	}
	v := policyHistoryView{Versions: slices.Clone(pvs)}
	slices.Reverse(v.Versions)
	if len(v.Versions) > 0 {
		v.Current = v.Versions[0].Version
	}
	s.page(w, r, http.StatusOK, "policyhistory", &pageData{Title: "Policy history", Nav: "policy", CSRF: sess.csrf, Data: v})
}

// policyVersionView is one earlier policy version, read-only.
type policyVersionView struct {
	Version store.PolicyVersion
	SetBy   string
	Body    string
	Current bool
}

// policyVersionPage shows one policy version as it was set. Its
// "Restore" loads it into the editor (/admin/policy?from=N), where Save
// puts it in force again as a new version, through the same checks and
// tests as any policy: an old version that names a user since deleted is
// refused there, with its line marked.
func (s *Server) policyVersionPage(w http.ResponseWriter, r *http.Request, sess session) {
	n, ok := s.policyVersionParam(w, r, sess, r.PathValue("version"))
	if !ok {
		return
	}
	pr, err := s.api.GetPolicy(r.Context(), n)
	if err != nil {
		s.apiFailure(w, r, sess, err)
		return
	}
	cur, err := s.api.GetPolicy(r.Context(), 0)
	if err != nil {
		s.apiFailure(w, r, sess, err)
		return
	}
	pv := store.PolicyVersion{Version: pr.Version, CreatedAt: pr.CreatedAt, Size: len(pr.Body), Author: pr.Author, Credential: pr.Credential}
	s.page(w, r, http.StatusOK, "policyversion", &pageData{Title: fmt.Sprintf("Policy version %d", n), Nav: "policy", CSRF: sess.csrf,
		Data: policyVersionView{Version: pv, SetBy: pv.SetBy(), Body: pr.Body, Current: cur.Version == pr.Version}})
}

// policyVersionParam reads a policy version number from a link; a bad
// one is answered with 400 and ok false.
func (s *Server) policyVersionParam(w http.ResponseWriter, r *http.Request, sess session, v string) (int64, bool) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		s.page(w, r, http.StatusBadRequest, "message", &pageData{Title: "Bad Request", CSRF: sess.csrf,
			Message: fmt.Sprintf("%q is not a policy version: follow a link from the policy's history.", v)})
		return 0, false
	}
	return n, true
}
