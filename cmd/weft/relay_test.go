package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v3"

	"weft/internal/key"
	"weft/internal/relay"
	"weft/internal/tstest"
)

func TestRelayUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no server URL", []string{"relay"}, "--server-url is required"},
		{"cert without key", []string{"relay", "--server-url", "http://c", "--tls-cert", "c.pem"}, "both --tls-cert and --tls-key"},
		{"no secret", []string{"relay", "--server-url", "http://c", "--relay-secret-env", "WEFT_TEST_UNSET_SECRET"}, "no relay secret"},
		{"mesh without key", []string{"relay", "--server-url", "http://c", "--relay-secret-env", "PATH", "--mesh-with", "http://r2"}, "needs a mesh key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(context.Background(), tt.args, &out, &errb); code != 2 {
				t.Fatalf("exit %d, want 2; stderr: %s", code, errb.String())
			}
			if !strings.Contains(errb.String(), tt.want) {
				t.Fatalf("stderr %q lacks %q", errb.String(), tt.want)
			}
		})
	}
}

// keyList is a fixed allow list, standing in for the control server's store.
type keyList []key.NodePublic

func (l keyList) AllowedNodeKeys(context.Context) ([]key.NodePublic, error) { return l, nil }

// TestRelayCommand runs weft relay against a stand-in control server and
// sends a packet through it between two allowed nodes.
// TestRelayWrongSecretRefusesToStart: a relay whose secret the control
// server refuses (401) exits at once saying so, instead of running and
// refusing every node.
func TestRelayWrongSecretRefusesToStart(t *testing.T) {
	ctrl := httptest.NewServer(relay.NewAllowListHandler(keyList{}, "s3cret"))
	defer ctrl.Close()
	secretFile := filepath.Join(t.TempDir(), "relay-secret")
	if err := os.WriteFile(secretFile, []byte("wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errb bytes.Buffer
	code := run(ctx, []string{"relay", "--listen", "127.0.0.1:0", "--server-url", ctrl.URL, "--relay-secret-file", secretFile, "--stun-listen", "127.0.0.1:0"}, io.Discard, &errb)
	if code != 1 || !strings.Contains(errb.String(), "refused the relay secret") || !strings.Contains(errb.String(), "401") {
		t.Fatalf("exit %d, stderr %q; want 1 and the refused secret named", code, errb.String())
	}
}

func TestRelayCommand(t *testing.T) {
	a, b, stranger := key.NewNode(), key.NewNode(), key.NewNode()
	ctrl := httptest.NewServer(relay.NewAllowListHandler(keyList{a.Public(), b.Public()}, "s3cret"))
	defer ctrl.Close()
	secretFile := filepath.Join(t.TempDir(), "relay-secret")
	if err := os.WriteFile(secretFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // a small race with other listeners; loopback ports are plenty
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stunAddr := pc.LocalAddr().String()
	pc.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var errb tstest.Buffer
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"relay", "--listen", addr, "--server-url", ctrl.URL, "--relay-secret-file", secretFile, "--stun-listen", stunAddr}, io.Discard, &errb)
	}()

	url := "http://" + addr
	connect := func(k key.NodePrivate) (*relay.Client, error) {
		c, err := relay.NewClient(relay.ClientOptions{URLs: []string{url}, NodeKey: k, MinBackoff: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		defer ccancel()
		for {
			err := c.Connect(cctx)
			if err == nil || errors.Is(err, relay.ErrRefused) || cctx.Err() != nil {
				return c, err
			}
			time.Sleep(20 * time.Millisecond) // the relay is still starting
		}
	}
	ca, err := connect(a)
	if err != nil {
		t.Fatalf("a: %v; relay log: %s", err, errb.String())
	}
	cb, err := connect(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Send(b.Public(), []byte("through weft relay")); err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	m, err := cb.Recv(rctx)
	if p, ok := m.(relay.ReceivedPacket); err != nil || !ok || string(p.Data) != "through weft relay" {
		t.Fatalf("b got %#v, %v", m, err)
	}
	if _, err := connect(stranger); !errors.Is(err, relay.ErrRefused) {
		t.Fatalf("stranger: %v", err)
	}
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "weft_relay_packets_forwarded_total 1") {
		t.Fatalf("metrics lack the forwarded packet:\n%s", body)
	}

	t.Run("STUN", func(t *testing.T) {
		uc, err := net.Dial("udp", stunAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer uc.Close()
		buf := make([]byte, 1500)
		for attempt := 0; ; attempt++ {
			req := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
			uc.Write(req.Raw)
			uc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			n, err := uc.Read(buf)
			if err != nil {
				if attempt > 50 {
					t.Fatalf("no STUN answer: %v", err)
				}
				continue
			}
			res := &stun.Message{Raw: buf[:n]}
			var xor stun.XORMappedAddress
			if err := res.Decode(); err != nil {
				t.Fatal(err)
			}
			if err := xor.GetFrom(res); err != nil {
				t.Fatal(err)
			}
			if xor.String() != uc.LocalAddr().String() {
				t.Fatalf("STUN says %s, we are %s", xor, uc.LocalAddr())
			}
			return
		}
	})

	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Fatalf("exit %d; stderr: %s", c, errb.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("weft relay did not stop")
	}
}
