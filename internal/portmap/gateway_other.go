//go:build !linux

package portmap

import "net/netip"

// DefaultGateway is implemented on Linux only; elsewhere it reports
// ErrNoGateway, and the NAT-PMP and PCP probes report false.
func DefaultGateway() (netip.Addr, error) {
	return netip.Addr{}, ErrNoGateway
}
