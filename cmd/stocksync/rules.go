package main

import "github.com/spf13/cobra"

// newRulesCmd is written in its own issue; this stub keeps the tree building.
func newRulesCmd() *cobra.Command {
	return &cobra.Command{Use: "rules", Hidden: true}
}
