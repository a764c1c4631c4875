package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/spf13/cobra"

	"weft/internal/agent"
	"weft/internal/controlclient"
	"weft/internal/healthlog"
	"weft/internal/httpproxy"
	"weft/internal/idlemem"
	"weft/internal/localapi"
	"weft/internal/metrics"
	"weft/internal/netstack"
	"weft/internal/netutil"
	"weft/internal/node"
	"weft/internal/nodestate"
	"weft/internal/osdns"
	"weft/internal/osnet"
	"weft/internal/sampler"
	"weft/internal/samples"
	"weft/internal/service"
	"weft/internal/socks5"
	"weft/internal/speedtest"
)

func newDaemonCmd(g *globals) *cobra.Command {
	var stateDir, tunName string
	var port uint16
	var verbose, noDataPlane bool
	var hs healthSampling
	var speedtestPort uint16
	var socksAddr, httpProxyAddr string
	var metricsListen, memoryLimit, caFile string
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "Run the node daemon (keeps this node in the tailnet)",
		Long: "Run the weft node daemon. It keeps the node's keys, the pinned server key and\n" +
			"the last peer map in --state-dir, answers the CLI on --socket, and reconnects\n" +
			"by itself after a restart if the node was up.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if hs.interval <= 0 || hs.retention <= 0 {
				return usageError{errors.New("daemon: --health-interval and --health-retention must be more than 0")}
			}
			mem, err := parseMemoryLimit(memoryLimit, os.Getenv)
			if err != nil {
				return usageError{err}
			}
			return runDaemon(cmd.Context(), g, daemonOptions{stateDir: stateDir, tun: tunName, port: port, verbose: verbose, noDataPlane: noDataPlane, health: hs, speedtestPort: speedtestPort,
				socks5: socksAddr, httpProxy: httpProxyAddr, metricsListen: metricsListen, memory: mem, caFile: caFile})
		},
	}
	defState, _ := service.Defaults(runtime.GOOS, os.Getenv)
	cmd.Flags().StringVar(&stateDir, "state-dir", defState, "directory for the node's keys and state (created 0700)")
	cmd.Flags().StringVar(&tunName, "tun", defaultTUN(), "name of the TUN device the daemon creates, or "+netstack.Name+" for a userspace network stack (no TUN, no root, no host changes)")
	cmd.Flags().StringVar(&socksAddr, "socks5-server", "", "address (host:port, keep it on localhost) of a SOCKS5 server that reaches the tailnet through this node")
	cmd.Flags().StringVar(&httpProxyAddr, "outbound-http-proxy-listen", "", "address (host:port, keep it on localhost) of an HTTP proxy that reaches the tailnet through this node")
	cmd.Flags().Uint16Var(&port, "port", 0, "UDP port for WireGuard and discovery; 0 binds the port the last run used (kept in the state dir), or a random free one")
	cmd.Flags().BoolVar(&verbose, "verbose", false, "log debug detail")
	cmd.Flags().StringVar(&caFile, "ca-file", os.Getenv(caFileEnv), "PEM certificates to trust for control servers' and relays' TLS besides the system's (a private CA); env "+caFileEnv)
	cmd.Flags().BoolVar(&noDataPlane, "no-data-plane", false, "run the control plane only: no TUN, no WireGuard, no host changes (tests, debugging)")
	cmd.Flags().StringVar(&memoryLimit, "memory-limit", "", "the daemon's memory limit, such as 48MiB, for small machines: the Go heap is kept under it and the WireGuard device holds fewer packets in flight, which costs throughput (docs/benchmarks.md); default "+sizeString(agent.DefaultMemoryLimit)+" with a kernel TUN, or $GOMEMLIMIT")
	cmd.Flags().StringVar(&metricsListen, "metrics-listen", "", "address such as 127.0.0.1:9543 to serve Prometheus metrics on (docs/metrics.md); off when empty")
	cmd.Flags().Uint16Var(&speedtestPort, "speedtest-port", speedtest.DefaultPort, "TCP port on this node's tailnet address where peers run weft speedtest; 0 turns it off")
	cmd.Flags().DurationVar(&hs.interval, "health-interval", sampler.DefaultInterval, "time between health samples (weft health stats)")
	cmd.Flags().DurationVar(&hs.retention, "health-retention", samples.DefaultRetention, "how long health samples are kept")
	cmd.Flags().StringSliceVar(&hs.probes, "health-probe", nil, "host:port whose TCP connection time each health sample measures, besides the control server (repeatable)")
	return cmd
}

