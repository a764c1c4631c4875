//go:build linux

package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"weft/internal/localapi"
	"weft/internal/netcheck"
	"weft/internal/netlab"
	"weft/internal/netlab/labtest"
	"weft/internal/scenario"
	"weft/internal/tstest"
)

// TestLabCAFileRelay runs a TLS-only weft server (--tls-cert from a
// private CA, https server URL, so its embedded relay is on the TLS port)
// and two nodes brought up with `weft up --ca-file`; busan's router drops
// all UDP, so busan reaches mac only through the relay, over TLS, and its
// netcheck measures the relay over HTTPS. Both need the CA: the relay
// connection and netcheck's probes trust what the control connection
// trusts.
//
// Then the server restarts with a certificate from another CA: busan
// says it does not trust it, and its relayed traffic stops. `weft up
// --ca-file` with a CA that did not sign the new certificate is refused
// and changes nothing; with the
// new CA, run on the live daemons, the control connection, the relay
// connection and netcheck take it in place and relayed traffic flows
// again.
func TestLabCAFileRelay(t *testing.T) {
	labtest.SkipUnlessRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	lab := labtest.Seed(t, func(tp *netlab.Topology) { tp.SetNAT("r-busan", netlab.NATUDPBlocked) })
	ctrl := lab.Node("ctrl").Addr().String()
	dir := t.TempDir()
	caFile, certFile, keyFile := tstest.NewCA(t, "first CA").WriteFiles(t, dir, ctrl)
	tn, err := scenario.Start(ctx, lab, scenario.Options{Weft: labtest.WeftBinary(t), Hosts: []string{"busan", "mac"},
		TLSCert: certFile, TLSKey: keyFile, CAFile: caFile, DaemonArgs: []string{"--verbose"}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tn.ServerURL, "https://") {
		t.Fatalf("server URL %s is not https", tn.ServerURL)
	}
	s := &suiteNet{t: t, ctx: ctx, lab: lab, tn: tn}
	macAddr := s.awaitPeer("busan", "mac")
	s.awaitPing("busan", macAddr, "busan pings mac through the relay on the server's TLS port")
	checkRelayed(s, "busan", "mac")
	checkNetcheckHTTPS(s, "busan")

	// The server's certificate changes to one from another CA.
	if err := tn.KillServer(); err != nil {
		t.Fatal(err)
	}
	tstest.NewCA(t, "second CA").WriteFiles(t, dir, ctrl) // over the files the server and the nodes were given
	if err := tn.StartServer(ctx); err != nil {
		t.Fatal(err)
	}
	err = scenario.WaitFor(ctx, 30*time.Second, "busan to say it does not trust the new certificate", func() (bool, error) {
		st, err := s.status("busan")
		return err == nil && st.BackendState != localapi.StateRunning && strings.Contains(st.LastError, "does not trust"), err
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.pings("busan", macAddr) {
		t.Fatal("busan still reaches mac through a relay whose certificate it does not trust")
	}
	wrongCA, _, _ := tstest.NewCA(t, "unrelated CA").WriteFiles(t, t.TempDir(), ctrl)
	out, err := tn.CLI(ctx, "busan", "up", "--ca-file", wrongCA)
	if err == nil || !strings.Contains(string(out), "did not sign") || !strings.Contains(string(out), "nothing changed") {
		t.Fatalf("up --ca-file with a CA that did not sign the server's certificate: %v %s; want a refusal", err, out)
	}
	for _, h := range []string{"busan", "mac"} {
		if out, err := tn.CLI(ctx, h, "up", "--ca-file", caFile); err != nil {
			t.Fatalf("up --ca-file NEW on %s: %v %s", h, err, out)
		}
	}
	err = scenario.WaitFor(ctx, 30*time.Second, "busan streaming again", func() (bool, error) {
		st, err := s.status("busan")
		return err == nil && st.BackendState == localapi.StateRunning, err
	})
	if err != nil {
		t.Fatal(err)
	}
	s.awaitPing("busan", macAddr, "busan pings mac through the relay with the new CA")
	checkRelayed(s, "busan", "mac")
	checkNetcheckHTTPS(s, "busan")
}

// checkRelayed fails the test unless host's path to peer is the relay.
func checkRelayed(s *suiteNet, host, peer string) {
	s.t.Helper()
	if p := s.peer(host, peer); p == nil || p.Path.Kind != localapi.PathRelay {
		s.t.Fatalf("%s's path to %s: %+v; want the relay (its UDP is blocked)", host, peer, p)
	}
}

// checkNetcheckHTTPS runs `weft netcheck --json` on host (UDP blocked):
// the server's region must be measured over HTTPS, which needs the CA.
func checkNetcheckHTTPS(s *suiteNet, host string) {
	s.t.Helper()
	out, err := s.tn.CLI(s.ctx, host, "netcheck", "--json")
	if err != nil {
		s.t.Fatal(err)
	}
	var r netcheck.Report
	if err := json.Unmarshal(out, &r); err != nil {
		s.t.Fatalf("netcheck --json: %v\n%s", err, out)
	}
	if r.UDP || r.RegionLatencyVia[1] != "http" || r.RegionLatency[1] <= 0 {
		s.t.Fatalf("netcheck on %s: udp %v, region 1 via %q in %v; want measured over HTTPS", host, r.UDP, r.RegionLatencyVia[1], r.RegionLatency[1])
	}
}
