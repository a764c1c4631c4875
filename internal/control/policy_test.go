package control

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"weft/internal/controlclient"
	"weft/internal/policy"
	"weft/internal/store"
	"weft/internal/tailnet"
	"weft/internal/wire"
)

// policyNet is busan (advertising an exit node), mac, pc and friend, each
// streaming, with a net map per node built from what it received.
type policyNet struct {
	t     *testing.T
	h     *harness
	nodes map[string]*simNode
	maps  map[string]*controlclient.NetMap
}

func startPolicyNet(t *testing.T) *policyNet {
	h := newHarness(t, nil)
	k := h.authKey(store.AuthKeyRequest{Reusable: true})
	pn := &policyNet{t: t, h: h, nodes: map[string]*simNode{}, maps: map[string]*controlclient.NetMap{}}
	for _, name := range []string{"busan", "mac", "pc", "friend"} {
		n := h.newSim(name)
		if name == "busan" {
			n.routes = tailnet.ExitRoutes()
		}
		n.mustRegister(t, k)
		if err := n.stream(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.close)
		pn.nodes[name] = n
		pn.maps[name] = &controlclient.NetMap{}
	}
	pn.settle()
	return pn
}

// settle applies every message each node gets until the server is quiet,
// and returns which nodes got any.
func (pn *policyNet) settle() map[string]bool {
	got := map[string]bool{}
	for quiet := false; !quiet; {
		quiet = true
		time.Sleep(150 * time.Millisecond)
		for name, n := range pn.nodes {
			for len(n.msgs) > 0 {
				pn.maps[name].Apply(<-n.msgs)
				got[name], quiet = true, false
			}
		}
	}
	return got
}

func (pn *policyNet) peers(name string) []string {
	var out []string
	for _, p := range pn.maps[name].Peers {
		out = append(out, p.Name)
	}
	slices.Sort(out)
	return out
}

func (pn *policyNet) setPolicy(src string) {
	pn.t.Helper()
	p, err := policy.Parse([]byte(src))
	if err != nil {
		pn.t.Fatal(err)
	}
	if _, err := pn.h.st.AddPolicy(context.Background(), store.PolicyVersion{Body: []byte(src)}); err != nil {
		pn.t.Fatal(err)
	}
	pn.h.srv.PolicyChanged(p)
}

const fukuokaPolicy = `{
	"groups": {"group:fukuoka": ["mac", "pc"]},
	"tagOwners": {"tag:kiosk": ["alice@"]},
	"acls": [
		{"action": "accept", "src": ["group:fukuoka"], "dst": ["busan:22", "autogroup:internet:*"]},
		{"action": "accept", "src": ["tag:kiosk"], "dst": ["busan:80"]},
	],
	"autoApprovers": {"exitNode": ["alice@"]},
}`

