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

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestResolverDirSetRestore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "resolver")
	conf := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(conf, []byte("nameserver 192.168.1.1\n"), 0o644)
	m, err := NewResolverDir(dir, conf)
	if err != nil {
		t.Fatal(err)
	}
	if m.Mode() != ModeResolverDir {
		t.Fatalf("mode %q", m.Mode())
	}
	// Another program's file for another domain must survive everything.
	os.MkdirAll(dir, 0o755)
	theirs := []byte("nameserver 10.0.0.53\n")
	os.WriteFile(filepath.Join(dir, "corp.example"), theirs, 0o644)

	cfg := Config{
		Nameservers:   []netip.Addr{netip.MustParseAddr("100.100.100.100")},
		SearchDomains: []string{"weft.internal"},
		MatchDomains:  []string{"weft.internal", "~Lab.Example.", "64.100.in-addr.arpa"},
	}
	if err := m.Set(cfg); err != nil {
		t.Fatal(err)
	}
	want := []string{"64.100.in-addr.arpa", "corp.example", "lab.example", "weft.internal"}
	if got := listDir(t, dir); !slices.Equal(got, want) {
		t.Fatalf("files %v, want %v", got, want)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "weft.internal"))
	if !strings.HasPrefix(string(b), resolverMarker+"\n") || !strings.Contains(string(b), "nameserver 100.100.100.100\n") {
		t.Fatalf("file content %q", b)
	}
	// A narrower configuration removes the files no longer wanted.
	cfg.MatchDomains = []string{"weft.internal"}
	if err := m.Set(cfg); err != nil {
		t.Fatal(err)
	}
	if got := listDir(t, dir); !slices.Equal(got, []string{"corp.example", "weft.internal"}) {
		t.Fatalf("after narrowing: %v", got)
	}
	if got := m.Fallback(); len(got) != 1 || got[0].Addr() != netip.MustParseAddr("192.168.1.1") {
		t.Fatalf("fallback %v", got)
	}
	if err := m.Restore(); err != nil {
		t.Fatal(err)
	}
	if got := listDir(t, dir); !slices.Equal(got, []string{"corp.example"}) {
		t.Fatalf("after restore: %v", got)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "corp.example")); string(b) != string(theirs) {
		t.Fatalf("another program's file changed: %q", b)
	}
}

func TestResolverDirLeavesOthersFiles(t *testing.T) {
	dir := t.TempDir()
	theirs := []byte("nameserver 10.0.0.53\n")
	os.WriteFile(filepath.Join(dir, "weft.internal"), theirs, 0o644)
	m, err := NewResolverDir(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	err = m.Set(Config{Nameservers: []netip.Addr{netip.MustParseAddr("100.100.100.100")}, MatchDomains: []string{"weft.internal"}})
	if err == nil || !strings.Contains(err.Error(), "not written by weft") {
		t.Fatalf("Set over another program's file: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "weft.internal")); string(b) != string(theirs) {
		t.Fatalf("file overwritten: %q", b)
	}
}

func TestResolverDirCheckAndCrashLeftovers(t *testing.T) {
	dir := t.TempDir()
	m, err := NewResolverDir(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Nameservers: []netip.Addr{netip.MustParseAddr("100.100.100.100")}, MatchDomains: []string{"weft.internal"}}
	if err := m.Set(cfg); err != nil {
		t.Fatal(err)
	}
	if err := m.Check(); err != nil {
		t.Fatalf("Check with nothing changed: %v", err)
	}
	p := filepath.Join(dir, "weft.internal")
	os.Remove(p)
	if err := m.Check(); !errors.Is(err, ErrOverwritten) {
		t.Fatalf("Check after removal = %v, want ErrOverwritten", err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("Check did not rewrite the file: %v", err)
	}
	// A daemon that was killed leaves its file; the next one removes it
	// before it sets anything.
	if _, err := NewResolverDir(dir, ""); err != nil {
		t.Fatal(err)
	}
	if got := listDir(t, dir); len(got) != 0 {
		t.Fatalf("leftovers after a new start: %v", got)
	}
}

func TestResolverDomainsRefusesPaths(t *testing.T) {
	for _, d := range []string{"../etc/passwd", "a/b", ".hidden", ".."} {
		if _, err := resolverDomains(Config{MatchDomains: []string{d}}); err == nil {
			t.Errorf("domain %q accepted as a file name", d)
		}
	}
}
