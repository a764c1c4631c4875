package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/tailscale/hujson"

	"weft/internal/tailnet"
	"weft/internal/wire"
)

// compiler turns a decoded file into a Policy, placing every error it
// finds in the source.
type compiler struct {
	src  []byte
	root *hujson.Value
	p    *Policy
}

// at returns the place of the value at a JSON pointer built from parts.
func (c *compiler) at(parts ...any) pos {
	var b strings.Builder
	for _, p := range parts {
		s := fmt.Sprint(p)
		s = strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
		b.WriteString("/" + s)
	}
	v := c.root.Find(b.String())
	if v == nil {
		return pos{}
	}
	l, col := lineCol(c.src, v.StartOffset)
	return pos{l, col}
}

// keyAt returns the place of an object member's name.
func (c *compiler) keyAt(obj string, name string) pos {
	v := c.root.Find("/" + obj)
	if v == nil {
		return pos{}
	}
	o, ok := v.Value.(*hujson.Object)
	if !ok {
		return pos{}
	}
	for _, m := range o.Members {
		if lit, ok := m.Name.Value.(hujson.Literal); ok && lit.String() == name {
			l, col := lineCol(c.src, m.Name.StartOffset)
			return pos{l, col}
		}
	}
	return pos{}
}

func errAt(p pos, format string, args ...any) error {
	return &Error{Line: p.line, Column: p.col, Msg: fmt.Sprintf(format, args...)}
}

func (c *compiler) compile(f *file) error {
	p := c.p
	p.hosts = map[string]netip.Prefix{}
	p.groups = map[string][]string{}
	p.tagOwners = map[string][]string{}
	for _, name := range sortedKeys(f.Hosts) {
		if err := c.host(name, f.Hosts[name]); err != nil {
			return err
		}
	}
	for _, name := range sortedKeys(f.TagOwners) {
		if !validTag(name) {
			return errAt(c.keyAt("tagOwners", name), "%q is not a tag: tags look like tag:server (a-z, 0-9, -)", name)
		}
		p.tagOwners[name] = f.TagOwners[name]
	}
	for _, name := range sortedKeys(f.Groups) {
		if err := c.group(name, f.Groups[name]); err != nil {
			return err
		}
	}
	for _, name := range sortedKeys(f.TagOwners) {
		for i, o := range f.TagOwners[name] {
			if _, err := c.owner(o, c.at("tagOwners", name, i)); err != nil {
				return err
			}
		}
	}
	for i := range f.ACLs {
		if err := c.acl(i, &f.ACLs[i]); err != nil {
			return err
		}
	}
	if err := c.autoApprovers(f.AutoApprovers); err != nil {
		return err
	}
	for i := range f.Tests {
		if err := c.test(i, &f.Tests[i]); err != nil {
			return err
		}
	}
	return nil
}

func (c *compiler) host(name, v string) error {
	at := c.at("hosts", name)
	if !validLabel(name) {
		return errAt(c.keyAt("hosts", name), "host name %q must be a DNS label (a-z, 0-9, -)", name)
	}
	pfx, err := parseNet(v)
	if err != nil {
		return errAt(at, "host %q: %v", name, err)
	}
	c.p.hosts[name] = pfx
	return nil
}

func (c *compiler) group(name string, members []string) error {
	if !strings.HasPrefix(name, "group:") || len(name) == len("group:") {
		return errAt(c.keyAt("groups", name), "%q is not a group name: groups look like group:family", name)
	}
	for i, m := range members {
		at := c.at("groups", name, i)
		if u, ok := userName(m); ok {
			c.p.refs = append(c.p.refs, ref{user: true, name: u, pos: at})
			continue
		}
		if !validLabel(m) {
			return errAt(at, "group %s: member %q must be a user (alice@) or a node name", name, m)
		}
		c.p.refs = append(c.p.refs, ref{name: m, pos: at})
	}
	c.p.groups[name] = members
	return nil
}

// owner checks a tag owner or auto-approver: a user, a group or a tag.
func (c *compiler) owner(s string, at pos) (alias, error) {
	switch {
	case strings.HasPrefix(s, "group:"), strings.HasPrefix(s, "tag:"):
		return c.alias(s, at, false)
	}
	if u, ok := userName(s); ok {
		c.p.refs = append(c.p.refs, ref{user: true, name: u, pos: at})
		return alias{kind: kUser, name: u}, nil
	}
	return alias{}, errAt(at, "%q must be a user (alice@), a group or a tag", s)
}

