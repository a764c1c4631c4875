//go:build linux

package agent_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"weft/internal/localapi"
	"weft/internal/netlab"
	"weft/internal/netlab/labtest"
)

// benchBytes is what each stream sends per measurement.
const benchBytes = 128 << 20

// routerNFT opens nftables in router's namespace; call done when
// finished with the connection.
func routerNFT(lab *netlab.Lab, router string) (c *nftables.Conn, done func(), err error) {
	ns, err := netns.GetFromPath(filepath.Join("/run/netns", lab.Node(router).NS))
	if err != nil {
		return nil, nil, err
	}
	if c, err = nftables.New(nftables.WithNetNSFd(int(ns))); err != nil {
		ns.Close()
		return nil, nil, err
	}
	return c, func() { ns.Close() }, nil
}

// forwardPort makes router forward port (TCP or UDP, by proto) on its WAN
// to host:port, so the baselines cross exactly the NATs, links and delay
// lines the tunnel crosses. The lab's WAN filter drops new inbound flows,
// so an accept for destination-NATed flows goes in front of it (once: a
// second call finds it there).
func forwardPort(lab *netlab.Lab, router string, proto byte, port uint16, to netip.Addr) error {
	c, done, err := routerNFT(lab, router)
	if err != nil {
		return err
	}
	defer done()
	wan := make([]byte, 16)
	copy(wan, "wan")
	labTable := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: "weftlab"}
	fwd, err := c.ListChain(labTable, "forward")
	if err != nil {
		return fmt.Errorf("lab forward chain: %w", err)
	}
	rules, err := c.GetRules(labTable, fwd)
	if err != nil {
		return fmt.Errorf("lab forward chain: %w", err)
	}
	dnatAccept := len(rules) > 0 && len(rules[0].Exprs) > 0
	if dnatAccept {
		ct, ok := rules[0].Exprs[0].(*expr.Ct)
		dnatAccept = ok && ct.Key == expr.CtKeySTATUS
	}
	if !dnatAccept {
		c.InsertRule(&nftables.Rule{Table: labTable, Chain: fwd, Exprs: []expr.Any{
			&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(0x20), // IPS_DST_NAT
				Xor:  binaryutil.NativeEndian.PutUint32(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
			&expr.Verdict{Kind: expr.VerdictAccept},
		}})
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "agentbench"})
	pre := c.AddChain(&nftables.Chain{Name: "prerouting", Table: t,
		Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest})
	a4 := to.As4()
	c.AddRule(&nftables.Rule{Table: t, Chain: pre, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: wan},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
		&expr.Immediate{Register: 1, Data: a4[:]},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(port)},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2},
	}})
	return c.Flush()
}

// throughput sends benchBytes on each of streams TCP connections from
// "from" to a listener at listenAddr on "to", dialing dialAddr, and
// returns the total rate in Mbit/s.
func throughput(ctx context.Context, lab *netlab.Lab, from, to string, listenAddr, dialAddr netip.AddrPort, streams int) (float64, error) {
	ln, err := lab.Node(to).Listen("tcp4", listenAddr.String())
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 2*streams)
	for range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := ln.Accept()
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(2 * time.Minute))
			n, err := io.Copy(io.Discard, c)
			if err == nil && n != benchBytes {
				err = fmt.Errorf("received %d bytes, want %d", n, benchBytes)
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	buf := make([]byte, 256<<10)
	start := time.Now()
	var swg sync.WaitGroup
	for range streams {
		swg.Add(1)
		go func() {
			defer swg.Done()
			dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			c, err := lab.Node(from).DialContext(dctx, "tcp4", dialAddr.String())
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(2 * time.Minute))
			for sent := 0; sent < benchBytes; sent += len(buf) {
				if _, err := c.Write(buf); err != nil {
					errs <- err
					return
				}
			}
			c.(*net.TCPConn).CloseWrite()
			io.Copy(io.Discard, c) // wait for the receiver's close
		}()
	}
	swg.Wait()
	wg.Wait()
	el := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	return float64(streams) * benchBytes * 8 / el.Seconds() / 1e6, nil
}

// procStat reads a process's CPU time (user+system) and RSS.
func procStat(pid int) (cpu time.Duration, rssKB int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// Fields after the command name (which may hold spaces) start at ")".
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	cpu = time.Duration(ut+st) * time.Second / 100 // USER_HZ
	s, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(s), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			rssKB, _ = strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		}
	}
	return cpu, rssKB, nil
}

// blockUDP drops all UDP leaving router's WAN (as the udp-blocked NAT kind
// does), or lifts that block.
func blockUDP(lab *netlab.Lab, router string, on bool) error {
	c, done, err := routerNFT(lab, router)
	if err != nil {
		return err
	}
	defer done()
	t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: "agentblock"}
	if !on {
		c.DelTable(t)
		return c.Flush()
	}
	c.AddTable(t)
	fwd := c.AddChain(&nftables.Chain{Name: "forward", Table: t,
		Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter})
	wan := make([]byte, 16)
	copy(wan, "wan")
	c.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: wan},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
	return c.Flush()
}

