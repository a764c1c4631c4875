package changefeed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultChannel is the NOTIFY channel weft's servers share.
const DefaultChannel = "weft_changes"

// Reconnect backoff of the listening connection.
const (
	minBackoff = 250 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// Postgres is a Feed over PostgreSQL's LISTEN/NOTIFY: Publish sends a
// NOTIFY on one connection, Run LISTENs on another and reconnects by
// itself when the database goes away, delivering a resync once it is
// back. NOTIFY is delivered to every session listening when the sending
// transaction commits, so a server that was not listening (down, or its
// connection lost) resyncs instead of replaying.
type Postgres struct {
	cfg     *pgx.ConnConfig
	channel string
	origin  string
	log     *slog.Logger

	pubMu sync.Mutex // guards pub; held across a publish
	pub   *pgx.Conn  // the publishing connection, or nil

	errMu sync.Mutex // guards err
	err   error      // why Run is not listening; nil while it is

	received atomic.Int64 // events read from the database and queued
}

// NewPostgres returns a feed on the database at url (a libpq URL or
// key=value string, unix-socket hosts included) on DefaultChannel. It does
// not connect until Publish or Run; log may be nil.
func NewPostgres(url string, log *slog.Logger) (*Postgres, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("changefeed: database URL: %w", err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	cfg.RuntimeParams["application_name"] = "weft server changefeed"
	// A listener on a network that silently died would wait for ever:
	// keepalives notice within half a minute.
	d := &net.Dialer{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 10 * time.Second, Interval: 5 * time.Second, Count: 3}}
	cfg.DialFunc = d.DialContext
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Postgres{cfg: cfg, channel: DefaultChannel, origin: NewOrigin(), log: log,
		err: errors.New("changefeed: not listening yet")}, nil
}

// Origin implements Feed.
func (p *Postgres) Origin() string { return p.origin }

// Err implements Feed.
func (p *Postgres) Err() error {
	p.errMu.Lock()
	defer p.errMu.Unlock()
	return p.err
}

func (p *Postgres) setErr(err error) {
	p.errMu.Lock()
	p.err = err
	p.errMu.Unlock()
}

// Publish implements Feed. A failed publish drops the connection, so the
// next one dials afresh.
func (p *Postgres) Publish(ctx context.Context, ev Event) error {
	ev.Version, ev.Origin = Version, p.origin
	b, err := ev.Marshal()
	if err != nil {
		return err
	}
	p.pubMu.Lock()
	defer p.pubMu.Unlock()
	if p.pub == nil || p.pub.IsClosed() {
		c, err := pgx.ConnectConfig(ctx, p.cfg)
		if err != nil {
			return fmt.Errorf("changefeed: connecting to publish: %w", err)
		}
		p.pub = c
	}
	if _, err := p.pub.Exec(ctx, "SELECT pg_notify($1, $2)", p.channel, string(b)); err != nil {
		p.pub.Close(context.Background())
		p.pub = nil
		return fmt.Errorf("changefeed: publishing %s event: %w", ev.Kind, err)
	}
	return nil
}

// Close closes the publishing connection; Run ends with its context.
func (p *Postgres) Close() error {
	p.pubMu.Lock()
	defer p.pubMu.Unlock()
	if p.pub != nil {
		p.pub.Close(context.Background())
		p.pub = nil
	}
	return nil
}

// Run implements Feed: it listens, and after every (re)connection first
// delivers a resync, since events sent while it was away are gone.
func (p *Postgres) Run(ctx context.Context, h func([]Event)) error {
	backoff := minBackoff
	for ctx.Err() == nil {
		err := p.listen(ctx, h, func() { backoff = minBackoff })
		if ctx.Err() != nil {
			break
		}
		p.setErr(fmt.Errorf("changefeed: not listening to the database: %w", err))
		p.log.Warn("change feed lost the database; reconnecting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
	p.setErr(errors.New("changefeed: stopped"))
	return nil
}

// listen holds one listening connection until it fails or ctx ends;
// listening calls up once LISTEN succeeded. One goroutine reads the
// notifications into a queue as they come, whatever h is doing, and this
// one hands h what gathered: everything since its last call.
func (p *Postgres) listen(ctx context.Context, h func([]Event), up func()) error {
	c, err := pgx.ConnectConfig(ctx, p.cfg)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, "LISTEN "+pgx.Identifier{p.channel}.Sanitize()); err != nil {
		return err
	}
	up()
	p.setErr(nil)
	p.log.Info("change feed listening", "channel", p.channel)
	q := newQueue()
	q.push(Event{Version: Version, Kind: KindResync})
	rctx, stop := context.WithCancel(ctx)
	stopped := make(chan struct{})
	var rerr error
	go func() {
		defer close(stopped)
		rerr = p.receive(rctx, c, q)
	}()
	defer func() { stop(); <-stopped }() // before c is closed
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-stopped:
			return rerr
		case <-q.wake:
			if evs := q.take(); len(evs) > 0 {
				h(evs)
			}
		}
	}
}

// receive reads c's notifications into q until c fails or ctx ends.
func (p *Postgres) receive(ctx context.Context, c *pgx.Conn, q *queue) error {
	for {
		n, err := c.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		ev, err := Parse([]byte(n.Payload))
		if err != nil {
			// A newer server's event, or garbage: what changed is
			// unknown, so everything is re-read.
			p.log.Warn("change event not understood; resyncing", "err", err)
			q.push(Event{Version: Version, Kind: KindResync})
			continue
		}
		if ev.Origin != p.origin {
			q.push(ev)
			p.received.Add(1)
		}
	}
}
