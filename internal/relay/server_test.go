package relay

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"weft/internal/key"
	"weft/internal/tstest"
)

// keySet is a mutable Authorizer for tests.
type keySet struct {
	mu   sync.Mutex
	keys map[key.NodePublic]bool
}

func allow(keys ...key.NodePrivate) *keySet {
	s := &keySet{keys: make(map[key.NodePublic]bool)}
	for _, k := range keys {
		s.add(k.Public())
	}
	return s
}

func (s *keySet) add(k key.NodePublic) {
	s.mu.Lock()
	s.keys[k] = true
	s.mu.Unlock()
}

func (s *keySet) AllowNode(ctx context.Context, k key.NodePublic) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys[k], nil
}

func (s *keySet) AllowedNodeKeys(ctx context.Context) ([]key.NodePublic, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []key.NodePublic
	for k := range s.keys {
		out = append(out, k)
	}
	return out, nil
}

// testRelay is a relay server on a loopback HTTP server: the one relay
// test server of this package's tests. It is closed when the test ends,
// or earlier with close.
type testRelay struct {
	srv  *Server
	hs   *httptest.Server
	url  string
	once sync.Once
}

// close stops the relay and its HTTP server; later calls do nothing.
func (r *testRelay) close() {
	r.once.Do(func() {
		r.srv.Close()
		r.hs.Close()
	})
}

// reserveRelay takes a loopback listener for a relay not yet started, so
// that relays of a mesh can know each other's URLs up front.
func reserveRelay() (*httptest.Server, string) {
	hs := httptest.NewUnstartedServer(nil)
	return hs, "http://" + hs.Listener.Addr().String()
}

// mountRelay makes a relay with opts the handler of hs, at /relay and
// /relay/probe, without starting hs.
func mountRelay(t testing.TB, hs *httptest.Server, opts ServerOptions) *testRelay {
	t.Helper()
	srv, err := NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/relay", srv)
	mux.Handle("/relay/probe", srv.ProbeHandler())
	hs.Config.Handler = mux
	r := &testRelay{srv: srv, hs: hs}
	t.Cleanup(r.close)
	return r
}

// serveRelay starts a relay with opts on a reserved listener.
func serveRelay(t testing.TB, hs *httptest.Server, opts ServerOptions) *testRelay {
	t.Helper()
	r := mountRelay(t, hs, opts)
	hs.Start()
	r.url = hs.URL
	return r
}

// startRelay starts a relay with opts on loopback.
func startRelay(t testing.TB, opts ServerOptions) *testRelay {
	hs, _ := reserveRelay()
	return serveRelay(t, hs, opts)
}

// startTLSRelay starts a relay with opts on loopback behind TLS, with the
// test server's own certificate.
func startTLSRelay(t testing.TB, opts ServerOptions) *testRelay {
	t.Helper()
	hs, _ := reserveRelay()
	r := mountRelay(t, hs, opts)
	hs.StartTLS()
	r.url = hs.URL
	return r
}

func startSimpleRelay(t testing.TB, auth Authorizer) *testRelay {
	return startRelay(t, ServerOptions{Authorizer: auth})
}

// bareConn is one handshake with the relay at url as priv, without the
// client's reconnect loop; it is closed when the test ends.
func bareConn(t testing.TB, url string, priv key.NodePrivate) *clientConn {
	t.Helper()
	c, err := NewClient(ClientOptions{URLs: []string{url}, NodeKey: priv})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := c.dial(context.Background(), c.urls[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.nc.Close() })
	return cc
}

