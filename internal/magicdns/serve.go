package magicdns

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Limits of the listeners.
const (
	// maxHandlers bounds the UDP queries being answered at once; a query
	// arriving past it is dropped (the client retries).
	maxHandlers = 256
	// maxTCPConns bounds open TCP connections.
	maxTCPConns = 64
	// tcpIdle closes a TCP connection that sends nothing for this long.
	tcpIdle = 10 * time.Second
)

// AllowFunc says whether a query from a source address may be answered.
// The node allows itself and the tailnet: a host on the LAN that routes
// 100.100.100.100 to this machine gets no answer.
type AllowFunc func(src netip.Addr) bool

// Serve answers queries arriving on pc until ctx is done or pc fails. It
// does not close pc.
func (r *Resolver) Serve(ctx context.Context, pc net.PacketConn, allow AllowFunc) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, maxHandlers)
	stop := context.AfterFunc(ctx, func() { pc.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	buf := make([]byte, 65535)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		ap, ok := addrOf(from)
		if !ok || (allow != nil && !allow(ap.Addr())) {
			continue
		}
		select {
		case sem <- struct{}{}:
		default:
			continue
		}
		q := append([]byte(nil), buf[:n]...)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if resp := r.Handle(ctx, q, false); resp != nil {
				pc.WriteTo(resp, from)
			}
		}()
	}
}

// ServeTCP answers queries on connections accepted from ln until ctx is
// done or ln fails. It does not close ln.
func (r *Resolver) ServeTCP(ctx context.Context, ln net.Listener, allow AllowFunc) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, maxTCPConns)
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	stop := context.AfterFunc(ctx, func() {
		if d, ok := ln.(interface{ SetDeadline(time.Time) error }); ok {
			d.SetDeadline(time.Unix(1, 0))
		}
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		ap, ok := addrOf(c.RemoteAddr())
		if !ok || (allow != nil && !allow(ap.Addr())) {
			c.Close()
			continue
		}
		select {
		case sem <- struct{}{}:
		default:
			c.Close()
			continue
		}
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r.serveConn(ctx, c)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
			c.Close()
		}()
	}
}

// serveConn answers length-prefixed queries on one TCP connection, one at
// a time, until the client stops or stays idle.
func (r *Resolver) serveConn(ctx context.Context, c net.Conn) {
	var hdr [2]byte
	buf := make([]byte, 65535)
	for ctx.Err() == nil {
		c.SetDeadline(time.Now().Add(tcpIdle))
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(hdr[:]))
		if _, err := io.ReadFull(c, buf[:n]); err != nil {
			return
		}
		resp := r.Handle(ctx, buf[:n], true)
		if resp == nil {
			return
		}
		out := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(resp)), uint16(len(resp)))
		if _, err := c.Write(append(out, resp...)); err != nil {
			return
		}
	}
}

func addrOf(a net.Addr) (netip.AddrPort, bool) {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort(), true
	case *net.TCPAddr:
		return a.AddrPort(), true
	}
	return netip.AddrPort{}, false
}
