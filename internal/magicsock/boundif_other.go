//go:build !windows

package magicsock

import "golang.zx2c4.com/wireguard/conn"

// bindToDefaultInterface does nothing here: on Linux StdNetBind's SetMark
// marks the main sockets itself, and on macOS the main sockets are
// sockBinds', whose SetMark binds them (newHostBind).
func bindToDefaultInterface(v4, v6 conn.Bind, mark uint32) error { return nil }
