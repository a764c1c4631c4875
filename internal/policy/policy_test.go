package policy

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"weft/internal/policy/policytest"
	"weft/internal/wire"
)

// fixture is a small tailnet: alice's busan (exit node and subnet router
// for 192.168.1.0/24), mac and pc; bob's friend node; a tagged printer
// and server.
func fixture() []*wire.Node {
	mk := func(id wire.NodeID, name, user string, tags []string, routes ...string) *wire.Node {
		n := &wire.Node{ID: id, Name: name, User: user, Tags: tags, Addresses: []netip.Prefix{
			netip.MustParsePrefix("100.64.0." + string(rune('0'+id)) + "/32"),
			netip.MustParsePrefix("fd7a::" + string(rune('0'+id)) + "/128"),
		}}
		for _, r := range routes {
			n.Routes = append(n.Routes, netip.MustParsePrefix(r))
		}
		return n
	}
	return []*wire.Node{
		mk(1, "busan", "alice", nil, "0.0.0.0/0", "::/0", "192.168.1.0/24"),
		mk(2, "mac", "alice", nil),
		mk(3, "pc", "alice", nil),
		mk(4, "printer", "", []string{"tag:printer"}),
		mk(5, "friend", "bob", nil),
		mk(6, "server", "", []string{"tag:server"}),
	}
}

type dir struct{}

func (dir) HasUser(n string) bool { return n == "alice" || n == "bob" }
func (dir) HasNode(n string) bool {
	for _, x := range fixture() {
		if x.Name == n {
			return true
		}
	}
	return false
}

func byName(nodes []*wire.Node, name string) *wire.Node {
	for _, n := range nodes {
		if n.Name == name {
			return n
		}
	}
	return &wire.Node{Name: name, Addresses: []netip.Prefix{netip.PrefixFrom(netip.MustParseAddr(name), 32)}}
}

// issuePolicy is the lab policy of the ACL issue.
var issuePolicy = policytest.SeedPolicy

func mustParse(t testing.TB, src string) *Policy {
	t.Helper()
	p, err := Parse([]byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return p
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, src, want string
		line, col       int
	}{
		{"syntax", "{\n  \"acls\": [\n    {\"action\": \"accept\" \"src\": []}\n  ]\n}", "invalid character", 3, 25},
		{"unknown field", "{\n \"acl\": []\n}", `unknown field "acl"`, 2, 2},
		{"wrong type", "{\n \"groups\": []\n}", "groups must be an object", 2, 12},
		{"unknown group", "{\"acls\": [\n{\"action\": \"accept\", \"src\": [\"group:x\"], \"dst\": [\"*:*\"]}]}", `unknown group "group:x"`, 2, 30},
		{"unknown tag", "{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"],\n \"dst\": [\"tag:web:80\"]}]}", `unknown tag "tag:web"`, 2, 10},
		{"deny action", `{"acls": [{"action": "deny", "src": ["*"], "dst": ["*:*"]}]}`, `the only action is "accept"`, 1, 22},
		{"no ports", `{"acls": [{"action": "accept", "src": ["*"], "dst": ["busan"]}]}`, "needs ports", 1, 54},
		{"bad port", `{"acls": [{"action": "accept", "src": ["*"], "dst": ["busan:99999"]}]}`, "ports", 1, 54},
		{"bad range", `{"acls": [{"action": "accept", "src": ["*"], "dst": ["busan:90-80"]}]}`, "ports", 1, 54},
		{"bad cidr", `{"acls": [{"action": "accept", "src": ["10.0.0.1/8"], "dst": ["*:*"]}]}`, "host bits", 1, 40},
		{"icmp port", `{"acls": [{"action": "accept", "proto": "icmp", "src": ["*"], "dst": ["busan:22"]}]}`, "no ports", 1, 71},
		{"bad proto", `{"acls": [{"action": "accept", "proto": "tcpp", "src": ["*"], "dst": ["*:*"]}]}`, `proto "tcpp"`, 1, 41},
		{"internet src", `{"acls": [{"action": "accept", "src": ["autogroup:internet"], "dst": ["*:*"]}]}`, "only a destination", 1, 40},
		{"bad autogroup", `{"acls": [{"action": "accept", "src": ["autogroup:self"], "dst": ["*:*"]}]}`, "unknown autogroup", 1, 40},
		{"bad host", "{\"hosts\": {\n \"nas\": \"192.168.1.300\"}}", `host "nas"`, 2, 9},
		{"bad group name", `{"groups": {"family": ["alice@"]}}`, "not a group name", 1, 13},
		{"bad tag name", `{"tagOwners": {"server": ["alice@"]}}`, "not a tag", 1, 16},
		{"group in group", `{"groups": {"group:a": ["group:b"]}}`, "must be a user", 1, 25},
		{"bad route approver", `{"autoApprovers": {"routes": {"10.0.0.1/8": ["alice@"]}}}`, "host bits", 1, 31},
		{"no src", `{"acls": [{"action": "accept", "dst": ["*:*"]}]}`, "needs both", 1, 11},
		{"test no src", `{"tests": [{"accept": ["busan:22"]}]}`, "needs a src", 1, 12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.src))
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want a *policy.Error", err)
			}
			if !strings.Contains(pe.Msg, tt.want) || pe.Line != tt.line || pe.Column != tt.col {
				t.Errorf("got %v, want %q at line %d, column %d", err, tt.want, tt.line, tt.col)
			}
		})
	}
}

