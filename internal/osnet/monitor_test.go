//go:build linux

package osnet

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// TestChanges: an address added to another interface of the namespace,
// and that interface going down, each reach the Router's change channel.
func TestChanges(t *testing.T) {
	l := newLab(t, 2)
	r := newRouter(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes, err := r.Changes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The Router's own start may have left a notice pending.
	select {
	case <-changes:
	case <-time.After(200 * time.Millisecond):
	}
	l.veth(0, "eth0", 1, "eth1")
	wait := func(what string) {
		t.Helper()
		select {
		case <-changes:
		case <-time.After(5 * time.Second):
			t.Fatalf("no change notice after %s", what)
		}
	}
	wait("a new interface")
	h := l.handle(0)
	link, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	drain(changes)
	if err := h.AddrAdd(link, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(192, 0, 2, 7), Mask: net.CIDRMask(24, 32)}}); err != nil {
		t.Fatal(err)
	}
	wait("a new address")
	drain(changes)
	if err := h.LinkSetDown(link); err != nil {
		t.Fatal(err)
	}
	wait("an interface going down")
	// After ctx ends the channel gets nothing more.
	cancel()
	time.Sleep(100 * time.Millisecond)
	drain(changes)
	if err := h.LinkSetUp(link); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changes:
		t.Error("a notice after the watch ended")
	case <-time.After(300 * time.Millisecond):
	}
}

// drain empties the change channel of notices already pending, waiting a
// moment for the kernel's last ones to arrive.
func drain(c <-chan struct{}) {
	for {
		select {
		case <-c:
		case <-time.After(100 * time.Millisecond):
			return
		}
	}
}
