package adminapi

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"weft/internal/store"
)

// ConsoleLinker makes one-time login links for the web console; the
// console (internal/console) implements it. The link is recorded in the
// store with ctx, which carries the request's audit entry (console.link),
// so the two are one transaction.
type ConsoleLinker interface {
	NewLoginLink(ctx context.Context) (link string, expires time.Time, err error)
}

// ConsoleLinkReply is the reply to console-link.
type ConsoleLinkReply struct {
	URL     string    `json:"url"`
	Expires time.Time `json:"expires"`
}

func (s *Server) consoleLink(w http.ResponseWriter, r *http.Request) {
	if s.Console == nil {
		s.fail(w, r, fmt.Errorf("%w: this server runs no web console", store.ErrNotFound))
		return
	}
	link, exp, err := s.Console.NewLoginLink(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, ConsoleLinkReply{URL: link, Expires: exp})
}

// ConsoleLink asks the server for a one-time login link to its console.
func (c *Client) ConsoleLink(ctx context.Context) (ConsoleLinkReply, error) {
	var out ConsoleLinkReply
	err := c.do(ctx, http.MethodPost, "/v1/console-link", nil, &out)
	return out, err
}
