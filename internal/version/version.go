// Package version reports which weft this is. Version and Commit are set at
// link time by the Makefile (-ldflags -X); a plain `go build` reports the
// module build info instead.
package version

import (
	"runtime"
	"runtime/debug"
)

// Set by -ldflags "-X weft/internal/version.Version=... -X ...Commit=...".
var (
	Version = "dev"
	Commit  = ""
)

// Info is the version report printed by `weft version`.
type Info struct {
	Version string `json:"version"`
	Commit  string `json:"commit"`
	Go      string `json:"go"`
}

// Get returns the running binary's version report.
func Get() Info {
	i := Info{Version: Version, Commit: Commit, Go: runtime.Version()}
	if i.Commit == "" {
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					i.Commit = s.Value
				}
			}
		}
	}
	if i.Commit == "" {
		i.Commit = "unknown"
	}
	return i
}
