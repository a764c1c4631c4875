//go:build linux

package netcheck_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	"golang.org/x/net/ipv4"

	"weft/internal/netcheck"
	"weft/internal/netcheck/netchecktest"
	"weft/internal/netlab"
	"weft/internal/netlab/labtest"
	"weft/internal/wire"
)

// The lab tests run `weft netcheck` inside a lab host's namespace against
// `weft stun` servers on the lab's internet, and check the report against
// what the lab was built to be.

// webAddr is the seed lab's public host "web", which also serves HTTP on
// port 80 (its whoami page): any HTTP answer is a latency sample.
var webAddr = netip.MustParseAddr("203.0.113.80")

// startSTUN runs `weft stun` on node, listening on addr, and waits until
// it answers.
func startSTUN(t *testing.T, l *netlab.Lab, node string, addr netip.AddrPort) {
	t.Helper()
	bin := labtest.WeftBinary(t)
	n := l.Node(node)
	if _, err := n.Start(t.Context(), "stun-"+strconv.Itoa(int(addr.Port())), bin, "stun", "--listen", addr.String()); err != nil {
		t.Fatal(err)
	}
	// Ask from the same namespace until it answers.
	c, err := n.ListenUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), 0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 1500)
	for range 100 {
		req := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
		c.WriteToUDPAddrPort(req.Raw, addr)
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if n, _, err := c.ReadFromUDPAddrPort(buf); err == nil && netcheck.IsSTUN(buf[:n]) {
			return
		}
	}
	t.Fatalf("weft stun on %s (%v) never answered", node, addr)
}

