// Package connlimit caps how many connections one source address may hold
// open on a listener at a time. A public server (control, relay) accepts
// connections from anyone before they authenticate; without a cap, one
// host could hold every file descriptor the server has.
package connlimit

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// DefaultPerAddr is a cap that a single node never approaches (it holds
// one control stream and one connection per relay region) while leaving
// room for many nodes behind one NAT.
const DefaultPerAddr = 256

// Listener wraps a net.Listener and closes, at once, each accepted
// connection whose source address already holds PerAddr open ones. Make
// it with New.
type Listener struct {
	net.Listener
	perAddr int
	log     *slog.Logger
	refused atomic.Uint64

	mu   sync.Mutex // guards open
	open map[netip.Addr]int
}

// New wraps ln; perAddr <= 0 means no cap. log receives a line per
// refused connection at debug level; nil discards them.
func New(ln net.Listener, perAddr int, log *slog.Logger) *Listener {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Listener{Listener: ln, perAddr: perAddr, log: log, open: map[netip.Addr]int{}}
}

// Refused returns how many connections were closed for being over the
// cap.
func (l *Listener) Refused() uint64 { return l.refused.Load() }

// Accept returns the next connection within the cap; connections over it
// are closed without a word and not returned.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil || l.perAddr <= 0 {
			return c, err
		}
		addr := sourceAddr(c)
		l.mu.Lock()
		n := l.open[addr]
		ok := n < l.perAddr
		if ok {
			l.open[addr] = n + 1
		}
		l.mu.Unlock()
		if ok {
			return &conn{Conn: c, l: l, addr: addr}, nil
		}
		l.refused.Add(1)
		l.log.Debug("connection refused: too many from one address", "remote", addr, "cap", l.perAddr)
		c.Close()
	}
}

func (l *Listener) release(addr netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[addr] <= 1 {
		delete(l.open, addr)
	} else {
		l.open[addr]--
	}
}

// sourceAddr is c's remote IP (IPv4-mapped addresses unmapped); a
// connection without one counts under the zero address.
func sourceAddr(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// conn gives its slot back once, on the first Close. A connection an
// HTTP handler hijacks (the control and relay upgrades) is this conn too,
// so it keeps its slot until the handler closes it.
type conn struct {
	net.Conn
	l    *Listener
	addr netip.Addr
	once sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.addr) })
	return err
}
