package store

import (
	"crypto/rand"
	"fmt"
	"net/netip"
	"weft/internal/tailnet"
)

// The tailnet's IPv4 space: the shared address space of RFC 6598, which
// home and office networks do not use.

// reservedV4 are addresses in tailnet.V4Range never given to a node:
// 100.100.100.100 is kept for the tailnet DNS resolver.
var reservedV4 = tailnet.ResolverV4

// v4Count is the number of addresses in tailnet.V4Range.
const v4Count = 1 << (32 - 10)

// newULA makes a random RFC 4193 unique local /48: fd00::/8 plus 40
// random bits.
func newULA() (netip.Prefix, error) {
	var a [16]byte
	a[0] = 0xfd
	if _, err := rand.Read(a[1:6]); err != nil {
		return netip.Prefix{}, fmt.Errorf("store: making ULA prefix: %w", err)
	}
	return netip.PrefixFrom(netip.AddrFrom16(a), 48), nil
}

// v4At returns the i'th address of tailnet.V4Range and whether it may be given
// to a node. Addresses ending in .0 or .255 are skipped: some stacks and
// firewalls still treat them as network or broadcast addresses.
func v4At(i uint32) (netip.Addr, bool) {
	b := tailnet.V4Range.Addr().As4()
	n := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	n += i % v4Count
	a := netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
	last := byte(n)
	return a, last != 0 && last != 255 && a != reservedV4
}

// v6For returns the node's IPv6 address: the ULA /48 with the node's IPv4
// address in the low 32 bits, so the two are easy to relate and the IPv6
// address is unique whenever the IPv4 one is.
func v6For(ula netip.Prefix, v4 netip.Addr) netip.Addr {
	a := ula.Addr().As16()
	b := v4.As4()
	copy(a[12:], b[:])
	return netip.AddrFrom16(a)
}
