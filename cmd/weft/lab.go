//go:build linux

package main

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"weft/internal/netlab"
	"weft/internal/netlab/delayline"
)

// labDirRoot holds one directory per lab (state file and logs).
const labDirRoot = "/run/weft-lab"

// labOpts are the flags every `weft lab` subcommand shares.
type labOpts struct {
	name string
}

var labName = regexp.MustCompile(`^[a-z0-9]{1,16}$`)

// config returns where the lab called o.name lives. Lab names have no
// dashes, so no lab's namespace prefix is a prefix of another's.
func (o *labOpts) config() (netlab.Config, error) {
	if !labName.MatchString(o.name) {
		return netlab.Config{}, usageError{fmt.Errorf("lab name %q: want 1-16 of [a-z0-9]", o.name)}
	}
	return netlab.Config{Prefix: "wl-" + o.name + "-", Dir: filepath.Join(labDirRoot, o.name)}, nil
}

func (o *labOpts) open() (*netlab.Lab, error) {
	cfg, err := o.config()
	if err != nil {
		return nil, err
	}
	l, err := netlab.Open(cfg.Dir, nil)
	if errors.Is(err, netlab.ErrNoLab) {
		return nil, fmt.Errorf("lab %q is not up (start it with 'weft lab up seed')", o.name)
	}
	return l, err
}

