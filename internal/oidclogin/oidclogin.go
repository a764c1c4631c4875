// Package oidclogin signs people in with the tailnet's OpenID Connect
// identity provider, for the web console and for interactive node login
// (authorization code flow with PKCE, state bound to the browser by a
// cookie, nonce checked in the ID token). A sign-in in progress is kept
// in the store (Config.Flows), so the provider's redirect back may reach
// any server sharing the database. It returns who signed in as the
// provider's issuer and stable subject: callers find users by those, never
// by email (an email can change hands or be unverified; matching on it
// lets one person take over another's account).
package oidclogin

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
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"weft/internal/store"
)

// Config is the provider and who may sign in.
type Config struct {
	// Issuer is the provider's issuer URL (discovery is at
	// Issuer/.well-known/openid-configuration).
	Issuer       string
	ClientID     string
	ClientSecret string
	// RedirectURL is this server's callback: BaseURL + CallbackPath.
	RedirectURL string
	// AllowedDomains, AllowedUsers (emails) and AllowedGroups limit who
	// may sign in; a person passes when they match any of them. All empty
	// lets in everyone the provider signs in. Domains and users need a
	// verified email.
	AllowedDomains, AllowedUsers, AllowedGroups []string
	// GroupsClaim names the ID token claim listing groups; default
	// "groups". The "groups" scope is asked for as well.
	GroupsClaim string
	// Flows keeps the sign-ins in progress: the server's store, shared
	// by every server on its database. Required.
	Flows Flows
	// HTTPClient talks to the provider; nil means http.DefaultClient.
	HTTPClient *http.Client
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Paths served by the server for sign-in.
const (
	CallbackPath = "/oidc/callback"
	// flowLifetime bounds how long a person may take at the provider.
	flowLifetime = 10 * time.Minute
	maxFlows     = 10000
)

// stateCookiePrefix begins the name of each sign-in's state cookie; the
// rest of the name is the start of the sign-in's state (stateCookieName).
const stateCookiePrefix = "weft_oidc_"

// stateCookieName is the cookie of the sign-in whose state is state: one
// cookie per sign-in, so that two sign-ins started in one browser (two
// tabs) do not overwrite each other's secret and both callbacks find
// theirs. The state is public (it is in the provider's redirect), so
// naming the cookie after it reveals nothing; 16 hex digits (64 bits) keep
// two sign-ins of one browser apart. The set stays small: each cookie
// lives flowLifetime (10 minutes) and is scoped to the callback's path,
// so a browser holds one per sign-in started in the last 10 minutes.
func stateCookieName(state string) string {
	if len(state) > 16 {
		state = state[:16]
	}
	return stateCookiePrefix + state
}

// Flows is where sign-ins in progress wait for the provider's redirect
// back; store.Store implements it.
type Flows interface {
	StartOIDCFlow(ctx context.Context, f store.OIDCFlow, max int) error
	TakeOIDCFlow(ctx context.Context, stateHash string) (store.OIDCFlow, error)
}

var _ Flows = store.Store(nil)

// Identity is who signed in.
type Identity struct {
	Issuer, Subject string
	Email           string
	EmailVerified   bool
	Name            string // preferred_username, else name
	Groups          []string
}

// ErrNotAllowed: the provider signed the person in, but the server's
// allowed domains, users and groups do not include them.
var ErrNotAllowed = errors.New("oidclogin: not allowed to sign in to this tailnet")

// Login is a configured relying party. Use New.
type Login struct {
	cfg      Config
	provider *oidc.Provider
	verifier *oidc.IDTokenVerifier
	oauth    oauth2.Config
}

// New discovers the provider and returns a Login.
func New(ctx context.Context, cfg Config) (*Login, error) {
	if cfg.Issuer == "" || cfg.ClientID == "" || cfg.RedirectURL == "" || cfg.Flows == nil {
		return nil, errors.New("oidclogin: issuer, client ID, redirect URL and a store for sign-ins are required")
	}
	if cfg.GroupsClaim == "" {
		cfg.GroupsClaim = "groups"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HTTPClient != nil {
		ctx = oidc.ClientContext(ctx, cfg.HTTPClient)
	}
	p, err := oidc.NewProvider(ctx, cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("oidclogin: discovering %s: %w (is --oidc-issuer right and reachable?)", cfg.Issuer, err)
	}
	l := &Login{cfg: cfg, provider: p,
		verifier: p.Verifier(&oidc.Config{ClientID: cfg.ClientID, Now: cfg.Now}),
		oauth: oauth2.Config{ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, Endpoint: p.Endpoint(),
			RedirectURL: cfg.RedirectURL, Scopes: []string{oidc.ScopeOpenID, "profile", "email", "groups"}}}
	return l, nil
}

func random() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("oidclogin: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// secrets are one sign-in's OAuth state, OIDC nonce and PKCE verifier,
// each derived (HMAC-SHA256) from the random secret the state cookie
// holds: the browser keeps the one secret, the store only the state's
// hash, and any server can finish the sign-in. The state is public (it
// is in the provider's redirect) and tells nothing of the others.
type secrets struct{ state, nonce, verifier string }

func derive(cookie string) secrets {
	d := func(label string) string {
		m := hmac.New(sha256.New, []byte(cookie))
		m.Write([]byte("weft oidc " + label))
		return hex.EncodeToString(m.Sum(nil)) // 64 characters: a valid PKCE verifier too
	}
	return secrets{state: d("state"), nonce: d("nonce"), verifier: d("pkce verifier")}
}

func hashState(state string) string {
	h := sha256.Sum256([]byte(state))
	return hex.EncodeToString(h[:])
}

// Begin sends the browser to the provider. purpose and data come back
// from Finish: what the sign-in is for ("console", "node" with the login
// code).
func (l *Login) Begin(w http.ResponseWriter, r *http.Request, purpose, data string) {
	secret, err := random()
	if err != nil {
		http.Error(w, "could not start the sign-in", http.StatusInternalServerError)
		return
	}
	sec := derive(secret)
	err = l.cfg.Flows.StartOIDCFlow(r.Context(), store.OIDCFlow{StateHash: hashState(sec.state), Purpose: purpose, Data: data,
		Expires: l.cfg.Now().Add(flowLifetime)}, maxFlows)
	if errors.Is(err, store.ErrTooManyFlows) {
		http.Error(w, "too many sign-ins in progress; try again in a few minutes", http.StatusTooManyRequests)
		return
	}
	if err != nil {
		http.Error(w, "could not start the sign-in: the database did not record it; try again", http.StatusInternalServerError)
		return
	}
	// The state cookie (one per sign-in, named after its state) ties
	// the callback to this browser: a callback
	// URL made elsewhere (login CSRF) does not carry it. Lax, as the
	// callback is a top-level navigation from the provider.
	http.SetCookie(w, &http.Cookie{Name: stateCookieName(sec.state), Value: secret, Path: CallbackPath, HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Secure: strings.HasPrefix(l.cfg.RedirectURL, "https://"), MaxAge: int(flowLifetime / time.Second)})
	u := l.oauth.AuthCodeURL(sec.state, oidc.Nonce(sec.nonce), oauth2.S256ChallengeOption(sec.verifier))
	http.Redirect(w, r, u, http.StatusFound)
}

// Finish completes the sign-in at the callback: it checks the state
// against the browser's cookie (single use), exchanges the code, verifies
// the ID token and its nonce, and applies the allowed lists. It returns
// who signed in and Begin's purpose and data; with ErrNotAllowed too, so
// the refusal can be recorded against who was refused and for what.
func (l *Login) Finish(r *http.Request) (Identity, string, string, error) {
	ctx := r.Context()
	if l.cfg.HTTPClient != nil {
		ctx = oidc.ClientContext(ctx, l.cfg.HTTPClient)
	}
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		return Identity{}, "", "", fmt.Errorf("oidclogin: the provider refused: %s %s", e, q.Get("error_description"))
	}
	state := q.Get("state")
	var sec secrets
	c, err := r.Cookie(stateCookieName(state))
	if state != "" && err == nil && c.Value != "" {
		sec = derive(c.Value)
	}
	if state == "" || sec.state == "" || subtle.ConstantTimeCompare([]byte(sec.state), []byte(state)) != 1 {
		return Identity{}, "", "", errors.New("oidclogin: this sign-in was not started in this browser (state mismatch); start again")
	}
	f, err := l.cfg.Flows.TakeOIDCFlow(ctx, hashState(state))
	if errors.Is(err, store.ErrNotFound) {
		return Identity{}, "", "", errors.New("oidclogin: this sign-in expired or was already used; start again")
	}
	if err != nil {
		return Identity{}, "", "", fmt.Errorf("oidclogin: reading the sign-in: %w", err)
	}
	tok, err := l.oauth.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(sec.verifier))
	if err != nil {
		return Identity{}, "", "", fmt.Errorf("oidclogin: exchanging the code: %w", err)
	}
	raw, ok := tok.Extra("id_token").(string)
	if !ok {
		return Identity{}, "", "", errors.New("oidclogin: the provider sent no ID token")
	}
	idt, err := l.verifier.Verify(ctx, raw)
	if err != nil {
		return Identity{}, "", "", fmt.Errorf("oidclogin: ID token: %w", err)
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(sec.nonce)) != 1 {
		return Identity{}, "", "", errors.New("oidclogin: ID token nonce mismatch")
	}
	id, err := l.identity(ctx, idt, tok)
	if err != nil {
		return Identity{}, "", "", err
	}
	if !l.allowed(id) {
		return id, f.Purpose, f.Data, fmt.Errorf("%w: %s (%s) is not in the server's allowed domains, users or groups", ErrNotAllowed, id.Email, id.Subject)
	}
	return id, f.Purpose, f.Data, nil
}

// claims are the ID token and userinfo claims weft reads.
type claims struct {
	Email         string `json:"email"`
	EmailVerified *bool  `json:"email_verified"`
	PreferredName string `json:"preferred_username"`
	Name          string `json:"name"`
}

// identity reads who signed in from the ID token, and from the userinfo
// endpoint when the token leaves out the email (many providers put only
// the subject in it).
func (l *Login) identity(ctx context.Context, idt *oidc.IDToken, tok *oauth2.Token) (Identity, error) {
	var c claims
	all := map[string]any{}
	if err := idt.Claims(&c); err != nil {
		return Identity{}, fmt.Errorf("oidclogin: ID token claims: %w", err)
	}
	idt.Claims(&all)
	if c.Email == "" {
		ui, err := l.provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
		if err != nil {
			return Identity{}, fmt.Errorf("oidclogin: userinfo: %w", err)
		}
		if ui.Subject != idt.Subject {
			return Identity{}, errors.New("oidclogin: userinfo is about another subject than the ID token")
		}
		var uc claims
		if err := ui.Claims(&uc); err == nil {
			c.Email, c.EmailVerified = uc.Email, uc.EmailVerified
			if c.PreferredName == "" {
				c.PreferredName, c.Name = uc.PreferredName, uc.Name
			}
		}
	}
	id := Identity{Issuer: idt.Issuer, Subject: idt.Subject, Email: strings.ToLower(c.Email),
		EmailVerified: c.EmailVerified != nil && *c.EmailVerified, Name: c.PreferredName}
	if id.Name == "" {
		id.Name = c.Name
	}
	if gs, ok := all[l.cfg.GroupsClaim].([]any); ok {
		for _, g := range gs {
			if s, ok := g.(string); ok && s != "" {
				id.Groups = append(id.Groups, s)
			}
		}
	}
	return id, nil
}

func (l *Login) allowed(id Identity) bool {
	c := l.cfg
	if len(c.AllowedDomains) == 0 && len(c.AllowedUsers) == 0 && len(c.AllowedGroups) == 0 {
		return true
	}
	if id.EmailVerified && id.Email != "" {
		_, domain, _ := strings.Cut(id.Email, "@")
		for _, d := range c.AllowedDomains {
			if strings.EqualFold(d, domain) {
				return true
			}
		}
		for _, u := range c.AllowedUsers {
			if strings.EqualFold(u, id.Email) {
				return true
			}
		}
	}
	for _, g := range c.AllowedGroups {
		if slices.Contains(id.Groups, g) {
			return true
		}
	}
	return false
}
