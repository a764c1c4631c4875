package node

import (
	"weft/internal/controlclient"
	"weft/internal/localapi"
	"weft/internal/wire"
)

// NetworkEngine is implemented by an Engine that reports its view of the
// network (for health samples).
type NetworkEngine interface {
	// Network is the last network report; nil before the first.
	Network() *localapi.NetworkSummary
}

// Network is the data plane's last view of the network; nil while the
// node is down or before the first network check.
func (d *Daemon) Network() *localapi.NetworkSummary {
	d.mu.Lock()
	ne, _ := d.engine.(NetworkEngine)
	d.mu.Unlock()
	if ne == nil {
		return nil
	}
	return ne.Network()
}

// ReportHealth sends health samples to the control server on the map
// stream; it fails while the node is not connected, so the caller keeps
// them for later.
func (d *Daemon) ReportHealth(ss []wire.HealthSample) error {
	d.mu.Lock()
	c := d.client
	d.mu.Unlock()
	if c == nil {
		return controlclient.ErrNoStream
	}
	return c.SendHealthSamples(ss)
}
