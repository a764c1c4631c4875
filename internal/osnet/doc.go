// Package osnet configures the host's network for weft. On Linux: the TUN device
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
// cleanup.go are Linux's. plan.go turns a Config into the addresses and
// routes a macOS or Windows TUN needs (split default routes for an exit
// node; no forwarding: exit nodes and subnet routers there run in
// userspace networking mode) and is tested on Linux; router_darwin.go
// applies it with ifconfig/route on a utun device, router_windows.go with
// IP Helper (winipcfg) on a wintun adapter plus WFP rules against leaks
// around an exit node; mark_darwin.go and mark_windows.go bind weft's own
// sockets to the default route's interface instead of marking them.
// router_stub.go and mark_stub.go stand in on other systems.
package osnet
