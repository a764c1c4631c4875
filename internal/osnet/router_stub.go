//go:build !linux && !darwin && !windows

package osnet

import (
	"context"
	"errors"
	"fmt"
	"runtime"

	"golang.zx2c4.com/wireguard/tun"
)

// ErrUnsupported is returned by New where weft has no kernel TUN support
// yet; userspace networking (agent's netstack mode) works there instead.
var ErrUnsupported = fmt.Errorf("osnet: kernel TUN mode is not supported on %s yet; run the daemon with --tun=userspace-networking: %w", runtime.GOOS, errors.ErrUnsupported)

// Router is the host network's owner. On this OS it cannot be created:
// New fails with ErrUnsupported, so the methods below are never reached
// and exist to keep the callers OS-independent.
type Router struct{ opts Options }

// New reports ErrUnsupported.
func New(opts Options) (*Router, error) { return nil, ErrUnsupported }

// SetMTU reports ErrUnsupported.
func (r *Router) SetMTU(int) error { return ErrUnsupported }

// TUN returns nil: there is no device.
func (r *Router) TUN() tun.Device { return nil }

// Name returns the configured device name.
func (r *Router) Name() string { return r.opts.TUNName }

// Mark returns the configured socket mark.
func (r *Router) Mark() uint32 { return r.opts.Mark }

// Warnings returns nothing.
func (r *Router) Warnings() []string { return nil }

// Apply reports ErrUnsupported.
func (r *Router) Apply(Config) error { return ErrUnsupported }

// Changes reports ErrUnsupported; the caller polls instead.
func (r *Router) Changes(context.Context) (<-chan struct{}, error) { return nil, ErrUnsupported }

// Close does nothing.
func (r *Router) Close() error { return nil }

// Cleanup has nothing to remove on this OS: weft changes nothing in the
// host network here.
func Cleanup(Options) error { return nil }

// Leftovers finds nothing on this OS, for the same reason.
func Leftovers(Options) ([]string, error) { return nil, nil }

// IntoTunnelDrops reports 0: there is no firewall here.
func (r *Router) IntoTunnelDrops() (uint64, error) { return 0, nil }
