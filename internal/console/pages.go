package console

import (
	"net/http"
	"strings"
)

// nodesPage is the console's home: every node, read-only, for a signed-in
// administrator; the sign-in explanation for anyone else.
func (s *Server) nodesPage(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.session(r)
	if !ok {
		s.page(w, r, http.StatusUnauthorized, "message", pageData{Title: "Sign in",
			Message: "Sign in with a one-time link: run `weft admin console-link` on the server's machine and open the link it prints."})
		return
	}
	nodes, err := s.Store.ListNodes(r.Context())
	if err != nil {
		s.logger().Error("console: listing nodes", "err", err)
		s.page(w, r, http.StatusInternalServerError, "message", pageData{Title: "Error", CSRF: sess.csrf,
			Message: "Could not read the nodes; the server's log has the details."})
		return
	}
	d := pageData{Title: "Nodes", CSRF: sess.csrf}
	for _, n := range nodes {
		row := nodeRow{Name: n.Name, User: n.User, Tags: strings.Join(n.Tags, ", "), OS: n.OS,
			LastSeen: n.LastSeen, KeyExpiry: n.KeyExpiry, Online: "-"}
		if n.IPv4.IsValid() {
			row.IPv4 = n.IPv4.String()
		}
		if n.IPv6.IsValid() {
			row.IPv6 = n.IPv6.String()
		}
		if s.Online != nil {
			row.Online = map[bool]string{true: "online", false: "offline"}[s.Online(n.ID)]
		}
		var rs []string
		for _, p := range n.EnabledRoutes() {
			rs = append(rs, p.String())
		}
		row.Routes = strings.Join(rs, ", ")
		d.Nodes = append(d.Nodes, row)
	}
	s.page(w, r, http.StatusOK, "nodes", d)
}
