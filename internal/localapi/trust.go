package localapi

import (
	"context"
	"net/http"
)

// ServerCARequest asks which certificates the daemon trusts for a
// control server's TLS besides the system's roots; ServerCAReply
// answers with them (PEM; empty for none).
type ServerCARequest struct {
	// Server is the control server URL (or comma list); empty means the
	// node's own.
	Server string `json:"server"`
}

// ServerCAReply holds PEM certificates; empty for none.
type ServerCAReply struct {
	PEM string `json:"pem"`
}

// TrustKeeper is implemented by a Backend that keeps certificates to trust
// for the control server's TLS (weft daemon --ca-file, weft up --ca-file).
// Handler serves POST /server-ca only for such a Backend, so that the
// interactive login `weft up` makes from its own process trusts what the
// daemon trusts.
type TrustKeeper interface {
	ServerCA(ctx context.Context, server string) (string, error)
}

func handleTrust(mux *http.ServeMux, b Backend, reply func(http.ResponseWriter, any, error)) {
	tk, ok := b.(TrustKeeper)
	if !ok {
		return
	}
	handleJSON(mux, "POST /server-ca", 64<<10, reply, func(ctx context.Context, req ServerCARequest) (ServerCAReply, error) {
		pem, err := tk.ServerCA(ctx, req.Server)
		return ServerCAReply{PEM: pem}, err
	})
}

// ServerCA asks the daemon which certificates it trusts for server's TLS
// besides the system's roots (PEM; "" for none).
func (c *Client) ServerCA(ctx context.Context, server string) (string, error) {
	var res ServerCAReply
	if err := c.do(ctx, http.MethodPost, "/server-ca", ServerCARequest{Server: server}, &res); err != nil {
		return "", err
	}
	return res.PEM, nil
}
