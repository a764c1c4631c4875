package httpproxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// TestProxy checks plain HTTP forwarding and CONNECT: the proxy dials the
// address the client named (through the dialer it was given) and bytes
// cross both ways.
func TestProxy(t *testing.T) {
	web, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer web.Close()
	go http.Serve(web, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s", r.Host)
	}))
	var mu sync.Mutex
	var asked []string
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		asked = append(asked, addr)
		mu.Unlock()
		if strings.HasPrefix(addr, "down.") {
			return nil, fmt.Errorf("no route")
		}
		var d net.Dialer
		return d.DialContext(ctx, network, web.Addr().String())
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go Serve(ctx, ln, dial, nil)
	purl, _ := url.Parse("http://" + ln.Addr().String())
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(purl)}}

	resp, err := client.Get("http://busan:8080/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello from busan:8080" {
		t.Errorf("plain HTTP through the proxy: %q", body)
	}
	resp, err = client.Get("http://down.example/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("unreachable host: status %d, want 502", resp.StatusCode)
	}

	// CONNECT, then HTTP inside the tunnel it opens.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "CONNECT mac:443 HTTP/1.1\r\nHost: mac:443\r\n\r\nGET / HTTP/1.1\r\nHost: inside\r\nConnection: close\r\n\r\n")
	br := bufio.NewReader(c)
	cr, err := http.ReadResponse(br, nil)
	if err != nil || cr.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", cr, err)
	}
	inner, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(inner.Body)
	if string(body) != "hello from inside" {
		t.Errorf("through CONNECT: %q", body)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"busan:8080", "down.example:80", "mac:443"}
	if strings.Join(asked, " ") != strings.Join(want, " ") {
		t.Errorf("proxy dialed %q, want %q", asked, want)
	}
}