func TestCheckNamesUnknownReferences(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"user", `{"acls": [{"action": "accept", "src": ["carol@"], "dst": ["*:*"]}]}`, `unknown user "carol@"`},
		{"node", `{"acls": [{"action": "accept", "src": ["*"], "dst": ["nas:22"]}]}`, `unknown host or node "nas"`},
		{"group member", `{"groups": {"group:a": ["carol@"]}}`, `unknown user "carol@"`},
		{"tag owner", `{"tagOwners": {"tag:a": ["dave@"]}}`, `unknown user "dave@"`},
		{"ok", issuePolicy, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := mustParse(t, tt.src).Check(dir{})
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "line 1") {
				t.Fatalf("err = %v, want %q with its line", err, tt.want)
			}
		})
	}
}

func TestRunTests(t *testing.T) {
	nodes := fixture()
	if err := mustParse(t, issuePolicy).RunTests(nodes); err != nil {
		t.Fatalf("the issue's policy fails its own tests: %v", err)
	}
	bad := strings.Replace(issuePolicy, `"deny": ["busan:80", "pc:22"]`, `"deny": ["busan:22"]`, 1)
	err := mustParse(t, bad).RunTests(nodes)
	if err == nil || !strings.Contains(err.Error(), "mac to busan port 22 (tcp) is accepted") || !strings.Contains(err.Error(), "line 9") {
		t.Fatalf("err = %v, want the failing deny test named with its line", err)
	}
	bad = strings.Replace(issuePolicy, `"accept": ["busan:22"]`, `"accept": ["busan:23"]`, 1)
	if err := mustParse(t, bad).RunTests(nodes); err == nil || !strings.Contains(err.Error(), "port 23 (tcp) is denied") {
		t.Fatalf("err = %v, want the failing accept test", err)
	}
}

