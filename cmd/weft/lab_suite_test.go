//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"weft/internal/controlclient"
	"weft/internal/key"
	"weft/internal/localapi"
	"weft/internal/netlab"
	"weft/internal/netlab/labtest"
	"weft/internal/osnet"
	"weft/internal/scenario"
	"weft/internal/wire"
)

// This file holds the lab cases of the standing security and fault suite
// (docs/security.md) that need real weft processes: key expiry end to
// end, a home relay region killed, and a full disk on the server.

// suiteNet is a tailnet in a seed lab whose nodes a test brings up one by
// one (so each can get its own key).
type suiteNet struct {
	t   testing.TB
	ctx context.Context
	lab *netlab.Lab
	tn  *scenario.Tailnet
}

// startSuite starts the server (with serverArgs) and no node yet.
func startSuite(t *testing.T, ctx context.Context, serverArgs []string, mods ...func(*netlab.Topology)) *suiteNet {
	t.Helper()
	labtest.SkipUnlessRoot(t)
	lab := labtest.Seed(t, mods...)
	tn := labtest.StartTailnet(t, ctx, lab, scenario.Options{ServerArgs: serverArgs, DaemonArgs: []string{"--verbose"}})
	return &suiteNet{t: t, ctx: ctx, lab: lab, tn: tn}
}

// join starts host's daemon and brings it up with authKey ("" for the
// tailnet's reusable untagged key).
func (s *suiteNet) join(host, authKey string) {
	s.t.Helper()
	if err := s.tn.StartDaemon(s.ctx, host); err != nil {
		s.t.Fatal(err)
	}
	var extra []string
	if authKey != "" {
		extra = []string{"--auth-key", authKey}
	}
	if err := s.tn.Up(s.ctx, host, extra...); err != nil {
		s.t.Fatal(err)
	}
}

