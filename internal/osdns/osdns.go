// Package osdns points the operating system's resolver at weft's own
// (internal/magicdns) and undoes it exactly. On Linux it uses
// systemd-resolved's per-link DNS over D-Bus when resolved runs in this
// network namespace, and otherwise rewrites /etc/resolv.conf, keeping the
// original in the state directory first.
//
// Undoing must survive a crash: the backup on disk says what to restore,
// so a daemon killed with SIGKILL is undone by Recover at its next start.
// With resolved there is nothing on disk to undo: resolved forgets a
// link's DNS when the link goes, and the TUN goes with the process.
//
// Lab safety: a daemon in a network namespace of its own that shares the
// host's mount namespace would rewrite the host's /etc/resolv.conf. New
// refuses that case when it can tell (docs/dns.md).
package osdns

import (
	"errors"
	"net/netip"
)

// Config is what the node asks of the OS resolver.
type Config struct {
	// Nameservers are weft's resolver addresses.
	Nameservers []netip.Addr
	// SearchDomains complete short names, the tailnet domain first.
	SearchDomains []string
	// MatchDomains are the domains sent to Nameservers where the OS
	// routes DNS per link (resolved); the rest keep the OS's resolvers.
	// Ignored by resolv.conf, which has one list for everything.
	MatchDomains []string
	// All sends every name to Nameservers, also with resolved ("~.").
	All bool
}

// Modes a Manager works in, as `weft dns status` shows them.
const (
	ModeResolved   = "resolved"
	ModeResolvConf = "resolv.conf"
	ModeOff        = "off"
)

// Manager changes the OS's DNS configuration and undoes it. Its methods
// are safe for concurrent use.
type Manager interface {
	// Mode says how the configuration is applied.
	Mode() string
	// Set applies cfg, saving what it changes first.
	Set(cfg Config) error
	// Restore undoes everything Set did; it is a no-op when nothing was
	// set.
	Restore() error
	// Check re-applies the configuration if something else changed it
	// behind weft's back, and says so in the error (nil: all as set, or
	// nothing set).
	Check() error
	// Fallback returns the resolvers the OS had before weft, for names
	// the tailnet has no nameservers for.
	Fallback() []netip.AddrPort
}

// ErrOverwritten is wrapped by Check's error when something else changed
// the OS's DNS configuration after weft set it.
var ErrOverwritten = errors.New("osdns: DNS configuration changed behind weft's back")

// ErrSharedFiles is returned by New when the daemon runs in a network
// namespace of its own but shares the host's files: /etc/resolv.conf is
// not this namespace's to change.
var ErrSharedFiles = errors.New("osdns: this daemon has a network namespace of its own but shares the host's /etc/resolv.conf; " +
	"run it with a private mount namespace (as `ip netns exec` gives) or with `weft up --accept-dns=false`")

// Options configures New.
type Options struct {
	// StateDir holds the backup of what was changed. Required.
	StateDir string
	// Link is the TUN device's name, for per-link DNS.
	Link string
	// ResolvConf is the file managed without resolved; empty means
	// /etc/resolv.conf.
	ResolvConf string
}

// DefaultResolvConf is the resolver configuration file.
const DefaultResolvConf = "/etc/resolv.conf"

func (o *Options) resolvConf() string {
	if o.ResolvConf == "" {
		return DefaultResolvConf
	}
	return o.ResolvConf
}

// errUnsupported: no OS integration on this system yet.
var errUnsupported = errors.New("osdns: changing the system's DNS is not supported on this OS yet; use `weft up --accept-dns=false` and point the OS at 100.100.100.100 by hand")
