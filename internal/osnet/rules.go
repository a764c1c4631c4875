//go:build linux

package osnet

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// policy is the routing-policy part of the exit-node client: which
// numbers weft uses and what rules it wants.
type policy struct {
	mark, mask uint32
	table      int
	prio       int // the suppress rule; the mark rule is prio+1
}

// wantRules returns the rules for one address family. With allowLAN, the
// main table is consulted first for everything but its default route, so
// the LAN (and any other more specific route, such as the tailnet's own
// routes) stays direct; without it every unmarked packet that the local
// table does not claim goes to weft's table, whose default route is the
// TUN.
func (p policy) wantRules(family int, allowLAN bool) []netlink.Rule {
	var rules []netlink.Rule
	if allowLAN {
		r := netlink.NewRule()
		r.Family = family
		r.Priority = p.prio
		r.Table = tableMain
		r.SuppressPrefixlen = 0
		rules = append(rules, *r)
	}
	r := netlink.NewRule()
	r.Family = family
	r.Priority = p.prio + 1
	r.Table = p.table
	r.Mark = p.mark
	mask := p.mask
	r.Mask = &mask
	r.Invert = true
	rules = append(rules, *r)
	return rules
}

// isWeft reports whether a rule listed from the kernel is one weft adds:
// any rule pointing at weft's table, or the main-table suppress rule at
// exactly weft's priority. Nothing else is ever changed or removed.
func (p policy) isWeft(r netlink.Rule) bool {
	if r.Table == p.table {
		return true
	}
	return r.Priority == p.prio && r.Table == tableMain && r.SuppressPrefixlen == 0
}

func sameRule(a, b netlink.Rule) bool {
	maskA, maskB := uint32(0xffffffff), uint32(0xffffffff)
	if a.Mask != nil {
		maskA = *a.Mask
	}
	if b.Mask != nil {
		maskB = *b.Mask
	}
	return a.Priority == b.Priority && a.Table == b.Table && a.Mark == b.Mark && maskA == maskB &&
		a.Invert == b.Invert && a.SuppressPrefixlen == b.SuppressPrefixlen
}

// syncRules makes weft's rules for family exactly want: it removes weft's
// rules that are not wanted and adds the missing ones, leaving a rule that
// is already right in place (so traffic never sees a gap).
func (p policy) syncRules(log *slog.Logger, h *netlink.Handle, family int, want []netlink.Rule) error {
	have, err := h.RuleList(family)
	if err != nil {
		return fmt.Errorf("osnet: list %s rules: %w", familyName(family), err)
	}
	var errs []error
	present := make([]bool, len(want))
	for _, r := range have {
		if !p.isWeft(r) {
			continue
		}
		keep := false
		for i, w := range want {
			if !present[i] && sameRule(r, w) {
				present[i], keep = true, true
				break
			}
		}
		if keep {
			continue
		}
		del := r
		del.Family = family
		if err := h.RuleDel(&del); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("osnet: remove %s rule %s: %w", familyName(family), r, err))
		} else {
			log.Info("rule removed", "family", familyName(family), "rule", r.String())
		}
	}
	for i, w := range want {
		if present[i] {
			continue
		}
		if err := h.RuleAdd(&w); err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("osnet: add %s rule %s: %w", familyName(family), w, err))
		} else {
			log.Info("rule added", "family", familyName(family), "rule", w.String())
		}
	}
	return errors.Join(errs...)
}

func familyName(f int) string {
	if f == unix.AF_INET6 {
		return "IPv6"
	}
	return "IPv4"
}
