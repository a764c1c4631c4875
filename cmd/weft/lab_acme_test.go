//go:build linux

package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"weft/internal/netlab"
	"weft/internal/netlab/labtest"
	"weft/internal/scenario"
	"weft/internal/tstest"
)

// TestLabACME runs `weft server --acme-domain` against pebble, a real
// ACME server (Debian's pebble package), in a lab of two public hosts:
// acme runs pebble and pebble-challtestsrv as its DNS (every name
// resolves to ctrl), ctrl runs weft server on port 443. The server
// registers an account, answers pebble's TLS-ALPN-01 challenge on its
// port and serves the certificate pebble issued: a TLS handshake with
// the domain as its name verifies against pebble's issuing root, read
// from pebble's management API. The server trusts pebble's own HTTPS
// certificate through SSL_CERT_FILE (a CA the test makes).
func TestLabACME(t *testing.T) {
	labtest.SkipUnlessRoot(t)
	pebble, err := exec.LookPath("pebble")
	if err != nil {
		t.Skip("pebble is not installed (apt-get install pebble); .ci/run installs it")
	}
	challsrv, err := exec.LookPath("pebble-challtestsrv")
	if err != nil {
		t.Skip("pebble-challtestsrv is not installed (it comes with Debian's pebble package)")
	}
	acmeAddr, ctrlAddr := netip.MustParseAddr("203.0.113.50"), netip.MustParseAddr("203.0.113.10")
	lab := labtest.Up(t, netlab.Topology{Name: "acme", Public: []netlab.PublicHost{
		{Name: "acme", Addr: acmeAddr}, {Name: "ctrl", Addr: ctrlAddr}}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	ca := tstest.NewCA(t, "weft test CA")
	caFile, certFile, keyFile := ca.WriteFiles(t, dir, acmeAddr.String())
	caPool := ca.Pool()
	cfg, err := json.Marshal(map[string]any{"pebble": map[string]any{
		"listenAddress": acmeAddr.String() + ":14000", "managementListenAddress": acmeAddr.String() + ":15000",
		"certificate": certFile, "privateKey": keyFile,
		"httpPort": 80, "tlsPort": 443, // where it validates: ctrl's weft server
	}})
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(cfgFile, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	acme, ctrl := lab.Node("acme"), lab.Node("ctrl")
	if _, err := acme.Start(ctx, "challtestsrv", challsrv, "-defaultIPv4", ctrlAddr.String(), "-defaultIPv6", "",
		"-dns01", acmeAddr.String()+":8053", "-http01", "", "-https01", "", "-tlsalpn01", "", "-management", acmeAddr.String()+":8055"); err != nil {
		t.Fatal(err)
	}
	// No random pause before validating, and no nonces refused at random:
	// the test is about weft's side.
	if _, err := acme.Start(ctx, "pebble", "/usr/bin/env", "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0",
		pebble, "-config", cfgFile, "-dnsserver", acmeAddr.String()+":8053"); err != nil {
		t.Fatal(err)
	}
	mgmt := &tls.Config{RootCAs: caPool, ServerName: acmeAddr.String()}
	var root []byte
	err = scenario.WaitFor(ctx, 30*time.Second, "pebble's issuing root from its management API", func() (bool, error) {
		c, err := tlsDial(ctx, ctrl, acmeAddr.String()+":15000", mgmt)
		if err != nil {
			return false, nil
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /roots/0 HTTP/1.0\r\nHost: %s\r\n\r\n", acmeAddr)
		b, _ := io.ReadAll(c)
		if i := indexPEM(b); i >= 0 {
			root = b[i:]
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(root) {
		t.Fatalf("pebble's root does not parse:\n%s", root)
	}

	const domain = "weft.example.com"
	if _, err := ctrl.Start(ctx, "server", "/usr/bin/env", "SSL_CERT_FILE="+caFile, labtest.WeftBinary(t), "server",
		"--listen", ":443", "--data-dir", filepath.Join(dir, "server"), "--server-url", "https://"+domain,
		"--stun-listen=", "--metrics-listen=", "--acme-domain", domain,
		"--acme-directory", "https://"+acmeAddr.String()+":14000/dir"); err != nil {
		t.Fatal(err)
	}
	var leaf *x509.Certificate
	last := ""
	err = scenario.WaitFor(ctx, 90*time.Second, "weft server serving a certificate for "+domain+" issued by pebble", func() (bool, error) {
		c, err := tlsDial(ctx, acme, ctrlAddr.String()+":443", &tls.Config{ServerName: domain, RootCAs: roots})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		defer c.Close()
		leaf = c.ConnectionState().PeerCertificates[0]
		return true, nil
	})
	if err != nil {
		t.Fatalf("%v (last: %s)", err, last)
	}
	if err := leaf.VerifyHostname(domain); err != nil {
		t.Fatal(err)
	}
	t.Logf("weft server serves %v, issued by %q", leaf.DNSNames, leaf.Issuer.CommonName)
	if _, err := os.Stat(filepath.Join(dir, "server", "acme")); err != nil {
		t.Fatalf("no ACME cache in the data directory: %v", err)
	}
}

// tlsDial connects from node n to addr and completes a TLS handshake.
func tlsDial(ctx context.Context, n *netlab.Node, addr string, cfg *tls.Config) (*tls.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	raw, err := n.DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := tls.Client(raw, cfg)
	if err := c.HandshakeContext(dctx); err != nil {
		raw.Close()
		return nil, err
	}
	return c, nil
}

// indexPEM is where the first PEM block starts in b, or -1.
func indexPEM(b []byte) int {
	const begin = "-----BEGIN CERTIFICATE-----"
	for i := 0; i+len(begin) <= len(b); i++ {
		if string(b[i:i+len(begin)]) == begin {
			return i
		}
	}
	return -1
}
