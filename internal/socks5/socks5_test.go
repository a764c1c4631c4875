package socks5

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/net/proxy"
)

func TestReadRequest(t *testing.T) {
	cases := []struct {
		name string
		in   []byte
		want string
		err  error
	}{
		{"ipv4", []byte{5, 1, 0, 1, 100, 64, 0, 2, 0, 80}, "100.64.0.2:80", nil},
		{"ipv6", append(append([]byte{5, 1, 0, 4}, net.ParseIP("fd7a::2").To16()...), 1, 187), "[fd7a::2]:443", nil},
		{"name", append(append([]byte{5, 1, 0, 3, 5}, "busan"...), 0, 22), "busan:22", nil},
		{"bind is not served", []byte{5, 2, 0, 1, 1, 2, 3, 4, 0, 80}, "", errCommand},
		{"udp associate is not served", []byte{5, 3, 0, 1, 1, 2, 3, 4, 0, 80}, "", errCommand},
		{"unknown address type", []byte{5, 1, 0, 9}, "", errAddrType},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ReadRequest(bytes.NewReader(c.in))
			if got != c.want || !errors.Is(err, c.err) {
				t.Errorf("ReadRequest = %q, %v; want %q, %v", got, err, c.want, c.err)
			}
		})
	}
	for _, bad := range [][]byte{{}, {4, 1, 0, 1}, {5, 1, 0, 1, 1, 2}, {5, 1, 0, 3, 0, 0, 80}, {5, 1, 0, 3, 5, 'a'}, append(append([]byte{5, 1, 0, 3, 3}, "a:b"...), 0, 1)} {
		if _, err := ReadRequest(bytes.NewReader(bad)); err == nil {
			t.Errorf("ReadRequest(%v) accepted a malformed request", bad)
		}
	}
}

func FuzzReadRequest(f *testing.F) {
	f.Add([]byte{5, 1, 0, 1, 100, 64, 0, 2, 0, 80})
	f.Add(append(append([]byte{5, 1, 0, 3, 5}, "busan"...), 0, 22))
	f.Fuzz(func(t *testing.T, b []byte) {
		addr, err := ReadRequest(bytes.NewReader(b))
		if err != nil {
			return
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			t.Fatalf("accepted request gave %q, which is no host:port: %v", addr, err)
		}
	})
}

// TestConnectThroughServer drives the server with x/net's SOCKS5 client
// and checks where the server dialed and that bytes cross both ways.
func TestConnectThroughServer(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	var asked []string
	srv := &Server{Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		asked = append(asked, addr)
		if addr == "refused.example:1" {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", "127.0.0.1:1")
		}
		var d net.Dialer
		return d.DialContext(ctx, network, echo.Addr().String())
	}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Error(err)
		}
	}()
	d, err := proxy.SOCKS5("tcp", ln.Addr().String(), nil, proxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	c, err := d.Dial("tcp", "busan:8080")
	if err != nil {
		t.Fatalf("dial through SOCKS5: %v", err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo through SOCKS5: %q, %v", buf, err)
	}
	c.Close()
	if _, err := d.Dial("tcp", "refused.example:1"); err == nil {
		t.Error("a refused connection was reported as made")
	}
	if len(asked) != 2 || asked[0] != "busan:8080" {
		t.Errorf("server dialed %q, want busan:8080 first", asked)
	}
}
