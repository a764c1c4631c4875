package console

import (
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

var rowName = regexp.MustCompile(`<tr data-node="([^"]+)">`)

// names are the node names of a nodes page, in order.
func names(body string) []string {
	var out []string
	for _, m := range rowName.FindAllStringSubmatch(body, -1) {
		out = append(out, m[1])
	}
	return out
}

// nodeNames gets the nodes page /admin/ with query q as the holder of
// cookie and returns the names of its rows; anything but a 200 fails t.
func (e *env) nodeNames(t testing.TB, cookie *http.Cookie, q string) []string {
	t.Helper()
	resp := e.do("GET", "/admin/"+q, cookie, nil, nil)
	body := bodyOf(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("%s: %d\n%s", q, resp.StatusCode, body)
	}
	return names(body)
}

// sortedNodes are the names of e's nodes in name order.
func (e *env) sortedNodes() []string {
	all := slices.Clone(e.nodes)
	slices.Sort(all)
	return all
}

// TestNodesTable: the table is cut into PageSize pages server-side,
// searched, and sorted both ways.
func TestNodesTable(t *testing.T) {
	e := newEnv(t, PageSize+30)
	cookie := e.signIn()
	all := e.sortedNodes()
	for _, c := range []struct {
		query string
		want  []string
	}{
		{"", all[:PageSize]},
		{"?page=2", all[PageSize:]},
		{"?page=99", all[PageSize:]}, // past the end: the last page
		{"?sort=name&desc=1", reversed(all)[:PageSize]},
		{"?q=secretnode12", filter(all, "secretnode12")},
		{"?q=SECRETNODE12", filter(all, "secretnode12")},
		{"?q=nomatch", nil},
		{"?sort=bogus", all[:PageSize]},
	} {
		t.Run(c.query, func(t *testing.T) {
			if got := e.nodeNames(t, cookie, c.query); !slices.Equal(got, c.want) {
				t.Fatalf("got %d rows %v…, want %d %v…", len(got), head(got), len(c.want), head(c.want))
			}
		})
	}
	body := bodyOf(t, e.do("GET", "/admin/", cookie, nil, nil))
	for _, want := range []string{`id="next"`, "page 1 of 2", `class="state online">online`, "1 awaiting approval"} {
		if !strings.Contains(body, want) {
			t.Errorf("nodes page lacks %q", want)
		}
	}
}

func reversed(s []string) []string { r := slices.Clone(s); slices.Reverse(r); return r }
func head(s []string) []string     { return s[:min(3, len(s))] }
func filter(s []string, sub string) []string {
	var out []string
	for _, x := range s {
		if strings.Contains(x, sub) {
			out = append(out, x)
		}
	}
	return out
}

// TestApproveExitNode: the node page's approve button approves both exit
// routes through the admin API, and reject withdraws them.
func TestApproveExitNode(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	cookie := e.signIn()
	body := bodyOf(t, e.do("GET", "/admin/nodes/id:1", cookie, nil, nil))
	if !strings.Contains(body, `value="approve"`) || !strings.Contains(body, `data-src="/admin/nodes/id:1/health.json"`) {
		t.Fatalf("node page has no approve button or health plots:\n%s", body)
	}
	for _, c := range []struct {
		action string
		want   bool
	}{{"approve", true}, {"reject", false}} {
		resp := e.post(cookie, "/admin/nodes/id:1/routes", url.Values{"prefix": {"exit"}, "action": {c.action}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("%s: %d\n%s", c.action, resp.StatusCode, bodyOf(t, resp))
		}
		n, err := e.st.GetNode(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		if got := slices.Contains(n.EnabledRoutes(), netip.MustParsePrefix("0.0.0.0/0")); got != c.want {
			t.Fatalf("after %s: exit route enabled %v", c.action, got)
		}
	}
	for _, bad := range []url.Values{{"prefix": {"nonsense"}, "action": {"approve"}}, {"prefix": {"exit"}, "action": {"maybe"}}} {
		if resp := e.post(cookie, "/admin/nodes/id:1/routes", bad); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%v: %d, want 400", bad, resp.StatusCode)
		}
	}
}

var secretRE = regexp.MustCompile(`<code id="secret">([^<]+)</code>`)

// TestKeyShownOnce: a new pre-auth key's secret is in the reply to the
// form that made it and on no page after; revoking it makes it unusable.
func TestKeyShownOnce(t *testing.T) {
	e := newEnv(t, 0)
	cookie := e.signIn()
	resp := e.post(cookie, "/admin/keys", url.Values{"user": {"alice"}, "expiry": {"1h"}})
	body := bodyOf(t, resp)
	m := secretRE.FindStringSubmatch(body)
	if resp.StatusCode != http.StatusCreated || m == nil {
		t.Fatalf("create: %d\n%s", resp.StatusCode, body)
	}
	secret := m[1]
	if strings.Count(body, secret) != 1 {
		t.Fatalf("the reply shows the secret %d times", strings.Count(body, secret))
	}
	for _, p := range pages {
		if b := bodyOf(t, e.do("GET", p, cookie, nil, nil)); strings.Contains(b, secret) {
			t.Fatalf("%s shows the secret again", p)
		}
	}
	if resp := e.post(cookie, "/admin/keys", url.Values{"user": {"nobody"}}); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("key for an unknown user: %d", resp.StatusCode)
	}
	prefix := secret[:14]
	keys, _ := e.st.ListAuthKeys(context.Background(), "alice")
	for _, k := range keys {
		if strings.HasPrefix(secret, k.Prefix) {
			prefix = k.Prefix
		}
	}
	if resp := e.post(cookie, "/admin/keys/"+prefix+"/expire", url.Values{}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}
	keys, _ = e.st.ListAuthKeys(context.Background(), "alice")
	for _, k := range keys {
		if k.Prefix == prefix && k.Usable(time.Now().Add(time.Second)) {
			t.Fatal("revoked key still usable")
		}
	}
}

// TestPolicyEditor: a policy with a mistake is refused with its line
// marked and nothing saved; a policy whose test fails likewise; a correct
// one is saved.
func TestPolicyEditor(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	cookie := e.signIn()
	node := e.nodes[0]
	for _, c := range []struct {
		name, body string
		line       int
	}{
		{"syntax", "{\n  \"acls\": [\n    {\"action\": \"accept\" \"src\": [\"*\"]}\n  ]\n}", 3},
		{"unknown user", "{\n  \"acls\": [\n    {\"action\": \"accept\", \"src\": [\"bob@\"], \"dst\": [\"*:*\"]},\n  ],\n}", 3},
		{"failing test", "{\n  \"acls\": [],\n  \"tests\": [\n    {\"src\": \"" + node + "\", \"accept\": [\"" + node + ":22\"]},\n  ],\n}", 4},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp := e.post(cookie, "/admin/policy", url.Values{"action": {"save"}, "body": {c.body}})
			body := bodyOf(t, resp)
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `id="policy-errors"`) {
				t.Fatalf("status %d\n%s", resp.StatusCode, body)
			}
			bad := regexp.MustCompile(`class="line bad" id="line-(\d+)"`).FindAllStringSubmatch(body, -1)
			if len(bad) != 1 || bad[0][1] != strconvI(c.line) {
				t.Fatalf("marked lines %v, want line %d\n%s", bad, c.line, body)
			}
			if pols, _ := e.st.ListPolicies(ctx); len(pols) != 0 {
				t.Fatal("a refused policy was saved")
			}
		})
	}
	good := "{\n  \"acls\": [{\"action\": \"accept\", \"src\": [\"alice@\"], \"dst\": [\"*:*\"]}],\n  \"tests\": [{\"src\": \"" + node + "\", \"accept\": [\"" + node + ":22\"]}],\n}"
	if resp := e.post(cookie, "/admin/policy", url.Values{"action": {"check"}, "body": {good}}); resp.StatusCode != 200 || !strings.Contains(bodyOf(t, resp), `id="checked"`) {
		t.Fatalf("check of a good policy: %d", resp.StatusCode)
	}
	if pols, _ := e.st.ListPolicies(ctx); len(pols) != 0 {
		t.Fatal("check saved the policy")
	}
	if resp := e.post(cookie, "/admin/policy", url.Values{"action": {"save"}, "body": {good}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("save: %d\n%s", resp.StatusCode, bodyOf(t, resp))
	}
	if pols, _ := e.st.ListPolicies(ctx); len(pols) != 1 {
		t.Fatalf("%d policies after save", len(pols))
	}
	if body := bodyOf(t, e.do("GET", "/admin/policy?done=policy-saved", cookie, nil, nil)); !strings.Contains(body, "Version 1 is in force") || !strings.Contains(body, "Policy saved") {
		t.Fatalf("policy page after save:\n%s", body)
	}
}

