package magicsock

import (
	"bytes"
	"crypto/rand"
	"net/netip"
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
// them over the loopback interface, or by the bind itself if it can
// (ReadWaker: macOS's sockBind), the extra one's directly. The data
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
	if w, ok := c.inner.(ReadWaker); ok && w.WakeReads() {
		// The bind ends its reads itself (sockBind): a datagram over
		// loopback might not reach sockets bound to another interface.
		return
	}
	for _, dst := range []netip.AddrPort{
		netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), port),
		netip.AddrPortFrom(netip.IPv6Loopback(), port6),
	} {
		if err := c.sendDirect([][]byte{c.wakeToken}, dst, nil); err != nil {
			c.log.Debug("wake receiver", "dst", dst, "err", err)
		}
	}
}

// isWake reports whether pkt from src is the Conn's own wake-up datagram.
func (c *Conn) isWake(pkt []byte, src netip.AddrPort) bool {
	return src.Addr().IsLoopback() && bytes.Equal(pkt, c.wakeToken)
}
