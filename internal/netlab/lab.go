//go:build linux

package netlab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Node kinds.
const (
	KindInternet = "internet"
	KindRouter   = "router"
	KindHost     = "host"
	KindPublic   = "public"
)

// Config says where a lab lives.
type Config struct {
	// Prefix starts every namespace name of the lab, e.g. "wl-weft-".
	// Up removes every namespace with this prefix left from an earlier
	// run, so it must not be a prefix of another live lab's Prefix.
	Prefix string
	// Dir holds the lab's state file and the logs of its processes.
	Dir string
	// Helper is the command line that runs weft's lab helpers, e.g.
	// {"/usr/local/bin/weft", "lab"}; Up appends "wire ..." (the delay
	// line) or "whoami ..." to it. It is needed only when a router has a
	// delay or a public host serves whoami.
	Helper []string
	// Logger receives progress at debug level; nil discards it.
	Logger *slog.Logger
}

// Node is one machine of the lab: a namespace and its addresses.
type Node struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	// NS is the network namespace, under /run/netns, so `ip netns exec`
	// works for debugging.
	NS string `json:"ns"`
	// LANAddr is a host's or router's address on its LAN.
	LANAddr netip.Addr `json:"lan_addr,omitzero"`
	// LAN is the router's or host's LAN subnet.
	LAN netip.Prefix `json:"lan,omitzero"`
	// WANAddr is a router's or public host's address on the internet.
	WANAddr netip.Addr `json:"wan_addr,omitzero"`
	// LANAddr6, LAN6 and WANAddr6 are the same for IPv6, on sites and
	// public hosts that have it (ipv6.go).
	LANAddr6 netip.Addr   `json:"lan_addr6,omitzero"`
	LAN6     netip.Prefix `json:"lan6,omitzero"`
	WANAddr6 netip.Addr   `json:"wan_addr6,omitzero"`
	// Router is the router a host sits behind.
	Router string `json:"router,omitempty"`
	// NAT, Delay and RateMbit describe a router's WAN link.
	NAT      NATKind `json:"nat,omitempty"`
	DelayMS  int64   `json:"delay_ms,omitempty"`
	RateMbit int     `json:"rate_mbit,omitempty"`

	lab *Lab
}

// Addr is the address other nodes reach this node at from its side of any
// NAT: a host's LAN address, a router's or public host's WAN address. On
// an IPv6-only site, which has no IPv4, it is the IPv6 one (Addr6).
func (n *Node) Addr() netip.Addr {
	a := n.WANAddr
	if n.Kind == KindHost {
		a = n.LANAddr
	}
	if !a.IsValid() {
		return n.Addr6()
	}
	return a
}

// Addr6 is the node's global IPv6 address: a host's on its LAN, a
// router's or public host's on the internet. Zero if it has none.
func (n *Node) Addr6() netip.Addr {
	if n.Kind == KindHost {
		return n.LANAddr6
	}
	return n.WANAddr6
}

// Do runs fn on an OS thread switched into the node's namespace and back.
// Sockets fn creates stay in the namespace; programs fn starts with
// os/exec start in it; goroutines fn starts do not run in it.
func (n *Node) Do(fn func() error) error { return inNS(n.NS, fn) }

// Lab is a running lab. Its methods are safe for concurrent use.
type Lab struct {
	prefix string
	dir    string
	log    *slog.Logger
	nodes  []*Node // fixed after Up or Open

	mu    sync.Mutex
	procs []*Process // guarded by mu; started by this Lab value
	// oldProcs are processes recorded in the state file by another run
	// of the CLI; only their PIDs are known. Guarded by mu.
	oldProcs []*Process
}

// state is the lab's state file: enough to stop and remove the lab from
// another process (`weft lab down`), or after a crash.
type state struct {
	Prefix     string     `json:"prefix"`
	Dir        string     `json:"dir"`
	Namespaces []string   `json:"namespaces"`
	Nodes      []*Node    `json:"nodes"`
	Processes  []*Process `json:"processes"`
}

// StateFile is the name of the state file in a lab's directory.
const StateFile = "state.json"

// ErrNoLab is returned by Open when the directory holds no lab.
var ErrNoLab = errors.New("netlab: no lab is up")

