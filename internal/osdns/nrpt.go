package osdns

import (
	"crypto/sha256"
	"fmt"
	"strings"
)

// NRPT (the Windows Name Resolution Policy Table) sends the queries for a
// namespace to chosen DNS servers. weft writes one rule per tailnet domain
// under nrptKey; Windows' DNS client reads the rules from there. This file
// renders the rules without Windows calls, so it is tested on Linux.

// nrptKey is the local (not group-policy) NRPT in the registry, under
// HKEY_LOCAL_MACHINE. A group policy that sets NRPT rules of its own makes
// Windows ignore this key; docs/dns.md says so.
const nrptKey = `SYSTEM\CurrentControlSet\Services\Dnscache\Parameters\DnsPolicyConfig`

// nrptRule is one rule's registry values.
type nrptRule struct {
	Key     string   // the subkey name: a GUID in braces, as Windows' own tools name rules
	Name    []string // REG_MULTI_SZ: ".domain" matches the domain and every name below it; "." matches all
	Servers string   // REG_SZ GenericDNSServers: addresses separated by "; "
}

// nrptVersion and nrptConfigOptions are the fixed values of a rule that
// only names DNS servers (no DNSSEC, no DirectAccess).
const (
	nrptVersion       = 2
	nrptConfigOptions = 8 // "generic DNS servers"
)

// nrptKeyPrefix marks weft's rules: the GUID-shaped subkey names of
// weft's rules all start with it, so weft finds and removes only its own.
const nrptKeyPrefix = "{5746ee00-"

// nrptRules renders the rules cfg asks for: one rule with all of the
// tailnet's match domains (or, with cfg.All, one rule for every name).
func nrptRules(cfg Config) ([]nrptRule, error) {
	var servers []string
	for _, a := range cfg.Nameservers {
		servers = append(servers, a.String())
	}
	if len(servers) == 0 {
		return nil, nil
	}
	var names []string
	if cfg.All {
		names = []string{"."}
	} else {
		doms, err := resolverDomains(cfg)
		if err != nil {
			return nil, err
		}
		for _, d := range doms {
			names = append(names, "."+d)
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	return []nrptRule{{Key: nrptKeyName(names), Name: names, Servers: strings.Join(servers, "; ")}}, nil
}

// nrptKeyName is a GUID-shaped subkey name, stable for one set of names so
// that a rule that did not change keeps its key.
func nrptKeyName(names []string) string {
	h := sha256.Sum256([]byte(strings.Join(names, "\x00")))
	return fmt.Sprintf("%s%x-%x-%x-%x}", nrptKeyPrefix, h[0:2], h[2:4], h[4:6], h[6:12])
}

// isWeftNRPTKey reports whether a subkey of nrptKey is one of weft's.
func isWeftNRPTKey(name string) bool { return strings.HasPrefix(strings.ToLower(name), nrptKeyPrefix) }
