package main

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"weft/internal/key"
	"weft/internal/relay"
	"weft/internal/store"
)

// storeNodeKeys lists the node keys of the store's nodes whose keys have
// not expired: the nodes allowed to use the embedded relay.
type storeNodeKeys struct{ st store.Store }

var _ relay.NodeKeySource = storeNodeKeys{}

// AllowedNodeKeys implements relay.NodeKeySource.
func (s storeNodeKeys) AllowedNodeKeys(ctx context.Context) ([]key.NodePublic, error) {
	nodes, err := s.st.ListNodes(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	keys := make([]key.NodePublic, 0, len(nodes))
	for _, n := range nodes {
		if !n.KeyExpiry.IsZero() && now.After(n.KeyExpiry) {
			continue
		}
		keys = append(keys, n.NodeKey)
	}
	return keys, nil
}

// mountRelay serves the embedded relay (region 1 of the default relay map)
// at /relay and its latency probe at /relay/probe, for the nodes in st.
// The returned relay must be closed when the server stops.
func mountRelay(mux *http.ServeMux, st store.Store, log *slog.Logger) (*relay.Server, error) {
	srv, err := relay.NewServer(relay.ServerOptions{
		Authorizer: relay.SourceAuthorizer{Source: storeNodeKeys{st}},
		Logger:     log,
	})
	if err != nil {
		return nil, err
	}
	mux.Handle("/relay", srv)
	mux.Handle("/relay/probe", srv.ProbeHandler())
	return srv, nil
}
