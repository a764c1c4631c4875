package console

import (
	"context"
	"html"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"weft/internal/key"
	"weft/internal/store"
)

// lastAudit is the newest audit log entry.
func (e *env) lastAudit(ctx context.Context) store.AuditEntry {
	e.t.Helper()
	es, err := e.st.ListAudit(ctx, store.AuditQuery{Limit: 1})
	if err != nil || len(es) != 1 {
		e.t.Fatalf("audit log: %v, %v", es, err)
	}
	return es[0]
}

// auditCount is how many entries the audit log has.
func (e *env) auditCount(ctx context.Context) int {
	e.t.Helper()
	es, err := e.st.ListAudit(ctx, store.AuditQuery{})
	if err != nil {
		e.t.Fatal(err)
	}
	return len(es)
}

// TestNodeForms: an admin's session renames, tags, expires and deletes a
// node with the node page's forms. Each change is made in the store and
// recorded in the audit log as the console session's; each refused one
// (a bad or taken name, a malformed tag, a delete not confirmed) answers
// 4xx, shows the reason and what was typed, and changes nothing.
func TestNodeForms(t *testing.T) {
	e := newEnv(t, 2)
	ctx := context.Background()
	cookie := e.signIn()
	page := bodyOf(t, e.do("GET", "/admin/nodes/id:1", cookie, nil, nil))
	for _, id := range []string{`id="renameform"`, `id="tagsform"`, `id="expireform"`, `id="deleteform"`, `button type="submit" name="action" value="approve"`} {
		if !strings.Contains(page, id) {
			t.Fatalf("an admin's node page lacks %s:\n%s", id, page)
		}
	}

	refusals := []struct {
		name   string
		target string
		form   url.Values
		status int
		shows  []string // in the reply: the reason and what was typed
	}{
		{"bad name", "/admin/nodes/id:1/rename", url.Values{"name": {"Bad_Name!"}}, http.StatusBadRequest, []string{`value="Bad_Name!"`, `id="error"`}},
		{"taken name", "/admin/nodes/id:1/rename", url.Values{"name": {e.nodes[1]}}, http.StatusConflict, []string{`value="` + e.nodes[1] + `"`, "already called"}},
		{"empty name", "/admin/nodes/id:1/rename", url.Values{"name": {""}}, http.StatusBadRequest, []string{`id="error"`}},
		{"malformed tag", "/admin/nodes/id:1/tags", url.Values{"tags": {"tag:web, server"}}, http.StatusBadRequest, []string{`value="tag:web, server"`, `id="error"`}},
		{"no tags", "/admin/nodes/id:1/tags", url.Values{"tags": {" "}}, http.StatusBadRequest, []string{"at least one tag"}},
		{"delete unconfirmed", "/admin/nodes/id:1/delete", url.Values{}, http.StatusBadRequest, []string{"Tick “Yes, delete this node”", `id="error"`}},
		{"unknown node", "/admin/nodes/nosuch/rename", url.Values{"name": {"fine"}}, http.StatusNotFound, nil},
	}
	before, audits := e.snapshot(ctx), e.auditCount(ctx)
	for _, c := range refusals {
		t.Run(c.name, func(t *testing.T) {
			resp := e.post(cookie, c.target, c.form)
			body := html.UnescapeString(bodyOf(t, resp))
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d\n%s", resp.StatusCode, c.status, body)
			}
			for _, s := range c.shows {
				if !strings.Contains(body, html.UnescapeString(s)) {
					t.Errorf("reply lacks %q\n%s", s, body)
				}
			}
		})
	}
	if after := e.snapshot(ctx); after != before || e.auditCount(ctx) != audits {
		t.Fatalf("refused forms changed the tailnet or the audit log:\nbefore %s\nafter  %s", before, after)
	}

	changes := []struct {
		name, target string
		form         url.Values
		location     string
		action       string
		check        func() error
	}{
		{"rename", "/admin/nodes/id:1/rename", url.Values{"name": {"renamed"}}, "/admin/nodes/id:1?done=node-renamed", "node.rename", func() error {
			_, err := e.st.GetNodeByName(ctx, "renamed")
			return err
		}},
		{"tags", "/admin/nodes/renamed/tags", url.Values{"tags": {"tag:web,tag:db"}}, "/admin/nodes/id:1?done=node-tagged", "node.tag", func() error {
			n, err := e.st.GetNode(ctx, 1)
			if err == nil && strings.Join(n.Tags, " ") != "tag:db tag:web" {
				t.Errorf("tags %v", n.Tags)
			}
			return err
		}},
		{"expire", "/admin/nodes/id:2/expire", url.Values{}, "/admin/nodes/id:2?done=node-expired", "node.expire", func() error {
			n, err := e.st.GetNode(ctx, 2)
			if err == nil && (n.KeyExpiry.IsZero() || n.KeyExpiry.After(time.Now())) {
				t.Errorf("key expiry %v after expire", n.KeyExpiry)
			}
			return err
		}},
		{"delete", "/admin/nodes/id:2/delete", url.Values{"confirm": {"yes"}}, "/admin/?done=node-deleted", "node.delete", func() error {
			if _, err := e.st.GetNode(ctx, 2); err == nil {
				t.Errorf("node 2 still there after delete")
			}
			return nil
		}},
	}
	for _, c := range changes {
		t.Run(c.name, func(t *testing.T) {
			resp := e.post(cookie, c.target, c.form)
			if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != c.location {
				t.Fatalf("status %d to %q, want 303 to %q\n%s", resp.StatusCode, resp.Header.Get("Location"), c.location, bodyOf(t, resp))
			}
			if err := c.check(); err != nil {
				t.Fatal(err)
			}
			if a := e.lastAudit(ctx); a.Action != c.action || a.Credential != "console session" {
				t.Fatalf("last audit entry %+v, want %s by the console session", a, c.action)
			}
			if body := bodyOf(t, e.do("GET", c.location, cookie, nil, nil)); !strings.Contains(body, notices[strings.SplitN(c.location, "done=", 2)[1]]) {
				t.Fatalf("%s does not show the notice:\n%s", c.location, body)
			}
		})
	}
}

