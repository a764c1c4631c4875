package node_test

import (
	"context"
	"encoding/hex"
	"log/slog"
	"strings"
	"testing"

	"weft/internal/localapi"
	"weft/internal/node"
	"weft/internal/tstest"
	"weft/internal/tstest/controltest"
)

// TestDaemonLogsHoldNoKeysOrTokens is the node side of the standing case
// "keys, tokens and secrets never appear in logs": a daemon that logs at
// debug level through up (with a pre-auth key), a refused up and logout
// never writes the pre-auth key or its private keys.
func TestDaemonLogsHoldNoKeysOrTokens(t *testing.T) {
	e := controltest.New(t)
	var logs tstest.Buffer
	d, st := newDaemonWith(t, node.DaemonConfig{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	ctx := context.Background()
	authKey := e.AuthKey(false)
	if _, err := d.Up(ctx, localapi.UpRequest{ServerURL: e.URL, AuthKey: authKey + "-wrong", Hostname: "pc"}); err == nil {
		t.Fatal("a wrong key was accepted")
	}
	if _, err := d.Up(ctx, localapi.UpRequest{ServerURL: e.URL, AuthKey: authKey, Hostname: "pc"}); err != nil {
		t.Fatal(err)
	}
	prefs, _ := st.LoadPrefs()
	mk, _ := st.MachineKey()
	if err := d.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if out == "" {
		t.Fatal("the daemon logged nothing; the test would prove nothing")
	}
	nk, _ := prefs.NodeKey.MarshalText()
	mkText, _ := mk.MarshalText()
	raw := prefs.NodeKey.Raw32()
	for what, s := range map[string]string{
		"the pre-auth key":        authKey,
		"the node private key":    string(nk),
		"the node key (hex)":      hex.EncodeToString(raw[:]),
		"the machine private key": string(mkText),
	} {
		if strings.Contains(out, s) {
			t.Errorf("%s appears in the daemon's logs", what)
		}
	}
}
