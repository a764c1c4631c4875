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

// openIn runs open inside n's namespace and returns the socket it made.
// Only a socket's creation needs the namespace; the socket works from any
// goroutine afterwards.
func openIn[T any](n *Node, open func() (T, error)) (T, error) {
	var c T
	err := n.Do(func() error {
		var err error
		c, err = open()
		return err
	})
	return c, err
}

// DialContext dials from inside the node's namespace. Only the socket's
// creation needs the namespace; the connection works from any goroutine.
func (n *Node) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return openIn(n, func() (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	})
}

// ListenPacket opens a packet socket (e.g. "udp4", ":0") in the node's
// namespace.
func (n *Node) ListenPacket(network, addr string) (net.PacketConn, error) {
	return openIn(n, func() (net.PacketConn, error) { return net.ListenPacket(network, addr) })
}

// ListenUDP opens a UDP socket in the node's namespace.
func (n *Node) ListenUDP(addr netip.AddrPort) (*net.UDPConn, error) {
	return openIn(n, func() (*net.UDPConn, error) { return net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr)) })
}

// Listen opens a stream listener in the node's namespace.
func (n *Node) Listen(network, addr string) (net.Listener, error) {
	return openIn(n, func() (net.Listener, error) { return net.Listen(network, addr) })
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
	c, err := openIn(n, func() (*icmp.PacketConn, error) { return icmp.ListenPacket("ip4:icmp", "0.0.0.0") })
	if err != nil {
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
