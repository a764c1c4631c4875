//go:build !linux

package main

import "github.com/spf13/cobra"

// osCommands are the subcommands only some systems have; the lab and the
// demo need Linux network namespaces, so there are none here.
func osCommands(*globals) []*cobra.Command { return nil }
