package store

import (
	"context"
	"errors"
	"net/netip"
	"testing"
)

func TestPolicyVersions(t *testing.T) { forEachStore(t, testPolicyVersions) }

func testPolicyVersions(t *testing.T, f *fixture) {
	ctx := context.Background()
	if _, err := f.s.GetPolicy(ctx, 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetPolicy with none = %v, want ErrNotFound", err)
	}
	if l, err := f.s.ListPolicies(ctx); err != nil || len(l) != 0 {
		t.Fatalf("ListPolicies = %v, %v", l, err)
	}
	for _, pv := range []PolicyVersion{
		{Body: []byte(`{"acls": []}`)},
		{Body: []byte(`{"groups": {}}`), Author: "alice", Credential: "console session"},
	} {
		if _, err := f.s.AddPolicy(ctx, pv); err != nil {
			t.Fatal(err)
		}
	}
	cur, err := f.s.GetPolicy(ctx, 0)
	if err != nil || cur.Version != 2 || string(cur.Body) != `{"groups": {}}` || cur.CreatedAt.IsZero() ||
		cur.Author != "alice" || cur.Credential != "console session" {
		t.Fatalf("in force: %+v, %v", cur, err)
	}
	old, err := f.s.GetPolicy(ctx, 1)
	if err != nil || string(old.Body) != `{"acls": []}` || old.Author != "" || old.Credential != "" {
		t.Fatalf("version 1: %+v, %v", old, err)
	}
	if _, err := f.s.GetPolicy(ctx, 3); !errors.Is(err, ErrNotFound) {
		t.Fatalf("version 3 = %v", err)
	}
	l, err := f.s.ListPolicies(ctx)
	if err != nil || len(l) != 2 || l[0].Version != 1 || l[1].Size != len(`{"groups": {}}`) || l[1].Body != nil ||
		l[1].Author != "alice" || l[1].Credential != "console session" {
		t.Fatalf("history %+v, %v", l, err)
	}
	for _, c := range []struct {
		pv   PolicyVersion
		want string
	}{
		{l[0], ""},
		{l[1], "alice (console session)"},
		{PolicyVersion{Credential: "admin socket"}, "server administrator (admin socket)"},
	} {
		if got := c.pv.SetBy(); got != c.want {
			t.Errorf("SetBy of %+v = %q, want %q", c.pv, got, c.want)
		}
	}
}

func TestTagsAndAutoApproval(t *testing.T) { forEachStore(t, testTagsAndAutoApproval) }

func testTagsAndAutoApproval(t *testing.T, f *fixture) {
	ctx := context.Background()
	f.user("alice")
	n := f.register(f.key(AuthKeyRequest{User: "alice"}), "busan")
	if n.KeyExpiry.IsZero() || n.User != "alice" {
		t.Fatalf("untagged node: %+v", n)
	}
	if _, err := f.s.SetNodeTags(ctx, n.ID, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("no tags = %v", err)
	}
	if _, err := f.s.SetNodeTags(ctx, n.ID, []string{"server"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad tag = %v", err)
	}
	got, err := f.s.SetNodeTags(ctx, n.ID, []string{"tag:exit", "tag:exit", "tag:b"})
	if err != nil || got.User != "" || !got.KeyExpiry.IsZero() || len(got.Tags) != 2 || got.Tags[0] != "tag:b" {
		t.Fatalf("tagged: %+v, %v", got, err)
	}

	exit := netip.MustParsePrefix("0.0.0.0/0")
	if _, err := f.s.AutoApproveRoute(ctx, n.ID, exit, "autoApprovers.exitNode: tag:exit"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("auto-approving an unadvertised route = %v", err)
	}
	if _, err := f.s.SetAdvertisedRoutes(ctx, n.ID, []netip.Prefix{exit}); err != nil {
		t.Fatal(err)
	}
	if got, err = f.s.AutoApproveRoute(ctx, n.ID, exit, "autoApprovers.exitNode: tag:exit"); err != nil || len(got.EnabledRoutes()) != 1 {
		t.Fatalf("auto-approve: %v, %v", got.EnabledRoutes(), err)
	}
	rs, _ := f.s.ListRoutes(ctx)
	if len(rs) != 1 || rs[0].AutoApprovedBy != "autoApprovers.exitNode: tag:exit" {
		t.Fatalf("routes %+v", rs)
	}
	// An administrator's approval replaces the rule's.
	if _, err := f.s.ApproveRoute(ctx, n.ID, exit); err != nil {
		t.Fatal(err)
	}
	if rs, _ = f.s.ListRoutes(ctx); rs[0].AutoApprovedBy != "" || !rs[0].Approved {
		t.Fatalf("after admin approval: %+v", rs)
	}
}
