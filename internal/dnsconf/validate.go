package dnsconf

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"weft/internal/tailnet"
	"weft/internal/wire"
)

// Config validates s and returns what nodes receive: names lower case and
// without a trailing dot, nameservers with ports, records checked against
// their types.
func (s *Settings) Config() (wire.DNSConfig, error) {
	cfg := Default()
	if s.Domain != "" {
		d, err := CanonicalName(s.Domain)
		if err != nil {
			return cfg, bad("/domain", "domain: %v", err)
		}
		if !strings.Contains(d, ".") {
			return cfg, bad("/domain", "domain %q must have at least two labels (like weft.internal), or it could shadow a top-level domain", s.Domain)
		}
		cfg.Domain = d
	}
	if s.MagicDNS != nil {
		cfg.MagicDNS = *s.MagicDNS
	}
	cfg.OverrideLocalDNS = s.OverrideLocalDNS
	var err error
	if len(s.Nameservers) > maxNameservers {
		return cfg, bad("/nameservers", "%d nameservers, limit %d", len(s.Nameservers), maxNameservers)
	}
	if cfg.Nameservers, err = nameservers("/nameservers", s.Nameservers); err != nil {
		return cfg, err
	}
	if cfg.Routes, err = s.routes(cfg.Domain); err != nil {
		return cfg, err
	}
	if len(s.SearchDomains) > maxSearchDomains {
		return cfg, bad("/search_domains", "%d search domains, limit %d", len(s.SearchDomains), maxSearchDomains)
	}
	for i, d := range s.SearchDomains {
		c, err := CanonicalName(d)
		if err != nil {
			return cfg, bad(fmt.Sprintf("/search_domains/%d", i), "search domain: %v", err)
		}
		cfg.SearchDomains = append(cfg.SearchDomains, c)
	}
	if len(s.ExtraRecords) > maxExtraRecords {
		return cfg, bad("/extra_records", "%d extra records, limit %d", len(s.ExtraRecords), maxExtraRecords)
	}
	for i, r := range s.ExtraRecords {
		w, err := r.wire()
		if err != nil {
			return cfg, bad(fmt.Sprintf("/extra_records/%d", i), "extra record %d: %v", i+1, err)
		}
		cfg.ExtraRecords = append(cfg.ExtraRecords, w)
	}
	return cfg, nil
}

func (s *Settings) routes(domain string) (map[string][]netip.AddrPort, error) {
	if len(s.SplitDNS) > maxRoutes {
		return nil, bad("/split_dns", "%d split-DNS routes, limit %d", len(s.SplitDNS), maxRoutes)
	}
	if len(s.SplitDNS) == 0 {
		return nil, nil
	}
	out := make(map[string][]netip.AddrPort, len(s.SplitDNS))
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range s.SplitDNS {
			if !yield(k) {
				return
			}
		}
	})
	for _, suffix := range keys {
		ptr := "/split_dns/" + escape(suffix)
		c, err := CanonicalName(suffix)
		if err != nil {
			return nil, bad(ptr, "split-DNS suffix: %v", err)
		}
		if InDomain(c, domain) {
			return nil, bad(ptr, "split-DNS suffix %q is under the tailnet domain %q, which every node answers itself", suffix, domain)
		}
		list := s.SplitDNS[suffix]
		if len(list) == 0 || len(list) > maxNameservers {
			return nil, bad(ptr, "split-DNS route %q needs 1 to %d nameservers", suffix, maxNameservers)
		}
		ns, err := nameservers(ptr, list)
		if err != nil {
			return nil, err
		}
		if _, dup := out[c]; dup {
			return nil, bad(ptr, "split-DNS suffix %q is given twice", c)
		}
		out[c] = ns
	}
	return out, nil
}

// nameservers parses "IP" or "IP:port" entries.
func nameservers(ptr string, in []string) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	for i, s := range in {
		ap, err := ParseNameserver(s)
		if err != nil {
			return nil, bad(fmt.Sprintf("%s/%d", ptr, i), "%v", err)
		}
		out = append(out, ap)
	}
	return out, nil
}

// ParseNameserver parses "IP" (port 53) or "IP:port" ("[IPv6]:port").
func ParseNameserver(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		a, err2 := netip.ParseAddr(s)
		if err2 != nil {
			return netip.AddrPort{}, fmt.Errorf("nameserver %q is not an IP address or IP:port", s)
		}
		ap = netip.AddrPortFrom(a, 53)
	}
	if ap.Port() == 0 || ap.Addr().Zone() != "" || ap.Addr().IsUnspecified() {
		return netip.AddrPort{}, fmt.Errorf("nameserver %q is not a usable address", s)
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if ap.Addr() == tailnet.ResolverV4 { // the node would forward to itself
		return netip.AddrPort{}, fmt.Errorf("nameserver %q is weft's own resolver; name the servers it should forward to", s)
	}
	return ap, nil
}

// wire checks a record against its type.
func (r Record) wire() (wire.DNSRecord, error) {
	name, err := CanonicalName(r.Name)
	if err != nil {
		return wire.DNSRecord{}, fmt.Errorf("name: %v", err)
	}
	typ := strings.ToUpper(r.Type)
	val := r.Value
	switch typ {
	case "A", "AAAA":
		a, err := netip.ParseAddr(val)
		if err != nil || a.Zone() != "" || a.Is4() != (typ == "A") {
			return wire.DNSRecord{}, fmt.Errorf("value %q is not an IPv%s address", val, map[bool]string{true: "4", false: "6"}[typ == "A"])
		}
		val = a.String()
	case "CNAME":
		if val, err = CanonicalName(val); err != nil {
			return wire.DNSRecord{}, fmt.Errorf("CNAME target: %v", err)
		}
	case "TXT":
		if len(val) > maxTXT {
			return wire.DNSRecord{}, fmt.Errorf("TXT value is %d bytes, limit %d", len(val), maxTXT)
		}
	default:
		return wire.DNSRecord{}, fmt.Errorf("type %q is not one of A, AAAA, CNAME, TXT", r.Type)
	}
	return wire.DNSRecord{Name: name, Type: typ, Value: val}, nil
}

// CanonicalName checks a domain name and returns it lower case without a
// trailing dot: labels of 1 to 63 letters, digits, '-' and '_' (no '-' at
// either end), at most 253 bytes.
func CanonicalName(s string) (string, error) {
	n := strings.ToLower(strings.TrimSuffix(s, "."))
	if n == "" || len(n) > 253 {
		return "", fmt.Errorf("%q is not a domain name (1 to 253 characters)", s)
	}
	for label := range strings.SplitSeq(n, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("%q is not a domain name: each label is 1 to 63 characters, not starting or ending with '-'", s)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("%q is not a domain name: %s holds %s", s, strconv.Quote(label), strconv.QuoteRune(rune(c)))
			}
		}
	}
	return n, nil
}

// InDomain reports whether the canonical name is domain or under it.
func InDomain(name, domain string) bool {
	return name == domain || strings.HasSuffix(name, "."+domain)
}
