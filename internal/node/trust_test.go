package node_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"weft/internal/localapi"
	"weft/internal/node"
	"weft/internal/tstest"
	"weft/internal/tstest/controltest"
)

// trustEngine is a recEngine that takes new trust in place, recording it.
type trustEngine struct {
	recEngine
	tmu   sync.Mutex
	trust []*tls.Config
}

func (e *trustEngine) SetTLSConfig(tc *tls.Config) error {
	e.tmu.Lock()
	defer e.tmu.Unlock()
	e.trust = append(e.trust, tc)
	return nil
}

func (e *trustEngine) trusted() []*tls.Config {
	e.tmu.Lock()
	defer e.tmu.Unlock()
	return append([]*tls.Config(nil), e.trust...)
}

// TestUpNewCAOnARunningNode: a node that is up over TLS with a private
// CA's certificate loses its server when the server restarts with a
// certificate from another CA, and says it does not trust it. `weft up
// --ca-file` with a CA that did not sign the server's certificate is
// refused and changes nothing; with the new CA, the running control
// client and data plane take it in place (the data plane is not started
// again) and the node streams again.
func TestUpNewCAOnARunningNode(t *testing.T) {
	e := controltest.New(t)
	ctx := context.Background()
	ca1, ca2, other := tstest.NewCA(t, "first CA"), tstest.NewCA(t, "second CA"), tstest.NewCA(t, "unrelated CA")
	ts := e.StartTLS(ca1.Issue(t, "127.0.0.1"))
	eng := &trustEngine{}
	var starts atomic.Int32
	d, st := dataPlaneDaemon(t, eng, &starts)
	if _, err := d.Up(ctx, localapi.UpRequest{ServerURL: ts.URL, AuthKey: e.AuthKey(false), Hostname: "busan", ServerCA: string(ca1.PEM)}); err != nil {
		t.Fatal(err)
	}
	running := func() bool { s, err := d.Status(ctx); return err == nil && s.BackendState == localapi.StateRunning }
	tstest.Eventually(t, "up over TLS with the first CA", running)

	ts.SetCert(ca2.Issue(t, "127.0.0.1"))
	e.Start(e.Key) // the server restarts with its new certificate
	tstest.Eventually(t, "the node says it does not trust the new certificate", func() bool {
		s, err := d.Status(ctx)
		return err == nil && s.BackendState != localapi.StateRunning && strings.Contains(s.LastError, "--ca-file")
	})

	_, err := d.Up(ctx, localapi.UpRequest{ServerCA: string(other.PEM)})
	if err == nil || !strings.Contains(err.Error(), "did not sign") || !strings.Contains(err.Error(), "nothing changed") {
		t.Fatalf("up --ca-file with a CA that did not sign the server's certificate: %v; want a refusal", err)
	}
	if p, _ := st.LoadPrefs(); p.ServerCA != string(ca1.PEM) || len(eng.trusted()) != 0 {
		t.Fatalf("a refused --ca-file changed the saved CA (%v) or the data plane's trust (%d)", p.ServerCA != string(ca1.PEM), len(eng.trusted()))
	}

	if _, err := d.Up(ctx, localapi.UpRequest{ServerCA: string(ca2.PEM)}); err != nil {
		t.Fatal(err)
	}
	tstest.Eventually(t, "streaming again with the second CA", running)
	if p, _ := st.LoadPrefs(); p.ServerCA != string(ca2.PEM) {
		t.Fatal("the new CA was not saved")
	}
	if n := starts.Load(); n != 1 || eng.isClosed() {
		t.Fatalf("data plane started %d times, closed %v; want the first one kept", n, eng.isClosed())
	}
	trust := eng.trusted()
	if len(trust) != 1 {
		t.Fatalf("the data plane was given new trust %d times, want once", len(trust))
	}
	if _, err := ca2.Cert().Verify(x509.VerifyOptions{Roots: trust[0].RootCAs}); err != nil {
		t.Fatalf("the data plane's new trust does not hold the second CA: %v", err)
	}
}

// TestServerCA: what the daemon tells `weft up`'s interactive login to
// trust for a server: its own --ca-file always, and the CA the node keeps
// with its server only for that server (or its tailnet's list).
func TestServerCA(t *testing.T) {
	e := controltest.New(t)
	ctx := context.Background()
	daemonCA, nodeCA := tstest.NewCA(t, "daemon CA"), tstest.NewCA(t, "node CA")
	ts := e.StartTLS(nodeCA.Issue(t, "127.0.0.1"))
	d, _ := newDaemonWith(t, node.DaemonConfig{CAPEM: daemonCA.PEM})
	if _, err := d.Up(ctx, localapi.UpRequest{ServerURL: ts.URL, AuthKey: e.AuthKey(false), ServerCA: string(nodeCA.PEM)}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		server       string
		daemon, kept bool
	}{
		{"", true, true},
		{ts.URL, true, true},
		{"https://other.example," + ts.URL, true, true},
		{"https://other.example", true, false},
	} {
		pem, err := d.ServerCA(ctx, c.server)
		if err != nil {
			t.Fatal(err)
		}
		hasDaemon := strings.Contains(pem, strings.TrimSpace(string(daemonCA.PEM)))
		hasKept := strings.Contains(pem, strings.TrimSpace(string(nodeCA.PEM)))
		if hasDaemon != c.daemon || hasKept != c.kept {
			t.Errorf("ServerCA(%q): daemon's CA %v, node's %v; want %v, %v", c.server, hasDaemon, hasKept, c.daemon, c.kept)
		}
	}
}
