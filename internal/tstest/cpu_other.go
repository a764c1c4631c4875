//go:build !unix

package tstest

import "time"

// ProcessCPU is 0 here: this system's CPU time is not read.
func ProcessCPU() time.Duration { return 0 }
