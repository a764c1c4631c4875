//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"weft/internal/control"
	"weft/internal/controlclient"
	"weft/internal/key"
	"weft/internal/localapi"
	"weft/internal/netlab"
	"weft/internal/netlab/labtest"
	"weft/internal/pgtest"
	"weft/internal/scenario"
	"weft/internal/wire"
)

// haLab is a tailnet of two `weft server` processes on one PostgreSQL
// (docs/ha.md): server A is the scenario's, on ctrl:8080 with STUN;
// server B runs beside it on ctrl:8081 with --stun-listen= (two servers on
// one host), its own data directory and a copy of A's key. PostgreSQL runs
// on a unix socket in a temp directory (internal/pgtest), which the
// servers in the lab's namespace reach through the filesystem; it listens
// on no network address.
type haLab struct {
	t          *testing.T
	ctx        context.Context
	lab        *netlab.Lab
	tn         *scenario.Tailnet
	pg         *pgtest.Server
	urlA, urlB string
	dirB       string
	procB      *netlab.Process
}

// haRelayMap gives both servers one relay map, as several servers of one
// tailnet must have: region 1 is A's relay with A's STUN ports, region 2
// B's relay (B serves no STUN).
func haRelayMap(t *testing.T, ctrl netip.Addr) string {
	rm := wire.RelayMap{Regions: map[int]*wire.RelayRegion{
		1: {ID: 1, Code: "a", Name: "server A", Nodes: []*wire.RelayNode{
			{Name: "1a", RegionID: 1, Host: ctrl.String(), Port: 8080, STUNPort: 3478, InsecureHTTP: true},
			{Name: "1b", RegionID: 1, Host: ctrl.String(), Port: 8080, STUNPort: 3479, InsecureHTTP: true}}},
		2: {ID: 2, Code: "b", Name: "server B", Nodes: []*wire.RelayNode{
			{Name: "2a", RegionID: 2, Host: ctrl.String(), Port: 8081, STUNPort: -1, InsecureHTTP: true}}},
	}}
	b, err := json.Marshal(rm)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "relaymap.json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func startHA(t *testing.T, hosts []string, upArgs func(string) []string) *haLab {
	labtest.SkipUnlessRoot(t)
	pg := pgtest.Start(t, pgtest.Options{})
	db := pg.CreateDB(t)
	// lb runs HAProxy in front of both servers; kiosk is a node that
	// knows the tailnet only by the load balancer's URL; desk joins by
	// an interactive login; solo knows only server A's URL.
	lab := labtest.Seed(t, func(tp *netlab.Topology) {
		tp.Public = append(tp.Public,
			netlab.PublicHost{Name: "lb", Addr: netip.MustParseAddr("203.0.113.30")},
			netlab.PublicHost{Name: "kiosk", Addr: netip.MustParseAddr("203.0.113.31")},
			netlab.PublicHost{Name: "desk", Addr: netip.MustParseAddr("203.0.113.32")},
			netlab.PublicHost{Name: "solo", Addr: netip.MustParseAddr("203.0.113.33")})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	t.Cleanup(cancel)
	ctrl := lab.Node("ctrl")
	rm := haRelayMap(t, ctrl.Addr())
	common := []string{"--db", db, "--relay-map", rm, "--register-rate", "-1", "--metrics-listen="}
	tn := labtest.StartTailnet(t, ctx, lab, scenario.Options{Hosts: hosts,
		ServerArgs: common, UpArgs: upArgs})
	h := &haLab{t: t, ctx: ctx, lab: lab, tn: tn, pg: pg, urlA: tn.ServerURL,
		urlB: fmt.Sprintf("http://%s:8081", ctrl.Addr()), dirB: filepath.Join(lab.Dir(), "server-b")}
	// Several servers of one tailnet share one key: B gets a copy of A's.
	if err := os.MkdirAll(h.dirB, 0o700); err != nil {
		t.Fatal(err)
	}
	k, err := os.ReadFile(filepath.Join(tn.DataDir(), "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.dirB, "server.key"), k, 0o600); err != nil {
		t.Fatal(err)
	}
	argv := append([]string{labtest.WeftBinary(t), "server", "--listen", ":8081", "--data-dir", h.dirB,
		"--server-url", h.urlB, "--stun-listen="}, common...)
	if h.procB, err = ctrl.Start(ctx, "server-b", argv...); err != nil {
		t.Fatal(err)
	}
	h.waitHealth(h.urlB, http.StatusOK, "")
	return h
}

// startHAProxy runs HAProxy on lb with dist/haproxy/weft.cfg, the file
// docs/ha.md tells people to use, its two server lines pointed at A and B
// and its frontend at lb's port 8080; it returns the load balancer's URL.
func (h *haLab) startHAProxy() string {
	h.t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		h.t.Skip("haproxy is not installed (apt-get install haproxy); .ci/run installs it")
	}
	cfg, err := os.ReadFile("../../dist/haproxy/weft.cfg")
	if err != nil {
		h.t.Fatal(err)
	}
	ctrl := h.lab.Node("ctrl").Addr()
	text := strings.NewReplacer(
		"server a 192.0.2.11:8080 check", fmt.Sprintf("server a %s:8080 check", ctrl),
		"server b 192.0.2.12:8080 check", fmt.Sprintf("server b %s:8081 check", ctrl),
	).Replace(string(cfg))
	if strings.Contains(text, "192.0.2.") {
		h.t.Fatal("dist/haproxy/weft.cfg no longer has the server lines this test rewrites")
	}
	path := filepath.Join(h.t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		h.t.Fatal(err)
	}
	lb := h.lab.Node("lb")
	if _, err := lb.Start(h.ctx, "haproxy", bin, "-db", "-f", path); err != nil {
		h.t.Fatal(err)
	}
	url := fmt.Sprintf("http://%s:8080", lb.Addr())
	h.waitHealth(url, http.StatusOK, "ok")
	return url
}

// waitHealth waits until url's /healthz answers code, with want in the
// body.
func (h *haLab) waitHealth(url string, code int, want string) {
	h.t.Helper()
	client := h.lab.Node("ctrl").HTTPClient()
	last := ""
	err := scenario.WaitFor(h.ctx, 60*time.Second, fmt.Sprintf("%s/healthz answering %d", url, code), func() (bool, error) {
		resp, err := client.Get(url + "/healthz")
		if err != nil {
			last = err.Error()
			return false, nil
		}
		defer resp.Body.Close()
		var b strings.Builder
		fmt.Fprint(&b, resp.Status, " ")
		buf := make([]byte, 512)
		n, _ := resp.Body.Read(buf)
		b.Write(buf[:n])
		last = b.String()
		return resp.StatusCode == code && strings.Contains(last, want), nil
	})
	if err != nil {
		h.t.Fatalf("%v (last answer: %s)", err, last)
	}
}

func (h *haLab) status(host string) *localapi.Status {
	h.t.Helper()
	st, err := h.tn.Status(h.ctx, host)
	if err != nil {
		h.t.Fatal(err)
	}
	return st
}

func (h *haLab) peer(st *localapi.Status, name string) *localapi.PeerStatus {
	for _, p := range st.Peers {
		if p.Node != nil && p.Name == name {
			return p
		}
	}
	return nil
}

// adminB runs `weft admin` against server B's admin socket.
func (h *haLab) adminB(args ...string) ([]byte, error) {
	argv := append([]string{labtest.WeftBinary(h.t), "admin", "--data-dir", h.dirB}, args...)
	return h.lab.Node("ctrl").Exec(h.ctx, argv...)
}

// onlineAtB says whether server B counts the node name online, as
// `weft admin nodes list --json` shows it: "true", "false", or what went
// wrong.
func (h *haLab) onlineAtB(name string) string {
	out, err := h.adminB("nodes", "list", "--json")
	if err != nil {
		return fmt.Sprintf("admin: %v: %s", err, out)
	}
	var nodes []struct {
		Name   string `json:"name"`
		Online *bool  `json:"online"`
	}
	if err := json.Unmarshal(out, &nodes); err != nil {
		return fmt.Sprintf("nodes list --json: %v", err)
	}
	for _, n := range nodes {
		if n.Name == name && n.Online != nil {
			return fmt.Sprint(*n.Online)
		}
	}
	return "not listed"
}

// await waits up to bound for cond, failing the test with what.
func (h *haLab) await(bound time.Duration, what string, cond func() bool) {
	h.t.Helper()
	if err := scenario.WaitFor(h.ctx, bound, what, func() (bool, error) { return cond(), nil }); err != nil {
		h.t.Fatal(err)
	}
}

// interactiveLoginAcrossServers runs `weft up` without a key on desk
// against server A only, approves the login with `weft admin` on server
// B, and waits for desk to join as alice and be seen online by mac (on
// B): the login lives in the database and the approval reaches A
// through the change feed.
func (h *haLab) interactiveLoginAcrossServers() {
	t := h.t
	if err := h.tn.StartDaemon(h.ctx, "desk"); err != nil {
		t.Fatal(err)
	}
	up, err := h.lab.Node("desk").Start(h.ctx, "up-desk", labtest.WeftBinary(t), "--socket", h.tn.Socket("desk"),
		"up", "--server", h.urlA, "--hostname", "desk")
	if err != nil {
		t.Fatal(err)
	}
	codeRE := regexp.MustCompile(`/login/node/([A-Za-z0-9]+)`)
	var code string
	h.await(30*time.Second, "weft up on desk printing its login URL", func() bool {
		if m := codeRE.FindStringSubmatch(up.Logs()); m != nil && strings.Contains(up.Logs(), h.urlA+"/login/node/") {
			code = m[1]
			return true
		}
		return false
	})
	if out, err := h.adminB("nodes", "pending"); err != nil || !strings.Contains(string(out), code) {
		t.Fatalf("server B does not list the login begun at A (code %s): %v\n%s", code, err, out)
	}
	if out, err := h.adminB("nodes", "approve", code, "--user", "alice"); err != nil {
		t.Fatalf("approving at B: %v: %s", err, out)
	}
	h.await(60*time.Second, "weft up on desk finishing", up.Exited)
	if err := up.Wait(); err != nil || !strings.Contains(up.Logs(), "joining as alice") {
		t.Fatalf("weft up on desk: %v\n%s", err, up.Logs())
	}
	h.await(60*time.Second, "desk running on A and mac (on B) seeing it online", func() bool {
		st := h.status("desk")
		p := h.peer(h.status("mac"), "desk")
		return st.BackendState == localapi.StateRunning && st.ControlServer == h.urlA && p != nil && p.Online
	})
	if out, err := h.tn.Admin(h.ctx, "audit"); err != nil || !strings.Contains(string(out), "login.approve") {
		t.Fatalf("the approval is not in the audit log read at A: %v\n%s", err, out)
	}
}

// TestLabHA runs two servers on one PostgreSQL with busan streaming from
// A and mac and pc from B, and checks, in order: each node sees the others
// online across the servers; a route approved on A reaches mac through B;
// an interactive login begun at A is approved at B and the node comes up;
// one single-use key raced by 100 registrations through both servers
// registers exactly one node; a PostgreSQL restart is survived with no
// restart of the servers, and a change made afterwards reaches the nodes;
// after kill -9 of A, busan streams from B within 10 s while a ping from
// busan to mac, running throughout, loses no reply, and solo, a node that
// knows only A and so never reconnects, is shown offline by B within the
// liveness bound (docs/ha.md).
func TestLabHA(t *testing.T) {
	hosts := []string{"busan", "mac", "pc"}
	route := "10.77.0.0/24"
	h := startHA(t, hosts, func(host string) []string {
		if host == "busan" {
			return []string{"--advertise-routes", route}
		}
		return nil
	})
	// Spread the nodes: busan lists A first, mac and pc list B first.
	order := map[string]string{"busan": h.urlA + "," + h.urlB, "mac": h.urlB + "," + h.urlA, "pc": h.urlB + "," + h.urlA}
	home := map[string]string{"busan": h.urlA, "mac": h.urlB, "pc": h.urlB}
	for _, host := range hosts {
		if _, err := h.tn.CLI(h.ctx, host, "up", "--server", order[host]); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("two servers on one PostgreSQL with nodes spread over both", func(t *testing.T) {
		h.await(90*time.Second, "each node on its server, seeing the other two online", func() bool {
			for _, host := range hosts {
				st := h.status(host)
				if st.ControlServer != home[host] {
					return false
				}
				for _, other := range hosts {
					if p := h.peer(st, other); other != host && (p == nil || !p.Online) {
						return false
					}
				}
			}
			return true
		})
	})

	lbURL := h.startHAProxy()
	t.Run("a node knowing only the HAProxy URL joins through it", func(t *testing.T) {
		if err := h.tn.StartDaemon(h.ctx, "kiosk"); err != nil {
			t.Fatal(err)
		}
		if _, err := h.tn.CLI(h.ctx, "kiosk", "up", "--server", lbURL, "--auth-key", h.tn.AuthKey, "--hostname", "kiosk"); err != nil {
			t.Fatal(err)
		}
		h.await(60*time.Second, "mac seeing kiosk online", func() bool {
			p := h.peer(h.status("mac"), "kiosk")
			return p != nil && p.Online && h.status("kiosk").ControlServer == lbURL
		})
	})

	t.Run("a node knowing only server A's URL streams from A", func(t *testing.T) {
		if err := h.tn.StartDaemon(h.ctx, "solo"); err != nil {
			t.Fatal(err)
		}
		if _, err := h.tn.CLI(h.ctx, "solo", "up", "--server", h.urlA, "--auth-key", h.tn.AuthKey, "--hostname", "solo"); err != nil {
			t.Fatal(err)
		}
		h.await(60*time.Second, "solo streaming from A and mac (on B) seeing it online", func() bool {
			p := h.peer(h.status("mac"), "solo")
			return p != nil && p.Online && h.status("solo").ControlServer == h.urlA
		})
	})

	t.Run("a route approval made on server A reaches a node streamed by server B", func(t *testing.T) {
		if _, err := h.tn.Admin(h.ctx, "routes", "approve", "busan", route); err != nil {
			t.Fatal(err)
		}
		h.await(30*time.Second, "mac (on B) seeing busan's approved route", func() bool {
			p := h.peer(h.status("mac"), "busan")
			return p != nil && len(p.Routes) == 1 && p.Routes[0].String() == route
		})
	})

	t.Run("an interactive login begun through server A and approved on server B: the node comes up", func(t *testing.T) {
		h.interactiveLoginAcrossServers()
	})

	t.Run("100 concurrent registrations through both servers with one single-use key: exactly one succeeds", func(t *testing.T) {
		out, err := h.tn.Admin(h.ctx, "keys", "create", "--user", "alice")
		if err != nil {
			t.Fatal(err)
		}
		authKey := strings.TrimSpace(string(out))
		web := h.lab.Node("web")
		var wg sync.WaitGroup
		var mu sync.Mutex
		ok, used := 0, 0
		var others []string
		for i := range 100 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				url := []string{h.urlA, h.urlB}[i%2]
				c, err := controlclient.New(controlclient.Options{ServerURL: url, MachineKey: key.NewMachine(), NodeKey: key.NewNode(),
					Hostinfo: &wire.Hostinfo{Hostname: fmt.Sprintf("racer%d", i)}, DialContext: web.DialContext})
				if err != nil {
					t.Error(err)
					return
				}
				_, err = c.Register(h.ctx, authKey, key.NodePublic{})
				mu.Lock()
				defer mu.Unlock()
				var em *wire.ErrorMessage
				switch {
				case err == nil:
					ok++
				case errors.As(err, &em) && em.Code == wire.CodeKeyUsed:
					used++
				default:
					others = append(others, err.Error())
				}
			}()
		}
		wg.Wait()
		if ok != 1 || used != 99 {
			t.Fatalf("%d registrations succeeded and %d were refused as key used, want 1 and 99; other errors: %q", ok, used, others)
		}
	})

	t.Run("PostgreSQL restarted: servers recover by themselves and a later change reaches nodes", func(t *testing.T) {
		if err := h.pg.Stop(); err != nil {
			t.Fatal(err)
		}
		h.waitHealth(h.urlA, http.StatusServiceUnavailable, "database")
		h.waitHealth(h.urlB, http.StatusServiceUnavailable, "database")
		if out, err := h.adminB("users", "create", "bob"); err == nil {
			t.Fatalf("an admin write succeeded with the database down: %s", out)
		}
		if err := h.pg.Start(); err != nil {
			t.Fatal(err)
		}
		h.waitHealth(h.urlA, http.StatusOK, "ok")
		h.waitHealth(h.urlB, http.StatusOK, "ok")
		if out, err := h.adminB("nodes", "rename", "pc", "pc2"); err != nil {
			t.Fatalf("rename through B after the restart: %v: %s", err, out)
		}
		h.await(30*time.Second, "busan (on A) and mac (on B) seeing pc renamed", func() bool {
			return h.peer(h.status("busan"), "pc2") != nil && h.peer(h.status("mac"), "pc2") != nil
		})
	})

	t.Run("kill -9 server A: its nodes are on B within 10 s and a ping running throughout never stops", func(t *testing.T) {
		h.await(60*time.Second, "a direct path between busan and mac", func() bool {
			p := h.peer(h.status("busan"), "mac")
			return p != nil && p.Path.Kind == localapi.PathDirect
		})
		macIP := netip.MustParseAddr(firstAddr(h.peer(h.status("busan"), "mac").Node))
		const count, interval = 150, 100 * time.Millisecond
		type result struct {
			rtts []time.Duration
			err  error
		}
		done := make(chan result, 1)
		go func() {
			rtts, err := h.lab.Node("busan").Ping(h.ctx, macIP, count, interval, 2*time.Second)
			done <- result{rtts, err}
		}()
		time.Sleep(2 * time.Second) // the ping runs before the kill
		if err := syscall.Kill(h.tn.Server().PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		h.await(10*time.Second, "busan streaming from server B", func() bool {
			st := h.status("busan")
			return st.ControlServer == h.urlB && st.BackendState == localapi.StateRunning
		})
		t.Logf("busan streams from B %v after A was killed", time.Since(killed).Round(time.Millisecond))
		// solo knows only A: it never reconnects, and A could not say its
		// stream ended. B finds A's liveness row standing still and marks
		// A's remaining nodes offline: within the server timeout and two
		// heartbeats of A's last beat, plus time for the status polls.
		bound := control.DefaultServerTimeout + 2*control.DefaultHeartbeatInterval + 10*time.Second
		h.await(bound-time.Since(killed), "mac (on B) and server B showing solo offline", func() bool {
			p := h.peer(h.status("mac"), "solo")
			return p != nil && !p.Online && h.onlineAtB("solo") == "false"
		})
		t.Logf("solo shown offline %v after A was killed", time.Since(killed).Round(time.Millisecond))
		// kiosk knows only the load balancer: whichever server it had, it
		// streams again through HAProxy, which now sends everyone to B.
		h.await(60*time.Second, "kiosk streaming through HAProxy and mac seeing it online", func() bool {
			st := h.status("kiosk")
			p := h.peer(h.status("mac"), "kiosk")
			return st.BackendState == localapi.StateRunning && st.ControlServer == lbURL && p != nil && p.Online
		})
		r := <-done
		if lost := count - len(r.rtts); r.err != nil || lost != 0 {
			t.Fatalf("ping busan → mac across the kill: %d of %d replies, %d lost (%v)", len(r.rtts), count, lost, r.err)
		}
	})
}
