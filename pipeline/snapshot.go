package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/stocksync/stocksync/canal"
	"github.com/stocksync/stocksync/rules"
)

// Snapshot modes (config `snapshot`).
const (
	SnapshotNever      = "never"
	SnapshotInitial    = "initial"
	SnapshotWhenNeeded = "when_needed"
)

// snapshotScope and snapshotKey name the state row that holds an unfinished snapshot's
// progress; it is saved with the snapshot's position after each acknowledged chunk and
// deleted when the snapshot commits.
const (
	snapshotScope = "stocksync.snapshot"
	snapshotKey   = "progress"
)

// ErrBinlogPurged is returned when the server's binlogs no longer hold the changes after
// the checkpoint: by GTID when the checkpoint has a GTID set, else by its file name.
var ErrBinlogPurged = errors.New("the checkpoint's binlog was purged")

// startPosition decides where streaming begins, taking a snapshot first when the mode and
// the checkpoint ask for one. It returns the position to stream from.
func (p *Pipeline) startPosition(ctx context.Context, server *canal.Server, start canal.Position, state []canal.StateRow, found bool) (canal.Position, error) {
	mode := p.opts.Snapshot
	if mode == "" {
		mode = SnapshotNever
	}
	var resume *canal.SnapshotProgress
	if raw := stateValue(state, snapshotScope, snapshotKey); raw != nil {
		resume = &canal.SnapshotProgress{}
		if err := json.Unmarshal(raw, resume); err != nil {
			return start, fmt.Errorf("parsing the saved progress of an interrupted snapshot: %w", err)
		}
	}
	if found && resume == nil {
		start, held, err := p.checkpointHeld(ctx, server, start, mode)
		switch {
		case errors.Is(err, errResnapshot):
			return p.snapshotAfresh(ctx, server, allTables)
		case err != nil:
			return start, err
		}
		p.checkRetention(held, start)
		seeding, err := p.seedRules(ctx, server)
		if err != nil {
			return start, err
		}
		if len(seeding) > 0 {
			// Published and saved now, before the stream replays from start: a stream that
			// stops soon after (at a change it refuses, at every retry) would otherwise
			// seed again each time, reading the tables and publishing the seed once more.
			if err := p.commitAt(ctx, start); err != nil {
				return start, fmt.Errorf("the seed of rules %v: %w", seeding, err)
			}
		}
		return start, nil
	}
	if resume != nil {
		scope := allTables
		if mode == SnapshotNever {
			scope = statefulTables // it was the first start's seeding read (below)
		}
		// The resumed snapshot streams on from its first run's position: the binlogs must
		// still hold it, which is better said now than after the rest of the snapshot.
		held, err := p.purgeCheck(ctx, server, resume.Position, mode, "the interrupted snapshot's position")
		switch {
		case errors.Is(err, errResnapshot):
			return p.snapshotAfresh(ctx, server, scope)
		case err != nil:
			return start, err
		}
		p.checkRetention(held, resume.Position)
		if p.opts.Rules.HasStatefulRules() {
			return p.resumeReseeding(ctx, server, scope, resume)
		}
		if scope == statefulTables {
			// It was seeding rules that the file no longer has: nothing is left to read
			// (row rules get no op r under snapshot: never). Stream from its position.
			p.log.Info("an interrupted seeding read is dropped: no aggregate or transition rule is left to seed",
				zap.Stringer("pos", resume.Position))
			if err := p.store.Save(ctx, resume.Position, []canal.StateRow{{Scope: snapshotScope, Key: snapshotKey}}); err != nil {
				return start, fmt.Errorf("saving the checkpoint at the dropped seeding read's position %s: %w", resume.Position, err)
			}
			p.lastSaved = resume.Position
			return resume.Position, nil
		}
		p.log.Info("resuming an interrupted snapshot", zap.Int64("rows_done", resume.RowsDone), zap.Stringer("pos", resume.Position))
		return p.snapshot(ctx, server, allTables, resume)
	}
	// A first start: the snapshot below folds every row into every stateful rule.
	p.warnPreparedXA(ctx, server)
	p.engine.MarkSeeded(p.engine.Unseeded(), canal.Position{})
	switch {
	case mode == SnapshotInitial || mode == SnapshotWhenNeeded:
		return p.snapshot(ctx, server, allTables, nil)
	case p.opts.Rules.HasStatefulRules():
		// Sums over rows need every row once: read the tables the aggregate and
		// transition rules fold, even with snapshot: never. Only those rules see the
		// rows; row rules publish what changes from here on, as the mode says.
		p.log.Info("first start: reading the tables aggregate and transition rules fold, to seed their state")
		return p.snapshot(ctx, server, statefulTables, nil)
	}
	pos, err := server.CurrentPosition(ctx)
	if err != nil {
		return pos, err
	}
	p.log.Info("first start: streaming from the server's current position", zap.Stringer("pos", pos))
	// Remember the start at once: a crash before the first periodic save must resume
	// here, not at whatever "current" is by then.
	if err := p.store.Save(ctx, pos, nil); err != nil {
		return pos, fmt.Errorf("saving the first start position %s: %w", pos, err)
	}
	p.lastSaved = pos
	return pos, nil
}

