package restapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"weft/internal/adminapi"
	"weft/internal/store"
)

// state is what a refused request must leave alone.
type state struct {
	Nodes    []store.Node
	Users    []store.User
	Keys     []store.AuthKey
	Policies []store.PolicyVersion
	Audit    int
}

func (e *env) state() state {
	e.t.Helper()
	ctx := context.Background()
	var s state
	var err error
	if s.Nodes, err = e.st.ListNodes(ctx); err != nil {
		e.t.Fatal(err)
	}
	if s.Users, err = e.st.ListUsers(ctx); err != nil {
		e.t.Fatal(err)
	}
	if s.Keys, err = e.st.ListAuthKeys(ctx, ""); err != nil {
		e.t.Fatal(err)
	}
	if s.Policies, err = e.st.ListPolicies(ctx); err != nil {
		e.t.Fatal(err)
	}
	a, err := e.st.ListAudit(ctx, store.AuditQuery{})
	if err != nil {
		e.t.Fatal(err)
	}
	s.Audit = len(a)
	return s
}

func (s state) json(t *testing.T) string {
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// accessCase is one request and the status each kind of caller gets.
// {alice} {bob} {alicekey} {bobkey} in path and body are filled in from
// the env: alice is a member, bob another member.
type accessCase struct {
	pattern      string // the adminapi route this exercises, "METHOD /v1/…"
	method, path string
	body         string
	admin        int // the server administrator's key, and carol's (an admin user's)
	member       int // alice's key
}

var accessCases = []accessCase{
	{"GET /v1/nodes", "GET", "/nodes", "", 200, 200},
	{"GET /v1/nodes", "GET", "/nodes?user=bob", "", 200, 403},
	{"GET /v1/nodes/{node}", "GET", "/nodes/{alice}", "", 200, 200},
	{"GET /v1/nodes/{node}", "GET", "/nodes/{bob}", "", 200, 404},
	{"GET /v1/nodes/{node}/health", "GET", "/nodes/{bob}/health", "", 200, 404},
	{"GET /v1/nodes/{node}/health", "GET", "/nodes/{alice}/health", "", 200, 200},
	{"GET /v1/nodes/{node}/health/samples", "GET", "/nodes/{bob}/health/samples", "", 200, 404},
	{"GET /v1/nodes/{node}/health/samples", "GET", "/nodes/{alice}/health/samples", "", 200, 200},
	{"POST /v1/nodes/{node}/rename", "POST", "/nodes/{bob}/rename", `{"name":"renamed"}`, 200, 404},
	{"POST /v1/nodes/{node}/rename", "POST", "/nodes/{alice}/rename", `{"name":"renamed"}`, 200, 200},
	{"POST /v1/nodes/{node}/expire", "POST", "/nodes/{bob}/expire", "", 200, 404},
	{"POST /v1/nodes/{node}/expire", "POST", "/nodes/{alice}/expire", "", 200, 200},
	{"DELETE /v1/nodes/{node}", "DELETE", "/nodes/{bob}", "", 204, 404},
	{"DELETE /v1/nodes/{node}", "DELETE", "/nodes/{alice}", "", 204, 204},
	{"POST /v1/nodes/{node}/tags", "POST", "/nodes/{alice}/tags", `{"tags":["tag:server"]}`, 200, 403},
	{"GET /v1/routes", "GET", "/routes", "", 200, 200},
	{"GET /v1/nodes/{node}/routes", "GET", "/nodes/{alice}/routes", "", 200, 200},
	{"GET /v1/nodes/{node}/routes", "GET", "/nodes/{bob}/routes", "", 200, 404},
	{"POST /v1/nodes/{node}/routes/approve", "POST", "/nodes/{alice}/routes/approve", `{"prefixes":["10.0.0.0/24"]}`, 200, 403},
	{"POST /v1/nodes/{node}/routes/reject", "POST", "/nodes/{alice}/routes/reject", `{"prefixes":["10.0.0.0/24"]}`, 200, 403},
	{"GET /v1/users", "GET", "/users", "", 200, 200},
	{"POST /v1/users", "POST", "/users", `{"name":"mallory"}`, 201, 403},
	{"DELETE /v1/users/{name}", "DELETE", "/users/carol", "", 204, 403},
	{"POST /v1/users/{name}/role", "POST", "/users/alice/role", `{"role":"admin"}`, 200, 403},
	{"GET /v1/keys", "GET", "/keys", "", 200, 200},
	{"GET /v1/keys", "GET", "/keys?user=bob", "", 200, 403},
	{"POST /v1/keys", "POST", "/keys", `{"user":"alice"}`, 201, 201},
	{"POST /v1/keys", "POST", "/keys", `{"user":"bob"}`, 201, 403},
	{"POST /v1/keys", "POST", "/keys", `{"user":"alice","tags":["tag:server"]}`, 201, 403},
	{"POST /v1/keys/{prefix}/expire", "POST", "/keys/{bobkey}/expire", "", 204, 404},
	{"POST /v1/keys/{prefix}/expire", "POST", "/keys/{alicekey}/expire", "", 204, 204},
	{"POST /v1/keys/{prefix}/revoke", "POST", "/keys/{bobkey}/revoke", "", 204, 404},
	{"POST /v1/keys/{prefix}/revoke", "POST", "/keys/{alicekey}/revoke", "", 204, 204},
	{"GET /v1/policy", "GET", "/policy", "", 200, 403},
	{"POST /v1/policy", "POST", "/policy", `{"body":"{}"}`, 200, 403},
	{"POST /v1/policy/check", "POST", "/policy/check", `{"body":"{}"}`, 204, 403},
	{"GET /v1/policy/history", "GET", "/policy/history", "", 200, 403},
	{"GET /v1/dns", "GET", "/dns", "", 200, 403},
	{"PUT /v1/dns", "PUT", "/dns", `{"source":"{}"}`, 200, 403},
	{"GET /v1/audit", "GET", "/audit", "", 200, 403},
	{"GET /v1/logins", "GET", "/logins", "", 200, 403},
	{"POST /v1/logins/{code}/approve", "POST", "/logins/nosuch/approve", `{"user":"alice"}`, 404, 403},
}

func (e *env) fill(s string) string {
	return strings.NewReplacer("{alice}", e.nodes[0], "{bob}", e.nodes[2],
		"{alicekey}", e.aliceAuth, "{bobkey}", e.bobAuth).Replace(s)
}

// TestAccessEveryEndpoint: for every endpoint of the REST API, an admin
// (the server administrator's key and an admin user's key) and a member
// get the status the permission levels give them; a refused request
// (403, 404, and 401 without a live key) changes nothing, not even the
// audit log; an accepted change is in the audit log with who made it.
func TestAccessEveryEndpoint(t *testing.T) {
	callers := []struct {
		name, credential, actor string
		key                     func(*env) string
		want                    func(accessCase) int
	}{
		{"server admin", "API key wa", "", func(e *env) string { return e.live }, func(c accessCase) int { return c.admin }},
		{"admin user", "API key wa", "carol", func(e *env) string { return e.carolKey }, func(c accessCase) int { return c.admin }},
		{"member", "API key wa", "alice", func(e *env) string { return e.aliceKey }, func(c accessCase) int { return c.member }},
		{"no key", "", "", func(*env) string { return "" }, func(accessCase) int { return 401 }},
		{"expired key", "", "", func(e *env) string { return e.expired }, func(accessCase) int { return 401 }},
		{"revoked key", "", "", func(e *env) string { return e.revoked }, func(accessCase) int { return 401 }},
	}
	for _, c := range accessCases {
		for _, who := range callers {
			t.Run(c.method+c.path+"/"+who.name, func(t *testing.T) {
				e := newEnv(t)
				before := e.state()
				code, body, _ := e.do(c.method, "/api/v1"+e.fill(c.path), who.key(e), e.fill(c.body))
				want := who.want(c)
				if code != want {
					t.Fatalf("status %d, want %d: %s", code, want, body)
				}
				after := e.state()
				if code/100 != 2 {
					var er adminapi.ErrorReply
					if json.Unmarshal([]byte(body), &er) != nil || er.Message == "" {
						t.Fatalf("refusal %q is not an ErrorReply with a message", body)
					}
					if before.json(t) != after.json(t) {
						t.Fatalf("a refused request changed state:\nbefore %s\nafter  %s", before.json(t), after.json(t))
					}
					return
				}
				if c.method == "GET" {
					checkOnlyOwn(t, e, who.actor, c.path, body)
				}
				if routeAction(c.pattern) == "" {
					if after.Audit != before.Audit {
						t.Fatalf("a request that changes nothing was audited")
					}
					return
				}
				if after.Audit != before.Audit+1 {
					t.Fatalf("audit log has %d entries after a change, had %d", after.Audit, before.Audit)
				}
				es, _ := e.st.ListAudit(context.Background(), store.AuditQuery{Limit: 1})
				if es[0].Action != routeAction(c.pattern) || es[0].Actor != who.actor || !strings.HasPrefix(es[0].Credential, who.credential) || es[0].Remote == "" || es[0].Action == "" {
					t.Fatalf("audit entry %+v; want actor %q via %q", es[0], who.actor, who.credential)
				}
			})
		}
	}
}

func routeAction(pattern string) string {
	for _, rt := range adminapi.Routes() {
		if rt.Method+" "+rt.Path == pattern {
			return rt.Action
		}
	}
	return ""
}

// checkOnlyOwn: a member's lists hold only the member's own things.
func checkOnlyOwn(t *testing.T, e *env, user, path, body string) {
	if user != "alice" {
		return
	}
	var items []map[string]any
	if json.Unmarshal([]byte(body), &items) != nil {
		return // a single object, checked by its status
	}
	for _, it := range items {
		owner, _ := it["user"].(string)
		if name, ok := it["node_name"].(string); ok {
			owner = map[string]string{e.nodes[0]: "alice", e.nodes[1]: "alice"}[name]
		}
		if path == "/users" {
			owner, _ = it["name"].(string)
		}
		if owner != "alice" {
			t.Fatalf("member alice's %s shows %v", path, it)
		}
	}
}

// TestAccessTableCoversEveryRoute is the drift guard of the table above:
// every endpoint the REST API serves has a row.
func TestAccessTableCoversEveryRoute(t *testing.T) {
	var have []string
	for _, c := range accessCases {
		have = append(have, c.pattern)
	}
	for _, rt := range adminapi.Routes() {
		p := rt.Method + " " + rt.Path
		if !rt.Local && !slices.Contains(have, p) {
			t.Errorf("%s has no row in accessCases", p)
		}
	}
}

// TestMemberSeesOwnNodes: a member's node list names exactly their nodes,
// also when filtered and paged.
func TestMemberSeesOwnNodes(t *testing.T) {
	e := newEnv(t)
	for _, q := range []string{"", "?limit=1", "?user=alice", "?name=node", "?q=node", "?sort=online&desc=true", "?sort=name&offset=0&limit=5"} {
		var got []string
		path := "/api/v1/nodes" + q
		for path != "" {
			code, body, h := e.do("GET", path, e.aliceKey, "")
			if code != http.StatusOK {
				t.Fatalf("%s: %d %s", path, code, body)
			}
			got = append(got, nodeNames(t, body)...)
			path = ""
			if next := h.Get(adminapi.NextAfterHeader); next != "" {
				path = fmt.Sprintf("/api/v1/nodes?limit=1&after=%s", next)
			}
		}
		if !slices.Equal(got, e.nodes[:2]) {
			t.Fatalf("alice's nodes%s: %v, want %v", q, got, e.nodes[:2])
		}
	}
}

// TestBadBodyEveryEndpoint: every endpoint that takes a body refuses, with
// a 4xx and a message, a body of the wrong JSON type, an unknown field,
// a field of the wrong type, JSON cut short and a body over 1 MiB, and
// changes nothing (not even the audit log).
func TestBadBodyEveryEndpoint(t *testing.T) {
	e := newEnv(t)
	before := e.state()
	bodies := []struct {
		name, body string
		status     int
	}{
		{"array", `[]`, 400},
		{"unknown field", `{"bogus":1}`, 400},
		{"number for a string", `{"name":1,"user":1,"role":1,"body":1,"source":1,"prefixes":1,"tags":1}`, 400},
		{"cut short", `{"name":`, 400},
		{"over 1 MiB", `{"name":"` + strings.Repeat("x", MaxBody) + `"}`, 413},
	}
	seen := map[string]bool{}
	for _, c := range accessCases {
		if c.body == "" || c.admin/100 != 2 || seen[c.pattern] {
			continue
		}
		seen[c.pattern] = true
		for _, b := range bodies {
			t.Run(c.pattern+"/"+b.name, func(t *testing.T) {
				code, body, _ := e.do(c.method, "/api/v1"+e.fill(c.path), e.live, b.body)
				var er adminapi.ErrorReply
				if code != b.status || json.Unmarshal([]byte(body), &er) != nil || er.Message == "" {
					t.Fatalf("status %d %.200s; want %d with a message", code, body, b.status)
				}
			})
		}
	}
	if len(seen) < 8 {
		t.Fatalf("only %d endpoints with bodies checked", len(seen))
	}
	if after := e.state(); before.json(t) != after.json(t) {
		t.Fatalf("bad bodies changed state:\nbefore %s\nafter  %s", before.json(t), after.json(t))
	}
}