// BenchmarkLab measures the data plane in the seed lab (root only). Each
// sub-benchmark does its whole measurement once per iteration; run with
// -benchtime 1x (or Nx for more samples):
//
//	go test -run '^$' -bench BenchmarkLab -benchtime 3x ./internal/agent/
//
// Sub-benchmarks: the daemon's CPU and memory with 3 peers, idle; TCP
// throughput mac→busan through the tunnel against the same path without
// the tunnel (a port forward on r-busan, so both cross the same two NATs);
// the relay path (UDP dropped at both routers) against the direct tunnel,
// alternated in one lab; the daemon's CPU per GB; and the time from
// `weft up` on mac to the first direct pong.
func BenchmarkLab(b *testing.B) {
	labtest.SkipUnlessRoot(b)
	b.Run("easy-easy", func(b *testing.B) {
		// busan-wg and mac-wg run the plain wireguard-go baseline (see
		// plainWGHosts).
		n := startNetB(b, []string{"busan", "mac", "pc", "web"}, plainWGHosts)
		busan := netip.MustParseAddr("192.168.1.10")
		if err := forwardPort(n.lab, "r-busan", unix.IPPROTO_TCP, 5201, busan); err != nil {
			b.Fatal(err)
		}
		// Plain wireguard-go between mac-wg and busan-wg over the same
		// NATs, busan-wg's port forwarded like the raw baseline's.
		plain, err := startPlainWGPair(n.ctx, n.lab)
		if err != nil {
			b.Fatal(err)
		}
		plainBusan := plain.addr
		tunAddr := addr4(n.pair("mac", "busan"))
		pid := n.tn.Daemon("mac").PID
		b.Run("daemon-3-peers-idle", func(b *testing.B) {
			for _, p := range []string{"busan", "pc", "web"} {
				n.pair("mac", p)
				n.waitPath("mac", p, localapi.PathDirect, 30*time.Second)
			}
			for range b.N {
				c0, _, err := procStat(pid)
				if err != nil {
					b.Fatal(err)
				}
				time.Sleep(10 * time.Second)
				c1, rss, err := procStat(pid)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(c1-c0)/float64(10*time.Second)*100, "CPU-%")
				b.ReportMetric(float64(rss)/1024, "RSS-MB")
			}
		})
		n.waitPath("mac", "busan", localapi.PathDirect, 30*time.Second)
		tunnel := func(b *testing.B, port uint16, streams int) float64 {
			tu, err := throughput(n.ctx, n.lab, "mac", "busan", netip.AddrPortFrom(tunAddr, port), netip.AddrPortFrom(tunAddr, port), streams)
			if err != nil {
				b.Fatalf("tunnel: %v", err)
			}
			return tu
		}
		for _, streams := range []int{1, 4} {
			b.Run(fmt.Sprintf("throughput/streams=%d", streams), func(b *testing.B) {
				var raw, plain, tun float64
				for range b.N {
					r, err := throughput(n.ctx, n.lab, "mac", "busan", netip.AddrPortFrom(busan, 5201), netip.MustParseAddrPort("203.0.113.21:5201"), streams)
					if err != nil {
						b.Fatalf("raw: %v", err)
					}
					raw += r
					p, err := throughput(n.ctx, n.lab, "mac-wg", "busan-wg", netip.AddrPortFrom(plainBusan, 5206), netip.AddrPortFrom(plainBusan, 5206), streams)
					if err != nil {
						b.Fatalf("plain wireguard-go: %v", err)
					}
					plain += p
					tun += tunnel(b, 5202, streams)
				}
				raw, plain, tun = raw/float64(b.N), plain/float64(b.N), tun/float64(b.N)
				b.ReportMetric(raw, "raw-Mbit/s")
				b.ReportMetric(plain, "plainwg-Mbit/s")
				b.ReportMetric(tun, "tunnel-Mbit/s")
				b.ReportMetric(tun/raw, "ratio")
				b.ReportMetric(plain/raw, "plainwg-ratio")
				b.ReportMetric(tun/plain, "vs-plainwg")
			})
		}
		b.Run("relay-vs-direct", func(b *testing.B) {
			var direct, relayed float64
			for range b.N {
				n.waitPath("mac", "busan", localapi.PathDirect, 30*time.Second)
				direct += tunnel(b, 5204, 1)
				for _, r := range []string{"r-busan", "r-fukuoka"} {
					if err := blockUDP(n.lab, r, true); err != nil {
						b.Fatal(err)
					}
				}
				n.waitPath("mac", "busan", localapi.PathRelay, 30*time.Second)
				n.waitPath("busan", "mac", localapi.PathRelay, 30*time.Second)
				relayed += tunnel(b, 5205, 1)
				for _, r := range []string{"r-busan", "r-fukuoka"} {
					if err := blockUDP(n.lab, r, false); err != nil {
						b.Fatal(err)
					}
				}
			}
			direct, relayed = direct/float64(b.N), relayed/float64(b.N)
			b.ReportMetric(direct, "direct-Mbit/s")
			b.ReportMetric(relayed, "relay-Mbit/s")
			b.ReportMetric(relayed/direct, "ratio")
		})
		b.Run("daemon-busy", func(b *testing.B) {
			for range b.N {
				// After the previous iteration's idle minute the
				// peer is idle: traffic first, then the path.
				n.pair("mac", "busan")
				n.waitPath("mac", "busan", localapi.PathDirect, 30*time.Second)
				c1, _, err := procStat(pid)
				if err != nil {
					b.Fatal(err)
				}
				tunnel(b, 5203, 1)
				c2, rss, err := procStat(pid)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric((c2-c1).Seconds()/(benchBytes/1e9), "CPU-s/GB-sent")
				b.ReportMetric(float64(rss)/1024, "RSS-MB")
				time.Sleep(30 * time.Second)
				_, rss, err = procStat(pid)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(rss)/1024, "RSS-MB-30s-later")
				time.Sleep(40 * time.Second)
				_, rss, err = procStat(pid)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(rss)/1024, "RSS-MB-70s-later")
			}
		})
	})
	// easy-hard-guess: busan behind a hard NAT, mac behind an easy one;
	// the starter is the side whose `weft up` and `weft ping` begin each
	// round (the other is up already), so both orientations of a
	// port-guessing round are measured: how many rounds see the first
	// direct pong within 5 s (and 15 s) of the starter's `weft up`.
	for _, starter := range []string{"hard", "easy"} {
		b.Run("easy-hard-guess/starter="+starter, func(b *testing.B) {
			n := startNetB(b, []string{"busan", "mac"}, setNAT("r-busan", netlab.NATHard))
			n.pair("mac", "busan")
			first, second := "busan", "mac" // the hard side starts
			if starter == "easy" {
				first, second = "mac", "busan"
			}
			rounds := max(b.N, 20)
			ok := 0
			var times []time.Duration
			for range rounds {
				// Both sides start afresh each round: magicsock remembers an
				// earlier round with the same peer and holds the next back
				// for 30 s, which would measure the rate limit instead.
				for _, h := range []string{"mac", "busan"} {
					if _, err := n.tn.CLI(n.ctx, h, "down"); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := n.tn.CLI(n.ctx, second, "up"); err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				if _, err := n.tn.CLI(n.ctx, first, "up"); err != nil {
					b.Fatal(err)
				}
				// 150 pings 100 ms apart: 15 s.
				_, err := n.tn.CLI(n.ctx, first, "ping", "--until-direct", "-c", "150", "--interval", "100ms", "--timeout", "2s", second)
				took := time.Since(start)
				b.Logf("round: direct after %v (err %v)", took, err)
				if err == nil {
					times = append(times, took)
					if took <= 5*time.Second {
						ok++
					}
				}
			}
			b.ReportMetric(float64(ok), "direct-within-5s")
			b.ReportMetric(float64(len(times)), "direct-within-15s")
			b.ReportMetric(float64(rounds), "rounds")
			if len(times) > 0 {
				slices.Sort(times)
				b.ReportMetric(float64(times[len(times)/2].Milliseconds()), "to-direct-ms-median")
			}
		})
	}
	b.Run("up-to-direct", func(b *testing.B) {
		n := startNetB(b, []string{"busan", "mac"})
		n.pair("mac", "busan")
		n.waitPath("mac", "busan", localapi.PathDirect, 30*time.Second)
		var ups, directs []time.Duration
		for range max(b.N, 10) {
			if _, err := n.tn.CLI(n.ctx, "mac", "down"); err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			if _, err := n.tn.CLI(n.ctx, "mac", "up"); err != nil {
				b.Fatal(err)
			}
			ups = append(ups, time.Since(start))
			if _, err := n.tn.CLI(n.ctx, "mac", "ping", "--until-direct", "-c", "200", "--interval", "20ms", "--timeout", "2s", "busan"); err != nil {
				b.Fatal(err)
			}
			directs = append(directs, time.Since(start))
		}
		slices.Sort(ups)
		slices.Sort(directs)
		b.ReportMetric(float64(ups[len(ups)/2].Milliseconds()), "up-ms-median")
		b.ReportMetric(float64(directs[len(directs)/2].Milliseconds()), "first-direct-pong-ms-median")
		b.ReportMetric(float64(directs[len(directs)-1].Milliseconds()), "first-direct-pong-ms-max")
	})
}

// startNetB is startNet for a benchmark.
func startNetB(b *testing.B, hosts []string, mods ...func(*netlab.Topology)) *labNet {
	b.Helper()
	return startNetTB(b, 10*time.Minute, hosts, mods...)
}