// checkpointHeld is purgeCheck of the checkpoint start, which at least once is first moved
// past its own save when that is all a purge took after it (canal.Server.PastPurgedSave):
// a daemon stopped cleanly is followed in the binlog by its last save, and a rotation and
// purge then would stop this start with ErrBinlogPurged although nothing was lost. It
// moves to where the oldest binlog begins, its rule state kept: no change of a table a
// rule reads lies in between. (Exactly-once the checkpoint is in its topic, and no save
// of it follows it in the binlog.) It returns the position to stream from.
func (p *Pipeline) checkpointHeld(ctx context.Context, server *canal.Server, start canal.Position, mode string) (canal.Position, canal.BinlogRetention, error) {
	held, err := server.Retention(ctx, start)
	if err == nil && !held.Held && !p.opts.ExactlyOnce {
		next, ok, perr := server.PastPurgedSave(ctx, start, held, canal.CheckpointTables(p.opts.CheckpointTable))
		switch {
		case perr != nil:
			p.log.Warn("checking whether only the checkpoint's own save was purged after it", zap.Stringer("checkpoint", start), zap.Error(perr))
		case ok:
			if err := p.store.Save(ctx, next, nil); err != nil {
				return start, held, fmt.Errorf("moving the checkpoint %s past its own purged save, to %s: %w", start, next, err)
			}
			p.log.Info("the binlog after the checkpoint was purged, but it held only the checkpoint's own save: the checkpoint moves past it, to where the oldest binlog begins; no change is lost",
				zap.Stringer("from", start), zap.Stringer("to", next))
			p.lastSaved, start = next, next
			held, err = server.Retention(ctx, start)
		}
	}
	held, err = p.judgeRetention(held, err, start, mode, "checkpoint")
	return start, held, err
}

// errResnapshot is purgeCheck's answer under snapshot: when_needed: the position's
// changes are gone, so take a new snapshot from scratch.
var errResnapshot = errors.New("the position's binlog was purged: take a new snapshot")

// purgeCheck asks the server whether its binlogs still hold the changes after pos, where
// a stream is about to resume (what names pos in the messages). Checked as the stream
// resumes: by GTID when pos has a set, else by file. When they do not, it returns
// ErrBinlogPurged naming pos, the oldest binlog left and the fix, or, under snapshot:
// when_needed, errResnapshot after logging why.
func (p *Pipeline) purgeCheck(ctx context.Context, server *canal.Server, pos canal.Position, mode, what string) (canal.BinlogRetention, error) {
	held, err := server.Retention(ctx, pos)
	return p.judgeRetention(held, err, pos, mode, what)
}

// judgeRetention is purgeCheck's verdict on held, the server's Retention of pos (err its
// error).
func (p *Pipeline) judgeRetention(held canal.BinlogRetention, err error, pos canal.Position, mode, what string) (canal.BinlogRetention, error) {
	if err != nil {
		return held, fmt.Errorf("checking that the server's binlogs still hold %s %s: %w", what, pos, err)
	}
	gone := held.Gone(what, pos)
	if gone == "" {
		return held, nil
	}
	if mode != SnapshotWhenNeeded {
		return held, fmt.Errorf("%w: %s, so the changes in between are gone. "+
			"Fix: set `snapshot: when_needed` to read the matched tables again and stream from there, "+
			"or move the checkpoint (name %q; stocksync checkpoint set --current, the daemon stopped) to go on from the current position without them; "+
			"to keep it from happening, keep binlogs longer (binlog_expire_logs_seconds / expire_logs_days)",
			ErrBinlogPurged, gone, p.opts.CheckpointName)
	}
	p.log.Warn("the binlog of "+what+" was purged: taking a new snapshot (snapshot: when_needed)",
		zap.Stringer("pos", pos), zap.String("oldest_binlog", held.Files[0]), zap.String("purged_gtid", held.Purged))
	return held, errResnapshot
}

