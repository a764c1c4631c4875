package tailnet

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func TestCheckRoute(t *testing.T) {
	tests := []struct {
		in         string
		wantErr    string // substring; empty for no error
		wantSubErr string // CheckSubnetRoute's; "=" for the same as wantErr
	}{
		{"192.168.1.0/24", "", "="},
		{"fd00:1::/64", "", "="},
		{"0.0.0.0/0", "", "default route"},
		{"::/0", "", "default route"},
		{"192.168.1.1/24", "did you mean 192.168.1.0/24", "="},
		{"100.64.0.0/10", "overlaps the tailnet", "="},
		{"100.100.0.0/16", "overlaps the tailnet", "="},
		{"64.0.0.0/2", "overlaps the tailnet", "="},
		{"::ffff:10.0.0.0/104", "plain IPv4 or IPv6", "="},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			p := netip.MustParsePrefix(tt.in)
			check := func(name string, err error, want string) {
				t.Helper()
				if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
					t.Errorf("%s(%v) = %v, want %q", name, p, err, want)
				}
			}
			check("CheckRoute", CheckRoute(p), tt.wantErr)
			sub := tt.wantSubErr
			if sub == "=" {
				sub = tt.wantErr
			}
			check("CheckSubnetRoute", CheckSubnetRoute(p), sub)
		})
	}
	if CheckRoute(netip.Prefix{}) == nil {
		t.Error("the zero prefix was accepted")
	}
}

func TestExitRoutesFresh(t *testing.T) {
	a := ExitRoutes()
	a[0] = netip.MustParsePrefix("10.0.0.0/8")
	if ExitRoutes()[0] != AllV4 {
		t.Fatal("ExitRoutes shares its slice with callers")
	}
}

func TestParseRoutes(t *testing.T) {
	tests := []struct {
		in, want, wantErr string
	}{
		{"", "[]", ""},
		{" , ", "[]", ""},
		{"192.168.1.0/24", "[192.168.1.0/24]", ""},
		{"192.168.1.0/24, fd00:1::/64,192.168.1.0/24", "[192.168.1.0/24 fd00:1::/64]", ""},
		{"0.0.0.0/0", "[0.0.0.0/0]", ""},
		{"192.168.1.1", "", "is an address"},
		{"lan", "", "not a CIDR prefix"},
		{"192.168.1.0/33", "", "not a CIDR prefix"},
		{"192.168.1.1/24", "", "did you mean 192.168.1.0/24"},
		{"100.100.0.0/16", "", "overlaps the tailnet"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseRoutes(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseRoutes(%q) = %v, %v; want error with %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || fmt.Sprint(got) != tt.want {
				t.Fatalf("ParseRoutes(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestResolverV6(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"fd12:3456:789a::6440:1", "fd12:3456:789a::6464:6464"},
		{"fd12:3456:789a:ffff:1:2:6440:1", "fd12:3456:789a::6464:6464"},
		{"100.64.0.1", "invalid IP"},
		{"::ffff:100.64.0.1", "invalid IP"},
	} {
		if got := ResolverV6(netip.MustParseAddr(tt.in)).String(); got != tt.want {
			t.Errorf("ResolverV6(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
}
