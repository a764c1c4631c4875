package localapi

import (
	"context"
	"fmt"
	"net"

	"golang.org/x/sys/windows"
	"golang.zx2c4.com/wireguard/ipc/namedpipe"

	"weft/internal/service"
)

// listenPipe listens on a named pipe whose ACL (service.PipeSDDL) lets
// only SYSTEM and Administrators open it: the local API changes routes
// and exit nodes, which on Windows is an administrator's business.
func listenPipe(path string) (net.Listener, error) {
	sd, err := windows.SecurityDescriptorFromString(service.PipeSDDL)
	if err != nil {
		return nil, fmt.Errorf("localapi: pipe security descriptor: %w", err)
	}
	ln, err := (&namedpipe.ListenConfig{SecurityDescriptor: sd}).Listen(path)
	if err != nil {
		return nil, fmt.Errorf("localapi: listen on %s (another weft daemon running? run as Administrator): %w", path, err)
	}
	return ln, nil
}

func dialPipe(ctx context.Context, path string) (net.Conn, error) {
	return namedpipe.DialContext(ctx, path)
}
