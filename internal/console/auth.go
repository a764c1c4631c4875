package console

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"weft/internal/adminapi"
	"weft/internal/store"
)

// Lifetimes of what the console hands out.
const (
	// LoginLinkLifetime: a login link works once, within this time.
	LoginLinkLifetime = 10 * time.Minute
	// SessionLifetime: a console session ends this long after its last
	// use. It slides: each use extends it (in the store, at most once a
	// minute, so page views are not writes), up to SessionMaxLifetime.
	SessionLifetime = 12 * time.Hour
	// SessionMaxLifetime: a console session ends this long after sign-in
	// however much it is used, so a stolen cookie kept busy does not
	// live for ever; then one signs in again.
	SessionMaxLifetime = 7 * 24 * time.Hour
)

// sessionStart is the store's record of a new session whose cookie's
// token hashes to hash: sliding, SessionLifetime after each use, at most
// SessionMaxLifetime after now.
func (s *Server) sessionStart(hash, user string) store.ConsoleSessionStart {
	now := s.now()
	return store.ConsoleSessionStart{Hash: hash, User: user, Expires: now.Add(SessionLifetime), Idle: SessionLifetime,
		MaxExpires: now.Add(SessionMaxLifetime)}
}

// cookieName is the session cookie, scoped to the console's path.
const cookieName = "weft_session"

// Sessions is where the console keeps its login links and sessions: the
// store (store.Store implements it), so that every server sharing the
// database honours them. A link printed at one server signs in at
// another, a session is good at every server, signing out at one ends it
// at all, and a restart signs nobody out. Only the SHA-256 of each token
// is handed over; the tokens stay in the link and the cookie.
type Sessions interface {
	CreateConsoleLink(ctx context.Context, hash string, expires time.Time) error
	UseConsoleLink(ctx context.Context, linkHash string, st store.ConsoleSessionStart) (store.ConsoleSession, error)
	StartConsoleSession(ctx context.Context, st store.ConsoleSessionStart) (store.ConsoleSession, error)
	CheckConsoleSession(ctx context.Context, hash string) (store.ConsoleSession, error)
	EndConsoleSession(ctx context.Context, hash string) error
}

var _ Sessions = store.Store(nil)

// session is a request's live session.
type session struct {
	hash string // the store's name for it: the SHA-256 of the cookie's token
	csrf string // shown in forms, checked on every POST; see csrfToken
	user string // who signed in; empty for the server's administrator
	role string // store.RoleAdmin or store.RoleMember
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

// csrfToken is a session's CSRF token, derived from the session's token
// (an HMAC keyed with it), so that no server stores it and every server
// derives the same one. It reveals nothing of the session token, and the
// store's hash of that token reveals nothing of it.
func csrfToken(sessionToken string) string {
	m := hmac.New(sha256.New, []byte(sessionToken))
	m.Write([]byte("weft console CSRF token"))
	return hex.EncodeToString(m.Sum(nil))
}

// NewLoginLink makes a one-time login link, valid for LoginLinkLifetime,
// and returns it with its expiry. `weft admin console-link` prints it.
// The link is recorded in the store with ctx, so the admin API's audit
// entry of the request (console.link) is written in the same
// transaction.
func (s *Server) NewLoginLink(ctx context.Context) (string, time.Time, error) {
	if s.BaseURL == "" {
		return "", time.Time{}, fmt.Errorf("console: the server has no --server-url to make a link with")
	}
	tok, err := randomToken()
	if err != nil {
		return "", time.Time{}, err
	}
	exp := s.now().Add(LoginLinkLifetime)
	if err := s.Sessions.CreateConsoleLink(ctx, hashToken(tok), exp); err != nil {
		return "", time.Time{}, fmt.Errorf("console: recording the login link: %w", err)
	}
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

// login spends a login link and starts a session, and writes its audit
// entry (console.signin), in one transaction: of several servers given
// the same link at once, the database lets exactly one spend it.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if !sameOrigin(r) {
		s.page(w, r, http.StatusForbidden, "message", &pageData{Title: "Refused",
			Message: "This sign-in did not come from the console's own page; nothing was changed."})
		return
	}
	tok, err := randomToken()
	if err != nil {
		s.sessionFailure(w, r, err)
		return
	}
	ctx := store.WithAudit(r.Context(), store.AuditEntry{Credential: "login link", Remote: r.RemoteAddr, Action: "console.signin"})
	_, err = s.Sessions.UseConsoleLink(ctx, hashToken(r.PostFormValue("token")),
		s.sessionStart(hashToken(tok), ""))
	if errors.Is(err, store.ErrNotFound) {
		s.page(w, r, http.StatusUnauthorized, "message", &pageData{Title: "Link not valid",
			Message: "This login link is unknown, used or expired. Run `weft admin console-link` for a new one."})
		return
	}
	if err != nil {
		s.sessionFailure(w, r, err)
		return
	}
	s.enter(w, r, tok)
}

