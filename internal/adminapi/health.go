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

// SamplesReply is the reply of GET /v1/nodes/{node}/health/samples: the
// samples themselves, oldest first, for plotting them over time.
type SamplesReply struct {
	Samples []wire.HealthSample `json:"samples"`
}

// nodeHealth serves GET /v1/nodes/{node}/health?since=DURATION&peer=NAME.
func (s *Server) nodeHealth(w http.ResponseWriter, r *http.Request) {
	ss, f, ok := s.healthSamples(w, r)
	if !ok {
		return
	}
	f.Peer = r.URL.Query().Get("peer")
	writeJSON(w, http.StatusOK, HealthReply{Metrics: samples.Summarize(ss, f)})
}

// nodeSamples serves GET /v1/nodes/{node}/health/samples?since=DURATION.
func (s *Server) nodeSamples(w http.ResponseWriter, r *http.Request) {
	ss, _, ok := s.healthSamples(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, SamplesReply{Samples: nonNil(ss)})
}

// healthSamples finds the request's node and the samples it reported
// since ?since= ago (all kept when absent); it has replied when ok is
// false.
func (s *Server) healthSamples(w http.ResponseWriter, r *http.Request) (ss []wire.HealthSample, f samples.Filter, ok bool) {
	n, err := s.findNode(r)
	if err != nil {
		s.fail(w, r, err)
		return nil, f, false
	}
	if v := r.URL.Query().Get("since"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			s.fail(w, r, fmt.Errorf("%w: since %q: want a duration such as 30h", store.ErrInvalid, v))
			return nil, f, false
		}
		f.Since = time.Now().Add(-d)
	}
	if s.Health != nil {
		if ss, err = s.Health.Since(n.ID, f.Since); err != nil {
			s.fail(w, r, err)
			return nil, f, false
		}
	}
	return ss, f, true
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

// NodeSamples returns the health samples node ref reported since d ago
// (all kept when d is 0), oldest first.
func (c *Client) NodeSamples(ctx context.Context, ref string, d time.Duration) ([]wire.HealthSample, error) {
	path := "/v1/nodes/" + url.PathEscape(ref) + "/health/samples"
	if d > 0 {
		path += "?since=" + url.QueryEscape(d.String())
	}
	var rep SamplesReply
	err := c.do(ctx, http.MethodGet, path, nil, &rep)
	return rep.Samples, err
}
