package main

import "github.com/spf13/cobra"

// newDevBrokerCmd is written in its own issue; this stub keeps the tree building.
func newDevBrokerCmd() *cobra.Command {
	return &cobra.Command{Use: "devbroker", Hidden: true}
}
