//go:build linux

package osnet

import (
	"context"
	"fmt"

	"github.com/vishvananda/netlink"
)

// Changes reports, on the returned channel, that an address or a link of
// the Router's namespace changed, as the kernel announces it over netlink,
// until ctx ends. Notices are coalesced: a slow reader finds one pending
// notice for any number of changes, and then looks at the host itself.
// Polling stays the caller's fallback, since netlink may drop notices when
// its socket buffer overflows.
func (r *Router) Changes(ctx context.Context) (<-chan struct{}, error) {
	out := make(chan struct{}, 1)
	notify := func() {
		select {
		case out <- struct{}{}:
		default:
		}
	}
	onErr := func(err error) { r.opts.Logger.Debug("netlink monitor", "err", err) }
	done := make(chan struct{})
	addrs := make(chan netlink.AddrUpdate, 64)
	if err := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{Namespace: &r.ns, ErrorCallback: onErr}); err != nil {
		close(done)
		return nil, fmt.Errorf("osnet: watch addresses: %w", err)
	}
	links := make(chan netlink.LinkUpdate, 64)
	if err := netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{Namespace: &r.ns, ErrorCallback: onErr}); err != nil {
		close(done)
		return nil, fmt.Errorf("osnet: watch links: %w", err)
	}
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-addrs:
				if !ok {
					addrs = nil
					continue
				}
				notify()
			case _, ok := <-links:
				if !ok {
					links = nil
					continue
				}
				notify()
			}
		}
	}()
	return out, nil
}