// writeRelayMap writes rm where every lab namespace can read it.
func writeRelayMap(t *testing.T, rm *wire.RelayMap) string {
	t.Helper()
	b, err := json.Marshal(rm)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "relaymap.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// runNetcheck runs `weft netcheck --json` on node and decodes the report.
func runNetcheck(t *testing.T, l *netlab.Lab, node, relayMap string) netchecktest.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	out, err := l.Node(node).Exec(ctx, labtest.WeftBinary(t), "netcheck", "--json", "--relay-map", relayMap)
	if err != nil {
		t.Fatalf("weft netcheck on %s: %v\n%s", node, err, out)
	}
	// Exec mixes stderr in; the report is the JSON object.
	r, stderr, err := netchecktest.Parse(out)
	if len(stderr) > 0 {
		t.Logf("netcheck stderr: %s", stderr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("netcheck on %s: %s", node, out)
	return r
}

// twoPortRelayMap is two regions whose STUN servers are two ports of web,
// so the mapping check has two destinations.
func twoPortRelayMap() *wire.RelayMap {
	node := func(region, stunPort int) *wire.RelayNode {
		return &wire.RelayNode{Name: "web" + strconv.Itoa(region), RegionID: region, Host: webAddr.String(), Port: 80, STUNPort: stunPort, InsecureHTTP: true}
	}
	return &wire.RelayMap{Regions: map[int]*wire.RelayRegion{
		1: {ID: 1, Code: "home", Nodes: []*wire.RelayNode{node(1, 3478)}},
		2: {ID: 2, Code: "home2", Nodes: []*wire.RelayNode{node(2, 3479)}},
	}}
}

func TestLabNATKinds(t *testing.T) {
	tests := []struct {
		nat netlab.NATKind
		// UDP, and whether the mapping varies (nil: unknown).
		udp    bool
		varies *bool
		via    string
	}{
		{netlab.NATEasy, true, ptr(false), "stun"},
		{netlab.NATHard, true, ptr(true), "stun"},
		{netlab.NATUDPBlocked, false, nil, "http"},
	}
	for _, tt := range tests {
		t.Run(string(tt.nat), func(t *testing.T) {
			l := labtest.Seed(t, func(tp *netlab.Topology) { tp.SetNAT("r-busan", tt.nat) })
			startSTUN(t, l, "web", netip.AddrPortFrom(webAddr, 3478))
			startSTUN(t, l, "web", netip.AddrPortFrom(webAddr, 3479))
			r := runNetcheck(t, l, "busan", writeRelayMap(t, twoPortRelayMap()))

			if r.UDP != tt.udp {
				t.Errorf("udp = %v, want %v", r.UDP, tt.udp)
			}
			switch {
			case tt.varies == nil && r.MappingVariesByDestIP != nil:
				t.Errorf("mapping_varies_by_dest_ip = %v, want null (unknown)", *r.MappingVariesByDestIP)
			case tt.varies != nil && (r.MappingVariesByDestIP == nil || *r.MappingVariesByDestIP != *tt.varies):
				t.Errorf("mapping_varies_by_dest_ip = %v, want %v", r.MappingVariesByDestIP, *tt.varies)
			}
			if tt.udp {
				ap, err := netip.ParseAddrPort(r.GlobalV4)
				if want := l.Node("r-busan").WANAddr; err != nil || ap.Addr() != want {
					t.Errorf("global_v4 = %q, want r-busan's WAN address %v", r.GlobalV4, want)
				}
			} else if r.GlobalV4 != "" {
				t.Errorf("global_v4 = %q with UDP blocked", r.GlobalV4)
			}
			for _, region := range []string{"1", "2"} {
				if _, ok := r.RegionLatencyMS[region]; !ok || r.RegionLatencyVia[region] != tt.via {
					t.Errorf("region %s: latency %v via %q, want one via %s", region, r.RegionLatencyMS[region], r.RegionLatencyVia[region], tt.via)
				}
			}
			if r.PreferredRegion == 0 {
				t.Error("no preferred region")
			}
			// The lab's routers speak no port-mapping protocol.
			if r.UPnP || r.PMP || r.PCP {
				t.Errorf("port mapping UPnP=%v PMP=%v PCP=%v, want all false", r.UPnP, r.PMP, r.PCP)
			}
		})
	}
}

// TestLabNearerRegionPreferred puts one region's STUN server behind a
// delayed link (a router whose WAN link has a 40ms delay line, running the
// server in its own namespace) and the other on the plain internet: the
// nearer one must be preferred even though the far one has the lower ID.
func TestLabNearerRegionPreferred(t *testing.T) {
	const delayMS = 40
	farAddr := netip.MustParseAddr("203.0.113.30")
	l := labtest.Seed(t, func(tp *netlab.Topology) {
		tp.Routers = append(tp.Routers, netlab.Router{Name: "r-far", NAT: netlab.NATEasy, WAN: farAddr, Delay: delayMS * time.Millisecond})
	})
	startSTUN(t, l, "r-far", netip.AddrPortFrom(farAddr, 3478))
	startSTUN(t, l, "web", netip.AddrPortFrom(webAddr, 3478))
	rm := &wire.RelayMap{Regions: map[int]*wire.RelayRegion{
		1: {ID: 1, Code: "far", Nodes: []*wire.RelayNode{{Name: "far1", RegionID: 1, Host: farAddr.String(), STUNPort: 3478, InsecureHTTP: true}}},
		2: {ID: 2, Code: "near", Nodes: []*wire.RelayNode{{Name: "near1", RegionID: 2, Host: webAddr.String(), Port: 80, STUNPort: 3478, InsecureHTTP: true}}},
	}}
	r := runNetcheck(t, l, "busan", writeRelayMap(t, rm))
	if r.PreferredRegion != 2 {
		t.Errorf("preferred_region = %d, want 2 (near)", r.PreferredRegion)
	}
	// The delay line holds every frame delayMS each way, so no round trip
	// to the far region can be shorter than twice that.
	if far := r.RegionLatencyMS["1"]; far < 2*delayMS {
		t.Errorf("far region latency %vms, want at least %dms", far, 2*delayMS)
	}
	if _, ok := r.RegionLatencyMS["2"]; !ok {
		t.Error("near region has no latency")
	}
	// Two servers at different addresses behind an easy NAT: one mapping.
	if r.MappingVariesByDestIP == nil || *r.MappingVariesByDestIP {
		t.Errorf("mapping_varies_by_dest_ip = %v, want false", r.MappingVariesByDestIP)
	}
}

func ptr[T any](v T) *T { return &v }

// TestLabPortMapping runs a fake gateway on r-busan that answers NAT-PMP,
// PCP and an SSDP search for an Internet Gateway Device: netcheck on busan
// must find the gateway through its default route and report all three.
func TestLabPortMapping(t *testing.T) {
	l := labtest.Seed(t)
	router := l.Node("r-busan")
	serveFakePortMapping(t, router)
	serveFakeIGD(t, router)
	startSTUN(t, l, "web", netip.AddrPortFrom(webAddr, 3478))
	rm := &wire.RelayMap{Regions: map[int]*wire.RelayRegion{
		1: {ID: 1, Code: "home", Nodes: []*wire.RelayNode{{Name: "web", RegionID: 1, Host: webAddr.String(), Port: 80, STUNPort: 3478, InsecureHTTP: true}}},
	}}
	r := runNetcheck(t, l, "busan", writeRelayMap(t, rm))
	if !r.UPnP || !r.PMP || !r.PCP {
		t.Errorf("UPnP=%v PMP=%v PCP=%v, want all true", r.UPnP, r.PMP, r.PCP)
	}
	// One STUN server: whether the mapping varies is unknown.
	if r.MappingVariesByDestIP != nil {
		t.Errorf("mapping_varies_by_dest_ip = %v with one STUN server, want null", *r.MappingVariesByDestIP)
	}
}

// serveFakePortMapping answers NAT-PMP's external-address request and
// PCP's ANNOUNCE on the router's LAN address, port 5351.
func serveFakePortMapping(t *testing.T, router *netlab.Node) {
	t.Helper()
	c, err := router.ListenUDP(netip.AddrPortFrom(router.LANAddr, 5351))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			switch {
			case n == 2 && buf[0] == 0 && buf[1] == 0: // NAT-PMP external address
				wan := router.WANAddr.As4()
				c.WriteToUDPAddrPort([]byte{0, 128, 0, 0, 0, 0, 0, 1, wan[0], wan[1], wan[2], wan[3]}, from)
			case n >= 24 && buf[0] == 2 && buf[1] == 0: // PCP ANNOUNCE
				out := make([]byte, 24)
				out[0], out[1] = 2, 0x80
				c.WriteToUDPAddrPort(out, from)
			}
		}
	}()
}