// TestNodeFormsMember: a member's session on their own node is shown the
// rename, expire and delete forms but not the tags form or the route
// buttons, and posting those anyway is refused (403) with nothing
// changed; renaming their own node works, another user's node is not
// found.
func TestNodeFormsMember(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	if _, err := e.st.CreateUser(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	secret, _, err := e.st.CreateAuthKey(ctx, store.AuthKeyRequest{User: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	bobs, err := e.st.Register(ctx, store.RegisterRequest{AuthKey: secret, MachineKey: key.NewMachine().Public(),
		NodeKey: key.NewNode().Public(), Hostname: "bobsnode"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.SetAdvertisedRoutes(ctx, bobs.ID, []netip.Prefix{netip.MustParsePrefix("10.9.0.0/24")}); err != nil {
		t.Fatal(err)
	}
	bob := e.sessionOf(ctx, "bob")
	ref := "/admin/nodes/id:" + strconvI(int(bobs.ID))
	page := bodyOf(t, e.do("GET", ref, bob, nil, nil))
	for _, want := range []string{`id="renameform"`, `id="expireform"`, `id="deleteform"`, "awaiting an admin's approval"} {
		if !strings.Contains(page, want) {
			t.Errorf("bob's node page lacks %s", want)
		}
	}
	for _, not := range []string{`id="tagsform"`, `value="approve"`, `/routes"`} {
		if strings.Contains(page, not) {
			t.Errorf("bob's node page shows %s, an admin's form", not)
		}
	}
	if t.Failed() {
		t.Fatalf("page:\n%s", page)
	}
	before, audits := e.snapshot(ctx), e.auditCount(ctx)
	for _, c := range []struct {
		target string
		form   url.Values
		want   int
	}{
		{ref + "/tags", url.Values{"tags": {"tag:web"}}, http.StatusForbidden},
		{ref + "/routes", url.Values{"prefix": {"10.9.0.0/24"}, "action": {"approve"}}, http.StatusForbidden},
		{"/admin/nodes/id:1/rename", url.Values{"name": {"stolen"}}, http.StatusNotFound},
		{"/admin/nodes/id:1/delete", url.Values{"confirm": {"yes"}}, http.StatusNotFound},
		{"/admin/nodes/id:1/expire", url.Values{}, http.StatusNotFound},
	} {
		if resp := e.post(bob, c.target, c.form); resp.StatusCode != c.want {
			t.Errorf("bob posting %s: %d, want %d", c.target, resp.StatusCode, c.want)
		}
	}
	if after := e.snapshot(ctx); after != before || e.auditCount(ctx) != audits {
		t.Fatalf("bob's refused posts changed the tailnet:\nbefore %s\nafter  %s", before, after)
	}
	if resp := e.post(bob, ref+"/rename", url.Values{"name": {"bobs-laptop"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("bob renaming his node: %d\n%s", resp.StatusCode, bodyOf(t, resp))
	}
	if a := e.lastAudit(ctx); a.Action != "node.rename" || a.Actor != "bob" {
		t.Fatalf("audit entry of bob's rename: %+v", a)
	}
}

// TestPolicyHistory: the history lists every version newest first with
// who set it and when; a version reads back as set; Restore loads it into
// the editor without changing anything, and Save puts it in force as a
// new version, recorded as the console session's. Members are refused.
func TestPolicyHistory(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	cookie := e.signIn()
	if body := bodyOf(t, e.do("GET", "/admin/policy/history", cookie, nil, nil)); !strings.Contains(body, "No policy was ever set") {
		t.Fatalf("empty history:\n%s", body)
	}
	first := "{\n  // first\n  \"acls\": [{\"action\": \"accept\", \"src\": [\"alice@\"], \"dst\": [\"*:*\"]}],\n}"
	second := "{\n  // second\n  \"acls\": [],\n}"
	for _, b := range []string{first, second} {
		if resp := e.post(cookie, "/admin/policy", url.Values{"action": {"save"}, "body": {b}}); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("save: %d\n%s", resp.StatusCode, bodyOf(t, resp))
		}
	}
	if _, err := e.st.AddPolicy(ctx, store.PolicyVersion{Body: []byte(second), Author: "alice", Credential: "API key wa1234"}); err != nil {
		t.Fatal(err)
	}
	hist := bodyOf(t, e.do("GET", "/admin/policy/history", cookie, nil, nil))
	rows := regexpAll(`<tr data-version="(\d+)">`, hist)
	if strings.Join(rows, ",") != "3,2,1" {
		t.Fatalf("history rows %v, want 3,2,1 (newest first)\n%s", rows, hist)
	}
	for _, want := range []string{"server administrator (console session)", "alice (API key wa1234)", "in force"} {
		if !strings.Contains(hist, want) {
			t.Fatalf("history lacks %q:\n%s", want, hist)
		}
	}
	v1 := html.UnescapeString(bodyOf(t, e.do("GET", "/admin/policy/history/1", cookie, nil, nil)))
	if !strings.Contains(v1, first) || !strings.Contains(v1, `id="restore" href="/admin/policy?from=1"`) {
		t.Fatalf("version 1 page:\n%s", v1)
	}
	if v3 := bodyOf(t, e.do("GET", "/admin/policy/history/3", cookie, nil, nil)); strings.Contains(v3, `id="restore"`) {
		t.Fatalf("the version in force offers to be restored:\n%s", v3)
	}
	before := e.snapshot(ctx)
	editor := html.UnescapeString(bodyOf(t, e.do("GET", "/admin/policy?from=1", cookie, nil, nil)))
	if !strings.Contains(editor, ">"+first+"</textarea>") || !strings.Contains(editor, "Version 1 is loaded into the editor") ||
		!strings.Contains(editor, "Version 3 is in force") {
		t.Fatalf("editor with version 1 loaded:\n%s", editor)
	}
	if e.snapshot(ctx) != before {
		t.Fatal("loading a version into the editor changed the tailnet")
	}
	if resp := e.post(cookie, "/admin/policy", url.Values{"action": {"save"}, "body": {first}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("saving the restored version: %d", resp.StatusCode)
	}
	cur, err := e.st.GetPolicy(ctx, 0)
	if err != nil || cur.Version != 4 || string(cur.Body) != first || cur.SetBy() != "server administrator (console session)" {
		t.Fatalf("in force after the restore: %+v, %v", cur, err)
	}
	if a := e.lastAudit(ctx); a.Action != "policy.set" || a.Credential != "console session" {
		t.Fatalf("audit entry of the restore: %+v", a)
	}
	for _, c := range []struct {
		page string
		want int
	}{
		{"/admin/policy/history/x", http.StatusBadRequest},
		{"/admin/policy/history/0", http.StatusBadRequest},
		{"/admin/policy/history/99", http.StatusNotFound},
		{"/admin/policy?from=99", http.StatusNotFound},
		{"/admin/policy?from=-1", http.StatusBadRequest},
	} {
		if resp := e.do("GET", c.page, cookie, nil, nil); resp.StatusCode != c.want {
			t.Errorf("%s: %d, want %d", c.page, resp.StatusCode, c.want)
		}
	}
	if _, err := e.st.CreateUser(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	bob := e.sessionOf(ctx, "bob")
	for _, p := range []string{"/admin/policy/history", "/admin/policy/history/1", "/admin/policy?from=1"} {
		resp := e.do("GET", p, bob, nil, nil)
		if body := bodyOf(t, resp); resp.StatusCode != http.StatusForbidden || strings.Contains(body, "// first") {
			t.Errorf("member on %s: %d\n%s", p, resp.StatusCode, body)
		}
	}
}

func regexpAll(re, s string) []string {
	var out []string
	for _, m := range regexp.MustCompile(re).FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}

// TestRefusedFormsKeepInput: a refused user or pre-auth key form is shown
// again with the reason and what was typed, and nothing is made.
func TestRefusedFormsKeepInput(t *testing.T) {
	e := newEnv(t, 0)
	ctx := context.Background()
	cookie := e.signIn()
	if _, err := e.st.CreateUser(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	before := e.snapshot(ctx)
	for _, c := range []struct {
		name, target string
		form         url.Values
		shows        []string
	}{
		{"user name", "/admin/users", url.Values{"name": {"Not A Name"}},
			[]string{`id="error"`, `id="username" placeholder="name" required value="Not A Name"`}},
		{"key expiry", "/admin/keys", url.Values{"user": {"bob"}, "expiry": {"soon"}, "tags": {"tag:web"}, "reusable": {"on"}},
			[]string{`id="error"`, `<option selected>bob</option>`, `id="keyexpiry" value="soon"`, `id="keytags" value="tag:web"`, `name="reusable" checked`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp := e.post(cookie, c.target, c.form)
			body := bodyOf(t, resp)
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want 400\n%s", resp.StatusCode, body)
			}
			for _, s := range c.shows {
				if !strings.Contains(body, s) {
					t.Errorf("reply lacks %s\n%s", s, body)
				}
			}
		})
	}
	if after := e.snapshot(ctx); after != before {
		t.Fatalf("refused forms changed the tailnet:\nbefore %s\nafter  %s", before, after)
	}
}
