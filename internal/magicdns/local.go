package magicdns

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"weft/internal/tailnet"
	"weft/internal/wire"
)

// compiled is a Config indexed for answering; it is never modified after
// compile, so Handle reads it without a lock.
type compiled struct {
	src    Config
	domain string
	hosts  map[string][]netip.Addr
	byAddr map[netip.Addr]string // tailnet address → "name.domain."
	extra  map[string][]dns.RR   // canonical name → records
	routes []route               // longest suffix first
	ula    netip.Prefix          // the tailnet's IPv6 /48, if any node has an IPv6 address
	ups    []netip.AddrPort
}

type route struct {
	suffix  string
	servers []netip.AddrPort
}

func compile(c Config) *compiled {
	n := &compiled{
		src:    c,
		domain: c.Domain,
		hosts:  map[string][]netip.Addr{},
		byAddr: map[netip.Addr]string{},
		extra:  map[string][]dns.RR{},
		ups:    c.Upstreams,
	}
	for name, addrs := range c.Hosts {
		name = canonical(name)
		n.hosts[name] = addrs
		for _, a := range addrs {
			n.byAddr[a] = dns.Fqdn(joinName(name, c.Domain))
			if a.Is6() && !n.ula.IsValid() {
				n.ula = netip.PrefixFrom(a, 48).Masked()
			}
		}
	}
	for _, rec := range c.ExtraRecords {
		if rr := recordRR(rec); rr != nil {
			name := canonical(rec.Name)
			n.extra[name] = append(n.extra[name], rr)
		}
	}
	for suffix, servers := range c.Routes {
		n.routes = append(n.routes, route{canonical(suffix), servers})
	}
	slices.SortFunc(n.routes, func(a, b route) int {
		return cmp.Or(cmp.Compare(len(b.suffix), len(a.suffix)), cmp.Compare(a.suffix, b.suffix))
	})
	return n
}

func joinName(label, domain string) string {
	if domain == "" {
		return label
	}
	return label + "." + domain
}

// sameForwarding reports whether a and b send the same names to the same
// servers, so cached answers stay valid.
func sameForwarding(a, b *compiled) bool {
	return slices.Equal(a.ups, b.ups) && slices.EqualFunc(a.routes, b.routes, func(x, y route) bool {
		return x.suffix == y.suffix && slices.Equal(x.servers, y.servers)
	})
}

// recordRR turns a validated extra record into a resource record; nil if
// it does not convert (dnsconf already refused such records).
func recordRR(r wire.DNSRecord) dns.RR {
	hdr := dns.RR_Header{Name: dns.Fqdn(canonical(r.Name)), Class: dns.ClassINET, Ttl: localTTL}
	switch r.Type {
	case "A", "AAAA":
		a, err := netip.ParseAddr(r.Value)
		if err != nil {
			return nil
		}
		return addrRR(hdr, a)
	case "CNAME":
		hdr.Rrtype = dns.TypeCNAME
		return &dns.CNAME{Hdr: hdr, Target: dns.Fqdn(canonical(r.Value))}
	case "TXT":
		hdr.Rrtype = dns.TypeTXT
		return &dns.TXT{Hdr: hdr, Txt: []string{r.Value}}
	}
	return nil
}

func addrRR(hdr dns.RR_Header, a netip.Addr) dns.RR {
	if a.Is4() {
		hdr.Rrtype = dns.TypeA
		return &dns.A{Hdr: hdr, A: a.AsSlice()}
	}
	hdr.Rrtype = dns.TypeAAAA
	return &dns.AAAA{Hdr: hdr, AAAA: a.AsSlice()}
}

// host returns the node a query name means: "busan" or "busan.<domain>".
func (c *compiled) host(name string) ([]netip.Addr, bool) {
	label := name
	if c.domain != "" {
		if l, ok := strings.CutSuffix(name, "."+c.domain); ok {
			label = l
		}
	}
	if strings.Contains(label, ".") {
		return nil, false
	}
	addrs, ok := c.hosts[label]
	return addrs, ok
}

// inDomain reports whether name is the tailnet domain or under it.
func (c *compiled) inDomain(name string) bool {
	return c.domain != "" && (name == c.domain || strings.HasSuffix(name, "."+c.domain))
}

