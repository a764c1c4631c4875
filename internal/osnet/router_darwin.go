//go:build darwin

package osnet

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"

	"golang.zx2c4.com/wireguard/tun"
)

// Router owns weft's utun device on macOS and the addresses and routes
// pointing into it. It changes nothing else: macOS keeps its own default
// routes, weft's sockets are bound to the physical interface (MarkControl),
// and an exit node client uses the split default routes (plan.go). The
// host is changed with ifconfig(8) and route(8), whose effects are gone
// when the utun device goes.
type Router struct {
	opts Options
	dev  tun.Device
	name string

	mu     sync.Mutex // guards the fields below
	have   hostPlan   // what the last successful Apply set
	closed bool
}

// New creates a utun device (the kernel picks its number unless
// opts.TUNName names one, "utunN") with opts.MTU.
func New(opts Options) (*Router, error) {
	opts = opts.withDefaults()
	name := opts.TUNName
	if !strings.HasPrefix(name, "utun") {
		// macOS names its TUN devices itself; "utun" asks for the next free one.
		name = "utun"
	}
	dev, err := tun.CreateTUN(name, opts.MTU)
	if err != nil {
		return nil, fmt.Errorf("osnet: creating utun device (weft must run as root): %w", err)
	}
	real, err := dev.Name()
	if err != nil {
		dev.Close()
		return nil, fmt.Errorf("osnet: utun device name: %w", err)
	}
	opts.Logger.Info("created TUN device", "name", real, "mtu", opts.MTU)
	return &Router{opts: opts, dev: dev, name: real}, nil
}

// SetMTU sets the utun device's MTU (path MTU discovery picks it).
// Values below 1280 are refused: the tailnet carries IPv6.
func (r *Router) SetMTU(mtu int) error {
	if mtu < 1280 {
		return fmt.Errorf("osnet: MTU %d is below 1280, the least IPv6 needs", mtu)
	}
	return r.run([][]string{{"/sbin/ifconfig", r.name, "mtu", fmt.Sprint(mtu)}})
}

// TUN returns the utun device, for wireguard-go.
func (r *Router) TUN() tun.Device { return r.dev }

// Name returns the utun device's name as the kernel gave it.
func (r *Router) Name() string { return r.name }

// Mark returns the configured mark; on macOS any non-zero mark means
// "bind to the physical interface" (see MarkControl).
func (r *Router) Mark() uint32 { return r.opts.Mark }

// Warnings returns nothing: Apply either does all it is asked or fails.
func (r *Router) Warnings() []string { return nil }

// Apply makes the utun's addresses and routes match cfg, changing only
// the difference from the last Apply.
func (r *Router) Apply(cfg Config) error {
	want, err := planFor(cfg)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	if err := r.run(macCommands(r.name, r.have, want)); err != nil {
		// Some commands may have run: forget what we had so the next
		// Apply replays everything; re-adding what exists fails harmlessly.
		r.have = hostPlan{}
		return err
	}
	r.have = want
	return nil
}

func (r *Router) run(cmds [][]string) error {
	var errs []error
	for _, c := range cmds {
		out, err := exec.Command(c[0], c[1:]...).CombinedOutput()
		if err != nil {
			errs = append(errs, fmt.Errorf("osnet: %s: %w: %s", strings.Join(c, " "), err, strings.TrimSpace(string(out))))
			continue
		}
		r.opts.Logger.Info("host network", "ran", strings.Join(c, " "))
	}
	return errors.Join(errs...)
}

// Changes is not implemented on macOS: the engine polls local addresses.
func (r *Router) Changes(context.Context) (<-chan struct{}, error) {
	return nil, fmt.Errorf("osnet: change notices on macOS: %w", errors.ErrUnsupported)
}

// IntoTunnelDrops reports 0: weft installs no packet filter on macOS.
func (r *Router) IntoTunnelDrops() (uint64, error) { return 0, nil }

// Close removes the routes and addresses Apply added. The utun device
// itself is closed by wireguard-go, which takes whatever is left with it.
func (r *Router) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	err := r.run(macCommands(r.name, r.have, hostPlan{}))
	r.have = hostPlan{}
	return err
}

// Cleanup has nothing to remove: every change weft makes on macOS lives
// on its utun device and goes with it, also when the daemon was killed.
func Cleanup(Options) error { return nil }

// Leftovers finds nothing, for the same reason.
func Leftovers(Options) ([]string, error) { return nil, nil }