// Node returns the node called name, or nil. "internet" is the namespace
// of the bridge all WANs and public hosts attach to.
func (l *Lab) Node(name string) *Node {
	for _, n := range l.nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Nodes returns every node, the internet first, then routers with their
// hosts, then public hosts.
func (l *Lab) Nodes() []*Node { return append([]*Node(nil), l.nodes...) }

// Dir is the lab's directory (state file and logs).
func (l *Lab) Dir() string { return l.dir }

func (l *Lab) namespaces() []string {
	var ns []string
	for _, n := range l.nodes {
		ns = append(ns, n.NS)
	}
	return ns
}

// saveLocked writes the state file. l.mu must be held.
func (l *Lab) saveLocked() error {
	st := state{Prefix: l.prefix, Dir: l.dir, Namespaces: l.namespaces(), Nodes: l.nodes}
	st.Processes = append(append(st.Processes, l.oldProcs...), l.procs...)
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("netlab: state: %w", err)
	}
	tmp := filepath.Join(l.dir, StateFile+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("netlab: state: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(l.dir, StateFile)); err != nil {
		return fmt.Errorf("netlab: state: %w", err)
	}
	return nil
}

func readState(dir string) (*state, error) {
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoLab
	}
	if err != nil {
		return nil, fmt.Errorf("netlab: read state: %w", err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("netlab: state file %s is damaged (remove it and run down again): %w", filepath.Join(dir, StateFile), err)
	}
	return &st, nil
}

// Open attaches to the lab whose state is in dir, as left by Up in another
// process. Down on the result stops the lab's processes by their recorded
// PIDs and removes its namespaces.
func Open(dir string, log *slog.Logger) (*Lab, error) {
	st, err := readState(dir)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &Lab{prefix: st.Prefix, dir: dir, log: log, nodes: st.Nodes}
	for _, n := range l.nodes {
		n.lab = l
	}
	for _, p := range st.Processes {
		if p == nil {
			continue
		}
		p.lab = l
		l.oldProcs = append(l.oldProcs, p)
	}
	return l, nil
}

// Processes returns the processes the lab has started (including those
// recorded by the run that brought it up).
func (l *Lab) Processes() []*Process {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append(append([]*Process(nil), l.oldProcs...), l.procs...)
}

// Down stops every process of the lab and removes its namespaces and state
// file. Logs stay in the lab's directory. It is safe to call twice.
func (l *Lab) Down(ctx context.Context) error {
	l.mu.Lock()
	procs := append([]*Process(nil), l.procs...)
	old := append([]*Process(nil), l.oldProcs...)
	l.mu.Unlock()
	names := l.namespaces()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() { defer wg.Done(); p.Kill() }()
	}
	wg.Wait()
	var pids []int
	for _, p := range old {
		if pidInNS(p.PID, names) {
			pids = append(pids, p.PID)
		}
	}
	stopPIDs(pids, stopGrace)
	err := removeNamespaces(names)
	if rerr := os.Remove(filepath.Join(l.dir, StateFile)); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
		err = errors.Join(err, fmt.Errorf("netlab: %w", rerr))
	}
	if err == nil {
		l.log.Debug("lab down", "prefix", l.prefix)
	}
	return err
}

// removeNamespaces stops whatever still runs in the namespaces (processes
// started by hand with `ip netns exec` too) and deletes them.
func removeNamespaces(names []string) error {
	stopPIDs(procsInNS(names), stopGrace)
	var errs []error
	for _, n := range names {
		errs = append(errs, deleteNS(n))
	}
	return errors.Join(errs...)
}

// Remove stops the processes and deletes the namespaces of a lab that is
// no longer wanted: the one recorded in dir's state file (if any) and
// every namespace whose name starts with prefix. Either may be empty. Up
// calls it first, so a crashed run leaves nothing behind for long.
func Remove(dir, prefix string) error {
	var names []string
	var errs []error
	if dir == "" {
		// Only the prefix is known.
	} else if st, err := readState(dir); err == nil {
		names = append(names, st.Namespaces...)
		var pids []int
		for _, p := range st.Processes {
			if p != nil && pidInNS(p.PID, st.Namespaces) {
				pids = append(pids, p.PID)
			}
		}
		stopPIDs(pids, stopGrace)
		if err := os.Remove(filepath.Join(dir, StateFile)); err != nil {
			errs = append(errs, fmt.Errorf("netlab: %w", err))
		}
	} else if !errors.Is(err, ErrNoLab) {
		errs = append(errs, err)
	}
	if prefix != "" {
		more, err := ListNamespaces(prefix)
		errs = append(errs, err)
		names = append(names, more...)
	}
	errs = append(errs, removeNamespaces(names))
	return errors.Join(errs...)
}

// ListNamespaces returns the names of the namespaces starting with prefix.
func ListNamespaces(prefix string) ([]string, error) { return listNS(prefix) }

// FlushConntrack forgets every connection the router tracks, its NAT
// mappings among them, as a router reboot would: TCP connections through
// it die too.
func (l *Lab) FlushConntrack(router string) error {
	return l.flushConntrack(router, 0)
}

// ForgetUDP forgets the router's UDP flows only (IPv4 and IPv6), as a
// NAT does when its UDP mappings time out while TCP connections, whose
// timeouts are far longer, live on.
func (l *Lab) ForgetUDP(router string) error {
	return l.flushConntrack(router, unix.IPPROTO_UDP)
}

// flushConntrack forgets the router's flows of protocol proto, or all of
// them for 0.
func (l *Lab) flushConntrack(router string, proto uint8) error {
	n := l.Node(router)
	if n == nil || n.Kind != KindRouter {
		return fmt.Errorf("netlab: flush conntrack: %q is not a router of this lab", router)
	}
	h, err := netns.GetFromPath(filepath.Join(netnsDir, n.NS))
	if err != nil {
		return fmt.Errorf("netlab: flush conntrack on %s: %w", router, err)
	}
	defer h.Close()
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		return fmt.Errorf("netlab: flush conntrack on %s: %w", router, err)
	}
	defer nh.Close()
	if proto == 0 {
		if err := nh.ConntrackTableFlush(netlink.ConntrackTable); err != nil {
			return fmt.Errorf("netlab: flush conntrack on %s: %w", router, err)
		}
		return nil
	}
	f := &netlink.ConntrackFilter{}
	if err := f.AddProtocol(proto); err != nil {
		return fmt.Errorf("netlab: flush conntrack on %s: %w", router, err)
	}
	for _, fam := range []netlink.InetFamily{unix.AF_INET, unix.AF_INET6} {
		if _, err := nh.ConntrackDeleteFilters(netlink.ConntrackTable, fam, f); err != nil {
			return fmt.Errorf("netlab: forgetting UDP flows on %s: %w", router, err)
		}
	}
	return nil
}
