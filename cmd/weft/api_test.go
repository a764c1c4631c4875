package main

import (
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"weft/internal/adminapi"
)

// TestServerRESTAPI runs weft server in-process and checks the REST API
// contract on its port: GET /api/v1/nodes with a key from `weft admin
// apikeys create` answers 200 naming every node; no key, a wrong key and
// a revoked key get 401.
func TestServerRESTAPI(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "server")
	url := freeURL(t)
	startServer(t, url, dataDir)
	admin := adminCLI(t, dataDir)
	out := admin("apikeys", "create", "--expiry", "90d")
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	apiKey := lines[len(lines)-1]

	get := func(key string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", url+"/api/v1/nodes", nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get(apiKey)
	var nodes []adminapi.Node
	if code != 200 || json.Unmarshal([]byte(body), &nodes) != nil || len(nodes) != 0 {
		t.Fatalf("GET /api/v1/nodes with a fresh key on an empty tailnet: %d %s", code, body)
	}
	if code, body := get(""); code != 401 {
		t.Fatalf("no key: %d %s", code, body)
	}
	if code, body := get(apiKey[:len(apiKey)-8] + "00000000"); code != 401 {
		t.Fatalf("wrong key: %d %s", code, body)
	}
	admin("apikeys", "revoke", apiKey)
	if code, body := get(apiKey); code != 401 {
		t.Fatalf("revoked key: %d %s", code, body)
	}
}
