package osdns

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var testCfg = Config{
	Nameservers:   []netip.Addr{netip.MustParseAddr("100.100.100.100")},
	SearchDomains: []string{"weft.internal", "corp.example"},
}

const original = "# from the LAN's DHCP\nnameserver 192.0.2.53\nnameserver 100.100.100.100\noptions edns0\n"

func setup(t *testing.T, content *string) (path, state string) {
	t.Helper()
	dir := t.TempDir()
	path, state = filepath.Join(dir, "resolv.conf"), filepath.Join(dir, "state")
	os.Mkdir(state, 0o700)
	if content != nil {
		if err := os.WriteFile(path, []byte(*content), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	return path, state
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestResolvConfSetRestore(t *testing.T) {
	orig := original
	path, state := setup(t, &orig)
	m := NewResolvConf(Options{StateDir: state, ResolvConf: path})
	if err := m.Set(testCfg); err != nil {
		t.Fatal(err)
	}
	got := read(t, path)
	if !strings.HasPrefix(got, marker) || !strings.Contains(got, "nameserver 100.100.100.100\nsearch weft.internal corp.example\n") {
		t.Fatalf("written:\n%s", got)
	}
	// Set again (a new map) keeps the first original.
	if err := m.Set(Config{Nameservers: testCfg.Nameservers}); err != nil {
		t.Fatal(err)
	}
	if want := []netip.AddrPort{netip.MustParseAddrPort("192.0.2.53:53")}; !slices.Equal(m.Fallback(), want) {
		t.Fatalf("Fallback = %v, want %v (weft's own resolver left out)", m.Fallback(), want)
	}
	if err := m.Restore(); err != nil {
		t.Fatal(err)
	}
	if got := read(t, path); got != original {
		t.Fatalf("restored %q, want the original byte for byte", got)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
		t.Fatalf("restored mode %v, want 0640", fi.Mode().Perm())
	}
	if _, err := os.Stat(filepath.Join(state, BackupFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("backup left after restore: %v", err)
	}
	if err := m.Restore(); err != nil {
		t.Fatalf("second Restore: %v", err)
	}
}

// TestRecoverAfterCrash: a daemon killed after Set leaves the backup; the
// next start's Recover puts the original back.
func TestRecoverAfterCrash(t *testing.T) {
	orig := original
	path, state := setup(t, &orig)
	if err := NewResolvConf(Options{StateDir: state, ResolvConf: path}).Set(testCfg); err != nil {
		t.Fatal(err)
	}
	// (the process dies here)
	if err := Recover(state); err != nil {
		t.Fatal(err)
	}
	if got := read(t, path); got != original {
		t.Fatalf("recovered %q", got)
	}
	if err := Recover(state); err != nil {
		t.Fatalf("Recover with nothing to do: %v", err)
	}
}

func TestResolvConfOverwritten(t *testing.T) {
	orig := original
	path, state := setup(t, &orig)
	m := NewResolvConf(Options{StateDir: state, ResolvConf: path})
	if err := m.Check(); err != nil {
		t.Fatalf("Check before Set: %v", err)
	}
	m.Set(testCfg)
	if err := m.Check(); err != nil {
		t.Fatalf("Check with nothing changed: %v", err)
	}
	const dhcp = "nameserver 192.0.2.99\n"
	os.WriteFile(path, []byte(dhcp), 0o644)
	if err := m.Check(); !errors.Is(err, ErrOverwritten) {
		t.Fatalf("Check after an overwrite = %v", err)
	}
	if got := read(t, path); !strings.HasPrefix(got, marker) {
		t.Fatalf("not re-applied: %q", got)
	}
	// The newer file is the one restored.
	m.Restore()
	if got := read(t, path); got != dhcp {
		t.Fatalf("restored %q, want the other program's %q", got, dhcp)
	}
}

func TestRestoreLeavesOthersFile(t *testing.T) {
	orig := original
	path, state := setup(t, &orig)
	m := NewResolvConf(Options{StateDir: state, ResolvConf: path})
	m.Set(testCfg)
	os.WriteFile(path, []byte("nameserver 192.0.2.7\n"), 0o644)
	if err := Recover(state); err != nil {
		t.Fatal(err)
	}
	if got := read(t, path); got != "nameserver 192.0.2.7\n" {
		t.Fatalf("a file weft did not write was replaced: %q", got)
	}
}

func TestResolvConfMissing(t *testing.T) {
	path, state := setup(t, nil)
	m := NewResolvConf(Options{StateDir: state, ResolvConf: path})
	if err := m.Set(testCfg); err != nil {
		t.Fatal(err)
	}
	if err := m.Restore(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a file that did not exist is left: %v", err)
	}
}

func TestDamagedBackup(t *testing.T) {
	_, state := setup(t, nil)
	os.WriteFile(filepath.Join(state, BackupFile), []byte("{"), 0o600)
	if err := Recover(state); err == nil || !strings.Contains(err.Error(), "by hand") {
		t.Fatalf("Recover with a damaged backup = %v", err)
	}
}
