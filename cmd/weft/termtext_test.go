package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"weft/internal/adminapi"
	"weft/internal/localapi"
	"weft/internal/store"
	"weft/internal/wire"
)

func TestTermText(t *testing.T) {
	tests := []struct{ in, want string }{
		{"busan", "busan"},
		{"부산-노트북", "부산-노트북"},
		{"evil\x1b]0;owned\x07", `evil\x1b]0;owned\x07`},
		{"a\tb\nc\rd\x7f", `a\x09b\x0ac\x0dd\x7f`},
		{"\u0085next-line", `\u0085next-line`},
		{"admin\u202egnp.exe", `admin\u202egnp.exe`},
	}
	for _, tt := range tests {
		if got := termText(tt.in); got != tt.want {
			t.Errorf("termText(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// hostile is text a modified peer could put in its host name, OS or
// version: a terminal title change, a screen clear and a bidi override.
const hostile = "pc\x1b]0;owned\x07\x1b[2J\u202e"

func noRawControls(t *testing.T, what, out string) {
	t.Helper()
	if strings.ContainsAny(out, "\x1b\x07\u202e") {
		t.Fatalf("%s prints a peer's control characters raw:\n%q", what, out)
	}
	if !strings.Contains(out, `\x1b`) {
		t.Fatalf("%s does not show the escaped text:\n%q", what, out)
	}
}

func TestStatusEscapesPeerText(t *testing.T) {
	peer := &wire.Node{Name: hostile, OS: hostile, Hostinfo: &wire.Hostinfo{Hostname: hostile, OS: hostile, Version: hostile}}
	st := &localapi.Status{BackendState: localapi.StateRunning, Self: &wire.Node{Name: "mac"},
		Peers: []*localapi.PeerStatus{{Node: peer}}, Health: []string{"exit node " + hostile + " is offline"}, LastError: hostile}
	var b bytes.Buffer
	printStatus(&b, st, time.Now())
	noRawControls(t, "weft status", b.String())
}

func TestAdminNodesEscapesNodeText(t *testing.T) {
	n := adminapi.Node{Node: store.Node{ID: 1, Name: hostile, OS: hostile, Hostname: hostile}}
	var b bytes.Buffer
	if err := printNodeList(&b, []adminapi.Node{n}, time.Now()); err != nil {
		t.Fatal(err)
	}
	noRawControls(t, "weft admin nodes list", b.String())
	b.Reset()
	if err := showNode(&b, n); err != nil {
		t.Fatal(err)
	}
	noRawControls(t, "weft admin nodes show", b.String())
}
