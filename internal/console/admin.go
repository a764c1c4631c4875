package console

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"weft/internal/adminapi"
	"weft/internal/store"
)

// Notices shown after a change, by the ?done= of the redirect that
// follows it. Only these fixed texts can appear: a link cannot make the
// console say anything else.
var notices = map[string]string{
	"user-created":   "User created.",
	"role-set":       "Role changed.",
	"node-renamed":   "Node renamed: its peers see the new name within seconds.",
	"node-expired":   "Node key expired: the node must sign in again (weft up) to rejoin, and its peers drop it now.",
	"node-tagged":    "Tags set: the node now belongs to its tags, not a user, and its key does not expire.",
	"node-deleted":   "Node deleted: it can rejoin only with a new pre-auth key or login.",
	"routes-approve": "Approved: the node's peers receive the route within seconds.",
	"routes-reject":  "Approval withdrawn: the node's peers stop using the route within seconds.",
	"user-deleted":   "User deleted.",
	"key-expired":    "Key revoked: it can no longer register a node.",
	"policy-saved":   "Policy saved: its checks and tests passed, and nodes receive it now.",
	"dns-saved":      "DNS settings saved: nodes receive them now.",
	"login-approved": "Approved: the machine joins as that user as soon as its weft up asks again (within seconds).",
}

// rerender shows a form's page again at status, with refusal above it
// and the form holding what was posted.
type rerender func(w http.ResponseWriter, r *http.Request, sess session, status int, refusal string)

// finish ends a form's POST whose change the admin API made or refused
// (err): done, it sends the browser to page with the notice for what;
// refused, it shows the form's page again with the reason.
func (s *Server) finish(w http.ResponseWriter, r *http.Request, sess session, err error, again rerender, page, what string) {
	if err != nil {
		s.refuse(w, r, sess, err, again)
		return
	}
	done(w, r, page, what)
}

// refuse shows the form's page again with the admin API's refusal, at
// its status; a failure of the server (5xx) also goes to the log.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, sess session, err error, again rerender) {
	status, msg := apiError(err)
	if status >= 500 {
		s.logger().Error("console: admin API", "path", r.URL.Path, "err", err)
	}
	again(w, r, sess, status, msg)
}

// done redirects to page ("" for the nodes page) with the notice for
// what was done.
func done(w http.ResponseWriter, r *http.Request, page, what string) {
	http.Redirect(w, r, Prefix+page+"?done="+what, http.StatusSeeOther)
}

// usersView is the users page; Name is what was typed in the add form
// when adding was refused.
type usersView struct {
	Users []store.User
	Name  string
}

func (s *Server) usersPage(w http.ResponseWriter, r *http.Request, sess session) {
	s.renderUsers(w, r, sess, http.StatusOK, "")
}

// renderUsers shows the users page at status, with refusal above it and
// the add form holding the name that was posted, if any.
func (s *Server) renderUsers(w http.ResponseWriter, r *http.Request, sess session, status int, refusal string) {
	us, err := s.api.ListUsers(r.Context())
	if err != nil {
		s.apiFailure(w, r, sess, err)
		return
	}
	s.page(w, r, status, "users", &pageData{Title: "Users", Nav: "users", CSRF: sess.csrf,
		Message: notices[r.URL.Query().Get("done")], Error: refusal, Data: usersView{Users: us, Name: r.PostFormValue("name")}})
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request, sess session) {
	_, err := s.api.CreateUser(r.Context(), strings.TrimSpace(r.PostFormValue("name")))
	s.finish(w, r, sess, err, s.renderUsers, "users", "user-created")
}

// setUserRole makes a user an admin or a member (role=admin|member).
func (s *Server) setUserRole(w http.ResponseWriter, r *http.Request, sess session) {
	_, err := s.api.SetUserRole(r.Context(), r.PathValue("name"), r.PostFormValue("role"))
	s.finish(w, r, sess, err, s.renderUsers, "users", "role-set")
}

func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request, sess session) {
	err := s.api.DeleteUser(r.Context(), r.PathValue("name"))
	s.finish(w, r, sess, err, s.renderUsers, "users", "user-deleted")
}

// keysView is the pre-auth keys page. NewKey is set only in the reply to
// the POST that made it: the one time the secret is shown.
type keysView struct {
	Now    time.Time
	Keys   []store.AuthKey
	Users  []store.User
	NewKey *adminapi.KeyReply
	Form   adminapi.KeyRequest // the create form's values: as posted when refused
	Tags   string              // the form's tags as typed
}

