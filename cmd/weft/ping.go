package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"weft/internal/localapi"
)

type pingOptions struct {
	count       int
	untilDirect bool
	timeout     time.Duration
	interval    time.Duration
}

func newPingCmd(g *globals) *cobra.Command {
	var o pingOptions
	cmd := &cobra.Command{
		Use:   "ping [-c N] [--until-direct] PEER",
		Short: "Ping a peer over weft's discovery protocol and show the path",
		Long: "Send disco pings to PEER (a name or tailnet address) and print one line per\n" +
			"pong, naming the path it took (the relay or a direct address) and the round\n" +
			"trip. Exits non-zero if no pong came back.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.check(); err != nil {
				return usageError{err}
			}
			return runPing(cmd.Context(), g, args[0], o)
		},
	}
	f := cmd.Flags()
	f.IntVarP(&o.count, "count", "c", 10, "number of pings")
	f.BoolVar(&o.untilDirect, "until-direct", false, "stop at the first pong over a direct path; fail if none")
	f.DurationVar(&o.timeout, "timeout", 5*time.Second, "how long to wait for each pong")
	f.DurationVar(&o.interval, "interval", 500*time.Millisecond, "time between pings")
	return cmd
}

// check refuses values that cannot mean anything.
func (o pingOptions) check() error {
	switch {
	case o.count < 1:
		return errors.New("ping: -c must be at least 1")
	case o.interval < 0:
		return fmt.Errorf("ping: --interval %v is negative; give the time between pings, like 500ms", o.interval)
	case o.timeout <= 0:
		return fmt.Errorf("ping: --timeout %v must be more than zero, like 5s", o.timeout)
	}
	return nil
}

func runPing(ctx context.Context, g *globals, peer string, o pingOptions) error {
	c := &localapi.Client{Socket: g.socket}
	pongs := 0
	var lastErr error
	for i := 0; i < o.count; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(o.interval):
			}
		}
		pctx, cancel := context.WithTimeout(ctx, o.timeout)
		res, err := c.Ping(pctx, localapi.PingRequest{Peer: peer})
		cancel()
		if err != nil {
			if errors.Is(err, localapi.ErrDaemonNotRunning) || errors.Is(err, localapi.ErrPermanent) {
				// Asking again would say the same: say it once.
				return err
			}
			lastErr = err
			fmt.Fprintf(g.stdout, "no pong from %s: %v\n", peer, err)
			continue
		}
		pongs++
		via := res.Path.Endpoint
		if res.Path.Kind != localapi.PathDirect {
			via = res.Path.String()
		}
		fmt.Fprintf(g.stdout, "pong from %s (%s) via %s in %s\n", termText(res.Name), res.Address, via, fmtMS(res.RTTMS))
		if o.untilDirect && res.Path.Kind == localapi.PathDirect {
			return nil
		}
	}
	switch {
	case pongs == 0 && lastErr != nil:
		return fmt.Errorf("no pong from %s: %w", peer, lastErr)
	case pongs == 0:
		return fmt.Errorf("no pong from %s", peer)
	case o.untilDirect:
		return fmt.Errorf("%s answered, but only through the relay after %d pings: a direct path was not found", peer, o.count)
	}
	return nil
}
