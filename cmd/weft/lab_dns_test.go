//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"weft/internal/localapi"
	"weft/internal/netlab"
	"weft/internal/netlab/labtest"
	"weft/internal/scenario"
)

// labDNSServer is a DNS server on a lab host's WAN address (port 53, UDP
// and TCP). It answers A for every name with addr and remembers, per name,
// the source addresses the queries came from.
type labDNSServer struct {
	addr netip.Addr
	mu   sync.Mutex
	seen map[string][]netip.Addr
}

func startLabDNS(t *testing.T, n *netlab.Node, answer netip.Addr) *labDNSServer {
	t.Helper()
	s := &labDNSServer{addr: answer, seen: map[string][]netip.Addr{}}
	at := net.JoinHostPort(n.WANAddr.String(), "53")
	pc, err := n.ListenPacket("udp", at)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := n.Listen("tcp", at)
	if err != nil {
		t.Fatal(err)
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		name := strings.ToLower(q.Question[0].Name)
		var src netip.Addr
		if ap, err := netip.ParseAddrPort(w.RemoteAddr().String()); err == nil {
			src = ap.Addr().Unmap()
		}
		s.mu.Lock()
		s.seen[name] = append(s.seen[name], src)
		s.mu.Unlock()
		m := new(dns.Msg)
		m.SetReply(q)
		if q.Question[0].Qtype == dns.TypeA {
			m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: answer.AsSlice()}}
		}
		w.WriteMsg(m)
	})
	us, ts := &dns.Server{PacketConn: pc, Handler: h}, &dns.Server{Listener: ln, Handler: h}
	go us.ActivateAndServe()
	go ts.ActivateAndServe()
	t.Cleanup(func() { us.Shutdown(); ts.Shutdown() })
	return s
}

func (s *labDNSServer) sources(name string) []netip.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]netip.Addr(nil), s.seen[dns.Fqdn(name)]...)
}

// guardHostResolvConf skips the test when the host has no
// /etc/resolv.conf, and otherwise fails it if the file has changed when
// the test's cleanups run. Call it before the lab comes up: cleanups run
// last first, so the check then runs after the lab is gone.
func guardHostResolvConf(t *testing.T) {
	t.Helper()
	hostConf, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		t.Skipf("the host has no /etc/resolv.conf to guard: %v", err)
	}
	t.Cleanup(func() {
		if now, _ := os.ReadFile("/etc/resolv.conf"); !bytes.Equal(now, hostConf) {
			t.Errorf("the host's /etc/resolv.conf changed: %q, was %q", now, hostConf)
		}
	})
}

// startDNSLab is the seed lab for the DNS tests, the host's
// /etc/resolv.conf guarded (guardHostResolvConf), with the lab's public
// DNS server on web answering every name with 198.51.100.7.
func startDNSLab(t *testing.T) (*netlab.Lab, *labDNSServer) {
	t.Helper()
	labtest.SkipUnlessRoot(t)
	guardHostResolvConf(t)
	lab := labtest.Seed(t)
	return lab, startLabDNS(t, lab.Node("web"), netip.MustParseAddr("198.51.100.7"))
}

