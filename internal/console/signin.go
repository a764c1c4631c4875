package console

import (
	"errors"
	"net/http"

	"weft/internal/store"
)

// SignIn starts a console session for user, who signed in with the
// tailnet's identity provider (the server checked who they are), and
// sends the browser to the console (through the "Signed in" page: the
// provider's redirect back is another site's navigation, on whose
// redirects the SameSite=Strict cookie would not be sent). The session
// and its audit entry (console.signin) are one transaction. The session
// has the user's role as it is at each request.
func (s *Server) SignIn(w http.ResponseWriter, r *http.Request, user string) {
	s.init()
	secureHeaders(w.Header())
	if user == "" { // the server's administrator signs in only with a login link
		s.sessionFailure(w, r, errNoUser)
		return
	}
	ctx := store.WithAudit(r.Context(), store.AuditEntry{Actor: user, Credential: "OIDC sign-in", Remote: r.RemoteAddr,
		Action: "console.signin"})
	tok, err := s.startSession(ctx, user)
	if err != nil {
		s.sessionFailure(w, r, err)
		return
	}
	s.enter(w, r, tok)
}

var errNoUser = errors.New("console: SignIn without a user")
