package filter

import (
	"os"

	"golang.zx2c4.com/wireguard/tun"
)

// fakeDev is a tun.Device that does nothing, for embedding in fakes.
type fakeDev struct{}

func (fakeDev) File() *os.File                                        { return nil }
func (fakeDev) Read(bufs [][]byte, sizes []int, off int) (int, error) { return 0, os.ErrClosed }
func (fakeDev) Write(bufs [][]byte, off int) (int, error)             { return len(bufs), nil }
func (fakeDev) MTU() (int, error)                                     { return 1280, nil }
func (fakeDev) Name() (string, error)                                 { return "fake", nil }
func (fakeDev) Events() <-chan tun.Event                              { return nil }
func (fakeDev) Close() error                                          { return nil }
func (fakeDev) BatchSize() int                                        { return 1 }
