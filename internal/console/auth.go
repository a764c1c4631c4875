package console

import (
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

// login spends a login link and starts a session.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	now := s.now()
	h := hashToken(r.URL.Query().Get("token"))
	a := &s.auth
	a.mu.Lock()
	exp, ok := a.links[h]
	delete(a.links, h) // single use, also when expired
	a.mu.Unlock()
	if !ok || !now.Before(exp) {
		s.page(w, r, http.StatusUnauthorized, "message", pageData{Title: "Link not valid",
			Message: "This login link is unknown, used or expired. Run `weft admin console-link` for a new one."})
		return
	}
	tok, err1 := randomToken()
	csrf, err2 := randomToken()
	if err1 != nil || err2 != nil {
		s.page(w, r, http.StatusInternalServerError, "message", pageData{Title: "Error", Message: "Could not start a session."})
		return
	}
	a.mu.Lock()
	if a.sessions == nil {
		a.sessions = map[string]session{}
	}
	for k, v := range a.sessions {
		if !now.Before(v.expiry) {
			delete(a.sessions, k)
		}
	}
	a.sessions[hashToken(tok)] = session{expiry: now.Add(SessionLifetime), csrf: csrf}
	a.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: tok, Path: Prefix, HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Secure: s.https(r), MaxAge: int(SessionLifetime / time.Second)})
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
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

// checkCSRF accepts a state-changing request only with the session's
// CSRF token in the form, compared in constant time, and, when the
// browser says where the request came from, only from this origin.
func (s *Server) checkCSRF(r *http.Request, sess session) bool {
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return false
		}
	}
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		return false
	}
	got := r.PostFormValue("csrf")
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(sess.csrf)) == 1
}

// logout ends the session (a state change: CSRF-checked).
func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	sess, ok := s.session(r)
	if !ok {
		http.Redirect(w, r, Prefix, http.StatusSeeOther)
		return
	}
	if !s.checkCSRF(r, sess) {
		s.page(w, r, http.StatusForbidden, "message", pageData{Title: "Refused", CSRF: sess.csrf,
			Message: "This request did not come from the console's own form (CSRF check failed); nothing was changed."})
		return
	}
	c, _ := r.Cookie(cookieName)
	s.auth.mu.Lock()
	delete(s.auth.sessions, hashToken(c.Value))
	s.auth.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: Prefix, HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Secure: s.https(r), MaxAge: -1})
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}