// sessionFailure answers a sign-in the store could not record.
func (s *Server) sessionFailure(w http.ResponseWriter, r *http.Request, err error) {
	s.logger().Error("console: session", "path", r.URL.Path, "err", err)
	s.page(w, r, http.StatusInternalServerError, "message", &pageData{Title: "Error",
		Message: "Could not start a session; the server's log has the details."})
}

// enter sets the new session's cookie and sends the browser on to the
// console from a page of the console's own: a SameSite=Strict cookie is
// not sent on a redirect whose navigation another site started (the
// identity provider's redirect back, a link in a mail), so a plain
// redirect would land on the sign-in hint. The page's meta refresh is a
// navigation the console's own page starts, which carries the cookie; a
// link stands by for browsers that do not follow it.
func (s *Server) enter(w http.ResponseWriter, r *http.Request, tok string) {
	// The cookie lives as long as the session may: the store decides
	// when it ends (SessionLifetime after its last use).
	http.SetCookie(w, s.cookie(r, tok, int(SessionMaxLifetime/time.Second)))
	s.page(w, r, http.StatusOK, "entered", &pageData{Title: "Signed in"})
}

// startSession starts a session for user (who must exist) and returns
// its token, the cookie's value; ctx may carry the sign-in's audit
// entry, written with the session. Sessions of the server's
// administrator (user empty) start only from login links, which only
// the server's owner can print.
func (s *Server) startSession(ctx context.Context, user string) (string, error) {
	tok, err := randomToken()
	if err != nil {
		return "", err
	}
	_, err = s.Sessions.StartConsoleSession(ctx, s.sessionStart(hashToken(tok), user))
	if err != nil {
		return "", fmt.Errorf("console: recording the session: %w", err)
	}
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

// session returns the request's live session, as the store has it:
// started at whichever server, not ended at any, not expired. A store
// that fails is logged and counts as no session.
func (s *Server) session(r *http.Request) (session, bool) {
	c, err := r.Cookie(cookieName)
	if err != nil || c.Value == "" {
		return session{}, false
	}
	h := hashToken(c.Value)
	cs, err := s.Sessions.CheckConsoleSession(r.Context(), h)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.logger().Error("console: reading the session", "err", err)
		}
		return session{}, false
	}
	if !s.now().Before(cs.Expires) {
		return session{}, false
	}
	return session{hash: h, csrf: csrfToken(c.Value), user: cs.User, role: cs.Role}, true
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

// logout ends the session (a state change: CSRF-checked) at every
// server, and writes its audit entry (console.signout) in the same
// transaction. A session ended meanwhile (at another server) is gone
// all the same: the cookie is cleared and nothing is recorded.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	s.changes(func(w http.ResponseWriter, r *http.Request, sess session) {
		ctx := store.WithAudit(r.Context(), store.AuditEntry{Actor: sess.user, Credential: "console session",
			Remote: r.RemoteAddr, Action: "console.signout"})
		if err := s.Sessions.EndConsoleSession(ctx, sess.hash); err != nil && !errors.Is(err, store.ErrNotFound) {
			s.logger().Error("console: ending the session", "err", err)
			s.page(w, r, http.StatusInternalServerError, "message", &pageData{Title: "Error", CSRF: sess.csrf,
				Message: "Could not sign out; the server's log has the details. Try again."})
			return
		}
		http.SetCookie(w, s.cookie(r, "", -1))
		http.Redirect(w, r, Prefix, http.StatusSeeOther)
	})(w, r)
}