// TestPolicyCompiledIntoMaps checks that a policy reaches nodes as
// filters and peer lists: without a policy all see all and everything is
// allowed; with one, each sees only whom it may reach or be reached by, an
// exit node is auto-approved, a one-rule change reaches only the nodes it
// changes, and re-tagging a node recompiles its peers' filters.
func TestPolicyCompiledIntoMaps(t *testing.T) {
	pn := startPolicyNet(t)
	for name := range pn.nodes {
		if got := pn.peers(name); len(got) != 3 {
			t.Fatalf("no policy: %s sees %v", name, got)
		}
		if f := pn.maps[name].PacketFilter; f == nil || !f.AllowAll {
			t.Fatalf("no policy: %s's filter = %+v, want allow_all", name, f)
		}
	}

	pn.setPolicy(fukuokaPolicy)
	pn.settle()
	want := map[string][]string{"busan": {"mac", "pc"}, "mac": {"busan"}, "pc": {"busan"}, "friend": nil}
	for name, w := range want {
		if got := pn.peers(name); !slices.Equal(got, w) {
			t.Errorf("%s sees %v, want %v", name, got, w)
		}
	}
	bf := pn.maps["busan"].PacketFilter
	if bf == nil || bf.AllowAll || len(bf.Rules) != 1 || !slices.ContainsFunc(bf.Rules[0].Srcs, func(p netip.Prefix) bool { return p.Contains(pn.nodes["mac"].self.Addresses[0].Addr()) }) {
		t.Fatalf("busan's filter = %+v, want one rule from mac's and pc's addresses", bf)
	}
	for _, name := range []string{"mac", "pc", "friend"} {
		if f := pn.maps[name].PacketFilter; f == nil || f.AllowAll || len(f.Rules) != 0 {
			t.Errorf("%s's filter = %+v, want no rules", name, f)
		}
	}
	rs, _ := pn.h.st.ListRoutes(context.Background())
	if len(rs) != 2 || !rs[0].Approved || !strings.Contains(rs[0].AutoApprovedBy, "exitNode: alice@") {
		t.Fatalf("busan's exit routes: %+v, want auto-approved", rs)
	}
	if !pn.maps["mac"].Peers[pn.nodes["busan"].self.ID].OffersExit() {
		t.Error("mac does not see busan as an exit node after auto-approval")
	}

	// One rule more, for friend only: busan and friend hear of it, mac
	// and pc hear nothing.
	pn.setPolicy(strings.Replace(fukuokaPolicy, `"acls": [`, `"acls": [
		{"action": "accept", "src": ["friend"], "dst": ["busan:443"]},`, 1))
	got := pn.settle()
	if !got["busan"] || !got["friend"] || got["mac"] || got["pc"] {
		t.Fatalf("a rule for friend reached %v; want busan and friend only", got)
	}
	if p := pn.peers("friend"); !slices.Equal(p, []string{"busan"}) {
		t.Fatalf("friend sees %v, want busan", p)
	}

	// Re-tagging pc as a kiosk moves it out of alice's nodes (still in
	// group:fukuoka by name) and into the kiosk rule on busan.
	pc := pn.nodes["pc"].self.ID
	if _, err := pn.h.st.SetNodeTags(context.Background(), pc, []string{"tag:kiosk"}); err != nil {
		t.Fatal(err)
	}
	pn.h.srv.NodeChanged(pc)
	got = pn.settle()
	if got["friend"] {
		t.Error("friend heard of pc's tags although it cannot see pc")
	}
	var kiosk bool
	for _, r := range pn.maps["busan"].PacketFilter.Rules {
		for _, d := range r.Dsts {
			if d.Ports == (wire.PortRange{First: 80, Last: 80}) && slices.Contains(r.Srcs, netip.PrefixFrom(pn.nodes["pc"].self.Addresses[0].Addr(), 32)) {
				kiosk = true
			}
		}
	}
	if !kiosk {
		t.Fatalf("busan's filter after tagging pc: %+v, want pc allowed to port 80", pn.maps["busan"].PacketFilter)
	}

	// A new node joins: busan's filter does not change (friend2 is in
	// no rule), and nobody may see it.
	f2 := pn.h.newSim("friend2")
	f2.mustRegister(t, pn.h.authKey(store.AuthKeyRequest{}))
	if err := f2.stream(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer f2.close()
	full := f2.next(t)
	if len(full.Peers) != 0 || full.PacketFilter == nil || full.PacketFilter.AllowAll {
		t.Fatalf("friend2's full map: %d peers, filter %+v", len(full.Peers), full.PacketFilter)
	}
	if got := pn.settle(); len(got) != 0 {
		t.Fatalf("a node nobody may see joined and %v heard of it", got)
	}

	// friend is deleted: busan loses it as a peer and the rule for it
	// from its filter.
	fid := pn.nodes["friend"].self.ID
	if err := pn.h.st.DeleteNode(context.Background(), fid); err != nil {
		t.Fatal(err)
	}
	pn.h.srv.NodeRemoved(fid)
	delete(pn.nodes, "friend")
	pn.settle()
	if p := pn.peers("busan"); slices.Contains(p, "friend") {
		t.Errorf("busan still sees friend: %v", p)
	}
	for _, r := range pn.maps["busan"].PacketFilter.Rules {
		for _, d := range r.Dsts {
			if d.Ports.First == 443 {
				t.Errorf("busan's filter still lets friend in on 443: %+v", r)
			}
		}
	}
}

// TestPolicyGroupsFromIdentityProvider: a group the policy defines empty
// takes its members from the identity provider's groups, as the store
// has them from the users' last sign-in; when a sign-in changes them
// (UserGroupsChanged), the maps follow.
func TestPolicyGroupsFromIdentityProvider(t *testing.T) {
	pn := startPolicyNet(t)
	ctx := context.Background()
	signIn := func(groups ...string) {
		t.Helper()
		if _, err := pn.h.st.OIDCUser(ctx, store.OIDCIdentity{Issuer: "https://idp", Subject: "sub-carol", Email: "carol@example.com", Groups: groups}); err != nil {
			t.Fatal(err)
		}
	}
	signIn()
	k := pn.h.authKey(store.AuthKeyRequest{User: "carol"})
	n := pn.h.newSim("laptop")
	n.mustRegister(t, k)
	if err := n.stream(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.close)
	pn.nodes["laptop"], pn.maps["laptop"] = n, &controlclient.NetMap{}
	pn.settle()
	pn.setPolicy(`{
		"groups": {"group:eng": []},
		"acls": [{"action": "accept", "src": ["group:eng"], "dst": ["busan:22"]}],
	}`)
	pn.settle()
	if got := pn.peers("laptop"); len(got) != 0 {
		t.Fatalf("carol in no provider group: laptop sees %v", got)
	}
	signIn("eng")
	pn.h.srv.UserGroupsChanged()
	pn.settle()
	if got := pn.peers("laptop"); !slices.Equal(got, []string{"busan"}) {
		t.Fatalf("carol in eng: laptop sees %v, want [busan]", got)
	}
	signIn("sales")
	pn.h.srv.UserGroupsChanged()
	pn.settle()
	if got := pn.peers("laptop"); len(got) != 0 {
		t.Fatalf("carol out of eng again: laptop sees %v", got)
	}
}
