package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"weft/internal/wire"
)

// TestRolesAndKeyOwners: users start as members, can be made admins, and
// an API key made for a user reads back as that user's after a reopen;
// deleting the user deletes their keys.
func TestRolesAndKeyOwners(t *testing.T) { forEachStore(t, testRolesAndKeyOwners) }

func testRolesAndKeyOwners(t *testing.T, f *fixture) {
	ctx := context.Background()
	f.user("alice")
	u, err := f.s.GetUser(ctx, "alice")
	if err != nil || u.Role != RoleMember {
		t.Fatalf("new user: %+v %v; want a member", u, err)
	}
	if _, err := f.s.SetUserRole(ctx, "alice", "root"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("role root: %v; want ErrInvalid", err)
	}
	if _, err := f.s.SetUserRole(ctx, "nobody", RoleAdmin); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown user: %v; want ErrNotFound", err)
	}
	if u, err = f.s.SetUserRole(ctx, "alice", RoleAdmin); err != nil || u.Role != RoleAdmin {
		t.Fatalf("SetUserRole: %+v %v", u, err)
	}
	if _, _, err := f.s.CreateAPIKey(ctx, APIKeyRequest{User: "nobody"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("key for an unknown user: %v; want ErrNotFound", err)
	}
	full, _, err := f.s.CreateAPIKey(ctx, APIKeyRequest{User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	admin, _, err := f.s.CreateAPIKey(ctx, APIKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	f.reopen()
	if u, _ := f.s.GetUser(ctx, "alice"); u.Role != RoleAdmin {
		t.Fatalf("role after reopen: %q", u.Role)
	}
	if k, err := f.s.CheckAPIKey(ctx, full); err != nil || k.User != "alice" {
		t.Fatalf("alice's key: %+v %v", k, err)
	}
	if k, err := f.s.CheckAPIKey(ctx, admin); err != nil || k.User != "" {
		t.Fatalf("administrator's key: %+v %v", k, err)
	}
	if err := f.s.DeleteUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.CheckAPIKey(ctx, full); !errors.Is(err, ErrAPIKeyInvalid) {
		t.Fatalf("key of a deleted user: %v; want ErrAPIKeyInvalid", err)
	}
}

// TestAuditLog: entries survive a reopen, list newest first, page with
// Before and Limit, and oversized fields are clipped.
func TestAuditLog(t *testing.T) { forEachStore(t, testAuditLog) }

func testAuditLog(t *testing.T, f *fixture) {
	ctx := context.Background()
	if _, err := f.s.AppendAudit(ctx, AuditEntry{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("entry without action: %v", err)
	}
	for i, a := range []string{"user.create", "node.rename", "policy.set"} {
		e, err := f.s.AppendAudit(ctx, AuditEntry{Actor: "alice", Credential: "API key wa1", Remote: "192.0.2.1:5",
			Action: a, Target: "x", Detail: strings.Repeat("d", 3000*i)})
		if err != nil || e.ID == 0 || e.At.IsZero() {
			t.Fatalf("append: %+v %v", e, err)
		}
		f.clock.Advance(time.Second)
	}
	f.reopen()
	all, err := f.s.ListAudit(ctx, AuditQuery{})
	if err != nil || len(all) != 3 || all[0].Action != "policy.set" || all[2].Action != "user.create" {
		t.Fatalf("list: %+v %v", all, err)
	}
	if all[2].Actor != "alice" || all[2].Remote != "192.0.2.1:5" || all[2].Credential != "API key wa1" || !all[2].At.Before(all[0].At) {
		t.Fatalf("fields lost: %+v", all[2])
	}
	if len(all[0].Detail) > maxAuditText+len("…") {
		t.Fatalf("detail not clipped: %d bytes", len(all[0].Detail))
	}
	page, err := f.s.ListAudit(ctx, AuditQuery{Before: all[0].ID, Limit: 1})
	if err != nil || len(page) != 1 || page[0].ID != all[1].ID {
		t.Fatalf("page: %+v %v", page, err)
	}
}

// TestOIDCUsers: a subject is found again by issuer and subject and its
// email and groups follow the last sign-in; a different subject with the
// same email, or at another issuer, is a different user, never an
// existing one (no account takeover by email), and a name already taken
// by a local user gets a suffix.
func TestOIDCUsers(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		f.user("alice") // made by an administrator, no provider
		a, err := f.s.OIDCUser(ctx, OIDCIdentity{Issuer: "https://idp", Subject: "s1", Email: "alice@example.com", Groups: []string{"eng", "eng", "ops"}})
		if err != nil || a.Name != "alice-2" || a.Role != RoleMember || a.Email != "alice@example.com" || !slices.Equal(a.Groups, []string{"eng", "ops"}) || a.Issuer != "https://idp" {
			t.Fatalf("first sign-in: %+v %v", a, err)
		}
		again, err := f.s.OIDCUser(ctx, OIDCIdentity{Issuer: "https://idp", Subject: "s1", Email: "new@example.com", Groups: []string{"ops"}})
		if err != nil || again.ID != a.ID || again.Email != "new@example.com" || !slices.Equal(again.Groups, []string{"ops"}) {
			t.Fatalf("second sign-in: %+v %v", again, err)
		}
		other, err := f.s.OIDCUser(ctx, OIDCIdentity{Issuer: "https://idp", Subject: "s2", Email: "new@example.com"})
		if err != nil || other.ID == a.ID || other.Name != "new" {
			t.Fatalf("same email, other subject: %+v %v (first user %+v)", other, err, a)
		}
		elsewhere, err := f.s.OIDCUser(ctx, OIDCIdentity{Issuer: "https://other", Subject: "s1", Email: "alice@example.com"})
		if err != nil || elsewhere.ID == a.ID {
			t.Fatalf("same subject at another issuer: %+v %v", elsewhere, err)
		}
		odd, err := f.s.OIDCUser(ctx, OIDCIdentity{Issuer: "https://idp", Subject: "s3", Name: "Ünïcode Person!"})
		if err != nil || ValidateUserName(odd.Name) != nil {
			t.Fatalf("name from an odd display name: %+v %v", odd, err)
		}
		if _, err := f.s.OIDCUser(ctx, OIDCIdentity{Issuer: "https://idp"}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("no subject: %v", err)
		}
		f.reopen()
		u, err := f.s.GetUser(ctx, "alice-2")
		if err != nil || !slices.Equal(u.Groups, []string{"ops"}) {
			t.Fatalf("after reopen: %+v %v", u, err)
		}
	})
}

// TestListNodesPage: walking the pages gives exactly ListNodes (routes
// included), also filtered by user, on every backend.
func TestListNodesPage(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		f.user("alice")
		f.user("bob")
		ka, kb := f.key(AuthKeyRequest{User: "alice", Reusable: true}), f.key(AuthKeyRequest{User: "bob", Reusable: true})
		for i := range 7 {
			k := ka
			if i%3 == 0 {
				k = kb
			}
			n := f.register(k, fmt.Sprintf("n%d", i))
			if i == 4 {
				if _, err := f.s.SetAdvertisedRoutes(ctx, n.ID, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}); err != nil {
					t.Fatal(err)
				}
			}
		}
		all, err := f.s.ListNodes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, user := range []string{"", "bob"} {
			var want, got []Node
			for _, n := range all {
				if user == "" || n.User == user {
					want = append(want, n)
				}
			}
			after := wire.NodeID(0)
			for {
				page, err := f.s.ListNodesPage(ctx, NodePage{After: after, User: user, Limit: 2})
				if err != nil {
					t.Fatal(err)
				}
				if len(page.Nodes) == 0 {
					break
				}
				if page.Matched != len(want) {
					t.Fatalf("user %q: matched %d, want %d", user, page.Matched, len(want))
				}
				got = append(got, page.Nodes...)
				after = page.Nodes[len(page.Nodes)-1].ID
			}
			gj, _ := json.Marshal(got)
			wj, _ := json.Marshal(want)
			if len(got) == 0 || string(gj) != string(wj) {
				t.Fatalf("user %q: pages\n%v\nwant\n%v", user, got, want)
			}
		}
		if l, err := f.s.ListNodesPage(ctx, NodePage{}); err != nil || len(l.Nodes) != len(all) || l.Matched != len(all) {
			t.Fatalf("limit 0 (all): %d nodes, matched %d, %v; want %d", len(l.Nodes), l.Matched, err, len(all))
		}
	})
}

