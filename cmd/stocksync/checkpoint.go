package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/stocksync/stocksync/canal"
	"github.com/stocksync/stocksync/config"
	"github.com/stocksync/stocksync/pipeline"
	"github.com/stocksync/stocksync/sinks"
)

func newCheckpointCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "checkpoint",
		Short: "Show, move or delete the daemon's checkpoint (checkpoint.name of --config)",
		Long: "Show the position the daemon resumes from, whether the server's binlogs still hold it and how far behind it is;\n" +
			"move it (skip a transaction, follow a restored server) or delete it (start over from the server's current position),\n" +
			"while no daemon holds it (docs/operations.md, The checkpoint).",
	}
	c.AddCommand(newCheckpointShowCmd(), newCheckpointSetCmd(), newCheckpointDeleteCmd())
	return c
}

func newCheckpointShowCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "show",
		Short: "The saved checkpoint, whether the binlogs still hold it, and how far behind the server it is",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfigWithoutRules(cmd)
			if err != nil {
				return err
			}
			report, err := showCheckpoint(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(report)
			}
			report.print(cmd.OutOrStdout())
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print it as JSON")
	return c
}

func newCheckpointSetCmd() *cobra.Command {
	var gtid, file string
	var pos uint64
	var allowPreparedXA bool
	c := &cobra.Command{
		Use:   "set {--gtid SET | --file F --pos N | --current}",
		Short: "Move the checkpoint (the daemon stopped); the next start seeds its rules again and takes back the groups that are gone",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			flags := cmd.Flags()
			given := 0
			for _, name := range []string{"gtid", "file", "current"} {
				if flags.Changed(name) {
					given++
				}
			}
			switch {
			case given != 1:
				return errors.New("checkpoint set needs exactly one of --gtid SET, --file F --pos N, or --current")
			case flags.Changed("file") != flags.Changed("pos"):
				return errors.New("checkpoint set: --file and --pos go together")
			}
			cfg, err := loadConfigWithoutRules(cmd)
			if err != nil {
				return err
			}
			return changeCheckpoint(cmd.Context(), cfg, cmd.OutOrStdout(), func(ctx context.Context, server *canal.Server) (canal.Position, error) {
				if !allowPreparedXA {
					if err := refusePreparedXA(ctx, server); err != nil {
						return canal.Position{}, err
					}
				}
				switch {
				case flags.Changed("gtid"):
					return server.GTIDPosition(ctx, gtid)
				case flags.Changed("file"):
					return server.FilePosition(ctx, file, pos)
				}
				return server.CurrentPosition(ctx)
			})
		},
	}
	c.Flags().StringVar(&gtid, "gtid", "", "resume after these transactions (a GTID set of the server's flavor)")
	c.Flags().StringVar(&file, "file", "", "resume from this binlog file (with --pos)")
	c.Flags().Uint64Var(&pos, "pos", 0, "resume from this position of --file (where an event ends)")
	c.Flags().Bool("current", false, "resume from the server's current position") // read as given or not
	c.Flags().BoolVar(&allowPreparedXA, "allow-prepared-xa", false,
		"move it while XA RECOVER lists prepared transactions (whose rows are then never published)")
	return c
}

// refusePreparedXA refuses a checkpoint move while the server holds prepared XA
// transactions: their rows are in the binlog before the position, and their XA COMMIT,
// after it, has none, so they would never be published. A server that cannot be asked
// is refused too: the flag is the operator's word that none matters.
func refusePreparedXA(ctx context.Context, server *canal.Server) error {
	xids, err := server.PreparedXA(ctx)
	if err != nil {
		return fmt.Errorf("%w; to move it without knowing, give --allow-prepared-xa", err)
	}
	if len(xids) == 0 {
		return nil
	}
	return fmt.Errorf("XA RECOVER lists %d prepared XA transactions (%s): their rows are in the binlog before the server's position, "+
		"and their XA COMMIT will carry none, so a checkpoint moved past their XA PREPARE never publishes them. "+
		"Have their coordinator end them (or XA COMMIT / XA ROLLBACK each by its xid) and run this again, "+
		"or give --allow-prepared-xa to move it anyway and resync their tables' rules after they commit (docs/operations.md, The checkpoint)",
		len(xids), strings.Join(xids, ", "))
}

func newCheckpointDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete",
		Short: "Delete the checkpoint and its rule state (the daemon stopped): the next start begins at the server's current position",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfigWithoutRules(cmd)
			if err != nil {
				return err
			}
			return changeCheckpoint(cmd.Context(), cfg, cmd.OutOrStdout(), nil)
		},
	}
}

// checkpointReport is what `checkpoint show` says.
type checkpointReport struct {
	Name  string `json:"name"`
	Kept  string `json:"kept"`  // "table" or "checkpoint_topic"
	Where string `json:"where"` // the table, or the topic
	Found bool   `json:"found"`
	File  string `json:"file,omitempty"`
	Pos   uint32 `json:"pos,omitempty"`
	GTID  string `json:"gtid_set,omitempty"`
	// SavedAt is when the table's row was saved (exactly-once: not recorded).
	SavedAt   *time.Time `json:"saved_at,omitempty"`
	StateRows int        `json:"state_rows"`
	// Held: the server's binlogs hold every change after it; Problem says why not.
	// Absent when there is no checkpoint.
	Held    *bool  `json:"held,omitempty"`
	Problem string `json:"problem,omitempty"`
	// OlderFiles is how many binlogs are older than the one holding it (-1: unknown).
	OlderFiles int    `json:"older_files"`
	Server     string `json:"server_position"` // the server's current position
	// Behind is absent with no checkpoint, and with one that is not a point of the
	// server's binlog history (Problem: canal.ErrNotInHistory), whose distance to the
	// server's position no binlog measures.
	Behind *canal.Distance `json:"behind,omitempty"`
	// Remembered (exactly-once) is the row of checkpoint.table that remembers a commit,
	// at or before the checkpoint.
	Remembered string `json:"remembered,omitempty"`
	// PastPurgedSave is where the daemon moves the checkpoint at its start when all the
	// binlogs purged after it is its own save (canal.Server.PastPurgedSave).
	PastPurgedSave string `json:"past_purged_save,omitempty"`
}

