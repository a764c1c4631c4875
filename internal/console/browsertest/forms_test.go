//go:build linux

package browsertest

import (
	"context"
	"encoding/json"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"weft/internal/key"
	"weft/internal/store"
)

// seedNodes makes a server data directory whose store holds user alice
// with nodes laptop and router, router advertising the subnet route
// 10.20.0.0/24, as `weft server` would have registered them (the nodes
// never connect: this test needs no network namespaces).
func seedNodes(t *testing.T, dataDir string) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(dataDir, "weft.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.CreateUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	secret, _, err := st.CreateAuthKey(ctx, store.AuthKeyRequest{User: "alice", Reusable: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"laptop", "router"} {
		n, err := st.Register(ctx, store.RegisterRequest{AuthKey: secret, MachineKey: key.NewMachine().Public(),
			NodeKey: key.NewNode().Public(), Hostname: name})
		if err != nil {
			t.Fatal(err)
		}
		if name == "router" {
			if _, err := st.SetAdvertisedRoutes(ctx, n.ID, []netip.Prefix{netip.MustParsePrefix("10.20.0.0/24")}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// storedNode is a node as `weft admin --json nodes list` prints it.
type storedNode struct {
	ID             int64    `json:"id"`
	Name           string   `json:"name"`
	Tags           []string `json:"tags"`
	ApprovedRoutes []string `json:"approved_routes"`
}

// nodes reads the server's nodes from its store, through the admin
// socket.
func (s *server) nodes() map[string]storedNode {
	s.t.Helper()
	var ns []storedNode
	out := s.admin("--json", "nodes", "list")
	if err := json.Unmarshal([]byte(out), &ns); err != nil {
		s.t.Fatalf("weft admin --json nodes list: %v\n%s", err, out)
	}
	m := map[string]storedNode{}
	for _, n := range ns {
		m[n.Name] = n
	}
	return m
}

// TestBrowserNodeForms drives the node page's forms and the policy's
// history in Chromium against a real weft server, and checks each result
// on the page and in the server's store (through weft admin): a rename
// with a bad name is refused with the name still in its field and nothing
// changed, then a good rename is made; a subnet route is approved; a
// node is tagged; a delete is refused until its box is ticked, then made;
// two policies are saved, the first is restored from the history, and
// the history names the console session as the one who set each.
func TestBrowserNodeForms(t *testing.T) {
	ctx := newBrowser(t)
	dir := t.TempDir()
	seedNodes(t, dir)
	srv := startServerIn(t, dir)
	base := srv.URL
	signIn(t, ctx, srv.admin("console-link"), base)
	router := "/admin/nodes/id:" + itoa(srv.nodes()["router"].ID)

	step(t, "rename refused, then made", func(t *testing.T) {
		do(t, ctx, "rename router to a bad name",
			chromedp.Navigate(base+router),
			chromedp.WaitVisible(chromedp.ID("renameform")),
			chromedp.SetValue(chromedp.ID("newname"), "Gate Way!"),
			chromedp.Click(chromedp.ID("rename")),
			chromedp.WaitVisible(chromedp.ID("error")),
		)
		if v := get(t, ctx, "read the name field", chromedp.Value(chromedp.ID("newname"))); v != "Gate Way!" {
			t.Fatalf("after the refusal the name field holds %q, want what was typed", v)
		}
		if inv := get(t, ctx, "read the field's mark", chromedp.Evaluate[string](`document.getElementById("newname").getAttribute("aria-invalid") || ""`)); inv != "true" {
			t.Fatalf("the refused field is not marked (aria-invalid %q)", inv)
		}
		screenshot(t, ctx, "node-manage")
		if ns := srv.nodes(); ns["router"].ID == 0 || len(ns) != 2 {
			t.Fatalf("a refused rename changed the nodes: %+v", ns)
		}
		do(t, ctx, "rename router to gateway",
			chromedp.SetValue(chromedp.ID("newname"), "gateway"),
			chromedp.Click(chromedp.ID("rename")),
			chromedp.WaitVisible(chromedp.ID("notice")),
		)
		if h := get(t, ctx, "read the title", chromedp.Text(chromedp.CSS("h1"))); h != "gateway" {
			t.Fatalf("after the rename the node page is titled %q", h)
		}
		if ns := srv.nodes(); ns["gateway"].ID == 0 || ns["router"].ID != 0 {
			t.Fatalf("the store's nodes after the rename: %+v", ns)
		}
	})

	step(t, "approve a subnet route", func(t *testing.T) {
		row := `#routes tr[data-prefix="10.20.0.0/24"]`
		do(t, ctx, "press Approve",
			chromedp.Click(chromedp.CSS(row+" button.approve")),
			chromedp.WaitVisible(chromedp.CSS(row+" button.reject")),
		)
		if got := get(t, ctx, "read the route", chromedp.Text(chromedp.CSS(row+" td.approved"))); got != "yes" {
			t.Fatalf("approved column %q after Approve", got)
		}
		if got := srv.nodes()["gateway"].ApprovedRoutes; len(got) != 1 || got[0] != "10.20.0.0/24" {
			t.Fatalf("the store's approved routes of gateway: %v", got)
		}
	})

	step(t, "tag", func(t *testing.T) {
		do(t, ctx, "set tags",
			chromedp.Navigate(base+router),
			chromedp.WaitVisible(chromedp.ID("tagsform")),
			chromedp.SetValue(chromedp.ID("tags"), "tag:infra, tag:subnet"),
			chromedp.Click(chromedp.ID("settags")),
			chromedp.WaitVisible(chromedp.ID("notice")),
		)
		if got := get(t, ctx, "read the owner", chromedp.Text(chromedp.ID("owner"))); got != "tag:infra, tag:subnet" {
			t.Fatalf("owner after tagging: %q", got)
		}
		if got := srv.nodes()["gateway"].Tags; strings.Join(got, " ") != "tag:infra tag:subnet" {
			t.Fatalf("the store's tags of gateway: %v", got)
		}
	})

	step(t, "delete", func(t *testing.T) {
		laptop := "/admin/nodes/id:" + itoa(srv.nodes()["laptop"].ID)
		do(t, ctx, "delete laptop without ticking the box",
			chromedp.Navigate(base+laptop),
			chromedp.WaitVisible(chromedp.ID("deleteform")),
			chromedp.Click(chromedp.ID("delete")),
			chromedp.WaitVisible(chromedp.ID("error")),
		)
		if srv.nodes()["laptop"].ID == 0 {
			t.Fatal("laptop deleted without the box ticked")
		}
		do(t, ctx, "tick the box and delete",
			chromedp.Click(chromedp.ID("confirmdelete")),
			chromedp.Click(chromedp.ID("delete")),
			chromedp.WaitVisible(chromedp.ID("nodes")),
		)
		if page := html(t, ctx); strings.Contains(page, `data-node="laptop"`) || !strings.Contains(page, "Node deleted") {
			t.Fatalf("nodes page after deleting laptop:\n%s", page)
		}
		if ns := srv.nodes(); ns["laptop"].ID != 0 || len(ns) != 1 {
			t.Fatalf("the store's nodes after the delete: %+v", ns)
		}
	})

	step(t, "policy history and restore", func(t *testing.T) {
		for _, p := range []string{goodPolicy, strings.Replace(goodPolicy, "alice's nodes reach everything", "second version", 1)} {
			do(t, ctx, "save a policy",
				chromedp.Navigate(base+"/admin/policy"),
				chromedp.WaitVisible(chromedp.ID("policy")),
				chromedp.SetValue(chromedp.ID("policy"), p),
				chromedp.Click(chromedp.ID("save")),
				chromedp.WaitVisible(chromedp.ID("notice")),
			)
		}
		do(t, ctx, "open the history",
			chromedp.Click(chromedp.ID("historylink")),
			chromedp.WaitVisible(chromedp.ID("history")),
		)
		rows := get(t, ctx, "read the history", chromedp.Evaluate[[]string](
			`Array.from(document.querySelectorAll("#history tr[data-version]")).map(r => r.dataset.version + " " + r.querySelector("td.by").textContent)`))
		if strings.Join(rows, "|") != "2 server administrator (console session)|1 server administrator (console session)" {
			t.Fatalf("history rows %q", rows)
		}
		screenshot(t, ctx, "policy-history")
		do(t, ctx, "restore version 1",
			chromedp.Click(chromedp.CSS(`#history tr[data-version="1"] a`)),
			chromedp.WaitVisible(chromedp.ID("restore")),
			chromedp.Click(chromedp.ID("restore")),
			chromedp.WaitVisible(chromedp.ID("loaded")),
		)
		if got := get(t, ctx, "read the editor", chromedp.Value(chromedp.ID("policy"))); got != strings.TrimSuffix(goodPolicy, "\n") && got != goodPolicy {
			t.Fatalf("the editor holds %q, want version 1", got)
		}
		if out := srv.admin("policy", "get"); !strings.Contains(out, "second version") {
			t.Fatalf("loading version 1 into the editor changed the policy in force:\n%s", out)
		}
		do(t, ctx, "save the restored version",
			chromedp.Click(chromedp.ID("save")),
			chromedp.WaitVisible(chromedp.ID("notice")),
		)
		if out := srv.admin("policy", "get"); !strings.Contains(out, "alice's nodes reach everything") {
			t.Fatalf("after restoring version 1 the policy in force is:\n%s", out)
		}
		if out := srv.admin("policy", "history"); strings.Count(out, "console session") != 3 {
			t.Fatalf("weft admin policy history:\n%s", out)
		}
	})

	out := srv.admin("audit")
	for _, a := range []string{"node.rename", "routes.approve", "node.tag", "node.delete", "policy.set"} {
		if !strings.Contains(out, a) {
			t.Errorf("weft admin audit lacks %s:\n%s", a, out)
		}
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }
