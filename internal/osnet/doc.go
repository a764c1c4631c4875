// Package osnet configures a Linux host's network for weft: the TUN device
// with the node's tailnet addresses and routes, the policy routing that
// sends all traffic through an exit node while weft's own marked sockets
// bypass it, and, on an exit node or subnet router, IP forwarding with
// masquerading and TCP MSS clamping in weft's own nftables table.
//
// Everything is desired state: Router.Apply compares a Config with what the
// kernel has and changes only the difference, so a new peer map never
// recreates the device or drops a route that is still wanted. Close and
// Cleanup remove exactly what weft added (see docs/os-networking.md).
//
// A Router works in the network namespace of the thread that called New,
// whichever thread later calls its methods.
//
// Files: config.go (Options and Config, shared by every OS); router.go,
// routes.go, rules.go, nft.go, sysctl.go, mark.go, monitor.go and
// cleanup.go are Linux's; router_other.go and mark_other.go stand in on
// systems where weft has no kernel TUN support yet (the daemon runs in
// userspace networking mode there).
package osnet
