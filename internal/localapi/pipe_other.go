//go:build !windows

package localapi

import (
	"context"
	"errors"
	"fmt"
	"net"
)

var errNoPipes = errors.New("localapi: named pipes are Windows'; use a unix socket path")

func listenPipe(path string) (net.Listener, error) {
	return nil, fmt.Errorf("%w (%s)", errNoPipes, path)
}

func dialPipe(_ context.Context, path string) (net.Conn, error) {
	return nil, fmt.Errorf("%w (%s)", errNoPipes, path)
}