// tableScope picks the tables a snapshot reads.
type tableScope int

const (
	allTables      tableScope = iota
	statefulTables            // their rows reach the aggregate and transition rules alone
	rowRuleTables             // their rows reach the row rules alone (resumeReseeding)
)

// scopedFilter is a filter that matches, of the tables its TableFilter matches, those
// within accepts (nil: all): the tables of the stateful rules, or of some row rules; it
// answers everything else as its TableFilter does.
type scopedFilter struct {
	canal.TableFilter
	within func(schema, table string) bool
}

func (f scopedFilter) Matches(schema, table string) bool {
	return f.TableFilter.Matches(schema, table) && (f.within == nil || f.within(schema, table))
}

// resumeReseeding goes on with a snapshot (or the first start's seeding read) interrupted
// while aggregate or transition rules read: it streams from the interrupted run's
// position P, the checkpoint, as any resumed snapshot does, so that no change after P is
// lost (a row rule's, or the deletion of a row already published as a read). The sums the
// rules folded from the chunks read before are not kept, so those rules are seeded again,
// as a changed rule is (seedRules): from a snapshot of their tables of their own, at P',
// skipping the transactions before P', which it holds; a group saved before (a snapshot of
// when_needed) that no row fills again is published as deleted. Row rules read on after the
// last chunk saved (allTables); a seeding read gave them nothing to read (statefulTables).
// The groups are published at P and saved with it, without the progress. A kill during
// any of this leaves the progress saved, and the next start does it again.
func (p *Pipeline) resumeReseeding(ctx context.Context, server *canal.Server, scope tableScope, resume *canal.SnapshotProgress) (canal.Position, error) {
	names := p.engine.PrepareReseed(statefulRuleNames(p.engine.Set()), canal.Source{Snapshot: true})
	p.log.Warn("an interrupted snapshot goes on from its position: its aggregate and transition rules are seeded again from a snapshot of their tables, as their sums from the chunks read before are not kept",
		zap.Stringer("pos", resume.Position), zap.Int64("rows_done", resume.RowsDone), zap.Strings("rules", names))
	if _, err := p.seedRules(ctx, server); err != nil {
		return resume.Position, err
	}
	if rowRules := rowRuleNames(p.engine.Set()); scope == allTables && len(rowRules) > 0 {
		p.log.Info("resuming an interrupted snapshot", zap.Int64("rows_done", resume.RowsDone), zap.Stringer("pos", resume.Position),
			zap.Strings("row_rules", rowRules))
		return p.snapshot(ctx, server, rowRuleTables, resume)
	}
	p.keepState(snapshotScope, snapshotKey, nil) // the progress goes with the seed's save
	if err := p.commitAt(ctx, resume.Position); err != nil {
		return resume.Position, fmt.Errorf("the seed of rules %v: %w", names, err)
	}
	p.log.Info("the interrupted snapshot's rules are seeded again; streaming from its position", zap.Stringer("pos", resume.Position))
	return resume.Position, nil
}

// snapshotAfresh takes a snapshot from its beginning, folding every row into the rules'
// emptied groups (Engine.Reseed): a group no row fills again is published as deleted.
func (p *Pipeline) snapshotAfresh(ctx context.Context, server *canal.Server, scope tableScope) (canal.Position, error) {
	p.engine.Reseed()
	return p.snapshot(ctx, server, scope, nil)
}

