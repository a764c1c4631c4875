// Package console is weft's web console, served by weft server at
// /admin/ on its port: server-rendered pages (html/template, embedded with
// go:embed) behind a session that starts from a one-time login link
// printed by `weft admin console-link`, or from a sign-in with the
// tailnet's identity provider. Links and sessions are kept in the store
// (Sessions), so they work at every server sharing its database. Every
// page reads and changes the tailnet through the admin API
// (internal/adminapi, called in process), so the console can do nothing
// that `weft admin` and the REST API do not, and passes the same checks.
// docs/console.md describes the pages.
//
// Every response, errors and redirects included, carries a strict
// Content-Security-Policy and the other headers of secureHeaders. The only
// script is the node page's health plots: the vendored uPlot library and
// console's own health.js, both served from /admin/static/.
package console

import (
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"weft/internal/adminapi"
)

// Prefix is where the console is mounted on the server's mux.
const Prefix = "/admin/"

// CSP is the Content-Security-Policy of every console response: the
// console's own scripts, stylesheets and JSON only; no inline script or
// style, forms that post back to the console alone, no framing, no
// base-URI games.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Server serves the console. Set the fields before the first request.
type Server struct {
	// API is the admin API's handler (adminapi.Server.Handler): the
	// console reads and changes the tailnet only through it. Required.
	API http.Handler
	// Sessions keeps the console's login links and sessions: the
	// server's store, shared by every server on its database. Required.
	Sessions Sessions
	// BaseURL is the server's public URL (weft server --server-url), used
	// to print login links; required for NewLoginLink.
	BaseURL string
	// SignInURL is where a person signs in with the tailnet's identity
	// provider (the server's OIDC start, which ends in SignIn); empty
	// when the server has none, and only login links sign in.
	SignInURL string
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Logger receives a line per failed page; nil discards.
	Logger *slog.Logger

	initOnce sync.Once
	tmpl     *template.Template
	mux      *http.ServeMux
	api      *adminapi.Client
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		s.tmpl = template.Must(template.New("").Funcs(funcs).ParseFS(templateFS, "templates/*.html"))
		s.api = adminapi.NewHandlerClient(s.API)
		static, _ := fs.Sub(staticFS, "static")
		m := http.NewServeMux()
		m.Handle("GET /admin/static/", http.StripPrefix("/admin/static/", http.FileServerFS(static)))
		m.HandleFunc("GET /admin/login", s.loginPage)
		m.HandleFunc("POST /admin/login", s.login)
		m.HandleFunc("POST /admin/logout", s.logout)
		m.HandleFunc("GET /admin/{$}", s.signedIn(s.nodesPage))
		m.HandleFunc("GET /admin/nodes/{node}", s.signedIn(s.nodePage))
		m.HandleFunc("GET /admin/nodes/{node}/health.json", s.signedIn(s.nodeHealthJSON))
		m.HandleFunc("POST /admin/nodes/{node}/routes", s.changes(s.nodeRoutes))
		m.HandleFunc("POST /admin/nodes/{node}/rename", s.changes(s.renameNode))
		m.HandleFunc("POST /admin/nodes/{node}/expire", s.changes(s.expireNode))
		m.HandleFunc("POST /admin/nodes/{node}/tags", s.changes(s.tagNode))
		m.HandleFunc("POST /admin/nodes/{node}/delete", s.changes(s.deleteNode))
		m.HandleFunc("GET /admin/users", s.signedIn(s.usersPage))
		m.HandleFunc("POST /admin/users", s.changes(s.createUser))
		m.HandleFunc("POST /admin/users/{name}/delete", s.changes(s.deleteUser))
		m.HandleFunc("POST /admin/users/{name}/role", s.changes(s.setUserRole))
		m.HandleFunc("GET /admin/keys", s.signedIn(s.keysPage))
		m.HandleFunc("POST /admin/keys", s.changes(s.createKey))
		m.HandleFunc("POST /admin/keys/{prefix}/expire", s.changes(s.expireKey))
		m.HandleFunc("GET /admin/policy", s.signedIn(s.policyPage))
		m.HandleFunc("POST /admin/policy", s.changes(s.savePolicy))
		m.HandleFunc("GET /admin/policy/history", s.signedIn(s.policyHistoryPage))
		m.HandleFunc("GET /admin/policy/history/{version}", s.signedIn(s.policyVersionPage))
		m.HandleFunc("GET /admin/dns", s.signedIn(s.dnsPage))
		m.HandleFunc("POST /admin/dns", s.changes(s.saveDNS))
		m.HandleFunc("GET /admin/audit", s.signedIn(s.auditPage))
		m.HandleFunc("GET /admin/logins", s.signedIn(s.loginsPage))
		m.HandleFunc("POST /admin/logins/{code}/approve", s.changes(s.approveLogin))
		m.HandleFunc("/admin/", func(w http.ResponseWriter, r *http.Request) {
			s.page(w, r, http.StatusNotFound, "message", &pageData{Title: "Not found", Message: "There is no such console page."})
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
// can write: a strict CSP, no sniffing, no framing, a referrer only to
// the console itself (so a login link in a URL never leaks to another
// site; "no-referrer" would also make browsers send "Origin: null" on the
// console's own forms, which the CSRF check must refuse), and no caching
// of pages that show the tailnet or a new key.
func secureHeaders(h http.Header) {
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
}

// RedirectRoot sends the server's root to the console, for people who
// open the server's URL in a browser.
func RedirectRoot(w http.ResponseWriter, r *http.Request) {
	secureHeaders(w.Header())
	http.Redirect(w, r, Prefix, http.StatusFound)
}

// pageData is what every template gets: the layout's part here, the
// page's own in Data.
type pageData struct {
	Title   string
	Nav     string // which menu entry is current
	Message string // a message page's text, or a notice above a page
	Error   string // a refusal shown above a page
	CSRF    string // the session's CSRF token; empty when signed out
	Admin   bool   // the signed-in actor administers the tailnet (set by page)
	Scripts []string
	Data    any
}

// page renders template name with d at status.
func (s *Server) page(w http.ResponseWriter, r *http.Request, status int, name string, d *pageData) {
	if a, ok := adminapi.ActorFrom(r.Context()); ok {
		d.Admin = a.Admin()
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := s.tmpl.ExecuteTemplate(w, name+".html", d); err != nil {
		s.logger().Error("console page", "page", name, "path", r.URL.Path, "err", err)
	}
}

// apiFailure shows an error the admin API returned: its status and its
// message for people when it refused the request, a pointer to the log
// when it failed.
func (s *Server) apiFailure(w http.ResponseWriter, r *http.Request, sess session, err error) {
	status, msg := apiError(err)
	if status >= 500 {
		s.logger().Error("console: admin API", "path", r.URL.Path, "err", err)
	}
	s.page(w, r, status, "message", &pageData{Title: http.StatusText(status), CSRF: sess.csrf, Message: msg})
}

// apiError maps an admin API error to a status and a message to show.
func apiError(err error) (int, string) {
	var ae *adminapi.Error
	if errors.As(err, &ae) && ae.Status >= 400 && ae.Status < 500 {
		return ae.Status, ae.Message
	}
	return http.StatusInternalServerError, "The server failed; its log has the details."
}

var funcs = template.FuncMap{
	"when": when,
	"ago":  ago,
}

func when(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

// ago says how long before now t was, coarsely, for the nodes table.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return d.Truncate(time.Minute).String() + " ago"
	case d < 48*time.Hour:
		return d.Truncate(time.Hour).String() + " ago"
	}
	return when(t)
}
