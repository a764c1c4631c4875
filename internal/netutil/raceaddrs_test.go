package netutil

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	"weft/internal/tstest"
)

func TestRaceAddrs(t *testing.T) {
	ips := func(s ...string) []netip.Addr {
		var out []netip.Addr
		for _, a := range s {
			out = append(out, netip.MustParseAddr(a))
		}
		return out
	}
	tests := []struct {
		name     string
		hostport string
		resolved []netip.Addr
		lookErr  error
		want     []string
		wantErr  bool
	}{
		{name: "ipv4 literal", hostport: "192.0.2.1:443", want: []string{"192.0.2.1:443"}},
		{name: "ipv6 literal", hostport: "[2001:db8::1]:443", want: []string{"[2001:db8::1]:443"}},
		{name: "name, families alternate after the first", hostport: "ctl.example:8443",
			resolved: ips("2001:db8::1", "2001:db8::2", "192.0.2.1", "192.0.2.2"),
			want:     []string{"[2001:db8::1]:8443", "192.0.2.1:8443", "[2001:db8::2]:8443", "192.0.2.2:8443"}},
		{name: "mapped ipv4 unmapped", hostport: "ctl.example:80", resolved: ips("::ffff:192.0.2.7"),
			want: []string{"192.0.2.7:80"}},
		{name: "lookup fails", hostport: "ctl.example:80", lookErr: errors.New("no such host"), wantErr: true},
		{name: "no address", hostport: "ctl.example:80", wantErr: true},
		{name: "no port", hostport: "ctl.example", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lookup := func(ctx context.Context, host string) ([]netip.Addr, error) {
				if host != "ctl.example" {
					t.Errorf("looked up %q", host)
				}
				return tt.resolved, tt.lookErr
			}
			got, err := RaceAddrs(context.Background(), lookup, tt.hostport)
			if (err != nil) != tt.wantErr {
				t.Fatalf("RaceAddrs(%q) error = %v, want error %v", tt.hostport, err, tt.wantErr)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("RaceAddrs(%q) = %q, want %q", tt.hostport, got, tt.want)
			}
		})
	}
}

// TestDialTLSRaceStalledAddress: the name's preferred address connects
// but never answers the ClientHello; DialTLSRace completes TLS with the
// other address, verifying the URL's name, well before its context ends,
// and closes the stalled connection.
func TestDialTLSRaceStalledAddress(t *testing.T) {
	stalledLn, workingLn := tstest.StallAndWork(t)
	stall := tstest.NewStallListener(t, stalledLn)
	hs := httptest.NewUnstartedServer(http.NotFoundHandler())
	hs.Listener.Close()
	hs.Listener = workingLn
	hs.StartTLS() // its certificate names example.com
	t.Cleanup(hs.Close)
	pool := x509.NewCertPool()
	pool.AddCert(hs.Certificate())
	stallIP := stalledLn.Addr().(*net.TCPAddr).AddrPort().Addr()
	lookup := func(context.Context, string) ([]netip.Addr, error) {
		return []netip.Addr{stallIP, netip.MustParseAddr("127.0.0.1")}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	port := strconv.Itoa(workingLn.Addr().(*net.TCPAddr).Port)
	c, err := DialTLSRace(ctx, nil, lookup, "example.com:"+port, &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatalf("DialTLSRace (stuck on the stalled address?): %v", err)
	}
	defer c.Close()
	if got := c.(*tls.Conn).ConnectionState().ServerName; got != "example.com" {
		t.Errorf("TLS server name %q, want example.com", got)
	}
	stall.LostRace(t, c.RemoteAddr().String(), workingLn)
}
