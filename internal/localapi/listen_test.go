//go:build unix

package localapi

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"weft/internal/tstest"
)

// TestListenPrivate: with the most permissive umask, the socket appears
// at its path already owner-only (it is made in a private directory and
// renamed), the private directory does not stay behind, and Close removes
// the socket.
func TestListenPrivate(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := t.TempDir()
	path := filepath.Join(dir, "weft.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	tstest.OwnerOnlySocket(t, path)
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries, want only the socket", len(entries))
	}
	ln.Close()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatalf("socket still there after Close: %v", err)
	}
}
