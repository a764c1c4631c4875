//go:build !windows

package magicsock

import "golang.zx2c4.com/wireguard/conn"

// bindToDefaultInterface does nothing here: on Linux StdNetBind's SetMark
// marks the main sockets itself. On macOS wireguard-go's StdNetBind
// offers no way to reach its sockets, so they stay unbound (see
// docs/os-networking.md).
func bindToDefaultInterface(v4, v6 conn.Bind, mark uint32) error { return nil }