type daemonOptions struct {
	stateDir, tun string
	port          uint16
	verbose       bool
	noDataPlane   bool
	health        healthSampling
	speedtestPort uint16
	// socks5 and httpProxy are the proxies' listen addresses ("" none).
	socks5, httpProxy string
	metricsListen     string
	// memory is the memory limit and the in-flight bound it buys.
	memory memoryPlan
	// caFile holds PEM certificates to trust besides the system's ("" none).
	caFile string
}

// caFileEnv names the environment variable that gives weft daemon's
// --ca-file a default.
const caFileEnv = "WEFT_CA_FILE"

// readCAFile reads and checks a --ca-file; "" reads nothing.
func readCAFile(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usageError{fmt.Errorf("--ca-file: %w", err)}
	}
	if _, err := netutil.TrustTLS(b); err != nil {
		return nil, usageError{fmt.Errorf("--ca-file %s: %w", path, err)}
	}
	return b, nil
}

// defaultTUN is the --tun default: a kernel TUN where weft has kernel
// support (Linux), userspace networking elsewhere.
func defaultTUN() string {
	if runtime.GOOS == "linux" {
		return osnet.DefaultTUNName
	}
	return netstack.Name
}

// userspace reports whether the daemon runs a userspace network stack
// instead of a kernel TUN.
func (o daemonOptions) userspace() bool { return o.tun == netstack.Name }

// kernel reports whether the daemon changes the host's network.
func (o daemonOptions) kernel() bool { return !o.noDataPlane && !o.userspace() }

// healthSampling is how the daemon takes health samples.
type healthSampling struct {
	interval, retention time.Duration
	probes              []string
}

func runDaemon(ctx context.Context, g *globals, o daemonOptions) error {
	started := time.Now()
	stateDir := o.stateDir
	o.memory.apply(o.kernel())
	level := slog.LevelInfo
	if o.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: level}))
	st, err := nodestate.Open(stateDir)
	if err != nil {
		return err
	}
	// One daemon per state dir and per socket: a second one would undo
	// the first one's host changes (an exit node's rules among them)
	// and take its socket. Both are checked before anything changes.
	release, err := st.Lock()
	if err != nil {
		return err
	}
	defer release()
	ln, err := localapi.Listen(g.socket)
	if err != nil {
		return err
	}
	defer ln.Close()
	tunnel := &netstack.Dialer{}
	newEngine, unclean, err := prepareDataPlane(o, st, tunnel, log)
	if err != nil {
		return err
	}
	history, err := openHistory(stateDir, log)
	if err != nil {
		return err
	}
	d, err := newNodeDaemon(o, st, newEngine, history, log)
	if err != nil {
		return err
	}
	defer d.Close()
	store, smp, err := startSampler(o, d, log.With("sub", "samples"))
	if err != nil {
		return err
	}
	if err := serveNodeMetrics(ctx, o.metricsListen, d, store, log); err != nil {
		return err
	}
	d.Start()
	if err := startProxies(ctx, o, tunnel, log); err != nil {
		return err
	}
	if !o.noDataPlane {
		if o.speedtestPort != 0 && !o.userspace() {
			go d.ServeSpeedtest(ctx, int(o.speedtestPort))
		}
		go d.RunExitFailover(ctx)
	}
	go healthlog.Watch(ctx, history, healthInterval, d.Status, log.With("sub", "health"))
	go smp.Run(ctx)
	if p, err := st.LoadPrefs(); err == nil && p.WantUp && p.Registered {
		go recordRecovery(ctx, d, history, started, unclean, log)
	}
	log.Info("weft daemon running", "state", stateDir, "socket", g.socket)
	err = localapi.Serve(ctx, ln, localapi.Handler(daemonBackend{d, history, store}, log.With("sub", "localapi")))
	log.Info("daemon stopping")
	return err
}

