// Package policy reads a tailnet's access policy (HuJSON, in the shape of
// Tailscale's policy files), checks it, and compiles it for each node into
// the packet filter that node enforces and the set of peers it may know
// about. The server is the only user of the policy itself; nodes see only
// their compiled filters (wire.PacketFilter). docs/acl.md describes the
// format and every way it differs from Tailscale's.
package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/tailscale/hujson"

	"weft/internal/wire"
)

// maxPolicySize bounds a policy file; a tailnet's real policy is a few KiB.
const maxPolicySize = 1 << 20

// file is the policy as written, field by field.
type file struct {
	Groups        map[string][]string `json:"groups"`
	TagOwners     map[string][]string `json:"tagOwners"`
	Hosts         map[string]string   `json:"hosts"`
	ACLs          []aclEntry          `json:"acls"`
	AutoApprovers *autoApprovers      `json:"autoApprovers"`
	Tests         []testEntry         `json:"tests"`
}

type aclEntry struct {
	Action string   `json:"action"`
	Src    []string `json:"src"`
	Dst    []string `json:"dst"`
	Proto  string   `json:"proto"`
}

type autoApprovers struct {
	Routes   map[string][]string `json:"routes"`
	ExitNode []string            `json:"exitNode"`
}

type testEntry struct {
	Src    string   `json:"src"`
	Proto  string   `json:"proto"`
	Accept []string `json:"accept"`
	Deny   []string `json:"deny"`
}

// Error is a mistake in a policy file, at a place in it.
type Error struct {
	Line, Column int // 1-based; 0 when the mistake has no one place
	Msg          string
}

func (e *Error) Error() string {
	if e.Line == 0 {
		return "policy: " + e.Msg
	}
	return fmt.Sprintf("policy: line %d, column %d: %s", e.Line, e.Column, e.Msg)
}

// Policy is a parsed policy whose references inside the file (groups,
// tags, hosts) are known to be defined. Users and node names are checked
// against the tailnet with Check. A Policy is not changed after Parse and
// is safe for concurrent use.
type Policy struct {
	src       []byte
	groups    map[string][]string // group -> members as written
	tagOwners map[string][]string
	hosts     map[string]netip.Prefix
	rules     []rule
	exitNode  []alias
	routes    []routeApprover
	tests     []test
	refs      []ref // users and nodes named, for Check
}

// rule is one compiled "accept" entry.
type rule struct {
	src    []alias
	dst    []dstAlias
	protos []uint8 // empty: TCP, UDP, ICMP, ICMPv6
	index  int
}

type dstAlias struct {
	alias
	ports []wire.PortRange
}

type routeApprover struct {
	prefix    netip.Prefix
	approvers []alias
}

type test struct {
	src    alias
	proto  uint8
	accept []dstAlias
	deny   []dstAlias
	pos    pos
}

// ref is a user or node name the file mentions, with its place.
type ref struct {
	user bool
	name string
	pos  pos
}

type pos struct{ line, col int }

// Source returns the policy file as it was given.
func (p *Policy) Source() []byte { return bytes.Clone(p.src) }

// Parse reads a HuJSON policy. Its errors are *Error values that give the
// line and column of the mistake.
func Parse(src []byte) (*Policy, error) {
	if len(src) > maxPolicySize {
		return nil, &Error{Msg: fmt.Sprintf("the file is %d bytes, limit %d", len(src), maxPolicySize)}
	}
	// hujson's Value shares the bytes it parsed, and Standardize blanks
	// comments in place: parse a copy, so the caller's file (which the
	// store keeps as the policy's source) keeps its comments.
	v, err := hujson.Parse(bytes.Clone(src))
	if err != nil {
		return nil, syntaxError(src, err)
	}
	v.Standardize() // keeps every byte offset
	std := v.Pack()
	dec := json.NewDecoder(bytes.NewReader(std))
	dec.DisallowUnknownFields()
	var f file
	if err := dec.Decode(&f); err != nil {
		return nil, decodeError(src, &v, err)
	}
	c := compiler{src: src, root: &v, p: &Policy{src: bytes.Clone(src)}}
	if err := c.compile(&f); err != nil {
		return nil, err
	}
	return c.p, nil
}

// syntaxError turns hujson's "line L, column C: msg" into an *Error.
func syntaxError(src []byte, err error) error {
	var line, col int
	msg := err.Error()
	if _, e := fmt.Sscanf(msg, "hujson: line %d, column %d:", &line, &col); e == nil {
		if i := strings.Index(msg, ": "); i >= 0 {
			if j := strings.Index(msg[i+2:], ": "); j >= 0 {
				msg = msg[i+2+j+2:]
			}
		}
		return &Error{Line: line, Column: col, Msg: msg}
	}
	return &Error{Msg: msg}
}

