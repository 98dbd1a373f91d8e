package pipeline

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/stocksync/stocksync/canal"
	"github.com/stocksync/stocksync/sinks"
)

// Checkpointer keeps the position of the last transaction delivered and the rule state
// as of it. Load is called once at start; Save with a position whose messages are all
// acknowledged (at-least-once) or in the same Kafka transaction (exactly-once).
type Checkpointer interface {
	Load(ctx context.Context) (pos canal.Position, state []canal.StateRow, found bool, err error)
	Save(ctx context.Context, pos canal.Position, state []canal.StateRow) error
}

var _ Checkpointer = (*canal.CheckpointStore)(nil)

// leasedCheckpoints saves only while the pipeline's lease is held: a daemon that lost the
// lead must not move the checkpoint the new leader resumes from.
type leasedCheckpoints struct {
	Checkpointer
	lease func() error
}

func (c leasedCheckpoints) Save(ctx context.Context, pos canal.Position, state []canal.StateRow) error {
	if err := c.lease(); err != nil {
		return fmt.Errorf("saving the checkpoint at %s: %w", pos, err)
	}
	return c.Checkpointer.Save(ctx, pos, state)
}

// TransactionCommitter is the exactly-once sink: Commit writes the checkpoint records into
// the open Kafka transaction and commits it with every message emitted since the last one.
type TransactionCommitter interface {
	Commit(ctx context.Context, checkpoint []sinks.CheckpointRecord) error
}

// KafkaCheckpoints keeps checkpoints in the exactly-once sink's checkpoint topic, written
// in the same Kafka transaction as the messages they cover. Keys are
// "NAME/position" and "NAME/state/" + JSON [rule, group key].
type KafkaCheckpoints struct {
	Name   string
	Sink   TransactionCommitter
	Loaded map[string][]byte // sinks.ReadCheckpoints, read after the sink fenced any older producer
	// Last, when set, is shared by the KafkaCheckpoints of one process's pipeline runs:
	// the last checkpoint loaded or committed. A run that then finds none in the topic
	// fails with ErrCheckpointLost rather than start over as on a first start.
	Last *atomic.Pointer[canal.Position]
	// MirrorTable, when set (checkpoint.table; not with the embedded development broker,
	// which keeps nothing on purpose), is where a committed position is also kept, on the
	// source, under the name NAME/exactly-once (MirrorName): a process that starts to find
	// the topic empty then tells brokers that lost it from a first start, as Last does
	// within one process. Only the first commit of a run and the first in each binlog file
	// are kept, so the source gets no write per Kafka commit (nor, idle, a write of its
	// own to publish a minute later): the row names a checkpoint at or before the last.
	// The pipeline opens it (openMirror).
	MirrorTable  string
	mirror       Checkpointer
	mirroredFile string // of the last position kept in the mirror
}

// MirrorName is the row of checkpoint.table that remembers an exactly-once checkpoint
// named name (KafkaCheckpoints.MirrorTable).
func MirrorName(name string) string { return name + "/exactly-once" }

// openMirror opens the table that remembers committed positions, on db (the source).
func (k *KafkaCheckpoints) openMirror(ctx context.Context, db *sql.DB) error {
	if k.MirrorTable == "" || k.mirror != nil {
		return nil
	}
	mirror, err := canal.NewCheckpointStore(ctx, db, k.MirrorTable, MirrorName(k.Name))
	if err != nil {
		return fmt.Errorf("opening the table that remembers exactly-once checkpoints: %w", err)
	}
	k.mirror = mirror
	return nil
}

// ErrCheckpointLost means the checkpoint topic no longer holds a checkpoint that this
// process loaded or committed: the brokers lost their data (a cluster rebuilt, the
// development broker restarted without --data-dir) or the topic was deleted. Which
// changes consumers got since cannot be known, so it is not retryable.
var ErrCheckpointLost = errors.New("the exactly-once checkpoint is gone from the checkpoint topic")

type savedPosition struct {
	File    string `json:"file"`
	Pos     uint32 `json:"pos"`
	GTIDSet string `json:"gtid_set"`
}

