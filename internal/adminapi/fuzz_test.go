package adminapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"weft/internal/key"
	"weft/internal/store"
	"weft/internal/tailnet"
	"weft/internal/tstest/storetest"
)

// FuzzHandler sends arbitrary bodies to every endpoint that decodes one:
// the server must answer each with a 2xx or a 4xx, never a 5xx or a panic.
func FuzzHandler(f *testing.F) {
	for _, seed := range []struct{ path, body string }{
		{"/v1/users", `{"name":"bob"}`},
		{"/v1/users", `{"name":""}`},
		{"/v1/keys", `{"user":"alice","reusable":true,"tags":["tag:a"],"expiry":"1h"}`},
		{"/v1/keys", `{"user":"alice","expiry":"9999999999h"}`},
		{"/v1/nodes/busan/rename", `{"name":"jeju"}`},
		{"/v1/nodes/busan/routes/approve", `{"prefixes":["0.0.0.0/0"]}`},
		{"/v1/nodes/1/routes/reject", `{"prefixes":["::/0","10.0.0.1/8"]}`},
		{"/v1/keys/wk000000000000/expire", ``},
		{"/v1/nodes/busan/expire", `[]`},
	} {
		f.Add(seed.path, seed.body)
	}
	ctx := context.Background()
	st := storetest.Open(f, "", store.Options{}, "alice")
	k, _, err := st.CreateAuthKey(ctx, store.AuthKeyRequest{User: "alice"})
	if err != nil {
		f.Fatal(err)
	}
	n, err := st.Register(ctx, store.RegisterRequest{AuthKey: k, MachineKey: key.NewMachine().Public(),
		NodeKey: key.NewNode().Public(), Hostname: "busan"})
	if err != nil {
		f.Fatal(err)
	}
	if _, err := st.SetAdvertisedRoutes(ctx, n.ID, tailnet.ExitRoutes()); err != nil {
		f.Fatal(err)
	}
	h := (&Server{Store: st}).Handler()
	f.Fuzz(func(t *testing.T, path, body string) {
		if !strings.HasPrefix(path, "/v1/") || strings.ContainsAny(path, "?#%") {
			return
		}
		req, err := http.NewRequest(http.MethodPost, "http://weft-admin"+path, strings.NewReader(body))
		if err != nil {
			return // not a request net/http would deliver
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("POST %s %q: %d %s", path, body, rec.Code, rec.Body)
		}
	})
}
