package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"weft/internal/adminapi"
	"weft/internal/connlimit"
	"weft/internal/console"
	"weft/internal/control"
	"weft/internal/key"
	"weft/internal/nodelogin"
	"weft/internal/oidclogin"
	"weft/internal/relay"
	"weft/internal/restapi"
	"weft/internal/samples"
	"weft/internal/store"
	"weft/internal/wire"
)

type serverOptions struct {
	listen, dataDir, serverURL, relayMap string
	db                                   string // --db; "" falls back to $WEFT_DB, then SQLite
	relaySecretFile, relaySecretEnv      string
	stunListen                           []string
	relayAddrs                           []net.IP // --relay-addrs
	ephemeralTimeout, nodeKeyLifetime    time.Duration
	registerRate                         float64
	registerBurst                        int
	maxConnsPerIP                        int
	relayRateLimit                       int64
	metricsListen                        string
	verbose                              bool
	tls                                  tlsOptions
	oidc                                 oidcOptions
}

func newServerCmd(g *globals) *cobra.Command {
	var o serverOptions
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the control server (coordination, key distribution, peer maps)",
		Long: "Run the weft control server. It keeps users, pre-auth keys and nodes in an\n" +
			"SQLite database in --data-dir (or in PostgreSQL with --db postgres://...),\n" +
			"hands each node its peers' keys and endpoints, and never sees tailnet traffic.\n" +
			"Administer it with `weft admin --data-dir DIR`.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.dataDir == "" || o.serverURL == "" {
				return usageError{errors.New("server: --data-dir and --server-url are required")}
			}
			if err := checkDBURL(serverDBURL(o.db)); err != nil {
				return err
			}
			return runServer(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", ":8080", "TCP address for HTTP (control, /key, /healthz, relay)")
	f.StringVar(&o.dataDir, "data-dir", "", "directory for the SQLite database, the server key and the admin socket (created 0700)")
	f.StringVar(&o.db, "db", "", "PostgreSQL database instead of SQLite in --data-dir, as a libpq URL: postgres://USER@HOST/DB or postgres:///DB?host=/run/postgresql (env "+dbEnv+"; docs/postgres.md)")
	f.StringVar(&o.serverURL, "server-url", "", "URL nodes use to reach this server, such as http://ctrl.example:8080")
	f.StringVar(&o.relayMap, "relay-map", "", "relay map file (JSON or HuJSON); default: this server's own relay as region 1 \"home\"")
	f.StringSliceVar(&o.stunListen, "stun-listen", []string{":3478", ":3479"},
		"UDP addresses for the STUN server (two, so netcheck can spot a hard NAT); --stun-listen= for none")
	f.IPSliceVar(&o.relayAddrs, "relay-addrs", nil,
		"this host's public addresses besides the --server-url host, one per family (say its IPv6 address), listed in the default relay map so nodes reach its relay and STUN over that family")
	f.StringVar(&o.relaySecretFile, "relay-secret-file", "", "file with the secret standalone relays present to fetch the allow list; default: DATA-DIR/relay.secret, made on first start")
	f.StringVar(&o.relaySecretEnv, "relay-secret-env", "WEFT_RELAY_SECRET", "environment variable with the relay secret, used when set and no file is given")
	f.DurationVar(&o.ephemeralTimeout, "ephemeral-timeout", control.DefaultEphemeralTimeout, "how long an ephemeral node may be disconnected before it is deleted")
	f.DurationVar(&o.nodeKeyLifetime, "node-key-lifetime", 0, "validity of new untagged node keys (default 180 days)")
	f.Float64Var(&o.registerRate, "register-rate", control.DefaultRegisterRate, "registrations per second allowed from one source IP (negative: no limit)")
	f.IntVar(&o.registerBurst, "register-burst", control.DefaultRegisterBurst, "registrations allowed at once from one source IP")
	f.Int64Var(&o.relayRateLimit, "relay-rate-limit", DefaultEmbeddedRelayRate, "bytes per second each node may send through the embedded relay; 0 is no limit")
	f.IntVar(&o.maxConnsPerIP, "max-conns-per-ip", connlimit.DefaultPerAddr, "connections one source IP may hold open (raise it behind a reverse proxy; 0: no cap)")
	f.StringVar(&o.metricsListen, "metrics-listen", defaultServerMetrics, "address to serve Prometheus metrics on (docs/metrics.md); --metrics-listen= for none")
	f.StringVar(&o.tls.certFile, "tls-cert", "", "serve HTTPS with this PEM certificate (chain) file; needs --tls-key")
	f.StringVar(&o.tls.keyFile, "tls-key", "", "PEM private key of --tls-cert")
	f.StringSliceVar(&o.tls.acmeDomains, "acme-domain", nil, "serve HTTPS with certificates from Let's Encrypt for this public name (the --listen port must be its port 443)")
	f.StringVar(&o.tls.acmeEmail, "acme-email", "", "contact address given to the ACME CA")
	f.StringVar(&o.tls.acmeDirectory, "acme-directory", "", "ACME directory URL (default: Let's Encrypt)")
	f.StringVar(&o.oidc.issuer, "oidc-issuer", "", "OpenID Connect provider's issuer URL: people sign in to the console and approve node logins with it")
	f.StringVar(&o.oidc.clientID, "oidc-client-id", "", "client ID of this server at the provider")
	f.StringVar(&o.oidc.clientSecretFile, "oidc-client-secret-file", "", "file holding the client secret")
	f.StringSliceVar(&o.oidc.allowedDomains, "oidc-allowed-domains", nil, "let in only people with a verified email at these domains (or listed in the other --oidc-allowed-*)")
	f.StringSliceVar(&o.oidc.allowedUsers, "oidc-allowed-users", nil, "let in only these verified emails (or the other --oidc-allowed-*)")
	f.StringSliceVar(&o.oidc.allowedGroups, "oidc-allowed-groups", nil, "let in only members of these provider groups (or the other --oidc-allowed-*)")
	f.StringVar(&o.oidc.groupsClaim, "oidc-groups-claim", "groups", "ID token claim listing the person's groups")
	f.BoolVar(&o.verbose, "verbose", false, "log debug detail")
	return cmd
}

