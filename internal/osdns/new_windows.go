//go:build windows

package osdns

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/registry"
	"golang.zx2c4.com/wireguard/windows/tunnel/winipcfg"

	"weft/internal/tailnet"
)

// ModeNRPT is the mode of the Windows Manager.
const ModeNRPT = "nrpt"

// New returns the Windows Manager: NRPT rules (nrpt.go) that send the
// tailnet's names, or with override_local_dns every name, to weft's
// resolver. It first removes rules a daemon that did not exit cleanly left.
func New(opts Options) (Manager, error) {
	m := &nrptManager{}
	if err := m.removeRules(nil); err != nil {
		return nil, err
	}
	return m, nil
}

type nrptManager struct {
	mu    sync.Mutex
	rules []nrptRule // what Set wrote
}

func (m *nrptManager) Mode() string { return ModeNRPT }

func (m *nrptManager) Set(cfg Config) error {
	rules, err := nrptRules(cfg)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	for _, r := range rules {
		errs = append(errs, writeRule(r))
	}
	keep := map[string]bool{}
	for _, r := range rules {
		keep[strings.ToLower(r.Key)] = true
	}
	errs = append(errs, m.removeRules(keep))
	m.rules = rules
	flushResolverCache()
	return errors.Join(errs...)
}

func writeRule(r nrptRule) error {
	k, _, err := registry.CreateKey(registry.LOCAL_MACHINE, nrptKey+`\`+r.Key, registry.SET_VALUE)
	if err != nil {
		return fmt.Errorf("osdns: creating NRPT rule %s: %w", r.Key, err)
	}
	defer k.Close()
	return errors.Join(
		k.SetDWordValue("Version", nrptVersion),
		k.SetStringsValue("Name", r.Name),
		k.SetStringValue("GenericDNSServers", r.Servers),
		k.SetDWordValue("ConfigOptions", nrptConfigOptions),
		k.SetStringValue("IPSECCARestriction", ""),
	)
}

// removeRules deletes weft's rules whose (lower-case) key is not in keep.
func (m *nrptManager) removeRules(keep map[string]bool) error {
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, nrptKey, registry.ENUMERATE_SUB_KEYS|registry.QUERY_VALUE)
	if errors.Is(err, registry.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("osdns: opening the NRPT: %w", err)
	}
	names, err := k.ReadSubKeyNames(-1)
	k.Close()
	if err != nil {
		return fmt.Errorf("osdns: listing NRPT rules: %w", err)
	}
	var errs []error
	for _, n := range names {
		if !isWeftNRPTKey(n) || keep[strings.ToLower(n)] {
			continue
		}
		if err := registry.DeleteKey(registry.LOCAL_MACHINE, nrptKey+`\`+n); err != nil && !errors.Is(err, registry.ErrNotExist) {
			errs = append(errs, fmt.Errorf("osdns: removing NRPT rule %s: %w", n, err))
		}
	}
	return errors.Join(errs...)
}

func (m *nrptManager) Restore() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rules = nil
	err := m.removeRules(nil)
	flushResolverCache()
	return err
}

// Check rewrites any of weft's rules that was changed or removed.
func (m *nrptManager) Check() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var changed []string
	var errs []error
	for _, r := range m.rules {
		if ruleIntact(r) {
			continue
		}
		changed = append(changed, strings.Join(r.Name, " "))
		errs = append(errs, writeRule(r))
	}
	if len(changed) == 0 {
		return nil
	}
	flushResolverCache()
	return errors.Join(append(errs, fmt.Errorf("%w: NRPT rule for %s rewritten", ErrOverwritten, strings.Join(changed, ", ")))...)
}

func ruleIntact(r nrptRule) bool {
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, nrptKey+`\`+r.Key, registry.QUERY_VALUE)
	if err != nil {
		return false
	}
	defer k.Close()
	names, _, err1 := k.GetStringsValue("Name")
	servers, _, err2 := k.GetStringValue("GenericDNSServers")
	return err1 == nil && err2 == nil && slices.Equal(names, r.Name) && servers == r.Servers
}

// Fallback returns the DNS servers of the machine's other adapters that
// are up, for names the tailnet has no nameservers for.
func (m *nrptManager) Fallback() []netip.AddrPort {
	ads, err := winipcfg.GetAdaptersAddresses(windows.AF_UNSPEC, winipcfg.GAAFlagDefault)
	if err != nil {
		return nil
	}
	var out []netip.AddrPort
	for _, ad := range ads {
		if ad.OperStatus != winipcfg.IfOperStatusUp {
			continue
		}
		for d := ad.FirstDNSServerAddress; d != nil; d = d.Next {
			a, ok := netip.AddrFromSlice(d.Address.IP())
			if !ok || tailnet.V4Range.Contains(a.Unmap()) || a.IsLinkLocalUnicast() {
				continue
			}
			ap := netip.AddrPortFrom(a.Unmap(), 53)
			if !slices.Contains(out, ap) {
				out = append(out, ap)
			}
		}
	}
	return out
}

var procDnsFlushResolverCache = windows.NewLazySystemDLL("dnsapi.dll").NewProc("DnsFlushResolverCache")

// flushResolverCache makes the DNS client forget answers given before the
// rules changed.
func flushResolverCache() {
	if procDnsFlushResolverCache.Find() == nil {
		procDnsFlushResolverCache.Call()
	}
}

// AddLoopback puts the resolver's addresses on weft's own adapter (the one
// that carries a tailnet address), marked SkipAsSource so Windows never
// picks them as the source of traffic to peers. Windows has no loopback
// device that takes addresses.
func AddLoopback(addrs []netip.Addr) error {
	luid, err := tailnetAdapter()
	if err != nil {
		return err
	}
	var errs []error
	for _, a := range addrs {
		var row winipcfg.MibUnicastIPAddressRow
		row.Init()
		row.InterfaceLUID = luid
		if err := row.Address.SetAddr(a); err != nil {
			errs = append(errs, err)
			continue
		}
		row.OnLinkPrefixLength = uint8(a.BitLen())
		row.SkipAsSource = true
		if err := row.Create(); err != nil && !errors.Is(err, windows.ERROR_OBJECT_ALREADY_EXISTS) {
			errs = append(errs, fmt.Errorf("osdns: adding %s to weft's adapter: %w", a, err))
		}
	}
	return errors.Join(errs...)
}

// tailnetAdapter finds the adapter holding a tailnet address other than
// the resolver's: weft's own.
func tailnetAdapter() (winipcfg.LUID, error) {
	rows, err := winipcfg.GetUnicastIPAddressTable(windows.AF_INET)
	if err != nil {
		return 0, fmt.Errorf("osdns: listing addresses: %w", err)
	}
	for _, r := range rows {
		a := r.Address.Addr()
		if tailnet.V4Range.Contains(a) && a != tailnet.ResolverV4 {
			return r.InterfaceLUID, nil
		}
	}
	return 0, errors.New("osdns: no adapter carries a tailnet address yet")
}

// RemoveLoopback takes the resolver's addresses off every adapter.
func RemoveLoopback() error {
	rows, err := winipcfg.GetUnicastIPAddressTable(windows.AF_UNSPEC)
	if err != nil {
		return fmt.Errorf("osdns: listing addresses: %w", err)
	}
	var errs []error
	for i := range rows {
		a := rows[i].Address.Addr()
		if a != tailnet.ResolverV4 && (!a.Is6() || tailnet.ResolverV6(a) != a) {
			continue
		}
		if err := rows[i].Delete(); err != nil && !errors.Is(err, windows.ERROR_NOT_FOUND) {
			errs = append(errs, fmt.Errorf("osdns: removing %s: %w", a, err))
		}
	}
	return errors.Join(errs...)
}
