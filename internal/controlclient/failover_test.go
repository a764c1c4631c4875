package controlclient_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"weft/internal/control"
	"weft/internal/controlclient"
	"weft/internal/key"
	"weft/internal/tstest"
	"weft/internal/tstest/controltest"
	"weft/internal/wire"
)

// TestFailsOverToNextServer: a node given several servers of one tailnet
// (one store, one key) registers through the first that answers, and when
// the server of its stream dies it streams from the next.
func TestFailsOverToNextServer(t *testing.T) {
	e := controltest.New(t)
	srvB, err := control.New(context.Background(), control.Config{Store: e.Store, Key: e.Key, BatchWindow: 5 * time.Millisecond, RegisterRate: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer srvB.Close()
	hsB := httptest.NewServer(srvB.Handler())
	defer hsB.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there now

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := controlclient.New(controlclient.Options{
		ServerURL:  dead + ", " + e.URL + "/," + hsB.URL,
		MachineKey: key.NewMachine(), NodeKey: key.NewNode(), DiscoKey: key.NewDisco().Public(),
		Hostinfo:   &wire.Hostinfo{Hostname: "n", OS: "linux"},
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Register(ctx, e.AuthKey(false), key.NodePublic{}); err != nil {
		t.Fatalf("Register past a dead server: %v", err)
	}
	if c.Server() != e.URL {
		t.Fatalf("registered through %s, want %s", c.Server(), e.URL)
	}
	run := make(chan error, 1)
	go func() { run <- c.Run(ctx) }()
	tstest.Eventually(t, "a map from A", func() bool { ok, _ := c.Connected(); return ok && c.NetMap() != nil })

	// A dies: its streams end and nothing answers at its URL.
	e.SetHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "gone", http.StatusServiceUnavailable)
	}))
	e.Server.Close()
	tstest.Eventually(t, "streaming from B", func() bool {
		ok, _ := c.Connected()
		return ok && c.Server() == hsB.URL
	})
	cancel()
	if err := <-run; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v", err)
	}
}

func TestServerURLs(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"http://a:8080", []string{"http://a:8080"}},
		{"http://a:8080/, http://b:8080,,http://a:8080", []string{"http://a:8080", "http://b:8080"}},
		{" , ", nil},
	}
	for _, tt := range tests {
		got := controlclient.ServerURLs(tt.in)
		if len(got) != len(tt.want) {
			t.Fatalf("ServerURLs(%q) = %q, want %q", tt.in, got, tt.want)
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Fatalf("ServerURLs(%q) = %q, want %q", tt.in, got, tt.want)
			}
		}
	}
	if !controlclient.SameTailnet("http://a,http://b", "http://b") || controlclient.SameTailnet("http://a", "http://b") {
		t.Fatal("SameTailnet: wrong answer")
	}
	if err := controlclient.CheckServerURL("http://a:8080,ctrl.example"); err == nil {
		t.Fatal("CheckServerURL passed a list with a URL without a scheme")
	}
}
