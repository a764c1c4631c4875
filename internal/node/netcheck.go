package node

import (
	"context"
	"errors"

	"weft/internal/localapi"
)

var _ localapi.Netchecker = (*Daemon)(nil)

// Netcheck runs a network report in the data plane, which measures over
// its own socket with the relay map the control server gave it.
func (d *Daemon) Netcheck(ctx context.Context) (*localapi.NetcheckResult, error) {
	d.mu.Lock()
	nc, _ := d.engine.(localapi.Netchecker)
	d.mu.Unlock()
	if nc == nil {
		return nil, errors.New("the node is not up, so its daemon cannot measure the network; run `weft up`, or pass --server URL or --relay-map FILE")
	}
	return nc.Netcheck(ctx)
}