// Load parses the checkpoint topic's last committed records.
func (k *KafkaCheckpoints) Load(ctx context.Context) (canal.Position, []canal.StateRow, bool, error) {
	raw, ok := k.Loaded[k.Name+"/position"]
	if !ok {
		last, at, err := k.lastSeen(ctx)
		if err != nil {
			return canal.Position{}, nil, false, err
		}
		if last != nil {
			restart := "start the daemon again"
			if k.mirror != nil {
				// The name as a string literal under the default sql_mode: a quote doubled, a backslash too.
				literal := strings.NewReplacer(`'`, `''`, `\`, `\\`).Replace(MirrorName(k.Name))
				restart = fmt.Sprintf("delete the row that remembers it, `DELETE FROM %s WHERE name = '%s'`, and start the daemon again",
					k.MirrorTable, literal)
			}
			return canal.Position{}, nil, false, fmt.Errorf("%w: checkpoint %q was %s %s, and the topic holds none now: the brokers lost it "+
				"(a cluster rebuilt, the development broker restarted without --data-dir, the topic deleted), "+
				"so which changes after it reached consumers is unknown. The topic is there again, compacted and empty: "+
				"%s to begin as on a first start (from the server's current position, "+
				"or with a snapshot under `snapshot: initial` or `when_needed`), and have consumers rebuild from there",
				ErrCheckpointLost, k.Name, at, *last, restart)
		}
		return canal.Position{}, nil, false, nil
	}
	var p savedPosition
	if err := json.Unmarshal(raw, &p); err != nil {
		return canal.Position{}, nil, false, fmt.Errorf("parsing checkpoint %s/position %q: %w", k.Name, raw, err)
	}
	pos := canal.Position{File: p.File, Pos: p.Pos, GTIDSet: p.GTIDSet}
	k.remember(pos)
	state, err := k.loadedState()
	if err != nil {
		return canal.Position{}, nil, false, err
	}
	return pos, state, true, nil
}

// loadedState parses the state records of the checkpoint topic's last committed records.
func (k *KafkaCheckpoints) loadedState() ([]canal.StateRow, error) {
	var state []canal.StateRow
	prefix := k.Name + "/state/"
	for key, v := range k.Loaded {
		if !strings.HasPrefix(key, prefix) {
			continue
		}
		var rk [2]string
		if err := json.Unmarshal([]byte(key[len(prefix):]), &rk); err != nil {
			return nil, fmt.Errorf("parsing checkpoint key %q: %w", key, err)
		}
		state = append(state, canal.StateRow{Scope: rk[0], Key: rk[1], Value: v})
	}
	return state, nil
}

// Save commits the open Kafka transaction with the position and state changes.
func (k *KafkaCheckpoints) Save(ctx context.Context, pos canal.Position, state []canal.StateRow) error {
	recs := make([]sinks.CheckpointRecord, 0, len(state)+1)
	for _, r := range state {
		key, _ := json.Marshal([2]string{r.Scope, r.Key})
		recs = append(recs, sinks.CheckpointRecord{Key: k.Name + "/state/" + string(key), Value: r.Value})
	}
	value, _ := json.Marshal(savedPosition{File: pos.File, Pos: pos.Pos, GTIDSet: pos.GTIDSet})
	recs = append(recs, sinks.CheckpointRecord{Key: k.Name + "/position", Value: value})
	if err := k.Sink.Commit(ctx, recs); err != nil {
		return fmt.Errorf("committing Kafka transaction with checkpoint %s: %w", pos, err)
	}
	k.remember(pos)
	if k.mirror != nil && pos.File != k.mirroredFile {
		// After the commit: the row never names a position the topic does not hold.
		if err := k.mirror.Save(ctx, pos, nil); err != nil {
			return fmt.Errorf("remembering exactly-once checkpoint %s in %s: %w", pos, k.MirrorTable, err)
		}
		k.mirroredFile = pos.File
	}
	return nil
}

// lastSeen is the last checkpoint this process loaded or committed ("at"), else one the
// mirror remembers ("at or after": later commits of its file are not kept), else nil.
func (k *KafkaCheckpoints) lastSeen(ctx context.Context) (pos *canal.Position, at string, err error) {
	if k.Last != nil {
		if last := k.Last.Load(); last != nil {
			return last, "at", nil
		}
	}
	if k.mirror == nil {
		return nil, "", nil
	}
	kept, _, found, err := k.mirror.Load(ctx)
	if err != nil {
		return nil, "", fmt.Errorf("reading the exactly-once checkpoint remembered in %s: %w", k.MirrorTable, err)
	}
	if !found {
		return nil, "", nil
	}
	return &kept, "at or after", nil
}

func (k *KafkaCheckpoints) remember(pos canal.Position) {
	if k.Last != nil {
		k.Last.Store(&pos)
	}
}
