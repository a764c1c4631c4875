package adminapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"weft/internal/store"
	"weft/internal/wire"
)

// Client talks to a Server over its unix socket. Its methods return
// *Error for errors the server reported (errors.Is works with the store's
// sentinels) and an error wrapping ErrServerNotRunning when nothing
// listens on the socket.
type Client struct {
	path string
	hc   *http.Client
	// base is where paths are sent: "http://weft-admin" for the socket
	// (the host is ignored, the transport dials the socket), or a remote
	// server's URL + "/api" for NewRemoteClient.
	base string
	// apiKey is sent as a bearer token when set (remote clients).
	apiKey string
}

// NewClient returns a client for the admin socket at path (see SocketPath).
func NewClient(path string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}
	return &Client{path: path, hc: &http.Client{Transport: tr}, base: "http://weft-admin"}
}

// NewRemoteClient returns a client for the REST API of the server at
// serverURL (http or https), authenticated with apiKey: the same methods
// as on the socket, answered by the key's user's permissions. tlsConfig
// (nil: the system's roots) is used for https. Endpoints served only on
// the socket (API keys, console links) answer not found.
func NewRemoteClient(serverURL, apiKey string, tlsConfig *tls.Config) (*Client, error) {
	u, err := url.Parse(serverURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("adminapi: server URL %q: want http://HOST[:PORT] or https://HOST[:PORT]", serverURL)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsConfig
	base := strings.TrimSuffix(u.Scheme+"://"+u.Host+u.Path, "/") + "/api"
	return &Client{path: serverURL, hc: &http.Client{Transport: tr, Timeout: time.Minute}, base: base, apiKey: strings.TrimSpace(apiKey)}, nil
}

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// do sends a request with body in (nil for none) and decodes a 2xx reply
// into out (nil to ignore it).
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	_, err := c.send(ctx, method, path, in, out)
	return err
}

// send is do that also returns the reply's header.
func (c *Client) send(ctx context.Context, method, path string, in, out any) (http.Header, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("adminapi: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("adminapi: %w", err)
	}
	if c.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.apiKey)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w: no answer on %s", ErrServerNotRunning, c.path)
		}
		if errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("adminapi: %s is owner-only: run this as the user that runs weft server: %w", c.path, err)
		}
		return nil, fmt.Errorf("adminapi: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var er ErrorReply
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
		if json.Unmarshal(b, &er) != nil || er.Message == "" {
			er = ErrorReply{Code: CodeInternal, Message: fmt.Sprintf("server replied %s: %.200s", resp.Status, b)}
		}
		return nil, &Error{Status: resp.StatusCode, Code: er.Code, Message: er.Message}
	}
	if out == nil {
		return resp.Header, nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(out); err != nil {
		return nil, fmt.Errorf("adminapi: decoding reply to %s %s: %w", method, path, err)
	}
	return resp.Header, nil
}

// CreateUser adds a user.
func (c *Client) CreateUser(ctx context.Context, name string) (store.User, error) {
	var u store.User
	err := c.do(ctx, http.MethodPost, "/v1/users", NameRequest{Name: name}, &u)
	return u, err
}

// ListUsers lists users by name.
func (c *Client) ListUsers(ctx context.Context) ([]store.User, error) {
	var us []store.User
	err := c.do(ctx, http.MethodGet, "/v1/users", nil, &us)
	return us, err
}

// DeleteUser deletes a user who owns no nodes, with their keys.
func (c *Client) DeleteUser(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/users/"+url.PathEscape(name), nil, nil)
}

// CreateKey makes a pre-auth key; the reply holds the secret.
func (c *Client) CreateKey(ctx context.Context, req KeyRequest) (KeyReply, error) {
	var r KeyReply
	err := c.do(ctx, http.MethodPost, "/v1/keys", req, &r)
	return r, err
}

// ListKeys lists pre-auth keys, of user or of everyone when user is "".
func (c *Client) ListKeys(ctx context.Context, user string) ([]store.AuthKey, error) {
	p := "/v1/keys"
	if user != "" {
		p += "?user=" + url.QueryEscape(user)
	}
	var ks []store.AuthKey
	err := c.do(ctx, http.MethodGet, p, nil, &ks)
	return ks, err
}

