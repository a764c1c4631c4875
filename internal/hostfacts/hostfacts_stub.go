//go:build !linux && !darwin && !windows

package hostfacts

// Read returns this machine's facts: none yet outside Linux.
func Read() map[string]float64 { return map[string]float64{} }
