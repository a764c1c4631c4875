package osnet

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMissingWintun checks what weft says on Windows when creating the
// TUN adapter failed: with wintun.dll beside weft.exe nothing more, and
// without it an error naming the file, the folder, the copy to take for
// the machine's architecture, and userspace mode as the way without it.
func TestMissingWintun(t *testing.T) {
	withDLL, without := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(withDLL, WintunDLL), []byte("MZ"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, dir, arch string
		want            []string // in the error; none: no error
	}{
		{"present", withDLL, "amd64", nil},
		{"missing on amd64", without, "amd64", []string{"wintun.dll", without, `wintun\bin\amd64\wintun.dll`, "https://www.wintun.net", "--tun=userspace-networking", "docs/install.md"}},
		{"missing on arm64", without, "arm64", []string{`wintun\bin\arm64\wintun.dll`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := missingWintun(c.dir, c.arch)
			if c.want == nil {
				if err != nil {
					t.Fatalf("missingWintun = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("missingWintun = nil, want an error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}
