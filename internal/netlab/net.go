//go:build linux

package netlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

// DialContext dials from inside the node's namespace. Only the socket's
// creation needs the namespace; the connection works from any goroutine.
func (n *Node) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// ListenPacket opens a packet socket (e.g. "udp4", ":0") in the node's
// namespace.
func (n *Node) ListenPacket(network, addr string) (net.PacketConn, error) {
	var c net.PacketConn
	err := n.Do(func() error {
		var err error
		c, err = net.ListenPacket(network, addr)
		return err
	})
	return c, err
}

// ListenUDP opens a UDP socket in the node's namespace.
func (n *Node) ListenUDP(addr netip.AddrPort) (*net.UDPConn, error) {
	var c *net.UDPConn
	err := n.Do(func() error {
		var err error
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		return err
	})
	return c, err
}

// Listen opens a stream listener in the node's namespace.
func (n *Node) Listen(network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := n.Do(func() error {
		var err error
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

// HTTPClient returns a client whose connections start in the node's
// namespace.
func (n *Node) HTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{DialContext: n.DialContext, DisableKeepAlives: true},
		Timeout:   10 * time.Second,
	}
}

// Ping sends count ICMP echo requests from the node to dst, one per
// interval, and returns the round-trip time of each reply in order. A
// request without a reply within timeout is an error.
func (n *Node) Ping(ctx context.Context, dst netip.Addr, count int, interval, timeout time.Duration) ([]time.Duration, error) {
	if !dst.Is4() {
		return nil, fmt.Errorf("netlab: ping %v: only IPv4", dst)
	}
	var c *icmp.PacketConn
	if err := n.Do(func() error {
		var err error
		c, err = icmp.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	}); err != nil {
		return nil, fmt.Errorf("netlab: ping from %s: %w", n.Name, err)
	}
	defer c.Close()
	id := os.Getpid() & 0xffff
	var rtts []time.Duration
	buf := make([]byte, 1500)
	for seq := range count {
		if seq > 0 {
			select {
			case <-ctx.Done():
				return rtts, ctx.Err()
			case <-time.After(interval):
			}
		}
		msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("weft lab ping")}}
		b, err := msg.Marshal(nil)
		if err != nil {
			return rtts, err
		}
		sent := time.Now()
		if _, err := c.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
			return rtts, fmt.Errorf("netlab: ping %v from %s: %w", dst, n.Name, err)
		}
		deadline := sent.Add(timeout)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		c.SetReadDeadline(deadline)
		for {
			nr, from, err := c.ReadFrom(buf)
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					return rtts, fmt.Errorf("netlab: ping %v from %s: no reply to seq %d", dst, n.Name, seq)
				}
				return rtts, err
			}
			rm, err := icmp.ParseMessage(1, buf[:nr])
			if err != nil || rm.Type != ipv4.ICMPTypeEchoReply {
				continue
			}
			e, ok := rm.Body.(*icmp.Echo)
			if !ok || e.ID != id || e.Seq != seq || from.String() != dst.String() {
				continue
			}
			rtts = append(rtts, time.Since(sent))
			break
		}
	}
	return rtts, nil
}
