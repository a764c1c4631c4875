package adminapi

import (
	"context"
	"database/sql"
	"errors"
	"net/netip"
	"testing"

	"weft/internal/store"
)

// TestAuditFailureUndoesChange: each audited change and its audit row are
// one transaction. With the audit insert failing in the database (the
// table renamed away behind the server's back), every change answers an
// error and nothing changed; a change refused for its own reason leaves
// no audit row; once the table is back, a change and its row are both
// there.
func TestAuditFailureUndoesChange(t *testing.T) {
	ctx := context.Background()
	e := start(t)
	n := e.userNodes(t, "alice", "busan")[0]
	lan := netip.MustParsePrefix("192.168.1.0/24")
	if _, err := e.st.SetAdvertisedRoutes(ctx, n.ID, []netip.Prefix{lan}); err != nil {
		t.Fatal(err)
	}
	entries := func() []store.AuditEntry {
		t.Helper()
		es, err := e.st.ListAudit(ctx, store.AuditQuery{})
		if err != nil {
			t.Fatal(err)
		}
		return es
	}
	before := len(entries()) // user.create and key.create

	// All or none: one unadvertised prefix refuses the whole approval,
	// with no audit row.
	if _, err := e.c.ApproveRoutes(ctx, "busan", []netip.Prefix{lan, netip.MustParsePrefix("10.0.0.0/8")}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("approving an unadvertised prefix: %v", err)
	}
	if got, _ := e.st.GetNode(ctx, n.ID); len(got.ApprovedRoutes) != 0 || len(entries()) != before {
		t.Fatalf("refused approval: approved %v, %d audit entries (want %d)", got.ApprovedRoutes, len(entries()), before)
	}

	db, err := sql.Open("sqlite", e.db)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `ALTER TABLE audit_log RENAME TO audit_log_away`); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		change  func() error
		changed func() bool
	}{
		{"user.create", func() error { _, err := e.c.CreateUser(ctx, "bob"); return err },
			func() bool { _, err := e.st.GetUser(ctx, "bob"); return err == nil }},
		{"routes.approve", func() error { _, err := e.c.ApproveRoutes(ctx, "busan", []netip.Prefix{lan}); return err },
			func() bool { got, _ := e.st.GetNode(ctx, n.ID); return len(got.ApprovedRoutes) > 0 }},
		{"node.rename", func() error { _, err := e.c.RenameNode(ctx, "busan", "jeju"); return err },
			func() bool { got, _ := e.st.GetNode(ctx, n.ID); return got.Name != "busan" }},
		{"key.create", func() error { _, err := e.c.CreateKey(ctx, KeyRequest{User: "alice"}); return err },
			func() bool { ks, _ := e.st.ListAuthKeys(ctx, "alice"); return len(ks) != 1 }},
		{"node.delete", func() error { return e.c.DeleteNode(ctx, "busan") },
			func() bool { _, err := e.st.GetNode(ctx, n.ID); return err != nil }},
	} {
		if err := tc.change(); err == nil {
			t.Errorf("%s: answered success although its audit row could not be written", tc.name)
		}
		if tc.changed() {
			t.Errorf("%s: the change stayed although its audit row failed", tc.name)
		}
	}
	if _, err := db.ExecContext(ctx, `ALTER TABLE audit_log_away RENAME TO audit_log`); err != nil {
		t.Fatal(err)
	}
	if got := len(entries()); got != before {
		t.Fatalf("%d audit entries after the failures; want %d", got, before)
	}
	if _, err := e.c.ApproveRoutes(ctx, "busan", []netip.Prefix{lan}); err != nil {
		t.Fatal(err)
	}
	es := entries()
	if len(es) != before+1 || es[0].Action != "routes.approve" || es[0].Target != "node busan" || es[0].Credential != "admin socket" {
		t.Fatalf("audit log after an approval: %+v", es[0])
	}
}