// key makes a pre-auth key with `weft admin keys create` and extra flags.
func (s *suiteNet) key(extra ...string) string {
	s.t.Helper()
	out, err := s.tn.Admin(s.ctx, append([]string{"keys", "create", "--user", "alice", "--reusable"}, extra...)...)
	if err != nil {
		s.t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

func (s *suiteNet) status(host string) (*localapi.Status, error) { return s.tn.Status(s.ctx, host) }

// peer is host's view of peer, nil if host's status does not list it.
func (s *suiteNet) peer(host, peer string) *localapi.PeerStatus {
	s.t.Helper()
	st, err := s.status(host)
	if err != nil {
		s.t.Fatal(err)
	}
	for _, p := range st.Peers {
		if p.Name == peer {
			return p
		}
	}
	return nil
}

// awaitPeer waits until host lists peer with an address, and returns
// peer's IPv4 tailnet address.
func (s *suiteNet) awaitPeer(host, peer string) netip.Addr {
	s.t.Helper()
	var a netip.Addr
	err := scenario.WaitFor(s.ctx, 30*time.Second, host+" sees "+peer, func() (bool, error) {
		if p := s.peer(host, peer); p != nil {
			for _, pr := range p.Addresses {
				if pr.Addr().Is4() {
					a = pr.Addr()
				}
			}
		}
		return a.IsValid(), nil
	})
	if err != nil {
		s.t.Fatal(err)
	}
	return a
}

// pings reports whether one ICMP echo from host to addr is answered
// within a second.
func (s *suiteNet) pings(host string, addr netip.Addr) bool {
	_, err := s.lab.Node(host).Ping(s.ctx, addr, 1, 0, time.Second)
	return err == nil
}

// awaitPing waits until host's pings to addr are answered.
func (s *suiteNet) awaitPing(host string, addr netip.Addr, what string) {
	s.t.Helper()
	if err := scenario.WaitFor(s.ctx, 30*time.Second, what, func() (bool, error) { return s.pings(host, addr), nil }); err != nil {
		s.t.Fatal(err)
	}
}

// awaitDropped waits up to within until host neither lists peer nor gets
// answers from addr, peer's tailnet address.
func (s *suiteNet) awaitDropped(host, peer string, addr netip.Addr, within time.Duration) {
	s.t.Helper()
	err := scenario.WaitFor(s.ctx, within, host+" to drop "+peer, func() (bool, error) {
		return s.peer(host, peer) == nil && !s.pings(host, addr), nil
	})
	if err != nil {
		st, _ := s.tn.CLI(s.ctx, host, "status")
		s.t.Fatalf("%v; %s's status:\n%s", err, host, st)
	}
}

// hasTUN reports whether host's namespace has weft's TUN device.
func (s *suiteNet) hasTUN(host string) bool {
	s.t.Helper()
	found := false
	err := s.lab.Node(host).Do(func() error {
		_, err := netlink.LinkByName(osnet.DefaultTUNName)
		var nf netlink.LinkNotFoundError
		switch {
		case err == nil:
			found = true
		case errors.As(err, &nf):
		default:
			return err
		}
		return nil
	})
	if err != nil {
		s.t.Fatal(err)
	}
	return found
}

// awaitExpiredSelf waits until host's own daemon says its key expired,
// in `weft status` and its JSON, and has taken its data plane down.
func (s *suiteNet) awaitExpiredSelf(host string) {
	s.t.Helper()
	var st *localapi.Status
	err := scenario.WaitFor(s.ctx, 15*time.Second, host+" to say its key expired", func() (bool, error) {
		var err error
		st, err = s.status(host)
		return err == nil && st.BackendState == localapi.StateNeedsLogin && strings.Contains(st.LastError, "key expired"), nil
	})
	if err != nil {
		s.t.Fatalf("%v; last status: %+v", err, st)
	}
	if !strings.Contains(st.LastError, "weft up --auth-key") {
		s.t.Errorf("%s's status says %q, which does not say what to run", host, st.LastError)
	}
	out, err := s.tn.CLI(s.ctx, host, "status")
	if err != nil || !strings.Contains(string(out), "key expired") {
		s.t.Errorf("weft status on expired %s does not say why: %v\n%s", host, err, out)
	}
	if err := scenario.WaitFor(s.ctx, 10*time.Second, host+"'s TUN to go", func() (bool, error) { return !s.hasTUN(host), nil }); err != nil {
		s.t.Errorf("the expired node's data plane is still up: %v", err)
	}
}

// observer is a tagged node (its key never expires) run inside the test
// on a control stream from host's namespace; it records the peer map the
// server sends, without the node-side expiry filtering a daemon applies,
// so it shows what the server itself removed.
type observer struct {
	nm atomic.Pointer[controlclient.NetMap]
}

func (s *suiteNet) startObserver(host, authKey string) *observer {
	s.t.Helper()
	o := &observer{}
	ctx, cancel := context.WithCancel(s.ctx)
	client, err := controlclient.New(controlclient.Options{
		ServerURL: s.tn.ServerURL, MachineKey: key.NewMachine(), NodeKey: key.NewNode(), DiscoKey: key.NewDisco().Public(),
		Hostinfo:    &wire.Hostinfo{Hostname: "observer", OS: "linux"},
		DialContext: s.lab.Node(host).DialContext,
		OnMap:       func(nm *controlclient.NetMap) { o.nm.Store(nm) },
	})
	if err != nil {
		s.t.Fatal(err)
	}
	if _, err := client.Register(ctx, authKey, key.NodePublic{}); err != nil {
		cancel()
		s.t.Fatalf("observer: register: %v", err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); client.Run(ctx) }()
	s.t.Cleanup(func() { cancel(); wg.Wait() })
	return o
}

// has reports whether the last map the server sent the observer lists
// name.
func (o *observer) has(name string) bool {
	nm := o.nm.Load()
	if nm == nil {
		return false
	}
	for _, p := range nm.Peers {
		if p.Name == name {
			return true
		}
	}
	return false
}

// TestLabExpiredNodeDroppedByPeers: the expiry cases of the suite with
// real daemons. mac's key is tagged (it never expires); busan and pc get
// keys that live 90 s. An administrator's `weft admin nodes
// expire pc` takes pc out of mac's WireGuard peers (its pings stop) within
// seconds, and pc's own daemon stops its data plane and says why. busan's
// key then runs out while its stream is live: the server's timer removes
// it from the map it streams (the observer, which applies no expiry of its
// own, sees it go), mac drops it, and busan stops. Last, pc logs in again
// and the control server is stopped before pc's new key runs out: mac
// drops pc by its own clock and pc stops, with no control server at all.
func TestLabExpiredNodeDroppedByPeers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	const lifetime = 90 * time.Second
	s := startSuite(t, ctx, []string{"--node-key-lifetime", lifetime.String()})
	tagged := s.key("--tags", "tag:server")
	s.join("mac", tagged)
	s.join("busan", "")
	s.join("pc", "")
	obs := s.startObserver("web", tagged)
	busan, pc := s.awaitPeer("mac", "busan"), s.awaitPeer("mac", "pc")
	s.awaitPing("mac", busan, "mac pings busan")
	s.awaitPing("mac", pc, "mac pings pc")
	busanExpiry := s.peer("mac", "busan").KeyExpiry
	if busanExpiry.IsZero() {
		t.Fatal("busan's key has no expiry in mac's map")
	}

	t.Run("an administrator expires pc", func(t *testing.T) {
		if _, err := s.tn.Admin(ctx, "nodes", "expire", "pc"); err != nil {
			t.Fatal(err)
		}
		s.awaitDropped("mac", "pc", pc, 10*time.Second)
		s.awaitExpiredSelf("pc")
		if err := scenario.WaitFor(ctx, 10*time.Second, "the server to take pc out of the observer's map", func() (bool, error) {
			return !obs.has("pc"), nil
		}); err != nil {
			t.Error(err)
		}
		if !s.pings("mac", busan) {
			t.Error("mac lost busan when pc expired")
		}
	})

	t.Run("busan's key runs out during its stream", func(t *testing.T) {
		if time.Until(busanExpiry) < 5*time.Second {
			t.Fatalf("busan's key expires at %v, too soon to see it live first", busanExpiry)
		}
		if !obs.has("busan") || !s.pings("mac", busan) {
			t.Fatal("busan is not live before its expiry")
		}
		time.Sleep(time.Until(busanExpiry))
		if err := scenario.WaitFor(ctx, 10*time.Second, "the server's timer to take busan out of the observer's map", func() (bool, error) {
			return !obs.has("busan"), nil
		}); err != nil {
			t.Error(err)
		}
		s.awaitDropped("mac", "busan", busan, 10*time.Second)
		s.awaitExpiredSelf("busan")
	})

	t.Run("pc's new key runs out with the control server stopped", func(t *testing.T) {
		if _, err := s.tn.CLI(ctx, "pc", "up", "--auth-key", s.tn.AuthKey); err != nil {
			t.Fatal(err)
		}
		s.awaitPing("mac", pc, "mac pings pc after pc logged in again")
		exp := s.peer("mac", "pc").KeyExpiry
		if exp.IsZero() || time.Until(exp) < 5*time.Second {
			t.Fatalf("pc's new key expires at %v", exp)
		}
		if err := s.tn.KillServer(); err != nil {
			t.Fatal(err)
		}
		if !s.pings("mac", pc) {
			t.Fatal("mac lost pc as soon as control went away, before pc's expiry")
		}
		time.Sleep(time.Until(exp))
		s.awaitDropped("mac", "pc", pc, 10*time.Second)
		s.awaitExpiredSelf("pc")
	})
}

// homeOf is host's home relay region as peer's map has it (what peer
// uses to reach host through a relay); 0 if peer does not list host.
func (s *suiteNet) homeOf(host, peer string) int {
	if p := s.peer(peer, host); p != nil {
		return p.HomeRegion
	}
	return 0
}

// TestLabHomeRelayRegionKilled: the relay map has two regions, each a
// standalone `weft relay` on web. busan and mac talk over a direct path
// with pings running; the relay of busan's home region is killed. busan
// (and mac, if it was homed there too) moves to the other region within
// 10 s, as the peer's map shows, every ping is answered throughout, and
// the path stays direct.
func TestLabHomeRelayRegionKilled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	labtest.SkipUnlessRoot(t)
	const web = "203.0.113.80"
	ports := map[int][2]int{7: {8443, 3478}, 8: {8444, 3480}}
	rm := wire.RelayMap{Regions: map[int]*wire.RelayRegion{}}
	for id, p := range ports {
		rm.Regions[id] = &wire.RelayRegion{ID: id, Code: fmt.Sprintf("web%d", id), Name: fmt.Sprintf("web relay %d", id), Nodes: []*wire.RelayNode{
			{Name: fmt.Sprintf("%da", id), RegionID: id, Host: web, Port: p[0], STUNPort: p[1], InsecureHTTP: true},
		}}
	}
	lab := labtest.Seed(t)
	b, err := json.Marshal(rm)
	if err != nil {
		t.Fatal(err)
	}
	mapFile := lab.Dir() + "/relaymap.json"
	if err := os.WriteFile(mapFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	tn := labtest.StartTailnet(t, ctx, lab, scenario.Options{ServerArgs: []string{"--relay-map", mapFile}, DaemonArgs: []string{"--verbose"}})
	s := &suiteNet{t: t, ctx: ctx, lab: lab, tn: tn}
	relays := map[int]*netlab.Process{}
	for id, p := range ports {
		proc, err := lab.Node("web").Start(ctx, fmt.Sprintf("relay%d", id), labtest.WeftBinary(t), "relay",
			"--listen", fmt.Sprintf(":%d", p[0]), "--stun-listen", fmt.Sprintf(":%d", p[1]),
			"--server-url", tn.ServerURL, "--relay-secret-file", lab.Dir()+"/server/relay.secret")
		if err != nil {
			t.Fatal(err)
		}
		relays[id] = proc
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(tn.LogTails(60))
		}
	})
	s.join("busan", "")
	s.join("mac", "")
	busan := s.awaitPeer("mac", "busan")
	s.awaitPing("mac", busan, "mac pings busan")
	var old int
	err = scenario.WaitFor(ctx, 60*time.Second, "a direct path and busan's home region in mac's map", func() (bool, error) {
		p := s.peer("mac", "busan")
		old = s.homeOf("busan", "mac")
		return p != nil && p.Path.Kind == localapi.PathDirect && relays[old] != nil, nil
	})
	if err != nil {
		t.Fatalf("%v (home %d)", err, old)
	}
	var (
		wg      sync.WaitGroup
		rtts    []time.Duration
		pingErr error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		rtts, pingErr = lab.Node("mac").Ping(ctx, busan, 150, 100*time.Millisecond, 2*time.Second)
	}()
	time.Sleep(time.Second)
	if err := relays[old].Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	// Every node homed there moves: busan, and mac if it was too.
	err = scenario.WaitFor(ctx, 10*time.Second, fmt.Sprintf("busan and mac to be homed away from killed region %d", old), func() (bool, error) {
		hb, hm := s.homeOf("busan", "mac"), s.homeOf("mac", "busan")
		return hb != old && relays[hb] != nil && hm != old && relays[hm] != nil, nil
	})
	if err != nil {
		t.Fatalf("%v (busan's home %d, mac's %d)", err, s.homeOf("busan", "mac"), s.homeOf("mac", "busan"))
	}
	t.Logf("busan moved from region %d to %d in %v", old, s.homeOf("busan", "mac"), time.Since(killed).Round(100*time.Millisecond))
	wg.Wait()
	if pingErr != nil || len(rtts) != 150 {
		t.Errorf("mac's pings to busan while busan's home relay died: %d of 150 answered (%v)", len(rtts), pingErr)
	}
	if p := s.peer("mac", "busan"); p == nil || p.Path.Kind != localapi.PathDirect {
		t.Errorf("mac's path to busan after the relay died: %+v, want direct", p)
	}
	if p := s.peer("busan", "mac"); p == nil || p.Path.Kind != localapi.PathDirect {
		t.Errorf("busan's path to mac after the relay died: %+v, want direct", p)
	}
}

