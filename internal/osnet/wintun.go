package osnet

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// WintunDLL is the driver library kernel mode on Windows loads to create
// its TUN adapter. weft's archives do not carry it (docs/install.md): the
// user puts the signed copy beside weft.exe.
const WintunDLL = "wintun.dll"

// missingWintun returns nil when wintun.dll is in dir, the folder of
// weft.exe, and otherwise an error that names the file, the folder, where
// the signed copy for arch (GOARCH) comes from, and the mode that needs
// none. Windows also finds the library in System32, so the router asks
// this only after creating the adapter failed.
func missingWintun(dir, arch string) error {
	p := filepath.Join(dir, WintunDLL)
	_, err := os.Stat(p)
	switch {
	case err == nil:
		return nil
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("osnet: looking for %s: %w", p, err)
	}
	return fmt.Errorf("osnet: kernel mode needs %s beside weft.exe, and there is none in %s: "+
		"download the signed Wintun zip from https://www.wintun.net, copy wintun\\bin\\%s\\%s out of it into %s, "+
		"and start weft again (docs/install.md); or run without a TUN device: --tun=userspace-networking",
		WintunDLL, dir, arch, WintunDLL, dir)
}
