package console

import (
	"net/http"
	"time"

	"weft/internal/nodelogin"
	"weft/internal/store"
)

// loginsView is the page of interactive node logins waiting for an
// administrator (`weft up` without a pre-auth key, on a server without an
// identity provider).
type loginsView struct {
	Now    time.Time
	Logins []nodelogin.Login
	Users  []store.User
}

func (s *Server) loginsPage(w http.ResponseWriter, r *http.Request, sess session) {
	s.renderLogins(w, r, sess, http.StatusOK, "")
}

func (s *Server) renderLogins(w http.ResponseWriter, r *http.Request, sess session, status int, refusal string) {
	ls, err := s.api.PendingLogins(r.Context())
	if err != nil {
		s.apiFailure(w, r, sess, err)
		return
	}
	us, err := s.api.ListUsers(r.Context())
	if err != nil {
		s.apiFailure(w, r, sess, err)
		return
	}
	s.page(w, r, status, "logins", &pageData{Title: "Waiting machines", Nav: "logins", CSRF: sess.csrf,
		Message: notices[r.URL.Query().Get("done")], Error: refusal,
		Data: loginsView{Now: s.now(), Logins: ls, Users: us}})
}

// approveLogin lets the waiting machine join as the chosen user: the
// admin API gives its `weft up` a one-off pre-auth key of that user.
func (s *Server) approveLogin(w http.ResponseWriter, r *http.Request, sess session) {
	_, err := s.api.ApproveLogin(r.Context(), r.PathValue("code"), r.PostFormValue("user"))
	s.finish(w, r, sess, err, s.renderLogins, "logins", "login-approved")
}
