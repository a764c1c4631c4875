package osdns

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// ModeResolverDir is the mode of a Manager that writes one file per
// domain into a resolver directory, as macOS reads /etc/resolver/<domain>
// (resolver(5)): queries for that domain and its subdomains go to the
// file's nameservers, everything else keeps the system's resolvers.
const ModeResolverDir = "resolver-dir"

// DefaultResolverDir is where macOS looks for per-domain resolver files.
const DefaultResolverDir = "/etc/resolver"

// resolverMarker is the first line of every file weft writes there. Only
// files that carry it are ever changed or removed, so a file another
// program (or a person) wrote for the same domain is left alone.
const resolverMarker = "# written by the weft daemon and removed when it stops; do not edit"

// resolverDir is the macOS Manager. It is written without macOS calls so
// that its tests run on Linux against a temporary directory.
type resolverDir struct {
	dir      string
	fallback string // resolv.conf to read Fallback from

	mu  sync.Mutex
	set map[string][]byte // domain → content written, nil when nothing is set
}

// NewResolverDir returns a Manager writing per-domain files into dir
// ("" means DefaultResolverDir). It first removes files a daemon that
// did not exit cleanly left there: it has no backup to restore, since it
// never changes a file it did not write.
func NewResolverDir(dir, resolvConf string) (Manager, error) {
	if dir == "" {
		dir = DefaultResolverDir
	}
	if resolvConf == "" {
		resolvConf = DefaultResolvConf
	}
	m := &resolverDir{dir: dir, fallback: resolvConf}
	if err := m.removeOurs(nil); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *resolverDir) Mode() string { return ModeResolverDir }

// renderResolverFile is the content of one domain's file.
func renderResolverFile(nameservers []netip.Addr) []byte {
	var b bytes.Buffer
	b.WriteString(resolverMarker + "\n")
	for _, ns := range nameservers {
		fmt.Fprintf(&b, "nameserver %s\n", ns)
	}
	return b.Bytes()
}

// resolverDomains are the domains cfg sends to weft's resolver. A
// resolver directory cannot say "every name" (cfg.All): with it, the
// tailnet's own domains are still served, and the rest keep the system's
// resolvers (docs/dns.md).
func resolverDomains(cfg Config) ([]string, error) {
	doms := cfg.MatchDomains
	if len(doms) == 0 {
		doms = cfg.SearchDomains
	}
	var out []string
	for _, d := range doms {
		d = strings.TrimSuffix(strings.TrimPrefix(strings.ToLower(d), "~"), ".")
		if d == "" {
			continue
		}
		// The domain is a file name: nothing that could leave the directory.
		if strings.ContainsAny(d, "/\\") || d == "." || d == ".." || strings.HasPrefix(d, ".") {
			return nil, fmt.Errorf("osdns: %q is not a domain name", d)
		}
		out = append(out, d)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func (m *resolverDir) Set(cfg Config) error {
	doms, err := resolverDomains(cfg)
	if err != nil {
		return err
	}
	content := renderResolverFile(cfg.Nameservers)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := os.MkdirAll(m.dir, 0o755); err != nil {
		return fmt.Errorf("osdns: %w", err)
	}
	want := map[string][]byte{}
	var errs []error
	for _, d := range doms {
		if err := m.writeOurs(d, content); err != nil {
			errs = append(errs, err)
			continue
		}
		want[d] = content
	}
	errs = append(errs, m.removeOurs(want))
	m.set = want
	return errors.Join(errs...)
}

// writeOurs writes a domain's file unless another program's file is
// already there.
func (m *resolverDir) writeOurs(domain string, content []byte) error {
	p := filepath.Join(m.dir, domain)
	if old, err := os.ReadFile(p); err == nil && !bytes.HasPrefix(old, []byte(resolverMarker)) {
		return fmt.Errorf("osdns: %s was not written by weft; leaving it (and %s's names to it) alone", p, domain)
	}
	tmp := p + ".weft-tmp"
	if err := writeInPlace(tmp, content, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("osdns: %w", err)
	}
	return nil
}

// removeOurs removes every file of weft's in the directory whose domain
// is not in keep.
func (m *resolverDir) removeOurs(keep map[string][]byte) error {
	ents, err := os.ReadDir(m.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("osdns: %w", err)
	}
	var errs []error
	for _, e := range ents {
		if _, ok := keep[e.Name()]; ok || !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(m.dir, e.Name())
		if b, err := os.ReadFile(p); err != nil || !bytes.HasPrefix(b, []byte(resolverMarker)) {
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("osdns: %w", err))
		}
	}
	return errors.Join(errs...)
}

func (m *resolverDir) Restore() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.set = nil
	return m.removeOurs(nil)
}

// Check rewrites any of weft's files that was changed or removed.
func (m *resolverDir) Check() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var changed []string
	var errs []error
	for d, want := range m.set {
		got, err := os.ReadFile(filepath.Join(m.dir, d))
		if err == nil && bytes.Equal(got, want) {
			continue
		}
		changed = append(changed, d)
		if err := m.writeOurs(d, want); err != nil {
			errs = append(errs, err)
		}
	}
	if len(changed) == 0 {
		return nil
	}
	slices.Sort(changed)
	return errors.Join(append(errs, fmt.Errorf("%w: %s rewritten", ErrOverwritten, strings.Join(changed, ", ")))...)
}

// Fallback returns the system's resolvers as macOS mirrors them into
// /etc/resolv.conf.
func (m *resolverDir) Fallback() []netip.AddrPort {
	b, err := os.ReadFile(m.fallback)
	if err != nil {
		return nil
	}
	return Nameservers(b)
}
