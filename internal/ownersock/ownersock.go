// Package ownersock makes unix sockets that only their owner may open,
// for the node daemon's local API and the control server's admin API.
package ownersock

import (
	"net"
	"os"
	"path/filepath"
)

// Listen listens on a unix socket at path that is owner-only from the
// moment anyone can reach it: it is made in a fresh 0700 directory beside
// path, chmodded 0600 there, then renamed into place. (A socket made at
// path and chmodded afterwards is open to every local user for a moment,
// whatever the umask.) Whatever is at path is replaced; callers check for
// a live server or a non-socket first. Closing the listener does not
// unlink the socket. Errors are the operating system's, which name the
// operation and the path; callers add their own prefix.
func Listen(path string) (*net.UnixListener, error) {
	// A short name: unix socket paths are limited to about 100 bytes.
	tmp, err := os.MkdirTemp(filepath.Dir(path), ".ws")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	tmpSock := filepath.Join(tmp, "s")
	ln, err := net.Listen("unix", tmpSock)
	if err != nil {
		return nil, err
	}
	ul := ln.(*net.UnixListener)
	ul.SetUnlinkOnClose(false)
	if err := os.Chmod(tmpSock, 0o600); err != nil {
		ul.Close()
		return nil, err
	}
	if err := os.Rename(tmpSock, path); err != nil {
		ul.Close()
		return nil, err
	}
	return ul, nil
}
