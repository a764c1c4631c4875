package adminapi

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"weft/internal/samples"
	"weft/internal/store"
	"weft/internal/wire"
)

// HealthSource gives the health samples a node reported (samples.Dir is
// one).
type HealthSource interface {
	Since(id wire.NodeID, t time.Time) ([]wire.HealthSample, error)
}

// HealthReply is a node's health table, the seed's layout: the same JSON
// as `weft health stats --json` on the node.
type HealthReply struct {
	Metrics []wire.MetricSummary `json:"metrics"`
}

// nodeHealth serves GET /v1/nodes/{node}/health?since=DURATION&peer=NAME.
func (s *Server) nodeHealth(w http.ResponseWriter, r *http.Request) {
	n, err := s.findNode(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var f samples.Filter
	if v := r.URL.Query().Get("since"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			s.fail(w, r, fmt.Errorf("%w: since %q: want a duration such as 30h", store.ErrInvalid, v))
			return
		}
		f.Since = time.Now().Add(-d)
	}
	f.Peer = r.URL.Query().Get("peer")
	var ss []wire.HealthSample
	if s.Health != nil {
		if ss, err = s.Health.Since(n.ID, f.Since); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, HealthReply{Metrics: samples.Summarize(ss, f)})
}

// NodeHealth returns the health table of node ref (name or ID) over the
// samples it reported since d ago (all kept when d is 0), only peer's
// metrics when peer is set.
func (c *Client) NodeHealth(ctx context.Context, ref string, d time.Duration, peer string) (HealthReply, error) {
	q := url.Values{}
	if d > 0 {
		q.Set("since", d.String())
	}
	if peer != "" {
		q.Set("peer", peer)
	}
	path := "/v1/nodes/" + url.PathEscape(ref) + "/health"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var rep HealthReply
	err := c.do(ctx, http.MethodGet, path, nil, &rep)
	return rep, err
}