// TestExamplePolicies checks what Tailscale-style policies mean: who may
// open what, judged through Allows.
func TestExamplePolicies(t *testing.T) {
	type flow struct {
		src, dst string
		proto    uint8
		port     uint16
		want     bool
	}
	tcp, udp, icmp := wire.ProtoTCP, wire.ProtoUDP, wire.ProtoICMP
	tests := []struct {
		name  string
		src   string
		flows []flow
	}{
		{"allow all", `{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}`, []flow{
			{"mac", "pc", tcp, 22, true}, {"friend", "printer", udp, 9, true}, {"pc", "mac", icmp, 0, true},
			{"pc", "mac", 47, 0, false}, // the default protocols are TCP, UDP and ICMP
		}},
		{"issue policy", issuePolicy, []flow{
			{"mac", "busan", tcp, 22, true}, {"pc", "busan", tcp, 22, true}, {"mac", "busan", tcp, 80, false},
			{"busan", "mac", tcp, 22, false}, {"mac", "pc", tcp, 22, false}, {"mac", "busan", udp, 22, true},
			{"mac", "203.0.113.7", tcp, 443, true}, {"mac", "192.168.1.20", tcp, 22, false},
			{"friend", "busan", tcp, 22, false},
		}},
		{"printer takes only 631", `{
			"tagOwners": {"tag:printer": ["alice@"]},
			"acls": [{"action": "accept", "src": ["autogroup:member"], "dst": ["tag:printer:631"]}]}`, []flow{
			{"mac", "printer", tcp, 631, true}, {"friend", "printer", tcp, 631, true}, {"mac", "printer", tcp, 22, false},
			{"printer", "mac", tcp, 631, false}, {"server", "printer", tcp, 631, false}, // tagged nodes are not members
		}},
		{"friend sees one server", `{
			"tagOwners": {"tag:server": ["alice@"]},
			"groups": {"group:family": ["alice@"]},
			"acls": [
				{"action": "accept", "src": ["group:family"], "dst": ["*:*"]},
				{"action": "accept", "src": ["bob@"], "dst": ["tag:server:80,443"]},
			]}`, []flow{
			{"friend", "server", tcp, 443, true}, {"friend", "server", tcp, 22, false}, {"friend", "mac", tcp, 80, false},
			{"mac", "friend", tcp, 22, true}, {"pc", "server", udp, 53, true},
		}},
		{"subnet and hosts", `{
			"hosts": {"lan": "192.168.1.0/24", "nas": "192.168.1.10"},
			"acls": [
				{"action": "accept", "src": ["alice@"], "dst": ["nas:445"]},
				{"action": "accept", "src": ["100.64.0.5"], "dst": ["lan:80-89"]},
				{"action": "accept", "src": ["*"], "proto": "udp", "dst": ["busan:53"]},
			]}`, []flow{
			{"mac", "192.168.1.10", tcp, 445, true}, {"mac", "192.168.1.11", tcp, 445, false},
			{"friend", "192.168.1.11", tcp, 85, true}, {"friend", "192.168.1.11", tcp, 90, false},
			{"friend", "busan", udp, 53, true}, {"friend", "busan", tcp, 53, false},
		}},
		{"protocol numbers", `{"acls": [{"action": "accept", "src": ["*"], "proto": "47", "dst": ["busan:*"]}]}`, []flow{
			{"mac", "busan", 47, 0, true}, {"mac", "busan", tcp, 1, false},
		}},
	}
	nodes := fixture()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, tt.src)
			for _, f := range tt.flows {
				if got := p.Allows(byName(nodes, f.src), byName(nodes, f.dst), f.proto, f.port); got != f.want {
					t.Errorf("%s -> %s %d/%d: allowed = %v, want %v", f.src, f.dst, f.proto, f.port, got, f.want)
				}
			}
		})
	}
}

func TestCompileFiltersAndVisibility(t *testing.T) {
	nodes := fixture()
	c := mustParse(t, issuePolicy).Compile(nodes)
	id := func(name string) wire.NodeID { return byName(nodes, name).ID }

	see := []struct {
		a, b string
		want bool
	}{
		{"mac", "busan", true}, {"pc", "busan", true}, {"busan", "mac", true},
		{"mac", "pc", false}, {"friend", "busan", false}, {"friend", "mac", false}, {"printer", "server", false},
	}
	for _, s := range see {
		if got := c.CanSee(id(s.a), id(s.b)); got != s.want {
			t.Errorf("CanSee(%s, %s) = %v, want %v", s.a, s.b, got, s.want)
		}
	}

	f := c.Filter(id("busan"))
	if f.AllowAll || len(f.Rules) != 1 {
		t.Fatalf("busan's filter = %+v, want one rule", f)
	}
	r := f.Rules[0]
	// mac's and pc's addresses, merged into the fewest prefixes.
	for _, a := range []string{"100.64.0.2", "100.64.0.3", "fd7a::2", "fd7a::3"} {
		if !containsAddr(r.Srcs, netip.MustParseAddr(a)) {
			t.Errorf("srcs %v miss %s", r.Srcs, a)
		}
	}
	for _, a := range []string{"100.64.0.1", "100.64.0.4", "fd7a::1", "fd7a::4"} {
		if containsAddr(r.Srcs, netip.MustParseAddr(a)) {
			t.Errorf("srcs %v hold %s", r.Srcs, a)
		}
	}
	if len(r.Srcs) != 2 {
		t.Errorf("srcs %v, want mac and pc merged into one prefix per family", r.Srcs)
	}
	var port22, internet, lan bool
	for _, d := range r.Dsts {
		switch {
		case d.Net.String() == "100.64.0.1/32" && d.Ports == wire.PortRange{First: 22, Last: 22}:
			port22 = true
		case d.Net.Contains(netip.MustParseAddr("203.0.113.7")) && d.Ports == wire.AllPorts:
			internet = true
		case d.Net.Contains(netip.MustParseAddr("192.168.1.1")), d.Net.Contains(netip.MustParseAddr("100.64.0.9")):
			lan = true
		}
	}
	if !port22 || !internet || lan {
		t.Errorf("busan's dsts = %v: want its own :22 and the internet, never its LAN or the tailnet", r.Dsts)
	}
	for _, name := range []string{"mac", "pc", "friend"} {
		if f := c.Filter(id(name)); f.AllowAll || len(f.Rules) != 0 {
			t.Errorf("%s's filter = %+v, want nothing let in", name, f)
		}
	}
	if f := (*Policy)(nil).Compile(nodes).Filter(id("mac")); !f.AllowAll {
		t.Error("no policy must allow everything")
	}
}

