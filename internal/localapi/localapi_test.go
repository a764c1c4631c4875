package localapi

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"weft/internal/tstest"
)

// fakeBackend records calls and answers with canned results.
type fakeBackend struct {
	up    UpRequest
	upErr error
	calls []string
}

func (f *fakeBackend) Up(ctx context.Context, req UpRequest) (*Status, error) {
	f.calls = append(f.calls, "up")
	f.up = req
	if f.upErr != nil {
		return nil, f.upErr
	}
	return &Status{BackendState: StateRunning, ServerURL: req.ServerURL}, nil
}
func (f *fakeBackend) Down(ctx context.Context) error { f.calls = append(f.calls, "down"); return nil }
func (f *fakeBackend) Logout(ctx context.Context) error {
	f.calls = append(f.calls, "logout")
	return nil
}
func (f *fakeBackend) Status(ctx context.Context) (*Status, error) {
	f.calls = append(f.calls, "status")
	return &Status{BackendState: StateStopped}, nil
}

func serve(t *testing.T, b Backend) *Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "weft.sock")
	ln, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { Serve(ctx, ln, Handler(b, nil)); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return &Client{Socket: sock}
}

func TestRoundTrip(t *testing.T) {
	fb := &fakeBackend{}
	c := serve(t, fb)
	ctx := context.Background()
	st, err := c.Up(ctx, UpRequest{ServerURL: "http://ctrl:8080", AuthKey: "k", Hostname: "busan"})
	if err != nil || st.BackendState != StateRunning || st.ServerURL != "http://ctrl:8080" {
		t.Fatalf("Up = %+v, %v", st, err)
	}
	if fb.up != (UpRequest{ServerURL: "http://ctrl:8080", AuthKey: "k", Hostname: "busan"}) {
		t.Errorf("backend got %+v", fb.up)
	}
	if err := c.Down(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := c.Status(ctx); err != nil || st.BackendState != StateStopped {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	if got := strings.Join(fb.calls, ","); got != "up,down,logout,status" {
		t.Errorf("calls = %s", got)
	}
}

func TestBackendErrorReachesClientVerbatim(t *testing.T) {
	c := serve(t, &fakeBackend{upErr: errors.New("the control server refused this node: auth key already used")})
	_, err := c.Up(context.Background(), UpRequest{})
	if err == nil || err.Error() != "the control server refused this node: auth key already used" {
		t.Fatalf("err = %v", err)
	}
}

func TestSocketOwnerOnlyAndStaleReplaced(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "run", "weft.sock")
	ln, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	// A crashed daemon leaves its socket file behind: its listener
	// closes without the cleanup Close does.
	ln.(*privateListener).Listener.Close()
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}
	ln, err = Listen(sock)
	if err != nil {
		t.Fatalf("second Listen: %v", err)
	}
	defer ln.Close()
	st, err := os.Stat(sock)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, %v", st.Mode(), err)
	}
}

// TestListenRefusesALiveSocket: a second daemon on the same socket must
// neither take it over nor remove it.
func TestListenRefusesALiveSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "weft.sock")
	ln, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tstest.ServeConns(ln, nil)
	if ln2, err := Listen(sock); !errors.Is(err, ErrSocketInUse) || !strings.Contains(err.Error(), "already running") {
		if ln2 != nil {
			ln2.Close()
		}
		t.Fatalf("second Listen on a live socket: %v, want ErrSocketInUse", err)
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("the first listener lost its socket: %v", err)
	}
	c.Close()
}

func TestDaemonNotRunning(t *testing.T) {
	c := &Client{Socket: filepath.Join(t.TempDir(), "none.sock")}
	_, err := c.Status(context.Background())
	if !errors.Is(err, ErrDaemonNotRunning) || !strings.Contains(err.Error(), "weft daemon") {
		t.Fatalf("err = %v", err)
	}
}

func FuzzUpRequestBody(f *testing.F) {
	f.Add([]byte(`{"server_url":"http://x","auth_key":"k","hostname":"h"}`))
	f.Add([]byte(`{`))
	h := Handler(&fakeBackend{}, nil)
	f.Fuzz(func(t *testing.T, b []byte) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/up", bytes.NewReader(b)))
		if w.Code != http.StatusOK && w.Code != http.StatusBadRequest {
			t.Fatalf("status %d", w.Code)
		}
	})
}

func TestDebugProfiles(t *testing.T) {
	c := serve(t, &fakeBackend{})
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		query   url.Values
		wantErr string
	}{
		{name: "heap", query: url.Values{"gc": {"1"}}},
		{name: "goroutine"},
		{name: "profile", query: url.Values{"seconds": {"1"}}},
		{name: "nosuch", wantErr: `no profile "nosuch"`},
		{name: "profile", query: url.Values{"seconds": {"3600"}}, wantErr: "bad seconds"},
	} {
		t.Run(tc.name+tc.query.Encode(), func(t *testing.T) {
			var buf bytes.Buffer
			err := c.Profile(ctx, &buf, tc.name, tc.query)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Profile = %v, want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// pprof's format is gzipped protobuf.
			if b := buf.Bytes(); len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
				t.Fatalf("profile is not gzip: % x", b[:min(len(b), 8)])
			}
		})
	}
}