func runServer(ctx context.Context, g *globals, o serverOptions) error {
	log := newLogger(g.stderr, o.verbose)
	serverKey, relayMap, err := loadServerSetup(o)
	if err != nil {
		return err
	}
	dbURL := serverDBURL(o.db)
	st, err := openServerStore(ctx, dbURL, o.dataDir)
	if err != nil {
		return err
	}
	defer st.Close()
	tlsCfg, oidcLogin, err := serverFrontDoor(ctx, o, st)
	if err != nil {
		return err
	}
	// Servers sharing a PostgreSQL tell each other what they change
	// (docs/ha.md).
	feed, persist, closeFeed, err := serverFeed(dbURL, log.With("sub", "changefeed"))
	if err != nil {
		return err
	}
	defer closeFeed()
	// Nodes' reported health samples, a file per node, for `weft admin
	// nodes health` (docs/health.md).
	health, err := samples.OpenDir(filepath.Join(o.dataDir, "health"), samples.Options{})
	if err != nil {
		return err
	}
	ccfg := controlConfig(o, log)
	ccfg.Store, ccfg.Key, ccfg.RelayMap, ccfg.Health, ccfg.Feed, ccfg.PersistInterval = st, serverKey, relayMap, health, feed, persist
	logins := nodelogin.New(st) // interactive node logins, in the store: shared by every server on it
	ccfg.LoginsChanged = logins.Wake
	ctrl, err := control.New(ctx, ccfg)
	if err != nil {
		return err
	}
	defer ctrl.Close()
	mux, rel, err := serverMux(o, ctrl, log)
	if err != nil {
		return err
	}
	defer rel.Close()
	raw, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	ln := connlimit.New(raw, o.maxConnsPerIP, log.With("sub", "connlimit"))
	// The admin socket is open before HTTP is served, so once /healthz
	// answers, `weft admin` can reach the server too.
	adminPath := adminapi.SocketPath(o.dataDir)
	adminLn, err := adminapi.Listen(adminPath)
	if err != nil {
		ln.Close()
		return fmt.Errorf("server: admin socket: %w", err)
	}
	admin := mountWeb(mux, o, st, ctrl, health, oidcLogin, logins, log)
	hs := newHTTPServer(mux, log)
	hs.TLSConfig = tlsCfg
	sg := newServiceGroup(ctx)
	sg.Go(func(context.Context) error {
		if tlsCfg != nil {
			return hs.ServeTLS(ln, "", "")
		}
		return hs.Serve(ln)
	})
	sg.Go(func(ctx context.Context) error {
		if err := admin.ServeListener(ctx, adminLn, adminPath); err != nil {
			return fmt.Errorf("server: admin socket: %w", err)
		}
		return nil
	})
	for _, addr := range o.stunListen {
		goSTUN(sg, log.With("sub", "stun", "listen", addr), addr, "server: STUN on "+addr)
	}
	goServerMetrics(sg, o.metricsListen, st, ctrl, log)
	log.Info("weft server running", "listen", ln.Addr().String(), "url", o.serverURL, "key", serverKey.Public().String(), "data", o.dataDir,
		"db", describeDB(dbURL, o.dataDir))
	return sg.Wait(ctx, log, shutdownHTTP(hs), func(context.Context) { ctrl.Close() })
}

