// Package changefeed carries change events between the control servers of
// one tailnet, so that several `weft server` processes sharing a database
// send their nodes the same maps.
//
// An event says what changed, by id, never how: the receiving server
// re-reads the affected rows from the shared database and sends its own
// nodes the deltas. Events therefore carry no secrets and stay small, and
// one that is lost or repeated costs at most a stale map until the next
// event or resync, never a wrong one. The text form is the payload of a
// PostgreSQL NOTIFY (docs/changefeed.md); Hub carries the same events
// between servers in one process (one SQLite server, and tests).
package changefeed

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"weft/internal/wire"
)

// Version is the event format's version, the "v" of every event. A server
// that reads another version resyncs instead of guessing.
//
//	1 (2026-12-03): first version.
const Version = 1

// Kind says what changed.
type Kind string

// The kinds of event. Node kinds name their nodes in Event.Nodes; the
// others name none.
const (
	// KindNode: the nodes' stored records changed (registration, key
	// rotation or expiry, rename, tags, route approval): re-read them.
	KindNode Kind = "node"
	// KindRuntime: the nodes' runtime facts (endpoints, home region, disco
	// key, host facts) were written to the store: re-read those.
	KindRuntime Kind = "runtime"
	// KindOnline and KindOffline: the nodes' map streams started or
	// ended on the publishing server.
	KindOnline  Kind = "online"
	KindOffline Kind = "offline"
	// KindRemoved: the nodes were deleted.
	KindRemoved Kind = "removed"
	// KindPolicy: a new access policy is in force: re-read it.
	KindPolicy Kind = "policy"
	// KindDNS: the tailnet's DNS settings changed: re-read them.
	KindDNS Kind = "dns"
	// KindLogin: an interactive node login was approved: every server
	// wakes the logins waiting at it, which read their rows again. Added
	// within version 1: a server that predates it resyncs instead.
	KindLogin Kind = "login"
	// KindHello: the publishing server (re)joined the feed; every
	// other server answers with KindOnline for the nodes it streams.
	KindHello Kind = "hello"
	// KindGone: the server named in Event.Server died without saying
	// its streams ended (its liveness row in the database stopped; the
	// publisher claimed it). Every server marks offline the nodes it
	// last heard stream there. Added 2026-12-03; a server that does not
	// know it resyncs, as for any unknown kind.
	KindGone Kind = "gone"
	// KindResync is never sent: a Feed delivers it when events may have
	// been missed (its connection was lost and is back), and the server
	// then re-reads everything.
	KindResync Kind = "resync"
)

// nodeKind reports whether k names nodes.
func (k Kind) nodeKind() bool {
	switch k {
	case KindNode, KindRuntime, KindOnline, KindOffline, KindRemoved:
		return true
	}
	return false
}

func (k Kind) known() bool {
	return k.nodeKind() || k == KindPolicy || k == KindDNS || k == KindLogin || k == KindHello || k == KindGone
}

// Limits of one event. A PostgreSQL NOTIFY payload must stay under 8000
// bytes; MaxNodes ids of up to 19 digits stay under MaxSize.
const (
	MaxSize     = 7900
	MaxNodes    = 350
	maxOriginID = 64
)

// Event is one change, as published by the server named Origin.
type Event struct {
	Version int           `json:"v"`
	Origin  string        `json:"origin"`
	Kind    Kind          `json:"kind"`
	Nodes   []wire.NodeID `json:"nodes,omitempty"`
	// Server is the dead server's origin in a KindGone event, and empty
	// in every other.
	Server string `json:"server,omitempty"`
}

// Errors of Parse.
var (
	ErrTooLarge = errors.New("changefeed: event too large")
	ErrVersion  = errors.New("changefeed: unknown event version")
	ErrInvalid  = errors.New("changefeed: invalid event")
)

