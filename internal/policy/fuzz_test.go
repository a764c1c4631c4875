package policy

import (
	"errors"
	"net/netip"
	"testing"

	"weft/internal/wire"
)

// FuzzParse feeds arbitrary files to the parser: it must never panic, every
// refusal must be a placed *Error, and what it accepts must compile, check
// and run its tests without panicking.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		issuePolicy,
		`{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}`,
		`{"hosts": {"nas": "192.168.1.10"}, "acls": [{"action": "accept", "src": ["10.0.0.0/8"], "proto": "udp", "dst": ["nas:53,1000-2000"]}]}`,
		`{"tagOwners": {"tag:a": ["alice@"]}, "autoApprovers": {"routes": {"10.0.0.0/8": ["tag:a"]}, "exitNode": ["alice@"]}}`,
		`{"acls": [{"action": "accept", "src": ["[fd7a::1]"], "dst": ["[fd7a::2]:22"]}]}`,
		"{/* c */ \"acls\": [,]}",
	} {
		f.Add([]byte(s))
	}
	nodes := fixture()
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *policy.Error", err)
			}
			return
		}
		_ = p.Check(dir{})
		_ = p.RunTests(nodes)
		c := p.Compile(nodes)
		for _, n := range nodes {
			if err := c.Filter(n.ID).Validate(); err != nil {
				t.Fatalf("compiled filter for %s fails validation: %v", n.Name, err)
			}
			_ = c.CanSee(n.ID, 1)
			p.AutoApprove(n, netip.MustParsePrefix("0.0.0.0/0"))
		}
		_ = p.Allows(nodes[0], nodes[1], wire.ProtoTCP, 22)
	})
}