func connect(t testing.TB, url string, priv key.NodePrivate) *Client {
	t.Helper()
	c, err := tryConnect(t, ClientOptions{URLs: []string{url}, NodeKey: priv, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	return c
}

// tryConnect makes a client with opts (closed when the test ends) and
// returns it with what its Connect said within 10 s.
func tryConnect(t testing.TB, opts ClientOptions) (*Client, error) {
	t.Helper()
	c, err := NewClient(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c, c.Connect(ctx)
}

// recv returns the next message, failing the test after 10s.
func recv(t testing.TB, c *Client) Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := c.Recv(ctx)
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	return m
}

// recvPacket returns the next packet, skipping peer-gone notices.
func recvPacket(t testing.TB, c *Client) ReceivedPacket {
	t.Helper()
	for {
		if p, ok := recv(t, c).(ReceivedPacket); ok {
			return p
		}
	}
}

// send sends like Client.Send but waits out a full send queue, for tests
// that must not lose packets on the client side.
func send(t testing.TB, c *Client, dst key.NodePublic, pkt []byte) {
	t.Helper()
	for {
		err := c.Send(dst, pkt)
		if !errors.Is(err, ErrQueueFull) {
			if err != nil {
				t.Error(err)
			}
			return
		}
		time.Sleep(50 * time.Microsecond)
	}
}

func TestForwardBothWays(t *testing.T) {
	a, b := key.NewNode(), key.NewNode()
	reg := prometheus.NewRegistry()
	r := startRelay(t, ServerOptions{Authorizer: allow(a, b), Registerer: reg})
	ca, cb := connect(t, r.url, a), connect(t, r.url, b)

	tests := []struct {
		name     string
		from     *Client
		to       *Client
		src, dst key.NodePrivate
		data     []byte
	}{
		{"a to b", ca, cb, a, b, []byte("hello b")},
		{"b to a", cb, ca, b, a, []byte("hello a")},
		{"largest packet", ca, cb, a, b, bytes.Repeat([]byte{0xab}, MaxPacketSize)},
		{"empty packet", cb, ca, b, a, []byte{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.from.Send(tt.dst.Public(), tt.data); err != nil {
				t.Fatal(err)
			}
			p := recvPacket(t, tt.to)
			if p.Src != tt.src.Public() || !bytes.Equal(p.Data, tt.data) {
				t.Fatalf("got %d bytes from %v, want %d from %v", len(p.Data), p.Src, len(tt.data), tt.src.Public())
			}
		})
	}
	if err := ca.Send(b.Public(), make([]byte, MaxPacketSize+1)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("oversized send: %v", err)
	}
	// The counter moves just after the packet is queued, so the receiver
	// may be a moment ahead of it.
	tstest.Eventually(t, "4 packets counted", func() bool { return r.srv.Stats().PacketsForwarded == 4 })
	if st := r.srv.Stats(); st.Clients != 2 || st.PacketsForwarded != 4 {
		t.Fatalf("stats %+v, want 2 clients and 4 packets", st)
	}
	if got := metricValue(t, reg, "weft_relay_packets_forwarded_total"); got != 4 {
		t.Fatalf("metric packets_forwarded_total = %v, want 4", got)
	}
}

// metricValue gathers reg and returns the value of the named counter.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func TestRefusals(t *testing.T) {
	known := key.NewNode()
	tests := []struct {
		name string
		auth Authorizer
		want string
	}{
		{"unknown node key", allow(known), "is not authorized"},
		{"no authorizer", nil, "no authorizer"},
		{"authorizer fails", AuthorizerFunc(func(context.Context, key.NodePublic) (bool, error) {
			return false, errors.New("control server unreachable")
		}), "control server unreachable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startSimpleRelay(t, tt.auth)
			_, err := tryConnect(t, ClientOptions{URLs: []string{r.url}, NodeKey: key.NewNode()})
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want ErrRefused mentioning %q", err, tt.want)
			}
			if r.srv.Stats().Refused == 0 || r.srv.Stats().Clients != 0 {
				t.Fatalf("stats %+v", r.srv.Stats())
			}
		})
	}
}

func TestNotARelay(t *testing.T) {
	hs := httptest.NewServer(http.NotFoundHandler())
	defer hs.Close()
	c, _ := NewClient(ClientOptions{URLs: []string{hs.URL}, NodeKey: key.NewNode()})
	defer c.Close()
	err := c.Connect(context.Background())
	if err == nil || !strings.Contains(err.Error(), "not an upgrade") {
		t.Fatalf("got %v", err)
	}
}

func TestPlainGETExplains(t *testing.T) {
	r := startSimpleRelay(t, allow())
	resp, err := http.Get(r.url + "/relay")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired {
		t.Fatalf("status %s, want 426", resp.Status)
	}
	resp, err = http.Get(r.url + "/relay/probe")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("probe status %s, want 204", resp.Status)
	}
}

