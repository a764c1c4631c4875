package magicsock

import (
	"errors"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"weft/internal/key"
)

// bindKinds are the main-socket binds weft uses: wireguard-go's
// StdNetBind (Linux, Windows) and its own sockBind (macOS). The contract
// tests run over both, so sockBind is held to what StdNetBind does.
var bindKinds = []struct {
	name string
	new  func() conn.Bind
}{
	{"StdNetBind", conn.NewStdNetBind},
	{"sockBind", func() conn.Bind { return newSockBind(nil) }},
}

// hasIPv6Loopback reports whether ::1 can be bound here.
func hasIPv6Loopback() bool {
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// loopbackFor returns the loopback address of a family: "v4" or "v6".
func loopbackFor(family string) netip.Addr {
	if family == "v6" {
		return netip.IPv6Loopback()
	}
	return netip.AddrFrom4([4]byte{127, 0, 0, 1})
}

// batch makes buffers for one call of a ReceiveFunc of b.
func batch(b conn.Bind) ([][]byte, []int, []conn.Endpoint) {
	bufs := make([][]byte, b.BatchSize())
	for i := range bufs {
		bufs[i] = make([]byte, 64<<10)
	}
	return bufs, make([]int, len(bufs)), make([]conn.Endpoint, len(bufs))
}

// openFamilies opens b on port and returns its receive functions by
// PrettyName ("v4", "v6"), failing unless there is one of each family the
// host has.
func openFamilies(t *testing.T, b conn.Bind, port uint16) (map[string]conn.ReceiveFunc, uint16) {
	t.Helper()
	fns, got, err := b.Open(port)
	if err != nil {
		t.Fatalf("Open(%d): %v", port, err)
	}
	byFam := map[string]conn.ReceiveFunc{}
	for _, fn := range fns {
		byFam[fn.PrettyName()] = fn
	}
	want := []string{"v4"}
	if hasIPv6Loopback() {
		want = append(want, "v6")
	}
	for _, fam := range want {
		if byFam[fam] == nil || len(fns) != len(want) {
			t.Fatalf("Open(%d): receive functions %v; want one for each of %v", port, slices.Sorted(maps.Keys(byFam)), want)
		}
	}
	if got == 0 || (port != 0 && got != port) {
		t.Fatalf("Open(%d) bound port %d", port, got)
	}
	return byFam, got
}

// freePort returns a UDP port free for IPv4 and IPv6 a moment ago.
func freePort(t *testing.T) uint16 {
	t.Helper()
	for range 20 {
		c4, err := net.ListenUDP("udp4", nil)
		if err != nil {
			t.Fatal(err)
		}
		port := c4.LocalAddr().(*net.UDPAddr).Port
		c6, err := net.ListenUDP("udp6", &net.UDPAddr{Port: port})
		c4.Close()
		if err == nil {
			c6.Close()
			return uint16(port)
		}
	}
	t.Fatal("no port free for both families")
	return 0
}

// TestBindContract holds both bind kinds to the same behaviour: Open on a
// port of the kernel's choosing and on a fixed one, with a receive
// function per family named as familyBind expects; a second Open refused;
// datagrams sent (several per Send) and received in each family with the
// sender's address as a StdNetEndpoint; Close ending blocked receives with
// net.ErrClosed, Send failing after it, and Open working again.
func TestBindContract(t *testing.T) {
	for _, kind := range bindKinds {
		t.Run(kind.name, func(t *testing.T) {
			for _, fixed := range []bool{false, true} {
				var port uint16
				if fixed {
					port = freePort(t)
				}
				b := kind.new()
				fns, got := openFamilies(t, b, port)
				if _, _, err := b.Open(0); !errors.Is(err, conn.ErrBindAlreadyOpen) {
					t.Errorf("second Open: %v; want ErrBindAlreadyOpen", err)
				}
				for fam, fn := range fns {
					exchange(t, b, fn, netip.AddrPortFrom(loopbackFor(fam), got))
				}
				closeUnblocks(t, b, fns)
				if _, _, err := b.Open(got); err != nil {
					t.Fatalf("Open after Close on port %d: %v", got, err)
				}
				b.Close()
			}
		})
	}
}

// exchange sends two datagrams from b to a peer socket in one Send and one
// back, read by fn from local (b's address in fn's family).
func exchange(t *testing.T, b conn.Bind, fn conn.ReceiveFunc, local netip.AddrPort) {
	t.Helper()
	network := "udp4"
	if local.Addr().Is6() {
		network = "udp6"
	}
	peer, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(local.Addr(), 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	peerAddr := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	ep, err := b.ParseEndpoint(peerAddr.String())
	if err != nil {
		t.Fatal(err)
	}
	out := [][]byte{[]byte("first " + network), []byte("second " + network)}
	if err := b.Send(out, ep); err != nil {
		t.Fatalf("Send to %v: %v", peerAddr, err)
	}
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	for _, want := range out {
		buf := make([]byte, 100)
		n, from, err := peer.ReadFromUDPAddrPort(buf)
		if err != nil || string(buf[:n]) != string(want) || from.Port() != local.Port() {
			t.Fatalf("peer read %q from %v, %v; want %q from port %d", buf[:n], from, err, want, local.Port())
		}
	}
	if _, err := peer.WriteToUDPAddrPort([]byte("back "+network), local); err != nil {
		t.Fatal(err)
	}
	bufs, sizes, eps := batch(b)
	n, err := fn(bufs, sizes, eps)
	if err != nil || n < 1 || string(bufs[0][:sizes[0]]) != "back "+network {
		t.Fatalf("receive on %v: %d packets (first %q), %v; want the peer's datagram", local, n, bufs[0][:sizes[0]], err)
	}
	se, ok := eps[0].(*conn.StdNetEndpoint)
	if !ok || netip.AddrPortFrom(se.Addr().Unmap(), se.Port()) != peerAddr {
		t.Fatalf("receive on %v: endpoint %#v; want a StdNetEndpoint for %v", local, eps[0], peerAddr)
	}
	if _, err := b.ParseEndpoint("not an address"); err == nil {
		t.Error("ParseEndpoint accepted \"not an address\"")
	}
}

// closeUnblocks blocks a read in every fn, closes b, and checks that each
// returns net.ErrClosed and that Send fails.
func closeUnblocks(t *testing.T, b conn.Bind, fns map[string]conn.ReceiveFunc) {
	t.Helper()
	errs := make(chan error, len(fns))
	var started sync.WaitGroup
	for _, fn := range fns {
		started.Add(1)
		go func() {
			bufs, sizes, eps := batch(b)
			started.Done()
			_, err := fn(bufs, sizes, eps)
			errs <- err
		}()
	}
	started.Wait()
	time.Sleep(50 * time.Millisecond) // let the reads block
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for range fns {
		select {
		case err := <-errs:
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("receive after Close: %v; want net.ErrClosed", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a receive function still blocked 10 s after Close")
		}
	}
	ep, _ := b.ParseEndpoint("127.0.0.1:9")
	if err := b.Send([][]byte{{1}}, ep); err == nil {
		t.Error("Send after Close succeeded")
	}
}

// controlCall is one call of a recording Control function.
type controlCall struct {
	mark    uint32
	network string
}

// recordingControl returns a controlFor that records every call of the
// Control functions it makes, and fails them while fail is set.
func recordingControl() (controlFor, func() []controlCall, func(bool)) {
	var mu sync.Mutex
	var calls []controlCall
	var fail bool
	ctl := func(mark uint32) func(string, string, syscall.RawConn) error {
		return func(network, _ string, c syscall.RawConn) error {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, controlCall{mark, network})
			if fail {
				return errors.New("refused")
			}
			// The function gets the socket itself, as on macOS.
			return c.Control(func(uintptr) {})
		}
	}
	take := func() []controlCall {
		mu.Lock()
		defer mu.Unlock()
		out := calls
		calls = nil
		return out
	}
	setFail := func(f bool) { mu.Lock(); fail = f; mu.Unlock() }
	return ctl, take, setFail
}

// TestSockBindControl: every socket sockBind opens goes through its
// Control function with the current mark, SetMark applies the new mark's
// Control to the open sockets, sockets opened after it get it from the
// start, and a Control that fails makes Open and SetMark fail. On macOS
// the Control is what binds the sockets to the default route's interface:
// a socket that skipped it would send into an exit node's tunnel.
func TestSockBindControl(t *testing.T) {
	ctl, take, setFail := recordingControl()
	b := newSockBind(ctl)
	want := func(mark uint32) []controlCall {
		out := []controlCall{{mark, "udp4"}}
		if hasIPv6Loopback() {
			out = append(out, controlCall{mark, "udp6"})
		}
		return out
	}
	check := func(step string, mark uint32) {
		t.Helper()
		if got := take(); !slices.Equal(got, want(mark)) {
			t.Errorf("%s: Control calls %v; want %v", step, got, want(mark))
		}
	}
	if _, _, err := b.Open(0); err != nil {
		t.Fatal(err)
	}
	check("Open", 0)
	if err := b.SetMark(0x5eed); err != nil {
		t.Fatal(err)
	}
	check("SetMark on open sockets", 0x5eed)
	b.Close()
	if _, _, err := b.Open(0); err != nil {
		t.Fatal(err)
	}
	check("Open after SetMark", 0x5eed)

	setFail(true)
	if err := b.SetMark(7); err == nil {
		t.Error("SetMark with a failing Control succeeded")
	}
	b.Close()
	take()
	if _, _, err := b.Open(0); err == nil {
		b.Close()
		t.Error("Open with a failing Control succeeded")
	}
}

// TestHostBindPerOS: macOS gets sockBinds, whose SetMark binds the
// sockets (markControl); every other OS keeps StdNetBind.
func TestHostBindPerOS(t *testing.T) {
	for _, goos := range []string{"darwin", "linux", "windows"} {
		fb, ok := newHostBind(goos).(*familyBind)
		if !ok {
			t.Fatalf("%s: host bind %T; want a familyBind", goos, newHostBind(goos))
		}
		_, sock4 := fb.v4.(*sockBind)
		_, sock6 := fb.v6.(*sockBind)
		if want := goos == "darwin"; sock4 != want || sock6 != want {
			t.Errorf("%s: binds %T and %T; sockBind wanted: %v", goos, fb.v4, fb.v6, want)
		}
		if goos == "darwin" && fb.v4.(*sockBind).control(1) == nil {
			t.Error("darwin: the sockBinds have no Control for a non-zero mark")
		}
	}
}

// TestSockBindWake: WakeReads ends a blocked read of every socket
// with an empty batch, with no datagram sent, and the reads after it block
// again (a datagram then still arrives).
func TestSockBindWake(t *testing.T) {
	b := newSockBind(nil)
	fns, port := openFamilies(t, b, 0)
	defer b.Close()
	type result struct {
		fam  string
		n    int
		data string
		err  error
	}
	results := make(chan result, 4)
	read := func(fam string) {
		bufs, sizes, eps := batch(b)
		n, err := fns[fam](bufs, sizes, eps)
		r := result{fam: fam, n: n, err: err}
		if n > 0 {
			r.data = string(bufs[0][:sizes[0]])
		}
		results <- r
	}
	for fam := range fns {
		go read(fam)
	}
	time.Sleep(50 * time.Millisecond) // let the reads block
	if !b.WakeReads() {
		t.Fatal("WakeReads reported it could not wake")
	}
	for range fns {
		select {
		case r := <-results:
			if r.n != 0 || r.err != nil {
				t.Fatalf("%s woke with %d packets, %v; want an empty batch", r.fam, r.n, r.err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a receive function was not woken")
		}
	}
	for fam := range fns {
		go read(fam)
	}
	select {
	case r := <-results:
		t.Fatalf("%s returned again with nothing sent: %+v", r.fam, r)
	case <-time.After(200 * time.Millisecond):
	}
	for fam := range fns {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopbackFor(fam), port)))
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("after " + fam))
		c.Close()
		select {
		case r := <-results:
			if r.fam != fam || r.data != "after "+fam || r.err != nil {
				t.Fatalf("after the wake, %s read %q, %v; want %q", r.fam, r.data, r.err, "after "+fam)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: a datagram after the wake never arrived", fam)
		}
	}
}

// TestRebindMarksMainSockets: a Conn with a mark sets it on its main
// sockets again when it is told the network changed (Rebind), since on
// macOS the mark binds them to the default route's interface, which may
// have moved; without a mark, Rebind leaves the sockets alone.
func TestRebindMarksMainSockets(t *testing.T) {
	ctl, take, _ := recordingControl()
	c, err := New(Options{DiscoKey: key.NewDisco(), NodeKey: key.NewNode().Public(),
		Network: bindNet{newBind: func() conn.Bind { return newFamilyBind(newSockBind(ctl), newSockBind(ctl)) }}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Open(0); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	perBind := 1
	if hasIPv6Loopback() {
		perBind = 2
	}
	c.Rebind("test, no mark")
	if got := take(); len(got) != 2*perBind || got[0].mark != 0 {
		t.Fatalf("Open and Rebind without a mark: Control calls %v; want %d at Open with mark 0", got, 2*perBind)
	}
	if err := c.SetMark(0x5eed); err != nil {
		t.Fatal(err)
	}
	take()
	c.Rebind("test")
	got := take()
	if len(got) != 2*perBind {
		t.Fatalf("Rebind: Control calls %v; want one per main socket (%d)", got, 2*perBind)
	}
	for _, call := range got {
		if call.mark != 0x5eed {
			t.Errorf("Rebind: Control call %v; want mark 0x5eed", call)
		}
	}
}
