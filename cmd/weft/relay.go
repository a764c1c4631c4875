package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"weft/internal/connlimit"
	"weft/internal/relay"
)

type relayOptions struct {
	listen, stunListen, serverURL string
	tlsCert, tlsKey               string
	secretFile, secretEnv         string
	meshWith                      []string
	meshKeyFile, meshKeyEnv       string
	rateLimit                     int64
	maxConnsPerIP                 int
	verbose                       bool
}

func newRelayCmd(g *globals) *cobra.Command {
	var o relayOptions
	cmd := &cobra.Command{
		Use:   "relay",
		Short: "Run a standalone relay (and STUN server) for nodes that cannot connect directly",
		Long: `weft relay forwards WireGuard packets between nodes that cannot reach each
other directly. It reads nothing of what it forwards, and only nodes the
control server knows may use it: it polls the control server's allow list
(` + relay.AllowListPath + `) with the control server's relay secret: copy the
server's DATA-DIR/relay.secret (or what its --relay-secret-file names) and
pass it with --relay-secret-file.

Several relays of one region forward to each other: give each the others'
URLs with --mesh-with and the same mesh key. Metrics are at /metrics.
It runs until interrupted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.serverURL == "" {
				return usageError{errors.New("relay: --server-url is required (the control server's URL, for the allow list)")}
			}
			if (o.tlsCert == "") != (o.tlsKey == "") {
				return usageError{errors.New("relay: give both --tls-cert and --tls-key, or neither")}
			}
			if o.meshKeyFile != "" && o.meshKeyEnv != "" {
				return usageError{errors.New("relay: give --mesh-key or --mesh-key-env, not both")}
			}
			return runRelay(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", ":443", "TCP address for relay connections (HTTPS with --tls-cert, else plain HTTP)")
	f.StringVar(&o.stunListen, "stun-listen", "", "UDP address for the STUN server, such as :3478; empty: no STUN")
	f.StringVar(&o.serverURL, "server-url", "", "control server URL, such as https://ctrl.example")
	f.StringVar(&o.tlsCert, "tls-cert", "", "TLS certificate file (PEM)")
	f.StringVar(&o.tlsKey, "tls-key", "", "TLS private key file (PEM)")
	f.StringVar(&o.secretFile, "relay-secret-file", "", "file holding the relay secret shared with the control server")
	f.StringVar(&o.secretEnv, "relay-secret-env", "WEFT_RELAY_SECRET", "environment variable holding the relay secret, if no file is given")
	f.StringSliceVar(&o.meshWith, "mesh-with", nil, "URLs of the other relays of this region, comma-separated")
	f.StringVar(&o.meshKeyFile, "mesh-key", "", "file holding the region's mesh key")
	f.StringVar(&o.meshKeyEnv, "mesh-key-env", "", "environment variable holding the region's mesh key")
	f.Int64Var(&o.rateLimit, "rate-limit", 0, "bytes per second each client may send; 0 is no limit")
	f.IntVar(&o.maxConnsPerIP, "max-conns-per-ip", connlimit.DefaultPerAddr, "connections one source IP may hold open (raise it behind a proxy; 0: no cap)")
	f.BoolVar(&o.verbose, "verbose", false, "log debug detail")
	return cmd
}

// readSecret returns a secret from a file or, failing that, an environment
// variable; what is empty is reported by the caller.
func readSecret(file, env string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("relay: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	if env != "" {
		return strings.TrimSpace(os.Getenv(env)), nil
	}
	return "", nil
}

func runRelay(ctx context.Context, g *globals, o relayOptions) error {
	log := newLogger(g.stderr, o.verbose)
	secret, meshKey, err := relaySecrets(o)
	if err != nil {
		return err
	}
	auth, err := relay.NewRemoteAuthorizer(relay.RemoteAuthorizerOptions{
		ServerURL: o.serverURL,
		Secret:    secret,
		Logger:    log,
	})
	if err != nil {
		return usageError{err}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := relay.NewServer(relay.ServerOptions{
		Authorizer: auth,
		MeshKey:    meshKey,
		MeshWith:   o.meshWith,
		RateLimit:  o.rateLimit,
		Registerer: reg,
		Logger:     log,
	})
	if err != nil {
		return usageError{err}
	}
	defer srv.Close()

	if err := auth.Refresh(ctx); errors.Is(err, relay.ErrSecretRefused) {
		// A wrong secret does not heal by waiting: refuse to start
		// rather than run a relay that refuses every node.
		return err
	} else if err != nil {
		// Not fatal: the control server may come up after the relay.
		log.Warn("cannot load the allow list yet; nodes are refused until it loads", "err", err)
	}
	raw, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("relay: listen on %s: %w (is the port in use?)", o.listen, err)
	}
	ln := connlimit.New(raw, o.maxConnsPerIP, log.With("sub", "connlimit"))
	hs := newHTTPServer(relayMux(srv, reg), log)
	sg := newServiceGroup(ctx)
	sg.Go(func(ctx context.Context) error {
		auth.Run(ctx)
		return nil
	})
	sg.Go(func(context.Context) error {
		if o.tlsCert != "" {
			return hs.ServeTLS(ln, o.tlsCert, o.tlsKey)
		}
		return hs.Serve(ln)
	})
	if o.stunListen != "" {
		goSTUN(sg, log.With("sub", "stun"), o.stunListen, "relay: STUN")
	}
	log.Info("weft relay running", "listen", ln.Addr().String(), "tls", o.tlsCert != "", "stun", o.stunListen, "control", o.serverURL, "mesh_peers", len(o.meshWith), "key", srv.PublicKey().String())
	return sg.Wait(ctx, log, shutdownHTTP(hs), func(context.Context) { srv.Close() })
}

// relaySecrets reads the relay secret, which the relay needs, and the
// mesh key, which it needs only to mesh with other relays.
func relaySecrets(o relayOptions) (secret, meshKey string, err error) {
	secret, err = readSecret(o.secretFile, o.secretEnv)
	if err != nil {
		return "", "", err
	}
	if secret == "" {
		return "", "", usageError{fmt.Errorf("relay: no relay secret: set --relay-secret-file or $%s to the secret weft server was given", o.secretEnv)}
	}
	meshKey, err = readSecret(o.meshKeyFile, o.meshKeyEnv)
	if err != nil {
		return "", "", err
	}
	if len(o.meshWith) > 0 && meshKey == "" {
		return "", "", usageError{errors.New("relay: --mesh-with needs a mesh key (--mesh-key FILE or --mesh-key-env NAME)")}
	}
	return secret, meshKey, nil
}

// relayMux routes a standalone relay's HTTP paths: the relay, its latency
// probe, metrics and a health check.
func relayMux(srv *relay.Server, reg *prometheus.Registry) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/relay", srv)
	mux.Handle("/relay/probe", srv.ProbeHandler())
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	return mux
}