// showCheckpoint reads cfg's checkpoint where the daemon keeps it and asks the server
// about it.
func showCheckpoint(ctx context.Context, cfg config.Config) (checkpointReport, error) {
	r := checkpointReport{Name: cfg.Checkpoint.Name, Kept: "table", Where: cfg.Checkpoint.Table, OlderFiles: -1}
	source, err := sourceConfig(cfg)
	if err != nil {
		return r, err
	}
	server, err := canal.Connect(ctx, source)
	if err != nil {
		return r, err
	}
	defer server.Close()
	var pos canal.Position
	var ownTables []string // what the daemon's checkpoint saves write
	if cfg.Kafka.ExactlyOnce {
		r.Kept, r.Where = "checkpoint_topic", cfg.Kafka.CheckpointTopic
		var state []canal.StateRow
		if pos, state, r.Found, err = topicCheckpoint(ctx, cfg); err != nil {
			return r, err
		}
		r.StateRows = len(state)
		mirror, err := canal.OpenCheckpointStore(server.DB, cfg.Checkpoint.Table, pipeline.MirrorName(cfg.Checkpoint.Name))
		if err != nil {
			return r, err
		}
		ownTables = mirror.Tables()
		if kept, found, err := mirror.Saved(ctx); err != nil {
			return r, err
		} else if found {
			r.Remembered = fmt.Sprintf("%s (row %q of %s, saved %s)", kept.Position, pipeline.MirrorName(cfg.Checkpoint.Name),
				cfg.Checkpoint.Table, kept.SavedAt.Format(time.RFC3339))
		}
	} else {
		store, err := canal.OpenCheckpointStore(server.DB, cfg.Checkpoint.Table, cfg.Checkpoint.Name)
		if err != nil {
			return r, err
		}
		ownTables = store.Tables()
		saved, found, err := store.Saved(ctx)
		if err != nil {
			return r, err
		}
		pos, r.Found, r.StateRows = saved.Position, found, int(saved.StateRows)
		if found {
			r.SavedAt = &saved.SavedAt
		}
	}
	current, err := server.CurrentPosition(ctx)
	if err != nil {
		return r, err
	}
	r.Server = current.String()
	if !r.Found {
		return r, nil
	}
	r.File, r.Pos, r.GTID = pos.File, pos.Pos, pos.GTIDSet
	// As the daemon judges it at its start.
	retention, err := server.Retention(ctx, pos)
	gone := retention.Gone("checkpoint", pos)
	switch {
	case errors.Is(err, canal.ErrNotInHistory):
		// No distance to the server's position: the binlog it would be counted in is
		// another history's (print says so, after the problem).
		r.Held, r.Problem = new(false), err.Error()
		return r, nil
	case err != nil:
		return r, fmt.Errorf("checking that the server's binlogs hold checkpoint %s: %w", pos, err)
	case gone != "" && r.Kept == "table":
		next, ok, err := server.PastPurgedSave(ctx, pos, retention, ownTables)
		if err != nil {
			return r, fmt.Errorf("checking whether only the checkpoint's own save was purged after %s: %w", pos, err)
		}
		if ok {
			r.Held, r.OlderFiles, r.PastPurgedSave = new(true), 0, next.String()
			break
		}
		fallthrough
	case gone != "":
		r.Held = new(false)
		r.Problem = gone + ": the changes after it were purged, and the daemon would stop at its start " +
			"(docs/operations.md, The checkpoint: Purged binlog)"
	default:
		r.Held, r.OlderFiles = new(true), retention.Older
	}
	behind, err := server.Behind(ctx, pos, current, ownTables) // the daemon's own saves, counted apart
	if err != nil {
		return r, err
	}
	if r.PastPurgedSave != "" && behind.CheckpointSaves == 0 {
		behind.CheckpointSaves = 1 // purged, so not read: PastPurgedSave found it so
	}
	r.Behind = &behind
	return r, nil
}

// topicCheckpoint is the exactly-once checkpoint of cfg as its topic holds it, committed
// (read_committed): read as the daemon reads it at its start.
func topicCheckpoint(ctx context.Context, cfg config.Config) (canal.Position, []canal.StateRow, bool, error) {
	if len(cfg.Kafka.Brokers) == 0 {
		return canal.Position{}, nil, false, errors.New("kafka.brokers is empty: the daemon runs the embedded development broker, " +
			"which keeps no checkpoint across restarts (every start is a first start)")
	}
	sec, err := sinks.SecurityOf(cfg.Kafka.TLS, cfg.Kafka.SASL)
	if err != nil {
		return canal.Position{}, nil, false, err
	}
	loaded, err := sinks.ReadCheckpoints(ctx, cfg.Kafka.Brokers, sec, cfg.Kafka.CheckpointTopic)
	if err != nil {
		return canal.Position{}, nil, false, fmt.Errorf("reading checkpoints from %s (kafka.checkpoint_topic): %w", cfg.Kafka.CheckpointTopic, err)
	}
	return (&pipeline.KafkaCheckpoints{Name: cfg.Checkpoint.Name, Loaded: loaded}).Load(ctx)
}

