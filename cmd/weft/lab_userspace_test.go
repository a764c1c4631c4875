//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/proxy"

	"weft/internal/localapi"
	"weft/internal/netlab"
	"weft/internal/netlab/labtest"
	"weft/internal/scenario"
)

// The userspace node's proxies, on localhost in its namespace.
const (
	usSOCKS = "127.0.0.1:1055"
	usHTTP  = "127.0.0.1:1056"
)

// startUserspaceLab is the seed tailnet with busan in userspace
// networking mode (no TUN device, no capabilities at all: setpriv drops
// the bounding set, so the daemon could create no TUN, set no socket mark
// and touch no firewall even if it tried), offering itself as exit node.
func startUserspaceLab(t *testing.T, ctx context.Context) *exitLab {
	labtest.SkipUnlessRoot(t)
	lab := labtest.Seed(t)
	tn := labtest.StartTailnet(t, ctx, lab, scenario.Options{
		Hosts:      []string{"busan", "mac", "pc"},
		DaemonArgv: userspaceBusan("--outbound-http-proxy-listen", usHTTP),
		UpArgs:     scenario.ExitNodes("busan"),
	})
	return &exitLab{t: t, ctx: ctx, lab: lab, tn: tn}
}

// userspaceBusan is a scenario.Options.DaemonArgv that runs busan's
// daemon in userspace networking mode with its SOCKS5 server on usSOCKS,
// extra flags added, and without any capabilities (setpriv drops the
// bounding set); other hosts' daemons run as they are.
func userspaceBusan(extra ...string) func(host string, argv []string) []string {
	return func(host string, argv []string) []string {
		if host != "busan" {
			return argv
		}
		argv = append(argv, "--tun=userspace-networking", "--socks5-server", usSOCKS)
		argv = append(argv, extra...)
		return append([]string{"setpriv", "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs"}, argv...)
	}
}

// serveGreeting accepts on ln and writes each client a line naming the
// address it came from.
func serveGreeting(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		fmt.Fprintf(c, "hello %s\n", c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr())
		c.Close()
	}
}

// listenTCP listens on n at addr, on a free port, until the test ends.
func listenTCP(t *testing.T, n *netlab.Node, addr netip.Addr) net.Listener {
	t.Helper()
	ln, err := n.Listen("tcp4", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// sawHandler answers every request with "NAME saw SRC:PORT", the address
// the request came from.
func sawHandler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s saw %s", name, r.RemoteAddr)
	})
}

// httpProxyClient is an HTTP client on n that goes through the userspace
// node's HTTP proxy (usHTTP, on n's localhost).
func httpProxyClient(n *netlab.Node) *http.Client {
	purl := &url.URL{Scheme: "http", Host: usHTTP}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(purl), DialContext: n.DialContext}}
}

