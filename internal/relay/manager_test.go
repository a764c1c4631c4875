package relay

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"weft/internal/key"
	"weft/internal/netutil"
	"weft/internal/tstest"
	"weft/internal/wire"
)

// relayNode describes a test relay as the relay map would.
func relayNode(t *testing.T, region int, rawURL string) *wire.RelayNode {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(u.Host)
	p, _ := strconv.Atoi(port)
	return &wire.RelayNode{Name: "r" + strconv.Itoa(region), RegionID: region, Host: host, Port: p, InsecureHTTP: true}
}

type received struct {
	region int
	src    key.NodePublic
	data   string
}

func TestManager(t *testing.T) {
	a, b1, b2 := key.NewNode(), key.NewNode(), key.NewNode()
	auth := allow(a, b1, b2)
	r1, r2 := startSimpleRelay(t, auth), startSimpleRelay(t, auth)
	rm := &wire.RelayMap{Regions: map[int]*wire.RelayRegion{
		1: {ID: 1, Code: "one", Nodes: []*wire.RelayNode{relayNode(t, 1, r1.url)}},
		2: {ID: 2, Code: "two", Nodes: []*wire.RelayNode{relayNode(t, 2, r2.url)}},
	}}
	got := make(chan received, 16)
	m, err := NewManager(ManagerOptions{
		NodeKey:  a,
		RelayMap: rm,
		OnRecv: func(region int, src key.NodePublic, data []byte) {
			got <- received{region, src, string(data)}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.SetHome(3); !errors.Is(err, ErrUnknownRegion) {
		t.Fatalf("SetHome(3): %v", err)
	}
	if err := m.SetHome(1); err != nil {
		t.Fatal(err)
	}
	wait := func(t *testing.T) received {
		t.Helper()
		select {
		case r := <-got:
			return r
		case <-time.After(10 * time.Second):
			t.Fatal("nothing received")
		}
		return received{}
	}
	cb1 := connect(t, r1.url, b1) // a peer homed on region 1
	cb2 := connect(t, r2.url, b2) // a peer homed on region 2

	t.Run("from the home region", func(t *testing.T) {
		tstest.Eventually(t, "a connected to its home", func() bool { return r1.srv.Stats().Clients == 2 })
		if err := cb1.Send(a.Public(), []byte("hi home")); err != nil {
			t.Fatal(err)
		}
		if r := wait(t); r != (received{1, b1.Public(), "hi home"}) {
			t.Fatalf("got %+v", r)
		}
	})
	t.Run("through an on-demand region", func(t *testing.T) {
		if err := m.Send(2, b2.Public(), []byte("to region 2")); err != nil {
			t.Fatal(err)
		}
		if p := recvPacket(t, cb2); p.Src != a.Public() || string(p.Data) != "to region 2" {
			t.Fatalf("b2 got %q from %v", p.Data, p.Src)
		}
		if err := cb2.Send(a.Public(), []byte("back via 2")); err != nil {
			t.Fatal(err)
		}
		if r := wait(t); r != (received{2, b2.Public(), "back via 2"}) {
			t.Fatalf("got %+v", r)
		}
	})
	t.Run("ping", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, region := range []int{1, 2} {
			if rtt, err := m.Ping(ctx, region); err != nil || rtt <= 0 {
				t.Fatalf("ping region %d: %v %v", region, rtt, err)
			}
		}
		if _, err := m.Ping(ctx, 9); !errors.Is(err, ErrUnknownRegion) {
			t.Fatalf("ping unknown region: %v", err)
		}
	})
	t.Run("status", func(t *testing.T) {
		want := []RegionStatus{{Region: 1, Home: true, Connected: true}, {Region: 2, Connected: true}}
		if got := m.Status(); !slices.Equal(got, want) {
			t.Fatalf("status %+v, want %+v", got, want)
		}
	})
	t.Run("relay map shrinks", func(t *testing.T) {
		m.SetRelayMap(&wire.RelayMap{Regions: map[int]*wire.RelayRegion{1: rm.Regions[1]}})
		if ids := m.connectedRegions(); !slices.Equal(ids, []int{1}) {
			t.Fatalf("regions %v, want [1]", ids)
		}
		if err := m.Send(2, b2.Public(), nil); !errors.Is(err, ErrUnknownRegion) {
			t.Fatalf("send to removed region: %v", err)
		}
	})
}

// homeAndOther starts the relays of regions 1 and 2 and a manager (opts
// with its node key, relay map and a no-op OnRecv filled in) homed on
// region 1 that has opened region 2 too, by sending a packet to a peer
// connected there. The manager is closed when the test ends.
func homeAndOther(t *testing.T, opts ManagerOptions) (m *Manager, r1, r2 *testRelay) {
	t.Helper()
	a, b := key.NewNode(), key.NewNode()
	r1, r2 = startSimpleRelay(t, allow(a, b)), startSimpleRelay(t, allow(a, b))
	opts.NodeKey = a
	opts.RelayMap = &wire.RelayMap{Regions: map[int]*wire.RelayRegion{
		1: {ID: 1, Nodes: []*wire.RelayNode{relayNode(t, 1, r1.url)}},
		2: {ID: 2, Nodes: []*wire.RelayNode{relayNode(t, 2, r2.url)}},
	}}
	opts.OnRecv = func(int, key.NodePublic, []byte) {}
	m, err := NewManager(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if err := m.SetHome(1); err != nil {
		t.Fatal(err)
	}
	cb := connect(t, r2.url, b)
	if err := m.Send(2, b.Public(), []byte("open region 2")); err != nil {
		t.Fatal(err)
	}
	recvPacket(t, cb)
	return m, r1, r2
}

func TestManagerClosesIdleRegions(t *testing.T) {
	m, r1, r2 := homeAndOther(t, ManagerOptions{
		IdleTimeout: time.Second, // far above a loopback connect, so only idleness closes it
	})
	tstest.Eventually(t, "idle region 2 closed", func() bool {
		return slices.Equal(m.connectedRegions(), []int{1}) && r2.srv.Stats().Clients == 1 && r1.srv.Stats().Clients == 1
	})
	// The home is kept however idle it is.
	if m.Home() != 1 || r1.srv.Stats().Clients != 1 {
		t.Fatalf("home %d, clients on region 1: %d", m.Home(), r1.srv.Stats().Clients)
	}
}

func TestChooseHome(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name    string
		current int
		lat     map[int]time.Duration
		want    int
	}{
		{"no home yet takes the fastest", 0, map[int]time.Duration{1: 30 * ms, 2: 10 * ms}, 2},
		{"slightly better is not enough", 1, map[int]time.Duration{1: 30 * ms, 2: 25 * ms}, 1},
		{"exactly two thirds is not enough", 1, map[int]time.Duration{1: 30 * ms, 2: 20 * ms}, 1},
		{"clearly better wins", 1, map[int]time.Duration{1: 30 * ms, 2: 19 * ms}, 2},
		{"current did not answer", 1, map[int]time.Duration{2: 80 * ms, 3: 50 * ms}, 3},
		{"nothing answered keeps current", 1, nil, 1},
		{"ties go to the lowest id", 0, map[int]time.Duration{3: 10 * ms, 2: 10 * ms}, 2},
		{"current already fastest", 2, map[int]time.Duration{1: 30 * ms, 2: 10 * ms}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ChooseHome(tt.current, tt.lat); got != tt.want {
				t.Fatalf("ChooseHome(%d, %v) = %d, want %d", tt.current, tt.lat, got, tt.want)
			}
		})
	}
}

func TestRelayNodeURL(t *testing.T) {
	tests := []struct {
		n    wire.RelayNode
		want string
	}{
		{wire.RelayNode{Host: "relay.example"}, "https://relay.example:443"},
		{wire.RelayNode{Host: "10.0.0.1", InsecureHTTP: true}, "http://10.0.0.1:80"},
		{wire.RelayNode{Host: "2001:db8::1", Port: 8443}, "https://[2001:db8::1]:8443"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := RelayNodeURL(&tt.n); got != tt.want {
				t.Fatalf("got %s", got)
			}
		})
	}
}

