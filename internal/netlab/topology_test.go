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
