// Package nodestate keeps a node's state directory: its machine key and
// disco key, its preferences (server, pinned server key, node key, whether
// it should be up), the last peer map, the data plane's UDP port, and the
// lock that keeps a second daemon off the directory. Every file is written atomically (temporary
// file, fsync, rename, fsync of the directory) and readable by the owner
// only, so a crash or power cut leaves either the old or the new file.
package nodestate

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"weft/internal/key"
	"weft/internal/wire"
)

// File names inside the state directory.
const (
	machineKeyFile = "machine.key"
	discoKeyFile   = "disco.key"
	portFile       = "port"
	prefsFile      = "prefs.json"
	netmapFile     = "netmap.json"
)

// Dir is an open state directory. Its methods are not safe for concurrent
// use; the daemon serialises them.
type Dir struct {
	path string
}

// Open opens the state directory at path, creating it owner-only if
// needed.
func Open(path string) (*Dir, error) {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("nodestate: %w", err)
	}
	if err := os.Chmod(path, 0o700); err != nil {
		return nil, fmt.Errorf("nodestate: %w", err)
	}
	return &Dir{path: path}, nil
}

// Path returns the directory's path.
func (d *Dir) Path() string { return d.path }

// MachineKey returns the node's machine key, making and saving one on
// first use. It is the node's identity toward the server and never changes.
func (d *Dir) MachineKey() (key.MachinePrivate, error) {
	return loadOrMakeKey(filepath.Join(d.path, machineKeyFile), key.NewMachine)
}

// DiscoKey returns the node's disco key, making and saving one on first
// use. It is kept across restarts so that peers holding the last map (the
// control server may be down while this node restarts) still accept its
// path discovery: a fresh key would reach them only through the server.
func (d *Dir) DiscoKey() (key.DiscoPrivate, error) {
	return loadOrMakeKey(filepath.Join(d.path, discoKeyFile), key.NewDisco)
}

// loadOrMakeKey reads the private key saved at p, or makes one with
// newKey and saves it atomically when p does not exist yet. A file that
// exists but does not parse is a DamagedError, never silently replaced:
// a new machine key would make the node a stranger to its server.
func loadOrMakeKey[K key.Kind](p string, newKey func() key.Private[K]) (key.Private[K], error) {
	var k key.Private[K]
	b, err := os.ReadFile(p)
	if err == nil {
		if err := k.UnmarshalText([]byte(strings.TrimSpace(string(b)))); err != nil {
			return k, &DamagedError{Path: p, Err: err}
		}
		return k, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return k, fmt.Errorf("nodestate: %w", err)
	}
	k = newKey()
	text, err := k.MarshalText()
	if err != nil {
		return k, fmt.Errorf("nodestate: %w", err)
	}
	return k, WriteFileAtomic(p, append(text, '\n'))
}

// Port returns the UDP port the data plane used last, or 0 if none was
// saved (or the file is unreadable: any port will then do).
func (d *Dir) Port() uint16 {
	b, err := os.ReadFile(filepath.Join(d.path, portFile))
	if err != nil {
		return 0
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 16)
	if err != nil {
		return 0
	}
	return uint16(n)
}

// SavePort records the data plane's UDP port, so that the next run binds
// the same one: the NAT's mapping and the endpoints peers cached for this
// node stay valid across a restart.
func (d *Dir) SavePort(port uint16) error {
	return WriteFileAtomic(filepath.Join(d.path, portFile), []byte(strconv.Itoa(int(port))+"\n"))
}

