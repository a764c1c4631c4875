package controlclient_test

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"weft/internal/controlclient"
	"weft/internal/key"
	"weft/internal/netutil"
	"weft/internal/tstest"
	"weft/internal/tstest/controltest"
	"weft/internal/wire"
)

// TestSetTLSConfig serves the control server over TLS with a certificate
// from one private CA, then from another (the server's certificate was
// replaced): the running client, trusting the first CA, cannot reconnect
// and says the certificate is not trusted and what to do; SetTLSConfig
// with the second CA (`weft up --ca-file NEW` on a running node) makes
// the same client, in the same Run, stream again.
func TestSetTLSConfig(t *testing.T) {
	e := controltest.New(t)
	ca1, ca2 := tstest.NewCA(t, "first CA"), tstest.NewCA(t, "second CA")
	ts := e.StartTLS(ca1.Issue(t, "127.0.0.1"))
	trust := func(ca *tstest.CA) *tls.Config {
		tc, err := netutil.TrustTLS(ca.PEM)
		if err != nil {
			t.Fatal(err)
		}
		return tc
	}
	c, err := controlclient.New(controlclient.Options{
		ServerURL:  ts.URL,
		MachineKey: key.NewMachine(), NodeKey: key.NewNode(), DiscoKey: key.NewDisco().Public(),
		Hostinfo:   &wire.Hostinfo{Hostname: "n", OS: "linux"},
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		TLSConfig: trust(ca1),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := c.Register(ctx, e.AuthKey(false), key.NodePublic{}); err != nil {
		t.Fatal(err)
	}
	run := make(chan error, 1)
	go func() { run <- c.Run(ctx) }()
	tstest.Eventually(t, "streaming with the first CA", func() bool { ok, _ := c.Connected(); return ok })

	ts.SetCert(ca2.Issue(t, "127.0.0.1"))
	e.Start(e.Key) // the server restarted with its new certificate
	tstest.Eventually(t, "refused for the new certificate, saying what to do", func() bool {
		ok, err := c.Connected()
		return !ok && err != nil && strings.Contains(err.Error(), "does not trust") && strings.Contains(err.Error(), "--ca-file")
	})
	c.SetTLSConfig(trust(ca2))
	tstest.Eventually(t, "streaming again with the second CA", func() bool { ok, _ := c.Connected(); return ok })
	cancel()
	<-run
}
