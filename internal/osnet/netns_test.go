//go:build linux

package osnet

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// needRoot skips tests that change kernel network state.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("osnet: this test needs root (it creates network namespaces)")
	}
}

// lab is a set of fresh network namespaces for one test. The test's
// goroutine is locked to its OS thread and starts in the first namespace;
// enter switches it between them. Everything is undone when the test ends:
// the thread goes back to its original namespace (or, if that fails, is
// thrown away), and the namespaces vanish with their last handle.
type lab struct {
	t    *testing.T
	orig netns.NsHandle
	ns   []netns.NsHandle
}

// newLab creates n namespaces, each with loopback up, and enters the first.
func newLab(t *testing.T, n int) *lab {
	t.Helper()
	needRoot(t)
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("get namespace: %v", err)
	}
	l := &lab{t: t, orig: orig}
	t.Cleanup(func() {
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: the runtime discards it when the
			// goroutine ends, so nothing else runs in a test namespace.
			t.Errorf("restore namespace: %v", err)
		} else {
			runtime.UnlockOSThread()
		}
		for _, h := range l.ns {
			h.Close()
		}
		orig.Close()
	})
	for i := 0; i < n; i++ {
		h, err := netns.New() // creates and enters
		if err != nil {
			t.Fatalf("new namespace: %v", err)
		}
		l.ns = append(l.ns, h)
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			t.Fatalf("lo: %v", err)
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			t.Fatalf("lo up: %v", err)
		}
	}
	l.enter(0)
	return l
}

func (l *lab) enter(i int) {
	l.t.Helper()
	if err := netns.Set(l.ns[i]); err != nil {
		l.t.Fatalf("enter namespace %d: %v", i, err)
	}
}

// handle is a netlink handle for namespace i.
func (l *lab) handle(i int) *netlink.Handle {
	l.t.Helper()
	h, err := netlink.NewHandleAt(l.ns[i])
	if err != nil {
		l.t.Fatalf("netlink handle: %v", err)
	}
	l.t.Cleanup(h.Close)
	return h
}

// veth connects namespace a (interface an) and b (interface bn), both up.
func (l *lab) veth(a int, an string, b int, bn string) {
	l.t.Helper()
	ha := l.handle(a)
	if err := ha.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: an}, PeerName: bn, PeerNamespace: netlink.NsFd(l.ns[b])}); err != nil {
		l.t.Fatalf("veth %s-%s: %v", an, bn, err)
	}
	for _, side := range []struct {
		h    *netlink.Handle
		name string
	}{{ha, an}, {l.handle(b), bn}} {
		link, err := side.h.LinkByName(side.name)
		if err != nil {
			l.t.Fatalf("find %s: %v", side.name, err)
		}
		if err := side.h.LinkSetUp(link); err != nil {
			l.t.Fatalf("up %s: %v", side.name, err)
		}
	}
}

func mustAddr(t *testing.T, h *netlink.Handle, dev, cidr string) {
	t.Helper()
	link, err := h.LinkByName(dev)
	if err != nil {
		t.Fatalf("find %s: %v", dev, err)
	}
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(cidr, ":") {
		a.Flags = unix.IFA_F_NODAD
	}
	if err := h.AddrAdd(link, a); err != nil {
		t.Fatalf("add %s to %s: %v", cidr, dev, err)
	}
}

func mustRoute(t *testing.T, h *netlink.Handle, r *netlink.Route) {
	t.Helper()
	if err := h.RouteAdd(r); err != nil {
		t.Fatalf("add route %v: %v", r, err)
	}
}

func linkIndex(t *testing.T, h *netlink.Handle, dev string) int {
	t.Helper()
	link, err := h.LinkByName(dev)
	if err != nil {
		t.Fatalf("find %s: %v", dev, err)
	}
	return link.Attrs().Index
}

// routingDump is every policy rule and every route in every table of both
// families, one line each, sorted: the state exit-node tests compare.
func routingDump(t *testing.T, h *netlink.Handle) []string {
	t.Helper()
	var out []string
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		rules, err := h.RuleList(fam)
		if err != nil {
			t.Fatalf("list rules: %v", err)
		}
		for _, r := range rules {
			mask := "-"
			if r.Mask != nil {
				mask = fmt.Sprintf("%#x", *r.Mask)
			}
			out = append(out, fmt.Sprintf("rule %s prio=%d table=%d mark=%#x/%s invert=%v suppress=%d",
				familyName(fam), r.Priority, r.Table, r.Mark, mask, r.Invert, r.SuppressPrefixlen))
		}
		routes, err := h.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
		if err != nil {
			t.Fatalf("list routes: %v", err)
		}
		for _, r := range routes {
			out = append(out, fmt.Sprintf("route table=%d %s proto=%d type=%d", r.Table, r, r.Protocol, r.Type))
		}
	}
	slices.Sort(out)
	return out
}

// routeDev reports which interface the kernel picks for dst with the given
// socket mark.
func routeDev(t *testing.T, h *netlink.Handle, dst string, mark uint32) string {
	t.Helper()
	routes, err := h.RouteGetWithOptions(net.ParseIP(dst), &netlink.RouteGetOptions{Mark: mark})
	if err != nil {
		return "error: " + err.Error()
	}
	if len(routes) == 0 {
		return "none"
	}
	link, err := h.LinkByIndex(routes[0].LinkIndex)
	if err != nil {
		t.Fatalf("link %d: %v", routes[0].LinkIndex, err)
	}
	return link.Attrs().Name
}
