package inflight_test

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn/bindtest"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"weft/internal/inflight"
	"weft/internal/key"
	"weft/internal/tstest"
)

// TestDevicesThroughTheBound runs two real wireguard-go devices, each
// with its TUN and Bind wrapped in a Bound, over in-memory sockets, and
// makes the receiving side slow: the bound must hold on both, the
// receiver's reader must wait (back-pressure), every packet must arrive
// (the in-memory socket drops nothing), and afterwards nothing may be in
// flight and nothing forgotten, which shows that packets are recognised
// at both seams.
func TestDevicesThroughTheBound(t *testing.T) {
	const (
		maxInFlight = 8
		packets     = 3000
		// readers is the most readers a direction has: the in-memory
		// bind's two receive functions.
		readers = 2
	)
	binds := bindtest.NewChannelBinds()
	tuns := [2]*tuntest.ChannelTUN{tuntest.NewChannelTUN(), tuntest.NewChannelTUN()}
	keys := [2]key.NodePrivate{key.NewNode(), key.NewNode()}
	addrs := [2]netip.Addr{netip.MustParseAddr("100.64.0.1"), netip.MustParseAddr("100.64.0.2")}
	var bounds [2]*inflight.Bound
	var devs [2]*device.Device
	for i := range 2 {
		bounds[i] = inflight.New(inflight.Options{Max: maxInFlight})
		devs[i] = device.NewDevice(inflight.TUN(tuns[i].TUN(), bounds[i]), inflight.Bind(binds[i], bounds[i]),
			device.NewLogger(device.LogLevelSilent, ""))
		j := 1 - i
		pub := keys[j].Public().Raw32()
		priv := keys[i].Raw32()
		cfg := fmt.Sprintf("private_key=%x\nlisten_port=0\nreplace_peers=true\npublic_key=%x\nallowed_ip=%s/32\nendpoint=127.0.0.1:%d\n",
			priv, pub, addrs[j], i+1) // a bind sends to its target4 (1 or 2)
		if err := devs[i].IpcSet(cfg); err != nil {
			t.Fatal(err)
		}
		if err := devs[i].Up(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for i := range 2 {
			bounds[i].Close()
			devs[i].Close()
		}
	})

	go func() {
		for range packets {
			tuns[0].Outbound <- tuntest.Ping(addrs[1], addrs[0])
		}
	}()
	deadline := time.After(time.Minute)
	for n := range packets {
		select {
		case <-tuns[1].Inbound:
		case <-deadline:
			t.Fatalf("%d of %d packets arrived; sender %+v, receiver %+v", n, packets, bounds[0].Stats(), bounds[1].Stats())
		}
		if n%100 == 0 {
			time.Sleep(5 * time.Millisecond) // a slow TUN: the receiver backs up
		}
	}
	tstest.Eventually(t, "both bounds empty after the traffic", func() bool {
		return bounds[0].Stats().InFlight == [2]int{} && bounds[1].Stats().InFlight == [2]int{}
	})
	send, recv := bounds[0].Stats(), bounds[1].Stats()
	t.Logf("sender %+v, receiver %+v", send, recv)
	if send.Peak[inflight.Out] > maxInFlight+1 {
		t.Errorf("sender held %d packets, bound %d + one batch of 1", send.Peak[inflight.Out], maxInFlight)
	}
	if recv.Peak[inflight.In] > maxInFlight+readers {
		t.Errorf("receiver held %d packets, bound %d + %d readers' batches of 1", recv.Peak[inflight.In], maxInFlight, readers)
	}
	if recv.Waits[inflight.In] == 0 {
		t.Error("the receiver's reader never waited although its TUN was slow")
	}
	if send.Forgotten != [2]uint64{} || recv.Forgotten != [2]uint64{} {
		t.Errorf("packets forgotten (not recognised at a seam): sender %v, receiver %v", send.Forgotten, recv.Forgotten)
	}
}
