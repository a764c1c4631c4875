package console

import (
	"weft/internal/adminapi"
	"weft/internal/store"

	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Lifetimes of what the console hands out.
const (
	// LoginLinkLifetime: a login link works once, within this time.
	LoginLinkLifetime = 10 * time.Minute
	// SessionLifetime: a console session ends this long after sign-in.
	SessionLifetime = 12 * time.Hour
)

// cookieName is the session cookie, scoped to the console's path.
const cookieName = "weft_session"

// sessions holds login links and sessions in memory, by the SHA-256 of
// their random tokens: a restart signs everyone out, which is acceptable
// for an administrator's console and keeps secrets out of the database.
type sessions struct {
	mu       sync.Mutex
	links    map[string]time.Time // hash of link token → expiry
	sessions map[string]session   // hash of session token → session
}

type session struct {
	expiry time.Time
	csrf   string // shown in forms, checked on every POST
	user   string // who signed in; empty for the server's administrator
	role   string // store.RoleAdmin or store.RoleMember
}

// actor is who the admin API sees making the session's requests: it
// decides what they may see and change, and the audit log names it.
func (sess session) actor(r *http.Request) adminapi.Actor {
	return adminapi.Actor{User: sess.user, Role: sess.role, Credential: "console session", Remote: r.RemoteAddr}
}

func randomToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("console: making a token: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

func hashToken(t string) string {
	h := sha256.Sum256([]byte(t))
	return hex.EncodeToString(h[:])
}

// NewLoginLink makes a one-time login link, valid for LoginLinkLifetime,
// and returns it with its expiry. `weft admin console-link` prints it.
func (s *Server) NewLoginLink() (string, time.Time, error) {
	if s.BaseURL == "" {
		return "", time.Time{}, fmt.Errorf("console: the server has no --server-url to make a link with")
	}
	tok, err := randomToken()
	if err != nil {
		return "", time.Time{}, err
	}
	now := s.now()
	exp := now.Add(LoginLinkLifetime)
	a := &s.auth
	a.mu.Lock()
	if a.links == nil {
		a.links = map[string]time.Time{}
	}
	for h, e := range a.links { // drop dead links, so the map stays small
		if !now.Before(e) {
			delete(a.links, h)
		}
	}
	a.links[hashToken(tok)] = exp
	a.mu.Unlock()
	return strings.TrimSuffix(s.BaseURL, "/") + Prefix + "login?token=" + url.QueryEscape(tok), exp, nil
}

// loginPage shows the sign-in button of a login link. Opening the link
// does not spend it: mail and chat scanners fetch links ahead of people,
// and a GET that signed in would let them burn the link (or, worse, a page
// on another site could sign a browser in to someone else's session).
// The button posts the token back from the console's own origin.
func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	tok := r.URL.Query().Get("token")
	if tok == "" {
		s.page(w, r, http.StatusUnauthorized, "message", s.signInPage())
		return
	}
	s.page(w, r, http.StatusOK, "login", &pageData{Title: "Sign in", Data: tok})
}

// signInPage is what a browser without a session is shown: the identity
// provider's sign-in when the server has one, and the login link hint.
func (s *Server) signInPage() *pageData {
	return &pageData{Title: "Sign in", Message: signInHint, Data: signInView{URL: s.SignInURL}}
}

// signInView is the sign-in page's own part.
type signInView struct{ URL string }

// signInHint is what a browser without a session is told.
const signInHint = "Sign in with a one-time link: run `weft admin console-link` on the server's machine and open the link it prints."

// login spends a login link and starts a session.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if !sameOrigin(r) {
		s.page(w, r, http.StatusForbidden, "message", &pageData{Title: "Refused",
			Message: "This sign-in did not come from the console's own page; nothing was changed."})
		return
	}
	now := s.now()
	h := hashToken(r.PostFormValue("token"))
	a := &s.auth
	a.mu.Lock()
	exp, ok := a.links[h]
	delete(a.links, h) // single use, also when expired
	a.mu.Unlock()
	if !ok || !now.Before(exp) {
		s.page(w, r, http.StatusUnauthorized, "message", &pageData{Title: "Link not valid",
			Message: "This login link is unknown, used or expired. Run `weft admin console-link` for a new one."})
		return
	}
	tok, err := s.startSession("", store.RoleAdmin)
	if err != nil {
		s.page(w, r, http.StatusInternalServerError, "message", &pageData{Title: "Error", Message: "Could not start a session."})
		return
	}
	s.enter(w, r, tok)
}

