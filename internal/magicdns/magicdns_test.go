package magicdns

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"weft/internal/tstest"
	"weft/internal/wire"
)

// upstream is a DNS server on loopback for the tests. It answers A for
// any name with 203.0.113.<n> (n counting queries), NXDOMAIN with a SOA
// for names starting "nx", many TXT records for names starting "big"
// (truncated over UDP, so the resolver must retry over TCP), and blocks
// names starting "slow" until release is closed.
type upstream struct {
	addr    netip.AddrPort
	queries atomic.Int32
	tcp     atomic.Int32
	release chan struct{}
	seen    chan string // names asked, if not nil
}

// listenUDPAndTCP opens a UDP and a TCP socket on one loopback port, as a
// DNS server has. The UDP port is the kernel's pick, which another test's
// TCP socket may hold: then it tries another.
func listenUDPAndTCP(t testing.TB) (net.PacketConn, net.Listener) {
	t.Helper()
	for range 50 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln
		}
		pc.Close()
		if !errors.Is(err, syscall.EADDRINUSE) {
			t.Fatal(err)
		}
	}
	t.Fatal("no loopback port free for both UDP and TCP after 50 tries")
	return nil, nil
}

func startUpstream(t testing.TB) *upstream {
	t.Helper()
	u := &upstream{release: make(chan struct{})}
	pc, ln := listenUDPAndTCP(t)
	u.addr = netip.MustParseAddrPort(pc.LocalAddr().String())
	h := dns.HandlerFunc(u.serve)
	us := &dns.Server{PacketConn: pc, Handler: h}
	ts := &dns.Server{Listener: ln, Handler: h}
	go us.ActivateAndServe()
	go ts.ActivateAndServe()
	t.Cleanup(func() {
		select {
		case <-u.release:
		default:
			close(u.release)
		}
		us.Shutdown()
		ts.Shutdown()
	})
	return u
}

func (u *upstream) serve(w dns.ResponseWriter, q *dns.Msg) {
	n := u.queries.Add(1)
	isTCP := w.RemoteAddr().Network() == "tcp"
	if isTCP {
		u.tcp.Add(1)
	}
	name := q.Question[0].Name
	if u.seen != nil {
		u.seen <- name
	}
	m := new(dns.Msg)
	m.SetReply(q)
	switch {
	case strings.HasPrefix(name, "nx"):
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: "example.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 300},
			Ns: "ns.example.", Mbox: "h.example.", Minttl: 30}}
	case strings.HasPrefix(name, "big"):
		for i := range 100 {
			m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60},
				Txt: []string{strings.Repeat("x", 40) + string(rune('a'+i%26))}})
		}
		if !isTCP {
			m.Truncate(dns.MinMsgSize)
		}
	case strings.HasPrefix(name, "slow"):
		<-u.release
		fallthrough
	default:
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 100},
			A: net.IPv4(203, 0, 113, byte(n))}}
	}
	w.WriteMsg(m)
}

var (
	macV4 = netip.MustParseAddr("100.64.0.2")
	macV6 = netip.MustParseAddr("fd12:3456:789a::6440:2")
)

func testConfig(ups ...netip.AddrPort) Config {
	return ConfigFor(&wire.DNSConfig{
		Domain: "weft.internal", MagicDNS: true, Nameservers: ups,
		ExtraRecords: []wire.DNSRecord{
			{Name: "db.weft.internal", Type: "A", Value: "100.64.0.9"},
			{Name: "www.weft.internal", Type: "CNAME", Value: "mac.weft.internal"},
			{Name: "note.example.com", Type: "TXT", Value: "hello"},
		},
	}, &wire.Node{Name: "busan", Addresses: []netip.Prefix{netip.MustParsePrefix("100.64.0.1/32")}},
		[]*wire.Node{{Name: "mac", Addresses: []netip.Prefix{netip.PrefixFrom(macV4, 32), netip.PrefixFrom(macV6, 128)}}}, nil)
}

// ask runs one query through Handle and returns the parsed reply.
func ask(t *testing.T, r *Resolver, name string, qtype uint16, tcp bool) *dns.Msg {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	b, _ := q.Pack()
	out := r.Handle(context.Background(), b, tcp)
	m := new(dns.Msg)
	if err := m.Unpack(out); err != nil {
		t.Fatalf("%s: reply does not parse: %v", name, err)
	}
	if m.Id != q.Id || !m.Response {
		t.Fatalf("%s: reply id %d response %v", name, m.Id, m.Response)
	}
	return m
}

