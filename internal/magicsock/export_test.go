package magicsock

import "golang.zx2c4.com/wireguard/conn"

// NewHostBindFor is newHostBind for the external tests: the main-socket
// bind weft uses on goos, which runs on any OS.
func NewHostBindFor(goos string) conn.Bind { return newHostBind(goos) }