// serveFakeIGD answers SSDP searches on the router's LAN as an Internet
// Gateway Device would (its description URL leads nowhere; the answer to
// the search is what the probe counts).
func serveFakeIGD(t *testing.T, router *netlab.Node) {
	t.Helper()
	var pc *ipv4.PacketConn
	var raw net.PacketConn
	err := router.Do(func() error {
		ifi, err := net.InterfaceByName("lan")
		if err != nil {
			return err
		}
		raw, err = net.ListenPacket("udp4", "0.0.0.0:1900")
		if err != nil {
			return err
		}
		pc = ipv4.NewPacketConn(raw)
		return pc.JoinGroup(ifi, &net.UDPAddr{IP: net.IPv4(239, 255, 255, 250)})
	})
	if err != nil {
		t.Fatalf("fake IGD: %v", err)
	}
	t.Cleanup(func() { raw.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := raw.ReadFrom(buf)
			if err != nil {
				return
			}
			req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(buf[:n])))
			if err != nil || req.Method != "M-SEARCH" {
				continue
			}
			st := req.Header.Get("ST")
			if !strings.Contains(st, "InternetGatewayDevice") {
				continue
			}
			resp := "HTTP/1.1 200 OK\r\n" +
				"CACHE-CONTROL: max-age=120\r\n" +
				"ST: " + st + "\r\n" +
				"USN: uuid:weft-lab-igd::" + st + "\r\n" +
				"LOCATION: http://" + router.LANAddr.String() + ":1/igd.xml\r\n" +
				"EXT:\r\n" +
				"SERVER: Linux/6 UPnP/1.1 weft-lab/1\r\n\r\n"
			raw.WriteTo([]byte(resp), from)
		}
	}()
}