func (c *compiler) acl(i int, a *aclEntry) error {
	if a.Action != "accept" {
		return errAt(c.at("acls", i, "action"), "acls[%d]: action %q: the only action is \"accept\" (whatever no rule accepts is denied)", i, a.Action)
	}
	if len(a.Src) == 0 || len(a.Dst) == 0 {
		return errAt(c.at("acls", i), "acls[%d] needs both src and dst", i)
	}
	r := rule{index: i}
	var err error
	if r.protos, err = parseProto(a.Proto); err != nil {
		return errAt(c.at("acls", i, "proto"), "acls[%d]: %v", i, err)
	}
	for j, s := range a.Src {
		al, err := c.alias(s, c.at("acls", i, "src", j), false)
		if err != nil {
			return err
		}
		r.src = append(r.src, al)
	}
	for j, s := range a.Dst {
		d, err := c.dst(s, c.at("acls", i, "dst", j), r.protos)
		if err != nil {
			return err
		}
		r.dst = append(r.dst, d)
	}
	c.p.rules = append(c.p.rules, r)
	return nil
}

func (c *compiler) dst(s string, at pos, protos []uint8) (dstAlias, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return dstAlias{}, errAt(at, "destination %q needs ports, such as %q or %q", s, s+":*", s+":22")
	}
	name, portSpec := strings.Trim(s[:i], "[]"), s[i+1:]
	ports, err := parsePorts(portSpec)
	if err != nil {
		return dstAlias{}, errAt(at, "destination %q: %v", s, err)
	}
	if len(protos) > 0 && !hasPorts(protos) && !(len(ports) == 1 && ports[0] == wire.AllPorts) {
		return dstAlias{}, errAt(at, "destination %q: the protocol has no ports; use %q", s, name+":*")
	}
	a, err := c.alias(name, at, true)
	if err != nil {
		return dstAlias{}, err
	}
	return dstAlias{alias: a, ports: ports}, nil
}

// alias resolves one src or dst name.
func (c *compiler) alias(s string, at pos, isDst bool) (alias, error) {
	switch {
	case s == "*":
		return alias{kind: kAny, nets: allNets}, nil
	case s == "autogroup:member":
		return alias{kind: kMember}, nil
	case s == "autogroup:tagged":
		return alias{kind: kTagged}, nil
	case s == "autogroup:internet":
		if !isDst {
			return alias{}, errAt(at, "autogroup:internet is only a destination (the exit node's internet)")
		}
		return alias{kind: kInternet, nets: internetNets}, nil
	case strings.HasPrefix(s, "autogroup:"):
		return alias{}, errAt(at, "unknown autogroup %q: weft knows autogroup:member, autogroup:tagged and autogroup:internet", s)
	case strings.HasPrefix(s, "group:"):
		members, ok := c.p.groups[s]
		if !ok {
			return alias{}, errAt(at, "unknown group %q: define it under \"groups\"", s)
		}
		a := alias{kind: kGroup, name: s}
		for _, m := range members {
			if u, ok := userName(m); ok {
				a.users = append(a.users, u)
			} else {
				a.nodes = append(a.nodes, m)
			}
		}
		return a, nil
	case strings.HasPrefix(s, "tag:"):
		if _, ok := c.p.tagOwners[s]; !ok {
			return alias{}, errAt(at, "unknown tag %q: define it under \"tagOwners\"", s)
		}
		return alias{kind: kTag, name: s}, nil
	}
	if u, ok := userName(s); ok {
		c.p.refs = append(c.p.refs, ref{user: true, name: u, pos: at})
		return alias{kind: kUser, name: u}, nil
	}
	if h, ok := c.p.hosts[s]; ok {
		return alias{kind: kPrefix, name: s, nets: []netip.Prefix{h}}, nil
	}
	if pfx, err := parseNet(s); err == nil {
		return alias{kind: kPrefix, nets: []netip.Prefix{pfx}}, nil
	} else if strings.ContainsAny(s, "/:") || looksNumeric(s) {
		return alias{}, errAt(at, "%q: %v", s, err)
	}
	if !validLabel(s) {
		return alias{}, errAt(at, "unknown name %q: not a user (alice@), group:, tag:, autogroup:, host, node, IP or CIDR", s)
	}
	c.p.refs = append(c.p.refs, ref{name: s, pos: at})
	return alias{kind: kNode, name: s}, nil
}

