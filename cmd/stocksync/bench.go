package main

import "github.com/spf13/cobra"

// newBenchCmd is written in its own issue; this stub keeps the tree building.
func newBenchCmd() *cobra.Command {
	return &cobra.Command{Use: "bench", Hidden: true}
}
