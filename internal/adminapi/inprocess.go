package adminapi

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
)

// NewHandlerClient returns a client that calls the admin API handler h in
// the same process, without a socket: the web console (internal/console)
// uses it so that every change it makes goes through the same endpoints,
// checks and notifications as `weft admin` and the REST API. The
// request's context reaches the handler unchanged, so values the caller
// put there (who is acting) are seen by it.
func NewHandlerClient(h http.Handler) *Client {
	return &Client{path: "(in process)", hc: &http.Client{Transport: handlerTransport{h}}, base: "http://weft-admin"}
}

// handlerTransport runs each request through a handler and returns what it
// wrote as the response.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body == nil {
		req = req.Clone(req.Context())
		req.Body = http.NoBody
	}
	rec := &bufferedResponse{header: http.Header{}}
	t.h.ServeHTTP(rec, req)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return &http.Response{
		Status:        strconv.Itoa(rec.status) + " " + http.StatusText(rec.status),
		StatusCode:    rec.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        rec.header,
		Body:          io.NopCloser(&rec.body),
		ContentLength: int64(rec.body.Len()),
		Request:       req,
	}, nil
}

// bufferedResponse is the http.ResponseWriter of an in-process call.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.header }

func (b *bufferedResponse) WriteHeader(status int) {
	if b.status == 0 {
		b.status = status
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}