// smallDisk mounts a tmpfs of sizeMiB at a fresh directory and returns it;
// it is unmounted when the test ends (after the lab's processes, which
// labtest stops in a cleanup registered later, so running first).
func smallDisk(t *testing.T, sizeMiB int) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%dm,mode=0700", sizeMiB)); err != nil {
		t.Skipf("cannot mount a small tmpfs for the server's data dir: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmounting the test's tmpfs %s: %v", dir, err)
		}
	})
	return dir
}

// fillDisk writes path until the filesystem under it is full, down to
// the last byte.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for chunk := 1 << 20; chunk > 0; chunk /= 2 {
		buf := make([]byte, chunk)
		for {
			if _, err := f.Write(buf); err != nil {
				if !errors.Is(err, unix.ENOSPC) {
					t.Fatalf("filling the disk: %v", err)
				}
				break
			}
		}
	}
}

// TestLabServerDiskFull: the control server's data dir is a small
// filesystem, and it fills up. An administrator's change and a
// registration fail with an error that says the disk is full; the nodes
// that are up keep their map and their traffic; nothing of a failed write
// is left behind; and once space is freed writes succeed without a
// restart.
//
// A write on a full disk may still fit in room the database had already
// allocated (SQLite reuses the space of its write-ahead log, also what a
// failed transaction wrote), so each kind of write is tried up to five
// times, on a disk filled again before each try, until one fails; a try
// that succeeds must then be whole.
func TestLabServerDiskFull(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	labtest.SkipUnlessRoot(t)
	data := smallDisk(t, 32)
	lab := labtest.Seed(t)
	tn := labtest.StartTailnet(t, ctx, lab, scenario.Options{ServerDataDir: data, DaemonArgs: []string{"--verbose"}})
	s := &suiteNet{t: t, ctx: ctx, lab: lab, tn: tn}
	s.join("busan", "")
	s.join("mac", "")
	busan := s.awaitPeer("mac", "busan")
	s.awaitPing("mac", busan, "mac pings busan")

	filler := data + "/filler"
	saysFull := func(what, msg string) {
		t.Helper()
		if m := strings.ToLower(msg); !strings.Contains(m, "disk is full") || !strings.Contains(m, "free space") {
			t.Errorf("%s on a full disk does not say the disk is full and what to do:\n%s", what, msg)
		}
	}
	// tries runs write(i) on a freshly filled disk until one fails, at
	// most five times, and returns which names were saved and which not.
	tries := func(kind string, write func(name string) (string, error)) (saved, failed []string) {
		for i := range 5 {
			fillDisk(t, filler)
			name := fmt.Sprintf("full%d", i)
			msg, err := write(name)
			if err == nil {
				saved = append(saved, name)
				continue
			}
			saysFull(kind+" "+name, msg)
			return saved, append(failed, name)
		}
		t.Errorf("five tries of %s on a full disk all succeeded: %v", kind, saved)
		return saved, nil
	}
	savedUsers, failedUsers := tries("weft admin users create", func(name string) (string, error) {
		out, err := tn.Admin(ctx, "users", "create", name)
		return string(out), err
	})
	// One registration per try, from pc's namespace, with no retry
	// (a daemon would retry in the background).
	savedNodes, failedNodes := tries("a registration", func(name string) (string, error) {
		c, err := controlclient.New(controlclient.Options{
			ServerURL: tn.ServerURL, MachineKey: key.NewMachine(), NodeKey: key.NewNode(), DiscoKey: key.NewDisco().Public(),
			Hostinfo: &wire.Hostinfo{Hostname: name, OS: "linux"}, DialContext: lab.Node("pc").DialContext,
		})
		if err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		_, err = c.Register(rctx, tn.AuthKey, key.NodePublic{})
		if err != nil {
			return err.Error(), err
		}
		return "", nil
	})

	// The server still serves the nodes it has.
	if tn.Server().Exited() {
		t.Fatal("the server exited when its disk filled")
	}
	for range 20 {
		if !s.pings("mac", busan) {
			t.Fatal("mac lost busan while the server's disk was full")
		}
	}
	if st, err := s.status("mac"); err != nil || st.BackendState != localapi.StateRunning {
		t.Errorf("mac's state with the server's disk full: %v %+v", err, st)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	// What failed left nothing; what succeeded is there.
	listed := func(args ...string) string {
		out, err := tn.Admin(ctx, args...)
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	users, nodes := listed("users", "list"), listed("nodes", "list")
	for _, c := range []struct {
		what          string
		list          string
		saved, failed []string
	}{{"user", users, savedUsers, failedUsers}, {"node", nodes, savedNodes, failedNodes}} {
		for _, n := range c.failed {
			if strings.Contains(c.list, n) {
				t.Errorf("the %s whose write failed on the full disk, %s, is listed:\n%s", c.what, n, c.list)
			}
		}
		for _, n := range c.saved {
			if !strings.Contains(c.list, n) {
				t.Errorf("the %s %s, saved on the full disk, is not listed:\n%s", c.what, n, c.list)
			}
		}
	}
	// Space is back: writes work, without a restart.
	if _, err := tn.Admin(ctx, "users", "create", "bob"); err != nil {
		t.Error(err)
	}
	s.join("pc", "")
	pc := s.awaitPeer("mac", "pc")
	s.awaitPing("mac", pc, "mac pings pc, registered after the disk had room again")
}

// TestLabControlDownLongNodeRestarted: the control server (and with it
// the only relay) is stopped and stays down for two and a half minutes,
// longer than the routers keep an idle UDP mapping (120 s) and than a
// WireGuard session lives without a new handshake (120 s); then mac's
// daemon is restarted. It starts from the map it saved, with no control
// server and no relay to ask, and reaches busan directly again.
func TestLabControlDownLongNodeRestarted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	s := startSuite(t, ctx, nil)
	s.join("busan", "")
	s.join("mac", "")
	busan := s.awaitPeer("mac", "busan")
	s.awaitPing("mac", busan, "mac pings busan")
	l := &exitLab{t: t, ctx: ctx, lab: s.lab, tn: s.tn}
	l.awaitDirect("mac", "busan", 30*time.Second)
	l.awaitSavedMap("mac", "busan")
	if err := s.tn.KillServer(); err != nil {
		t.Fatal(err)
	}
	const outage = 150 * time.Second
	t.Logf("control and relay down; waiting %v", outage)
	select {
	case <-time.After(outage):
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	if err := s.tn.RestartDaemonAfterKill(ctx, "mac"); err != nil {
		t.Fatal(err)
	}
	s.awaitPing("mac", busan, "mac, restarted with control down, pings busan")
	l.awaitDirect("mac", "busan", 30*time.Second)
	l.awaitDirect("busan", "mac", 30*time.Second)
	st, err := s.status("mac")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, h := range st.Health {
		found = found || strings.HasPrefix(h, "control server unreachable")
	}
	if !found {
		t.Errorf("mac's health does not say control is unreachable: %q", st.Health)
	}
}
