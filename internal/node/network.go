package node

import "weft/internal/localapi"

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
