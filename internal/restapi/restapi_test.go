package restapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"weft/internal/adminapi"
	"weft/internal/key"
	"weft/internal/nodelogin"
	"weft/internal/store"
	"weft/internal/tstest"
	"weft/internal/tstest/storetest"
)

// env is a REST API over a real store. alice (a member) owns nodes 0
// and 1, bob (a member) node 2; carol is an admin. Node 0 advertises
// 10.0.0.0/24. API keys: live, never (the server administrator's),
// expired, revoked, aliceKey (a member's) and carolKey (an admin user's).
type env struct {
	t                             *testing.T
	st                            store.Store
	srv                           *httptest.Server
	live, expired, revoked, never string
	aliceKey, carolKey            string
	nodes                         []string
	// aliceAuth and bobAuth are the prefixes of the users' pre-auth keys.
	aliceAuth, bobAuth string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	clk := tstest.NewClock(time.Now())
	st := storetest.Open(t, "", store.Options{Now: clk.Now}, "alice", "bob", "carol")
	e := &env{t: t, st: st}
	if _, err := st.SetUserRole(ctx, "carol", store.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	for i, u := range []string{"alice", "alice", "bob"} {
		secret, k, err := st.CreateAuthKey(ctx, store.AuthKeyRequest{User: u})
		if err != nil {
			t.Fatal(err)
		}
		if u == "alice" {
			e.aliceAuth = k.Prefix
		} else {
			e.bobAuth = k.Prefix
		}
		n, err := st.Register(ctx, store.RegisterRequest{AuthKey: secret, MachineKey: key.NewMachine().Public(),
			NodeKey: key.NewNode().Public(), Hostname: fmt.Sprintf("node%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if _, err := st.SetAdvertisedRoutes(ctx, n.ID, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}); err != nil {
				t.Fatal(err)
			}
		}
		e.nodes = append(e.nodes, n.Name)
	}
	mk := func(user string, exp time.Time) string {
		s, _, err := st.CreateAPIKey(ctx, store.APIKeyRequest{User: user, Expiry: exp})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	e.live = mk("", clk.Now().Add(90*24*time.Hour))
	e.expired = mk("", clk.Now().Add(time.Hour))
	e.revoked = mk("", time.Time{})
	e.never = mk("", time.Time{})
	e.aliceKey = mk("alice", time.Time{})
	e.carolKey = mk("carol", time.Time{})
	if err := st.RevokeAPIKey(ctx, e.revoked); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Hour)
	mux := http.NewServeMux()
	mux.Handle("/api/", &Handler{Store: st, Admin: (&adminapi.Server{Store: st, Logins: nodelogin.New(st)}).APIHandler()})
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

// do sends a request with the key (none when empty) and returns the
// status, the body and the reply headers.
func (e *env) do(method, path, apiKey, body string) (int, string, http.Header) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+apiKey)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, readAll(e.t, resp), resp.Header
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func nodeNames(t *testing.T, body string) []string {
	t.Helper()
	var ns []adminapi.Node
	if err := json.Unmarshal([]byte(body), &ns); err != nil {
		t.Fatalf("node list %q: %v", body, err)
	}
	var out []string
	for _, n := range ns {
		out = append(out, n.Name)
	}
	return out
}

// TestAuthorization: every endpoint refuses a request without a live key
// with 401 and changes nothing; a live key lists every node.
func TestAuthorization(t *testing.T) {
	e := newEnv(t)
	endpoints := []struct{ method, path, body string }{
		{"GET", "/api/v1/nodes", ""},
		{"GET", "/api/v1/nodes/" + e.nodes[0], ""},
		{"POST", "/api/v1/nodes/" + e.nodes[0] + "/rename", `{"name":"renamed"}`},
		{"POST", "/api/v1/nodes/" + e.nodes[0] + "/expire", ""},
		{"DELETE", "/api/v1/nodes/" + e.nodes[1], ""},
		{"GET", "/api/v1/users", ""},
		{"POST", "/api/v1/users", `{"name":"mallory"}`},
		{"GET", "/api/v1/keys", ""},
		{"POST", "/api/v1/keys", `{"user":"alice"}`},
		{"GET", "/api/v1/routes", ""},
		{"GET", "/api/v1/policy", ""},
		{"POST", "/api/v1/policy", `{"body":"{}"}`},
		{"GET", "/api/v1/apikeys", ""},
	}
	keys := []struct{ name, key, header string }{
		{"no key", "", ""},
		{"empty bearer", "", "Bearer "},
		{"basic scheme", "", "Basic " + e.live},
		{"wrong key", e.live[:len(e.live)-4] + "0000", ""},
		{"expired key", e.expired, ""},
		{"revoked key", e.revoked, ""},
		{"garbage", "not-a-key", ""},
	}
	for _, ep := range endpoints {
		for _, k := range keys {
			t.Run(ep.method+ep.path+"/"+k.name, func(t *testing.T) {
				req, _ := http.NewRequest(ep.method, e.srv.URL+ep.path, strings.NewReader(ep.body))
				switch {
				case k.header != "":
					req.Header.Set("Authorization", k.header)
				case k.key != "":
					req.Header.Set("Authorization", "Bearer "+k.key)
				}
				resp, err := e.srv.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body := readAll(t, resp)
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, CodeUnauthorized) ||
					resp.Header.Get("WWW-Authenticate") == "" {
					t.Fatalf("status %d, body %s; want 401 unauthorized", resp.StatusCode, body)
				}
				if strings.Contains(body, "node") && strings.Contains(body, e.nodes[0]) {
					t.Fatalf("401 reply shows a node: %s", body)
				}
			})
		}
	}
	// Nothing the refused requests asked for happened.
	ctx := context.Background()
	nodes, _ := e.st.ListNodes(ctx)
	users, _ := e.st.ListUsers(ctx)
	keysNow, _ := e.st.ListAuthKeys(ctx, "")
	if len(nodes) != 3 || nodes[0].Name != e.nodes[0] || !nodes[0].KeyExpiry.After(time.Now()) || len(users) != 3 || len(keysNow) != 3 {
		t.Fatalf("refused requests changed state: nodes %+v users %+v keys %d", nodes, users, len(keysNow))
	}

	for _, k := range []string{e.live, e.never} {
		code, body, _ := e.do("GET", "/api/v1/nodes", k, "")
		if code != http.StatusOK || !slices.Equal(nodeNames(t, body), e.nodes) {
			t.Fatalf("GET /api/v1/nodes with a live key: %d %s; want 200 naming %v", code, body, e.nodes)
		}
	}
	aks, _ := e.st.ListAPIKeys(ctx)
	if aks[0].LastUsed.IsZero() {
		t.Fatal("a key's use was not recorded")
	}
	// Key management is not reachable with a key, even a live one.
	if code, body, _ := e.do("POST", "/api/v1/apikeys", e.live, `{}`); code != http.StatusNotFound || !strings.Contains(body, "weft admin apikeys") {
		t.Fatalf("POST /api/v1/apikeys with a key: %d %s; want 404 pointing to weft admin apikeys", code, body)
	}
	if code, body, _ := e.do("POST", "/api/v1/console-link", e.live, ``); code != http.StatusNotFound {
		t.Fatalf("POST /api/v1/console-link with a key: %d %s; want 404", code, body)
	}
	if aks2, _ := e.st.ListAPIKeys(ctx); len(aks2) != len(aks) {
		t.Fatal("the REST API made an API key")
	}
}

// TestBadInput: oversized bodies, wrong types and bad parameters get a 4xx
// with a message saying what was wrong, and change nothing.
func TestBadInput(t *testing.T) {
	e := newEnv(t)
	n0 := "/api/v1/nodes/" + e.nodes[0]
	big := `{"name":"` + strings.Repeat("a", MaxBody) + `"}`
	for _, c := range []struct {
		name, method, path, body string
		status                   int
		msg                      string
	}{
		{"oversized body", "POST", n0 + "/rename", big, 413, "over 1 MiB"},
		{"oversized policy", "POST", "/api/v1/policy", `{"body":"` + strings.Repeat(" ", MaxBody) + `"}`, 413, "over 1 MiB"},
		{"name as number", "POST", n0 + "/rename", `{"name":5}`, 400, "cannot unmarshal number"},
		{"unknown field", "POST", n0 + "/rename", `{"nmae":"x"}`, 400, "unknown field"},
		{"not JSON", "POST", "/api/v1/users", `name=x`, 400, "request body"},
		{"bad node name", "POST", n0 + "/rename", `{"name":"Not A Label"}`, 400, "invalid"},
		{"prefixes as string", "POST", n0 + "/routes/approve", `{"prefixes":"10.0.0.0/8"}`, 400, "cannot unmarshal"},
		{"policy with a mistake", "POST", "/api/v1/policy", `{"body":"{\n  \"acls\": [\n    {\"action\": \"allow\", \"src\": [\"*\"], \"dst\": [\"*:99999\"]}\n  ]\n}"}`, 400, "line 3, column"},
		{"unknown node", "GET", "/api/v1/nodes/nosuch", "", 404, "no node named"},
		{"limit zero", "GET", "/api/v1/nodes?limit=0", "", 400, "limit"},
		{"limit word", "GET", "/api/v1/nodes?limit=ten", "", 400, "limit"},
		{"limit huge", "GET", "/api/v1/nodes?limit=100000", "", 400, "limit"},
		{"after negative", "GET", "/api/v1/nodes?after=-1", "", 400, "after"},
		{"unknown parameter", "GET", "/api/v1/nodes?order=name", "", 400, "unknown query parameter"},
		{"bad sort key", "GET", "/api/v1/nodes?sort=bogus", "", 400, `sort \"bogus\": want one of id, online, name`},
		{"sort as SQL", "GET", "/api/v1/nodes?sort=name%3B+DROP+TABLE+nodes", "", 400, "want one of"},
		{"desc word", "GET", "/api/v1/nodes?sort=name&desc=maybe", "", 400, "desc"},
		{"offset negative", "GET", "/api/v1/nodes?offset=-1", "", 400, `offset \"-1\": want a whole number from 0`},
		{"offset word", "GET", "/api/v1/nodes?offset=two", "", 400, "offset"},
		{"offset huge", "GET", "/api/v1/nodes?offset=99999999999", "", 400, "offset"},
		{"after with a sort", "GET", "/api/v1/nodes?sort=name&after=1", "", 400, "page with offset"},
		{"search too long", "GET", "/api/v1/nodes?q=" + strings.Repeat("a", adminapi.MaxSearch+1), "", 400, "q:"},
		{"not under v1", "GET", "/api/v2/nodes", "", 404, "/api/v1/"},
		{"unknown endpoint", "GET", "/api/v1/nope", "", 404, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, body, _ := e.do(c.method, c.path, e.live, c.body)
			var er adminapi.ErrorReply
			if code != c.status || (c.msg != "" && !strings.Contains(body, c.msg)) {
				t.Fatalf("status %d body %.300s; want %d with %q", code, body, c.status, c.msg)
			}
			if code != 404 || c.msg != "" {
				if err := json.Unmarshal([]byte(body), &er); err != nil || er.Message == "" {
					t.Fatalf("error reply %q is not an ErrorReply with a message: %v", body, err)
				}
			}
		})
	}
	ctx := context.Background()
	nodes, _ := e.st.ListNodes(ctx)
	users, _ := e.st.ListUsers(ctx)
	if len(nodes) != 3 || nodes[0].Name != e.nodes[0] || len(users) != 3 {
		t.Fatalf("bad input changed state: %+v %+v", nodes, users)
	}
	if _, err := e.st.GetPolicy(ctx, 0); err == nil {
		t.Fatal("a refused policy was stored")
	}
}

