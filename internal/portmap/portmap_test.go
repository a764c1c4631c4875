package portmap

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"runtime"
	"testing"
	"time"
	"weft/internal/tstest"

	"github.com/huin/goupnp/soap"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// fakeGateway answers NAT-PMP and/or PCP on 127.0.0.1:5351, as a home
// router would on its LAN address. The libraries only speak to port 5351,
// so the test needs that port free on loopback.
func fakeGateway(t *testing.T, pmp, pcp bool) {
	t.Helper()
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: Port})
	if err != nil {
		t.Skipf("fake gateway needs 127.0.0.1:%d free: %v", Port, err)
	}
	t.Cleanup(func() { pc.Close() })
	tstest.ServeUDP(pc, func(buf []byte, from netip.AddrPort) {
		if len(buf) < 2 {
			return
		}
		var out []byte
		switch {
		case buf[0] == 0 && buf[1] == 0 && pmp:
			// NAT-PMP external address answer (RFC 6886 3.2).
			out = []byte{0, 128, 0, 0, 0, 0, 0, 9, 198, 51, 100, 1}
		case buf[0] == 0 && buf[1] == 0:
			return
		case buf[0] == pcpVersion && pcp:
			out = make([]byte, pcpHeaderLen)
			out[0], out[1] = pcpVersion, buf[1]|pcpResponseBit
			binary.BigEndian.PutUint32(out[8:], 42)
		case buf[0] == pcpVersion && pmp:
			// A NAT-PMP-only router answers a PCP request with
			// its own version and "unsupported version" (RFC 6887
			// section 9); that must not count as PCP.
			out = []byte{0, buf[1] | 0x80, 0, 1, 0, 0, 0, 9}
		default:
			return
		}
		pc.WriteToUDPAddrPort(out, from)
	})
}

func loopbackGateway() (netip.Addr, error) { return netip.MustParseAddr("127.0.0.1"), nil }

func TestProbe(t *testing.T) {
	tests := []struct {
		name     string
		pmp, pcp bool
	}{
		{"nothing answers", false, false},
		{"NAT-PMP only", true, false},
		{"PCP only", false, true},
		{"both", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fakeGateway(t, tt.pmp, tt.pcp)
			p := &Prober{Gateway: loopbackGateway, DisableUPnP: true, Timeout: time.Second}
			got, err := p.Probe(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			want := Result{PMP: tt.pmp, PCP: tt.pcp}
			if got != want {
				t.Fatalf("Probe = %+v, want %+v", got, want)
			}
		})
	}
}

func TestProbeNoGateway(t *testing.T) {
	p := &Prober{
		Gateway:     func() (netip.Addr, error) { return netip.Addr{}, ErrNoGateway },
		DisableUPnP: true,
	}
	got, err := p.Probe(t.Context())
	if !errors.Is(err, ErrNoGateway) {
		t.Fatalf("Probe error = %v, want ErrNoGateway", err)
	}
	if got != (Result{}) {
		t.Fatalf("Probe = %+v, want all false", got)
	}
}