// controlConfig is the part of the control server's configuration that
// comes from the flags; runServer adds what it opened.
func controlConfig(o serverOptions, log *slog.Logger) control.Config {
	return control.Config{
		Logger:           log.With("sub", "control"),
		EphemeralTimeout: o.ephemeralTimeout,
		NodeKeyLifetime:  o.nodeKeyLifetime,
		RegisterRate:     o.registerRate,
		RegisterBurst:    o.registerBurst,
	}
}

// serverFrontDoor is how people reach the server: its TLS configuration
// (nil: plain HTTP) and its identity provider (nil: none), whose
// sign-ins in progress are kept in st.
func serverFrontDoor(ctx context.Context, o serverOptions, st store.Store) (*tls.Config, *oidclogin.Login, error) {
	tlsCfg, err := serverTLS(o.tls, o.dataDir)
	if err != nil {
		return nil, nil, err
	}
	oidcLogin, err := newSignIn(ctx, o.oidc, o.serverURL, st)
	return tlsCfg, oidcLogin, err
}

// mountWeb mounts on the server's port what people and scripts use: the
// web console, interactive node login (through the identity provider when
// one is set) and the REST API. It returns the admin API, which the admin
// socket serves too.
func mountWeb(mux *http.ServeMux, o serverOptions, st store.Store, ctrl *control.Server, health *samples.Dir,
	oidcLogin *oidclogin.Login, logins *nodelogin.Manager, log *slog.Logger) *adminapi.Server {
	// The web console at /admin/ (docs/console.md); the root sends
	// browsers there. It reads and changes the tailnet through the
	// admin API, called in process.
	cons := &console.Server{Sessions: st, BaseURL: o.serverURL, Logger: log.With("sub", "console")}
	// Interactive node login: weft up without a pre-auth key. An
	// approval here reaches a node waiting at another server through
	// the change feed.
	logins.Announce = ctrl.AnnounceLogin
	loginPages := &nodelogin.Handler{Logins: logins, BaseURL: o.serverURL, Logger: log.With("sub", "login")}
	if oidcLogin != nil {
		// Sign-in with the identity provider (docs/admin.md#sign-in-with-openid-connect).
		si := &signIn{login: oidcLogin, st: st, logins: logins, cons: cons, groupsChanged: ctrl.UserGroupsChanged, log: log.With("sub", "oidc")}
		si.register(mux)
		loginPages.SignIn = si.beginNode
		cons.SignInURL = oidcConsolePath
	}
	loginPages.Register(mux)
	admin := &adminapi.Server{Store: st, Notifier: ctrl, Online: ctrl.Online, Health: health, Console: cons, Logins: logins, Logger: log.With("sub", "admin")}
	cons.API = admin.APIHandler()
	mux.Handle(console.Prefix, cons)
	mux.HandleFunc("GET /{$}", console.RedirectRoot)
	// The REST API is the admin API behind API keys (docs/api.md).
	mux.Handle("/api/", &restapi.Handler{Store: st, Admin: admin.APIHandler(), Logger: log.With("sub", "api")})
	return admin
}

