package relay

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"weft/internal/key"
	"weft/internal/tstest"
	"weft/internal/wire"
)

// stallListener accepts TCP connections and reads them forever without
// answering: a family whose connect works but whose later packets vanish
// (the TLS ClientHello or the upgrade request swallowed by a middlebox or
// a broken path MTU). It counts the connections and those the client
// closed.
type stallListener struct {
	ln net.Listener
	wg sync.WaitGroup

	mu               sync.Mutex
	accepted, closed int
}

func newStallListener(ln net.Listener) *stallListener {
	s := &stallListener{ln: ln}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.accepted++
			s.mu.Unlock()
			s.wg.Go(func() {
				defer c.Close()
				io.Copy(io.Discard, c) // until the client closes
				s.mu.Lock()
				s.closed++
				s.mu.Unlock()
			})
		}
	})
	return s
}

func (s *stallListener) counts() (accepted, closed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted, s.closed
}

// stallAndWork listens on one port at two loopback addresses: stalled
// (::1, the preferred family, or 127.0.0.2 where the machine has no IPv6)
// and working (127.0.0.1), and returns them with that port. It retries
// while the port is taken at the second address.
func stallAndWork(t *testing.T) (stalled, working net.Listener) {
	t.Helper()
	stallIP := "::1"
	if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
		t.Logf("no IPv6 loopback (%v): the stalled address is 127.0.0.2", err)
		stallIP = "127.0.0.2"
	} else {
		ln.Close()
	}
	for range 20 {
		w, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := strconv.Itoa(w.Addr().(*net.TCPAddr).Port)
		s, err := net.Listen("tcp", net.JoinHostPort(stallIP, port))
		if err == nil {
			return s, w
		}
		w.Close()
	}
	t.Fatal("no port free at both loopback addresses")
	return nil, nil
}

// TestStalledFamilyLoses: the relay's URL names an address whose TCP
// connects but which never answers the TLS ClientHello or the upgrade,
// and the map gives the relay a working ipv4 on the same port. The race
// covers the whole setup, so the client's first attempt connects through
// the ipv4 (a client that raced only the TCP connect would sit on the
// stalled connection until the handshake timeout, and Connect would
// report that attempt's failure), and the stalled connection is closed.
func TestStalledFamilyLoses(t *testing.T) {
	for _, scheme := range []string{"http", "https"} {
		t.Run(scheme, func(t *testing.T) {
			a := key.NewNode()
			stalledLn, workingLn := stallAndWork(t)
			stall := newStallListener(stalledLn)
			defer func() {
				stalledLn.Close()
				stall.wg.Wait()
			}()
			hs := httptest.NewUnstartedServer(nil)
			hs.Listener.Close()
			hs.Listener = workingLn
			r := mountRelay(t, hs, ServerOptions{Authorizer: allow(a)})
			var tc *tls.Config
			if scheme == "https" {
				hs.StartTLS() // its certificate names 127.0.0.1 and ::1
				pool := x509.NewCertPool()
				pool.AddCert(hs.Certificate())
				tc = &tls.Config{RootCAs: pool}
			} else {
				hs.Start()
			}
			stallAddr := stalledLn.Addr().(*net.TCPAddr)
			n := &wire.RelayNode{Name: "1a", RegionID: 1, Host: stallAddr.IP.String(), Port: stallAddr.Port,
				InsecureHTTP: scheme == "http", IPv4: netip.MustParseAddr("127.0.0.1")}
			c, err := tryConnect(t, ClientOptions{URLs: []string{RelayNodeURL(n)}, NodeKey: a, TLSConfig: tc,
				altAddrs: altAddrs([]*wire.RelayNode{n}), handshakeTimeout: 5 * time.Second})
			if err != nil {
				t.Fatalf("first attempt failed (it waited on the stalled address until the handshake timeout?): %v", err)
			}
			if got, want := c.ServerKey(), r.srv.PublicKey(); got != want {
				t.Errorf("connected to server key %v, want the relay's %v", got, want)
			}
			c.mu.Lock()
			remote := c.cur.nc.RemoteAddr().String()
			c.mu.Unlock()
			if remote != workingLn.Addr().String() {
				t.Errorf("connected to %s, want the working %s", remote, workingLn.Addr())
			}
			if accepted, _ := stall.counts(); accepted == 0 {
				t.Fatal("the stalled address was never dialled: the test did not exercise the race")
			}
			tstest.Eventually(t, "the stalled connection closed", func() bool {
				accepted, closed := stall.counts()
				return closed == accepted
			})
		})
	}
}
