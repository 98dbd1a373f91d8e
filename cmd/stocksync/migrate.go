package main

import "github.com/spf13/cobra"

// newMigrateCmd is written in its own issue; this stub keeps the tree building.
func newMigrateCmd() *cobra.Command {
	return &cobra.Command{Use: "migrate", Hidden: true}
}