// TestManagerTellsWhenHomeLost: losing the home region's connection is
// reported (so the agent can measure and move at once); losing a
// non-home region's is not.
func TestManagerTellsWhenHomeLost(t *testing.T) {
	lost := make(chan int, 8)
	m, r1, r2 := homeAndOther(t, ManagerOptions{OnHomeLost: func(region int) { lost <- region }})
	tstest.Eventually(t, "a connected to its home", func() bool { return r1.srv.Stats().Clients == 1 })
	r2.close()
	r1.close()
	awaitHomeLost(t, lost, 1, "after the home relay went away")
	m.Close()
	select {
	case region := <-lost:
		if region != 1 {
			t.Fatalf("OnHomeLost(%d) after the home's", region)
		}
	default:
	}
}

// TestManagerTellsWhenHomeUnreachable: a home region whose relay cannot
// be reached at all (it died while the client was between attempts, or
// before it first connected) is reported too; waiting for a connection
// that never comes to be lost would leave the node homed on a dead relay
// until its next periodic check.
func TestManagerTellsWhenHomeUnreachable(t *testing.T) {
	a := key.NewNode()
	dead := startSimpleRelay(t, allow(a))
	dead.close()
	lost := make(chan int, 8)
	m, err := NewManager(ManagerOptions{
		NodeKey: a,
		RelayMap: &wire.RelayMap{Regions: map[int]*wire.RelayRegion{
			1: {ID: 1, Nodes: []*wire.RelayNode{relayNode(t, 1, dead.url)}},
		}},
		OnRecv:     func(int, key.NodePublic, []byte) {},
		OnHomeLost: func(region int) { lost <- region },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if err := m.SetHome(1); err != nil {
		t.Fatal(err)
	}
	awaitHomeLost(t, lost, 1, "while the home relay could not be reached")
}

// awaitHomeLost fails t unless OnHomeLost reports region want on lost
// within 10 s; when names the situation for the failure message.
func awaitHomeLost(t *testing.T, lost <-chan int, want int, when string) {
	t.Helper()
	select {
	case region := <-lost:
		if region != want {
			t.Fatalf("OnHomeLost(%d) %s, want %d (the home)", region, when, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no OnHomeLost %s", when)
	}
}

// TestManagerSendQueueBoundedAndCounted: while a region's relay cannot be
// reached, packets wait in its send queue up to its bound; the rest are
// dropped and counted, never queued beyond it.
func TestManagerSendQueueBoundedAndCounted(t *testing.T) {
	unreachable := func(ctx context.Context, network, addr string) (net.Conn, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	m, err := NewManager(ManagerOptions{
		NodeKey: key.NewNode(),
		Dialer:  unreachable,
		RelayMap: &wire.RelayMap{Regions: map[int]*wire.RelayRegion{
			1: {ID: 1, Nodes: []*wire.RelayNode{relayNode(t, 1, "http://relay.test:80")}},
		}},
		OnRecv: func(int, key.NodePublic, []byte) {},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	dst := key.NewNode().Public()
	full := 0
	for range sendQueueLen + 5 {
		if err := m.Send(1, dst, []byte("packet")); errors.Is(err, ErrQueueFull) {
			full++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if full != 5 || m.SendDrops() != 5 {
		t.Errorf("%d sends refused, %d drops counted; want 5 and 5 past a queue of %d", full, m.SendDrops(), sendQueueLen)
	}
}

// TestAltAddrs: the client races, beside a node's URL address, the
// other addresses its map entry gives with the URL's port (an ipv6 beside
// an IPv4-literal host, an ipv4 beside a name), each once.
func TestAltAddrs(t *testing.T) {
	nodes := []*wire.RelayNode{
		{Name: "1a", RegionID: 1, Host: "203.0.113.10", Port: 8080, InsecureHTTP: true, IPv6: netip.MustParseAddr("2001:db8::10")},
		{Name: "1b", RegionID: 1, Host: "relay.example", IPv4: netip.MustParseAddr("198.51.100.7")},
		{Name: "1c", RegionID: 1, Host: "192.0.2.1", IPv4: netip.MustParseAddr("192.0.2.1")},
		{Name: "1d", RegionID: 1, Host: "relay2.example", IPv4: netip.MustParseAddr("198.51.100.8"), IPv6: netip.MustParseAddr("2001:db8::8")},
	}
	want := map[string][]string{
		"203.0.113.10:8080":  {"[2001:db8::10]:8080"},
		"relay.example:443":  {"198.51.100.7:443"},
		"relay2.example:443": {"198.51.100.8:443", "[2001:db8::8]:443"},
	}
	got := altAddrs(nodes)
	if len(got["192.0.2.1:443"]) != 0 {
		t.Errorf("a node whose ipv4 is its host has alternates %v", got["192.0.2.1:443"])
	}
	delete(got, "192.0.2.1:443")
	if !maps.EqualFunc(got, want, slices.Equal) {
		t.Errorf("altAddrs = %v, want %v", got, want)
	}
}

// TestManagerBlackholedFamily: the relay's URL names an IPv4 address
// whose SYNs vanish (the fake dialer blocks until its context ends) and
// the map gives the relay an ipv6 too. The home connects over the ipv6 a
// head start later, while the black-holed dial is still pending (a client
// that tried the families one after the other would spend its whole
// handshake timeout there and give up), and that dial is then cancelled.
func TestManagerBlackholedFamily(t *testing.T) {
	a, b := key.NewNode(), key.NewNode()
	r := startSimpleRelay(t, allow(a, b))
	n := relayNode(t, 1, r.url)
	real := net.JoinHostPort(n.Host, strconv.Itoa(n.Port))
	n.Host, n.IPv6 = "203.0.113.10", netip.MustParseAddr("2001:db8::10")
	v4, v6 := net.JoinHostPort(n.Host, strconv.Itoa(n.Port)), net.JoinHostPort(n.IPv6.String(), strconv.Itoa(n.Port))
	var mu sync.Mutex
	var pending, cancelled, connected int // black-holed dials; dials over the ipv6
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		switch addr {
		case v4:
			mu.Lock()
			pending++
			mu.Unlock()
			<-ctx.Done()
			mu.Lock()
			pending--
			cancelled++
			mu.Unlock()
			return nil, ctx.Err()
		case v6:
			mu.Lock()
			blackholed := pending
			mu.Unlock()
			if blackholed == 0 {
				return nil, fmt.Errorf("dialed %s before the preferred address", addr)
			}
			var d net.Dialer
			c, err := d.DialContext(ctx, network, real)
			if err == nil {
				mu.Lock()
				connected++
				mu.Unlock()
			}
			return c, err
		}
		return nil, fmt.Errorf("unexpected address %s", addr)
	}
	m, err := NewManager(ManagerOptions{
		NodeKey:  a,
		Dialer:   dial,
		RelayMap: &wire.RelayMap{Regions: map[int]*wire.RelayRegion{1: {ID: 1, Nodes: []*wire.RelayNode{n}}}},
		OnRecv:   func(int, key.NodePublic, []byte) {},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.SetHome(1); err != nil {
		t.Fatal(err)
	}
	tstest.Eventually(t, "the home connected over the ipv6", func() bool {
		st := m.Status()
		return len(st) == 1 && st[0].Connected
	})
	tstest.Eventually(t, "the black-holed dial cancelled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return pending == 0 && cancelled > 0
	})
	mu.Lock()
	defer mu.Unlock()
	if connected != 1 {
		t.Errorf("%d connections over the ipv6, want 1", connected)
	}
}

// TestManagerPrivateCA runs the home relay over TLS with a certificate
// from a private CA. A Manager trusting the system's roots alone is
// refused by the certificate and stays unconnected, saying why; after
// SetTLSConfig with the trust netutil.TrustTLS builds from the CA (the
// node's --ca-file, changed on a running node), the home connects again
// at once and carries a peer's packet.
func TestManagerPrivateCA(t *testing.T) {
	a, b := key.NewNode(), key.NewNode()
	ca := tstest.NewCA(t, "relay test CA")
	hs, _ := reserveRelay()
	mountRelay(t, hs, ServerOptions{Authorizer: allow(a, b)})
	hs.TLS = ca.ServerTLS(t, "127.0.0.1")
	hs.StartTLS()
	trusted, err := netutil.TrustTLS(ca.PEM)
	if err != nil {
		t.Fatal(err)
	}
	n := relayNode(t, 1, hs.URL)
	n.InsecureHTTP = false
	got := make(chan received, 4)
	m, err := NewManager(ManagerOptions{
		NodeKey:  a,
		RelayMap: &wire.RelayMap{Regions: map[int]*wire.RelayRegion{1: {ID: 1, Code: "one", Nodes: []*wire.RelayNode{n}}}},
		OnRecv:   func(region int, src key.NodePublic, data []byte) { got <- received{region, src, string(data)} },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.SetHome(1); err != nil {
		t.Fatal(err)
	}
	tstest.Eventually(t, "the home relay refused for its certificate", func() bool {
		st := m.Status()
		return len(st) == 1 && !st[0].Connected && strings.Contains(st[0].LastError, "certificate")
	})
	if err := m.SetTLSConfig(trusted); err != nil {
		t.Fatal(err)
	}
	tstest.Eventually(t, "the home relay connected with the CA", func() bool {
		st := m.Status()
		return len(st) == 1 && st[0].Connected && st[0].Home
	})
	cb, err := NewClient(ClientOptions{URLs: []string{hs.URL}, NodeKey: b, TLSConfig: trusted})
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cb.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	if err := cb.Send(a.Public(), []byte("over the private CA")); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if r != (received{1, b.Public(), "over the private CA"}) {
			t.Fatalf("got %+v", r)
		}
	case <-ctx.Done():
		t.Fatal("nothing received through the relay")
	}
}
