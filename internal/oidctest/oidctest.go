// Package oidctest runs a real OpenID provider for tests: the provider of
// zitadel/oidc (pkg/op, a certified OpenID provider library) with its
// example storage and login form, in the test process on a loopback
// port. Only the users and the "groups" claim are weft's: the protocol,
// tokens, signatures and endpoints are the library's.
package oidctest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// User is a person the provider knows. ID is the subject it reports.
type User struct {
	ID, Username, Password, Email string
	EmailVerified                 bool
	Groups                        []string
}

// Provider is a running OpenID provider.
type Provider struct {
	Issuer, ClientID, ClientSecret string
}

type userStore struct{ users map[string]*storage.User }

func (s userStore) GetUserByID(id string) *storage.User { return s.users[id] }
func (s userStore) GetUserByUsername(name string) *storage.User {
	for _, u := range s.users {
		if u.Username == name {
			return u
		}
	}
	return nil
}
func (s userStore) ExampleClientID() string { return "service" }

// groupsStorage adds a "groups" claim to ID tokens asked for with the
// "groups" scope, as providers such as Keycloak, Dex and Okta do.
type groupsStorage struct {
	*storage.Storage
	groups map[string][]string
}

func (s *groupsStorage) SetUserinfoFromRequest(ctx context.Context, ui *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, ui, req, scopes); err != nil {
		return err
	}
	if slices.Contains(scopes, "groups") {
		ui.AppendClaims("groups", s.groups[req.GetSubject()])
	}
	return nil
}

func (s *groupsStorage) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, err := s.Storage.GetClientByClientID(ctx, id)
	if err != nil {
		return nil, err
	}
	return groupsClient{c}, nil
}

type groupsClient struct{ op.Client }

func (c groupsClient) IsScopeAllowed(s string) bool {
	return s == "groups" || c.Client.IsScopeAllowed(s)
}

// Start runs a provider until the test ends, with one web client whose
// callback is redirectURL, and users.
func Start(t testing.TB, redirectURL string, users ...User) *Provider {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	srv.Start()
	t.Cleanup(srv.Close)
	issuer := srv.URL
	us := userStore{users: map[string]*storage.User{}}
	groups := map[string][]string{}
	for _, u := range users {
		us.users[u.ID] = &storage.User{ID: u.ID, Username: u.Username, Password: u.Password, Email: u.Email,
			EmailVerified: u.EmailVerified, FirstName: u.Username, LastName: "Test", PreferredLanguage: language.English}
		groups[u.ID] = u.Groups
	}
	p := &Provider{Issuer: issuer, ClientID: "weft", ClientSecret: "weft-client-secret"}
	st := &groupsStorage{
		Storage: storage.NewStorageWithClients(us, map[string]*storage.Client{
			p.ClientID: storage.WebClient(p.ClientID, p.ClientSecret, redirectURL),
		}),
		groups: groups,
	}
	srv.Config.Handler = exampleop.SetupServer(issuer, st, nil, false, op.WithAllowInsecure())
	return p
}

// SignIn signs in as a browser would: c (which must keep cookies) opens
// startURL, which leads to the provider's login form; the form is sent
// with username and password, and the redirects back are followed. It
// returns the last response's status and body.
func (p *Provider) SignIn(c *http.Client, startURL, username, password string) (int, string, error) {
	resp, err := c.Get(startURL)
	if err != nil {
		return 0, "", err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	at := resp.Request.URL
	if !strings.HasPrefix(at.String(), p.Issuer+"/login/username") {
		return resp.StatusCode, "", fmt.Errorf("oidctest: %s did not lead to the provider's login form but to %s (%s)", startURL, at, resp.Status)
	}
	form := url.Values{"username": {username}, "password": {password}, "id": {at.Query().Get("authRequestID")}}
	resp, err = c.PostForm(p.Issuer+"/login/username", form)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}
