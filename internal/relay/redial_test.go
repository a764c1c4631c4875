package relay

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"weft/internal/key"
)

// pipeRelay serves a real relay Server over in-memory pipes, so that a
// client can connect inside a synctest bubble. Its dialer fails while
// down is set and hangs (until the dial's context ends) while hang is.
type pipeRelay struct {
	srv *Server

	mu    sync.Mutex
	dials []time.Time // when each dial began
	down  bool
	hang  bool
	// deaf makes every connection swallow what the client writes, as a
	// TCP connection whose NAT mapping is gone does, silently.
	deaf   bool
	served sync.WaitGroup
}

func (p *pipeRelay) setDeaf(deaf bool) {
	p.mu.Lock()
	p.deaf = deaf
	p.mu.Unlock()
}

func (p *pipeRelay) isDeaf() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.deaf
}

func newPipeRelay(t *testing.T) *pipeRelay {
	srv, err := NewServer(ServerOptions{Authorizer: AuthorizerFunc(func(context.Context, key.NodePublic) (bool, error) { return true, nil })})
	if err != nil {
		t.Fatal(err)
	}
	return &pipeRelay{srv: srv}
}

func (p *pipeRelay) set(down, hang bool) {
	p.mu.Lock()
	p.down, p.hang = down, hang
	p.mu.Unlock()
}

func (p *pipeRelay) dialTimes() []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Time(nil), p.dials...)
}

func (p *pipeRelay) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	p.mu.Lock()
	p.dials = append(p.dials, time.Now())
	down, hang := p.down, p.hang
	p.mu.Unlock()
	if hang {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if down {
		return nil, errors.New("network is unreachable")
	}
	client, mid := net.Pipe()
	server, back := net.Pipe()
	p.served.Add(3)
	go func() { // client to server, unless deaf
		defer p.served.Done()
		defer back.Close()
		buf := make([]byte, 4096)
		for {
			n, err := mid.Read(buf)
			if err != nil {
				return
			}
			if !p.isDeaf() {
				if _, err := back.Write(buf[:n]); err != nil {
					return
				}
			}
		}
	}()
	go func() { // server to client
		defer p.served.Done()
		defer mid.Close()
		io.Copy(mid, back)
	}()
	go func() {
		defer p.served.Done()
		br := bufio.NewReader(server)
		if _, err := http.ReadRequest(br); err != nil {
			server.Close()
			return
		}
		fmt.Fprintf(server, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\nConnection: Upgrade\r\n\r\n", upgradeToken)
		p.srv.serveConn(server, br, "pipe")
	}()
	return client, nil
}

func (p *pipeRelay) close() {
	p.srv.Close()
	p.served.Wait()
}

// TestRedialReconnectsAtOnce checks, on synctest's fake clock, that
// Redial reconnects with no wait whatever the client went through before:
// address changes seconds apart (each Redial cutting a connection only
// seconds old), a relay that was unreachable long enough for the backoff
// to grow, and a dial hanging on a dead address. Before Redial reset the
// backoff, each of these waited a backoff that grew with every change, or
// the dial's full timeout.
func TestRedialReconnectsAtOnce(t *testing.T) {
	const minWait, maxWait = time.Second, 30 * time.Second
	tests := []struct {
		name string
		// before brings the client to the state in which Redial is
		// called; it runs with the client connected.
		before func(c *Client, p *pipeRelay)
	}{
		{"connected", func(c *Client, p *pipeRelay) {
			time.Sleep(2 * time.Second)
		}},
		{"backing-off-after-failures", func(c *Client, p *pipeRelay) {
			p.set(true, false)
			c.Redial()
			time.Sleep(time.Minute) // attempts fail; the backoff grows
			p.set(false, false)
		}},
		{"dial-hanging", func(c *Client, p *pipeRelay) {
			p.set(false, true)
			c.Redial()
			synctest.Wait() // the new dial hangs
			time.Sleep(time.Second)
			p.set(false, false)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := newPipeRelay(t)
				defer p.close()
				c, err := NewClient(ClientOptions{URLs: []string{"http://relay.test"}, NodeKey: key.NewNode(),
					Dialer: p.dial, MinBackoff: minWait, MaxBackoff: maxWait})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if err := c.Connect(t.Context()); err != nil {
					t.Fatal(err)
				}
				// Five changes two seconds apart: each must reconnect at
				// once, not after a backoff grown by the ones before.
				for round := range 5 {
					tt.before(c, p)
					c.mu.Lock()
					old := c.cur
					c.mu.Unlock()
					t0 := time.Now()
					c.Redial()
					synctest.Wait() // the old connection, if any, is gone
					ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
					cur, err := c.waitUp(ctx)
					cancel()
					if err != nil {
						t.Fatalf("round %d: not connected again: %v", round, err)
					}
					if old != nil && cur == old {
						t.Fatalf("round %d: Redial kept the old connection", round)
					}
					if d := time.Since(t0); d >= minWait/2 {
						t.Fatalf("round %d: reconnected %v after Redial, want at once (%d dials so far)", round, d, len(p.dialTimes()))
					}
				}
			})
		})
	}
}

// TestCheckRedialsADeafRelay: Check pings the relay and, when no pong
// comes within CheckTimeout (the connection swallows what we write, as
// one through a NAT that forgot its mapping does), dials again; a relay
// that answers is left alone.
func TestCheckRedialsADeafRelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPipeRelay(t)
		defer p.close()
		c, err := NewClient(ClientOptions{URLs: []string{"http://relay.test"}, NodeKey: key.NewNode(),
			Dialer: p.dial, MinBackoff: time.Second, MaxBackoff: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Connect(t.Context()); err != nil {
			t.Fatal(err)
		}
		c.Check()
		time.Sleep(2 * CheckTimeout)
		if n := len(p.dialTimes()); n != 1 {
			t.Fatalf("a relay that answers was dialled %d times after Check, want once", n)
		}
		p.setDeaf(true)
		c.Check()
		time.Sleep(CheckTimeout / 2)
		synctest.Wait()
		if n := len(p.dialTimes()); n != 1 {
			t.Fatalf("dialled again %v into the check, before its timeout", CheckTimeout/2)
		}
		p.setDeaf(false) // the next connection answers
		time.Sleep(CheckTimeout)
		synctest.Wait()
		if n := len(p.dialTimes()); n != 2 {
			t.Fatalf("%d dials after a check the relay did not answer, want 2", n)
		}
		if _, err := c.waitUp(t.Context()); err != nil {
			t.Fatal(err)
		}
	})
}
