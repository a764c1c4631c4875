package console

import (
	"net/http"
	"strconv"
	"strings"

	"weft/internal/adminapi"
)

// nodeForm is what the node page's forms hold: the node's own values on
// a plain view, what the person typed when a change was refused (so a
// mistake costs no retyping), and which form was refused.
type nodeForm struct {
	Name    string
	Tags    string
	Refused string // "rename", "tags" or "delete": the form whose change was refused
}

// nodeDone redirects to node id's page with the notice for what was done.
func nodeDone(w http.ResponseWriter, r *http.Request, n adminapi.Node, what string) {
	http.Redirect(w, r, Prefix+"nodes/id:"+strconv.FormatInt(int64(n.ID), 10)+"?done="+what, http.StatusSeeOther)
}

// refuseNode shows the node page again with the admin API's refusal of
// the change f.Refused names, keeping what the person typed in f.
func (s *Server) refuseNode(w http.ResponseWriter, r *http.Request, sess session, err error, f nodeForm) {
	s.refuse(w, r, sess, err, func(w http.ResponseWriter, r *http.Request, sess session, status int, refusal string) {
		s.renderNode(w, r, sess, status, refusal, &f)
	})
}

// renameNode gives the node a new name (name=NEW). The admin API checks
// the name (a DNS label, not taken) and who may rename the node (an
// admin, or the member who owns it).
func (s *Server) renameNode(w http.ResponseWriter, r *http.Request, sess session) {
	name := strings.TrimSpace(r.PostFormValue("name"))
	n, err := s.api.RenameNode(r.Context(), r.PathValue("node"), name)
	if err != nil {
		s.refuseNode(w, r, sess, err, nodeForm{Name: r.PostFormValue("name"), Refused: "rename"})
		return
	}
	nodeDone(w, r, n, "node-renamed")
}

// expireNode ends the node's key now: the node must sign in again
// (weft up) before it is back in the tailnet, and its peers drop it.
func (s *Server) expireNode(w http.ResponseWriter, r *http.Request, sess session) {
	n, err := s.api.ExpireNode(r.Context(), r.PathValue("node"))
	if err != nil {
		s.refuseNode(w, r, sess, err, nodeForm{Refused: "expire"})
		return
	}
	nodeDone(w, r, n, "node-expired")
}

// tagNode makes the node owned by the tags given (tags=tag:a, tag:b),
// an admin's change: the admin API refuses members and tags the policy's
// tagOwners do not define.
func (s *Server) tagNode(w http.ResponseWriter, r *http.Request, sess session) {
	raw := r.PostFormValue("tags")
	tags := strings.FieldsFunc(raw, func(c rune) bool { return c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r' })
	n, err := s.api.TagNode(r.Context(), r.PathValue("node"), tags)
	if err != nil {
		s.refuseNode(w, r, sess, err, nodeForm{Tags: raw, Refused: "tags"})
		return
	}
	nodeDone(w, r, n, "node-tagged")
}

// deleteNode removes the node from the tailnet; the form's confirm box
// must be ticked (confirm=yes), as a deleted node can come back only by
// joining again with a new key.
func (s *Server) deleteNode(w http.ResponseWriter, r *http.Request, sess session) {
	ref := r.PathValue("node")
	if r.PostFormValue("confirm") != "yes" {
		s.renderNode(w, r, sess, http.StatusBadRequest,
			"Tick “Yes, delete this node” to delete it; nothing was changed.", &nodeForm{Refused: "delete"})
		return
	}
	if err := s.api.DeleteNode(r.Context(), ref); err != nil {
		s.refuseNode(w, r, sess, err, nodeForm{Refused: "delete"})
		return
	}
	done(w, r, "", "node-deleted")
}