func answers(m *dns.Msg) string {
	var out []string
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.AAAA.String())
		case *dns.PTR:
			out = append(out, rr.Ptr)
		case *dns.CNAME:
			out = append(out, rr.Target)
		case *dns.TXT:
			out = append(out, strings.Join(rr.Txt, ""))
		}
	}
	return dns.RcodeToString[m.Rcode] + " " + strings.Join(out, ",")
}

func TestLocalAnswers(t *testing.T) {
	u := startUpstream(t)
	r := New(Options{})
	r.SetConfig(testConfig(u.addr))
	for _, tt := range []struct {
		name  string
		qtype uint16
		want  string
	}{
		{"mac.", dns.TypeA, "NOERROR 100.64.0.2"},
		{"MAC.Weft.Internal.", dns.TypeA, "NOERROR 100.64.0.2"},
		{"mac.weft.internal.", dns.TypeAAAA, "NOERROR fd12:3456:789a::6440:2"},
		{"mac.weft.internal.", dns.TypeMX, "NOERROR "},
		{"busan.weft.internal.", dns.TypeA, "NOERROR 100.64.0.1"},
		{"nobody.weft.internal.", dns.TypeA, "NXDOMAIN "},
		{"a.mac.weft.internal.", dns.TypeA, "NXDOMAIN "},
		{"weft.internal.", dns.TypeA, "NOERROR "},
		{"2.0.64.100.in-addr.arpa.", dns.TypePTR, "NOERROR mac.weft.internal."},
		{mustReverse(macV6), dns.TypePTR, "NOERROR mac.weft.internal."},
		{mustReverse(netip.MustParseAddr("fd12:3456:789a::6440:99")), dns.TypePTR, "NXDOMAIN "},
		{"9.9.64.100.in-addr.arpa.", dns.TypePTR, "NXDOMAIN "},
		{"db.weft.internal.", dns.TypeA, "NOERROR 100.64.0.9"},
		{"www.weft.internal.", dns.TypeA, "NOERROR mac.weft.internal.,100.64.0.2"},
		{"note.example.com.", dns.TypeTXT, "NOERROR hello"},
	} {
		t.Run(tt.name+"/"+dns.TypeToString[tt.qtype], func(t *testing.T) {
			m := ask(t, r, tt.name, tt.qtype, false)
			if got := answers(m); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			if !m.Authoritative {
				t.Fatal("a local answer is not authoritative")
			}
		})
	}
	if n := u.queries.Load(); n != 0 {
		t.Fatalf("tailnet names reached the upstream %d times", n)
	}
}

func TestForwardAndCache(t *testing.T) {
	u := startUpstream(t)
	clk := tstest.NewClock(time.Unix(1000, 0))
	r := New(Options{Now: clk.Now})
	r.SetConfig(testConfig(u.addr))

	m := ask(t, r, "www.example.com.", dns.TypeA, false)
	if got := answers(m); got != "NOERROR 203.0.113.1" || m.Answer[0].Header().Ttl != 100 {
		t.Fatalf("forwarded: %q ttl %d", got, m.Answer[0].Header().Ttl)
	}
	clk.Advance(40 * time.Second)
	m = ask(t, r, "WWW.example.com.", dns.TypeA, false)
	if got := answers(m); got != "NOERROR 203.0.113.1" || m.Answer[0].Header().Ttl != 60 || u.queries.Load() != 1 {
		t.Fatalf("cached: %q ttl %d, upstream asked %d times", got, m.Answer[0].Header().Ttl, u.queries.Load())
	}
	clk.Advance(61 * time.Second)
	if got := answers(ask(t, r, "www.example.com.", dns.TypeA, false)); got != "NOERROR 203.0.113.2" {
		t.Fatalf("after the TTL: %q, want a new upstream answer", got)
	}

	// Negative caching: for the SOA's minimum (30 s), not its TTL.
	for range 2 {
		if got := answers(ask(t, r, "nx.example.com.", dns.TypeA, false)); got != "NXDOMAIN " {
			t.Fatalf("nx: %q", got)
		}
	}
	if n := u.queries.Load(); n != 3 {
		t.Fatalf("upstream asked %d times, want 3 (the NXDOMAIN cached)", n)
	}
	clk.Advance(31 * time.Second)
	ask(t, r, "nx.example.com.", dns.TypeA, false)
	if n := u.queries.Load(); n != 4 {
		t.Fatalf("upstream asked %d times, want 4 (the NXDOMAIN expired)", n)
	}
	s := r.Stats()
	if s.Forwarded != 4 || s.Cached != 2 {
		t.Fatalf("stats %+v", s)
	}
}

