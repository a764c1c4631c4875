package store

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"
	"testing"
)

type codedErr int

func (e codedErr) Error() string { return fmt.Sprintf("code %d", int(e)) }
func (e codedErr) Code() int     { return int(e) }

type stateErr string

func (e stateErr) Error() string    { return string(e) }
func (e stateErr) SQLState() string { return string(e) }

func TestFull(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"ENOSPC wrapped", fmt.Errorf("store: Register: %w", &fs.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC}), true},
		{"SQLITE_FULL", fmt.Errorf("store: commit: %w", codedErr(13)), true},
		{"SQLITE_BUSY", fmt.Errorf("store: commit: %w", codedErr(5)), false},
		{"PostgreSQL disk_full", fmt.Errorf("store: %w", stateErr("53100")), true},
		{"PostgreSQL unique_violation", stateErr("23505"), false},
		{"other", errors.New("store: closed"), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := Full(tt.err); got != tt.want {
				t.Errorf("Full(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}
