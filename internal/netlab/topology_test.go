//go:build linux

package netlab

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestTopologyValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mod     func(*Topology)
		wantErr string // empty: valid
	}{
		{"seed", func(*Topology) {}, ""},
		{"set all kinds", func(tp *Topology) {
			tp.SetNAT("r-busan", NATHard)
			tp.SetNAT("fukuoka", NATUDPBlocked) // bare site name
			tp.SetDelay("r-busan", 12)
			tp.SetRate("r-fukuoka", 20)
		}, ""},
		{"unknown site", func(tp *Topology) { tp.SetNAT("r-seoul", NATEasy) }, `unknown site "r-seoul"`},
		{"unknown kind", func(tp *Topology) { tp.SetNAT("r-busan", "cone") }, `unknown NAT kind "cone"`},
		{"negative delay", func(tp *Topology) { tp.SetDelay("r-busan", -1) }, "delay -1ms"},
		{"huge delay", func(tp *Topology) { tp.SetDelay("r-busan", 60000) }, "out of range"},
		{"negative rate", func(tp *Topology) { tp.SetRate("r-busan", -5) }, "rate -5"},
		{"duplicate name", func(tp *Topology) { tp.Routers[1].Hosts = append(tp.Routers[1].Hosts, "busan") }, `"busan" used twice`},
		{"reserved name", func(tp *Topology) { tp.Public[0].Name = "internet" }, "reserved"},
		{"long name", func(tp *Topology) { tp.Routers[0].Hosts[0] = "averyverylongname" }, "1-12"},
		{"address outside internet", func(tp *Topology) { tp.Public[0].Addr = netip.MustParseAddr("10.0.0.1") }, "not a host in [203.0.113.0/24 198.51.100.0/24]"},
		{"address twice", func(tp *Topology) { tp.Public[0].Addr = tp.Routers[0].WAN }, "both have address"},
		{"overlapping LANs", func(tp *Topology) { tp.Routers[1].LAN = tp.Routers[0].LAN }, "overlap"},
		{"public LAN", func(tp *Topology) { tp.Routers[0].LAN = netip.MustParsePrefix("8.8.8.0/24") }, "private"},
		{"double NAT", DoubleNAT, ""},
		{"UDP timeout below a second", func(tp *Topology) { tp.SetUDPTimeout("r-busan", time.Millisecond) }, "1 s resolution"},
		{"unknown upstream", func(tp *Topology) { tp.Routers[1].Upstream = "isp" }, `upstream "isp" is not a router`},
		{"two levels of nesting", func(tp *Topology) {
			DoubleNAT(tp)
			tp.Routers[0].Upstream = "r-fukuoka"
		}, "one level of nesting"},
		{"delay behind an upstream", func(tp *Topology) {
			DoubleNAT(tp)
			tp.SetDelay("r-fukuoka", 10)
		}, "not supported behind an upstream"},
		{"dual stack", DualStack, ""},
		{"IPv6 only", V6Only, ""},
		{"unknown IPv6 mode", func(tp *Topology) { tp.SetIPv6("r-busan", "triple") }, `unknown IPv6 mode "triple"`},
		{"IPv6 behind an upstream", func(tp *Topology) {
			DoubleNAT(tp)
			tp.SetIPv6("r-fukuoka", IPv6Dual)
		}, "IPv6 is not supported behind an upstream"},
		{"public IPv6 outside the internet", func(tp *Topology) {
			DualStack(tp)
			tp.SetPublicV6("ctrl", netip.MustParseAddr("2001:db8:5::1"))
		}, "is not a host in 2001:db8::/64"},
		{"public IPv6 twice", func(tp *Topology) {
			DualStack(tp)
			tp.SetPublicV6("web", netip.MustParseAddr("2001:db8::10"))
		}, "both have address 2001:db8::10"},
		{"IPv6 LAN not a /64", func(tp *Topology) {
			DualStack(tp)
			tp.Routers[0].LAN6 = netip.MustParsePrefix("2001:db8:1::/48")
		}, "must be a /64"},
		{"IPv6 LAN outside the documentation prefix", func(tp *Topology) {
			DualStack(tp)
			tp.Routers[0].LAN6 = netip.MustParsePrefix("2001:db9:1::/64")
		}, "must be a /64"},
		{"IPv6 LANs overlap", func(tp *Topology) {
			DualStack(tp)
			tp.Routers[0].LAN6 = netip.MustParsePrefix("2001:db8:2::/64")
		}, "IPv6 LANs of r-busan and r-fukuoka overlap"},
		{"IPv6 address on an IPv4-only site", func(tp *Topology) {
			tp.Routers[0].WAN6 = netip.MustParseAddr("2001:db8::21")
		}, "IPv6 addresses on a site without IPv6"},
		{"port mapping on an IPv6-only site", func(tp *Topology) {
			V6Only(tp)
			tp.SetPortMap("r-fukuoka", true)
		}, "no port mapping"},
		{"WAN outside the upstream's LAN", func(tp *Topology) {
			DoubleNAT(tp)
			tp.Routers[1].WAN = netip.MustParseAddr("100.64.23.10")
		}, "not a host address on isp's LAN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := SeedTopology()
			tc.mod(&tp)
			err := tp.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Validate = %v; want error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestTopologyDefaults(t *testing.T) {
	tp := Topology{Routers: []Router{{Name: "r-a", Hosts: []string{"a1", "a2"}}, {Name: "r-b"}}}
	if err := tp.Validate(); err != nil {
		t.Fatal(err)
	}
	r := tp.Routers[1]
	if r.NAT != NATEasy || r.WAN != netip.MustParseAddr("203.0.113.22") || r.LAN != netip.MustParsePrefix("192.168.2.0/24") {
		t.Errorf("defaults of second router: %+v", r)
	}
	if got := hostAddr(tp.Routers[0].LAN, 1); got != netip.MustParseAddr("192.168.1.11") {
		t.Errorf("second host address = %v", got)
	}
	tp.SetDelay("r-a", 7)
	if tp.Routers[0].Delay != 7*time.Millisecond {
		t.Errorf("delay = %v", tp.Routers[0].Delay)
	}
}

// TestDoubleNATDefaults: a router behind another gets the first free
// host address on its upstream's LAN as its WAN address.
func TestDoubleNATDefaults(t *testing.T) {
	tp := DoubleNATTopology()
	if err := tp.Validate(); err != nil {
		t.Fatal(err)
	}
	if r := tp.router("r-fukuoka"); r.WAN != netip.MustParseAddr("100.64.22.10") || r.Upstream != "isp" {
		t.Errorf("r-fukuoka behind isp: %+v", r)
	}
	if _, ok := Topologies()["double-nat"]; !ok {
		t.Error("the CLI does not offer the double-nat topology")
	}
}

func TestWhoamiHandler(t *testing.T) {
	for _, tc := range []struct {
		path, remote string
		code         int
		body         string
	}{
		{"/", "203.0.113.22:40000", 200, "203.0.113.22\n"},
		{"/", "[2001:db8::1]:5", 200, "2001:db8::1\n"},
		{"/other", "203.0.113.22:40000", 404, ""},
	} {
		t.Run(tc.path+" "+tc.remote, func(t *testing.T) {
			r := httptest.NewRequest("GET", tc.path, nil)
			r.RemoteAddr = tc.remote
			w := httptest.NewRecorder()
			WhoamiHandler().ServeHTTP(w, r)
			if w.Code != tc.code || (tc.body != "" && w.Body.String() != tc.body) {
				t.Errorf("got %d %q; want %d %q", w.Code, w.Body.String(), tc.code, tc.body)
			}
			if tc.code == http.StatusOK && !strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain") {
				t.Errorf("content type %q", w.Header().Get("Content-Type"))
			}
		})
	}
}

func TestSetMTU(t *testing.T) {
	for _, tt := range []struct {
		mtu int
		ok  bool
	}{{0, true}, {1280, true}, {1492, true}, {1500, true}, {1279, false}, {9000, false}, {-1, false}} {
		topo := SeedTopology()
		topo.SetMTU("r-fukuoka", tt.mtu)
		if err := topo.Validate(); (err == nil) != tt.ok {
			t.Errorf("SetMTU(%d): Validate = %v, want ok=%v", tt.mtu, err, tt.ok)
		}
	}
	topo := SeedTopology()
	topo.SetMTU("r-nowhere", 1280)
	if topo.Validate() == nil {
		t.Error("SetMTU on an unknown router was accepted")
	}
}

func TestIPv6Defaults(t *testing.T) {
	tp := DualStackTopology()
	if err := tp.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ got, want string }{
		{tp.Routers[0].WAN6.String(), "2001:db8::21"},
		{tp.Routers[1].WAN6.String(), "2001:db8::22"},
		{tp.Routers[0].LAN6.String(), "2001:db8:1::/64"},
		{tp.Routers[1].LAN6.String(), "2001:db8:2::/64"},
		{hostAddr6(tp.Routers[1].LAN6, 1).String(), "2001:db8:2::11"},
		{gatewayAddr6(tp.Routers[1].LAN6).String(), "2001:db8:2::1"},
		{tp.Public[0].Addr6.String(), "2001:db8::10"},
		{tp.Public[1].Addr6.String(), "2001:db8::80"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %s, want %s", tc.got, tc.want)
		}
	}
	v6 := V6OnlyTopology()
	if err := v6.Validate(); err != nil {
		t.Fatal(err)
	}
	if r := v6.router("r-fukuoka"); r.WAN.IsValid() || r.IPv6 != IPv6Only {
		t.Errorf("v6-only r-fukuoka: WAN %v, IPv6 %q", r.WAN, r.IPv6)
	}
	for _, tc := range []struct {
		in   string
		want IPv6Mode
		err  bool
	}{{"none", IPv6None, false}, {"dual", IPv6Dual, false}, {"only", IPv6Only, false}, {"", IPv6None, true}, {"v6", IPv6None, true}} {
		got, err := ParseIPv6Mode(tc.in)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("ParseIPv6Mode(%q) = %q, %v", tc.in, got, err)
		}
	}
}
