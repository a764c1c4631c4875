//go:build !windows

package service

import (
	"context"
	"errors"
)

// IsService reports false: only Windows starts weft through a service
// manager protocol of its own.
func IsService() bool { return false }

// RunService is Windows'.
func RunService(func(ctx context.Context) error) error {
	return errors.ErrUnsupported
}
