package main

import (
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/stocksync/stocksync/inventory"
)

// newMigrateCmd manages the inventory schema: `migrate up` creates the database named by
// inventory.database and applies every embedded migration; `migrate status` lists them.
func newMigrateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Create or upgrade the inventory schema (inventory.database on the source server)",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "up",
		Short: "Create the inventory database if missing and apply every pending migration",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfigWithoutRules(cmd)
			if err != nil {
				return err
			}
			applied, err := inventory.Migrate(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			for _, name := range applied {
				fmt.Fprintf(cmd.OutOrStdout(), "applied %s\n", name)
			}
			if len(applied) == 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "inventory schema in %s was already up to date\n", cfg.Inventory.Database)
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "inventory schema in %s is up to date\n", cfg.Inventory.Database)
			}
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "status",
		Short: "List the embedded migrations and whether the database has applied them; exit 1 unless it is at this binary's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfigWithoutRules(cmd)
			if err != nil {
				return err
			}
			db, err := inventory.Open(cmd.Context(), cfg)
			if errors.Is(err, inventory.ErrNoDatabase) {
				// Every migration is pending: list them, and say that the database is
				// missing and what makes it (Open's error), exiting 1.
				list, lerr := inventory.Migrations()
				if lerr != nil {
					return lerr
				}
				if perr := printMigrations(cmd.OutOrStdout(), list); perr != nil {
					return perr
				}
				return err
			}
			if err != nil {
				return err
			}
			defer db.Close()
			list, err := inventory.Status(cmd.Context(), db)
			if err != nil {
				return err
			}
			if err := printMigrations(cmd.OutOrStdout(), list); err != nil {
				return err
			}
			// Not at this binary's version is an exit status, so that a deploy can check
			// before it starts serve.
			return inventory.CheckSchema(cmd.Context(), db)
		},
	})
	return cmd
}

// printMigrations prints list as migrate status does: version, name, and when each was
// applied or "pending".
func printMigrations(out io.Writer, list []inventory.MigrationStatus) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "VERSION\tNAME\tAPPLIED AT")
	for _, m := range list {
		applied := "pending"
		if m.Applied {
			applied = m.AppliedAt.UTC().Format("2006-01-02 15:04:05")
		}
		fmt.Fprintf(w, "%d\t%s\t%s\n", m.Version, m.Name, applied)
	}
	return w.Flush()
}