// writePreWeftResolvConf gives host the resolv.conf it has before weft,
// naming the lab's public DNS server on web, and returns what it wrote.
func writePreWeftResolvConf(t *testing.T, lab *netlab.Lab, host string) []byte {
	t.Helper()
	p, err := lab.Node(host).ResolvConf()
	if err != nil {
		t.Fatal(err)
	}
	b := []byte(fmt.Sprintf("# %s before weft\nnameserver %s\noptions edns0\n", host, lab.Node("web").WANAddr))
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

// readResolvConf returns host's resolv.conf as it is now; nil if it
// cannot be read.
func readResolvConf(lab *netlab.Lab, host string) []byte {
	p, _ := lab.Node(host).ResolvConf()
	b, _ := os.ReadFile(p)
	return b
}

// TestLabMagicDNS runs the seed tailnet with MagicDNS: names, PTR and
// NXDOMAIN on busan over UDP and TCP, `ping mac` by name, a public name
// through the lab's DNS server (from busan's side with busan as exit
// node), split DNS, a settings change reaching running nodes, weft down
// and kill -9 restoring the node's resolv.conf byte for byte,
// --accept-dns=false leaving it alone, and the host's own /etc/resolv.conf
// untouched throughout.
func TestLabMagicDNS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	lab, public := startDNSLab(t)
	web, ctrl := lab.Node("web"), lab.Node("ctrl")
	corp := startLabDNS(t, ctrl, netip.MustParseAddr("198.51.100.8"))

	// Each node's resolv.conf before weft: the lab's public DNS server.
	original := map[string][]byte{}
	for _, h := range []string{"busan", "mac", "pc"} {
		original[h] = writePreWeftResolvConf(t, lab, h)
	}
	conf := func(h string) []byte { return readResolvConf(lab, h) }
	tn := labtest.StartTailnet(t, ctx, lab, scenario.Options{
		Hosts: []string{"busan", "mac", "pc"},
		UpArgs: func(host string) []string {
			switch host {
			case "busan":
				return []string{"--advertise-exit-node"}
			case "pc":
				return []string{"--accept-dns=false"}
			}
			return nil
		},
	})
	cli := func(host string, args ...string) string {
		t.Helper()
		out, err := tn.CLI(ctx, host, args...)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	status := func(host string) *localapi.Status {
		t.Helper()
		var st localapi.Status
		if err := json.Unmarshal([]byte(cli(host, "status", "--json")), &st); err != nil {
			t.Fatal(err)
		}
		return &st
	}
	awaitConf := func(host, what string, ok func([]byte) bool) {
		t.Helper()
		err := scenario.WaitFor(ctx, 20*time.Second, what, func() (bool, error) { return ok(conf(host)), nil })
		if err != nil {
			t.Fatalf("%v: %s's resolv.conf is %q", err, host, conf(host))
		}
	}
	isWefts := func(b []byte) bool {
		return bytes.Contains(b, []byte("nameserver 100.100.100.100\n")) && bytes.Contains(b, []byte("search weft.internal"))
	}
	awaitConf("busan", "busan's resolv.conf pointing at weft", isWefts)
	st := status("busan")
	var macV4, macV6 netip.Addr
	for _, p := range st.Peers {
		if p.Name == "mac" {
			if p.DNSName != "mac.weft.internal" {
				t.Fatalf("mac's dns_name = %q", p.DNSName)
			}
			for _, a := range p.Addresses {
				if a.Addr().Is4() {
					macV4 = a.Addr()
				} else {
					macV6 = a.Addr()
				}
			}
		}
	}
	if !macV4.IsValid() {
		t.Fatalf("no mac in busan's status: %+v", st.Peers)
	}

	t.Run("tailnet names on busan", func(t *testing.T) {
		for _, tt := range []struct {
			args []string
			want string
		}{
			{[]string{"mac"}, macV4.String()},
			{[]string{"mac.weft.internal"}, macV4.String()},
			{[]string{"--tcp", "MAC.weft.internal"}, macV4.String()},
			{[]string{"mac.weft.internal", "AAAA"}, macV6.String()},
			{[]string{"--tcp", "mac", "AAAA"}, macV6.String()},
			{[]string{macV4.String()}, "mac.weft.internal."},
			{[]string{macV6.String()}, "mac.weft.internal."},
		} {
			if got := cli("busan", append([]string{"dns", "query"}, tt.args...)...); got != tt.want {
				t.Errorf("dns query %v = %q, want %q", tt.args, got, tt.want)
			}
		}
		out, err := tn.CLI(ctx, "busan", "dns", "query", "nobody.weft.internal")
		if err == nil || !strings.Contains(string(out), "NXDOMAIN") {
			t.Errorf("unknown tailnet name: %q, %v; want NXDOMAIN", out, err)
		}
		if src := public.sources("nobody.weft.internal"); len(src) != 0 {
			t.Errorf("an unknown tailnet name went upstream from %v", src)
		}
		if out, err := lab.Node("busan").Exec(ctx, "ping", "-4", "-c", "1", "-W", "5", "mac"); err != nil || !strings.Contains(string(out), macV4.String()) {
			t.Errorf("ping mac by name: %v\n%s", err, out)
		}
	})

	t.Run("public name through the OS's former resolver", func(t *testing.T) {
		if got := cli("busan", "dns", "query", "www.example.com"); got != "198.51.100.7" {
			t.Fatalf("www.example.com = %q", got)
		}
		if src := public.sources("www.example.com"); len(src) != 1 || src[0] != lab.Node("r-busan").WANAddr {
			t.Fatalf("the lab DNS server saw the query from %v, want busan's router %v", src, lab.Node("r-busan").WANAddr)
		}
	})

	t.Run("accept-dns=false leaves pc alone", func(t *testing.T) {
		if got := conf("pc"); !bytes.Equal(got, original["pc"]) {
			t.Fatalf("pc's resolv.conf changed: %q", got)
		}
		if d := status("pc").DNS; d == nil || d.Mode != "off" || !d.MagicDNS {
			t.Fatalf("pc's DNS status: %+v", d)
		}
	})

	t.Run("settings change reaches running nodes", func(t *testing.T) {
		file := filepath.Join(lab.Dir(), "dns.hujson")
		os.WriteFile(file, []byte(fmt.Sprintf(`{
			// the lab's public DNS server, and corp.example on ctrl
			"nameservers": ["%s"],
			"split_dns": {"corp.example": ["%s"]},
			"search_domains": ["corp.example"],
		}`, web.WANAddr, ctrl.WANAddr)), 0o644)
		if _, err := tn.Admin(ctx, "dns", "set", file); err != nil {
			t.Fatal(err)
		}
		awaitConf("busan", "the new search domain on busan", func(b []byte) bool {
			return bytes.Contains(b, []byte("search weft.internal corp.example\n"))
		})
		if got := cli("busan", "dns", "query", "intra.corp.example"); got != "198.51.100.8" {
			t.Fatalf("split DNS: intra.corp.example = %q", got)
		}
		if len(corp.sources("intra.corp.example")) != 1 || len(public.sources("intra.corp.example")) != 0 {
			t.Fatalf("intra.corp.example reached corp %v and public %v", corp.sources("intra.corp.example"), public.sources("intra.corp.example"))
		}
	})

	t.Run("through the exit node", func(t *testing.T) {
		tn.Admin(ctx, "routes", "approve", "busan", "exit")
		before := cli("mac", "dns", "query", "before-exit.example.com")
		if src := public.sources("before-exit.example.com"); before != "198.51.100.7" || len(src) != 1 || src[0] != lab.Node("r-fukuoka").WANAddr {
			t.Fatalf("without exit node: %q from %v", before, src)
		}
		err := scenario.WaitFor(ctx, 30*time.Second, "mac using busan as exit node", func() (bool, error) {
			_, err := tn.CLI(ctx, "mac", "set", "--exit-node", "busan")
			return err == nil, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := cli("mac", "dns", "query", "via-exit.example.com"); got != "198.51.100.7" {
			t.Fatalf("via exit node: %q", got)
		}
		if src := public.sources("via-exit.example.com"); len(src) != 1 || src[0] != lab.Node("r-busan").WANAddr {
			t.Fatalf("with busan as exit node the query came from %v, want busan's side %v", src, lab.Node("r-busan").WANAddr)
		}
		cli("mac", "set", "--exit-node=")
	})

	t.Run("weft down restores byte for byte", func(t *testing.T) {
		cli("busan", "down")
		if got := conf("busan"); !bytes.Equal(got, original["busan"]) {
			t.Fatalf("after weft down: %q, want %q", got, original["busan"])
		}
		cli("busan", "up")
		awaitConf("busan", "busan's resolv.conf pointing at weft again", isWefts)
	})

	t.Run("kill -9 and restart", func(t *testing.T) {
		if err := tn.KillDaemon("busan"); err != nil {
			t.Fatal(err)
		}
		if got := conf("busan"); !isWefts(got) {
			t.Fatalf("after kill -9 the file is %q; the test expects weft's left behind", got)
		}
		if err := tn.StartDaemon(ctx, "busan"); err != nil {
			t.Fatal(err)
		}
		// The daemon restores the original at start, then (the node
		// was up) points the OS at its resolver again.
		awaitConf("busan", "busan back up with MagicDNS", isWefts)
		if got := cli("busan", "dns", "query", "mac"); got != macV4.String() {
			t.Fatalf("after restart: mac = %q", got)
		}
		cli("busan", "down")
		if got := conf("busan"); !bytes.Equal(got, original["busan"]) {
			t.Fatalf("after kill -9, restart and down: %q, want %q", got, original["busan"])
		}
	})

	t.Run("an overwrite is noticed and re-applied", func(t *testing.T) {
		cli("busan", "up")
		awaitConf("busan", "busan up with MagicDNS", isWefts)
		// A DHCP client rewrites the file behind weft's back.
		dhcp := []byte("# from dhcp\nnameserver 192.0.2.99\n")
		p, _ := lab.Node("busan").ResolvConf()
		if err := os.WriteFile(p, dhcp, 0o644); err != nil {
			t.Fatal(err)
		}
		awaitConf("busan", "weft's settings re-applied", isWefts)
		if h := cli("busan", "health"); !strings.Contains(h, "rewrote this machine's DNS configuration") {
			t.Fatalf("weft health does not mention the overwrite:\n%s", h)
		}
		if d := status("busan").DNS; d == nil || d.Overwritten.IsZero() {
			t.Fatalf("dns status: %+v", d)
		}
		// The other program's file is the one weft down puts back.
		cli("busan", "down")
		if got := conf("busan"); !bytes.Equal(got, dhcp) {
			t.Fatalf("after down: %q, want the DHCP client's %q", got, dhcp)
		}
	})
}