// TestGetNodes: GetNodes returns exactly ListNodes' records (routes
// included) of the IDs asked for, in ID order, each once, leaving out
// unknown and deleted IDs, for sets that fill no chunk, one, and more
// than one, on every backend.
func TestGetNodes(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		f.user("alice")
		k := f.key(AuthKeyRequest{User: "alice", Reusable: true})
		defer func(c int) { getNodesChunk = c }(getNodesChunk)
		getNodesChunk = 64 // so that 100 nodes fill one chunk and start a second
		const n = 100
		var ids []wire.NodeID
		for i := range n {
			nd := f.register(k, fmt.Sprintf("n%d", i))
			ids = append(ids, nd.ID)
			if i%25 == 1 { // routes on asked and unasked nodes alike
				p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i), 0, 0}), 24)
				if _, err := f.s.SetAdvertisedRoutes(ctx, nd.ID, []netip.Prefix{p}); err != nil {
					t.Fatal(err)
				}
				if _, err := f.s.ApproveRoute(ctx, nd.ID, p); err != nil {
					t.Fatal(err)
				}
			}
		}
		deleted := ids[7]
		if err := f.s.DeleteNode(ctx, deleted); err != nil {
			t.Fatal(err)
		}
		all, err := f.s.ListNodes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		every := func(step int) []wire.NodeID {
			var out []wire.NodeID
			for i := len(ids) - 1; i >= 0; i -= step { // reversed: order must not matter
				out = append(out, ids[i])
			}
			return out
		}
		for _, tt := range []struct {
			name string
			ask  []wire.NodeID
		}{
			{"none", nil},
			{"one", []wire.NodeID{ids[1]}},
			{"three", []wire.NodeID{ids[51], ids[3], ids[76]}},
			{"every third", every(3)},
			{"all, twice, with unknown and deleted", append(append(every(1), every(1)...), deleted, 1<<40)},
			{"only unknown", []wire.NodeID{1 << 40, 1<<40 + 1}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				asked := map[wire.NodeID]bool{}
				for _, id := range tt.ask {
					asked[id] = true
				}
				var want []Node
				for _, nd := range all {
					if asked[nd.ID] {
						want = append(want, nd)
					}
				}
				got, err := f.s.GetNodes(ctx, tt.ask)
				if err != nil {
					t.Fatal(err)
				}
				gj, _ := json.Marshal(got)
				wj, _ := json.Marshal(want)
				if len(got) != len(want) || len(want) > 0 && string(gj) != string(wj) {
					t.Fatalf("GetNodes of %d IDs: %d nodes\n%s\nwant %d\n%s", len(tt.ask), len(got), gj, len(want), wj)
				}
			})
		}
	})
}
