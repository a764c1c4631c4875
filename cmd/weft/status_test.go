package main

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"weft/internal/localapi"
	"weft/internal/wire"
)

func TestPrintStatus(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	node := func(name, v4 string) *wire.Node {
		return &wire.Node{Name: name, OS: "linux", Online: true, Addresses: []netip.Prefix{netip.MustParsePrefix(v4 + "/32")}}
	}
	st := &localapi.Status{
		BackendState: localapi.StateRunning,
		Self:         node("mac", "100.64.0.2"),
		Peers: []*localapi.PeerStatus{
			{Node: node("busan", "100.64.0.1"), Path: localapi.Path{Kind: localapi.PathDirect, Endpoint: "203.0.113.21:41641"},
				RTTMS: 1.25, RxBytes: 1258291, TxBytes: 3565158, LastHandshake: now.Add(-12 * time.Second)},
			{Node: node("pc", "100.64.0.3"), Path: localapi.Path{Kind: localapi.PathRelay, RelayRegion: 1, RelayCode: "home"}, TxBytes: 148},
			{Node: offering(node("nas", "100.64.0.4"), "0.0.0.0/0", "::/0", "192.168.1.0/24")},
		},
		Health: []string{"UDP is blocked on this network: every peer is reached through the relay, which is slower"},
		Drops:  &localapi.Drops{IntoTunnel: 7, FromTunnel: 3},
	}
	var b bytes.Buffer
	printStatus(&b, st, now)
	out := b.String()
	for _, want := range [][]string{
		{"100.64.0.2", "mac", "linux", "self"},
		{"100.64.0.1", "busan", "online", "direct 203.0.113.21:41641", "1.2ms", "1.2MB", "3.4MB", "12s ago"},
		{"100.64.0.3", "pc", "relay home", "148B", "never"},
		{"100.64.0.4", "nas", "exit,192.168.1.0/24"},
		{"ADDRESS", "HANDSHAKE", "OFFERS"},
		{"Health: UDP is blocked"},
		{"Refused: 7 packets from this node's other networks"},
		{"Refused: 3 packets from peers to destinations"},
	} {
		found := false
		for _, line := range strings.Split(out, "\n") {
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(line, w)
			}
			found = found || ok
		}
		if !found {
			t.Errorf("no line with %q in:\n%s", want, out)
		}
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); strings.Contains(line, "100.64.0.3") && (len(f) < 2 || f[len(f)-2] != "never" || f[len(f)-1] != "-") {
			t.Errorf("pc offers nothing, but its line ends %q", line)
		}
	}
}

// offering gives n approved routes.
func offering(n *wire.Node, routes ...string) *wire.Node {
	for _, r := range routes {
		n.Routes = append(n.Routes, netip.MustParsePrefix(r))
	}
	return n
}

// TestPrintStatusNotLoggedIn: a node that must log in again says why
// (its key expired at T) and what to run, not a bare "Logged out" with
// the reason as an error below it.
func TestPrintStatusNotLoggedIn(t *testing.T) {
	expired := "this node's key expired at 2026-12-01T10:00:00Z; run `weft up --auth-key KEY` with a new pre-auth key"
	tests := []struct {
		name    string
		st      *localapi.Status
		want    string
		notWant []string
	}{
		{"never joined", &localapi.Status{BackendState: localapi.StateNeedsLogin}, "Logged out. Run `weft up --server URL --auth-key KEY`", nil},
		{"key expired", &localapi.Status{BackendState: localapi.StateNeedsLogin, ServerURL: "http://203.0.113.10:8080", LastError: expired},
			"Not logged in: " + expired, []string{"Logged out", "Last error", "unreachable"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			printStatus(&b, tt.st, time.Now())
			if !strings.Contains(b.String(), tt.want) {
				t.Errorf("status:\n%s\nwant %q", b.String(), tt.want)
			}
			for _, nw := range tt.notWant {
				if strings.Contains(b.String(), nw) {
					t.Errorf("status says %q:\n%s", nw, b.String())
				}
			}
		})
	}
}

// fixedStatus is a daemon whose status is st, for the commands that
// show it.
type fixedStatus struct{ st *localapi.Status }

func (f fixedStatus) Up(context.Context, localapi.UpRequest) (*localapi.Status, error) {
	return nil, errors.New("not here")
}
func (f fixedStatus) Down(context.Context) error   { return nil }
func (f fixedStatus) Logout(context.Context) error { return nil }
func (f fixedStatus) Status(context.Context) (*localapi.Status, error) {
	return f.st, nil
}

// TestStatusViews runs the commands that show a view of the daemon's
// status against a fake daemon: each prints its own part, as JSON with
// --json and for people without.
func TestStatusViews(t *testing.T) {
	sock := serveFake(t, fixedStatus{&localapi.Status{
		BackendState: localapi.StateRunning,
		DNS:          &localapi.DNSStatus{MagicDNS: true, Mode: "resolv.conf", Domain: "tail.example"},
	}})
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"status", "--json"}, `"backend_state": "Running"`},
		{[]string{"dns", "status"}, "MagicDNS:   on, domain tail.example\n"},
		{[]string{"dns", "status", "--json"}, "{\n  \"magic_dns\": true,\n  \"mode\": \"resolv.conf\",\n  \"domain\": \"tail.example\","},
		{[]string{"exit-node", "list"}, "No exit nodes in the tailnet."},
		{[]string{"exit-node", "list", "--json"}, "[]\n"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, errs, code := weft(t, append([]string{"--socket", sock}, tc.args...)...)
			if code != 0 || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want stdout with %q", code, out, errs, tc.want)
			}
		})
	}
}