func newLabCmd(g *globals) *cobra.Command {
	o := &labOpts{}
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Build and drive a network-namespace lab with NAT routers",
		Long: `weft lab builds a small internet out of Linux network namespaces: public hosts,
NAT routers of a chosen kind (easy, hard, udp-blocked) with hosts behind them,
per-link delay and rate caps. It needs root and nothing else; it never touches
the root namespace's links, routes, DNS or firewall. See docs/lab.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	cmd.PersistentFlags().StringVar(&o.name, "name", "weft", "name of the lab (several can run side by side)")
	cmd.AddCommand(
		newLabUpCmd(g, o),
		newLabDownCmd(g, o),
		newLabStatusCmd(g, o),
		newLabExecCmd(g, o),
		newLabPingCmd(g, o),
		newLabWireCmd(g),
		newLabWhoamiCmd(g),
	)
	return cmd
}

// labUpFlags are the per-site flags of `weft lab up`.
type labUpFlags struct {
	nat, delay, rate, mtu, udpTimeout, ipv6 []string
}

// topology builds the named topology and applies the per-site flags to it.
// Every mistake is a usage error naming the flag.
func (f *labUpFlags) topology(name string) (netlab.Topology, error) {
	mk, ok := netlab.Topologies()[name]
	if !ok {
		var names []string
		for n := range netlab.Topologies() {
			names = append(names, n)
		}
		sort.Strings(names)
		return netlab.Topology{}, usageError{fmt.Errorf("unknown topology %q (known: %s)", name, strings.Join(names, ", "))}
	}
	t := mk()
	var errs []error
	for _, sf := range f.siteFlags() {
		for _, v := range sf.vals {
			site, val, ok := strings.Cut(v, "=")
			if !ok || site == "" || val == "" {
				errs = append(errs, fmt.Errorf("--%s %q: want SITE=VALUE, e.g. --%s r-busan=...", sf.name, v, sf.name))
				continue
			}
			if err := sf.set(&t, site, val); err != nil {
				errs = append(errs, fmt.Errorf("--%s %q: %w", sf.name, v, err))
			}
		}
	}
	errs = append(errs, t.Validate())
	if err := errors.Join(errs...); err != nil {
		return t, usageError{err}
	}
	return t, nil
}

// siteFlag is one repeatable --NAME SITE=VALUE flag of `weft lab up`:
// the values given, and set, which parses one value and applies it to
// the site (the topology checks the site and the range in Validate).
type siteFlag struct {
	name string
	vals []string
	set  func(t *netlab.Topology, site, val string) error
}

// siteFlags lists the per-site flags in the order their mistakes are
// reported.
func (f *labUpFlags) siteFlags() []siteFlag {
	whole := func(val, msg string, set func(int)) error {
		n, err := strconv.Atoi(val)
		if err != nil {
			return errors.New(msg)
		}
		set(n)
		return nil
	}
	return []siteFlag{
		{"nat", f.nat, func(t *netlab.Topology, site, val string) error {
			t.SetNAT(site, netlab.NATKind(val))
			return nil
		}},
		{"delay", f.delay, func(t *netlab.Topology, site, val string) error {
			return whole(strings.TrimSuffix(val, "ms"), "delay is whole milliseconds", func(ms int) { t.SetDelay(site, ms) })
		}},
		{"rate", f.rate, func(t *netlab.Topology, site, val string) error {
			return whole(val, "rate is whole Mbit/s", func(mbit int) { t.SetRate(site, mbit) })
		}},
		{"mtu", f.mtu, func(t *netlab.Topology, site, val string) error {
			return whole(val, "MTU is whole bytes", func(mtu int) { t.SetMTU(site, mtu) })
		}},
		{"udp-timeout", f.udpTimeout, func(t *netlab.Topology, site, val string) error {
			d, err := time.ParseDuration(val)
			if err != nil {
				return errors.New("want a duration such as 30s")
			}
			t.SetUDPTimeout(site, d)
			return nil
		}},
		{"ipv6", f.ipv6, func(t *netlab.Topology, site, val string) error {
			m, err := netlab.ParseIPv6Mode(val)
			if err != nil {
				return err
			}
			t.SetIPv6(site, m)
			return nil
		}},
	}
}

func newLabUpCmd(g *globals, o *labOpts) *cobra.Command {
	f := &labUpFlags{}
	cmd := &cobra.Command{
		Use:   "up TOPOLOGY",
		Short: "Build a lab (topology: seed, multihomed or double-nat), replacing an earlier one of the same name",
		Long: `Build a lab. Topology "seed": router r-busan (easy NAT) with host busan, router
r-fukuoka (easy NAT) with hosts mac and pc, public hosts ctrl (203.0.113.10) and
web (203.0.113.80, answering GET / with the caller's IP). "multihomed": the
seed with r-fukuoka on 198.51.100.22 and ctrl on both public subnets.
"double-nat": the seed with r-fukuoka behind a carrier's CGNAT router isp
(203.0.113.40; LAN 100.64.22.0/24, r-fukuoka's WAN 100.64.22.10).

A SITE is a router name (r-busan) or its site (busan). NAT kinds: easy, hard,
udp-blocked. --delay adds MS in each direction of the router's WAN link, so
--delay r-busan=12 --delay r-fukuoka=13 gives 50 ms between the two homes.`,
		Example: "  weft lab up seed --nat r-busan=hard --delay r-busan=12 --delay r-fukuoka=13 --rate r-fukuoka=20",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := o.config()
			if err != nil {
				return err
			}
			topo, err := f.topology(args[0])
			if err != nil {
				return err
			}
			if os.Geteuid() != 0 {
				return errors.New("weft lab up needs root (it creates network namespaces); run it with sudo")
			}
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("lab up: find the weft binary: %w", err)
			}
			cfg.Helper = []string{self, "lab"}
			// A Ctrl-C cancels ctx; Up then removes what it built.
			l, err := netlab.Up(cmd.Context(), cfg, topo)
			if err != nil {
				return fmt.Errorf("lab up: %w", err)
			}
			printLabStatus(g, l)
			fmt.Fprint(g.stdout, labHints(o.name))
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&f.nat, "nat", nil, "SITE=KIND: NAT kind of a router (easy, hard, udp-blocked); repeatable")
	cmd.Flags().StringArrayVar(&f.delay, "delay", nil, "SITE=MS: one-way delay on a router's WAN link; repeatable")
	cmd.Flags().StringArrayVar(&f.rate, "rate", nil, "SITE=MBIT: rate cap on a router's WAN link, each way; repeatable")
	cmd.Flags().StringArrayVar(&f.mtu, "mtu", nil, "SITE=BYTES: MTU of the site's access line (1280-1500; 1492 is PPPoE's); repeatable")
	cmd.Flags().StringArrayVar(&f.ipv6, "ipv6", nil, "SITE=MODE: the site's IPv6: none, dual (dual stack) or only (no IPv4); repeatable")
	cmd.Flags().StringArrayVar(&f.udpTimeout, "udp-timeout", nil, "SITE=DURATION: how long a router keeps an idle UDP mapping (e.g. 30s); repeatable")
	return cmd
}

// labHints are the commands `weft lab up` suggests, each naming the lab,
// so that they reach this lab and not the default one. Lab names need no
// quoting (labOpts.config checks them).
func labHints(name string) string {
	n := "--name " + name
	return fmt.Sprintf("\nlab %q is up. Try:\n  weft lab %s exec mac -- curl -s http://203.0.113.80/\n  weft lab %s ping busan ctrl\n  weft lab %s down\n", name, n, n, n)
}

func newLabDownCmd(g *globals, o *labOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "Stop a lab's processes and remove its namespaces",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := o.config()
			if err != nil {
				return err
			}
			if os.Geteuid() != 0 {
				return errors.New("weft lab down needs root; run it with sudo")
			}
			// Remove also finds namespaces of a run that crashed before
			// writing its state file.
			if err := netlab.Remove(cfg.Dir, cfg.Prefix); err != nil {
				return fmt.Errorf("lab down: %w", err)
			}
			fmt.Fprintf(g.stdout, "lab %q is down\n", o.name)
			return nil
		},
	}
}

func newLabStatusCmd(g *globals, o *labOpts) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "List a lab's nodes: namespace, LAN and WAN addresses",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := o.open()
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(g.stdout, struct {
					Name      string            `json:"name"`
					Dir       string            `json:"dir"`
					Nodes     []*netlab.Node    `json:"nodes"`
					Processes []*netlab.Process `json:"processes"`
				}{o.name, l.Dir(), l.Nodes(), l.Processes()})
			}
			printLabStatus(g, l)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

func printLabStatus(g *globals, l *netlab.Lab) {
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tKIND\tNAMESPACE\tLAN\tWAN\tLINK")
	for _, n := range l.Nodes() {
		var lans, wans []string
		if n.LANAddr.IsValid() {
			lans = append(lans, netip.PrefixFrom(n.LANAddr, n.LAN.Bits()).String())
		}
		if n.LANAddr6.IsValid() {
			lans = append(lans, netip.PrefixFrom(n.LANAddr6, n.LAN6.Bits()).String())
		}
		if n.WANAddr.IsValid() {
			wans = append(wans, n.WANAddr.String())
		}
		if n.WANAddr6.IsValid() {
			wans = append(wans, n.WANAddr6.String())
		}
		lan, wan, link := cmp.Or(strings.Join(lans, ","), "-"), cmp.Or(strings.Join(wans, ","), "-"), ""
		switch n.Kind {
		case netlab.KindRouter:
			link = "nat=" + string(n.NAT)
			if n.DelayMS > 0 {
				link += fmt.Sprintf(" delay=%dms", n.DelayMS)
			}
			if n.RateMbit > 0 {
				link += fmt.Sprintf(" rate=%dMbit", n.RateMbit)
			}
		case netlab.KindHost:
			link = "via " + n.Router
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.Kind, n.NS, lan, wan, link)
	}
	tw.Flush()
}

func newLabExecCmd(g *globals, o *labOpts) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "exec NODE -- CMD [ARG...]",
		Short: "Run a command inside a lab node's namespace",
		Long:  "Run CMD inside NODE's network namespace with this terminal's stdin, stdout and stderr; its exit status becomes weft's.",
		Example: "  weft lab exec mac -- curl -s http://203.0.113.80/\n" +
			"  weft lab exec r-busan -- ip addr",
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := o.open()
			if err != nil {
				return err
			}
			n := l.Node(args[0])
			if n == nil {
				return usageError{fmt.Errorf("no node %q in lab %q (see 'weft lab status')", args[0], o.name)}
			}
			argv := args[1:]
			if argv[0] == "--" {
				argv = argv[1:]
			}
			if len(argv) == 0 {
				return usageError{errors.New("lab exec: no command after --")}
			}
			c := exec.Command(argv[0], argv[1:]...)
			c.Stdin, c.Stdout, c.Stderr = os.Stdin, g.stdout, g.stderr
			if err := n.Command(c)(); err != nil {
				return fmt.Errorf("lab exec: %w", err)
			}
			// A Ctrl-C reaches the command through the terminal; weft
			// itself ignores it (its context is cancelled) and waits.
			err = c.Wait()
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code := ee.ExitCode()
				if code < 0 {
					code = 128 + 9 // killed by a signal
				}
				return exitError{code}
			}
			return err
		},
	}
	// Everything after NODE belongs to CMD, flags included.
	cmd.Flags().SetInterspersed(false)
	return cmd
}

func newLabPingCmd(g *globals, o *labOpts) *cobra.Command {
	var count int
	var interval time.Duration
	cmd := &cobra.Command{
		Use:     "ping FROM TO",
		Short:   "ICMP-ping from one lab node to another node or an IPv4 address",
		Example: "  weft lab ping busan ctrl -c 5",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if count < 1 || count > 1000 {
				return usageError{fmt.Errorf("-c %d: want 1 to 1000", count)}
			}
			l, err := o.open()
			if err != nil {
				return err
			}
			from := l.Node(args[0])
			if from == nil {
				return usageError{fmt.Errorf("no node %q in lab %q", args[0], o.name)}
			}
			dst, err := netip.ParseAddr(args[1])
			if err != nil {
				to := l.Node(args[1])
				if to == nil || !to.Addr().IsValid() {
					return usageError{fmt.Errorf("%q is neither a node with an address nor an IPv4 address", args[1])}
				}
				dst = to.Addr()
			}
			rtts, err := from.Ping(cmd.Context(), dst, count, interval, 2*time.Second)
			var sum, lo, hi time.Duration
			for i, r := range rtts {
				fmt.Fprintf(g.stdout, "reply from %v: seq=%d time=%.2f ms\n", dst, i, ms(r))
				sum += r
				if i == 0 || r < lo {
					lo = r
				}
				hi = max(hi, r)
			}
			if len(rtts) > 0 {
				fmt.Fprintf(g.stdout, "%s -> %v: %d replies, rtt min/avg/max = %.2f/%.2f/%.2f ms\n",
					from.Name, dst, len(rtts), ms(lo), ms(sum/time.Duration(len(rtts))), ms(hi))
			}
			return err
		},
	}
	cmd.Flags().IntVarP(&count, "count", "c", 4, "number of echo requests")
	cmd.Flags().DurationVarP(&interval, "interval", "i", 200*time.Millisecond, "time between requests")
	return cmd
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// newLabWireCmd is the delay line helper that `lab up` starts in the
// internet namespace with two inherited packet sockets.
func newLabWireCmd(g *globals) *cobra.Command {
	var fdA, fdB int
	var delay, extra4, extra6 time.Duration
	var loss int
	cmd := &cobra.Command{
		Use:    "wire --fd-a N --fd-b N --delay D [--loss PERCENT] [--extra-ipv4 D] [--extra-ipv6 D]",
		Short:  "Delay line between two inherited packet sockets (started by lab up)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if fdA < 3 || fdB < 3 || fdA == fdB {
				return usageError{errors.New("--fd-a and --fd-b must be two inherited descriptors (3 and up)")}
			}
			a, err := delayline.FromFD(fdA, "a")
			if err != nil {
				return err
			}
			b, err := delayline.FromFD(fdB, "b")
			if err != nil {
				return err
			}
			return delayline.Run(cmd.Context(), delayline.Config{A: a, B: b, Delay: delay, ExtraIPv4: extra4, ExtraIPv6: extra6,
				LossPercent: loss, Logger: labLogger(g)})
		},
	}
	cmd.Flags().IntVar(&fdA, "fd-a", 0, "descriptor of one side's packet socket")
	cmd.Flags().IntVar(&fdB, "fd-b", 0, "descriptor of the other side's packet socket")
	cmd.Flags().DurationVar(&delay, "delay", 0, "how long to hold each frame")
	cmd.Flags().IntVar(&loss, "loss", 0, "percent of frames to drop at random, each way")
	cmd.Flags().DurationVar(&extra4, "extra-ipv4", 0, "how much longer to hold IPv4 frames")
	cmd.Flags().DurationVar(&extra6, "extra-ipv6", 0, "how much longer to hold IPv6 frames")
	return cmd
}

// newLabWhoamiCmd is the "what is my IP" HTTP service of the lab's web host.
func newLabWhoamiCmd(g *globals) *cobra.Command {
	var fd int
	var listen string
	cmd := &cobra.Command{
		Use:    "whoami (--fd N | --listen ADDR)",
		Short:  "Serve GET / with the caller's IP (started by lab up)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var ln net.Listener
			var err error
			switch {
			case fd >= 3:
				ln, err = net.FileListener(os.NewFile(uintptr(fd), "whoami"))
			case listen != "":
				ln, err = net.Listen("tcp", listen)
			default:
				return usageError{errors.New("want --fd (an inherited listener) or --listen ADDR")}
			}
			if err != nil {
				return fmt.Errorf("whoami: %w", err)
			}
			labLogger(g).Info("whoami serving", "addr", ln.Addr().String())
			return netlab.ServeWhoami(cmd.Context(), ln)
		},
	}
	cmd.Flags().IntVar(&fd, "fd", 0, "inherited listening socket")
	cmd.Flags().StringVar(&listen, "listen", "", "address to listen on instead, e.g. :80")
	return cmd
}

// labLogger writes the helpers' lines to stderr, which lab up points at
// their log files.
func labLogger(g *globals) *slog.Logger {
	return slog.New(slog.NewTextHandler(g.stderr, nil))
}
