// Package dist holds the files weft installs on a host, so that `weft
// service install` writes exactly the files shipped in this directory.
package dist

import _ "embed"

// SystemdNode is dist/systemd/weft.service, the node daemon's unit.
//
//go:embed systemd/weft.service
var SystemdNode string