// Prefs is what the node remembers between runs.
type Prefs struct {
	// ServerURL is the control server's URL; empty before the first up.
	ServerURL string `json:"server_url,omitempty"`
	// ServerCA is PEM certificates trusted for the server's TLS besides
	// the system's roots (weft up --ca-file); empty for none.
	ServerCA string `json:"server_ca,omitempty"`
	// ServerKey is the server key pinned on first contact.
	ServerKey key.MachinePublic `json:"server_key,omitzero"`
	// Hostname is the name the user asked for.
	Hostname string `json:"hostname,omitempty"`
	// WantUp records that the user ran up and not down since: after a
	// restart the daemon connects by itself.
	WantUp bool `json:"want_up"`
	// NodeKey is the node's current node key; zero before registration.
	NodeKey key.NodePrivate `json:"node_key,omitzero"`
	// Registered is set once the server accepted NodeKey.
	Registered bool `json:"registered"`

	// AdvertiseExitNode offers this node as an exit node (0.0.0.0/0 and
	// ::/0); an administrator must approve it.
	AdvertiseExitNode bool `json:"advertise_exit_node,omitempty"`
	// AdvertiseRoutes are subnets this node offers to route; an
	// administrator must approve each.
	AdvertiseRoutes []netip.Prefix `json:"advertise_routes,omitempty"`
	// NoSNATSubnetRoutes keeps tailnet source addresses on traffic this
	// node forwards into AdvertiseRoutes (the zero value masquerades,
	// which is the default).
	NoSNATSubnetRoutes bool `json:"no_snat_subnet_routes,omitempty"`
	// ExitNodeID is the peer this node sends its internet traffic
	// through, by the control server's stable node ID: a rename of the
	// exit node keeps it. Zero for none, or while a choice made before
	// the first map (ExitNode) waits to be resolved.
	ExitNodeID wire.NodeID `json:"exit_node_id,omitempty"`
	// ExitNode is the exit node's name as last seen in a map, for
	// display; empty for none. While ExitNodeID is zero it is the name
	// or tailnet address the user gave, resolved against the next map.
	ExitNode string `json:"exit_node,omitempty"`
	// ExitNodeList, when set, is the ordered failover list the user
	// gave (`weft set --exit-node=busan,pc`), and ExitNodeAuto asks for
	// the approved exit node that answers fastest; ExitNodeID and
	// ExitNode are then the one in use, which the daemon changes as
	// candidates come and go (internal/exitpick).
	ExitNodeList []ExitCandidate `json:"exit_node_list,omitempty"`
	ExitNodeAuto bool            `json:"exit_node_auto,omitempty"`
	// ExitNodeAllowLAN keeps the local LAN direct while an exit node is
	// in use.
	ExitNodeAllowLAN bool `json:"exit_node_allow_lan,omitempty"`
	// AcceptRoutes uses peers' approved subnet routes.
	AcceptRoutes bool `json:"accept_routes,omitempty"`
	// NoAcceptDNS leaves the OS's DNS alone (`weft up
	// --accept-dns=false`); the zero value points the OS at weft's
	// resolver when the tailnet has MagicDNS on.
	NoAcceptDNS bool `json:"no_accept_dns,omitempty"`
}

// ExitCandidate is one exit node of a failover list: by node ID once a
// map resolved it, and by the name as last seen (or as the user gave it,
// while ID is zero).
type ExitCandidate struct {
	ID   wire.NodeID `json:"id,omitempty"`
	Name string      `json:"name"`
}

// LoadPrefs reads the preferences; a missing file gives zero Prefs.
func (d *Dir) LoadPrefs() (Prefs, error) {
	var p Prefs
	err := d.loadJSON(prefsFile, &p)
	return p, err
}

// SavePrefs writes the preferences atomically.
func (d *Dir) SavePrefs(p Prefs) error { return d.saveJSON(prefsFile, p) }

// LoadNetMap reads the last saved map into v; a missing file leaves v.
func (d *Dir) LoadNetMap(v any) error { return d.loadJSON(netmapFile, v) }

// SaveNetMap writes the last map atomically.
func (d *Dir) SaveNetMap(v any) error { return d.saveJSON(netmapFile, v) }

// DamagedError reports a state file that exists but cannot be read as
// what it should hold (truncated by a crash, corrupted, edited by hand).
type DamagedError struct {
	Path string
	Err  error
}

func (e *DamagedError) Error() string {
	return fmt.Sprintf("nodestate: %s is damaged (%v)", e.Path, e.Err)
}

func (e *DamagedError) Unwrap() error { return e.Err }

// SetAside moves the damaged file out of the way, to its path with
// ".damaged" appended (replacing an older one), so that the next load
// starts afresh and the bytes stay for a person to look at. It returns
// the new path.
func (e *DamagedError) SetAside() (string, error) {
	aside := e.Path + ".damaged"
	if err := os.Rename(e.Path, aside); err != nil {
		return "", fmt.Errorf("nodestate: setting aside damaged %s: %w", e.Path, err)
	}
	return aside, syncDir(filepath.Dir(e.Path))
}

// Forget removes the preferences (with the pin and node key) and the last
// map, keeping the machine key: the node logs out.
func (d *Dir) Forget() error {
	for _, f := range []string{prefsFile, netmapFile} {
		if err := os.Remove(filepath.Join(d.path, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("nodestate: %w", err)
		}
	}
	return syncDir(d.path)
}

func (d *Dir) loadJSON(name string, v any) error {
	b, err := os.ReadFile(filepath.Join(d.path, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("nodestate: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return &DamagedError{Path: filepath.Join(d.path, name), Err: err}
	}
	return nil
}

func (d *Dir) saveJSON(name string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("nodestate: encoding %s: %w", name, err)
	}
	return WriteFileAtomic(filepath.Join(d.path, name), append(b, '\n'))
}

// WriteFileAtomic replaces path with data, mode 0600: it writes a
// temporary file beside it, fsyncs it, renames it over path and fsyncs the
// directory, so readers and crashes see the old or the new content whole.
func WriteFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("nodestate: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("nodestate: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("nodestate: writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("nodestate: syncing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("nodestate: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("nodestate: %w", err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("nodestate: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("nodestate: syncing %s: %w", dir, err)
	}
	return nil
}