// NewOrigin returns a random name for one server process, so that it can
// tell its own events from others'.
func NewOrigin() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ValidOrigin reports whether s is a usable origin: 1 to 64 of
// [0-9a-zA-Z_-]. The store checks the origins of its servers' liveness
// rows with it too, so that a row names only a server the feed can name.
func ValidOrigin(s string) bool {
	if len(s) == 0 || len(s) > maxOriginID {
		return false
	}
	for _, c := range []byte(s) {
		ok := c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '-'
		if !ok {
			return false
		}
	}
	return true
}

// Check reports whether ev is an event a server may publish.
func (ev *Event) Check() error {
	if ev.Version != Version {
		return fmt.Errorf("%w %d (this server knows %d)", ErrVersion, ev.Version, Version)
	}
	if !ValidOrigin(ev.Origin) {
		return fmt.Errorf("%w: origin %q", ErrInvalid, ev.Origin)
	}
	if !ev.Kind.known() {
		return fmt.Errorf("%w: kind %q", ErrInvalid, ev.Kind)
	}
	if ev.Kind.nodeKind() != (len(ev.Nodes) > 0) {
		return fmt.Errorf("%w: kind %q with %d nodes", ErrInvalid, ev.Kind, len(ev.Nodes))
	}
	if (ev.Kind == KindGone) != (ev.Server != "") || ev.Server != "" && !ValidOrigin(ev.Server) {
		return fmt.Errorf("%w: kind %q with server %q", ErrInvalid, ev.Kind, ev.Server)
	}
	if len(ev.Nodes) > MaxNodes {
		return fmt.Errorf("%w: %d nodes, at most %d", ErrInvalid, len(ev.Nodes), MaxNodes)
	}
	if slices.ContainsFunc(ev.Nodes, func(id wire.NodeID) bool { return id <= 0 }) {
		return fmt.Errorf("%w: node id not positive", ErrInvalid)
	}
	return nil
}

// Marshal returns ev's text form after checking it.
func (ev *Event) Marshal() ([]byte, error) {
	if err := ev.Check(); err != nil {
		return nil, err
	}
	return json.Marshal(ev)
}

// Parse reads an event's text form. Unknown fields are ignored (a newer
// server may add some); an unknown version or kind is an error, which a
// receiver answers by resyncing.
func Parse(b []byte) (Event, error) {
	var ev Event
	if len(b) > MaxSize {
		return ev, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(b))
	}
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(&ev); err != nil {
		return Event{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if d.More() {
		return Event{}, fmt.Errorf("%w: data after the event", ErrInvalid)
	}
	if err := ev.Check(); err != nil {
		return Event{}, err
	}
	return ev, nil
}

// Split returns the events that carry kind for ids from origin, at most
// MaxNodes ids each; none for no ids of a node kind.
func Split(origin string, kind Kind, ids []wire.NodeID) []Event {
	if !kind.nodeKind() {
		return []Event{{Version: Version, Origin: origin, Kind: kind}}
	}
	var out []Event
	for chunk := range slices.Chunk(ids, MaxNodes) {
		out = append(out, Event{Version: Version, Origin: origin, Kind: kind, Nodes: slices.Clone(chunk)})
	}
	return out
}

// Feed carries events between the servers of one tailnet. Its methods are
// safe for concurrent use.
type Feed interface {
	// Origin is this server's name on the feed; Publish stamps it on
	// every event and Run never delivers events bearing it.
	Origin() string
	// Publish tells the other servers about ev (Version and Origin are
	// filled in). An error means they may not learn of it.
	Publish(ctx context.Context, ev Event) error
	// Run delivers the other servers' events to h until ctx ends, in
	// the order they arrived and in batches: each call of h gets every
	// event (at least one) that arrived while the previous call ran, so
	// a handler that takes its time works through a backlog in a few
	// large steps rather than many small ones. Whenever events published
	// since the feed was made may have been missed (a connection was
	// lost, or was not yet listening, or more than MaxQueued waited) it
	// delivers a KindResync event.
	Run(ctx context.Context, h func([]Event)) error
	// Err says why the feed cannot deliver events now; nil when it can.
	Err() error
}
