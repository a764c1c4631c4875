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

// DefaultEmbeddedRelayRate is the embedded relay's per-client limit in
// bytes per second (weft server --relay-rate-limit): far above what a
// relayed path needs for interactive use, low enough that one flooding
// node cannot take the control server's bandwidth.
const DefaultEmbeddedRelayRate = 16 << 20

// mountRelay serves the embedded relay (region 1 of the default relay map)
// at /relay and its latency probe at /relay/probe, for the nodes ctrl
// knows, each client sending at most rate bytes per second (0: no limit).
// The returned relay must be closed when the server stops.
func mountRelay(mux *http.ServeMux, ctrl *control.Server, rate int64, log *slog.Logger) (*relay.Server, error) {
	srv, err := relay.NewServer(relay.ServerOptions{
		Authorizer: relay.AuthorizerFunc(ctrl.AllowNodeKey),
		RateLimit:  rate,
		Logger:     log,
	})
	if err != nil {
		return nil, err
	}
	mux.Handle("/relay", srv)
	mux.Handle("/relay/probe", srv.ProbeHandler())
	return srv, nil
}