// newNodeDaemon makes the node daemon on st, recording its health events
// in history.
func newNodeDaemon(o daemonOptions, st *nodestate.Dir, newEngine func(node.EngineParams) (node.Engine, error), history *healthlog.Log, log *slog.Logger) (*node.Daemon, error) {
	caPEM, err := readCAFile(o.caFile)
	if err != nil {
		return nil, err
	}
	dcfg := node.DaemonConfig{State: st, Logger: log.With("sub", "control"), NewEngine: newEngine, CAPEM: caPEM,
		OnHealthEvent: func(ev localapi.HealthEvent) {
			if err := history.Add(ev); err != nil {
				log.Warn("health history not recorded", "err", err)
			}
		}}
	if o.kernel() {
		// The control channel must bypass an exit node like all of
		// weft's own traffic, or it would loop into the tunnel.
		dcfg.Tune = func(co *controlclient.Options) { co.DialContext = osnet.Dialer(osnet.DefaultMark).DialContext }
	}
	return node.NewDaemon(dcfg)
}

// healthFile is the health history's file in the state dir, and
// healthInterval how often the daemon looks for changes to record;
// samplesFile holds the health samples.
const (
	healthFile     = "health.jsonl"
	healthInterval = 5 * time.Second
	samplesFile    = "samples.log"
)

// prepareDataPlane removes what an earlier run left on the host and
// returns the data plane's maker (nil with --no-data-plane) and whether
// anything was left, which means the last run did not stop cleanly.
func prepareDataPlane(o daemonOptions, st *nodestate.Dir, tunnel *netstack.Dialer, log *slog.Logger) (func(node.EngineParams) (node.Engine, error), bool, error) {
	if o.noDataPlane {
		return nil, false, nil
	}
	if o.userspace() {
		// Userspace mode changes nothing on the host, but a kernel-mode
		// run on this state dir that was killed may have left
		// resolv.conf pointing at a resolver that is gone: put it back.
		// (A leftover address on lo is harmless once nothing points at
		// it; the next kernel-mode start removes it.)
		if err := osdns.Recover(o.stateDir); err != nil {
			log.Error("restoring DNS after an earlier run", "sub", "dns", "err", err)
		}
		return engineMaker(log, o, st, tunnel, nil), false, nil
	}
	left, _ := osnet.Leftovers(osnet.Options{TUNName: o.tun})
	// A daemon that crashed may have left policy rules, routes or
	// nftables state behind; remove them before creating anything,
	// unless a live daemon (with another state dir) owns them.
	err := osnet.Cleanup(osnet.Options{TUNName: o.tun, Logger: log.With("sub", "cleanup")})
	if errors.Is(err, osnet.ErrInUse) {
		return nil, false, err
	}
	if err != nil {
		log.Warn("cleaning up after an earlier run", "err", err)
	}
	return engineMaker(log, o, st, tunnel, osDNS(o.stateDir, o.tun, log.With("sub", "dns"))), len(left) > 0, nil
}

// osDNS undoes what a daemon that did not exit cleanly left of its DNS
// changes, then returns the manager that points the OS at weft's resolver
// from now on; nil (the OS's DNS is left alone) when this machine's DNS
// cannot be managed, which is logged.
func osDNS(stateDir, tun string, log *slog.Logger) osdns.Manager {
	if err := osdns.Recover(stateDir); err != nil {
		log.Error("restoring DNS after an earlier run", "err", err)
	}
	if err := osdns.RemoveLoopback(); err != nil {
		log.Warn("removing the resolver's address left by an earlier run", "err", err)
	}
	m, err := osdns.New(osdns.Options{StateDir: stateDir, Link: tun})
	if err != nil {
		log.Warn("MagicDNS will not change this machine's DNS settings", "err", err)
		return nil
	}
	return m
}

