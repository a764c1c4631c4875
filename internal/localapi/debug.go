package localapi

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"runtime/pprof"
	"strconv"
	"time"
)

// maxCPUProfile bounds GET /debug/pprof/profile's ?seconds=.
const maxCPUProfile = 60 * time.Second

// handleDebug serves the daemon's runtime profiles, for finding where
// memory and CPU go under load (docs/benchmarks.md):
//
//	GET /debug/pprof/{name}     a named profile (heap, allocs, goroutine, ...)
//	                            in pprof's format; ?gc=1 collects first,
//	                            ?debug=1 writes text with the runtime's
//	                            memory statistics
//	GET /debug/pprof/profile    a CPU profile over ?seconds= (default 10)
//
// They are on the local API only, whose socket is the owner's alone: a
// profile shows the daemon's insides and a CPU profile costs CPU.
// runtime/pprof is used directly rather than net/http/pprof, whose import
// registers handlers on http.DefaultServeMux.
func handleDebug(mux *http.ServeMux, reply func(http.ResponseWriter, any, error)) {
	mux.HandleFunc("GET /debug/pprof/profile", func(w http.ResponseWriter, r *http.Request) {
		d := 10 * time.Second
		if s := r.URL.Query().Get("seconds"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n <= 0 || time.Duration(n)*time.Second > maxCPUProfile {
				reply(w, nil, fmt.Errorf("bad seconds %q: want 1 to %d", s, int(maxCPUProfile.Seconds())))
				return
			}
			d = time.Duration(n) * time.Second
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		if err := pprof.StartCPUProfile(w); err != nil {
			reply(w, nil, fmt.Errorf("CPU profile: %w (one at a time: wait for the other to end)", err))
			return
		}
		select {
		case <-time.After(d):
		case <-r.Context().Done():
		}
		pprof.StopCPUProfile()
	})
	mux.HandleFunc("GET /debug/pprof/{name}", func(w http.ResponseWriter, r *http.Request) {
		p := pprof.Lookup(r.PathValue("name"))
		if p == nil {
			reply(w, nil, fmt.Errorf("no profile %q: try heap, allocs, goroutine or profile", r.PathValue("name")))
			return
		}
		if r.URL.Query().Get("gc") == "1" {
			runtime.GC()
		}
		debug := 0
		if r.URL.Query().Get("debug") == "1" {
			debug = 1 // text, with the runtime's memory statistics
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		p.WriteTo(w, debug)
	})
}

// Profile writes the daemon's runtime profile name (heap, allocs,
// goroutine, ... or profile for CPU; see handleDebug) to w, in pprof's
// format. query adds options such as gc=1 or seconds=5; nil adds none.
func (c *Client) Profile(ctx context.Context, w io.Writer, name string, query url.Values) error {
	path := "/debug/pprof/" + url.PathEscape(name)
	if len(query) > 0 {
		path += "?" + query.Encode()
	}
	return c.do(ctx, http.MethodGet, path, nil, w)
}