func TestAutoApproveAndTagOwners(t *testing.T) {
	p := mustParse(t, `{
		"groups": {"group:admins": ["alice@"]},
		"tagOwners": {"tag:router": ["group:admins"], "tag:exit": ["bob@"]},
		"autoApprovers": {
			"routes": {"192.168.0.0/16": ["tag:router"]},
			"exitNode": ["tag:exit", "group:admins"],
		},
	}`)
	nodes := fixture()
	router := &wire.Node{Name: "r", Tags: []string{"tag:router"}}
	tests := []struct {
		name  string
		n     *wire.Node
		route string
		want  string
	}{
		{"route in range", router, "192.168.1.0/24", "autoApprovers.routes[192.168.0.0/16]: tag:router"},
		{"route outside", router, "10.1.0.0/16", ""},
		{"wider route", router, "192.0.0.0/8", ""},
		{"exit by group", byName(nodes, "busan"), "0.0.0.0/0", "autoApprovers.exitNode: group:admins"},
		{"exit by tag", &wire.Node{Tags: []string{"tag:exit"}}, "::/0", "autoApprovers.exitNode: tag:exit"},
		{"exit by stranger", byName(nodes, "friend"), "0.0.0.0/0", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := p.AutoApprove(tt.n, netip.MustParsePrefix(tt.route))
			if got != tt.want || ok != (tt.want != "") {
				t.Errorf("AutoApprove = %q, %v; want %q", got, ok, tt.want)
			}
		})
	}
	owners := []struct {
		user, tag string
		want      bool
	}{{"alice", "tag:router", true}, {"bob", "tag:router", false}, {"bob", "tag:exit", true}, {"alice", "tag:nope", false}}
	for _, o := range owners {
		if got := p.MayApplyTag(o.user, o.tag); got != o.want {
			t.Errorf("MayApplyTag(%s, %s) = %v, want %v", o.user, o.tag, got, o.want)
		}
	}
}

func TestInternetExcludesPrivateRanges(t *testing.T) {
	for _, tt := range []struct {
		ip   string
		want bool
	}{{"203.0.113.7", true}, {"8.8.8.8", true}, {"100.64.0.1", false}, {"10.1.2.3", false},
		{"192.168.1.1", false}, {"172.20.0.1", false}, {"2001:db8::1", true}, {"fd7a::1", false}, {"::1", false}} {
		if got := containsAddr(internetNets, netip.MustParseAddr(tt.ip)); got != tt.want {
			t.Errorf("internet holds %s = %v, want %v", tt.ip, got, tt.want)
		}
	}
}

func TestAggregate(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"10.0.0.1/32", "10.0.0.1/32"},
		{"10.0.0.1/32 10.0.0.0/32", "10.0.0.0/31"},
		{"10.0.0.0/32 10.0.0.1/32 10.0.0.2/32 10.0.0.3/32", "10.0.0.0/30"},
		{"10.0.0.1/32 10.0.0.2/32", "10.0.0.1/32 10.0.0.2/32"},
		{"10.0.0.0/8 10.1.2.3/32 10.0.0.0/8", "10.0.0.0/8"},
		{"0.0.0.0/1 128.0.0.0/1", "0.0.0.0/0"},
		{"fd7a::2/128 fd7a::3/128 100.64.0.3/32", "100.64.0.3/32 fd7a::2/127"},
	}
	for _, tt := range tests {
		var in []netip.Prefix
		for _, f := range strings.Fields(tt.in) {
			in = append(in, netip.MustParsePrefix(f))
		}
		var got []string
		for _, p := range aggregate(in) {
			got = append(got, p.String())
		}
		if strings.Join(got, " ") != tt.want {
			t.Errorf("aggregate(%s) = %v, want %s", tt.in, got, tt.want)
		}
	}
}

