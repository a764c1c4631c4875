//go:build !unix

package magicsock

import "time"

// processCPU cannot be read here; BindPath then reports wall time only.
func processCPU() (time.Duration, bool) { return 0, false }
