package node

import (
	"errors"
	"fmt"
	"log/slog"

	"weft/internal/nodestate"
)

// loadRecovering runs load; if a state file is damaged (truncated by a
// crash, corrupted), it sets the file aside and loads again, so the
// daemon starts logged out instead of failing at every start: a service
// manager restarting a daemon that cannot read its state would loop
// forever. What happened is appended to damaged, worded for `weft status`
// with the way back in.
func loadRecovering[T any](load func() (T, error), damaged *[]error, log *slog.Logger) (T, error) {
	v, err := load()
	var de *nodestate.DamagedError
	if !errors.As(err, &de) {
		return v, err
	}
	aside, serr := de.SetAside()
	if serr != nil {
		return v, errors.Join(err, serr)
	}
	log.Error("damaged state file set aside; the node must log in again", "file", de.Path, "moved_to", aside, "err", de.Err)
	*damaged = append(*damaged, fmt.Errorf("%s was damaged (%v) and was moved to %s; run `weft up --server URL --auth-key KEY` to log in again",
		de.Path, de.Err, aside))
	return load()
}
