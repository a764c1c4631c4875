package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"weft/internal/wire"
)

// Directory is what Check needs to know about the tailnet: which users
// and node names exist.
type Directory interface {
	HasUser(name string) bool
	HasNode(name string) bool
}

// Check reports the first user or node name the policy mentions that the
// tailnet does not have, at its place in the file.
func (p *Policy) Check(dir Directory) error {
	for _, r := range p.refs {
		switch {
		case r.user && !dir.HasUser(r.name):
			return errAt(r.pos, "unknown user %q: create it with `weft admin users create %s` or fix the name", r.name+"@", r.name)
		case !r.user && !dir.HasNode(r.name):
			return errAt(r.pos, "unknown host or node %q: define it under \"hosts\" or name a node that `weft admin nodes list` shows", r.name)
		}
	}
	return nil
}

// RunTests runs the policy's tests against the tailnet's nodes (names in
// tests resolve to them) and reports every one that fails.
func (p *Policy) RunTests(nodes []*wire.Node) error {
	var errs []error
	for _, t := range p.tests {
		srcs, err := principals(&t.src, nodes)
		if err != nil {
			errs = append(errs, errAt(t.pos, "test src: %v", err))
			continue
		}
		for _, want := range []struct {
			list   []dstAlias
			accept bool
		}{{t.accept, true}, {t.deny, false}} {
			for _, d := range want.list {
				if err := p.runOne(&t, srcs, &d, want.accept, nodes); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

func (p *Policy) runOne(t *test, srcs []*wire.Node, d *dstAlias, accept bool, nodes []*wire.Node) error {
	dsts, err := principals(&d.alias, nodes)
	if err != nil {
		return errAt(t.pos, "test destination: %v", err)
	}
	for _, s := range srcs {
		for _, dn := range dsts {
			for _, pr := range d.ports {
				for _, port := range []uint16{pr.First, pr.Last} {
					if p.Allows(s, dn, t.proto, port) != accept {
						verb := "is denied"
						if !accept {
							verb = "is accepted"
						}
						return errAt(t.pos, "test failed: %s to %s port %d (%s) %s", describe(s), describe(dn), port, protoName(t.proto), verb)
					}
				}
			}
		}
	}
	return nil
}

// Allows reports whether the policy lets src open a flow to dst on proto
// and port, judging each side by who it is (user, tags, name) and by its
// addresses.
func (p *Policy) Allows(src, dst *wire.Node, proto uint8, port uint16) bool {
	for i := range p.rules {
		r := &p.rules[i]
		if !protoIn(r.protos, proto) || !slices.ContainsFunc(r.src, func(a alias) bool { return a.matchesNode(src) }) {
			continue
		}
		for _, d := range r.dst {
			if d.matchesNode(dst) && portsContain(d.ports, proto, port) {
				return true
			}
		}
	}
	return false
}

// principals returns stand-ins for what an alias names in a test: the real
// node for a node name or a node's address, else a node with only the
// user, tag or address.
func principals(a *alias, nodes []*wire.Node) ([]*wire.Node, error) {
	byName := func(name string) *wire.Node {
		for _, n := range nodes {
			if n.Name == name {
				return n
			}
		}
		return &wire.Node{Name: name}
	}
	switch a.kind {
	case kNode:
		return []*wire.Node{byName(a.name)}, nil
	case kUser:
		return []*wire.Node{{User: a.name}}, nil
	case kTag:
		return []*wire.Node{{Tags: []string{a.name}}}, nil
	case kMember:
		return []*wire.Node{{User: "autogroup:member"}}, nil
	case kTagged:
		return []*wire.Node{{Tags: []string{"autogroup:tagged"}}}, nil
	case kGroup:
		var out []*wire.Node
		for _, u := range a.users {
			out = append(out, &wire.Node{User: u})
		}
		for _, n := range a.nodes {
			out = append(out, byName(n))
		}
		return out, nil
	case kPrefix:
		ip := a.nets[0].Addr()
		for _, n := range nodes {
			if n.HasAddr(ip) {
				return []*wire.Node{n}, nil
			}
		}
		return []*wire.Node{{Name: a.name, Addresses: []netip.Prefix{netip.PrefixFrom(ip, ip.BitLen())}}}, nil
	}
	return nil, errors.New("name one user, group, tag, host, node or address, not * or autogroup:internet")
}

func describe(n *wire.Node) string {
	switch {
	case n.Name != "":
		return n.Name
	case len(n.Tags) > 0:
		return n.Tags[0]
	case n.User != "":
		return n.User + "@"
	case len(n.Addresses) > 0:
		return n.Addresses[0].Addr().String()
	}
	return "?"
}

func protoName(p uint8) string {
	for name, n := range protoNames {
		if n == p && name != "icmpv6" {
			return name
		}
	}
	return fmt.Sprint(p)
}

func protoIn(protos []uint8, p uint8) bool {
	if len(protos) == 0 {
		return p == wire.ProtoTCP || p == wire.ProtoUDP || p == wire.ProtoICMP || p == wire.ProtoICMPv6
	}
	return slices.Contains(protos, p)
}

func portsContain(ports []wire.PortRange, proto uint8, port uint16) bool {
	if !hasPorts([]uint8{proto}) {
		return true
	}
	for _, r := range ports {
		if r.Contains(port) {
			return true
		}
	}
	return false
}

// AutoApprove reports whether the policy approves route for n without an
// administrator, and names the rule that does.
func (p *Policy) AutoApprove(n *wire.Node, route netip.Prefix) (string, bool) {
	if route.Bits() == 0 {
		for _, a := range p.exitNode {
			if a.matchesNode(n) {
				return "autoApprovers.exitNode: " + a.String(), true
			}
		}
		return "", false
	}
	for _, ra := range p.routes {
		if ra.prefix.Bits() > route.Bits() || !ra.prefix.Contains(route.Addr()) {
			continue
		}
		for _, a := range ra.approvers {
			if a.matchesNode(n) {
				return fmt.Sprintf("autoApprovers.routes[%s]: %s", ra.prefix, a.String()), true
			}
		}
	}
	return "", false
}

// DefinesTag reports whether tag is one of the policy's tagOwners.
func (p *Policy) DefinesTag(tag string) bool {
	_, ok := p.tagOwners[tag]
	return ok
}

// MayApplyTag reports whether user may put tag on a node (its tagOwners
// name the user or a group holding the user).
func (p *Policy) MayApplyTag(user, tag string) bool {
	owners, ok := p.tagOwners[tag]
	if !ok {
		return false
	}
	for _, o := range owners {
		if u, ok := userName(o); ok && u == user {
			return true
		}
		if strings.HasPrefix(o, "group:") {
			for _, m := range p.groups[o] {
				if u, ok := userName(m); ok && u == user {
					return true
				}
			}
		}
	}
	return false
}

// String gives an alias back in the policy's words.
func (a *alias) String() string {
	switch a.kind {
	case kAny:
		return "*"
	case kUser:
		if strings.Contains(a.name, "@") {
			return a.name
		}
		return a.name + "@"
	case kMember:
		return "autogroup:member"
	case kTagged:
		return "autogroup:tagged"
	case kInternet:
		return "autogroup:internet"
	case kPrefix:
		if a.name != "" {
			return a.name
		}
		return a.nets[0].String()
	}
	return a.name
}
