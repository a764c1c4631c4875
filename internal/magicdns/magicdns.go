// Package magicdns is the node's own DNS resolver (MagicDNS), served on
// 100.100.100.100 and the tailnet's IPv6 resolver address. It answers the
// tailnet's names itself (A/AAAA for "busan" and "busan.<domain>", PTR for
// every tailnet address, the extra records), says NXDOMAIN for unknown
// names under the tailnet domain without asking anyone, sends names under a
// split-DNS suffix to that suffix's nameservers, and forwards everything
// else to the tailnet's nameservers or, when it names none, to the
// resolvers the OS had before weft.
//
// Handle is the whole resolver as one function from query bytes to reply
// bytes, so it can be fuzzed and tested without sockets; Serve and
// ServeTCP put it on the network. Forwarded answers are cached for their
// TTL (negative answers for the SOA's minimum, RFC 2308), and at most
// Options.MaxInflight upstream queries run at once: past that a query gets
// SERVFAIL at once rather than queueing behind a dead upstream.
//
// Upstream queries use Options.Dial, which the node leaves unmarked, so
// that with an exit node in use they go through the tunnel and leave from
// the exit node's side, like the rest of the node's traffic.
//
// Replies never grow past what the client can take: UDP replies are cut to
// 512 bytes or the client's EDNS0 size (at most 1232) with the TC bit set,
// so the client retries over TCP; a query that does not parse gets at most
// a 12-byte header back, never more than it sent.
package magicdns

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"weft/internal/wire"
)

// Defaults for Options.
const (
	DefaultMaxInflight = 64
	DefaultCacheSize   = 4096
	// DefaultTimeout bounds one upstream exchange.
	DefaultTimeout = 2 * time.Second
	// localTTL is the TTL of the resolver's own answers: short, so a
	// renamed or moved node is seen soon by caching stub resolvers.
	localTTL = 60
	// maxUDPSize is the largest UDP reply sent, whatever EDNS0 asks:
	// 1232 avoids IP fragmentation on any path (DNS flag day 2020).
	maxUDPSize = 1232
)

// Config is what the resolver answers and where it forwards; the node
// builds it from the peer map (see FromNetMap). The zero Config forwards
// nothing and answers nothing.
type Config struct {
	// Domain is the tailnet's base domain, canonical (lower case, no
	// trailing dot).
	Domain string
	// Hosts maps a node's name (a DNS label) to its tailnet addresses.
	Hosts map[string][]netip.Addr
	// ExtraRecords are answered as given.
	ExtraRecords []wire.DNSRecord
	// Routes maps a canonical domain suffix to its nameservers.
	Routes map[string][]netip.AddrPort
	// Upstreams answer everything else; none means SERVFAIL.
	Upstreams []netip.AddrPort
}

// Options configures a Resolver. The zero value works: no logging, the
// default limits, and upstream queries dialled with a plain net.Dialer.
type Options struct {
	// Logger receives the resolver's logs; nil discards them.
	Logger *slog.Logger
	// Dial opens a connection to an upstream nameserver ("udp" or "tcp");
	// nil means a plain net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// MaxInflight bounds concurrent upstream queries; zero means
	// DefaultMaxInflight.
	MaxInflight int
	// CacheSize bounds the cached upstream answers; zero means
	// DefaultCacheSize, negative disables the cache.
	CacheSize int
	// Timeout bounds one upstream exchange; zero means DefaultTimeout.
	Timeout time.Duration
	// Now is the clock for the cache; nil means time.Now.
	Now func() time.Time
}

// Resolver answers DNS queries. Its methods are safe for concurrent use.
type Resolver struct {
	opts     Options
	log      *slog.Logger
	cfg      atomic.Pointer[compiled]
	inflight chan struct{} // a token per running upstream query
	cache    *cache

	statsMu sync.Mutex // guards stats
	stats   Stats
}

// Stats counts what the resolver did, for `weft dns status`.
type Stats struct {
	Queries   uint64 `json:"queries"`
	Local     uint64 `json:"local"`     // answered from the tailnet's names and records
	Forwarded uint64 `json:"forwarded"` // sent upstream (cache misses)
	Cached    uint64 `json:"cached"`    // answered from the cache
	Failed    uint64 `json:"failed"`    // SERVFAIL: no upstream, all failed, or too many in flight
	Malformed uint64 `json:"malformed"`
}

// New returns a Resolver with an empty Config.
func New(opts Options) *Resolver {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxInflight <= 0 {
		opts.MaxInflight = DefaultMaxInflight
	}
	if opts.CacheSize == 0 {
		opts.CacheSize = DefaultCacheSize
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Dial == nil {
		var d net.Dialer
		opts.Dial = d.DialContext
	}
	r := &Resolver{
		opts:     opts,
		log:      opts.Logger,
		inflight: make(chan struct{}, opts.MaxInflight),
		cache:    newCache(opts.CacheSize),
	}
	r.cfg.Store(compile(Config{}))
	return r
}

// SetConfig replaces what the resolver answers and where it forwards. The
// cache is emptied when the upstreams or routes change, since its answers
// came from the old ones.
func (r *Resolver) SetConfig(c Config) {
	n := compile(c)
	old := r.cfg.Swap(n)
	if !sameForwarding(old, n) {
		r.cache.clear()
	}
}

// Config returns the configuration in use.
func (r *Resolver) Config() Config { return r.cfg.Load().src }

// Stats returns the counters so far.
func (r *Resolver) Stats() Stats {
	r.statsMu.Lock()
	defer r.statsMu.Unlock()
	return r.stats
}

func (r *Resolver) count(f func(*Stats)) {
	r.statsMu.Lock()
	f(&r.stats)
	r.statsMu.Unlock()
}

// canonical lower-cases a query name and drops its trailing dot.
func canonical(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}
