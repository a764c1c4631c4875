package nodestate

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"weft/internal/key"
)

func TestStateFilesOwnerOnlyAndPersistent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	d, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	mk, err := d.MachineKey()
	if err != nil {
		t.Fatal(err)
	}
	p := Prefs{ServerURL: "http://ctrl:8080", ServerKey: key.NewMachine().Public(), WantUp: true, NodeKey: key.NewNode(), Registered: true,
		AdvertiseExitNode: true, AdvertiseRoutes: []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24")}, ExitNode: "busan", AcceptRoutes: true}
	if err := d.SavePrefs(p); err != nil {
		t.Fatal(err)
	}
	if err := d.SaveNetMap(map[string]int{"seq": 3}); err != nil {
		t.Fatal(err)
	}

	d2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	mk2, err := d2.MachineKey()
	if err != nil || mk2.Public() != mk.Public() {
		t.Fatalf("machine key not kept across opens: %v", err)
	}
	got, err := d2.LoadPrefs()
	if err != nil || !reflect.DeepEqual(got, p) {
		t.Fatalf("LoadPrefs = %+v, %v; want %+v", got, err, p)
	}

	st, _ := os.Stat(dir)
	if st.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v, want 0700", st.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	names := map[string]bool{}
	for _, e := range entries {
		names[e.Name()] = true
		info, _ := e.Info()
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", e.Name(), info.Mode().Perm())
		}
	}
	for _, want := range []string{machineKeyFile, prefsFile, netmapFile} {
		if !names[want] {
			t.Errorf("%s missing", want)
		}
	}
	if len(entries) != 3 {
		t.Errorf("stray files in state dir: %v", names)
	}

	if err := d2.Forget(); err != nil {
		t.Fatal(err)
	}
	if got, _ := d2.LoadPrefs(); !reflect.DeepEqual(got, Prefs{}) {
		t.Errorf("prefs after Forget = %+v", got)
	}
	if mk3, _ := d2.MachineKey(); mk3.Public() != mk.Public() {
		t.Error("Forget changed the machine key")
	}
}

func TestWriteFileAtomicReplacesWhole(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte("old content that is long"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(p, []byte("new")); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	st, _ := os.Stat(p)
	if string(b) != "new" || st.Mode().Perm() != 0o600 {
		t.Errorf("got %q mode %v", b, st.Mode().Perm())
	}
}

func TestDamagedPrefsSayWhatToDo(t *testing.T) {
	d, _ := Open(t.TempDir())
	os.WriteFile(filepath.Join(d.Path(), prefsFile), []byte("{"), 0o600)
	if _, err := d.LoadPrefs(); err == nil {
		t.Fatal("damaged prefs loaded")
	}
}

// TestLockOneDaemonPerDir: a second lock on the same directory is refused
// and names the holder; released, the directory can be taken again.
func TestLockOneDaemonPerDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	a, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	release, err := a.Lock()
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Lock()
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("second Lock: %v, want ErrLocked naming pid %d", err, os.Getpid())
	}
	release()
	release2, err := b.Lock()
	if err != nil {
		t.Fatalf("Lock after release: %v", err)
	}
	release2()
}

// TestDiscoKeyAndPortKeptAcrossRuns: the disco key and the UDP port are
// the same for the next run on the same directory.
func TestDiscoKeyAndPortKeptAcrossRuns(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	a, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	dk, err := a.DiscoKey()
	if err != nil {
		t.Fatal(err)
	}
	if p := a.Port(); p != 0 {
		t.Fatalf("port before any was saved: %d, want 0", p)
	}
	if err := a.SavePort(41641); err != nil {
		t.Fatal(err)
	}
	b, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if dk2, err := b.DiscoKey(); err != nil || dk2.Public() != dk.Public() {
		t.Errorf("disco key of the next run: %v %v, want %v", dk2.Public(), err, dk.Public())
	}
	if p := b.Port(); p != 41641 {
		t.Errorf("port of the next run: %d, want 41641", p)
	}
	if err := os.WriteFile(filepath.Join(dir, portFile), []byte("junk\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if p := b.Port(); p != 0 {
		t.Errorf("port from a damaged file: %d, want 0 (any port)", p)
	}
}

// TestDamagedKeyFileNotReplaced: a key file that does not parse is
// reported as damaged and left as it was, so a person can look at it; it
// is never silently replaced by a new key.
func TestDamagedKeyFileNotReplaced(t *testing.T) {
	tests := []struct {
		file string
		load func(*Dir) error
	}{
		{machineKeyFile, func(d *Dir) error { _, err := d.MachineKey(); return err }},
		{discoKeyFile, func(d *Dir) error { _, err := d.DiscoKey(); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			d, err := Open(filepath.Join(t.TempDir(), "state"))
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(d.Path(), tt.file)
			junk := []byte("privmachine:not-hex\n")
			if err := os.WriteFile(p, junk, 0o600); err != nil {
				t.Fatal(err)
			}
			var de *DamagedError
			if err := tt.load(d); !errors.As(err, &de) || de.Path != p {
				t.Fatalf("load = %v, want a DamagedError naming %s", err, p)
			}
			if b, _ := os.ReadFile(p); string(b) != string(junk) {
				t.Fatalf("damaged file was rewritten to %q", b)
			}
		})
	}
}
