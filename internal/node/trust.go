package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"weft/internal/controlclient"
	"weft/internal/key"
	"weft/internal/localapi"
	"weft/internal/netutil"
	"weft/internal/nodestate"
)

// TrustEngine is implemented by an Engine whose relay connections and
// network checks can take new trust for TLS while they run. The daemon
// calls SetTLSConfig when `weft up --ca-file` changes the node's CA on a
// node that is up; it must not block for long.
type TrustEngine interface {
	SetTLSConfig(*tls.Config) error
}

// trust is the TLS client configuration for p's server and relays, and
// the one place a node builds it: the system's roots, the daemon's
// --ca-file and the node's weft up --ca-file. The control client, the
// relay connections and netcheck's HTTPS probes all use it.
func (d *Daemon) trust(p nodestate.Prefs) (*tls.Config, error) {
	tc, err := netutil.TrustTLS(d.cfg.CAPEM, []byte(p.ServerCA))
	if err != nil {
		return nil, fmt.Errorf("the certificates to trust for %s: %w", p.ServerURL, err)
	}
	return tc, nil
}

// canRetrust reports whether the running data plane, if any, takes new
// trust in place. d.opMu is held.
func (d *Daemon) canRetrust() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.engine.(TrustEngine)
	return d.engine == nil || ok
}

// checkTrust checks, before a changed --ca-file is saved, that p's trust
// verifies the server's certificate: one that does not is refused, and
// nothing changes. A server that cannot be reached at all does not stop
// the change (the node keeps trying with the new trust).
func (d *Daemon) checkTrust(ctx context.Context, p nodestate.Prefs) error {
	c, err := d.newClient(p, func(key.MachinePublic) error { return nil })
	if err != nil {
		return err
	}
	err = c.CheckTrust(ctx)
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) {
		return fmt.Errorf("--ca-file: %s presents a TLS certificate that the certificates given did not sign (%v); nothing changed: "+
			"give the CA that signed the server's certificate", c.Server(), ua)
	}
	return nil
}

// retrust hands the trust of p to the running control client and data
// plane (`weft up --ca-file NEW` on a node that is up): each drops the
// connections it made with the old trust and connects again at once with
// the new. d.opMu is held.
func (d *Daemon) retrust(c *controlclient.Client, p nodestate.Prefs) error {
	tc, err := d.trust(p)
	if err != nil {
		return err
	}
	d.log.Info("the certificates trusted for TLS changed; reconnecting to the control server and the relays with them")
	c.SetTLSConfig(tc)
	d.mu.Lock()
	te, _ := d.engine.(TrustEngine)
	d.mu.Unlock()
	if te != nil {
		if err := te.SetTLSConfig(tc); err != nil {
			return fmt.Errorf("the data plane did not take the new certificates: %w", err)
		}
	}
	return nil
}

var _ localapi.TrustKeeper = (*Daemon)(nil)

// ServerCA implements localapi.TrustKeeper: the PEM certificates the node
// trusts for server's TLS besides the system's roots — the daemon's
// --ca-file, and the node's weft up --ca-file when server is the node's
// own server or one of its tailnet's ("" means the node's own). The
// interactive login of `weft up` builds its trust from them with
// netutil.TrustTLS, as trust does.
func (d *Daemon) ServerCA(_ context.Context, server string) (string, error) {
	d.mu.Lock()
	p := d.prefs
	d.mu.Unlock()
	pem := string(d.cfg.CAPEM)
	if p.ServerCA != "" && (server == "" || controlclient.SameTailnet(server, p.ServerURL)) {
		pem += "\n" + p.ServerCA
	}
	return strings.TrimSpace(pem), nil
}