// TestNodePaging walks the node list a page at a time and gets every node
// once, in ID order, with the next-page header on every page but the last.
func TestNodePaging(t *testing.T) {
	e := newEnv(t)
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		if pages > 3 {
			t.Fatal("paging does not end")
		}
		code, body, h := e.do("GET", "/api/v1/nodes?limit=2"+after, e.live, "")
		if code != 200 {
			t.Fatalf("page %d: %d %s", pages, code, body)
		}
		names := nodeNames(t, body)
		got = append(got, names...)
		next := h.Get(adminapi.NextAfterHeader)
		if next == "" {
			if pages != 1 || len(names) != 1 {
				t.Fatalf("last page is page %d with %v", pages, names)
			}
			break
		}
		after = "&after=" + next
	}
	if !slices.Equal(got, e.nodes) {
		t.Fatalf("pages gave %v, want %v", got, e.nodes)
	}
	code, body, _ := e.do("GET", "/api/v1/nodes?user=bob", e.live, "")
	if code != 200 || !slices.Equal(nodeNames(t, body), e.nodes[2:]) {
		t.Fatalf("user=bob: %d %s", code, body)
	}
}

// TestChanges: a live key can change what the admin API changes.
func TestChanges(t *testing.T) {
	e := newEnv(t)
	n0 := "/api/v1/nodes/" + e.nodes[0]
	if code, body, _ := e.do("POST", n0+"/rename", e.live, `{"name":"renamed"}`); code != 200 || !strings.Contains(body, `"renamed"`) {
		t.Fatalf("rename: %d %s", code, body)
	}
	if code, body, _ := e.do("DELETE", "/api/v1/nodes/"+e.nodes[1], e.live, ""); code != 204 {
		t.Fatalf("delete: %d %s", code, body)
	}
	code, body, _ := e.do("POST", "/api/v1/keys", e.live, `{"user":"bob","expiry":"24h"}`)
	var kr adminapi.KeyReply
	if code != 201 || json.Unmarshal([]byte(body), &kr) != nil || !strings.HasPrefix(kr.Key, kr.Info.Prefix+"_") {
		t.Fatalf("pre-auth key create: %d %s", code, body)
	}
	code, body, _ = e.do("GET", "/api/v1/keys", e.live, "")
	if code != 200 || !strings.Contains(body, kr.Info.Prefix) || strings.Contains(body, kr.Key) {
		t.Fatalf("pre-auth key list shows the secret or misses the key: %d %s", code, body)
	}
	code, body, _ = e.do("GET", "/api/v1/nodes", e.live, "")
	if code != 200 || !slices.Equal(nodeNames(t, body), []string{"renamed", e.nodes[2]}) {
		t.Fatalf("after changes: %d %s", code, body)
	}
}
