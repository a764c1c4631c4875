package console

import "net/http"

// SignIn starts a console session for user with role, who signed in with
// the tailnet's identity provider (the server checked who they are), and
// sends the browser to the console (through the "Signed in" page: the
// provider's redirect back is another site's navigation, on whose
// redirects the SameSite=Strict cookie would not be sent).
func (s *Server) SignIn(w http.ResponseWriter, r *http.Request, user, role string) {
	s.init()
	secureHeaders(w.Header())
	tok, err := s.startSession(user, role)
	if err != nil {
		s.page(w, r, http.StatusInternalServerError, "message", &pageData{Title: "Error", Message: "Could not start a session."})
		return
	}
	s.enter(w, r, tok)
}
