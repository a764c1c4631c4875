//go:build windows

package magicsock

import (
	"errors"
	"fmt"

	"golang.zx2c4.com/wireguard/conn"

	"weft/internal/osnet"
)

// bindToDefaultInterface binds the main sockets (v4's IPv4 socket, v6's
// IPv6 socket) to the interface of the system's default route while mark
// is not zero, and unbinds them at zero. wireguard-go's StdNetBind ignores
// SetMark outside Linux; without this an exit node's split default routes
// would carry the tunnel's own packets into the tunnel, and a direct path
// to any peer would fail over to the relay (whose sockets are bound,
// osnet.MarkControl).
func bindToDefaultInterface(v4, v6 conn.Bind, mark uint32) error {
	var errs []error
	if b, ok := v4.(conn.BindSocketToInterface); ok {
		errs = append(errs, bindFamily(b.BindSocketToInterface4, false, mark))
	}
	if b, ok := v6.(conn.BindSocketToInterface); ok {
		errs = append(errs, bindFamily(b.BindSocketToInterface6, true, mark))
	}
	return errors.Join(errs...)
}

// bindFamily binds one family's socket with bind; index 0 unbinds.
func bindFamily(bind func(idx uint32, blackhole bool) error, v6 bool, mark uint32) error {
	var idx uint32
	if mark != 0 {
		i, err := osnet.DefaultRouteInterface(v6)
		if err != nil {
			return nil // no default route: nothing to bypass
		}
		idx = i
	}
	if err := bind(idx, false); err != nil {
		return fmt.Errorf("magicsock: binding the main socket (IPv6 %v) to interface %d: %w", v6, idx, err)
	}
	return nil
}
