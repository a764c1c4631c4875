package node_test

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"

	"weft/internal/key"
	"weft/internal/localapi"
	"weft/internal/node"
	"weft/internal/nodestate"
	"weft/internal/tstest"
	"weft/internal/tstest/controltest"
)

// TestRestartWithControlDownStartsFromCachedMap: a daemon restarted while
// the control server is down starts its data plane at once from the last
// saved map, with the same disco key as before, so that peers holding
// their own last map accept its path discovery.
func TestRestartWithControlDownStartsFromCachedMap(t *testing.T) {
	e := controltest.New(t)
	ctx := context.Background()
	k := e.AuthKey(true)
	busan, _ := engineDaemon(t)
	if _, err := busan.Up(ctx, localapi.UpRequest{ServerURL: e.URL, AuthKey: k, Hostname: "busan"}); err != nil {
		t.Fatal(err)
	}
	st, err := nodestate.Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	start := func() (*node.Daemon, *recEngine, chan key.DiscoPublic) {
		eng := &recEngine{}
		discos := make(chan key.DiscoPublic, 4)
		d, err := node.NewDaemon(node.DaemonConfig{State: st,
			NewEngine: func(p node.EngineParams) (node.Engine, error) { discos <- p.DiscoKey.Public(); return eng, nil },
			Tune:      fastRetry})
		if err != nil {
			t.Fatal(err)
		}
		return d, eng, discos
	}
	mac, eng, discos := start()
	if _, err := mac.Up(ctx, localapi.UpRequest{ServerURL: e.URL, AuthKey: k, Hostname: "mac"}); err != nil {
		t.Fatal(err)
	}
	firstDisco := <-discos
	tstest.Eventually(t, "mac's data plane has busan", func() bool { return eng.hasPeer("busan") })
	mac.Close() // saves the map

	e.SetHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	e.Server.Close()

	mac2, eng2, discos2 := start()
	defer mac2.Close()
	mac2.Start()
	if got := <-discos2; got != firstDisco {
		t.Errorf("the restarted daemon's disco key is %v, want the last run's %v", got, firstDisco)
	}
	tstest.Eventually(t, "the restarted data plane has busan from the saved map", func() bool { return eng2.hasPeer("busan") })
}
