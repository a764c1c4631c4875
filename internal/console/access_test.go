package console

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"weft/internal/store"
)

// TestMemberSeesOwnNodesOnly: a member's session sees only the member's
// own nodes (another user's node page is not found), cannot approve
// routes or open the admin pages, and is not shown the admin menu. The
// admin API decides all of it; the console passes the session's user on.
func TestMemberSeesOwnNodesOnly(t *testing.T) {
	e := newEnv(t, 2)
	ctx := context.Background()
	if _, err := e.st.CreateUser(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	bob := e.sessionOf(ctx, "bob")
	resp := e.do("GET", "/admin/", bob, nil, nil)
	body := bodyOf(t, resp)
	if resp.StatusCode != 200 || strings.Contains(body, "secretnode") || strings.Contains(body, `href="/admin/policy"`) {
		t.Fatalf("member's nodes page: %d\n%s", resp.StatusCode, body)
	}
	for _, c := range []struct {
		page string
		want int
	}{
		{"/admin/nodes/id:1", http.StatusNotFound},
		{"/admin/nodes/id:1/health.json", http.StatusNotFound},
		{"/admin/policy", http.StatusForbidden},
		{"/admin/dns", http.StatusForbidden},
		{"/admin/audit", http.StatusForbidden},
		{"/admin/keys", http.StatusOK},
	} {
		resp := e.do("GET", c.page, bob, nil, nil)
		if b := bodyOf(t, resp); resp.StatusCode != c.want || strings.Contains(b, "secretnode") {
			t.Errorf("%s: %d, want %d\n%s", c.page, resp.StatusCode, c.want, b)
		}
	}
	before := e.snapshot(ctx)
	if resp := e.post(bob, "/admin/nodes/id:1/routes", url.Values{"prefix": {"exit"}, "action": {"approve"}}); resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusNotFound {
		t.Fatalf("member approving a route: %d, want 403 or 404", resp.StatusCode)
	}
	if after := e.snapshot(ctx); after != before {
		t.Fatalf("a member's refused request changed the tailnet:\n%s\n%s", before, after)
	}
}

// TestAuditLogPage: a change made in the console is in the audit log,
// as the console session's, and the page shows it.
func TestAuditLogPage(t *testing.T) {
	e := newEnv(t, 1)
	cookie := e.signIn()
	if resp := e.post(cookie, "/admin/nodes/id:1/routes", url.Values{"prefix": {"exit"}, "action": {"approve"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("approve: %d", resp.StatusCode)
	}
	es, err := e.st.ListAudit(context.Background(), store.AuditQuery{})
	if err != nil || len(es) != 2 || es[0].Action != "routes.approve" || es[0].Credential != "console session" ||
		es[1].Action != "console.signin" || es[1].Credential != "login link" {
		t.Fatalf("audit log %+v, %v; want the sign-in and the approval", es, err)
	}
	body := bodyOf(t, e.do("GET", "/admin/audit", cookie, nil, nil))
	if !strings.Contains(body, `data-action="routes.approve"`) || !strings.Contains(body, "console session") {
		t.Fatalf("audit page:\n%s", body)
	}
	if resp := e.do("GET", "/admin/audit?before=x", cookie, nil, nil); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad before: %d", resp.StatusCode)
	}
}

// TestApproveWaitingMachine: a machine waiting in `weft up` without a key
// is listed, and the console's Approve makes the admin API grant it a
// one-off key of the chosen user; a second approval of the code fails.
func TestApproveWaitingMachine(t *testing.T) {
	e := newEnv(t, 0)
	ctx := context.Background()
	cookie := e.signIn()
	l, poll, err := e.logins.Start(ctx, "laptop", "198.51.100.7:40000")
	if err != nil {
		t.Fatal(err)
	}
	body := bodyOf(t, e.do("GET", "/admin/logins", cookie, nil, nil))
	if !strings.Contains(body, `data-code="`+l.Code+`"`) || !strings.Contains(body, "laptop") {
		t.Fatalf("waiting machine not listed:\n%s", body)
	}
	keysBefore, _ := e.st.ListAuthKeys(ctx, "alice")
	if resp := e.post(cookie, "/admin/logins/"+l.Code+"/approve", url.Values{"user": {"alice"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("approve: %d\n%s", resp.StatusCode, bodyOf(t, resp))
	}
	if ls, _ := e.logins.Pending(ctx); len(ls) != 0 {
		t.Fatalf("still pending: %+v", ls)
	}
	// The waiting machine takes its key.
	if g, err := e.logins.Wait(ctx, poll); err != nil || g.User != "alice" {
		t.Fatalf("the waiting machine got %+v, %v", g, err)
	}
	if keysAfter, _ := e.st.ListAuthKeys(ctx, "alice"); len(keysAfter) != len(keysBefore)+1 {
		t.Fatalf("alice has %d keys after the approval, want %d", len(keysAfter), len(keysBefore)+1)
	}
	if resp := e.post(cookie, "/admin/logins/"+l.Code+"/approve", url.Values{"user": {"alice"}}); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("second approval: %d, want 404", resp.StatusCode)
	}
}
