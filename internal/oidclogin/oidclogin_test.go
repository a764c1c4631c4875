package oidclogin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"weft/internal/oidctest"
	"weft/internal/store"
	"weft/internal/tstest/storetest"
)

// rp is a relying party on a loopback port: /start begins a sign-in,
// the callback answers with what Finish returned as JSON.
type rp struct {
	url   string
	login *Login
	// finisher finishes sign-ins at the callback: login, or another
	// server's Login on the same database.
	finisher  *Login
	cfg       Config
	db        string   // the store's file
	callbacks []string // callback URLs the browser was sent to
}

type result struct {
	Identity Identity
	Purpose  string
	Data     string
	Err      string
}

func startRP(t *testing.T, cfgFn func(*Config), users ...oidctest.User) (*rp, *oidctest.Provider) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	p := oidctest.Start(t, base+CallbackPath, users...)
	r := &rp{url: base, db: filepath.Join(t.TempDir(), "weft.db")}
	r.cfg = Config{Issuer: p.Issuer, ClientID: p.ClientID, ClientSecret: p.ClientSecret, RedirectURL: base + CallbackPath}
	if cfgFn != nil {
		cfgFn(&r.cfg)
	}
	r.login = r.newLogin(t)
	r.finisher = r.login
	mux := http.NewServeMux()
	mux.HandleFunc("/start", func(w http.ResponseWriter, req *http.Request) { r.login.Begin(w, req, "node", "code123") })
	mux.HandleFunc(CallbackPath, func(w http.ResponseWriter, req *http.Request) {
		id, purpose, data, err := r.finisher.Finish(req)
		res := result{Identity: id, Purpose: purpose, Data: data}
		if err != nil {
			res.Err = err.Error()
		}
		json.NewEncoder(w).Encode(res)
	})
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: mux}}
	srv.Start()
	t.Cleanup(srv.Close)
	return r, p
}

// newLogin is a Login with the rp's configuration over a store handle of
// its own on the rp's database: another server's.
func (r *rp) newLogin(t *testing.T) *Login {
	t.Helper()
	cfg := r.cfg
	cfg.Flows = storetest.Open(t, r.db, store.Options{})
	l, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func (r *rp) browser(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), r.url+CallbackPath) {
			r.callbacks = append(r.callbacks, req.URL.String())
		}
		return nil
	}}
}

func (r *rp) signIn(t *testing.T, p *oidctest.Provider, c *http.Client, user string) result {
	t.Helper()
	code, body, err := p.SignIn(c, r.url+"/start", user, "secret")
	if err != nil || code != 200 {
		t.Fatalf("sign-in as %s: %d %v %s", user, code, err, body)
	}
	var res result
	if err := json.Unmarshal([]byte(body), &res); err != nil {
		t.Fatalf("callback reply %q: %v", body, err)
	}
	return res
}

var users = []oidctest.User{
	{ID: "sub-alice", Username: "alice", Password: "secret", Email: "alice@example.com", EmailVerified: true, Groups: []string{"eng"}},
	{ID: "sub-bob", Username: "bob", Password: "secret", Email: "bob@other.org", EmailVerified: true, Groups: []string{"ops"}},
	{ID: "sub-eve", Username: "eve", Password: "secret", Email: "eve@example.com", EmailVerified: false},
}

// TestSignIn signs in through a real provider and gets the provider's
// issuer and subject, the email (from userinfo: the provider keeps it
// out of the ID token) and the groups claim, with Begin's purpose and
// data; the callback cannot be replayed or used from another browser.
func TestSignIn(t *testing.T) {
	r, p := startRP(t, nil, users...)
	c := r.browser(t)
	res := r.signIn(t, p, c, "alice")
	want := Identity{Issuer: p.Issuer, Subject: "sub-alice", Email: "alice@example.com", EmailVerified: true, Name: "alice", Groups: []string{"eng"}}
	if res.Err != "" || fmt.Sprint(res.Identity) != fmt.Sprint(want) || res.Purpose != "node" || res.Data != "code123" {
		t.Fatalf("sign-in: %+v; want %+v", res, want)
	}
	if len(r.callbacks) != 1 {
		t.Fatalf("callbacks seen: %v", r.callbacks)
	}
	for _, who := range []struct {
		name string
		c    *http.Client
		want string
	}{
		{"replay in the same browser", c, "expired or was already used"},
		{"another browser", r.browser(t), "not started in this browser"},
	} {
		resp, err := who.c.Get(r.callbacks[0])
		if err != nil {
			t.Fatal(err)
		}
		var got result
		json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if !strings.Contains(got.Err, who.want) || got.Identity.Subject != "" {
			t.Errorf("%s: %+v; want an error with %q", who.name, got, who.want)
		}
	}
}

