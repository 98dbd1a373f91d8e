package main

import "github.com/spf13/cobra"

// newStockCmd is written in its own issue; this stub keeps the tree building.
func newStockCmd() *cobra.Command {
	return &cobra.Command{Use: "stock", Hidden: true}
}
