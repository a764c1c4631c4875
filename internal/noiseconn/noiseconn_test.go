package noiseconn

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"weft/internal/key"
)

// testServer runs an HTTP server whose control endpoint echoes everything
// it reads. Accept errors go to errs.
func testServer(t *testing.T, s *Server) (url string, errs chan error) {
	t.Helper()
	errs = make(chan error, 16)
	mux := http.NewServeMux()
	mux.HandleFunc(Path, func(w http.ResponseWriter, r *http.Request) {
		c, err := s.Accept(w, r)
		if err != nil {
			errs <- err
			return
		}
		defer c.Close()
		io.Copy(c, c)
	})
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	return ts.URL, errs
}

func dialCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestHandshakeAndEcho(t *testing.T) {
	serverKey := key.NewMachine()
	url, _ := testServer(t, &Server{Key: serverKey})
	machine := key.NewMachine()
	d := &Dialer{MachineKey: machine, ServerKey: serverKey.Public()}
	c, err := d.Dial(dialCtx(t), url)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	if c.Peer() != serverKey.Public() {
		t.Errorf("Peer = %v, want server key", c.Peer())
	}
	for _, size := range []int{1, 100, maxPlaintext, maxPlaintext + 1, 300_000} {
		t.Run("size", func(t *testing.T) {
			msg := make([]byte, size)
			rand.Read(msg)
			errc := make(chan error, 1)
			go func() { _, err := c.Write(msg); errc <- err }()
			got := make([]byte, size)
			if _, err := io.ReadFull(c, got); err != nil {
				t.Fatalf("read back %d bytes: %v", size, err)
			}
			if err := <-errc; err != nil {
				t.Fatalf("Write: %v", err)
			}
			if !bytes.Equal(got, msg) {
				t.Fatalf("echo of %d bytes differs", size)
			}
		})
	}
}

func TestServerSeesMachineKey(t *testing.T) {
	serverKey := key.NewMachine()
	got := make(chan key.MachinePublic, 1)
	s := &Server{Key: serverKey}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := s.Accept(w, r)
		if err != nil {
			t.Errorf("Accept: %v", err)
			return
		}
		got <- c.Peer()
		c.Close()
	}))
	defer ts.Close()
	machine := key.NewMachine()
	c, err := (&Dialer{MachineKey: machine, ServerKey: serverKey.Public()}).Dial(dialCtx(t), ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if p := <-got; p != machine.Public() {
		t.Errorf("server saw %v, want %v", p, machine.Public())
	}
}

func TestHandshakeRefusals(t *testing.T) {
	serverKey := key.NewMachine()
	url, errs := testServer(t, &Server{Key: serverKey})
	tests := []struct {
		name       string
		dialer     Dialer
		wantClient error
		wantServer error
	}{
		{"wrong server key", Dialer{MachineKey: key.NewMachine(), ServerKey: key.NewMachine().Public()}, ErrHandshake, ErrHandshake},
		{"newer node", Dialer{MachineKey: key.NewMachine(), ServerKey: serverKey.Public(), Version: 99}, ErrVersion, ErrVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tt.dialer.Dial(dialCtx(t), url)
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded, want error")
			}
			if !errors.Is(err, tt.wantClient) {
				t.Errorf("client error = %v, want %v", err, tt.wantClient)
			}
			select {
			case serr := <-errs:
				if !errors.Is(serr, tt.wantServer) {
					t.Errorf("server error = %v, want %v", serr, tt.wantServer)
				}
			case <-time.After(5 * time.Second):
				t.Error("server reported no error")
			}
		})
	}
}

func TestOlderServerRefused(t *testing.T) {
	serverKey := key.NewMachine()
	url, _ := testServer(t, &Server{Key: serverKey, Version: 7})
	_, err := (&Dialer{MachineKey: key.NewMachine(), ServerKey: serverKey.Public()}).Dial(dialCtx(t), url)
	if !errors.Is(err, ErrVersion) {
		t.Fatalf("Dial error = %v, want ErrVersion", err)
	}
	if !strings.Contains(err.Error(), "upgrade") {
		t.Errorf("error %q does not say what to do", err)
	}
}

