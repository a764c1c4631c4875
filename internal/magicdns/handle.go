package magicdns

import (
	"context"
	"net/netip"

	"github.com/miekg/dns"
)

// Handle answers one query: query is the DNS message as received (over
// TCP, without its length prefix), tcp says how it came. It returns the
// reply to send, or nil to send nothing (a message that is itself a reply,
// or too short to hold a header).
func (r *Resolver) Handle(ctx context.Context, query []byte, tcp bool) []byte {
	r.count(func(s *Stats) { s.Queries++ })
	var q dns.Msg
	if err := q.Unpack(query); err != nil {
		r.count(func(s *Stats) { s.Malformed++ })
		return formErr(query)
	}
	if q.Response {
		return nil // never answer answers: two resolvers could loop
	}
	// A question cut short parses with class 0 (reserved): malformed too.
	if q.Opcode != dns.OpcodeQuery || len(q.Question) != 1 || q.Question[0].Qclass == 0 || len(q.Answer) > 0 || len(q.Ns) > 0 {
		m := new(dns.Msg)
		m.Id, m.Response, m.Opcode = q.Id, true, q.Opcode
		m.Rcode = dns.RcodeFormatError
		if q.Opcode != dns.OpcodeQuery {
			m.Rcode = dns.RcodeNotImplemented
		}
		return pack(m, nil)
	}
	resp := r.answer(ctx, &q)
	return r.finish(&q, resp, tcp)
}

// formErr is the reply to a message that does not parse: its ID, the
// response bit and FORMERR, nothing else (12 bytes, never more than the
// query). A message with the response bit set gets nothing.
func formErr(query []byte) []byte {
	if len(query) < 12 || query[2]&0x80 != 0 {
		return nil
	}
	out := make([]byte, 12)
	copy(out, query[:2])
	out[2] = 0x80 | query[2]&0x78 // QR, the query's opcode
	out[3] = dns.RcodeFormatError
	return out
}

func (r *Resolver) answer(ctx context.Context, q *dns.Msg) *dns.Msg {
	qq := q.Question[0]
	name := canonical(qq.Name)
	c := r.cfg.Load()
	if qq.Qclass == dns.ClassINET {
		if m := c.local(q, name, qq.Qtype); m != nil {
			r.count(func(s *Stats) { s.Local++ })
			return m
		}
	}
	return r.forward(ctx, q, c, name)
}

// finish fits the reply to the query: same ID and question, EDNS0 when
// the client spoke it, and on UDP no larger than the client can take (the
// rest dropped and TC set, so the client asks again over TCP).
func (r *Resolver) finish(q, m *dns.Msg, tcp bool) []byte {
	m.Id = q.Id
	m.Response = true
	m.Opcode = q.Opcode
	m.RecursionDesired = q.RecursionDesired
	m.RecursionAvailable = true
	m.Question = q.Question
	m.Compress = true
	// Options from upstream (cookies, padding) are for the hop that
	// asked them, not for this client.
	var extra []dns.RR
	for _, rr := range m.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			extra = append(extra, rr)
		}
	}
	m.Extra = extra
	size := dns.MinMsgSize
	if opt := q.IsEdns0(); opt != nil {
		m.SetEdns0(maxUDPSize, opt.Do())
		size = max(size, min(int(opt.UDPSize()), maxUDPSize))
	}
	if tcp {
		size = dns.MaxMsgSize
	}
	m.Truncate(size)
	return pack(m, q)
}

// pack encodes m; if that fails it encodes a bare SERVFAIL for q.
func pack(m, q *dns.Msg) []byte {
	b, err := m.Pack()
	if err == nil {
		return b
	}
	f := new(dns.Msg)
	f.Id, f.Response, f.Rcode = m.Id, true, dns.RcodeServerFailure
	if q != nil {
		f.Question = q.Question
	}
	b, _ = f.Pack()
	return b
}

// servfail is the reply when no answer could be had.
func servfail(q *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetRcode(q, dns.RcodeServerFailure)
	return m
}

// LookupLocal resolves name (a node's name, "node.<domain>", or an extra
// record's name, with or without a trailing dot) to addresses from the
// tailnet's own names and records, A then AAAA, following a CNAME to a
// tailnet name. ok is false when the name is not the tailnet's to answer,
// so the caller resolves it elsewhere; an unknown name under the tailnet
// domain gives ok true and no addresses (NXDOMAIN). It is how the
// userspace proxies resolve MagicDNS names without a resolver listening.
func (r *Resolver) LookupLocal(name string) (addrs []netip.Addr, ok bool) {
	c := r.cfg.Load()
	cname := canonical(name)
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		q := new(dns.Msg)
		q.SetQuestion(dns.Fqdn(cname), qtype)
		m := c.local(q, cname, qtype)
		if m == nil {
			return nil, false
		}
		for _, rr := range m.Answer {
			switch rr := rr.(type) {
			case *dns.A:
				if a, ok := netip.AddrFromSlice(rr.A); ok {
					addrs = append(addrs, a.Unmap())
				}
			case *dns.AAAA:
				if a, ok := netip.AddrFromSlice(rr.AAAA); ok {
					addrs = append(addrs, a)
				}
			}
		}
	}
	return addrs, true
}