// TestViewChanges checks the class-wise comparison against every pair.
func TestViewChanges(t *testing.T) {
	nodes := fixture()
	extra := &wire.Node{ID: 9, Name: "late", User: "bob", Addresses: []netip.Prefix{netip.MustParsePrefix("100.64.0.9/32")}}
	friendPolicy := strings.Replace(issuePolicy, `"acls": [`, `"acls": [
		{"action": "accept", "src": ["bob@"], "dst": ["busan:443"]},`, 1)
	comps := map[string]*Compiled{
		"none":   (*Policy)(nil).Compile(nodes),
		"issue":  mustParse(t, issuePolicy).Compile(nodes),
		"friend": mustParse(t, friendPolicy).Compile(append(slices.Clone(nodes), extra)),
	}
	ids := []wire.NodeID{1, 2, 3, 4, 5, 6, 9}
	for oldName, old := range comps {
		for newName, cur := range comps {
			got := map[[2]wire.NodeID]bool{}
			ViewChanges(old, cur, ids, func(a, b wire.NodeID, visible bool) {
				if a > b {
					a, b = b, a
				}
				if _, dup := got[[2]wire.NodeID{a, b}]; dup {
					t.Errorf("%s -> %s: pair %d-%d reported twice", oldName, newName, a, b)
				}
				got[[2]wire.NodeID{a, b}] = visible
			})
			for i, a := range ids {
				for _, b := range ids[i+1:] {
					was, is := old.CanSee(a, b), cur.CanSee(a, b)
					v, reported := got[[2]wire.NodeID{a, b}]
					if reported != (was != is) || reported && v != is {
						t.Errorf("%s -> %s: pair %d-%d: was %v, is %v; reported %v (%v)", oldName, newName, a, b, was, is, reported, v)
					}
				}
			}
		}
	}
}

// TestParseLeavesSourceAlone: parsing does not blank the comments of the
// caller's file (the store keeps that file as the policy's source).
func TestParseLeavesSourceAlone(t *testing.T) {
	src := []byte("{\n  // who may reach what\n  \"acls\": [], /* none */\n}")
	orig := string(src)
	p, err := Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	if string(src) != orig || string(p.Source()) != orig {
		t.Fatalf("after Parse the file is %q and Source %q, want %q", src, p.Source(), orig)
	}
}

// TestWithGroups: a group the file defines empty takes its members from
// the identity provider's groups; other groups and the original policy
// are unchanged, and a provider group the file does not define adds
// nothing.
func TestWithGroups(t *testing.T) {
	nodes := fixture()
	id := func(name string) wire.NodeID { return byName(nodes, name).ID }
	p := mustParse(t, `{
		"groups": {"group:eng": [], "group:fukuoka": ["mac"]},
		"tagOwners": {"tag:server": ["alice@"]},
		"acls": [
			{"action": "accept", "src": ["group:eng"], "dst": ["tag:server:22"]},
			{"action": "accept", "src": ["group:fukuoka"], "dst": ["busan:22"]},
		],
	}`)
	withBob := p.WithGroups(map[string][]string{"bob": {"eng", "unknown"}, "alice": {"ops"}})
	for _, c := range []struct {
		pol        *Policy
		a, b       string
		want       bool
		whatPolicy string
	}{
		{p, "friend", "server", false, "file only"},
		{withBob, "friend", "server", true, "bob in eng"},
		{withBob, "mac", "server", false, "alice not in eng"},
		{withBob, "mac", "busan", true, "file members kept"},
		{withBob, "pc", "busan", false, "file members only"},
	} {
		if got := c.pol.Compile(nodes).CanSee(id(c.a), id(c.b)); got != c.want {
			t.Errorf("%s: CanSee(%s, %s) = %v, want %v", c.whatPolicy, c.a, c.b, got, c.want)
		}
	}
	if p.WithGroups(map[string][]string{"bob": {"nosuch"}}) != p {
		t.Error("provider groups the file does not define made a new policy")
	}
	var nilP *Policy
	if nilP.WithGroups(map[string][]string{"bob": {"eng"}}) != nil {
		t.Error("nil policy")
	}
}
