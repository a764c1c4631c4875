//go:build !linux && !darwin && !windows

package service

import (
	"context"
	"errors"
	"fmt"
	"runtime"
)

var errUnsupported = fmt.Errorf("service: not supported on %s: %w", runtime.GOOS, errors.ErrUnsupported)

// Install is not supported on this OS.
func (m Manager) Install(context.Context, Spec) error { return errUnsupported }

// Uninstall is not supported on this OS.
func (m Manager) Uninstall(context.Context) error { return errUnsupported }

// Start is not supported on this OS.
func (m Manager) Start(context.Context) error { return errUnsupported }

// Stop is not supported on this OS.
func (m Manager) Stop(context.Context) error { return errUnsupported }
