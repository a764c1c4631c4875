// Package console is weft's web console, served by weft server at
// /admin/ on its port: server-rendered pages (html/template, embedded with
// go:embed, no scripts) behind a session that starts from a one-time login
// link printed by `weft admin console-link`. It reads the store directly;
// it changes nothing in the tailnet yet (see docs/console.md).
//
// Every response, errors and redirects included, carries a strict
// Content-Security-Policy and the other headers of secureHeaders.
package console

import (
	"embed"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"weft/internal/store"
	"weft/internal/wire"
)

// Prefix is where the console is mounted on the server's mux.
const Prefix = "/admin/"

// CSP is the Content-Security-Policy of every console response: nothing
// but the console's own stylesheet and forms that post back to itself;
// no scripts at all, no framing, no base-URI games.
const CSP = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; " +
	"frame-ancestors 'none'; base-uri 'none'"

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Server serves the console. Set the fields before the first request.
type Server struct {
	// Store is read for the pages; required.
	Store store.Store
	// BaseURL is the server's public URL (weft server --server-url), used
	// to print login links; required for NewLoginLink.
	BaseURL string
	// Online reports whether a node is connected now; nil shows "-".
	Online func(wire.NodeID) bool
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Logger receives a line per failed page; nil discards.
	Logger *slog.Logger

	initOnce sync.Once
	tmpl     *template.Template
	mux      *http.ServeMux
	auth     sessions
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		s.tmpl = template.Must(template.New("").Funcs(template.FuncMap{"when": when}).ParseFS(templateFS, "templates/*.html"))
		static, _ := fs.Sub(staticFS, "static")
		m := http.NewServeMux()
		m.Handle("GET /admin/static/", http.StripPrefix("/admin/static/", http.FileServerFS(static)))
		m.HandleFunc("GET /admin/{$}", s.nodesPage)
		m.HandleFunc("GET /admin/login", s.login)
		m.HandleFunc("POST /admin/logout", s.logout)
		m.HandleFunc("/admin/", func(w http.ResponseWriter, r *http.Request) {
			s.page(w, r, http.StatusNotFound, "message", pageData{Title: "Not found", Message: "There is no such console page."})
		})
		s.mux = m
	})
}

func (s *Server) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// ServeHTTP sets the security headers and routes the request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.init()
	secureHeaders(w.Header())
	s.mux.ServeHTTP(w, r)
}

// secureHeaders are set on every console response before anything else
// can write: a strict CSP, no sniffing, no framing, no referrer (so a
// login link in a URL never leaks to another site), and no caching of
// pages that show the tailnet.
func secureHeaders(h http.Header) {
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}

// RedirectRoot sends the server's root to the console, for people who
// open the server's URL in a browser.
func RedirectRoot(w http.ResponseWriter, r *http.Request) {
	secureHeaders(w.Header())
	http.Redirect(w, r, Prefix, http.StatusFound)
}

// pageData is what every template gets.
type pageData struct {
	Title   string
	Message string
	CSRF    string // the session's CSRF token; empty when signed out
	Nodes   []nodeRow
}

// nodeRow is one line of the nodes page.
type nodeRow struct {
	Name, User, Tags, IPv4, IPv6, OS, Online, Routes string
	LastSeen, KeyExpiry                              time.Time
}

func (s *Server) page(w http.ResponseWriter, r *http.Request, status int, name string, d pageData) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := s.tmpl.ExecuteTemplate(w, name+".html", d); err != nil {
		s.logger().Error("console page", "page", name, "path", r.URL.Path, "err", err)
	}
}

func when(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}