func (r checkpointReport) print(w io.Writer) {
	where := "table " + r.Where + " on the source"
	if r.Kept == "checkpoint_topic" {
		where = "topic " + r.Where + " (kafka.exactly_once)"
	}
	if !r.Found {
		fmt.Fprintf(w, "checkpoint %q: none saved in %s.\n", r.Name, where)
		fmt.Fprintf(w, "The daemon would start from the server's current position, %s, and seed its aggregate and transition rules there\n"+
			"(with snapshot: initial or when_needed, take a snapshot first).\n", r.Server)
		if r.Remembered != "" {
			fmt.Fprintf(w, "But the source remembers an exactly-once commit at or before %s: the daemon stops at its start, as the topic lost it\n"+
				"(docs/operations.md, Brokers that lost their data).\n", r.Remembered)
		}
		return
	}
	fmt.Fprintf(w, "checkpoint %q, in %s\n", r.Name, where)
	if r.File == "" {
		fmt.Fprintf(w, "  position:   (by GTID)\n")
	} else {
		fmt.Fprintf(w, "  position:   %s:%d\n", r.File, r.Pos)
	}
	fmt.Fprintf(w, "  gtid set:   %s\n", orNone(r.GTID))
	if r.SavedAt != nil {
		fmt.Fprintf(w, "  saved:      %s (%s ago)\n", r.SavedAt.Format("2006-01-02 15:04:05.000Z07:00"), time.Since(*r.SavedAt).Round(time.Second))
	} else {
		fmt.Fprintf(w, "  saved:      not recorded in the topic\n")
	}
	if r.Remembered != "" {
		fmt.Fprintf(w, "  remembered: %s\n", r.Remembered)
	}
	fmt.Fprintf(w, "  rule state: %d rows\n", r.StateRows)
	switch {
	case r.PastPurgedSave != "":
		fmt.Fprintf(w, "  binlogs:    hold every change after it but its own save, purged: the daemon moves the checkpoint past it, to %s, at its start\n", r.PastPurgedSave)
	case *r.Held:
		fmt.Fprintf(w, "  binlogs:    hold every change after it (%d older binlog files)\n", r.OlderFiles)
	default:
		fmt.Fprintf(w, "  binlogs:    DO NOT hold it: %s\n", r.Problem)
	}
	fmt.Fprintf(w, "  server now: %s\n", r.Server)
	if r.Behind == nil {
		fmt.Fprintf(w, "  behind:     unknown: the checkpoint is %s (binlogs, above)\n", canal.ErrNotInHistory)
		return
	}
	var behind []string
	switch saves := r.Behind.CheckpointSaves; {
	case r.Behind.Transactions < 0:
	case saves > 0 && saves == r.Behind.Transactions:
		behind = append(behind, fmt.Sprintf("caught up: the %d transactions after it are the daemon's own checkpoint saves", saves))
	case saves > 0:
		behind = append(behind, fmt.Sprintf("%d transactions (and %d checkpoint saves of the daemon's own)", r.Behind.Transactions-saves, saves))
	default:
		behind = append(behind, fmt.Sprintf("%d transactions", r.Behind.Transactions))
	}
	if r.Behind.Bytes >= 0 {
		behind = append(behind, fmt.Sprintf("%d bytes of binlog in %d later files", r.Behind.Bytes, r.Behind.Files))
	}
	if len(behind) == 0 {
		behind = append(behind, "unknown (its file is not listed)")
	}
	fmt.Fprintf(w, "  behind:     %s\n", strings.Join(behind, ", "))
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// errCheckpointInTopic refuses to move an exactly-once checkpoint, naming what to do
// instead.
func errCheckpointInTopic(cfg config.Config) error {
	return fmt.Errorf("checkpoint %q is kept in kafka.checkpoint_topic %s (kafka.exactly_once), which this command does not write: "+
		"to start over, give the daemon a new checkpoint.name (on both daemons under ha), or, with the daemon stopped, delete the topic "+
		"and the row that remembers it, `DELETE FROM %s WHERE name = '%s'` (docs/operations.md, The checkpoint)",
		cfg.Checkpoint.Name, cfg.Kafka.CheckpointTopic, cfg.Checkpoint.Table, pipeline.MirrorName(cfg.Checkpoint.Name))
}

// changeCheckpoint moves cfg's checkpoint to the position to gives, deleting in the same
// transaction the state that is wrong at another position but keeping the rules' groups
// (pipeline.KeptOnMove), or deletes it with all its state (to nil), while holding the checkpoint's
// lock so that no daemon starts in the middle. A daemon holding the lock refuses it; so
// does a position the server cannot stream from, before anything is written.
func changeCheckpoint(ctx context.Context, cfg config.Config, w io.Writer, to func(context.Context, *canal.Server) (canal.Position, error)) error {
	if cfg.Kafka.ExactlyOnce {
		return errCheckpointInTopic(cfg)
	}
	source, err := sourceConfig(cfg)
	if err != nil {
		return err
	}
	server, err := canal.Connect(ctx, source)
	if err != nil {
		return err
	}
	defer server.Close()
	name := checkpointLockName(cfg)
	lock, err := canal.TryLock(ctx, server.DB, name)
	if err != nil {
		return err
	}
	if lock == nil {
		holder, _, _ := lockHolder(ctx, server.DB, name)
		if holder == "" {
			holder = "a connection that has since closed"
		}
		return fmt.Errorf("checkpoint %q in %s is in use: a stocksync daemon holds its lock %q on the source (%s); "+
			"stop it (with ha, both daemons) and run this again: nothing was changed", cfg.Checkpoint.Name, cfg.Checkpoint.Table, name, holder)
	}
	defer lock.Release()
	if err := lock.Tag(ctx, checkpointCommandTag(name)); err != nil {
		return err
	}
	store, err := canal.OpenCheckpointStore(server.DB, cfg.Checkpoint.Table, cfg.Checkpoint.Name)
	if err != nil {
		return err
	}
	before, found, err := store.Saved(ctx)
	if err != nil {
		return err
	}
	was := "none"
	if found {
		was = before.Position.String()
	}
	var pos canal.Position
	if to != nil {
		if pos, err = to(ctx, server); err != nil {
			return fmt.Errorf("checkpoint %q not moved: %w", cfg.Checkpoint.Name, err)
		}
	}
	if err := store.CreateTables(ctx); err != nil { // if missing: a set makes them only once its position passed
		return err
	}
	if err := lock.Confirm(ctx); err != nil {
		return fmt.Errorf("checkpoint %q not changed: %w", cfg.Checkpoint.Name, err)
	}
	if to == nil {
		if err := store.Reset(ctx); err != nil {
			return err
		}
		// And the row remembering an exactly-once checkpoint of the name, which a start
		// finding no at-least-once one would take over (pipeline's mode switch): delete
		// means start over.
		mirror, err := canal.OpenCheckpointStore(server.DB, cfg.Checkpoint.Table, pipeline.MirrorName(cfg.Checkpoint.Name))
		if err != nil {
			return err
		}
		if err := mirror.Reset(ctx); err != nil {
			return err
		}
		fmt.Fprintf(w, "checkpoint %q deleted (it was %s), with its %d rule state rows.\n", cfg.Checkpoint.Name, was, before.StateRows)
		fmt.Fprintln(w, "The next start begins at the server's current position and seeds the aggregate and transition rules again "+
			"(with snapshot: initial or when_needed, takes a snapshot first); a group whose rows are gone by then is not taken back "+
			"(checkpoint set --current keeps the groups for that).")
		return nil
	}
	deleted, kept, err := store.Move(ctx, pos, pipeline.KeptOnMove)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "checkpoint %q moved from %s to %s; %d rule state rows deleted (seed markers, a snapshot's or re-read's progress), "+
		"%d group rows kept.\n", cfg.Checkpoint.Name, was, pos, deleted, kept)
	fmt.Fprintln(w, "The aggregate and transition rules are seeded again at the next start, from their tables as they are then, "+
		"and a kept group the seed does not find is published as gone (aggregate d, transition its empty value); "+
		"resync the row rules whose consumers need the rows skipped or repeated.")
	return nil
}