func (s *Server) keysPage(w http.ResponseWriter, r *http.Request, sess session) {
	s.renderKeys(w, r, sess, http.StatusOK, nil, "")
}

func (s *Server) renderKeys(w http.ResponseWriter, r *http.Request, sess session, status int, nk *adminapi.KeyReply, refusal string) {
	ks, err := s.api.ListKeys(r.Context(), "")
	if err != nil {
		s.apiFailure(w, r, sess, err)
		return
	}
	us, err := s.api.ListUsers(r.Context())
	if err != nil {
		s.apiFailure(w, r, sess, err)
		return
	}
	v := keysView{Now: s.now(), Keys: ks, Users: us, NewKey: nk, Form: adminapi.KeyRequest{Expiry: "24h"}}
	if refusal != "" && r.Method == http.MethodPost && r.PathValue("prefix") == "" {
		v.Form, v.Tags = keyRequest(r), r.PostFormValue("tags")
	}
	s.page(w, r, status, "keys", &pageData{Title: "Pre-auth keys", Nav: "keys", CSRF: sess.csrf,
		Message: notices[r.URL.Query().Get("done")], Error: refusal, Data: v})
}

// renderKeysRefused is renderKeys without a new key, for refusals.
func (s *Server) renderKeysRefused(w http.ResponseWriter, r *http.Request, sess session, status int, refusal string) {
	s.renderKeys(w, r, sess, status, nil, refusal)
}

// createKey makes a pre-auth key and shows its secret in this reply only:
// the page is not cached (Cache-Control: no-store), the list shows only
// prefixes, and reloading the page makes no second showing of it.
func (s *Server) createKey(w http.ResponseWriter, r *http.Request, sess session) {
	nk, err := s.api.CreateKey(r.Context(), keyRequest(r))
	if err != nil {
		s.refuse(w, r, sess, err, s.renderKeysRefused)
		return
	}
	s.renderKeys(w, r, sess, http.StatusCreated, &nk, "")
}

// keyRequest is the pre-auth key form as posted.
func keyRequest(r *http.Request) adminapi.KeyRequest {
	req := adminapi.KeyRequest{
		User:      r.PostFormValue("user"),
		Reusable:  r.PostFormValue("reusable") == "on",
		Ephemeral: r.PostFormValue("ephemeral") == "on",
		Expiry:    strings.TrimSpace(r.PostFormValue("expiry")),
	}
	for _, t := range strings.FieldsFunc(r.PostFormValue("tags"), func(c rune) bool { return c == ',' || c == ' ' }) {
		req.Tags = append(req.Tags, t)
	}
	return req
}

func (s *Server) expireKey(w http.ResponseWriter, r *http.Request, sess session) {
	err := s.api.ExpireKey(r.Context(), r.PathValue("prefix"))
	s.finish(w, r, sess, err, s.renderKeysRefused, "keys", "key-expired")
}

// policyView is the policy editor: the text, its numbered lines with the
// ones an error names marked, and the errors.
type policyView struct {
	Version int64
	Body    string
	Lines   []policyLine
	Errors  []string
	Checked bool  // the text passed the checks (a check without saving)
	From    int64 // the earlier version loaded into the editor, to restore
}

type policyLine struct {
	N    int
	Text string
	Bad  bool
}

// policyPage is the policy editor holding the policy in force, or with
// ?from=N an earlier version to restore (put in force again by Save,
// through the usual checks).
func (s *Server) policyPage(w http.ResponseWriter, r *http.Request, sess session) {
	pr, err := s.api.GetPolicy(r.Context(), 0)
	if err != nil {
		s.apiFailure(w, r, sess, err)
		return
	}
	v := policyView{Version: pr.Version, Body: pr.Body}
	if from := r.URL.Query().Get("from"); from != "" {
		n, ok := s.policyVersionParam(w, r, sess, from)
		if !ok {
			return
		}
		old, err := s.api.GetPolicy(r.Context(), n)
		if err != nil {
			s.apiFailure(w, r, sess, err)
			return
		}
		v.Body, v.From = old.Body, n
	}
	s.page(w, r, http.StatusOK, "policy", &pageData{Title: "Policy", Nav: "policy", CSRF: sess.csrf,
		Message: notices[r.URL.Query().Get("done")], Data: v})
}

