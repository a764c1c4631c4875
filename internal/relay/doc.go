// Package relay is weft's encrypted fallback path: when two nodes cannot
// reach each other directly, each keeps a TCP (or TLS) connection to a relay
// and addresses packets to the other's node public key. The relay forwards
// the bytes as they are; they are WireGuard ciphertext or sealed disco
// messages, so it can read none of them.
//
// The package holds the wire protocol (frame.go, handshake.go), the server
// (server.go, one connection in sconn.go, and mesh.go for relays of one
// region forwarding to each other), the client (client.go, dial.go), the
// agent's multi-region Manager (manager.go), and the allow list by which a
// standalone relay learns from the control server which node keys may use
// it (allowlist.go).
// docs/relay.md describes the wire format.
package relay