func strconvI(i int) string { b, _ := json.Marshal(i); return string(b) }

// TestUsersAndDNS: users are added and deleted; a DNS file that does not
// validate is refused and shown again, a good one saved.
func TestUsersAndDNS(t *testing.T) {
	e := newEnv(t, 0)
	ctx := context.Background()
	cookie := e.signIn()
	if resp := e.post(cookie, "/admin/users", url.Values{"name": {"bob"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("add bob: %d", resp.StatusCode)
	}
	if resp := e.post(cookie, "/admin/users", url.Values{"name": {"bob"}}); resp.StatusCode != http.StatusConflict {
		t.Fatalf("add bob again: %d", resp.StatusCode)
	}
	if resp := e.post(cookie, "/admin/users/bob/role", url.Values{"role": {"admin"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("make bob admin: %d", resp.StatusCode)
	}
	if u, err := e.st.GetUser(ctx, "bob"); err != nil || u.Role != "admin" {
		t.Fatalf("bob after make admin: %+v %v", u, err)
	}
	if resp := e.post(cookie, "/admin/users/bob/role", url.Values{"role": {"king"}}); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("role king: %d, want 400", resp.StatusCode)
	}
	if resp := e.post(cookie, "/admin/users/bob/delete", url.Values{}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("delete bob: %d", resp.StatusCode)
	}
	if us, _ := e.st.ListUsers(ctx); len(us) != 1 {
		t.Fatalf("users %v", us)
	}
	resp := e.post(cookie, "/admin/dns", url.Values{"source": {`{"nameservers": ["not an address"]}`}})
	if body := bodyOf(t, resp); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "not an address") || !strings.Contains(body, `class="error"`) {
		t.Fatalf("bad DNS: %d\n%s", resp.StatusCode, body)
	}
	if src, _, _ := e.st.DNSSettings(ctx); len(src) != 0 {
		t.Fatalf("bad DNS stored: %q", src)
	}
	if resp := e.post(cookie, "/admin/dns", url.Values{"source": {`{"nameservers": ["198.51.100.53"]}`}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("good DNS: %d\n%s", resp.StatusCode, bodyOf(t, resp))
	}
	if body := bodyOf(t, e.do("GET", "/admin/dns", cookie, nil, nil)); !strings.Contains(body, "198.51.100.53:53") {
		t.Fatalf("DNS page does not show the nameserver in effect:\n%s", body)
	}
}

// TestHealthJSON: the plots' data has one chart per concern, series per
// peer or region aligned on the sample times, gaps as null, throughput as
// a rate over the interval.
func TestHealthJSON(t *testing.T) {
	e := newEnv(t, 1)
	cookie := e.signIn()
	resp := e.do("GET", "/admin/nodes/id:1/health.json", cookie, nil, nil)
	var p healthPlots
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%d %v", resp.StatusCode, err)
	}
	if !slices.Equal(p.Times, []int64{1000, 1300}) {
		t.Fatalf("times %v", p.Times)
	}
	got := map[string]string{}
	for _, c := range p.Charts {
		for _, s := range c.Series {
			var vs []string
			for _, v := range s.Values {
				if v == nil {
					vs = append(vs, "-")
				} else {
					b, _ := json.Marshal(*v)
					vs = append(vs, string(b))
				}
			}
			got[c.ID+"/"+s.Label] = strings.Join(vs, " ")
		}
	}
	want := map[string]string{
		"peer-rtt/busan":      "30 20",
		"relay-rtt/1":         "- 12",
		"path/busan":          "0 1",
		"throughput/received": "- 10",
		"throughput/sent":     "- 0",
		"battery/battery_pct": "90 -",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("series %v, want %v", got, want)
	}
	if resp := e.do("GET", "/admin/nodes/nosuch/health.json", cookie, nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown node: %d", resp.StatusCode)
	}
	if resp := e.do("GET", "/admin/nodes/id:1/health.json?since=forever", cookie, nil, nil); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bad since: %d", resp.StatusCode)
	}
}
