package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"weft/internal/console"
	"weft/internal/nodelogin"
	"weft/internal/oidclogin"
	"weft/internal/store"
)

// oidcOptions are weft server's identity provider flags.
type oidcOptions struct {
	issuer, clientID, clientSecretFile          string
	allowedDomains, allowedUsers, allowedGroups []string
	groupsClaim                                 string
}

// signIn joins the identity provider to the server: it starts sign-ins
// for the console and for node logins, and finishes them at the callback.
type signIn struct {
	login  *oidclogin.Login
	st     store.Store
	logins *nodelogin.Manager
	cons   *console.Server
	// groupsChanged is told when a sign-in changed a user's groups, so
	// the policy's group: members follow; nil: nobody is told.
	groupsChanged func()
	log           *slog.Logger
}

// newSignIn discovers the provider; nil when no --oidc-issuer is given.
// Sign-ins in progress are kept in st, so the provider's redirect back
// may reach any server sharing the database.
func newSignIn(ctx context.Context, o oidcOptions, serverURL string, st store.Store) (*oidclogin.Login, error) {
	if o.issuer == "" {
		if o.clientID != "" || o.clientSecretFile != "" {
			return nil, usageError{errors.New("server: --oidc-client-id and --oidc-client-secret-file need --oidc-issuer")}
		}
		return nil, nil
	}
	if o.clientID == "" || o.clientSecretFile == "" {
		return nil, usageError{errors.New("server: --oidc-issuer needs --oidc-client-id and --oidc-client-secret-file")}
	}
	secret, err := readSecret(o.clientSecretFile, "")
	if err != nil || secret == "" {
		return nil, usageError{fmt.Errorf("server: --oidc-client-secret-file %s: empty or unreadable (%v)", o.clientSecretFile, err)}
	}
	return oidclogin.New(ctx, oidclogin.Config{
		Issuer: o.issuer, ClientID: o.clientID, ClientSecret: secret,
		RedirectURL:    strings.TrimSuffix(serverURL, "/") + oidclogin.CallbackPath,
		AllowedDomains: o.allowedDomains, AllowedUsers: o.allowedUsers, AllowedGroups: o.allowedGroups,
		GroupsClaim: o.groupsClaim, Flows: st,
	})
}

// ConsolePath starts a console sign-in with the identity provider.
const oidcConsolePath = "/oidc/console"

func (s *signIn) register(mux *http.ServeMux) {
	mux.HandleFunc("GET "+oidcConsolePath, func(w http.ResponseWriter, r *http.Request) { s.login.Begin(w, r, "console", "") })
	mux.HandleFunc("GET "+oidclogin.CallbackPath, s.callback)
}

// beginNode sends the person who opened a node login URL to the provider.
func (s *signIn) beginNode(w http.ResponseWriter, r *http.Request, code string) {
	s.login.Begin(w, r, "node", code)
}

func (s *signIn) callback(w http.ResponseWriter, r *http.Request) {
	id, purpose, data, err := s.login.Finish(r)
	if err != nil {
		s.log.Info("sign-in refused", "sub", id.Subject, "err", err)
		if errors.Is(err, oidclogin.ErrNotAllowed) {
			s.auditRefusal(r, id, purpose)
		}
		nodelogin.Page(w, http.StatusForbidden, "Sign-in refused", strings.TrimPrefix(err.Error(), "oidclogin: "))
		return
	}
	u, err := s.st.OIDCUser(r.Context(), store.OIDCIdentity{Issuer: id.Issuer, Subject: id.Subject, Email: id.Email, Name: id.Name, Groups: id.Groups})
	if err != nil {
		s.log.Error("sign-in: user", "sub", id.Subject, "err", err)
		nodelogin.Page(w, http.StatusInternalServerError, "Error", "Could not record the sign-in; see the server's log.")
		return
	}
	if s.groupsChanged != nil {
		s.groupsChanged() // the groups may differ from the last sign-in's
	}
	switch purpose {
	case "console":
		s.cons.SignIn(w, r, u.Name)
	case "node":
		// The approval and its audit entry are one transaction.
		var detail string
		if l, err := s.logins.Lookup(r.Context(), data); err == nil {
			detail = fmt.Sprintf(`{"hostname":%q}`, l.Hostname)
		}
		ctx := store.WithAudit(r.Context(), store.AuditEntry{Actor: u.Name, Credential: "OIDC sign-in", Remote: r.RemoteAddr,
			Action: "login.approve", Target: "login " + data, Detail: detail})
		l, err := s.logins.Approve(ctx, data, u.Name)
		if err != nil {
			if !errors.Is(err, nodelogin.ErrUnknown) {
				s.log.Error("sign-in: approving a node login", "err", err)
			}
			nodelogin.Page(w, http.StatusNotFound, "Login link not valid", "This machine's login is unknown, already used or expired. Run weft up again.")
			return
		}
		nodelogin.Page(w, http.StatusOK, "Signed in", fmt.Sprintf("Signed in as %s: the machine %q joins the tailnet as %s now. You can close this page.", u.Name, l.Hostname, u.Name))
	default:
		nodelogin.Page(w, http.StatusBadRequest, "Sign-in refused", "This sign-in was for nothing weft knows.")
	}
}

// auditRefusal records, as signin.refused, a person the identity provider
// vouched for whom the server's allowed domains, users or groups keep
// out: who tried to get in is what an administrator looks for first.
// Only such refusals are recorded; a broken or replayed callback carries
// no identity, and anyone could send those to fill the log.
func (s *signIn) auditRefusal(r *http.Request, id oidclogin.Identity, purpose string) {
	detail, _ := json.Marshal(map[string]string{"issuer": id.Issuer, "email": id.Email, "for": purpose})
	_, err := s.st.AppendAudit(r.Context(), store.AuditEntry{Actor: cmp.Or(id.Email, id.Subject), Credential: "OIDC sign-in",
		Remote: r.RemoteAddr, Action: "signin.refused", Target: "subject " + id.Subject, Detail: string(detail)})
	if err != nil {
		s.log.Error("sign-in: recording a refusal in the audit log", "sub", id.Subject, "err", err)
	}
}
