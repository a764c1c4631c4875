package restapi

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"weft/internal/adminapi"
	"weft/internal/key"
	"weft/internal/store"
)

// The API benchmarks run the REST API over a real store holding N nodes
// (WEFT_BENCH_NODES, default 10,000; registering them takes a while, once
// per test binary) and report latency percentiles of one request, with a
// same-run baseline: GET /users, an endpoint that reads one small table.
//
//	go test -run '^$' -bench API -benchtime 200x ./internal/restapi

type apiBench struct {
	srv    *httptest.Server
	key    string
	n      int
	router string // the node that advertises 10.0.0.0/24
}

var (
	apiBenchOnce sync.Once
	apiBenchEnv  *apiBench
	apiBenchErr  error
)

func benchN() int {
	if n, err := strconv.Atoi(os.Getenv("WEFT_BENCH_NODES")); err == nil && n > 0 {
		return n
	}
	return 10000
}

func setupAPIBench() (*apiBench, error) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "weft-api-bench")
	if err != nil {
		return nil, err
	}
	st, err := store.Open(ctx, filepath.Join(dir, "weft.db"), store.Options{})
	if err != nil {
		return nil, err
	}
	if _, err := st.CreateUser(ctx, "alice"); err != nil {
		return nil, err
	}
	secret, _, err := st.CreateAuthKey(ctx, store.AuthKeyRequest{User: "alice", Reusable: true})
	if err != nil {
		return nil, err
	}
	e := &apiBench{n: benchN()}
	for i := range e.n {
		n, err := st.Register(ctx, store.RegisterRequest{AuthKey: secret, MachineKey: key.NewMachine().Public(),
			NodeKey: key.NewNode().Public(), Hostname: fmt.Sprintf("n%d", i)})
		if err != nil {
			return nil, err
		}
		if i == e.n/2 {
			e.router = n.Name
			if _, err := st.SetAdvertisedRoutes(ctx, n.ID, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}); err != nil {
				return nil, err
			}
		}
	}
	if e.key, _, err = st.CreateAPIKey(ctx, store.APIKeyRequest{}); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/api/", &Handler{Store: st, Admin: (&adminapi.Server{Store: st}).APIHandler()})
	e.srv = httptest.NewServer(mux)
	return e, nil
}

func apiBenchFixture(b *testing.B) *apiBench {
	apiBenchOnce.Do(func() { apiBenchEnv, apiBenchErr = setupAPIBench() })
	if apiBenchErr != nil {
		b.Fatal(apiBenchErr)
	}
	return apiBenchEnv
}

// call sends one request and returns how long it took and the next-page
// header.
func (e *apiBench) call(b *testing.B, method, path, body string) (time.Duration, string) {
	req, _ := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+e.key)
	start := time.Now()
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	d := time.Since(start)
	if resp.StatusCode/100 != 2 {
		b.Fatalf("%s %s: %s", method, path, resp.Status)
	}
	return d, resp.Header.Get(adminapi.NextAfterHeader)
}

func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// report adds p50 and p99 of ds and of the baseline, and their ratio.
func report(b *testing.B, ds, base []time.Duration) {
	p50, p99, b50 := percentile(ds, 0.50), percentile(ds, 0.99), percentile(base, 0.50)
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(b50.Microseconds())/1000, "baseline-p50-ms")
	b.ReportMetric(float64(p50)/float64(b50), "p50/baseline")
}

// BenchmarkAPIListNodesPaged: one iteration reads every node a page of
// 1,000 at a time; the percentiles are of single page requests.
func BenchmarkAPIListNodesPaged(b *testing.B) { benchPages(b, "") }

// BenchmarkAPIListNodesPagedByName is the same walk with a name filter
// that every node passes (name=n), which reads the whole list for each
// page: the cost of a filter the store does not page.
func BenchmarkAPIListNodesPagedByName(b *testing.B) { benchPages(b, "&name=n") }

func benchPages(b *testing.B, filter string) {
	e := apiBenchFixture(b)
	var pages, base []time.Duration
	b.ResetTimer()
	for b.Loop() {
		after, got := "", 0
		for {
			d, next := e.call(b, "GET", "/api/v1/nodes?limit=1000"+filter+after, "")
			pages = append(pages, d)
			got++
			if next == "" {
				break
			}
			after = "&after=" + next
		}
		if got != (e.n+999)/1000 {
			b.Fatalf("%d pages for %d nodes", got, e.n)
		}
		d, _ := e.call(b, "GET", "/api/v1/users", "")
		base = append(base, d)
	}
	report(b, pages, base)
}

// BenchmarkAPIRouteApproval: one iteration approves a route (and, not
// timed in the percentiles, rejects it again so the next approval is a
// change too).
func BenchmarkAPIRouteApproval(b *testing.B) {
	e := apiBenchFixture(b)
	body := `{"prefixes":["10.0.0.0/24"]}`
	var approvals, base []time.Duration
	b.ResetTimer()
	for b.Loop() {
		d, _ := e.call(b, "POST", "/api/v1/nodes/"+e.router+"/routes/approve", body)
		approvals = append(approvals, d)
		e.call(b, "POST", "/api/v1/nodes/"+e.router+"/routes/reject", body)
		d, _ = e.call(b, "GET", "/api/v1/users", "")
		base = append(base, d)
	}
	report(b, approvals, base)
}
