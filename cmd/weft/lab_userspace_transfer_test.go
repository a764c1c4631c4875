//go:build linux

package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"golang.org/x/net/proxy"

	"weft/internal/localapi"
)

// TestLabUserspaceSOCKS5Transfer sends fixed-size streams from busan (in
// userspace mode, its own stack as the TCP sender) through its SOCKS5
// server to a listener on pc's tailnet address, each checked byte for
// byte, and then checks that busan's stack lost no packet on its way to
// WireGuard: a stack whose link drops packets when WireGuard reads slower
// than it sends stalled such streams (docs/benchmarks.md). Each run's
// throughput is logged, not asserted.
func TestLabUserspaceSOCKS5Transfer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	l := startUserspaceLab(t, ctx)
	pcTN := l.tailnetAddr("pc")
	busan, pc := l.lab.Node("busan"), l.lab.Node("pc")
	if _, err := l.tn.CLI(ctx, "busan", "ping", "-c", "5", "pc"); err != nil {
		t.Fatalf("busan cannot ping pc: %v", err)
	}
	d, err := proxy.SOCKS5("tcp", usSOCKS, nil, nodeDialer{busan})
	if err != nil {
		t.Fatal(err)
	}
	const size, runs = 32 << 20, 5
	for i := range runs {
		took, err := sendThrough(ctx, d.(proxy.ContextDialer).DialContext, pc, pcTN.String(), size, uint64(i))
		if err != nil {
			t.Fatalf("run %d: %v", i+1, err)
		}
		t.Logf("run %d: %d MiB in %v, %.1f Mbit/s", i+1, size>>20, took.Round(time.Millisecond), float64(size)*8/took.Seconds()/1e6)
	}
	var st localapi.Status
	if err := json.Unmarshal([]byte(l.cli("busan", "status", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	ns := st.Netstack
	if ns == nil {
		t.Fatal("busan's status has no netstack counters")
	}
	t.Logf("busan's stack: %+v", *ns)
	if ns.LinkDrops != 0 {
		t.Errorf("busan's stack dropped %d of %d packets on the way to WireGuard; it must wait for room instead", ns.LinkDrops, ns.LinkHanded)
	}
	if ns.LinkHanded == 0 || ns.LinkRead == 0 {
		t.Errorf("busan's link counters did not move: %+v", *ns)
	}
}

// sendThrough sends size pseudo-random bytes (from seed) through dial to a
// listener on srv at addr, and checks that the listener received exactly
// them; it returns how long the transfer took. A transfer gets 2 minutes.
func sendThrough(ctx context.Context, dial dialFunc, srv interface {
	Listen(network, addr string) (net.Listener, error)
}, addr string, size int64, seed uint64) (time.Duration, error) {
	ln, err := srv.Listen("tcp4", net.JoinHostPort(addr, "0"))
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	type result struct {
		n   int64
		sum [32]byte
		err error
	}
	got := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- result{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Minute))
		h := sha256.New()
		n, err := io.Copy(h, c)
		var r result
		r.n, r.err = n, err
		copy(r.sum[:], h.Sum(nil))
		got <- r
	}()
	src := io.LimitReader(rand.NewChaCha8(seedBytes(seed)), size)
	want := sha256.New()
	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	c, err := dial(dctx, "tcp4", ln.Addr().String())
	if err != nil {
		return 0, fmt.Errorf("dial through SOCKS5: %w", err)
	}
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	if _, err := io.Copy(c, io.TeeReader(src, want)); err != nil {
		c.Close()
		return 0, fmt.Errorf("send: %w", err)
	}
	c.Close()
	r := <-got
	took := time.Since(start)
	switch {
	case r.err != nil:
		return 0, fmt.Errorf("receive after %d bytes: %w", r.n, r.err)
	case r.n != size:
		return 0, fmt.Errorf("received %d bytes, sent %d", r.n, size)
	case r.sum != [32]byte(want.Sum(nil)):
		return 0, fmt.Errorf("received %d bytes that differ from those sent", r.n)
	}
	return took, nil
}

func seedBytes(s uint64) (b [32]byte) {
	for i := range 8 {
		b[i] = byte(s >> (8 * i))
	}
	return b
}
