package nodelogin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Paths of the login endpoints on the server's port.
const (
	StartPath = "/login/node"      // POST StartRequest → StartReply
	WaitPath  = "/login/node/wait" // POST WaitRequest → Grant (200), pending (202) or gone (410)
	PagePath  = "/login/node/"     // GET PagePath+CODE: the page the person opens
)

// WaitTimeout is how long one wait request is held before the server
// answers 202 and the node asks again.
const WaitTimeout = 25 * time.Second

// StartRequest is the body of a login start.
type StartRequest struct {
	Hostname string `json:"hostname"`
}

// StartReply tells the node where to send the person and how to wait.
type StartReply struct {
	URL     string    `json:"url"`
	Code    string    `json:"code"`
	Poll    string    `json:"poll"` // secret: only the waiting node sends it
	Expires time.Time `json:"expires"`
}

// WaitRequest is the body of a wait.
type WaitRequest struct {
	Poll string `json:"poll"`
}

// Handler serves the login endpoints. Set the fields before serving.
type Handler struct {
	Logins *Manager
	// BaseURL is the server's public URL, for the login URL.
	BaseURL string
	// SignIn, when the server has an identity provider, sends the
	// person's browser to it to approve login code; nil shows the
	// "ask an administrator" page instead.
	SignIn func(w http.ResponseWriter, r *http.Request, code string)
	// Logger receives a line per failure; nil discards.
	Logger *slog.Logger
}

// Register mounts the endpoints on mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST "+StartPath, h.start)
	mux.HandleFunc("POST "+WaitPath, h.wait)
	mux.HandleFunc("GET "+PagePath+"{code}", h.page)
}

type errorReply struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeJSON(w, http.StatusBadRequest, errorReply{"invalid", "request body: " + err.Error()})
		return false
	}
	return true
}

func (h *Handler) start(w http.ResponseWriter, r *http.Request) {
	var req StartRequest
	if !decode(w, r, &req) {
		return
	}
	if len(req.Hostname) > 255 {
		writeJSON(w, http.StatusBadRequest, errorReply{"invalid", "hostname over 255 bytes"})
		return
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	l, poll, err := h.Logins.Start(r.Context(), req.Hostname, host)
	if errors.Is(err, ErrTooMany) {
		writeJSON(w, http.StatusTooManyRequests, errorReply{"rate_limited", err.Error()})
		return
	}
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, errorReply{"internal", err.Error()})
		return
	}
	u := strings.TrimSuffix(h.BaseURL, "/") + PagePath + l.Code
	writeJSON(w, http.StatusCreated, StartReply{URL: u, Code: l.Code, Poll: poll, Expires: l.Expires})
}

func (h *Handler) wait(w http.ResponseWriter, r *http.Request) {
	var req WaitRequest
	if !decode(w, r, &req) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), WaitTimeout)
	defer cancel()
	g, err := h.Logins.Wait(ctx, req.Poll)
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, g)
	case errors.Is(err, ErrUnknown):
		writeJSON(w, http.StatusGone, errorReply{"gone", "the login expired or is unknown; run weft up again"})
	case ctx.Err() != nil:
		writeJSON(w, http.StatusAccepted, struct {
			Pending bool `json:"pending"`
		}{true})
	default:
		// The store failed (the database is down): the node waits a
		// little before it asks again, rather than at once.
		if h.Logger != nil {
			h.Logger.Warn("waiting login", "err", err)
		}
		writeJSON(w, http.StatusServiceUnavailable, errorReply{"unavailable", "the server cannot read the login now; retrying"})
	}
}

// pageCSP allows nothing but the page's own inline-free markup.
const pageCSP = "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

var pageTmpl = template.Must(template.New("").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>weft: {{.Title}}</title></head>
<body><h1>{{.Title}}</h1><p>{{.Message}}</p>{{if .Command}}<pre>{{.Command}}</pre>{{end}}</body></html>
`))

func (h *Handler) page(w http.ResponseWriter, r *http.Request) {
	code := r.PathValue("code")
	w.Header().Set("Content-Security-Policy", pageCSP)
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Frame-Options", "DENY")
	l, err := h.Logins.Lookup(r.Context(), code)
	if err != nil {
		render(w, http.StatusNotFound, "Login link not valid", "This login link is unknown, already used or expired. Run weft up again for a new one.", "")
		return
	}
	if h.SignIn != nil {
		h.SignIn(w, r, code)
		return
	}
	render(w, http.StatusOK, "Waiting for approval",
		fmt.Sprintf("The machine %q (from %s) is waiting to join the tailnet. This server has no identity provider, so an administrator approves it, naming the user it joins as:", l.Hostname, l.Remote),
		"weft admin nodes approve "+l.Code+" --user USER")
}

// Page writes a plain page with the login pages' headers, for the sign-in
// callback's answers.
func Page(w http.ResponseWriter, status int, title, msg string) {
	w.Header().Set("Content-Security-Policy", pageCSP)
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("Cache-Control", "no-store")
	render(w, status, title, msg, "")
}

func render(w http.ResponseWriter, status int, title, msg, cmd string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	pageTmpl.Execute(w, struct{ Title, Message, Command string }{title, msg, cmd})
}

// Client is the node side: `weft up` starts a login and waits.
type Client struct {
	// HTTP is the client; nil means http.DefaultClient.
	HTTP *http.Client
}

func (c *Client) post(ctx context.Context, u string, in, out any) (int, error) {
	b, _ := json.Marshal(in)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(b))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		var er errorReply
		if json.Unmarshal(body, &er) == nil && er.Message != "" {
			return resp.StatusCode, errors.New(er.Message)
		}
		return resp.StatusCode, fmt.Errorf("server answered %s", resp.Status)
	}
	if out != nil && resp.StatusCode != http.StatusAccepted {
		if err := json.Unmarshal(body, out); err != nil {
			return resp.StatusCode, fmt.Errorf("reading the server's reply: %w", err)
		}
	}
	return resp.StatusCode, nil
}

// Start asks the server at serverURL for a login.
func (c *Client) Start(ctx context.Context, serverURL, hostname string) (StartReply, error) {
	var out StartReply
	u, err := url.JoinPath(serverURL, StartPath)
	if err != nil {
		return out, fmt.Errorf("nodelogin: server URL: %w", err)
	}
	if _, err := c.post(ctx, u, StartRequest{Hostname: hostname}, &out); err != nil {
		return out, fmt.Errorf("starting an interactive login at %s: %w", serverURL, err)
	}
	return out, nil
}

// Wait waits until the login is approved (the grant), it expires or ctx
// ends.
func (c *Client) Wait(ctx context.Context, serverURL string, start StartReply) (Grant, error) {
	u, err := url.JoinPath(serverURL, WaitPath)
	if err != nil {
		return Grant{}, fmt.Errorf("nodelogin: server URL: %w", err)
	}
	for {
		var g Grant
		code, err := c.post(ctx, u, WaitRequest{Poll: start.Poll}, &g)
		switch {
		case err == nil && code == http.StatusOK:
			return g, nil
		case err == nil: // 202: still pending, ask again
		case code == http.StatusGone:
			return Grant{}, fmt.Errorf("the login was not approved in time (%v); run weft up again", err)
		case ctx.Err() != nil:
			return Grant{}, ctx.Err()
		default:
			// The server may be restarting: wait a little and ask again
			// until the login's expiry says it is over.
			if time.Now().After(start.Expires) {
				return Grant{}, fmt.Errorf("waiting for the login: %w", err)
			}
			select {
			case <-ctx.Done():
				return Grant{}, ctx.Err()
			case <-time.After(2 * time.Second):
			}
		}
	}
}