// savePolicy checks the posted policy (its syntax, its references to
// users and nodes, and its tests) and saves it when action=save and it
// passes. A refused policy is shown again with the lines its errors name
// marked; nothing changes.
func (s *Server) savePolicy(w http.ResponseWriter, r *http.Request, sess session) {
	body := strings.ReplaceAll(r.PostFormValue("body"), "\r\n", "\n")
	save := r.PostFormValue("action") == "save"
	var err error
	if save {
		_, err = s.api.SetPolicy(r.Context(), []byte(body))
	} else {
		err = s.api.CheckPolicy(r.Context(), []byte(body))
	}
	if err == nil && save {
		done(w, r, "policy", "policy-saved")
		return
	}
	v := policyView{Body: body, Checked: err == nil}
	status := http.StatusOK
	if err != nil {
		var msg string
		status, msg = apiError(err)
		v.Errors = errorLines(msg)
		v.Lines = numberLines(body, badLines(msg))
	}
	if pr, gerr := s.api.GetPolicy(r.Context(), 0); gerr == nil {
		v.Version = pr.Version
	}
	s.page(w, r, status, "policy", &pageData{Title: "Policy", Nav: "policy", CSRF: sess.csrf, Data: v})
}

// lineRef finds "line L, column C" in the policy's error messages.
var lineRef = regexp.MustCompile(`line (\d+), column (\d+)`)

// badLines are the lines the error message names.
func badLines(msg string) map[int]bool {
	bad := map[int]bool{}
	for _, m := range lineRef.FindAllStringSubmatch(msg, -1) {
		if n, err := strconv.Atoi(m[1]); err == nil {
			bad[n] = true
		}
	}
	return bad
}

func errorLines(msg string) []string {
	var out []string
	for _, l := range strings.Split(msg, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func numberLines(body string, bad map[int]bool) []policyLine {
	lines := strings.Split(body, "\n")
	out := make([]policyLine, len(lines))
	for i, l := range lines {
		out[i] = policyLine{N: i + 1, Text: l, Bad: bad[i+1]}
	}
	return out
}

type dnsView struct {
	DNS    adminapi.DNSReply
	Source string // the text in the editor
}

func (s *Server) dnsPage(w http.ResponseWriter, r *http.Request, sess session) {
	d, err := s.api.DNS(r.Context())
	if err != nil {
		s.apiFailure(w, r, sess, err)
		return
	}
	s.page(w, r, http.StatusOK, "dns", &pageData{Title: "DNS", Nav: "dns", CSRF: sess.csrf,
		Message: notices[r.URL.Query().Get("done")], Data: dnsView{DNS: d, Source: d.Source}})
}

// saveDNS sets the DNS settings file; the admin API refuses one that does
// not validate and keeps the old settings, and the editor shows the
// posted text again with the reason.
func (s *Server) saveDNS(w http.ResponseWriter, r *http.Request, sess session) {
	src := strings.ReplaceAll(r.PostFormValue("source"), "\r\n", "\n")
	if _, err := s.api.SetDNS(r.Context(), []byte(src)); err != nil {
		status, msg := apiError(err)
		d, _ := s.api.DNS(r.Context())
		s.page(w, r, status, "dns", &pageData{Title: "DNS", Nav: "dns", CSRF: sess.csrf, Error: msg,
			Data: dnsView{DNS: d, Source: src}})
		return
	}
	done(w, r, "dns", "dns-saved")
}

// AuditPageSize is how many audit log entries one page shows.
const AuditPageSize = 100

type auditView struct {
	Entries []store.AuditEntry
	NextURL string
}

// auditPage shows the admin API's audit log, newest first: who changed
// what, when, how they signed in and from where. Older entries are on
// the pages after (?before=ID).
func (s *Server) auditPage(w http.ResponseWriter, r *http.Request, sess session) {
	var before int64
	if v := r.URL.Query().Get("before"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			s.page(w, r, http.StatusBadRequest, "message", &pageData{Title: "Bad Request", CSRF: sess.csrf,
				Message: "before: want an entry number from the link at the foot of the audit log."})
			return
		}
		before = n
	}
	es, err := s.api.Audit(r.Context(), AuditPageSize, before)
	if err != nil {
		s.apiFailure(w, r, sess, err)
		return
	}
	v := auditView{Entries: es}
	if len(es) == AuditPageSize {
		v.NextURL = Prefix + "audit?before=" + strconv.FormatInt(es[len(es)-1].ID, 10)
	}
	s.page(w, r, http.StatusOK, "audit", &pageData{Title: "Audit log", Nav: "audit", CSRF: sess.csrf, Data: v})
}