// decodeError places a JSON decoding error in the file.
func decodeError(src []byte, root *hujson.Value, err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		l, c := lineCol(src, int(se.Offset))
		return &Error{Line: l, Column: c, Msg: se.Error()}
	case errors.As(err, &te):
		off := int(te.Offset)
		if v := root.Find("/" + strings.ReplaceAll(te.Field, ".", "/")); v != nil && te.Field != "" {
			off = v.StartOffset
		}
		l, c := lineCol(src, off)
		where := te.Field
		if where == "" {
			where = "a value"
		}
		return &Error{Line: l, Column: c, Msg: fmt.Sprintf("%s must be %s, not %s", where, jsonKind(te.Type.Kind().String()), te.Value)}
	}
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		name = strings.Trim(name, `"`)
		l, c := findKey(src, root, name)
		return &Error{Line: l, Column: c, Msg: fmt.Sprintf("unknown field %q (see docs/acl.md for the fields weft reads)", name)}
	}
	return &Error{Msg: strings.TrimPrefix(msg, "json: ")}
}

func jsonKind(k string) string {
	switch k {
	case "slice":
		return "a list"
	case "map", "struct":
		return "an object"
	case "string":
		return "a string"
	}
	return k
}

// findKey returns the place of the first object member called name.
func findKey(src []byte, root *hujson.Value, name string) (int, int) {
	off := -1
	root.Range(func(v *hujson.Value) bool {
		if off >= 0 {
			return false
		}
		if obj, ok := v.Value.(*hujson.Object); ok {
			for _, m := range obj.Members {
				if lit, ok := m.Name.Value.(hujson.Literal); ok && lit.String() == name {
					off = m.Name.StartOffset
					return false
				}
			}
		}
		return true
	})
	if off < 0 {
		return 0, 0
	}
	return lineCol(src, off)
}

func lineCol(b []byte, n int) (int, int) {
	n = max(0, min(n, len(b)))
	line := 1 + bytes.Count(b[:n], []byte("\n"))
	col := 1 + n - (bytes.LastIndexByte(b[:n], '\n') + 1)
	return line, col
}

// WithGroups returns the policy with the group members the tailnet's
// identity provider gives: each group the file defines also holds every
// user whose provider groups (userGroups: user → group names as the
// provider spells them) include the group's name without "group:", as
// group:eng holds the users the provider puts in "eng". A group must
// still be defined in the file (an empty list is enough), so a typo in a
// rule is still an error. p is not changed; a nil p stays nil.
func (p *Policy) WithGroups(userGroups map[string][]string) *Policy {
	if p == nil {
		return nil
	}
	extra := map[string][]string{}
	for u, gs := range userGroups {
		for _, g := range gs {
			if name := "group:" + g; hasKey(p.groups, name) {
				extra[name] = append(extra[name], u)
			}
		}
	}
	if len(extra) == 0 {
		return p
	}
	fix := func(a alias) alias {
		if a.kind != kGroup || len(extra[a.name]) == 0 {
			return a
		}
		a.users = append(slices.Clone(a.users), extra[a.name]...)
		slices.Sort(a.users)
		a.users = slices.Compact(a.users)
		return a
	}
	fixAll := func(as []alias) []alias {
		out := make([]alias, len(as))
		for i, a := range as {
			out[i] = fix(a)
		}
		return out
	}
	fixDst := func(ds []dstAlias) []dstAlias {
		out := make([]dstAlias, len(ds))
		for i, d := range ds {
			out[i] = dstAlias{alias: fix(d.alias), ports: d.ports}
		}
		return out
	}
	q := *p
	q.rules = make([]rule, len(p.rules))
	for i, r := range p.rules {
		r.src, r.dst = fixAll(r.src), fixDst(r.dst)
		q.rules[i] = r
	}
	q.exitNode = fixAll(p.exitNode)
	q.routes = make([]routeApprover, len(p.routes))
	for i, r := range p.routes {
		q.routes[i] = routeApprover{prefix: r.prefix, approvers: fixAll(r.approvers)}
	}
	q.tests = make([]test, len(p.tests))
	for i, t := range p.tests {
		t.src, t.accept, t.deny = fix(t.src), fixDst(t.accept), fixDst(t.deny)
		q.tests[i] = t
	}
	return &q
}

func hasKey[V any](m map[string]V, k string) bool { _, ok := m[k]; return ok }