// local answers q from the tailnet's own names, or returns nil when the
// name is not the resolver's to answer and must be forwarded.
func (c *compiled) local(q *dns.Msg, name string, qtype uint16) *dns.Msg {
	if rrs, ok := c.extra[name]; ok {
		return c.extraAnswer(q, name, qtype, rrs)
	}
	if addrs, ok := c.host(name); ok {
		m := authoritative(q, dns.RcodeSuccess)
		for _, a := range addrs {
			if (qtype == dns.TypeA && a.Is4()) || (qtype == dns.TypeAAAA && a.Is6()) || qtype == dns.TypeANY {
				m.Answer = append(m.Answer, addrRR(dns.RR_Header{Name: q.Question[0].Name, Class: dns.ClassINET, Ttl: localTTL}, a))
			}
		}
		return m
	}
	if c.inDomain(name) {
		if name == c.domain {
			return authoritative(q, dns.RcodeSuccess)
		}
		return authoritative(q, dns.RcodeNameError)
	}
	if a, ok := reverseAddr(name); ok {
		if fqdn, ok := c.byAddr[a]; ok {
			m := authoritative(q, dns.RcodeSuccess)
			if qtype == dns.TypePTR || qtype == dns.TypeANY {
				m.Answer = append(m.Answer, &dns.PTR{
					Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: localTTL},
					Ptr: fqdn,
				})
			}
			return m
		}
		// Tailnet addresses are nobody else's to name: an upstream
		// would only leak which addresses this node asks about.
		if tailnet.V4Range.Contains(a) || (c.ula.IsValid() && c.ula.Contains(a)) {
			return authoritative(q, dns.RcodeNameError)
		}
	}
	return nil
}

// extraAnswer answers from the extra records of one name, following a
// CNAME to another local name once.
func (c *compiled) extraAnswer(q *dns.Msg, name string, qtype uint16, rrs []dns.RR) *dns.Msg {
	m := authoritative(q, dns.RcodeSuccess)
	for _, rr := range rrs {
		t := rr.Header().Rrtype
		if t == qtype || qtype == dns.TypeANY || t == dns.TypeCNAME {
			m.Answer = append(m.Answer, dns.Copy(rr))
		}
		if cn, ok := rr.(*dns.CNAME); ok && qtype != dns.TypeCNAME {
			target := canonical(cn.Target)
			if addrs, ok := c.host(target); ok {
				for _, a := range addrs {
					if (qtype == dns.TypeA && a.Is4()) || (qtype == dns.TypeAAAA && a.Is6()) {
						m.Answer = append(m.Answer, addrRR(dns.RR_Header{Name: cn.Target, Class: dns.ClassINET, Ttl: localTTL}, a))
					}
				}
			} else if more, ok := c.extra[target]; ok && target != name {
				for _, rr2 := range more {
					if rr2.Header().Rrtype == qtype {
						m.Answer = append(m.Answer, dns.Copy(rr2))
					}
				}
			}
		}
	}
	return m
}

func authoritative(q *dns.Msg, rcode int) *dns.Msg {
	m := new(dns.Msg)
	m.SetRcode(q, rcode)
	m.Authoritative = true
	return m
}

// reverseAddr parses a reverse-lookup name ("1.0.64.100.in-addr.arpa",
// or 32 nibbles under "ip6.arpa").
func reverseAddr(name string) (netip.Addr, bool) {
	if rest, ok := strings.CutSuffix(name, ".in-addr.arpa"); ok {
		parts := strings.Split(rest, ".")
		if len(parts) != 4 {
			return netip.Addr{}, false
		}
		slices.Reverse(parts)
		a, err := netip.ParseAddr(strings.Join(parts, "."))
		return a, err == nil && a.Is4()
	}
	if rest, ok := strings.CutSuffix(name, ".ip6.arpa"); ok {
		nibbles := strings.Split(rest, ".")
		if len(nibbles) != 32 {
			return netip.Addr{}, false
		}
		var b [16]byte
		for i, n := range nibbles {
			if len(n) != 1 {
				return netip.Addr{}, false
			}
			v := strings.IndexByte("0123456789abcdef", n[0])
			if v < 0 {
				return netip.Addr{}, false
			}
			pos := 31 - i
			if pos%2 == 0 {
				b[pos/2] |= byte(v) << 4
			} else {
				b[pos/2] |= byte(v)
			}
		}
		return netip.AddrFrom16(b), true
	}
	return netip.Addr{}, false
}
