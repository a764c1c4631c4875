package magicsock

import (
	"bytes"
	"crypto/rand"
	"net/netip"
	"slices"
)

// wakePrefix starts the datagram WakeReceivers sends to the Conn's own
// main sockets; a per-Conn random token follows. It looks like neither
// WireGuard (whose messages start with a type of 1-4 and three zero
// bytes), disco nor STUN.
const wakePrefix = "weft-wake\x00"

// newWakeToken makes the datagram a Conn wakes its readers with.
func newWakeToken() []byte {
	b := make([]byte, len(wakePrefix)+16)
	copy(b, wakePrefix)
	rand.Read(b[len(wakePrefix):])
	return b
}

// WakeReceivers makes each ReceiveFunc of the current Open return soon
// with an empty batch: the main sockets' by a datagram sent to each of
// them over the loopback interface, the extra one's directly. The data
// plane's idle release (package idlemem) uses it to reach readers blocked
// in a read. A reader whose wake-up is lost (no loopback address of its
// family) just stays blocked until its next packet.
func (c *Conn) WakeReceivers() {
	c.mu.Lock()
	open, port, port6 := c.open, c.port, c.port6
	c.mu.Unlock()
	if !open {
		return
	}
	select {
	case c.wakeInjected <- struct{}{}:
	default:
	}
	// Each port may have a socket of each family (with a familyBind,
	// the IPv4 bind's idle IPv6 socket and the other way round), so
	// every family goes to every port.
	for _, lo := range []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1}), netip.IPv6Loopback()} {
		for _, p := range slices.Compact([]uint16{port, port6}) {
			dst := netip.AddrPortFrom(lo, p)
			if err := c.sendDirect([][]byte{c.wakeToken}, dst, nil); err != nil {
				c.log.Debug("wake receiver", "dst", dst, "err", err)
			}
		}
	}
}

// isWake reports whether pkt from src is the Conn's own wake-up datagram.
func (c *Conn) isWake(pkt []byte, src netip.AddrPort) bool {
	return src.Addr().IsLoopback() && bytes.Equal(pkt, c.wakeToken)
}