// loadServerSetup makes the data directory (0700) and loads what the
// server needs from it and from the flags: its key and its relay map.
func loadServerSetup(o serverOptions) (key.MachinePrivate, *wire.RelayMap, error) {
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return key.MachinePrivate{}, nil, fmt.Errorf("server: %w", err)
	}
	if err := os.Chmod(o.dataDir, 0o700); err != nil {
		return key.MachinePrivate{}, nil, fmt.Errorf("server: %w", err)
	}
	serverKey, err := control.LoadOrCreateKey(filepath.Join(o.dataDir, "server.key"))
	if err != nil {
		return key.MachinePrivate{}, nil, err
	}
	var relayMap *wire.RelayMap
	if o.relayMap != "" && len(o.relayAddrs) > 0 {
		return key.MachinePrivate{}, nil, usageError{errors.New(`server: --relay-addrs fills in the default relay map; with --relay-map, give each node's "ipv4" and "ipv6" in the map file`)}
	}
	if o.relayMap != "" {
		relayMap, err = control.LoadRelayMap(o.relayMap)
	} else {
		var ports []int
		ports, err = stunPorts(o.stunListen)
		if err == nil {
			relayMap, err = control.DefaultRelayMap(o.serverURL, ports...)
		}
		if err == nil && len(o.relayAddrs) > 0 {
			var addrs []netip.Addr
			for _, ip := range o.relayAddrs {
				a, _ := netip.AddrFromSlice(ip)
				addrs = append(addrs, a.Unmap())
			}
			err = control.AddRelayAddrs(relayMap, addrs)
		}
	}
	if err != nil {
		return key.MachinePrivate{}, nil, usageError{err}
	}
	return serverKey, relayMap, nil
}

// serverMux routes the server's HTTP paths: control at the root, the
// embedded relay, and the allow list standalone relays fetch. The relay
// must be closed when the server stops.
func serverMux(o serverOptions, ctrl *control.Server, log *slog.Logger) (*http.ServeMux, *relay.Server, error) {
	mux := http.NewServeMux()
	mux.Handle("/", ctrl.Handler())
	relaySecret, err := serverRelaySecret(o)
	if err != nil {
		return nil, nil, err
	}
	rel, err := mountRelay(mux, ctrl, o.relayRateLimit, log.With("sub", "relay"))
	if err != nil {
		return nil, nil, err
	}
	mux.Handle(relay.AllowListPath, relay.NewAllowListHandler(ctrl, relaySecret))
	return mux, rel, nil
}

// stunPorts returns the port of every --stun-listen address, in order.
func stunPorts(addrs []string) ([]int, error) {
	var ports []int
	for _, a := range addrs {
		_, p, err := net.SplitHostPort(a)
		if err != nil {
			return nil, fmt.Errorf("server: --stun-listen %q: %w", a, err)
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("server: --stun-listen %q: port must be 1-65535", a)
		}
		ports = append(ports, n)
	}
	return ports, nil
}

// serverRelaySecret is the secret standalone relays present to fetch the
// allow list: from --relay-secret-file, else from the environment, else
// DATA-DIR/relay.secret, made on first start.
func serverRelaySecret(o serverOptions) (string, error) {
	if o.relaySecretFile == "" {
		if o.relaySecretEnv != "" {
			if s := strings.TrimSpace(os.Getenv(o.relaySecretEnv)); s != "" {
				return s, nil
			}
		}
		return control.LoadOrCreateRelaySecret(filepath.Join(o.dataDir, "relay.secret"))
	}
	s, err := readSecret(o.relaySecretFile, "")
	if err != nil {
		return "", fmt.Errorf("server: %w", err)
	}
	if s == "" {
		return "", usageError{fmt.Errorf("server: relay secret file %s is empty", o.relaySecretFile)}
	}
	return s, nil
}
