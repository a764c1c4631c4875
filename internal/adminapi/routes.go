package adminapi

import (
	"net/http"
	"strings"
)

// Route is one endpoint of the admin API: its method and path below /v1
// (a net/http pattern), who may call it, and the audit action a
// successful call records ("" for reads). The table is what Handler and
// APIHandler serve, and what docs/openapi.yaml is checked against.
type Route struct {
	Method, Path string
	// Local endpoints are served only on the admin socket: they mint
	// credentials (API keys, console links), so a leaked API key cannot
	// make itself more.
	Local  bool
	Action string
	access access
	h      func(*Server, http.ResponseWriter, *http.Request)
}

// Routes lists every endpoint, for documentation checks.
func Routes() []Route { return append([]Route(nil), routes...) }

var routes = []Route{
	{Method: "GET", Path: "/v1/users", access: accessMember, h: (*Server).listUsers},
	{Method: "POST", Path: "/v1/users", Action: "user.create", h: (*Server).createUser},
	{Method: "DELETE", Path: "/v1/users/{name}", Action: "user.delete", h: (*Server).deleteUser},
	{Method: "POST", Path: "/v1/users/{name}/role", Action: "user.role", h: (*Server).setUserRole},
	{Method: "GET", Path: "/v1/keys", access: accessMember, h: (*Server).listKeys},
	{Method: "POST", Path: "/v1/keys", Action: "key.create", access: accessMember, h: (*Server).createKey},
	{Method: "POST", Path: "/v1/keys/{prefix}/expire", Action: "key.expire", access: accessMember, h: (*Server).expireKey},
	{Method: "POST", Path: "/v1/keys/{prefix}/revoke", Action: "key.expire", access: accessMember, h: (*Server).expireKey},
	{Method: "GET", Path: "/v1/nodes", access: accessMember, h: (*Server).listNodes},
	{Method: "GET", Path: "/v1/nodes/{node}", access: accessOwnNode, h: (*Server).getNode},
	{Method: "GET", Path: "/v1/nodes/{node}/health", access: accessOwnNode, h: (*Server).nodeHealth},
	{Method: "GET", Path: "/v1/nodes/{node}/health/samples", access: accessOwnNode, h: (*Server).nodeSamples},
	{Method: "POST", Path: "/v1/nodes/{node}/rename", Action: "node.rename", access: accessOwnNode, h: (*Server).renameNode},
	{Method: "POST", Path: "/v1/nodes/{node}/expire", Action: "node.expire", access: accessOwnNode, h: (*Server).expireNode},
	{Method: "DELETE", Path: "/v1/nodes/{node}", Action: "node.delete", access: accessOwnNode, h: (*Server).deleteNode},
	{Method: "POST", Path: "/v1/nodes/{node}/tags", Action: "node.tag", h: (*Server).tagNode},
	{Method: "GET", Path: "/v1/routes", access: accessMember, h: (*Server).listRoutes},
	{Method: "GET", Path: "/v1/nodes/{node}/routes", access: accessOwnNode, h: (*Server).nodeRoutes},
	{Method: "POST", Path: "/v1/nodes/{node}/routes/approve", Action: "routes.approve", h: (*Server).approveRoutes},
	{Method: "POST", Path: "/v1/nodes/{node}/routes/reject", Action: "routes.reject", h: (*Server).rejectRoutes},
	{Method: "GET", Path: "/v1/policy", h: (*Server).getPolicy},
	{Method: "POST", Path: "/v1/policy", Action: "policy.set", h: (*Server).setPolicy},
	{Method: "POST", Path: "/v1/policy/check", h: (*Server).checkPolicy},
	{Method: "GET", Path: "/v1/policy/history", h: (*Server).policyHistory},
	{Method: "GET", Path: "/v1/dns", h: (*Server).getDNS},
	{Method: "PUT", Path: "/v1/dns", Action: "dns.set", h: (*Server).setDNS},
	{Method: "GET", Path: "/v1/audit", h: (*Server).listAudit},
	{Method: "GET", Path: "/v1/logins", h: (*Server).listLogins},
	{Method: "POST", Path: "/v1/logins/{code}/approve", Action: "login.approve", h: (*Server).approveLogin},
	{Method: "GET", Path: "/v1/apikeys", Local: true, h: (*Server).listAPIKeys},
	{Method: "POST", Path: "/v1/apikeys", Local: true, Action: "apikey.create", h: (*Server).createAPIKey},
	{Method: "POST", Path: "/v1/apikeys/{prefix}/revoke", Local: true, Action: "apikey.revoke", h: (*Server).revokeAPIKey},
	{Method: "POST", Path: "/v1/console-link", Local: true, Action: "console.link", h: (*Server).consoleLink},
}

// Handler returns the admin socket's HTTP handler: every endpoint, each
// request made by the server's administrator.
func (s *Server) Handler() http.Handler {
	mux := s.mux(true)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(w, r.WithContext(WithActor(r.Context(), socketActor)))
	})
}

// APIHandler returns the handler the REST API and the console mount: the
// endpoints that are not Local, each request made by the Actor the
// caller put in its context with WithActor (401 without one), allowed
// what that actor's role allows.
func (s *Server) APIHandler() http.Handler { return s.mux(false) }

func (s *Server) mux(local bool) *http.ServeMux {
	mux := http.NewServeMux()
	for _, rt := range routes {
		if rt.Local && !local {
			continue
		}
		h := rt.h
		mux.HandleFunc(rt.Method+" "+rt.Path, s.guard(rt, func(w http.ResponseWriter, r *http.Request) { h(s, w, r) }))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, ErrorReply{Code: CodeNotFound,
			Message: "no such endpoint: " + r.Method + " " + strings.TrimPrefix(r.URL.Path, "/v1") + " (docs/api.md lists them)"})
	})
	return mux
}