func TestSplitDNS(t *testing.T) {
	def, corp := startUpstream(t), startUpstream(t)
	r := New(Options{})
	c := testConfig(def.addr)
	c.Routes = map[string][]netip.AddrPort{"corp.example": {corp.addr}}
	r.SetConfig(c)
	ask(t, r, "intra.corp.example.", dns.TypeA, false)
	ask(t, r, "corp.example.", dns.TypeA, false)
	ask(t, r, "notcorp.example.", dns.TypeA, false)
	if def.queries.Load() != 1 || corp.queries.Load() != 2 {
		t.Fatalf("default upstream got %d, corp got %d; want 1 and 2", def.queries.Load(), corp.queries.Load())
	}
}

func TestTruncationAndTCP(t *testing.T) {
	u := startUpstream(t)
	r := New(Options{})
	r.SetConfig(testConfig(u.addr))
	// The upstream truncates over UDP: the resolver asks again over TCP
	// and so has all 100 records.
	full := ask(t, r, "big.example.com.", dns.TypeTXT, true)
	if len(full.Answer) != 100 || full.Truncated || u.tcp.Load() != 1 {
		t.Fatalf("over TCP: %d records, TC %v, upstream TCP queries %d", len(full.Answer), full.Truncated, u.tcp.Load())
	}
	// A UDP client without EDNS0 gets at most 512 bytes, with TC.
	q := new(dns.Msg)
	q.SetQuestion("big.example.com.", dns.TypeTXT)
	b, _ := q.Pack()
	out := r.Handle(context.Background(), b, false)
	m := new(dns.Msg)
	if err := m.Unpack(out); err != nil || len(out) > 512 || !m.Truncated {
		t.Fatalf("UDP reply %d bytes, TC %v, %v", len(out), m.Truncated, err)
	}
	// With EDNS0 4096 it gets at most 1232.
	q.SetEdns0(4096, false)
	b, _ = q.Pack()
	out = r.Handle(context.Background(), b, false)
	if err := m.Unpack(out); err != nil || len(out) > maxUDPSize || len(out) <= 512 || !m.Truncated || m.IsEdns0() == nil {
		t.Fatalf("EDNS0 UDP reply %d bytes, TC %v, OPT %v, %v", len(out), m.Truncated, m.IsEdns0(), err)
	}
}

func TestInflightBound(t *testing.T) {
	u := startUpstream(t)
	r := New(Options{MaxInflight: 1})
	r.SetConfig(testConfig(u.addr))
	done := make(chan *dns.Msg)
	go func() { done <- ask(t, r, "slow.example.com.", dns.TypeA, false) }()
	for u.queries.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	// The one slot is taken: the next query fails at once.
	if got := answers(ask(t, r, "other.example.com.", dns.TypeA, false)); got != "SERVFAIL " {
		t.Fatalf("second query while one is in flight: %q", got)
	}
	close(u.release)
	if got := answers(<-done); got != "NOERROR 203.0.113.1" {
		t.Fatalf("slow query: %q", got)
	}
	if got := answers(ask(t, r, "other.example.com.", dns.TypeA, false)); got != "NOERROR 203.0.113.2" {
		t.Fatalf("after the slot freed: %q", got)
	}
}

func TestNoUpstream(t *testing.T) {
	r := New(Options{})
	r.SetConfig(testConfig())
	if got := answers(ask(t, r, "www.example.com.", dns.TypeA, false)); got != "SERVFAIL " {
		t.Fatalf("no upstream: %q", got)
	}
	if got := answers(ask(t, r, "mac.", dns.TypeA, false)); got != "NOERROR 100.64.0.2" {
		t.Fatalf("tailnet name without upstream: %q", got)
	}
}

