package netutil

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestServeConnsWaitsForHandlers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	var finished atomic.Bool
	done := make(chan error, 1)
	go func() {
		done <- ServeConns(ctx, ln, func(ctx context.Context, c net.Conn) {
			defer c.Close()
			close(started)
			<-ctx.Done()
			finished.Store(true)
		})
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	<-started
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("ServeConns after cancel = %v, want nil", err)
	}
	if !finished.Load() {
		t.Fatal("ServeConns returned before its handler did")
	}
}

func TestServeConnsAcceptError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	err = ServeConns(context.Background(), ln, func(context.Context, net.Conn) {})
	if err == nil || !strings.Contains(err.Error(), "accept") {
		t.Fatalf("ServeConns on a closed listener = %v, want an accept error", err)
	}
}

func TestClientTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	addr := srv.Listener.Addr().String()

	tests := []struct {
		name    string
		cfg     *tls.Config
		host    string
		wantErr bool
	}{
		// httptest's certificate names example.com and 127.0.0.1.
		{"name from host", &tls.Config{RootCAs: pool}, "example.com", false},
		{"explicit ServerName wins", &tls.Config{RootCAs: pool, ServerName: "example.com"}, "wrong.invalid", false},
		{"wrong host", &tls.Config{RootCAs: pool}, "wrong.invalid", true},
		{"nil config uses system roots", nil, "example.com", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			tc, err := ClientTLS(context.Background(), c, tt.cfg, tt.host)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ClientTLS err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && tc.ConnectionState().ServerName == "" {
				t.Error("handshake done without a server name")
			}
			if tt.cfg != nil && tt.name == "name from host" && tt.cfg.ServerName != "" {
				t.Error("ClientTLS changed the caller's config")
			}
		})
	}
}

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// TestSplice: bytes a proxy read early and the rest of the client's
// stream reach the far side, the client's end of stream reaches it as a
// half-close (the far side answers only after it), and the far side's
// answer and end of stream come back to the client.
func TestSplice(t *testing.T) {
	client, proxyIn := tcpPair(t)
	proxyOut, far := tcpPair(t)
	go func() {
		got, _ := io.ReadAll(far) // ends only at the client's half-close
		far.Write(append([]byte("reply to "), got...))
		far.Close()
	}()
	done := make(chan struct{})
	go func() {
		Splice(proxyIn, io.MultiReader(strings.NewReader("early "), proxyIn), proxyOut)
		close(done)
	}()
	client.Write([]byte("rest"))
	client.CloseWrite()
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(client)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "reply to early rest" {
		t.Fatalf("client got %q, want %q", got, "reply to early rest")
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Splice did not return after both directions ended")
	}
}