func TestPeerGoneOnUnknownDestination(t *testing.T) {
	a := key.NewNode()
	r := startSimpleRelay(t, allow(a))
	ca := connect(t, r.url, a)
	nobody := key.NewNode().Public()
	// A stream of packets to a missing peer yields one notice, not one per
	// packet: the rest are rate-limited.
	for range 5 {
		if err := ca.Send(nobody, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	m := recv(t, ca)
	pg, ok := m.(PeerGone)
	if !ok || pg.Key != nobody || pg.Reason != PeerGoneNotHere {
		t.Fatalf("got %#v, want PeerGone for %v", m, nobody)
	}
	tstest.Eventually(t, "drops counted", func() bool { return r.srv.Stats().DropsUnknownDest == 5 })
	// Ping round-trips after the sends, so any second notice would have
	// been queued (and read below) by now.
	if _, err := ca.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if m, err := ca.Recv(ctx); err == nil {
		t.Fatalf("second message %#v; peer-gone should be rate-limited", m)
	}
}

func TestSlowReceiverDoesNotBlockOthers(t *testing.T) {
	a, b, slow := key.NewNode(), key.NewNode(), key.NewNode()
	r := startRelay(t, ServerOptions{Authorizer: allow(a, b, slow), QueueLen: 16, WriteTimeout: time.Minute})
	ca, cb := connect(t, r.url, a), connect(t, r.url, b)
	connect(t, r.url, slow) // never calls Recv

	pkt := make([]byte, 1400)
	// Flood the slow client until its queue overflows: the relay must drop
	// rather than wait. The bound keeps the loop finite if it never does.
	sent := 0
	for ; sent < 200_000 && r.srv.Stats().DropsQueueFull == 0; sent++ {
		send(t, ca, slow.Public(), pkt)
	}
	if r.srv.Stats().DropsQueueFull == 0 {
		t.Fatalf("no drops after %d packets to a client that does not read", sent)
	}
	// Meanwhile a and b still talk both ways, through the same relay and
	// (for a) the same connection that is flooding.
	for i := range 3 {
		msg := []byte(fmt.Sprintf("still here %d", i))
		if err := ca.Send(b.Public(), msg); err != nil {
			t.Fatal(err)
		}
		if p := recvPacket(t, cb); !bytes.Equal(p.Data, msg) {
			t.Fatalf("b got %q", p.Data)
		}
		if err := cb.Send(a.Public(), msg); err != nil {
			t.Fatal(err)
		}
		if p := recvPacket(t, ca); !bytes.Equal(p.Data, msg) {
			t.Fatalf("a got %q", p.Data)
		}
	}
	t.Logf("sent %d packets to the slow client; stats %+v", sent, r.srv.Stats())
}

func TestNewerConnectionReplacesOlder(t *testing.T) {
	a, b := key.NewNode(), key.NewNode()
	r := startSimpleRelay(t, allow(a, b))
	// The older connection is a bare handshake, without the client's
	// reconnect loop, which would otherwise take the key straight back.
	oldConn := bareConn(t, r.url, b)
	newer := connect(t, r.url, b)
	ca := connect(t, r.url, a)
	oldConn.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, _, err := readFrame(oldConn.br, MaxFramePayload); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal("the older connection was not closed")
			}
			break
		}
	}
	if err := ca.Send(b.Public(), []byte("to the newer")); err != nil {
		t.Fatal(err)
	}
	if p := recvPacket(t, newer); string(p.Data) != "to the newer" {
		t.Fatalf("got %q", p.Data)
	}
	if n := r.srv.Stats().Clients; n != 2 {
		t.Fatalf("%d clients, want 2", n)
	}
}

func TestClientReconnects(t *testing.T) {
	a, b := key.NewNode(), key.NewNode()
	r := startSimpleRelay(t, allow(a, b))
	ca, cb := connect(t, r.url, a), connect(t, r.url, b)
	// Cut b's connection from the relay's side, as a relay restart or a
	// NAT timeout would.
	r.srv.mu.RLock()
	sc := r.srv.clients[b.Public()]
	r.srv.mu.RUnlock()
	sc.nc.Close()
	tstest.Eventually(t, "b reconnected", func() bool {
		r.srv.mu.RLock()
		defer r.srv.mu.RUnlock()
		now := r.srv.clients[b.Public()]
		return now != nil && now != sc
	})
	if err := ca.Send(b.Public(), []byte("again")); err != nil {
		t.Fatal(err)
	}
	if p := recvPacket(t, cb); string(p.Data) != "again" {
		t.Fatalf("got %q", p.Data)
	}
}

