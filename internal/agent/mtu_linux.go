//go:build linux

package agent

import "weft/internal/osnet"

// Only the Linux router follows path MTU discovery so far; on macOS and
// Windows setTunnelMTU finds no SetMTU and leaves the MTU as it is.
var _ mtuSetter = (*osnet.Router)(nil)