func TestNotAnUpgrade(t *testing.T) {
	url, errs := testServer(t, &Server{Key: key.NewMachine()})
	resp, err := http.Post(url+Path, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired {
		t.Errorf("status = %d, want 426", resp.StatusCode)
	}
	if err := <-errs; !errors.Is(err, ErrNotUpgrade) {
		t.Errorf("server error = %v", err)
	}
}

// rawUpgrade opens a TCP connection and completes only the HTTP upgrade, so
// the test can send arbitrary bytes as the handshake.
func rawUpgrade(t *testing.T, url string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	io.WriteString(conn, "POST "+Path+" HTTP/1.1\r\nHost: x\r\nUpgrade: "+UpgradeProtocol+"\r\nConnection: Upgrade\r\n\r\n")
	want := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: " + UpgradeProtocol + "\r\nConnection: Upgrade\r\n\r\n"
	buf := make([]byte, len(want))
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != want {
		t.Fatalf("upgrade: %q %v", buf, err)
	}
	return conn
}

func TestBadHandshakeClosesOnlyThatConnection(t *testing.T) {
	serverKey := key.NewMachine()
	url, errs := testServer(t, &Server{Key: serverKey})
	tests := []struct {
		name string
		send []byte
		want error
	}{
		{"oversized", binary.BigEndian.AppendUint32(nil, HandshakeMaxSize+1), ErrFrameTooLarge},
		{"garbage", append(binary.BigEndian.AppendUint32(nil, 100), make([]byte, 100)...), ErrHandshake},
		{"truncated", append(binary.BigEndian.AppendUint32(nil, 100), make([]byte, 10)...), io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := rawUpgrade(t, url)
			conn.Write(tt.send)
			if tt.name == "truncated" {
				conn.(*net.TCPConn).CloseWrite()
			}
			if err := <-errs; !errors.Is(err, tt.want) {
				t.Errorf("server error = %v, want %v", err, tt.want)
			}
			// The server hangs up on this connection ...
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, err := conn.Read(make([]byte, 1)); err == nil {
				t.Errorf("read %d bytes after bad handshake, want close", n)
			}
			// ... and still serves others.
			c, err := (&Dialer{MachineKey: key.NewMachine(), ServerKey: serverKey.Public()}).Dial(dialCtx(t), url)
			if err != nil {
				t.Fatalf("good Dial after bad one: %v", err)
			}
			c.Close()
		})
	}
}

// pipePair returns two established Conns joined by an in-memory pipe.
func pipePair(t *testing.T) (client, server *Conn, clientRaw net.Conn) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	serverKey := key.NewMachine()
	type res struct {
		c   *Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := serverHandshake(b, b, serverKey, 1)
		ch <- res{c, err}
	}()
	cc, err := clientHandshake(a, a, key.NewMachine(), serverKey.Public(), 1)
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	return cc, r.c, a
}

func TestBadTransportFrames(t *testing.T) {
	tests := []struct {
		name string
		send []byte
		want error
	}{
		{"oversized", binary.BigEndian.AppendUint32(nil, MaxFrameSize+1), ErrFrameTooLarge},
		{"shorter than tag", append(binary.BigEndian.AppendUint32(nil, 3), 1, 2, 3), ErrMalformedFrame},
		{"forged", append(binary.BigEndian.AppendUint32(nil, 40), make([]byte, 40)...), ErrMalformedFrame},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, server, raw := pipePair(t)
			go raw.Write(tt.send)
			_, err := server.Read(make([]byte, 10))
			if !errors.Is(err, tt.want) {
				t.Fatalf("Read error = %v, want %v", err, tt.want)
			}
			// The error is sticky: the stream cannot be resynchronised.
			if _, err2 := server.Read(make([]byte, 10)); !errors.Is(err2, tt.want) {
				t.Errorf("second Read error = %v", err2)
			}
		})
	}
}

func TestPayloadRoundTrip(t *testing.T) {
	for _, p := range []handshakePayload{{Version: 1}, {Version: 65535, Error: "no"}} {
		got, err := decodePayload(p.encode())
		if err != nil || got != p {
			t.Errorf("round trip %+v = %+v, %v", p, got, err)
		}
	}
	for _, bad := range [][]byte{nil, []byte("weft"), []byte("xxxx\x00\x01"), append([]byte("weft\x00\x01"), 0xff)} {
		if _, err := decodePayload(bad); err == nil {
			t.Errorf("decodePayload(%q) succeeded", bad)
		}
	}
}
