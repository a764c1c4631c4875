// Package policytest holds the policy fixtures that the policy package's
// tests and the lab's ACL tests share.
package policytest

import _ "embed"

// SeedPolicy is the seed tailnet's policy: the Fukuoka machines (mac,
// pc) may reach busan:22 and use busan as exit node, and nothing else;
// busan's exit node is approved by the policy (alice's), not by an
// administrator. Its tests pass on the seed's nodes.
//
//go:embed seed.hujson
var SeedPolicy string