// recordRecovery measures how long the daemon, started again with the
// node up, takes to reconnect and reach a peer directly, and records it
// in the health history (`weft health` shows the last one).
func recordRecovery(ctx context.Context, d *node.Daemon, history *healthlog.Log, started time.Time, unclean bool, log *slog.Logger) {
	ev, ok := healthlog.MeasureRecovery(ctx, d, started, unclean)
	if !ok {
		return
	}
	log.Info("recovered", "registered_ms", ev.Recovery.RegisteredMS, "direct_ms", ev.Recovery.DirectMS, "unclean", unclean)
	if err := history.Add(ev); err != nil {
		log.Warn("health history not recorded", "err", err)
	}
}

// serveNodeMetrics serves the daemon's Prometheus metrics on addr until
// ctx ends; an empty addr serves none.
func serveNodeMetrics(ctx context.Context, addr string, d *node.Daemon, store *samples.Store, log *slog.Logger) error {
	if addr == "" {
		return nil
	}
	reg, err := metrics.NewRegistry(&metrics.Node{Status: d.Status, Latest: store.Latest})
	if err != nil {
		return err
	}
	ln, err := metrics.Listen(addr)
	if err != nil {
		return err
	}
	log.Info("serving metrics", "addr", ln.Addr().String())
	go func() {
		if err := metrics.Serve(ctx, ln, reg, log.With("sub", "metrics")); err != nil {
			log.Warn("metrics server stopped", "err", err)
		}
	}()
	return nil
}

// openHistory opens the health history in the state dir.
func openHistory(stateDir string, log *slog.Logger) (*healthlog.Log, error) {
	history, err := healthlog.Open(filepath.Join(stateDir, healthFile), healthlog.DefaultKeep)
	if err != nil {
		return nil, err
	}
	if n := history.Damaged(); n > 0 {
		log.Warn("health history: damaged lines skipped", "lines", n)
	}
	return history, nil
}

// startSampler opens the samples in the state dir and makes the sampler
// that adds to them.
func startSampler(o daemonOptions, d *node.Daemon, log *slog.Logger) (*samples.Store, *sampler.Sampler, error) {
	store, err := samples.Open(filepath.Join(o.stateDir, samplesFile), samples.Options{Retention: o.health.retention})
	if err != nil {
		return nil, nil, err
	}
	if n := store.Damaged(); n > 0 {
		log.Warn("health samples: damaged records skipped", "records", n)
	}
	cfg := sampler.Config{Source: d, Store: store, Interval: o.health.interval, Probes: o.health.probes, Report: d.ReportHealth, Logger: log}
	if o.kernel() {
		cfg.Dial = osnet.Dialer(osnet.DefaultMark).DialContext
		// Peers serve the speed test there (most on the default port);
		// a refusal times the round trip as well.
		cfg.TunnelPort = speedtest.DefaultPort
	}
	smp, err := sampler.New(cfg)
	return store, smp, err
}

// daemonBackend is what the local API serves: the daemon, and the health
// history and samples kept beside it.
type daemonBackend struct {
	*node.Daemon
	history *healthlog.Log
	samples *samples.Store
}

// HealthStats implements localapi.StatsKeeper.
func (b daemonBackend) HealthStats(_ context.Context, req localapi.HealthStatsRequest) (*localapi.HealthStats, error) {
	f := samples.Filter{Peer: req.Peer}
	if req.Since > 0 {
		f.Since = time.Now().Add(-req.Since)
	}
	return &localapi.HealthStats{Metrics: samples.Summarize(b.samples.Since(f.Since), f)}, nil
}

// HealthHistory implements localapi.HistoryKeeper.
func (b daemonBackend) HealthHistory(context.Context) ([]localapi.HealthEvent, error) {
	return b.history.Events(), nil
}

