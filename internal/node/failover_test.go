package node

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"weft/internal/controlclient"
	"weft/internal/nodestate"
	"weft/internal/tailnet"
	"weft/internal/wire"
)

func exitMap(online map[string]bool) *controlclient.NetMap {
	nm := &controlclient.NetMap{
		Self:  &wire.Node{ID: 10, Name: "mac", Addresses: []netip.Prefix{netip.MustParsePrefix("100.64.0.2/32")}},
		Peers: map[wire.NodeID]*wire.Node{},
	}
	for i, name := range []string{"busan", "busan2", "pc"} {
		n := &wire.Node{ID: wire.NodeID(i + 1), Name: name, Online: online[name],
			Addresses: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64, 0, byte(20 + i)}), 32)}}
		if name != "pc" {
			n.Routes = tailnet.ExitRoutes()
		}
		nm.Peers[n.ID] = n
	}
	return nm
}

func TestApplyExitEdit(t *testing.T) {
	all := exitMap(map[string]bool{"busan": true, "busan2": true, "pc": true})
	busanOff := exitMap(map[string]bool{"busan2": true, "pc": true})
	noneOn := exitMap(nil)
	tests := []struct {
		name     string
		in       string
		nm       *controlclient.NetMap
		wantErr  error
		wantUse  string
		wantList string
		wantAuto bool
	}{
		{"one", "busan", all, nil, "busan", "", false},
		{"one offline", "busan", busanOff, controlclient.ErrExitNodeOffline, "", "", false},
		{"list", "busan,busan2", all, nil, "busan", "1/busan,2/busan2", false},
		{"list, spaces and repeats", " busan2 , busan,busan2,", all, nil, "busan2", "2/busan2,1/busan", false},
		{"list, first offline: the next in use", "busan,busan2", busanOff, nil, "busan2", "1/busan,2/busan2", false},
		{"list, all offline: the first waits", "busan,busan2", noneOn, nil, "busan", "1/busan,2/busan2", false},
		{"list with a non-exit node", "busan,pc", all, controlclient.ErrNotAnExitNode, "", "", false},
		{"list with an unknown node", "busan,seoul", all, controlclient.ErrExitNodeNotFound, "", "", false},
		{"list before the first map", "busan,busan2", nil, nil, "", "0/busan,0/busan2", false},
		{"auto", "auto", busanOff, nil, "busan2", "", true},
		{"auto with nothing online", "auto", noneOn, controlclient.ErrExitNodeOffline, "", "", false},
		{"none", "", all, nil, "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := nodestate.Prefs{ExitNode: "old", ExitNodeID: 99, ExitNodeAuto: true}
			err := applyExitEdit(&q, tt.in, tt.nm)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("error %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			list := strings.TrimSuffix(failoverMode(nodestate.Prefs{ExitNodeList: q.ExitNodeList}), ",")
			if q.ExitNode != tt.wantUse || list != tt.wantList || q.ExitNodeAuto != tt.wantAuto {
				t.Errorf("in use %q, list %q, auto %v; want %q, %q, %v", q.ExitNode, list, q.ExitNodeAuto, tt.wantUse, tt.wantList, tt.wantAuto)
			}
		})
	}
}

func TestExitCandidatesAndInUse(t *testing.T) {
	nm := exitMap(map[string]bool{"busan2": true, "pc": true})
	list := nodestate.Prefs{ExitNodeList: []nodestate.ExitCandidate{{ID: 2, Name: "busan2"}, {Name: "busan"}}, ExitNodeID: 2, ExitNode: "busan2"}
	var got []string
	for _, c := range exitCandidates(list, nm) {
		got = append(got, c.Name+map[bool]string{true: "+", false: "-"}[c.Online])
	}
	if strings.Join(got, " ") != "busan2+ busan-" {
		t.Errorf("list candidates %v", got)
	}
	got = nil
	for _, c := range exitCandidates(nodestate.Prefs{ExitNodeAuto: true}, nm) {
		got = append(got, c.Name)
	}
	if strings.Join(got, " ") != "busan busan2" {
		t.Errorf("auto candidates %v (pc offers no exit)", got)
	}
	if u := exitInUse(list, nm); u != "busan2" {
		t.Errorf("in use %q", u)
	}
	if u := exitInUse(nodestate.Prefs{ExitNodeID: 1, ExitNode: "busan"}, nm); u != "" {
		t.Errorf("an offline exit node is in use: %q", u)
	}
	if u := exitInUse(nodestate.Prefs{}, nm); u != "" {
		t.Errorf("none chosen, in use %q", u)
	}
}
