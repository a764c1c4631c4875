package magicdns

import (
	"context"
	"encoding/binary"
	"testing"

	"github.com/miekg/dns"
)

// FuzzHandle feeds arbitrary bytes to the resolver (with local names and
// extra records, no upstream). It must never panic, every reply must parse
// and carry the query's ID, a message that does not parse gets no more
// bytes back than it had, and a UDP reply never exceeds 512 bytes (1232
// with EDNS0).
func FuzzHandle(f *testing.F) {
	for _, name := range []string{"mac.", "mac.weft.internal.", "2.0.64.100.in-addr.arpa.", "www.weft.internal.", "nobody.weft.internal.", "example.com."} {
		for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypePTR, dns.TypeANY, dns.TypeTXT} {
			q := new(dns.Msg)
			q.SetQuestion(name, qt)
			b, _ := q.Pack()
			f.Add(b, false)
			q.SetEdns0(4096, true)
			b, _ = q.Pack()
			f.Add(b, true)
		}
	}
	q := new(dns.Msg)
	q.SetQuestion("mac.", dns.TypeA)
	b, _ := q.Pack()
	f.Add(append(append([]byte(nil), b[:12]...), 0xc0, 12, 0, 1, 0, 1), false) // compression loop
	f.Add(b[:12], false)
	f.Fuzz(func(t *testing.T, in []byte, tcp bool) {
		r := New(Options{CacheSize: -1})
		r.SetConfig(testConfig())
		out := r.Handle(context.Background(), in, tcp)
		if out == nil {
			return
		}
		var reply dns.Msg
		if err := reply.Unpack(out); err != nil {
			t.Fatalf("reply does not parse: %v", err)
		}
		if len(in) < 2 || reply.Id != binary.BigEndian.Uint16(in) || !reply.Response {
			t.Fatalf("reply id %d, response %v", reply.Id, reply.Response)
		}
		var query dns.Msg
		if err := query.Unpack(in); err != nil {
			if len(out) > len(in) {
				t.Fatalf("%d-byte reply to a %d-byte message that does not parse", len(out), len(in))
			}
			return
		}
		if !tcp {
			limit := dns.MinMsgSize
			if query.IsEdns0() != nil {
				limit = maxUDPSize
			}
			if len(out) > limit {
				t.Fatalf("%d-byte UDP reply, limit %d", len(out), limit)
			}
		}
	})
}
