package filter

import (
	"golang.zx2c4.com/wireguard/tun"
)

// TUN is a tun.Device whose writes (packets wireguard-go decrypted, on
// their way to the OS) pass through a Filter, and whose reads (packets the
// OS sends into the tunnel) are noted as flows this node opened.
type TUN struct {
	tun.Device
	f *Filter
}

var _ tun.Device = (*TUN)(nil)

// Wrap puts f between wireguard-go and dev.
func Wrap(dev tun.Device, f *Filter) *TUN { return &TUN{Device: dev, f: f} }

// Read reads packets from the OS and notes their flows.
func (t *TUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := t.Device.Read(bufs, sizes, offset)
	for i := 0; i < n; i++ {
		t.f.Outbound(bufs[i][offset : offset+sizes[i]])
	}
	return n, err
}

// Write hands the OS the packets the filter lets in and drops the rest.
// It reports every packet as written: a dropped packet is not an error
// for wireguard-go.
func (t *TUN) Write(bufs [][]byte, offset int) (int, error) {
	kept := bufs[:0:0]
	dropped := false
	for i, b := range bufs {
		if t.f.Inbound(b[offset:]) == "" {
			if dropped {
				kept = append(kept, b)
			}
			continue
		}
		if !dropped {
			dropped = true
			kept = append(make([][]byte, 0, len(bufs)), bufs[:i]...)
		}
	}
	if !dropped {
		return t.Device.Write(bufs, offset)
	}
	if len(kept) == 0 {
		return len(bufs), nil
	}
	if _, err := t.Device.Write(kept, offset); err != nil {
		return 0, err
	}
	return len(bufs), nil
}