// ExpireKey expires the key with the given prefix (or full secret).
func (c *Client) ExpireKey(ctx context.Context, prefix string) error {
	return c.do(ctx, http.MethodPost, "/v1/keys/"+url.PathEscape(prefix)+"/expire", nil, nil)
}

// ListNodes lists all nodes by ID.
func (c *Client) ListNodes(ctx context.Context) ([]Node, error) {
	var ns []Node
	err := c.do(ctx, http.MethodGet, "/v1/nodes", nil, &ns)
	return ns, err
}

// NodeList is one page of ListNodesPage.
type NodeList struct {
	Nodes []Node
	// Total is how many nodes the query's filters match over all pages.
	Total int
	// NextAfter is the After of the next page in ID order; 0 on the last
	// page, and in any other order (page those with Offset).
	NextAfter wire.NodeID
}

// ListNodesPage lists the page of nodes q selects, filtered, ordered and
// cut by the server, which reads only that page.
func (c *Client) ListNodesPage(ctx context.Context, q NodeQuery) (NodeList, error) {
	var l NodeList
	p := "/v1/nodes"
	if v := q.Values(); len(v) > 0 {
		p += "?" + v.Encode()
	}
	h, err := c.send(ctx, http.MethodGet, p, nil, &l.Nodes)
	if err != nil {
		return NodeList{}, err
	}
	if l.Total, err = strconv.Atoi(h.Get(TotalHeader)); err != nil {
		return NodeList{}, fmt.Errorf("adminapi: GET %s: the reply's %s header %q is not a count: %w", p, TotalHeader, h.Get(TotalHeader), err)
	}
	if s := h.Get(NextAfterHeader); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return NodeList{}, fmt.Errorf("adminapi: GET %s: the reply's %s header %q is not a node ID: %w", p, NextAfterHeader, s, err)
		}
		l.NextAfter = wire.NodeID(n)
	}
	return l, nil
}

// GetNode returns the node with the given name or ID.
func (c *Client) GetNode(ctx context.Context, ref string) (Node, error) {
	var n Node
	err := c.do(ctx, http.MethodGet, "/v1/nodes/"+url.PathEscape(ref), nil, &n)
	return n, err
}

// RenameNode renames the node ref (name or ID) to name.
func (c *Client) RenameNode(ctx context.Context, ref, name string) (Node, error) {
	var n Node
	err := c.do(ctx, http.MethodPost, "/v1/nodes/"+url.PathEscape(ref)+"/rename", NameRequest{Name: name}, &n)
	return n, err
}

// ExpireNode expires the node key of ref now.
func (c *Client) ExpireNode(ctx context.Context, ref string) (Node, error) {
	var n Node
	err := c.do(ctx, http.MethodPost, "/v1/nodes/"+url.PathEscape(ref)+"/expire", nil, &n)
	return n, err
}

// DeleteNode deletes the node ref.
func (c *Client) DeleteNode(ctx context.Context, ref string) error {
	return c.do(ctx, http.MethodDelete, "/v1/nodes/"+url.PathEscape(ref), nil, nil)
}

// ListRoutes lists every node's routes.
func (c *Client) ListRoutes(ctx context.Context) ([]store.Route, error) {
	var rs []store.Route
	err := c.do(ctx, http.MethodGet, "/v1/routes", nil, &rs)
	return rs, err
}

// NodeRoutes lists the routes of the node ref alone.
func (c *Client) NodeRoutes(ctx context.Context, ref string) ([]store.Route, error) {
	var rs []store.Route
	err := c.do(ctx, http.MethodGet, "/v1/nodes/"+url.PathEscape(ref)+"/routes", nil, &rs)
	return rs, err
}

// ApproveRoutes approves prefixes the node ref advertises.
func (c *Client) ApproveRoutes(ctx context.Context, ref string, prefixes []netip.Prefix) (Node, error) {
	var n Node
	err := c.do(ctx, http.MethodPost, "/v1/nodes/"+url.PathEscape(ref)+"/routes/approve", RoutesRequest{Prefixes: prefixes}, &n)
	return n, err
}

// RejectRoutes withdraws approval of prefixes of the node ref.
func (c *Client) RejectRoutes(ctx context.Context, ref string, prefixes []netip.Prefix) (Node, error) {
	var n Node
	err := c.do(ctx, http.MethodPost, "/v1/nodes/"+url.PathEscape(ref)+"/routes/reject", RoutesRequest{Prefixes: prefixes}, &n)
	return n, err
}
