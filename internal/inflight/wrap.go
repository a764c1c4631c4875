package inflight

import (
	"encoding/binary"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"
)

// TUN wraps the device wireguard-go reads and writes: a read waits for
// room in Out and puts the packets read in flight; a write takes them out
// of flight in In. Hand the wrapper to device.NewDevice as its TUN,
// outside any other wrapper, so it sees every packet.
func TUN(dev tun.Device, b *Bound) tun.Device {
	return &boundTUN{Device: dev, b: b, r: b.Reader(Out)}
}

type boundTUN struct {
	tun.Device
	b *Bound
	r *Reader // the TUN has one reader (wireguard-go's)
}

func (t *boundTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	t.r.Admit(bufs)
	n, err := t.Device.Read(bufs, sizes, offset)
	t.r.Read(bufs, sizes, n, offset, nil)
	return n, err
}

func (t *boundTUN) Write(bufs [][]byte, offset int) (int, error) {
	n, err := t.Device.Write(bufs, offset)
	t.b.Done(bufs)
	return n, err
}

// Bind wraps the socket wireguard-go sends and receives on: a receive
// waits for room in In and puts the WireGuard data packets received in
// flight; a send takes them out of flight in Out.
func Bind(bind conn.Bind, b *Bound) conn.Bind { return &boundBind{Bind: bind, b: b} }

type boundBind struct {
	conn.Bind
	b *Bound
}

func (w *boundBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	fns, actual, err := w.Bind.Open(port)
	if err != nil {
		return nil, 0, err
	}
	out := make([]conn.ReceiveFunc, len(fns))
	for i, fn := range fns {
		r := w.b.Reader(In)
		out[i] = func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
			r.Admit(bufs)
			n, err := fn(bufs, sizes, eps)
			r.Read(bufs, sizes, n, 0, isTransportData)
			return n, err
		}
	}
	return out, actual, nil
}

func (w *boundBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	err := w.Bind.Send(bufs, ep)
	w.b.Done(bufs)
	return err
}

// keepaliveLen is the size of a WireGuard keepalive: a transport header
// and an empty sealed payload. The device never writes one to the TUN.
const keepaliveLen = 32

// isTransportData reports whether pkt is a WireGuard data packet (type 4,
// more than a keepalive): the only packets the device carries to the TUN.
// Handshakes, cookies and keepalives end inside the device and are not
// counted.
func isTransportData(pkt []byte) bool {
	return len(pkt) > keepaliveLen && binary.LittleEndian.Uint32(pkt) == 4
}
