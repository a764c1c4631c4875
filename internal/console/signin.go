package console

import (
	"net/http"
	"time"
)

// SignIn starts a console session for user with role, who signed in with
// the tailnet's identity provider (the server checked who they are), and
// sends the browser to the console.
func (s *Server) SignIn(w http.ResponseWriter, r *http.Request, user, role string) {
	s.init()
	secureHeaders(w.Header())
	tok, err := s.startSession(user, role)
	if err != nil {
		s.page(w, r, http.StatusInternalServerError, "message", &pageData{Title: "Error", Message: "Could not start a session."})
		return
	}
	http.SetCookie(w, s.cookie(r, tok, int(SessionLifetime/time.Second)))
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}
