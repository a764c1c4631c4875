package main

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"weft/internal/localapi"
	"weft/internal/wire"
)

func TestSpeedtestPeer(t *testing.T) {
	peer := func(name string, online bool, addrs ...string) *localapi.PeerStatus {
		n := &wire.Node{Name: name, Online: online, LastSeen: time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)}
		for _, a := range addrs {
			n.Addresses = append(n.Addresses, netip.MustParsePrefix(a))
		}
		return &localapi.PeerStatus{Node: n}
	}
	st := &localapi.Status{BackendState: localapi.StateRunning, Peers: []*localapi.PeerStatus{
		peer("busan", true, "fd7a::1/128", "100.64.0.1/32"),
		peer("pc", false, "100.64.0.3/32"),
		peer("v6only", true, "fd7a::4/128"),
	}}
	tests := []struct {
		name, peer, wantAddr, wantErr string
		st                            *localapi.Status
	}{
		{"by name", "busan", "100.64.0.1", "", st},
		{"by address", "fd7a::1", "100.64.0.1", "", st},
		{"offline", "pc", "", "pc is offline (last seen", st},
		{"unknown", "seoul", "", `no peer "seoul"`, st},
		{"no IPv4", "v6only", "", "no tailnet IPv4", st},
		{"node down", "busan", "", "run `weft up` first", &localapi.Status{BackendState: localapi.StateStopped}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, a, err := speedtestPeer(tt.st, tt.peer)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || a.String() != tt.wantAddr {
				t.Fatalf("%v, %v; want %s", a, err, tt.wantAddr)
			}
		})
	}
}

func TestSpeedtestUsage(t *testing.T) {
	for _, args := range [][]string{
		{"speedtest", "busan", "--time", "1h"},
		{"speedtest", "busan", "--time", "0s"},
		{"speedtest", "busan", "--reverse", "--both"},
		{"speedtest"},
	} {
		if _, _, code := weft(t, args...); code != 2 {
			t.Errorf("%v exited %d, want 2", args, code)
		}
	}
}
