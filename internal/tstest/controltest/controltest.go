// Package controltest runs a real control server on a test HTTP server,
// for tests of the node side (the control client and the node daemon).
package controltest

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"weft/internal/control"
	"weft/internal/controlclient"
	"weft/internal/key"
	"weft/internal/store"
	"weft/internal/wire"
)

// Env is a control server with user alice whose handler can be swapped,
// to restart the server or replace it with one holding another key at the
// same URL.
type Env struct {
	t      testing.TB
	Store  store.Store
	Server *control.Server
	URL    string
	Key    key.MachinePrivate
	// Tune, if set, adjusts the server's Config at each Start.
	Tune    func(*control.Config)
	handler atomic.Pointer[http.Handler]
}

// New starts an Env; it is closed when the test ends.
func New(t testing.TB) *Env { return NewTuned(t, nil) }

// NewTuned starts an Env whose server's Config tune adjusts (nil: as New).
func NewTuned(t testing.TB, tune func(*control.Config)) *Env {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateUser(context.Background(), "alice"); err != nil {
		t.Fatal(err)
	}
	e := &Env{t: t, Store: st, Key: key.NewMachine(), Tune: tune}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		(*e.handler.Load()).ServeHTTP(w, r)
	}))
	e.URL = hs.URL
	e.Start(e.Key)
	t.Cleanup(func() {
		hs.Close()
		e.Server.Close()
		st.Close()
	})
	return e
}

// Start (re)starts the control server with k.
func (e *Env) Start(k key.MachinePrivate) {
	if e.Server != nil {
		e.Server.Close()
	}
	cfg := control.Config{Store: e.Store, Key: k, BatchWindow: 5 * time.Millisecond, RegisterRate: -1}
	if e.Tune != nil {
		e.Tune(&cfg)
	}
	srv, err := control.New(context.Background(), cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.Server = srv
	h := srv.Handler()
	e.handler.Store(&h)
}

// SetHandler serves h at the Env's URL in place of the control server
// (a server that has gone away, or one that answers wrongly).
func (e *Env) SetHandler(h http.Handler) { e.handler.Store(&h) }

// AuthKey makes a pre-auth key for alice.
func (e *Env) AuthKey(reusable bool) string {
	s, _, err := e.Store.CreateAuthKey(context.Background(), store.AuthKeyRequest{User: "alice", Reusable: reusable})
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// Client makes an unregistered control client named name with fresh keys
// and short backoffs.
func (e *Env) Client(name string, pin key.MachinePublic, onMap func(*controlclient.NetMap)) *controlclient.Client {
	c, err := controlclient.New(controlclient.Options{
		ServerURL:  e.URL,
		MachineKey: key.NewMachine(),
		NodeKey:    key.NewNode(),
		DiscoKey:   key.NewDisco().Public(),
		Hostinfo:   &wire.Hostinfo{Hostname: name, OS: "linux"},
		ServerKey:  pin,
		OnMap:      onMap,
		MinBackoff: 20 * time.Millisecond,
		MaxBackoff: 200 * time.Millisecond,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// TLSServer serves an Env's control server over TLS, at a URL of its own,
// with a certificate SetCert replaces (the server given a new one).
type TLSServer struct {
	URL  string
	cert atomic.Pointer[tls.Certificate]
}

// StartTLS serves the Env over TLS with cert until the test ends.
func (e *Env) StartTLS(cert tls.Certificate) *TLSServer { return e.StartTLSOn(nil, cert) }

// StartTLSOn is StartTLS on ln (nil: a loopback port of its own).
func (e *Env) StartTLSOn(ln net.Listener, cert tls.Certificate) *TLSServer {
	s := &TLSServer{}
	s.cert.Store(&cert)
	hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		(*e.handler.Load()).ServeHTTP(w, r)
	}))
	// The certificate is chosen per connection: a client without a
	// server name would otherwise get the Config's first certificate.
	hs.TLS = &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return &tls.Config{Certificates: []tls.Certificate{*s.cert.Load()}}, nil
	}}
	// Handshakes refused by clients that do not trust cert are what the
	// tests make happen, not news.
	hs.Config.ErrorLog = log.New(io.Discard, "", 0)
	if ln != nil {
		hs.Listener.Close()
		hs.Listener = ln
	}
	hs.StartTLS()
	s.URL = hs.URL
	e.t.Cleanup(hs.Close)
	return s
}

// SetCert makes new connections get cert; live ones keep theirs.
func (s *TLSServer) SetCert(cert tls.Certificate) { s.cert.Store(&cert) }
