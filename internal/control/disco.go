package control

import (
	"weft/internal/key"
	"weft/internal/wire"
)

// Disco key ownership. Peers find a node's disco messages by its disco
// key, so a node that copied another's (every peer's map shows it) could
// take over its path discovery. The server therefore lets each disco key
// belong to one node: a registration, map request or update naming a key
// another node holds is refused. The mapper keeps the index from disco key
// to holder beside its records.

// errDiscoTaken is the refusal for a disco key another node holds.
var errDiscoTaken = &wire.ErrorMessage{Code: wire.CodeBadRequest,
	Message: "this disco key belongs to another node; stop the weft daemon, remove disco.key from its state directory and start it again (it makes a fresh one)"}

// discoHolderLocked returns the node other than id that holds dk, or 0.
// m.mu is held.
func (m *mapper) discoHolderLocked(dk key.DiscoPublic, id wire.NodeID) wire.NodeID {
	if dk.IsZero() {
		return 0
	}
	h, ok := m.disco[dk]
	if !ok || h == id {
		return 0
	}
	if e := m.nodes[h]; e != nil && e.n.DiscoKey == dk {
		return h
	}
	delete(m.disco, dk) // its holder moved on
	return 0
}

// indexDiscoLocked records that id's disco key changed from old to cur.
// m.mu is held.
func (m *mapper) indexDiscoLocked(id wire.NodeID, old, cur key.DiscoPublic) {
	if old != cur && !old.IsZero() && m.disco[old] == id {
		delete(m.disco, old)
	}
	if !cur.IsZero() {
		m.disco[cur] = id
	}
}

// discoTakenByOther reports whether dk is held by a node of a machine
// other than mk.
func (m *mapper) discoTakenByOther(dk key.DiscoPublic, mk key.MachinePublic) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.discoHolderLocked(dk, 0)
	return h != 0 && m.nodes[h].n.MachineKey != mk
}