// snapshot reads the matched tables through the rules (as op r), saving its progress with
// each acknowledged chunk, and commits it as one transaction at its position. With the
// statefulTables scope, the rows reach the aggregate and transition rules alone, which
// publish their groups at the snapshot's commit; row rules see none of them.
func (p *Pipeline) snapshot(ctx context.Context, server *canal.Server, scope tableScope, resume *canal.SnapshotProgress) (canal.Position, error) {
	filter := scopedFilter{TableFilter: p.filterFor(p.opts.Rules)}
	var rows canal.Handler = p
	switch scope {
	case statefulTables:
		filter.within = p.opts.Rules.StatefulTables
		rows = statefulOnly{Pipeline: p, names: statefulRuleNames(p.engine.Set())}
	case rowRuleTables:
		names := rowRuleNames(p.engine.Set())
		filter.within = p.engine.Set().TablesOf(names)
		rows = rowRulesOnly{Pipeline: p, names: names}
	}
	// The stream that follows the snapshot must be allowed: say so now, not hours later.
	if err := canal.NewStream(p.opts.Source, server, filter, p.log).CheckStreamable(ctx); err != nil {
		return canal.Position{}, fmt.Errorf("before the snapshot: %w", err)
	}
	partStart, partEmitted := time.Now(), p.emitted.Load()
	pos, err := server.Snapshot(ctx, filter, rows, canal.SnapshotOptions{
		ChunkSize: p.opts.SnapshotChunkSize,
		Resume:    resume,
		Logger:    p.log.Named("snapshot"),
		OnChunk: func(ctx context.Context, prog canal.SnapshotProgress) error {
			p.m.SnapshotRowsDone.Set(float64(prog.RowsDone))
			p.m.SnapshotRowsEstimated.Set(float64(prog.RowsEstimated))
			p.m.SnapshotETA.Set(prog.ETA.Seconds())
			if p.opts.ExactlyOnce {
				// One Kafka transaction, committed whole at the end, unless it has been
				// open so long that the brokers would abort it: then the part read so far
				// is committed with the progress (below), as at-least-once saves it.
				if p.opts.SnapshotPartAfter <= 0 || time.Since(partStart) < p.opts.SnapshotPartAfter || p.emitted.Load() == partEmitted {
					return nil
				}
				p.log.Info("committing the part of the snapshot read so far: its Kafka transaction has been open for half kafka.transaction_timeout",
					zap.Int64("rows_done", prog.RowsDone), zap.Duration("open", time.Since(partStart)))
				partStart, partEmitted = time.Now(), p.emitted.Load()
			} else if err := p.opts.Sink.Flush(ctx); err != nil { // make the chunk durable first
				return fmt.Errorf("waiting for the broker to acknowledge a snapshot chunk: %w", err)
			}
			// Remember how far the snapshot came.
			raw, err := json.Marshal(prog)
			if err != nil {
				return fmt.Errorf("encoding snapshot progress: %w", err)
			}
			return p.store.Save(ctx, prog.Position, []canal.StateRow{{Scope: snapshotScope, Key: snapshotKey, Value: raw}})
		},
	})
	if err != nil {
		return pos, fmt.Errorf("taking the snapshot: %w", err)
	}
	// The snapshot's Commit went through p.Commit; save now, with the progress row gone.
	p.keepState(snapshotScope, snapshotKey, nil)
	if err := p.saveCheckpoint(ctx, p.store, true); err != nil {
		return pos, fmt.Errorf("saving the checkpoint after the snapshot: %w", err)
	}
	p.log.Info("snapshot done; streaming from its position", zap.Stringer("pos", pos))
	return pos, nil
}

// checkRetention sets stocksync_checkpoint_binlog_files_older from r, the server's
// retention of the checkpoint pos (-1: which file holds it cannot be told), and warns
// when the next purge would lose changes the daemon has not delivered yet, or cannot be
// told not to.
func (p *Pipeline) checkRetention(r canal.BinlogRetention, pos canal.Position) {
	p.retentionCheckedAt = time.Now()
	p.m.CheckpointBinlogsBehind.Set(float64(r.Older))
	switch {
	case !r.Held:
		p.log.Warn("the server's binlogs no longer hold the changes after the checkpoint: a restart from it would stop (ErrBinlogPurged); keep binlogs longer",
			zap.Stringer("checkpoint", pos), zap.Strings("binlogs", r.Files), zap.String("purged_gtid", r.Purged))
	case r.Older < 0:
		p.log.Warn("cannot tell which binlog holds the checkpoint (its file is not listed, and the server cannot place it by GTID): purges are not checked",
			zap.Stringer("checkpoint", pos), zap.Strings("binlogs", r.Files))
	case r.Older == 0 && len(r.Files) > 1:
		p.log.Warn("the checkpoint's binlog is the oldest the server keeps: the next purge would lose undelivered changes",
			zap.Stringer("checkpoint", pos), zap.Strings("binlogs", r.Files))
	}
}