func TestProbeHonoursContext(t *testing.T) {
	// A gateway that swallows everything: only the context ends the probe.
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: Port})
	if err != nil {
		t.Skipf("needs 127.0.0.1:%d free: %v", Port, err)
	}
	defer pc.Close()
	ctx, cancel := context.WithCancel(t.Context())
	p := &Prober{Gateway: loopbackGateway, DisableUPnP: true, Timeout: time.Hour}
	done := make(chan Result, 1)
	go func() {
		r, _ := p.Probe(ctx)
		done <- r
	}()
	// Wait until both probes have sent, so the cancel hits them waiting.
	buf := make([]byte, 64)
	pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for range 2 {
		if _, _, err := pc.ReadFrom(buf); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	select {
	case r := <-done:
		if r != (Result{}) {
			t.Fatalf("Probe = %+v, want all false", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Probe did not return after its context was cancelled")
	}
}

func TestParsePCPResponse(t *testing.T) {
	ok := make([]byte, pcpHeaderLen)
	ok[0], ok[1] = pcpVersion, pcpResponseBit|pcpOpAnnounce
	binary.BigEndian.PutUint32(ok[8:], 7)
	failed := append([]byte(nil), ok...)
	failed[3] = 8 // NO_RESOURCES
	request := appendPCPAnnounce(nil, netip.MustParseAddr("192.168.1.10"))
	pmpUnsupp := []byte{0, 0x80, 0, 1, 0, 0, 0, 9}

	tests := []struct {
		name    string
		in      []byte
		wantErr bool
		want    pcpResponse
	}{
		{"announce success", ok, false, pcpResponse{Opcode: pcpOpAnnounce, Epoch: 7}},
		{"error result", failed, false, pcpResponse{Opcode: pcpOpAnnounce, ResultCode: 8, Epoch: 7}},
		{"own request echoed", request, true, pcpResponse{}},
		{"NAT-PMP unsupported version", pmpUnsupp, true, pcpResponse{}},
		{"short", ok[:20], true, pcpResponse{}},
		{"not a multiple of four", append(append([]byte(nil), ok...), 0), true, pcpResponse{}},
		{"empty", nil, true, pcpResponse{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parsePCPResponse(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestAppendPCPAnnounce(t *testing.T) {
	b := appendPCPAnnounce(nil, netip.MustParseAddr("192.168.1.10"))
	if len(b) != pcpHeaderLen {
		t.Fatalf("len %d, want %d", len(b), pcpHeaderLen)
	}
	if b[0] != pcpVersion || b[1] != pcpOpAnnounce {
		t.Fatalf("header % x", b[:4])
	}
	var ip [16]byte
	copy(ip[:], b[8:])
	if got := netip.AddrFrom16(ip).Unmap(); got != netip.MustParseAddr("192.168.1.10") {
		t.Fatalf("client address %v", got)
	}
}

func FuzzParsePCPResponse(f *testing.F) {
	ok := make([]byte, pcpHeaderLen)
	ok[0], ok[1] = pcpVersion, pcpResponseBit
	f.Add(ok)
	f.Add([]byte{0, 0x80, 0, 1, 0, 0, 0, 9})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parsePCPResponse(b)
		if err != nil {
			return
		}
		if b[0] != pcpVersion || b[1]&pcpResponseBit == 0 || r.Opcode&pcpResponseBit != 0 {
			t.Fatalf("accepted a non-response: % x", b[:4])
		}
	})
}

// TestDefaultGateway builds a namespace with a known default route and
// checks that DefaultGateway finds its gateway. The namespace is private
// to this test's OS thread and deleted when the test ends.
func TestDefaultGateway(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("default gateway lookup is Linux only")
	}
	if !isRoot() {
		t.Skip("TestDefaultGateway needs root to create a network namespace")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New() // also switches this thread into it
	if err != nil {
		t.Fatalf("new netns: %v", err)
	}
	defer ns.Close()
	defer netns.Set(orig)

	if _, err := DefaultGateway(); !errors.Is(err, ErrNoGateway) {
		t.Fatalf("DefaultGateway in empty namespace: %v, want ErrNoGateway", err)
	}
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "gwtest0"}, PeerName: "gwtest1"}
	if err := netlink.LinkAdd(v); err != nil {
		t.Fatal(err)
	}
	link, err := netlink.LinkByName("gwtest0")
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := netlink.ParseAddr("192.168.77.2/24")
	if err := netlink.AddrAdd(link, addr); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		t.Fatal(err)
	}
	for gw, metric := range map[string]int{"192.168.77.1": 10, "192.168.77.9": 200} {
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: net.ParseIP(gw), Priority: metric}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := DefaultGateway()
	if err != nil {
		t.Fatal(err)
	}
	if want := netip.MustParseAddr("192.168.77.1"); got != want {
		t.Fatalf("DefaultGateway = %v, want %v (lowest metric)", got, want)
	}
}

// TestUPnPDeviceMustBeTheGateway: a UPnP device description served from
// any address but the default gateway's is not used, since any LAN host
// can answer an SSDP search.
func TestUPnPDeviceMustBeTheGateway(t *testing.T) {
	gw := netip.MustParseAddr("192.168.2.1")
	for _, tc := range []struct {
		loc  string
		want bool
	}{
		{"http://192.168.2.1:5000/rootDesc.xml", true},
		{"http://192.168.2.1/desc", true},
		{"http://192.168.2.77:5000/rootDesc.xml", false},
		{"http://router.lan:5000/rootDesc.xml", false},
		{"http://[::ffff:192.168.2.1]:5000/x", true},
	} {
		u, err := url.Parse(tc.loc)
		if err != nil {
			t.Fatal(err)
		}
		if got := fromGateway(u, gw); got != tc.want {
			t.Errorf("fromGateway(%s) = %v, want %v", tc.loc, got, tc.want)
		}
	}
}

func TestIsUPnPError(t *testing.T) {
	fe := &soap.SOAPFaultError{}
	fe.Detail.UPnPError.Errorcode = upnpErrOnlyPermanentLeases
	if !isUPnPError(fmt.Errorf("wrapped: %w", fe), upnpErrOnlyPermanentLeases) {
		t.Error("wrapped fault 725 not recognised")
	}
	if isUPnPError(fe, 718) || isUPnPError(errors.New("plain"), upnpErrOnlyPermanentLeases) {
		t.Error("another error taken for fault 725")
	}
}
