package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// tlsOptions are weft server's HTTPS flags.
type tlsOptions struct {
	certFile, keyFile string
	// acmeDomains get certificates from an ACME CA (Let's Encrypt by
	// default) through the TLS-ALPN-01 challenge on the --listen port,
	// which must then be reachable as port 443 of each domain.
	acmeDomains   []string
	acmeEmail     string
	acmeDirectory string // ACME directory URL; empty: Let's Encrypt
}

// serverTLS returns the TLS configuration of the server's port, or nil
// to serve plain HTTP. dataDir holds the ACME account and certificates
// (DATA-DIR/acme, 0700).
func serverTLS(o tlsOptions, dataDir string) (*tls.Config, error) {
	haveFiles := o.certFile != "" || o.keyFile != ""
	switch {
	case haveFiles && len(o.acmeDomains) > 0:
		return nil, usageError{errors.New("server: give --tls-cert/--tls-key or --acme-domain, not both")}
	case haveFiles && (o.certFile == "" || o.keyFile == ""):
		return nil, usageError{errors.New("server: --tls-cert and --tls-key go together")}
	case haveFiles:
		cert, err := tls.LoadX509KeyPair(o.certFile, o.keyFile)
		if err != nil {
			return nil, usageError{fmt.Errorf("server: loading --tls-cert %s and --tls-key %s: %w", o.certFile, o.keyFile, err)}
		}
		return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
	case len(o.acmeDomains) == 0:
		return nil, nil
	}
	for _, d := range o.acmeDomains {
		if d == "" || strings.ContainsAny(d, "/:* ") {
			return nil, usageError{fmt.Errorf("server: --acme-domain %q: want a DNS name such as weft.example.com", d)}
		}
	}
	cache := filepath.Join(dataDir, "acme")
	if err := os.MkdirAll(cache, 0o700); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	m := &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		HostPolicy: autocert.HostWhitelist(o.acmeDomains...),
		Cache:      autocert.DirCache(cache),
		Email:      o.acmeEmail,
	}
	if o.acmeDirectory != "" {
		m.Client = &acme.Client{DirectoryURL: o.acmeDirectory}
	}
	cfg := m.TLSConfig() // answers the tls-alpn-01 challenge on this port
	cfg.MinVersion = tls.VersionTLS12
	return cfg, nil
}