// seedRules seeds the stateful rules whose saved state does not vouch for their current
// definition (added or changed in the file, or by a reload): a consistent snapshot of
// their tables at P is folded into them alone, and they skip the changes of transactions
// that began before P, which the snapshot already holds. Their groups emit at the engine's
// next Commit: the transaction's being read or next read, or, where none may come soon, at
// once (commitAt at a start, publishReload at idle). Other rules are untouched. It returns
// the rules it seeded.
func (p *Pipeline) seedRules(ctx context.Context, server *canal.Server) ([]string, error) {
	names := p.engine.Unseeded()
	if len(names) == 0 {
		return nil, nil
	}
	set := p.engine.Set()
	filter := scopedFilter{TableFilter: p.filterFor(set), within: set.TablesOf(names)}
	p.log.Info("seeding aggregate/transition rules from a snapshot of their tables", zap.Strings("rules", names))
	pos, err := server.Snapshot(ctx, filter, seeder{p: p, names: names}, canal.SnapshotOptions{
		ChunkSize: p.opts.SnapshotChunkSize, Logger: p.log.Named("seed")})
	if err != nil {
		return nil, fmt.Errorf("seeding rules %v: %w", names, err)
	}
	p.engine.MarkSeeded(names, pos)
	p.log.Info("rules seeded", zap.Strings("rules", names), zap.Stringer("as_of", pos))
	return names, nil
}

// seeder hands a seeding snapshot's rows to the rules being seeded only.
type seeder struct {
	p     *Pipeline
	names []string
}

func (s seeder) Row(ctx context.Context, c *canal.RowChange) error {
	return s.p.engine.Seed(c, s.names)
}
func (s seeder) Commit(context.Context, canal.Position) error { return nil }
func (s seeder) Idle(context.Context) error                   { return nil }

// statefulOnly is the pipeline, with a snapshot's rows folded into the named rules alone.
type statefulOnly struct {
	*Pipeline
	names []string
}

func (s statefulOnly) Row(ctx context.Context, c *canal.RowChange) error {
	s.m.EventsRead.Inc()
	return s.engine.Seed(c, s.names)
}

// rowRulesOnly is the pipeline, with a snapshot's rows handed to the named row rules
// alone (as a resync's re-read hands them).
type rowRulesOnly struct {
	*Pipeline
	names []string
}

func (r rowRulesOnly) Row(ctx context.Context, c *canal.RowChange) error {
	r.m.EventsRead.Inc()
	return r.engine.Reread(ctx, c, r.names, r.Pipeline)
}

// statefulRuleNames names the set's aggregate and transition rules.
func statefulRuleNames(set *rules.Set) []string { return ruleNames(set, true) }

// rowRuleNames names the set's row rules.
func rowRuleNames(set *rules.Set) []string { return ruleNames(set, false) }

// ruleNames names the set's rules that are stateful (aggregate and transition), or not.
func ruleNames(set *rules.Set, stateful bool) []string {
	var names []string
	for _, r := range set.Rules() {
		if r.Stateful() == stateful {
			names = append(names, r.Name())
		}
	}
	return names
}

// warnPreparedXA warns, at a first start, of the XA transactions the server holds
// prepared: their rows are in the binlog before the position the daemon starts from (and
// not in its snapshot), and their XA COMMIT, after it, carries none, so they are never
// published. It cannot refuse to start (nothing else would); the operator resyncs.
func (p *Pipeline) warnPreparedXA(ctx context.Context, server *canal.Server) {
	xids, err := server.PreparedXA(ctx)
	switch {
	case err != nil:
		p.log.Warn("first start: could not ask the server for prepared XA transactions, whose rows a first start never publishes", zap.Error(err))
	case len(xids) > 0:
		p.log.Warn("first start while XA transactions are prepared: their rows are in the binlog before the start position and not in its snapshot, "+
			"so they are never published once they commit; resync their tables' rules after their XA COMMIT (docs/operations.md, The checkpoint)",
			zap.Strings("xids", xids))
	}
}
