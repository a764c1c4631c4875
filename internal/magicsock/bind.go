package magicsock

import (
	"errors"
	"sync"

	"golang.zx2c4.com/wireguard/conn"
)

// IPv6Porter is implemented by a bind whose IPv6 socket has a port of its
// own (HostNetwork's familyBind). Port6 returns that port while the bind
// is open, 0 otherwise. A Conn whose bind does not implement it takes
// Open's port for both families.
type IPv6Porter interface {
	Port6() uint16
}

// familyBind is the host's main-socket bind: two binds of one kind, one
// that sends only IPv4 and one that sends only IPv6. The binds are
// wireguard-go's StdNetBinds, or on macOS weft's own sockBinds, which
// can bind their sockets to an interface (newHostBind).
//
// One StdNetBind cannot send both: its Send takes the destination's
// net.UDPAddr from a pool shared by both families and copies the address
// into it before setting its length, so after an IPv4 send the next IPv6
// destination gets only its first four bytes written and keeps twelve
// stale ones (wireguard-go at the version weft uses; seen in the lab as
// disco and STUN for 2001:db8:1::10 and 2001:db8::10 leaving for
// 2001:db8::). With one family per bind, no pooled address ever changes
// length. Each StdNetBind opens a socket of each family; the two that
// never send (the IPv4 bind's IPv6 one and the other way round) stay idle
// and unread (onlyFamily). The IPv6 socket that is used therefore
// has a port of its own, Port6, published with the IPv6 endpoints; Open's
// port (the one asked for, if any) stays IPv4's, which port forwards and
// port mappings are made for.
type familyBind struct {
	v4, v6 conn.Bind

	mu    sync.Mutex
	port6 uint16 // guarded by mu; 0 while closed
}

var (
	_ conn.Bind  = (*familyBind)(nil)
	_ IPv6Porter = (*familyBind)(nil)
)

func newFamilyBind(v4, v6 conn.Bind) *familyBind { return &familyBind{v4: v4, v6: v6} }

// Open implements conn.Bind: the IPv4 bind on port, the IPv6 one on a
// port of the kernel's choosing.
func (b *familyBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	fns4, p4, err := b.v4.Open(port)
	if err != nil {
		return nil, 0, err
	}
	fns6, p6, err := b.v6.Open(0)
	if err != nil {
		b.v4.Close()
		return nil, 0, err
	}
	b.mu.Lock()
	b.port6 = p6
	b.mu.Unlock()
	return append(onlyFamily(fns4, "v4"), onlyFamily(fns6, "v6")...), p4, nil
}

// onlyFamily drops from a StdNetBind's receive functions the one of the
// other family: the IPv4 bind's IPv6 socket and the IPv6 bind's IPv4 one
// carry no traffic (nothing is sent from them or published for them), and
// wireguard-go gives every receive function a reader that holds a batch of
// 128 buffers of 64 KiB. Two idle readers held 16 MiB that the daemon's
// memory limit, sized for four readers (agent.MemoryLimit), does not
// allow for: the collector ran without pause under load, and the tunnel
// in TestLabMemoryBound fell from 461 to 60 Mbit/s. Their sockets stay
// open, unread. Functions whose family it cannot tell (not a
// StdNetBind's, whose PrettyName is "v4" or "v6") are kept.
func onlyFamily(fns []conn.ReceiveFunc, family string) []conn.ReceiveFunc {
	other := "v6"
	if family == "v6" {
		other = "v4"
	}
	kept := make([]conn.ReceiveFunc, 0, len(fns))
	for _, fn := range fns {
		if fn != nil && fn.PrettyName() == other {
			continue
		}
		kept = append(kept, fn)
	}
	return kept
}

// Close implements conn.Bind.
func (b *familyBind) Close() error {
	b.mu.Lock()
	b.port6 = 0
	b.mu.Unlock()
	return errors.Join(b.v4.Close(), b.v6.Close())
}

// Port6 implements IPv6Porter.
func (b *familyBind) Port6() uint16 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.port6
}

// SetMark implements conn.Bind. On Linux the StdNetBinds set SO_MARK; on
// macOS the sockBinds bind their sockets to the default route's
// interface; on Windows, where StdNetBind ignores the mark,
// bindToDefaultInterface binds their sockets instead.
func (b *familyBind) SetMark(mark uint32) error {
	return errors.Join(b.v4.SetMark(mark), b.v6.SetMark(mark), bindToDefaultInterface(b.v4, b.v6, mark))
}

// Send implements conn.Bind: by the destination's family.
func (b *familyBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	if ep.DstIP().Is6() {
		return b.v6.Send(bufs, ep)
	}
	return b.v4.Send(bufs, ep)
}

// ParseEndpoint implements conn.Bind. Both binds are of one kind, and
// both kinds' endpoints are StdNetEndpoints, which either one sends to.
func (b *familyBind) ParseEndpoint(s string) (conn.Endpoint, error) { return b.v4.ParseEndpoint(s) }

// BatchSize implements conn.Bind.
func (b *familyBind) BatchSize() int { return min(b.v4.BatchSize(), b.v6.BatchSize()) }

// ReadWaker is implemented by a bind that can end its receive functions'
// blocked reads itself (sockBind, by a read deadline), so that
// Conn.WakeReceivers needs no datagram over loopback for it: sockets bound
// to another interface (macOS with a mark) may never get one. WakeReads
// makes every blocked read return an empty batch soon and reports whether
// it could; with false the Conn sends its wake-up datagrams. A bind that
// wraps another forwards it, as it does Port6.
type ReadWaker interface {
	WakeReads() bool
}

var _ ReadWaker = (*familyBind)(nil)

// WakeReads implements ReadWaker when both binds do.
func (b *familyBind) WakeReads() bool {
	w4, ok4 := b.v4.(ReadWaker)
	w6, ok6 := b.v6.(ReadWaker)
	if !ok4 || !ok6 {
		return false
	}
	return w4.WakeReads() && w6.WakeReads()
}
