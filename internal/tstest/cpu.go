package tstest

import "testing"

// ReportCPU runs the benchmark loop body fn (with b.Loop) and reports the
// process's CPU time per operation as "cpu-ms/op", where ProcessCPU can
// be read.
func ReportCPU(b *testing.B, fn func()) {
	start := ProcessCPU()
	n := 0
	for b.Loop() {
		fn()
		n++
	}
	if used := ProcessCPU() - start; used > 0 && n > 0 {
		b.ReportMetric(float64(used.Nanoseconds())/float64(n)/1e6, "cpu-ms/op")
	}
}
