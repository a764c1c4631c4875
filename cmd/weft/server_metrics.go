package main

import (
	"context"
	"log/slog"

	"weft/internal/control"
	"weft/internal/metrics"
	"weft/internal/store"
)

// defaultServerMetrics is where `weft server` serves Prometheus metrics
// unless told otherwise: loopback only, so a scraper on the same host (or
// a tunnel to it) reads them and nobody else.
const defaultServerMetrics = "127.0.0.1:9542"

// goServerMetrics serves the control server's metrics on addr in sg; an
// empty addr serves none. A port in use is a warning, not a reason to
// stop the control server.
func goServerMetrics(sg *serviceGroup, addr string, st store.Store, ctrl *control.Server, log *slog.Logger) {
	if addr == "" {
		return
	}
	reg, err := metrics.NewRegistry(&metrics.Server{Nodes: func(ctx context.Context) ([]metrics.ServerNode, error) {
		ns, err := st.ListNodes(ctx)
		if err != nil {
			return nil, err
		}
		out := make([]metrics.ServerNode, len(ns))
		for i, n := range ns {
			out[i] = metrics.ServerNode{ID: n.ID, Online: ctrl.Online(n.ID)}
		}
		return out, nil
	}})
	if err != nil {
		log.Warn("no metrics", "err", err)
		return
	}
	ln, err := metrics.Listen(addr)
	if err != nil {
		log.Warn("no metrics", "err", err)
		return
	}
	log.Info("serving metrics", "addr", ln.Addr().String())
	sg.Go(func(ctx context.Context) error { return metrics.Serve(ctx, ln, reg, log.With("sub", "metrics")) })
}