func TestMalformed(t *testing.T) {
	r := New(Options{})
	r.SetConfig(testConfig())
	q := new(dns.Msg)
	q.SetQuestion("mac.", dns.TypeA)
	good, _ := q.Pack()
	resp := append([]byte(nil), good...)
	resp[2] |= 0x80
	two := new(dns.Msg)
	two.Question = []dns.Question{{Name: "a.", Qtype: 1, Qclass: 1}, {Name: "b.", Qtype: 1, Qclass: 1}}
	twoB, _ := two.Pack()
	// A name whose compression pointer points at itself.
	loop := append(append([]byte(nil), good[:12]...), 0xc0, 12, 0, 1, 0, 1)
	for _, tt := range []struct {
		name  string
		in    []byte
		rcode int // -1: no reply
	}{
		{"empty", nil, -1},
		{"short", good[:5], -1},
		{"header only, claims a question", good[:12], dns.RcodeFormatError},
		{"cut in the question", good[:len(good)-2], dns.RcodeFormatError},
		{"compression loop", loop, dns.RcodeFormatError},
		{"a response", resp, -1},
		{"two questions", twoB, dns.RcodeFormatError},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out := r.Handle(context.Background(), tt.in, false)
			if tt.rcode < 0 {
				if out != nil {
					t.Fatalf("replied %x", out)
				}
				return
			}
			m := new(dns.Msg)
			if err := m.Unpack(out); err != nil || m.Rcode != tt.rcode || len(out) > max(len(tt.in), 12) {
				t.Fatalf("reply %x (%v), rcode %d, want %d and at most %d bytes", out, err, m.Rcode, tt.rcode, len(tt.in))
			}
		})
	}
}

// TestServe runs the resolver on loopback sockets, over UDP and TCP, and
// checks that the allow function keeps other sources out.
func TestServe(t *testing.T) {
	r := New(Options{})
	r.SetConfig(testConfig())
	pc, ln := listenUDPAndTCP(t)
	ctx, cancel := context.WithCancel(context.Background())
	var allowed atomic.Bool
	allowed.Store(true)
	allow := func(netip.Addr) bool { return allowed.Load() }
	errc := make(chan error, 2)
	go func() { errc <- r.Serve(ctx, pc, allow) }()
	go func() { errc <- r.ServeTCP(ctx, ln, allow) }()
	defer func() {
		cancel()
		for range 2 {
			if err := <-errc; err != nil {
				t.Error(err)
			}
		}
		pc.Close()
		ln.Close()
	}()
	for _, network := range []string{"udp", "tcp"} {
		c := &dns.Client{Net: network, Timeout: 5 * time.Second}
		q := new(dns.Msg)
		q.SetQuestion("mac.weft.internal.", dns.TypeA)
		m, _, err := c.Exchange(q, pc.LocalAddr().String())
		if err != nil || answers(m) != "NOERROR 100.64.0.2" {
			t.Fatalf("%s: %v %v", network, m, err)
		}
	}
	allowed.Store(false)
	c := &dns.Client{Net: "udp", Timeout: 300 * time.Millisecond}
	q := new(dns.Msg)
	q.SetQuestion("mac.weft.internal.", dns.TypeA)
	if m, _, err := c.Exchange(q, pc.LocalAddr().String()); err == nil {
		t.Fatalf("a source not allowed got %v", m)
	}
}

func mustReverse(a netip.Addr) string {
	s, err := dns.ReverseAddr(a.String())
	if err != nil {
		panic(err)
	}
	return s
}

// TestLookupLocal: what the userspace proxies get for a name, without a
// query on the wire.
func TestLookupLocal(t *testing.T) {
	r := New(Options{})
	r.SetConfig(testConfig())
	for _, tt := range []struct {
		name string
		want string // addresses, or "-" for not the tailnet's
	}{
		{"mac", "100.64.0.2 fd12:3456:789a::6440:2"},
		{"MAC.weft.internal.", "100.64.0.2 fd12:3456:789a::6440:2"},
		{"busan.weft.internal", "100.64.0.1"},
		{"db.weft.internal", "100.64.0.9"},
		{"www.weft.internal", "100.64.0.2 fd12:3456:789a::6440:2"}, // CNAME to mac
		{"nobody.weft.internal", ""},
		{"example.com", "-"},
		{"note.example.com", ""}, // a TXT record only
		{"mac.example.com", "-"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addrs, ok := r.LookupLocal(tt.name)
			got := "-"
			if ok {
				var s []string
				for _, a := range addrs {
					s = append(s, a.String())
				}
				got = strings.Join(s, " ")
			}
			if got != tt.want {
				t.Fatalf("LookupLocal(%q) = %q, want %q", tt.name, got, tt.want)
			}
		})
	}
	if s := r.Stats(); s.Queries != 0 || s.Forwarded != 0 {
		t.Errorf("LookupLocal counted as queries: %+v", s)
	}
	r.SetConfig(Config{})
	if _, ok := r.LookupLocal("mac"); ok {
		t.Error("with MagicDNS off (an empty config) mac is still the tailnet's")
	}
}
