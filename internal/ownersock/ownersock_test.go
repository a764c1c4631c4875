package ownersock

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"weft/internal/tstest"
)

func TestListenOwnerOnly(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "weft.sock")
	if err := os.WriteFile(path, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	tstest.OwnerOnlySocket(t, path)
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.Close()
	ln.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("Close unlinked the socket: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("directory holds %d entries, want the socket alone", len(ents))
	}
	if _, err := Listen(filepath.Join(dir, "missing", "s")); err == nil {
		t.Error("Listen in a missing directory succeeded")
	}
}
