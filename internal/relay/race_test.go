package relay

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"weft/internal/key"
	"weft/internal/tstest"
	"weft/internal/wire"
)

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
			stalledLn, workingLn := tstest.StallAndWork(t)
			stall := tstest.NewStallListener(t, stalledLn)
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
			stall.LostRace(t, remote, workingLn)
		})
	}
}
