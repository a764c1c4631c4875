package adminapi

import (
	"context"
	"net/http"
	"time"

	"weft/internal/dnsconf"
	"weft/internal/wire"
)

// DNSRequest is the body of PUT /v1/dns: the settings file as written.
type DNSRequest struct {
	Source string `json:"source"`
}

// DNSReply describes the tailnet's DNS settings: the file as last set
// (empty when never set) and what nodes receive from it.
type DNSReply struct {
	Source    string         `json:"source"`
	UpdatedAt time.Time      `json:"updated_at,omitzero"`
	Config    wire.DNSConfig `json:"config"`
}

func (s *Server) dnsReply(ctx context.Context) (DNSReply, error) {
	src, at, err := s.Store.DNSSettings(ctx)
	if err != nil {
		return DNSReply{}, err
	}
	cfg, err := dnsconf.Parse(src)
	if err != nil {
		return DNSReply{}, err
	}
	return DNSReply{Source: string(src), UpdatedAt: at, Config: cfg}, nil
}

func (s *Server) getDNS(w http.ResponseWriter, r *http.Request) {
	rep, err := s.dnsReply(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

// setDNS validates the new file before storing it, so a bad file is
// refused and the settings in effect stay as they were.
func (s *Server) setDNS(w http.ResponseWriter, r *http.Request) {
	var req DNSRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if _, err := dnsconf.Parse([]byte(req.Source)); err != nil {
		s.fail(w, r, badRequest("%v", err))
		return
	}
	if err := s.Store.SetDNSSettings(r.Context(), []byte(req.Source)); err != nil {
		s.fail(w, r, err)
		return
	}
	if s.Notifier != nil {
		s.Notifier.DNSChanged()
	}
	rep, err := s.dnsReply(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

// DNS returns the tailnet's DNS settings.
func (c *Client) DNS(ctx context.Context) (DNSReply, error) {
	var rep DNSReply
	err := c.do(ctx, http.MethodGet, "/v1/dns", nil, &rep)
	return rep, err
}

// SetDNS replaces the tailnet's DNS settings file; the server refuses a
// file that does not validate and keeps the old one.
func (c *Client) SetDNS(ctx context.Context, source []byte) (DNSReply, error) {
	var rep DNSReply
	err := c.do(ctx, http.MethodPut, "/v1/dns", DNSRequest{Source: string(source)}, &rep)
	return rep, err
}
