package localapi

import "strings"

// IsPipe reports whether path names a Windows named pipe rather than a
// unix socket.
func IsPipe(path string) bool {
	return strings.HasPrefix(strings.ToLower(path), `\\.\pipe\`)
}