// engineMaker returns the daemon's hook that starts the data plane each
// time the node goes up. Without --port it binds the UDP port the last run
// used (saved in the state dir), so that the NAT's mapping and the
// endpoints peers cached for this node stay valid across a restart, and
// falls back to a random port when that one is taken.
//
// In userspace mode each data plane gets a fresh network stack, which
// tunnel (the proxies' dialer) uses while it runs.
//
// dns points the OS's DNS at weft's resolver; nil leaves it alone (always
// in userspace mode, which changes nothing on the host).
func engineMaker(log *slog.Logger, o daemonOptions, st *nodestate.Dir, tunnel *netstack.Dialer, dns osdns.Manager) func(node.EngineParams) (node.Engine, error) {
	return func(p node.EngineParams) (node.Engine, error) {
		cfg := agent.Config{
			Logger:    log.With("sub", "agent"),
			NodeKey:   p.NodeKey,
			DiscoKey:  p.DiscoKey,
			TUNName:   o.tun,
			Port:      o.port,
			Hostinfo:  p.Hostinfo,
			Publisher: p.Client,
			DNS:       dns,
			InFlight:  o.memory.inFlight,
			TLSConfig: p.TLSConfig,
			Collector: idlemem.Runtime{},
		}
		if cfg.Port == 0 {
			cfg.Port = st.Port()
		}
		e, err := newAgent(cfg, o, log)
		if err != nil && cfg.Port != o.port {
			log.Info("the last run's UDP port did not bind; taking another", "port", cfg.Port, "err", err)
			cfg.Port = o.port
			e, err = newAgent(cfg, o, log)
		}
		if err != nil {
			// Not a typed nil in the interface: the daemon checks
			// for nil.
			return nil, err
		}
		if o.port == 0 {
			if err := st.SavePort(e.Port()); err != nil {
				log.Warn("saving the UDP port", "err", err)
			}
		}
		if ns, ok := e.Router().(*netstack.Stack); ok {
			// No resolver listens in userspace mode: the proxies
			// resolve MagicDNS names from the engine's map.
			ns.SetNames(e.LookupName)
			tunnel.Set(ns)
			return stackEngine{e, tunnel, ns}, nil
		}
		return e, nil
	}
}

// newAgent starts a data plane; in userspace mode on a network stack of
// its own, which it owns.
func newAgent(cfg agent.Config, o daemonOptions, log *slog.Logger) (*agent.Engine, error) {
	if o.userspace() {
		ns, err := netstack.New(netstack.Options{Logger: log.With("sub", "netstack")})
		if err != nil {
			return nil, err
		}
		cfg.Router = ns
	}
	return agent.New(cfg)
}

// stackEngine is a userspace-mode data plane: closing it also takes its
// stack away from the proxies.
type stackEngine struct {
	*agent.Engine
	tunnel *netstack.Dialer
	stack  *netstack.Stack
}

func (e stackEngine) Close() error {
	e.tunnel.Clear(e.stack)
	return e.Engine.Close()
}

// startProxies starts the SOCKS5 server and the HTTP proxy asked for;
// they dial through tunnel until ctx ends.
func startProxies(ctx context.Context, o daemonOptions, tunnel *netstack.Dialer, log *slog.Logger) error {
	if o.socks5 != "" {
		ln, err := net.Listen("tcp", o.socks5)
		if err != nil {
			return fmt.Errorf("daemon: SOCKS5 server: %w", err)
		}
		srv := &socks5.Server{Dial: tunnel.DialContext, Logger: log.With("sub", "socks5")}
		go srv.Serve(ctx, ln)
		log.Info("SOCKS5 server listening", "addr", ln.Addr())
	}
	if o.httpProxy != "" {
		ln, err := net.Listen("tcp", o.httpProxy)
		if err != nil {
			return fmt.Errorf("daemon: HTTP proxy: %w", err)
		}
		go httpproxy.Serve(ctx, ln, tunnel.DialContext, log.With("sub", "httpproxy"))
		log.Info("HTTP proxy listening", "addr", ln.Addr())
	}
	return nil
}
