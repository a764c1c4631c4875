package main

import (
	"log/slog"
	"net/http"

	"weft/internal/control"
	"weft/internal/relay"
)

// The control server answers both relay questions from memory: whether a
// node key may use the embedded relay (one lookup per handshake, no store
// read, so an anonymous handshake costs next to nothing) and which keys
// standalone relays may serve (the allow list).
var (
	_ relay.Authorizer    = relay.AuthorizerFunc((*control.Server)(nil).AllowNodeKey)
	_ relay.NodeKeySource = (*control.Server)(nil)
)

// mountRelay serves the embedded relay (region 1 of the default relay map)
// at /relay and its latency probe at /relay/probe, for the nodes ctrl
// knows. The returned relay must be closed when the server stops.
func mountRelay(mux *http.ServeMux, ctrl *control.Server, log *slog.Logger) (*relay.Server, error) {
	srv, err := relay.NewServer(relay.ServerOptions{
		Authorizer: relay.AuthorizerFunc(ctrl.AllowNodeKey),
		Logger:     log,
	})
	if err != nil {
		return nil, err
	}
	mux.Handle("/relay", srv)
	mux.Handle("/relay/probe", srv.ProbeHandler())
	return srv, nil
}
