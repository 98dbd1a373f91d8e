package pipeline

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"github.com/stocksync/stocksync/canal"
)

// The two delivery modes keep the checkpoint of one checkpoint.name apart: at-least-once
// in checkpoint.table (row NAME and its state), exactly-once in kafka.checkpoint_topic
// (remembered by the row NAME/exactly-once). A start that finds none of its own mode's but
// the other's, after kafka.exactly_once was switched, takes the other's position and rule
// state (they belong together) and saves them as its own before streaming, then deletes
// the row by which the other mode would find its own again: the at-least-once row (with
// its state), or the row remembering the exactly-once checkpoint. So each mode's
// checkpoint exists beside the other's only while it is the newer one, and a later switch
// back never resumes from an older checkpoint of that mode. Deleted after the save, so a
// crash between the two takes the same position over again. An at-least-once row beside an
// exactly-once checkpoint that is remembered (its row NAME/exactly-once there) is older: a
// stocksync before this one left it at a switch; exactly-once keeps its own.

// loadCheckpoint loads the checkpoint to resume from: this mode's own, or the other
// mode's when kafka.exactly_once was switched since the other last saved (takeOver).
func (p *Pipeline) loadCheckpoint(ctx context.Context, server *canal.Server) (canal.Position, []canal.StateRow, bool, error) {
	name, table := p.opts.CheckpointName, p.opts.CheckpointTable
	if kc, ok := p.opts.Checkpoints.(*KafkaCheckpoints); ok {
		if kc.MirrorTable == "" { // the embedded development broker: every start is a first start
			return p.store.Load(ctx)
		}
		atLeastOnce, err := canal.OpenCheckpointStore(server.DB, table, name)
		if err != nil {
			return canal.Position{}, nil, false, err
		}
		pos, state, found, err := atLeastOnce.Load(ctx)
		if err != nil {
			return canal.Position{}, nil, false, fmt.Errorf("reading the at-least-once checkpoint, to take it over: %w", err)
		}
		if !found {
			return p.store.Load(ctx)
		}
		if own, _, err := kc.lastSeen(ctx); err != nil {
			return canal.Position{}, nil, false, err
		} else if own != nil {
			// This mode saved since, or a stocksync before this one left the row when the
			// mode was switched: this mode's own checkpoint is the newer one.
			p.log.Warn("an at-least-once checkpoint row is there beside this exactly-once checkpoint, which is newer: it is left alone",
				zap.String("row", name), zap.String("table", table), zap.Stringer("at_least_once_pos", pos), zap.Stringer("exactly_once_at", own))
			return p.store.Load(ctx)
		}
		stale, err := kc.loadedState()
		if err != nil {
			return canal.Position{}, nil, false, err
		}
		if err := p.takeOver(ctx, "at-least-once", fmt.Sprintf("row %q of %s", name, table), pos, state, stale); err != nil {
			return canal.Position{}, nil, false, err
		}
		if err := atLeastOnce.Reset(ctx); err != nil {
			return canal.Position{}, nil, false, fmt.Errorf("deleting the at-least-once checkpoint taken over: %w", err)
		}
		return pos, state, true, nil
	}
	pos, state, found, err := p.store.Load(ctx)
	if err != nil || found || p.opts.ReadCheckpointTopic == nil {
		return pos, state, found, err
	}
	mirror, err := canal.OpenCheckpointStore(server.DB, table, MirrorName(name))
	if err != nil {
		return canal.Position{}, nil, false, err
	}
	exactlyOnce := &KafkaCheckpoints{Name: name, MirrorTable: table, mirror: mirror}
	if last, _, err := exactlyOnce.lastSeen(ctx); err != nil || last == nil {
		return canal.Position{}, nil, false, err // no exactly-once checkpoint: a first start
	}
	if exactlyOnce.Loaded, err = p.opts.ReadCheckpointTopic(ctx); err != nil {
		return canal.Position{}, nil, false, MarkRetryable(fmt.Errorf("reading the exactly-once checkpoint, to take it over: %w", err))
	}
	// Not found with the row there is ErrCheckpointLost, naming the row to delete.
	if pos, state, _, err = exactlyOnce.Load(ctx); err != nil {
		return canal.Position{}, nil, false, err
	}
	// This mode's own state rows without a checkpoint were deleted by its Load.
	if err := p.takeOver(ctx, "exactly-once", "topic (kafka.checkpoint_topic), remembered by row "+fmt.Sprintf("%q of %s", MirrorName(name), table),
		pos, state, nil); err != nil {
		return canal.Position{}, nil, false, err
	}
	if err := mirror.Reset(ctx); err != nil {
		return canal.Position{}, nil, false, fmt.Errorf("deleting the row that remembers the exactly-once checkpoint taken over: %w", err)
	}
	return pos, state, true, nil
}

// takeOver saves pos and state, the other delivery mode's checkpoint, as this mode's own,
// deleting the rows of stale (this mode's own older state) that state does not have.
func (p *Pipeline) takeOver(ctx context.Context, from, where string, pos canal.Position, state, stale []canal.StateRow) error {
	rows := append([]canal.StateRow(nil), state...)
	have := make(map[stateKey]bool, len(state))
	for _, r := range state {
		have[stateKey{r.Scope, r.Key}] = true
	}
	for _, r := range stale {
		if !have[stateKey{r.Scope, r.Key}] {
			rows = append(rows, canal.StateRow{Scope: r.Scope, Key: r.Key}) // nil: deleted
		}
	}
	if err := p.store.Save(ctx, pos, rows); err != nil {
		return fmt.Errorf("taking over the %s checkpoint %s: %w", from, pos, err)
	}
	p.log.Warn("kafka.exactly_once was switched: resuming from the checkpoint the other delivery mode saved, which is this mode's own from now on",
		zap.String("from", from), zap.String("where", where), zap.Stringer("pos", pos), zap.Int("state_rows", len(state)))
	return nil
}