// enter sets the new session's cookie and sends the browser on to the
// console from a page of the console's own: a SameSite=Strict cookie is
// not sent on a redirect whose navigation another site started (the
// identity provider's redirect back, a link in a mail), so a plain
// redirect would land on the sign-in hint. The page's meta refresh is a
// navigation the console's own page starts, which carries the cookie; a
// link stands by for browsers that do not follow it.
func (s *Server) enter(w http.ResponseWriter, r *http.Request, tok string) {
	http.SetCookie(w, s.cookie(r, tok, int(SessionLifetime/time.Second)))
	s.page(w, r, http.StatusOK, "entered", &pageData{Title: "Signed in"})
}

// startSession starts a session for user with role and returns its
// token, the cookie's value. A session from a login link is the server's
// administrator's (user empty): only the server's owner can print one.
// Sign-in with an identity provider starts sessions for its users.
func (s *Server) startSession(user, role string) (string, error) {
	tok, err := randomToken()
	if err != nil {
		return "", err
	}
	csrf, err := randomToken()
	if err != nil {
		return "", err
	}
	now := s.now()
	a := &s.auth
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.sessions == nil {
		a.sessions = map[string]session{}
	}
	for k, v := range a.sessions {
		if !now.Before(v.expiry) {
			delete(a.sessions, k)
		}
	}
	a.sessions[hashToken(tok)] = session{expiry: now.Add(SessionLifetime), csrf: csrf, user: user, role: role}
	return tok, nil
}

// cookie is the session cookie: HttpOnly (no script reads it),
// SameSite=Strict (no other site's page or link makes the browser send
// it), scoped to the console, Secure over HTTPS. maxAge < 0 deletes it.
func (s *Server) cookie(r *http.Request, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: cookieName, Value: value, Path: Prefix, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: s.https(r), MaxAge: maxAge}
}

// https reports whether the console is reached over HTTPS, directly or
// (by its configured URL) behind a proxy; cookies are then Secure.
func (s *Server) https(r *http.Request) bool {
	return r.TLS != nil || strings.HasPrefix(s.BaseURL, "https://")
}

// session returns the request's live session.
func (s *Server) session(r *http.Request) (session, bool) {
	c, err := r.Cookie(cookieName)
	if err != nil || c.Value == "" {
		return session{}, false
	}
	a := &s.auth
	a.mu.Lock()
	defer a.mu.Unlock()
	sess, ok := a.sessions[hashToken(c.Value)]
	if !ok || !s.now().Before(sess.expiry) {
		return session{}, false
	}
	return sess, true
}

// sameOrigin reports whether a state-changing request came from the
// console's own pages: when the browser names the request's origin
// (Origin, or Sec-Fetch-Site), it must be this host.
func sameOrigin(r *http.Request) bool {
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return false
		}
	}
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
		return true
	}
	return false
}

// checkCSRF accepts a state-changing request only from this origin and
// with the session's CSRF token in the form, compared in constant time.
func (s *Server) checkCSRF(r *http.Request, sess session) bool {
	if !sameOrigin(r) {
		return false
	}
	got := r.PostFormValue("csrf")
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(sess.csrf)) == 1
}

// signedIn serves a page only to a live session; anyone else gets the
// sign-in hint and nothing of the tailnet.
func (s *Server) signedIn(h func(http.ResponseWriter, *http.Request, session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess, ok := s.session(r)
		if !ok {
			s.page(w, r, http.StatusUnauthorized, "message", s.signInPage())
			return
		}
		h(w, r.WithContext(adminapi.WithActor(r.Context(), sess.actor(r))), sess)
	}
}

// maxForm bounds a console form: the largest is a policy or DNS file,
// which the admin API bounds at 1 MiB too.
const maxForm = 1 << 20

// changes serves a state-changing POST only to a live session, with the
// session's CSRF token, from the console's own origin; anything else is
// refused with nothing changed.
func (s *Server) changes(h func(http.ResponseWriter, *http.Request, session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		sess, ok := s.session(r)
		if !ok {
			s.page(w, r, http.StatusUnauthorized, "message", s.signInPage())
			return
		}
		if !s.checkCSRF(r, sess) {
			s.page(w, r, http.StatusForbidden, "message", &pageData{Title: "Refused", CSRF: sess.csrf,
				Message: "This request did not come from the console's own form (CSRF check failed); nothing was changed."})
			return
		}
		h(w, r.WithContext(adminapi.WithActor(r.Context(), sess.actor(r))), sess)
	}
}

// logout ends the session (a state change: CSRF-checked).
func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	s.changes(func(w http.ResponseWriter, r *http.Request, _ session) {
		c, _ := r.Cookie(cookieName)
		s.auth.mu.Lock()
		delete(s.auth.sessions, hashToken(c.Value))
		s.auth.mu.Unlock()
		http.SetCookie(w, s.cookie(r, "", -1))
		http.Redirect(w, r, Prefix, http.StatusSeeOther)
	})(w, r)
}