// TestSignInFinishedAtAnotherServer: a sign-in begun at one server is
// finished at another on the same database (the provider's redirect
// went through the load balancer to another server), once.
func TestSignInFinishedAtAnotherServer(t *testing.T) {
	r, p := startRP(t, nil, users...)
	r.finisher = r.newLogin(t)
	c := r.browser(t)
	res := r.signIn(t, p, c, "bob")
	if res.Err != "" || res.Identity.Subject != "sub-bob" || res.Purpose != "node" || res.Data != "code123" {
		t.Fatalf("sign-in finished at the other server: %+v", res)
	}
	r.finisher = r.login
	resp, err := c.Get(r.callbacks[0])
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var again result
	json.NewDecoder(resp.Body).Decode(&again)
	if !strings.Contains(again.Err, "expired or was already used") || again.Identity.Subject != "" {
		t.Fatalf("the callback again at the first server: %+v", again)
	}
}

// TestAllowed: the allowed domains, users and groups let in exactly whom
// they name; an unverified email counts for nothing.
func TestAllowed(t *testing.T) {
	for _, c := range []struct {
		name    string
		cfg     func(*Config)
		allowed []string
	}{
		{"everyone", nil, []string{"alice", "bob", "eve"}},
		{"domain", func(c *Config) { c.AllowedDomains = []string{"example.com"} }, []string{"alice"}},
		{"user", func(c *Config) { c.AllowedUsers = []string{"bob@other.org", "eve@example.com"} }, []string{"bob"}},
		{"group", func(c *Config) { c.AllowedGroups = []string{"ops"} }, []string{"bob"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, p := startRP(t, c.cfg, users...)
			for _, u := range users {
				res := r.signIn(t, p, r.browser(t), u.Username)
				in := res.Err == ""
				if in != slices.Contains(c.allowed, u.Username) {
					t.Errorf("%s: signed in %v (%s); want %v", u.Username, in, res.Err, !in)
				}
				if !in && !strings.Contains(res.Err, "not allowed") {
					t.Errorf("%s refused with %q", u.Username, res.Err)
				}
			}
		})
	}
}

func TestNewNeedsProvider(t *testing.T) {
	st := storetest.Open(t, "", store.Options{})
	_, err := New(context.Background(), Config{Issuer: "http://127.0.0.1:1", ClientID: "x", RedirectURL: "http://x/cb", Flows: st})
	if err == nil || !strings.Contains(err.Error(), "discovering") {
		t.Fatalf("unreachable issuer: %v", err)
	}
	if _, err := New(context.Background(), Config{}); err == nil || errors.Is(err, nil) {
		t.Fatal("empty config accepted")
	}
}

// TestTwoSignInsInOneBrowser: two sign-ins started in one browser (two
// tabs) before either finishes both succeed, whichever finishes first,
// also when a callback lands on another server: each has its own state
// cookie, and its secrets still come from that cookie alone.
func TestTwoSignInsInOneBrowser(t *testing.T) {
	for _, other := range []bool{false, true} {
		t.Run(fmt.Sprintf("another server %v", other), func(t *testing.T) {
			r, p := startRP(t, nil, users...)
			if other {
				r.finisher = r.newLogin(t)
			}
			c := r.browser(t)
			var ids []string // the provider's login form of each tab
			for range 2 {
				resp, err := c.Get(r.url + "/start")
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if !strings.HasPrefix(resp.Request.URL.String(), p.Issuer+"/login/username") {
					t.Fatalf("start led to %s", resp.Request.URL)
				}
				ids = append(ids, resp.Request.URL.Query().Get("authRequestID"))
			}
			for i, who := range []struct {
				tab  int
				user string
			}{{1, "bob"}, {0, "alice"}} {
				resp, err := c.PostForm(p.Issuer+"/login/username", url.Values{"username": {who.user}, "password": {"secret"}, "id": {ids[who.tab]}})
				if err != nil {
					t.Fatal(err)
				}
				var res result
				err = json.NewDecoder(resp.Body).Decode(&res)
				resp.Body.Close()
				if err != nil || res.Err != "" || res.Identity.Subject != "sub-"+who.user {
					t.Fatalf("tab %d (finished %d of 2): %+v, %v; want %s signed in", who.tab, i+1, res, err, who.user)
				}
			}
		})
	}
}
