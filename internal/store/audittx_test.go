package store

import (
	"context"
	"errors"
	"net/netip"
	"testing"
)

// TestAuditInTransaction: a change made with a WithAudit context records
// its entry in the change's own transaction, once; a change that fails
// records nothing; and when the audit row cannot be written (the table
// is renamed away, so the insert fails in the database itself) the change
// is undone.
func TestAuditInTransaction(t *testing.T) { forEachStore(t, testAuditInTransaction) }

func testAuditInTransaction(t *testing.T, f *fixture) {
	bg := context.Background()
	entry := func(action, target string) AuditEntry {
		return AuditEntry{Actor: "root", Credential: "admin socket", Remote: "local", Action: action, Target: target}
	}
	count := func() int {
		t.Helper()
		es, err := f.s.ListAudit(bg, AuditQuery{})
		if err != nil {
			t.Fatal(err)
		}
		return len(es)
	}

	ctx := WithAudit(bg, entry("user.create", "user alice"))
	if AuditRecorded(ctx) {
		t.Fatal("recorded before any write")
	}
	if _, err := f.s.CreateUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if !AuditRecorded(ctx) {
		t.Fatal("the change's write did not record the entry")
	}
	es, err := f.s.ListAudit(bg, AuditQuery{})
	if err != nil || len(es) != 1 || es[0].Action != "user.create" || es[0].Target != "user alice" || es[0].At.IsZero() {
		t.Fatalf("audit log %+v %v; want the one user.create entry", es, err)
	}
	// A second write with the same context records nothing more.
	if _, err := f.s.SetUserRole(ctx, "alice", RoleAdmin); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 1 {
		t.Fatalf("%d entries after a second write with one context; want 1", n)
	}

	// A change that fails leaves no entry.
	failed := WithAudit(bg, entry("user.create", "user alice"))
	if _, err := f.s.CreateUser(failed, "alice"); !errors.Is(err, ErrExists) {
		t.Fatalf("CreateUser of a taken name: %v", err)
	}
	if AuditRecorded(failed) || count() != 1 {
		t.Fatalf("a refused change left an audit entry (%d entries)", count())
	}

	// Routes: all or none, in one transaction with their entry.
	n := f.register(f.key(AuthKeyRequest{User: "alice"}), "busan")
	lan := netip.MustParsePrefix("192.168.1.0/24")
	exit := netip.MustParsePrefix("0.0.0.0/0")
	if _, err := f.s.SetAdvertisedRoutes(bg, n.ID, []netip.Prefix{lan}); err != nil {
		t.Fatal(err)
	}
	rctx := WithAudit(bg, entry("routes.approve", "node busan"))
	if _, err := f.s.ApproveRoute(rctx, n.ID, lan, exit); !errors.Is(err, ErrNotFound) {
		t.Fatalf("approving an advertised and an unadvertised prefix: %v; want ErrNotFound", err)
	}
	if got, _ := f.s.GetNode(bg, n.ID); len(got.ApprovedRoutes) != 0 || count() != 1 {
		t.Fatalf("a refused approval approved %v and left %d entries", got.ApprovedRoutes, count())
	}

	// The audit insert fails: the change is undone.
	db := f.s.(*sqlStore).db
	if _, err := db.ExecContext(bg, `ALTER TABLE audit_log RENAME TO audit_log_away`); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		change func(ctx context.Context) error
		undone func() bool
	}{
		{"user.create", func(ctx context.Context) error { _, err := f.s.CreateUser(ctx, "bob"); return err },
			func() bool { _, err := f.s.GetUser(bg, "bob"); return errors.Is(err, ErrNotFound) }},
		{"routes.approve", func(ctx context.Context) error { _, err := f.s.ApproveRoute(ctx, n.ID, lan); return err },
			func() bool { got, _ := f.s.GetNode(bg, n.ID); return len(got.ApprovedRoutes) == 0 }},
		{"dns.set", func(ctx context.Context) error { return f.s.SetDNSSettings(ctx, []byte(`{"nameservers":[]}`)) },
			func() bool { src, _, _ := f.s.DNSSettings(bg); return len(src) == 0 }},
		{"node.rename", func(ctx context.Context) error { _, err := f.s.RenameNode(ctx, n.ID, "jeju"); return err },
			func() bool { got, _ := f.s.GetNode(bg, n.ID); return got.Name == "busan" }},
	} {
		ctx := WithAudit(bg, entry(tc.name, "x"))
		if err := tc.change(ctx); err == nil {
			t.Errorf("%s: succeeded although its audit row could not be written", tc.name)
		}
		if AuditRecorded(ctx) || !tc.undone() {
			t.Errorf("%s: the change stayed although its audit row failed", tc.name)
		}
		// Without an audit entry the same change goes through.
		if err := tc.change(bg); err != nil {
			t.Errorf("%s without audit: %v", tc.name, err)
		}
	}
	if _, err := db.ExecContext(bg, `ALTER TABLE audit_log_away RENAME TO audit_log`); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 1 {
		t.Fatalf("%d audit entries at the end; want 1", n)
	}
}