// TestLabUserspaceNode runs busan in userspace networking mode without any
// capabilities: it reaches pc's TCP service through its SOCKS5 server and
// its HTTP proxy, pc's connection to busan's tailnet address reaches a
// localhost listener on busan, and busan is mac's exit node (web sees
// busan's address).
func TestLabUserspaceNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	l := startUserspaceLab(t, ctx)
	busanTN, pcTN := l.tailnetAddr("busan"), l.tailnetAddr("pc")
	busan := l.lab.Node("busan")

	if caps := capEff(t, l.tn.Daemon("busan").PID); caps != "0000000000000000" {
		t.Fatalf("busan's daemon runs with capabilities %s, want none", caps)
	}
	if err := busan.Do(func() error {
		if _, err := net.InterfaceByName("weft0"); err == nil {
			return fmt.Errorf("busan has a weft0 TUN device in userspace mode")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	t.Run("SOCKS5 reaches a peer's TCP service", func(t *testing.T) {
		ln := listenTCP(t, l.lab.Node("pc"), pcTN)
		go serveGreeting(ln)
		d, err := proxy.SOCKS5("tcp", usSOCKS, nil, nodeDialer{busan})
		if err != nil {
			t.Fatal(err)
		}
		var line string
		err = scenario.WaitFor(ctx, 30*time.Second, "busan reaches pc through SOCKS5", func() (bool, error) {
			c, err := d.(proxy.ContextDialer).DialContext(ctx, "tcp", ln.Addr().String())
			if err != nil {
				return false, nil
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			line, err = bufio.NewReader(c).ReadString('\n')
			return err == nil, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if want := "hello " + busanTN.String() + "\n"; line != want {
			t.Errorf("pc answered %q, want %q (the connection must come from busan's tailnet address)", line, want)
		}
	})

	t.Run("HTTP proxy reaches a peer's web server", func(t *testing.T) {
		ln := listenTCP(t, l.lab.Node("pc"), pcTN)
		go http.Serve(ln, sawHandler("pc"))
		hc := httpProxyClient(busan)
		resp, err := hc.Get("http://" + ln.Addr().String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.HasPrefix(string(body), "pc saw "+busanTN.String()+":") {
			t.Errorf("through busan's HTTP proxy: %q", body)
		}
	})

	t.Run("the proxies resolve MagicDNS names", func(t *testing.T) {
		ln := listenTCP(t, l.lab.Node("pc"), pcTN)
		go http.Serve(ln, sawHandler("pc"))
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		var full string
		var st localapi.Status
		if err := json.Unmarshal([]byte(l.cli("busan", "status", "--json")), &st); err != nil {
			t.Fatal(err)
		}
		for _, p := range st.Peers {
			if p.Name == "pc" {
				full = p.DNSName
			}
		}
		if !strings.HasPrefix(full, "pc.") {
			t.Fatalf("busan's status gives pc no full name: %q", full)
		}
		d, err := proxy.SOCKS5("tcp", usSOCKS, nil, nodeDialer{busan})
		if err != nil {
			t.Fatal(err)
		}
		viaHTTP := httpProxyClient(busan)
		viaSOCKS := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.(proxy.ContextDialer).DialContext}}
		for _, name := range []string{"pc", full, strings.ToUpper(full) + "."} {
			for proxyName, hc := range map[string]*http.Client{"SOCKS5": viaSOCKS, "HTTP proxy": viaHTTP} {
				resp, err := hc.Get("http://" + net.JoinHostPort(name, port) + "/")
				if err != nil {
					t.Errorf("%s to %s: %v", proxyName, name, err)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if !strings.HasPrefix(string(body), "pc saw "+busanTN.String()+":") {
					t.Errorf("%s to %s: %q", proxyName, name, body)
				}
			}
		}
		// A name under the tailnet's domain that no node has is not
		// asked of the host's resolver: it fails, and says why.
		resp, err := viaHTTP.Get("http://" + net.JoinHostPort("nobody."+strings.TrimPrefix(full, "pc."), port) + "/")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Errorf("an unknown tailnet name reached something through the HTTP proxy: %q", body)
			} else if !strings.Contains(string(body), "no such name in the tailnet") {
				t.Errorf("an unknown tailnet name through the HTTP proxy: %s %q", resp.Status, body)
			}
		}
	})

	t.Run("a peer reaches a localhost listener through the tailnet address", func(t *testing.T) {
		ln := listenTCP(t, busan, netip.MustParseAddr("127.0.0.1"))
		go serveGreeting(ln)
		port := ln.Addr().(*net.TCPAddr).Port
		c, err := l.lab.Node("pc").DialContext(ctx, "tcp4", net.JoinHostPort(busanTN.String(), fmt.Sprint(port)))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || line != "hello 127.0.0.1\n" {
			t.Errorf("pc to busan %s:%d got %q, %v; want the localhost listener's greeting", busanTN, port, line, err)
		}
	})

	t.Run("busan in userspace mode is mac's exit node", func(t *testing.T) {
		fukuoka, busanWAN := l.lab.Node("r-fukuoka").WANAddr, l.lab.Node("r-busan").WANAddr
		l.awaitWhoami("mac", fukuoka, "web sees mac as r-fukuoka without an exit node")
		l.admin("routes", "approve", "busan", "exit")
		err := scenario.WaitFor(ctx, 30*time.Second, "mac lists busan as exit node", func() (bool, error) {
			out, err := l.tn.CLI(ctx, "mac", "exit-node", "list")
			return err == nil && strings.Contains(string(out), "busan"), nil
		})
		if err != nil {
			t.Fatal(err)
		}
		l.cli("mac", "set", "--exit-node", "busan")
		l.awaitWhoami("mac", busanWAN, "web sees mac as r-busan through the userspace exit node")

		// Pings are forwarded from busan's host through an unprivileged
		// ICMP socket, which Linux allows to ping_group_range (no
		// capability needed); a host that does not answer stays silent.
		if err := busan.Do(func() error {
			return os.WriteFile("/proc/sys/net/ipv4/ping_group_range", []byte("0 2147483647"), 0o644)
		}); err != nil {
			t.Fatal(err)
		}
		webAddr := l.lab.Node("web").WANAddr
		if err := pingFrom(l.lab.Node("mac"), webAddr); err != nil {
			t.Errorf("mac's ping to web through busan: %v", err)
		}
		if err := pingFrom(l.lab.Node("mac"), netip.MustParseAddr("203.0.113.250")); err == nil {
			t.Error("a ping to an address nobody has was answered through busan")
		}
		l.cli("mac", "set", "--exit-node=")
		l.awaitWhoami("mac", fukuoka, "web sees mac as r-fukuoka again")
	})
}

// nodeDialer dials from inside a lab node's namespace, for x/net/proxy.
type nodeDialer struct {
	n interface {
		DialContext(ctx context.Context, network, addr string) (net.Conn, error)
	}
}

func (d nodeDialer) Dial(network, addr string) (net.Conn, error) {
	return d.n.DialContext(context.Background(), network, addr)
}

func (d nodeDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return d.n.DialContext(ctx, network, addr)
}

// pingFrom sends one ICMP echo from node to dst (a raw socket: the test
// runs as root) and waits up to 3 s for the reply.
func pingFrom(node interface{ Do(func() error) error }, dst netip.Addr) error {
	return node.Do(func() error {
		c, err := icmp.ListenPacket("ip4:icmp", "0.0.0.0")
		if err != nil {
			return err
		}
		defer c.Close()
		req, _ := (&icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: 4242, Seq: 1, Data: []byte("weft")}}).Marshal(nil)
		if _, err := c.WriteTo(req, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return fmt.Errorf("no reply from %s: %w", dst, err)
			}
			m, err := icmp.ParseMessage(1, buf[:n])
			if err != nil || m.Type != ipv4.ICMPTypeEchoReply || from.String() != dst.String() {
				continue
			}
			if e, ok := m.Body.(*icmp.Echo); ok && e.ID == 4242 && string(e.Data) == "weft" {
				return nil
			}
		}
	})
}

// capEff is the effective capability set of process pid, in hex.
func capEff(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatal("no CapEff in /proc status")
	return ""
}
