//go:build !linux

package idlemem

// releasePages gives nothing back outside Linux: madvise's semantics
// differ (macOS frees lazily) or it does not exist (Windows), and the
// releases there rely on the collector alone.
func releasePages(bufs [][]byte) int { return 0 }