func TestPingAndSendBeforeConnect(t *testing.T) {
	a, b := key.NewNode(), key.NewNode()
	r := startSimpleRelay(t, allow(a, b))
	cb := connect(t, r.url, b)
	ca, err := NewClient(ClientOptions{URLs: []string{r.url}, NodeKey: a})
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	// Sent before any connection exists: held, then delivered.
	if err := ca.Send(b.Public(), []byte("early")); err != nil {
		t.Fatal(err)
	}
	if p := recvPacket(t, cb); string(p.Data) != "early" || p.Src != a.Public() {
		t.Fatalf("got %q from %v", p.Data, p.Src)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if rtt, err := ca.Ping(ctx); err != nil || rtt <= 0 {
		t.Fatalf("ping: %v %v", rtt, err)
	}
}

func TestRateLimitedClientStillDelivers(t *testing.T) {
	a, b := key.NewNode(), key.NewNode()
	r := startRelay(t, ServerOptions{Authorizer: allow(a, b), RateLimit: 100_000})
	ca, cb := connect(t, r.url, a), connect(t, r.url, b)
	// Twice the burst: the limiter makes the relay read slower, it does
	// not drop, so everything arrives in order.
	const n = 150
	pkt := make([]byte, 1400)
	go func() {
		for i := range n {
			send(t, ca, b.Public(), append([]byte{byte(i)}, pkt...))
		}
	}()
	for i := range n {
		if p := recvPacket(t, cb); p.Data[0] != byte(i) {
			t.Fatalf("packet %d arrived as %d", i, p.Data[0])
		}
	}
	if st := r.srv.Stats(); st.DropsQueueFull != 0 {
		t.Fatalf("rate limit dropped: %+v", st)
	}
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		a, b := key.NewNode(), key.NewNode()
		r := startRelay(t, ServerOptions{Authorizer: allow(a, b)})
		defer r.close()
		var clients []*Client
		for _, k := range []key.NodePrivate{a, b} {
			c, _ := NewClient(ClientOptions{URLs: []string{r.url}, NodeKey: k})
			if err := c.Connect(context.Background()); err != nil {
				t.Fatal(err)
			}
			clients = append(clients, c)
		}
		clients[0].Send(b.Public(), []byte("x"))
		recvPacket(t, clients[1])
		for _, c := range clients {
			c.Close()
		}
	}()
	tstest.Eventually(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}

func TestRecheckDropsRevokedNode(t *testing.T) {
	a, b := key.NewNode(), key.NewNode()
	auth := allow(a, b)
	r := startRelay(t, ServerOptions{Authorizer: auth, Recheck: -1})
	connect(t, r.url, a)
	cb, err := NewClient(ClientOptions{URLs: []string{r.url}, NodeKey: b})
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	if err := cb.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	auth.mu.Lock()
	delete(auth.keys, b.Public())
	auth.mu.Unlock()
	r.srv.recheck(context.Background())
	tstest.Eventually(t, "b dropped and kept out", func() bool {
		st := r.srv.Stats()
		return st.Clients == 1 && st.Refused > 0
	})
	r.srv.mu.RLock()
	_, stillThere := r.srv.clients[a.Public()]
	r.srv.mu.RUnlock()
	if !stillThere {
		t.Fatal("recheck dropped an allowed node")
	}
}

func TestTLS(t *testing.T) {
	a, b := key.NewNode(), key.NewNode()
	r := startTLSRelay(t, ServerOptions{Authorizer: allow(a, b)})
	pool := x509.NewCertPool()
	pool.AddCert(r.hs.Certificate())

	tests := []struct {
		name    string
		tls     *tls.Config
		wantErr string
	}{
		{"trusted certificate", &tls.Config{RootCAs: pool}, ""},
		{"untrusted certificate", &tls.Config{}, "TLS handshake"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tryConnect(t, ClientOptions{URLs: []string{r.url}, NodeKey: a, TLSConfig: tt.tls})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				cb, err := tryConnect(t, ClientOptions{URLs: []string{r.url}, NodeKey: b, TLSConfig: tt.tls})
				if err != nil {
					t.Fatal(err)
				}
				c.Send(b.Public(), []byte("over TLS"))
				if p := recvPacket(t, cb); string(p.Data) != "over TLS" {
					t.Fatalf("got %q", p.Data)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want error mentioning %q", err, tt.wantErr)
			}
		})
	}
}

func TestServerSendsKeepalives(t *testing.T) {
	a := key.NewNode()
	r := startRelay(t, ServerOptions{Authorizer: allow(a), KeepAlive: 20 * time.Millisecond})
	cc := bareConn(t, r.url, a)
	if cc.info.KeepAliveMillis != 20 {
		t.Fatalf("server-info keepalive %d ms, want 20", cc.info.KeepAliveMillis)
	}
	cc.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	ft, _, err := readFrame(cc.br, MaxFramePayload)
	if err != nil || ft != FrameKeepAlive {
		t.Fatalf("got %v %v, want a keepalive from an idle relay", ft, err)
	}
}

// TestClientRedial: Redial drops the live connection and the client is
// connected again on a new one, and carries packets there.
func TestClientRedial(t *testing.T) {
	a, b := key.NewNode(), key.NewNode()
	r := startSimpleRelay(t, allow(a, b))
	ca, cb := connect(t, r.url, a), connect(t, r.url, b)
	ca.mu.Lock()
	before := ca.cur
	ca.mu.Unlock()
	ca.Redial()
	tstest.Eventually(t, "a new connection after Redial", func() bool {
		ca.mu.Lock()
		defer ca.mu.Unlock()
		return ca.cur != nil && ca.cur != before
	})
	if err := ca.Send(b.Public(), []byte("after redial")); err != nil {
		t.Fatal(err)
	}
	if p := recvPacket(t, cb); string(p.Data) != "after redial" || p.Src != a.Public() {
		t.Fatalf("b got %+v", p)
	}
}
