package noiseconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"weft/internal/key"
	"weft/internal/tstest"
)

// TestDialRacesStalledAddress: the server's name resolves to two
// addresses, the preferred one's TCP connects but never answers (the TLS
// ClientHello or the upgrade swallowed), the other serves. Dial races the
// whole setup per address, so it connects through the working one long
// before its context ends (a dial that raced the TCP connect alone would
// sit on the stalled connection until then), and the stalled connection
// is closed.
func TestDialRacesStalledAddress(t *testing.T) {
	for _, scheme := range []string{"http", "https"} {
		t.Run(scheme, func(t *testing.T) {
			stalledLn, workingLn := tstest.StallAndWork(t)
			stall := tstest.NewStallListener(t, stalledLn)
			serverKey := key.NewMachine()
			s := &Server{Key: serverKey}
			mux := http.NewServeMux()
			mux.HandleFunc(Path, func(w http.ResponseWriter, r *http.Request) {
				if c, err := s.Accept(w, r); err == nil {
					defer c.Close()
					io.Copy(c, c)
				}
			})
			hs := httptest.NewUnstartedServer(mux)
			hs.Listener.Close()
			hs.Listener = workingLn
			var tc *tls.Config
			if scheme == "https" {
				hs.StartTLS() // its certificate names example.com
				pool := x509.NewCertPool()
				pool.AddCert(hs.Certificate())
				tc = &tls.Config{RootCAs: pool}
			} else {
				hs.Start()
			}
			t.Cleanup(hs.Close)
			stallIP := stalledLn.Addr().(*net.TCPAddr).AddrPort().Addr()
			lookup := func(ctx context.Context, host string) ([]netip.Addr, error) {
				if host != "example.com" {
					t.Errorf("looked up %q, want the URL's host example.com", host)
				}
				return []netip.Addr{stallIP, netip.MustParseAddr("127.0.0.1")}, nil
			}
			port := strconv.Itoa(workingLn.Addr().(*net.TCPAddr).Port)
			d := &Dialer{MachineKey: key.NewMachine(), ServerKey: serverKey.Public(), Lookup: lookup, TLSConfig: tc}
			// The context is the only bound: a dial stuck on the stalled
			// address fails with its end.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := d.Dial(ctx, scheme+"://example.com:"+port)
			if err != nil {
				t.Fatalf("Dial (stuck on the stalled address?): %v", err)
			}
			defer c.Close()
			stall.LostRace(t, c.RemoteAddr().String(), workingLn)
		})
	}
}