func (c *compiler) autoApprovers(a *autoApprovers) error {
	if a == nil {
		return nil
	}
	for i, s := range a.ExitNode {
		al, err := c.owner(s, c.at("autoApprovers", "exitNode", i))
		if err != nil {
			return err
		}
		c.p.exitNode = append(c.p.exitNode, al)
	}
	for _, k := range sortedKeys(a.Routes) {
		pfx, err := netip.ParsePrefix(k)
		if err == nil {
			err = tailnet.CheckRoute(pfx)
		}
		if err != nil {
			return errAt(c.keyAt("autoApprovers/routes", k), "autoApprovers.routes %q: %v", k, err)
		}
		ra := routeApprover{prefix: pfx}
		for i, s := range a.Routes[k] {
			al, err := c.owner(s, c.at("autoApprovers", "routes", k, i))
			if err != nil {
				return err
			}
			ra.approvers = append(ra.approvers, al)
		}
		c.p.routes = append(c.p.routes, ra)
	}
	return nil
}

func (c *compiler) test(i int, t *testEntry) error {
	at := c.at("tests", i)
	if t.Src == "" {
		return errAt(at, "tests[%d] needs a src", i)
	}
	src, err := c.alias(t.Src, c.at("tests", i, "src"), false)
	if err != nil {
		return err
	}
	tt := test{src: src, proto: wire.ProtoTCP, pos: at}
	if t.Proto != "" {
		ps, err := parseProto(t.Proto)
		if err != nil {
			return errAt(c.at("tests", i, "proto"), "tests[%d]: %v", i, err)
		}
		tt.proto = ps[0]
	}
	for _, l := range []struct {
		name string
		in   []string
		out  *[]dstAlias
	}{{"accept", t.Accept, &tt.accept}, {"deny", t.Deny, &tt.deny}} {
		for j, s := range l.in {
			d, err := c.dst(s, c.at("tests", i, l.name, j), []uint8{tt.proto})
			if err != nil {
				return err
			}
			*l.out = append(*l.out, d)
		}
	}
	c.p.tests = append(c.p.tests, tt)
	return nil
}

// parseNet reads an IP address (as a single-address prefix) or a CIDR.
func parseNet(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("not a CIDR prefix (such as 192.168.1.0/24)")
		}
		if p.Masked() != p {
			return netip.Prefix{}, fmt.Errorf("has host bits set; did you mean %v?", p.Masked())
		}
		return p, nil
	}
	ip, err := netip.ParseAddr(s)
	if err != nil || ip.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("not an IP address or CIDR prefix")
	}
	return netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()), nil
}

func looksNumeric(s string) bool {
	return s != "" && strings.Trim(s, "0123456789.") == ""
}

// parsePorts reads "*", "22", "80,443" or "1000-2000" (and lists of them).
func parsePorts(s string) ([]wire.PortRange, error) {
	if s == "*" {
		return []wire.PortRange{wire.AllPorts}, nil
	}
	var out []wire.PortRange
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err1 := strconv.ParseUint(lo, 10, 16)
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.ParseUint(hi, 10, 16)
		}
		if err1 != nil || err2 != nil || a > b {
			return nil, fmt.Errorf("ports %q: write *, a port (22), a list (80,443) or a range (1000-2000) of 0-65535", s)
		}
		out = append(out, wire.PortRange{First: uint16(a), Last: uint16(b)})
	}
	return out, nil
}

var protoNames = map[string]uint8{
	"icmp": wire.ProtoICMP, "igmp": 2, "tcp": wire.ProtoTCP, "egp": 8, "igp": 9, "udp": wire.ProtoUDP,
	"gre": 47, "esp": 50, "ah": 51, "ipv6-icmp": wire.ProtoICMPv6, "icmpv6": wire.ProtoICMPv6, "sctp": 132,
}

// parseProto reads a protocol name or number; "" means the default set
// (TCP, UDP, ICMP, ICMPv6), returned as nil.
func parseProto(s string) ([]uint8, error) {
	if s == "" {
		return nil, nil
	}
	if n, ok := protoNames[strings.ToLower(s)]; ok {
		return []uint8{n}, nil
	}
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil {
		return nil, fmt.Errorf("proto %q: use tcp, udp, icmp, ipv6-icmp, sctp, gre, esp, ah or a number 0-255", s)
	}
	return []uint8{uint8(n)}, nil
}

// hasPorts reports whether every protocol in protos has ports.
func hasPorts(protos []uint8) bool {
	for _, p := range protos {
		if p != wire.ProtoTCP && p != wire.ProtoUDP && p != 132 {
			return false
		}
	}
	return true
}

func validLabel(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && c == '-') {
			return false
		}
	}
	return true
}

func validTag(s string) bool {
	name, ok := strings.CutPrefix(s, "tag:")
	return ok && validLabel(name) && name[0] >= 'a' && name[0] <= 'z'
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
