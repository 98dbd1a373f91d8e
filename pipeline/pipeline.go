package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/stocksync/stocksync/canal"
	"github.com/stocksync/stocksync/internal/shell"
	"github.com/stocksync/stocksync/rules"
	"github.com/stocksync/stocksync/sinks"
)

// Sink is where messages go. Emit queues; Flush blocks until every message emitted
// before it is acknowledged by the broker.
type Sink interface {
	Emit(ctx context.Context, m sinks.Message) error
	Flush(ctx context.Context) error
}

// Options configure one Pipeline.
type Options struct {
	Source canal.Config
	// CheckpointTable is schema.table on the source; CheckpointName tells pipelines apart.
	CheckpointTable    string
	CheckpointName     string
	CheckpointInterval time.Duration
	Rules              *rules.Set
	Sink               Sink
	Logger             *zap.Logger
	Metrics            *Metrics
	// Checkpoints keeps the checkpoint; nil keeps it in CheckpointTable on the source.
	Checkpoints Checkpointer
	// ExactlyOnce: Checkpoints commits a Kafka transaction, so it is saved from the
	// reading goroutine at a transaction boundary (no message of a later transaction may
	// slip into the Kafka transaction) instead of by the checkpoint loop after a Flush.
	ExactlyOnce bool
	// Snapshot is never, initial or when_needed (config `snapshot`); SnapshotChunkSize
	// the rows per primary-key chunk (0: the reader's default).
	Snapshot          string
	SnapshotChunkSize int
	// SnapshotPartAfter (exactly-once) is how long a snapshot's Kafka transaction may
	// stay open before the snapshot commits what it has published, with its progress, at
	// the end of a chunk, and goes on in a new one: the brokers abort a transaction open
	// longer than kafka.transaction_timeout, so the daemon sets half of it. 0: the
	// snapshot is one transaction whatever its length.
	SnapshotPartAfter time.Duration
	// ReadCheckpointTopic, when set (at-least-once with brokers of the daemon's own, not
	// the embedded development broker), reads kafka.checkpoint_topic: a start that finds
	// no at-least-once checkpoint, but the row remembering an exactly-once one, takes
	// that over after kafka.exactly_once was switched off (modeswitch.go).
	ReadCheckpointTopic func(ctx context.Context) (map[string][]byte, error)
	// Lease, when set (ha), must be held for every message handed to the sink and every
	// checkpoint saved; once it is not, Run ends with ErrLeaseLost.
	Lease Lease
	// Heartbeat, when its Topic is set, sends a heartbeat every Interval (heartbeat.go).
	Heartbeat Heartbeat
	// StopAt, when set, ends Run cleanly (flushed and checkpointed) once a transaction
	// ending at or after it has been read: catching up to a known point, as the
	// benchmark does.
	StopAt canal.Position
}

// Lease is leadership among daemons that share a source and a checkpoint (canal's
// Leadership): only the holder of a current lease publishes.
type Lease interface {
	Held() bool
}

// ErrLeaseLost ends a pipeline whose lease ran out or whose lock was lost: another daemon
// may lead now, so this one hands nothing more to the sink and saves no checkpoint.
var ErrLeaseLost = errors.New("the leader lease is no longer held")

// errCaughtUp ends the stream when StopAt is reached.
var errCaughtUp = errors.New("caught up to the stop position")

// Pipeline streams one source through one rule set into one sink. Run it once.
type Pipeline struct {
	opts   Options
	log    *zap.Logger
	m      *Metrics
	engine *rules.Engine
	stream *canal.Stream
	store  Checkpointer
	server *canal.Server

	nextRules    atomic.Pointer[rules.Set]    // a reload waiting for the next transaction boundary (installReload)
	started      atomic.Bool                  // the start position is fixed
	resyncs      chan resyncRequest           // one asked waits here to be served at a transaction boundary (resync.go)
	reread       *rereadJob                   // a resync's running re-read; the reading goroutine's
	rereadStatus atomic.Pointer[RereadStatus] // its progress, for other goroutines
	stopped      chan struct{}                // closed when Run returns
	// replayUntil, after a start from a checkpoint, is where the server's binlog ended
	// then: an earlier run may have published anything up to it (at least once, or
	// aborted exactly once), so no resync is served before the stream has read past it
	// (resync.go). Zero once it has. The reading goroutine's.
	replayUntil canal.Position

	mu      sync.Mutex
	pending pendingCheckpoint
	// saving is held (a token in it) by one saveCheckpoint from taking the pending state
	// to its commit: the checkpoint loop and the reading goroutine (a resync starting a
	// re-read) both save at-least-once, and a save that took an older position must not
	// commit after a newer one, or the checkpoint goes back with groups' older values.
	saving chan struct{}

	lastSaved     canal.Position
	lastSavedAt   time.Time
	emittedAtSave uint64
	emitted       atomic.Uint64
	// unsavedSince is the source timestamp (Unix seconds) of the oldest row change read
	// since the last checkpoint saved, 0 when there is none: what the lag counts from while
	// the broker has not acknowledged it (lag).
	unsavedSince atomic.Int64
	// lastRowAt is the source timestamp of the last row change read.
	lastRowAt atomic.Int64
	rowsRead  atomic.Uint64
	// emittedWhole counts the messages emitted up to the last transaction boundary the
	// reading goroutine finished (Commit or Idle, with any resync served there): past it,
	// the messages are of a transaction, or a re-read chunk, that is not whole yet.
	emittedWhole uint64
	// lastHeartbeat is when the last heartbeat was sent.
	lastHeartbeat time.Time
	// evalErrorsShown is the engine's EvalErrors as Metrics.RuleEvalErrors last showed it.
	evalErrorsShown int64
	// retentionCheckedAt is when checkRetention last ran.
	retentionCheckedAt time.Time
	// ruleMessages are Metrics.RuleMessages' counters by rule name, for Emit (the
	// reading goroutine's alone); lastRule and lastRuleMessages the last one used, found
	// again by its rule's header value (one array per rule) without a lookup.
	ruleMessages     map[string]prometheus.Counter
	lastRule         *byte
	lastRuleMessages prometheus.Counter
}

// pendingCheckpoint is the last committed transaction read and the rule state changed
// since the last save; guarded by Pipeline.mu.
type pendingCheckpoint struct {
	pos   canal.Position
	have  bool
	state map[stateKey][]byte
}

type stateKey struct{ rule, key string }

// New prepares a pipeline.
func New(opts Options) *Pipeline {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics(nil)
	}
	if opts.CheckpointInterval <= 0 {
		opts.CheckpointInterval = time.Second
	}
	return &Pipeline{opts: opts, log: opts.Logger, m: opts.Metrics, pending: pendingCheckpoint{state: map[stateKey][]byte{}},
		resyncs: make(chan resyncRequest, 1), stopped: make(chan struct{}), saving: make(chan struct{}, 1)}
}

// Reload swaps in a new rule set at the next transaction boundary.
func (p *Pipeline) Reload(set *rules.Set) { p.nextRules.Store(set) }

// Ready reports whether the start position is fixed and the binlog stream is open.
// (The broker's health is the caller's to add: the daemon's /readyz and stocksync_ready.)
func (p *Pipeline) Ready() bool {
	return p.started.Load() && p.stream != nil && p.stream.Open()
}

// Streamed reports whether the binlog stream was ever open: a failure after that is an
// outage to ride out, not a setting to fix.
func (p *Pipeline) Streamed() bool { return p.stream != nil && p.stream.Opened() }

// ErrRetryable marks failures that a restart from the checkpoint can get past: a lost
// connection to the source or the broker.
var ErrRetryable = errors.New("retryable")

// MarkRetryable wraps err so that Retryable reports true, leaving its message as it is.
func MarkRetryable(err error) error {
	if err == nil {
		return nil
	}
	return retryableError{err}
}

type retryableError struct{ err error }

func (e retryableError) Error() string        { return e.err.Error() }
func (e retryableError) Unwrap() error        { return e.err }
func (e retryableError) Is(target error) bool { return target == ErrRetryable }

// Retryable reports whether err is worth a restart from the checkpoint. Binlog settings
// that refuse the stream count: met after a first start, they are a SET GLOBAL made while
// the daemon ran, and a DBA sets them back (a first start reports them at once instead).
// So does a snapshot or seed that met a table altered under it: the restart reads anew.
func Retryable(err error) bool {
	return errors.Is(err, ErrRetryable) || errors.Is(err, canal.ErrUnreachable) || errors.Is(err, sinks.ErrSinkFailed) ||
		errors.Is(err, canal.ErrBinlogSettings) || errors.Is(err, canal.ErrTableChangedUnderSnapshot)
}

// Run connects, picks the start position (the checkpoint, or the server's current
// position on a first start), and streams until ctx is done or an error occurs. On a
// clean stop it flushes the sink and saves a last checkpoint before returning nil.
func (p *Pipeline) Run(ctx context.Context) error {
	defer close(p.stopped)
	p.m.leads() // until the daemon says it stands by (Metrics.Standby)
	server, err := canal.Connect(ctx, p.opts.Source)
	if err != nil {
		return err
	}
	defer server.Close()
	p.server = server
	store := p.opts.Checkpoints
	if kc, ok := store.(*KafkaCheckpoints); ok {
		if err := kc.openMirror(ctx, server.DB); err != nil {
			return err
		}
	}
	if store == nil {
		if store, err = canal.NewCheckpointStore(ctx, server.DB, p.opts.CheckpointTable, p.opts.CheckpointName); err != nil {
			return err
		}
	}
	if p.opts.Lease != nil {
		store = leasedCheckpoints{Checkpointer: store, lease: p.checkLease}
	}
	p.store = store
	start, state, found, err := p.loadCheckpoint(ctx, server)
	if err != nil {
		return err
	}
	if found {
		p.log.Info("resuming from checkpoint", zap.Stringer("pos", start), zap.Int("state_rows", len(state)))
	}
	// A message the rules make at a commit, of no change (a group taken back or emptied),
	// carries the source server's id, as its changes do.
	p.engine = rules.NewEngine(p.opts.Rules, server.ID)
	p.m.RuleEvalErrors.Reset() // counted since this start, as the engine counts them
	p.engine.SetLogger(p.log.Named("rules"))
	if err := p.engine.Restore(fromStateRows(ruleStateRows(state))); err != nil {
		return fmt.Errorf("restoring rule state from checkpoint %s: %w", start, err)
	}
	p.lastSaved, p.lastSavedAt = start, time.Now()
	if found {
		p.showCheckpoint(start) // what a restart resumes from, not 0 until the first save
	}
	if start, err = p.startPosition(ctx, server, start, state, found); err != nil {
		return err
	}
	if found {
		if p.replayUntil, err = server.CurrentPosition(ctx); err != nil {
			return fmt.Errorf("reading where the server's binlog ends, which an earlier run may have published up to: %w", err)
		}
	}
	p.stream = canal.NewStream(p.opts.Source, server, p.filterFor(p.engine.Set()), p.log)
	if err := p.resumeReread(ctx, state); err != nil {
		return err
	}
	p.started.Store(true)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	var caughtUp atomic.Bool
	go func() {
		err := p.stream.Run(runCtx, start, p)
		switch {
		case errors.Is(err, errCaughtUp):
			caughtUp.Store(true)
			err = nil
		case errors.Is(err, ErrLeaseLost):
			// Not a failure to retry: the daemon goes back to waiting for the lock.
		case errors.As(err, new(*sinks.TooLargeError)):
			// Nor is a message no broker takes: a restart would read it again.
		case errors.Is(err, canal.ErrUnreadableTable):
			// Nor a table a seed could not read: a restart after the GRANT would fold
			// its changes onto totals without its rows.
		case err != nil && !errors.Is(err, context.Canceled):
			err = MarkRetryable(err)
		}
		errc <- err
	}()
	go func() { errc <- p.checkpointLoop(runCtx) }()
	lagDone := make(chan struct{})
	go func() { defer close(lagDone); p.lagLoop(runCtx) }()
	first := <-errc
	cancel()
	second := <-errc
	<-lagDone
	if p.reread != nil {
		p.endReread(ctx, ErrNotStreaming)
	}
	quiet := func(err error) bool { return err == nil || errors.Is(err, context.Canceled) }
	if (ctx.Err() != nil || caughtUp.Load()) && quiet(first) && quiet(second) {
		if p.opts.ExactlyOnce && p.emitted.Load() != p.emittedWhole {
			// Stopped inside a transaction: committing the open Kafka transaction would
			// publish part of it, and the next start would publish it again whole.
			p.log.Warn("stopped inside a transaction: the open Kafka transaction is left to be aborted; the next start reads on from the checkpoint",
				zap.Stringer("checkpoint", p.lastSaved))
			return nil
		}
		// A clean stop: everything read so far is emitted; make it durable and remember it.
		fctx, fcancel := context.WithTimeout(context.Background(), 8*time.Second)
		defer fcancel()
		if err := p.saveCheckpoint(fctx, p.store, true); err != nil {
			return fmt.Errorf("saving the last checkpoint on shutdown: %w", err)
		}
		p.log.Info("stopped", zap.Stringer("checkpoint", p.lastSaved))
		return nil
	}
	if quiet(first) {
		first = second
	}
	return first
}

// filterFor matches the tables the set matches, never stocksync's own checkpoint tables.
func (p *Pipeline) filterFor(set *rules.Set) canal.TableFilter {
	return tableFilter{set: set, ownTables: canal.CheckpointTables(p.opts.CheckpointTable)}
}

type tableFilter struct {
	set       *rules.Set
	ownTables []string // canal.CheckpointTables, as schema.table
}

func (f tableFilter) Matches(schema, table string) bool {
	return !f.own(schema, table) && f.set.Matches(schema, table)
}

func (f tableFilter) StatefulTables(schema, table string) bool {
	return !f.own(schema, table) && f.set.StatefulTables(schema, table)
}

func (f tableFilter) StatefulSchema(schema string) bool { return f.set.StatefulSchema(schema) }

func (f tableFilter) StatefulAlone(schema, table string) bool {
	return !f.own(schema, table) && f.set.StatefulAlone(schema, table)
}

func (f tableFilter) PatternRule(schema, table string) (string, bool) {
	if f.own(schema, table) {
		return "", false
	}
	return f.set.PatternRule(schema, table)
}

func (f tableFilter) own(schema, table string) bool {
	for _, t := range f.ownTables {
		if len(t) == len(schema)+1+len(table) && strings.HasPrefix(t, schema) && t[len(schema)] == '.' && strings.HasSuffix(t, table) {
			return true
		}
	}
	return false
}

// Emit counts and forwards to the sink; the engine emits through it.
func (p *Pipeline) Emit(ctx context.Context, m sinks.Message) error {
	if err := p.checkLease(); err != nil {
		return err
	}
	p.emitted.Add(1)
	p.m.MessagesEmitted.Inc()
	for _, h := range m.Headers {
		if h.Key == rules.HeaderRule {
			p.ruleCounter(h.Value).Inc()
			break
		}
	}
	return p.opts.Sink.Emit(ctx, m)
}

// ruleCounter is the message counter of the rule named name.
func (p *Pipeline) ruleCounter(name []byte) prometheus.Counter {
	if len(name) > 0 && &name[0] == p.lastRule {
		return p.lastRuleMessages
	}
	c, ok := p.ruleMessages[string(name)]
	if !ok {
		if p.ruleMessages == nil {
			p.ruleMessages = map[string]prometheus.Counter{}
		}
		c = p.m.RuleMessages.WithLabelValues(string(name))
		p.ruleMessages[string(name)] = c
	}
	if len(name) > 0 {
		p.lastRule, p.lastRuleMessages = &name[0], c
	}
	return c
}

// checkLease returns ErrLeaseLost when the pipeline has a lease and it is not held.
func (p *Pipeline) checkLease() error {
	if p.opts.Lease != nil && !p.opts.Lease.Held() {
		return ErrLeaseLost
	}
	return nil
}

// Row implements canal.Handler.
func (p *Pipeline) Row(ctx context.Context, c *canal.RowChange) error {
	p.m.EventsRead.Inc()
	at := c.Source.TsMs / 1000
	p.lastRowAt.Store(at)
	p.rowsRead.Add(1)
	p.unsavedSince.CompareAndSwap(0, at)
	if err := p.engine.Row(ctx, c, p); err != nil {
		return err
	}
	if p.engine.SeedsWanted() {
		// A summed column changed type class (rules/sumtype.go): the rule is seeded again
		// here as a reload's changed rule is. The snapshot's position follows this
		// transaction, so the rule skips the transaction's other changes, which it holds.
		_, err := p.seedRules(ctx, p.server)
		return err
	}
	return nil
}

// Commit implements canal.Handler: rules that fold a transaction emit now, and the
// position becomes the checkpoint candidate once the sink acknowledges.
func (p *Pipeline) Commit(ctx context.Context, pos canal.Position) error {
	state, err := p.engine.Commit(ctx, pos, p)
	if err != nil {
		return err
	}
	p.m.Transactions.Inc()
	if n := p.engine.EvalErrors(); n != p.evalErrorsShown {
		p.evalErrorsShown = n
		for rule, n := range p.engine.EvalErrorsByRule() {
			p.m.RuleEvalErrors.WithLabelValues(rule).Set(float64(n))
		}
	}
	p.pend(pos, state)
	if err := p.serveResync(ctx, false); err != nil {
		return err
	}
	if err := p.heartbeat(ctx); err != nil {
		return err
	}
	caughtUp := !p.opts.StopAt.IsZero() && pos.Compare(p.opts.StopAt) >= 0
	if p.opts.ExactlyOnce && !caughtUp && (time.Since(p.lastSavedAt) >= p.opts.CheckpointInterval || p.transactionFull()) {
		if err := p.saveCheckpoint(ctx, p.store, false); err != nil {
			return err
		}
	}
	p.emittedWhole = p.emitted.Load()
	if caughtUp {
		return errCaughtUp
	}
	return nil
}

// pend makes pos, with the rule state changed up to it, the next checkpoint to save.
func (p *Pipeline) pend(pos canal.Position, state []rules.StateEntry) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pending.pos, p.pending.have = pos, true
	for _, e := range state {
		p.pending.state[stateKey{e.Rule, e.Key}] = e.Value
	}
}

// commitAt publishes what the rules hold for pos with no transaction read (a seed at the
// start, before the stream replays from pos; a reload's at idle) and saves it with the
// checkpoint at pos at once, as the next transaction may be long in coming.
func (p *Pipeline) commitAt(ctx context.Context, pos canal.Position) error {
	state, err := p.engine.Commit(ctx, pos, p)
	if err != nil {
		return fmt.Errorf("publishing at %s: %w", pos, err)
	}
	p.pend(pos, state)
	p.emittedWhole = p.emitted.Load()
	if err := p.saveCheckpoint(ctx, p.store, true); err != nil {
		return fmt.Errorf("saving the rules' state with the checkpoint %s: %w", pos, err)
	}
	return nil
}

// Begin implements canal.TransactionBeginner: a reload waiting is installed before the
// transaction's first event is matched, so every transaction the stream reads after
// Reload returned is filtered and evaluated by the new set, and none by two sets. What
// the reload publishes goes out with that transaction's Commit.
func (p *Pipeline) Begin(ctx context.Context) error {
	_, err := p.installReload(ctx)
	return err
}

// installReload installs a reload waiting, between two transactions of the stream: the
// stream's filter follows it, a running re-read that it changes ends, and the
// aggregate/transition rules it brought without state are seeded. A reload during a
// snapshot waits for the stream, so that what it adds is seeded from there rather than
// folded from the chunks left. It reports whether it installed one; what that publishes
// (the seed, the take-backs of the rules it changed) goes out with the engine's next
// Commit: of the transaction Begin is of, or publishReload's at idle.
func (p *Pipeline) installReload(ctx context.Context) (bool, error) {
	if p.nextRules.Load() == nil { // at every transaction: a load, not a swap
		return false, nil
	}
	next := p.nextRules.Swap(nil)
	if next == nil {
		return false, nil
	}
	if p.reread != nil && !p.reread.sameRules(next) {
		if err := p.endReread(ctx, fmt.Errorf("%w: a reload during the re-read of the tables of %v removed or changed what those rules read; ask again",
			errResyncFailed, p.reread.names)); err != nil {
			return false, err
		}
	}
	p.warnTopicsMoved(p.engine.Set(), next)
	p.engine.Install(next)
	p.stream.SetFilter(p.filterFor(next))
	p.log.Info("rules reloaded at a transaction boundary", zap.Stringer("after", p.streamPosition()), zap.Int("rules", len(next.Rules())))
	_, err := p.seedRules(ctx, p.server)
	return true, err
}

// publishReload publishes what a reload installed while the source is quiet brings (the
// take-backs and seed of the rules it added or changed, the deletion of a removed rule's
// saved state) at the stream's position, and saves it with the checkpoint there at once,
// as a start does with its seed (commitAt). Left for the next transaction's Commit, it
// could wait for hours on a closed shop, while a search index kept the old definition's
// flags. The stream is between transactions, so the position is the end of the last one
// read: the checkpoint stays at a transaction boundary, and exactly-once the messages are
// committed with it in one Kafka transaction.
func (p *Pipeline) publishReload(ctx context.Context) error {
	pos := p.streamPosition()
	if err := p.commitAt(ctx, pos); err != nil {
		return fmt.Errorf("the reloaded rules' seed and take-backs, the source being quiet: %w", err)
	}
	p.log.Info("rules reload published at once, the source being quiet: its seed and take-backs are saved with the checkpoint", zap.Stringer("pos", pos))
	return nil
}

// warnTopicsMoved warns of each aggregate or transition rule that next keeps under the
// same definition but publishes on another topic. Its state goes on and nothing is
// seeded, so the new topic gets only the groups that change from now on, and the old
// topic keeps the values it last had: a resync of the rule fills the new one. Only a
// reload can tell; a start from a checkpoint does not know the topic the state was
// published on (rules.md says so).
func (p *Pipeline) warnTopicsMoved(old, next *rules.Set) {
	for _, r := range next.Rules() {
		was := old.Rule(r.Name())
		if !r.Stateful() || was == nil || !was.Stateful() || was.Signature() != r.Signature() || was.Topic() == r.Topic() {
			continue
		}
		p.log.Warn("rules reload: an aggregate or transition rule publishes on another topic, under the same definition: the new topic gets only the groups that change from now on, "+
			"the old one keeps their last values; resync the rule to publish every group on the new topic",
			zap.String("rule", r.Name()), zap.String("old_topic", was.Topic()), zap.String("new_topic", r.Topic()),
			zap.String("resync", shell.Line("stocksync", "resync", r.Name())))
	}
}

// Emptied implements canal.TableEmptier: DDL emptied a table whose aggregate and
// transition rules read it alone, so their groups are all empty from that statement on,
// published and saved at its Commit.
func (p *Pipeline) Emptied(ctx context.Context, schema, table string, src canal.Source) error {
	return p.engine.Empty(schema, table, src)
}

// ReseedAfter implements canal.TableReseeder: DDL moved or removed rows of tables that
// aggregate or transition rules read, without row events (a TRUNCATE of a table a rule
// reads with others, a rename, DROP DATABASE). Those rules are seeded again here, from a
// consistent snapshot of their tables, as a reload's changed rule is, but against what
// they hold: at the statement's Commit each group that changed is published, one left
// without rows as deleted. The snapshot's position follows the statement, so they skip
// the changes in between, which it holds.
func (p *Pipeline) ReseedAfter(ctx context.Context, ddl canal.RowlessChange) error {
	names := p.engine.PrepareReseed(p.engine.Set().StatefulRulesReading(ddl.Tables, ddl.Schemas), ddl.Src)
	if len(names) == 0 {
		return nil
	}
	p.log.Warn("DDL moved or removed rows of tables that aggregate or transition rules read, without row events: the rules are seeded again from their tables as they are now, and the groups that changed are published",
		zap.String("statement", ddl.What), zap.Strings("rules", names), zap.String("file", ddl.Src.File), zap.Uint32("pos", ddl.Src.Pos))
	_, err := p.seedRules(ctx, p.server)
	return err
}

// Idle implements canal.Handler: a reload waiting is installed and what it publishes goes
// out at once (publishReload); a resync asked for runs; exactly-once, the open Kafka
// transaction is committed when the source goes quiet, so its last messages do not wait
// for the next transaction.
func (p *Pipeline) Idle(ctx context.Context) error {
	reloaded, err := p.installReload(ctx)
	if err != nil {
		return err
	}
	if reloaded {
		if err := p.publishReload(ctx); err != nil {
			return err
		}
	}
	if err := p.serveResync(ctx, true); err != nil {
		return err
	}
	if err := p.heartbeat(ctx); err != nil {
		return err
	}
	p.emittedWhole = p.emitted.Load()
	if !p.opts.ExactlyOnce || time.Since(p.lastSavedAt) < p.opts.CheckpointInterval {
		return nil
	}
	// Messages of a quiet source (a heartbeat) are committed at the same position.
	return p.saveCheckpoint(ctx, p.store, p.emitted.Load() != p.emittedAtSave)
}

// exactlyOnceMaxMessages bounds the messages of one Kafka transaction (it still always
// holds whole MySQL transactions).
const exactlyOnceMaxMessages = 200000

// transactionFull reports whether the open Kafka transaction (exactly-once) holds
// exactlyOnceMaxMessages messages: time to commit it at the next boundary.
func (p *Pipeline) transactionFull() bool {
	return p.emitted.Load()-p.emittedAtSave >= exactlyOnceMaxMessages
}

// checkpointLoop keeps the metrics current and, at-least-once, saves the checkpoint.
func (p *Pipeline) checkpointLoop(ctx context.Context) error {
	t := time.NewTicker(p.opts.CheckpointInterval)
	defer t.Stop()
	var skippedSeen uint64 // of this pipeline's stream
	// The binlogs' retention of the checkpoint: once a minute, the first at the first tick
	// unless the start checked it (startPosition).
	lastRetentionCheck := p.retentionCheckedAt
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		skipped := p.stream.Undecoded()
		p.m.EventsSkipped.Add(float64(skipped - skippedSeen))
		skippedSeen = skipped
		if !p.opts.ExactlyOnce { // exactly-once, Commit saves at transaction boundaries
			if err := p.saveCheckpoint(ctx, p.store, false); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return MarkRetryable(err)
			}
		}
		if time.Since(lastRetentionCheck) > time.Minute {
			lastRetentionCheck = time.Now()
			pos := p.lastSavedPosition()
			r, err := p.server.Retention(ctx, pos)
			switch {
			case err == nil:
				p.checkRetention(r, pos)
			case ctx.Err() == nil:
				p.m.CheckpointBinlogsBehind.Set(-1)
				p.log.Warn("checking whether the server's binlogs still hold the checkpoint", zap.Stringer("checkpoint", pos), zap.Error(err))
			}
		}
	}
}

// lagEvery is how often the lag gauge is set.
const lagEvery = time.Second

// readingWithin is how recently the stream must have read an event (a heartbeat at
// least, about every second) to count as reading.
const readingWithin = 3 * time.Second

// lagLoop sets the lag every lagEvery, on its own: the checkpoint loop waits for the
// broker, and the lag must go on growing while it waits. While the stream does not read
// (it waits for the server or for a seed), and once it ended, the lag grows on from its
// value when it last read (lagClock).
func (p *Pipeline) lagLoop(ctx context.Context) {
	defer func() {
		// The stream ended (ctx is done once it did): its last read counts, if recent.
		p.m.lag.set(p.lag(), time.Since(p.stream.LastRead()) < readingWithin, time.Now())
		p.m.lag.stopped()
	}()
	t := time.NewTicker(lagEvery)
	defer t.Stop()
	for {
		p.m.lag.set(p.lag(), p.stream.Reading(readingWithin), time.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// lag is how far behind the source what the broker acknowledged is: from the oldest row
// change read but not yet checkpointed (acknowledged, then saved) when there is one, so
// that it grows while the broker stalls; otherwise how far the last event read is behind
// the source's clock (0 when caught up and idle).
func (p *Pipeline) lag() time.Duration {
	if since := p.unsavedSince.Load(); since != 0 {
		return max(0, time.Since(time.Unix(since, 0)))
	}
	return p.stream.Lag()
}

// idleSaveEvery is how often a checkpoint that only moves past transactions no rule
// matched (including stocksync's own checkpoint writes) is saved, within one binlog file.
// (Each save is itself a transaction, so saving at every interval would move the
// position forever.) A position in a newer file is saved at the next interval, so that a
// DBA's purge of the files before the current one never takes the checkpoint's file
// while only other tables change.
const idleSaveEvery = time.Minute

// exactlyOnceSaveWithin bounds an exactly-once save, which a stop does not cut short.
const exactlyOnceSaveWithin = 8 * time.Second

// saveCheckpoint waits for the sink to acknowledge every message emitted so far, then
// saves the last committed position with the rule state changed up to it. Exactly-once,
// the save is a Kafka transaction's commit, which a stop (ctx done) does not cut short:
// cut short, its outcome would be unknown and the sink failed, so the last save on
// shutdown could not be made. A broker that does not answer still ends it, after
// exactlyOnceSaveWithin. Saves run one at a time, each taking what is pending when its
// turn comes, so the checkpoint only moves forward: the reading goroutine pends positions
// in binlog order, and a save waiting for its turn takes the newer one.
func (p *Pipeline) saveCheckpoint(ctx context.Context, store Checkpointer, force bool) error {
	if p.opts.ExactlyOnce {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), exactlyOnceSaveWithin)
		defer cancel()
	}
	select {
	case p.saving <- struct{}{}:
		defer func() { <-p.saving }()
	case <-ctx.Done():
		return fmt.Errorf("waiting for another checkpoint save to end: %w", ctx.Err())
	}
	emitted := p.emitted.Load()
	p.mu.Lock()
	// The same position again only with state to save (a re-read's progress), or when
	// forced with messages since the last save (a resync's, exactly-once: they are
	// committed with it).
	if !p.pending.have || (p.pending.pos == p.lastSaved && len(p.pending.state) == 0 && (!force || emitted == p.emittedAtSave)) ||
		(!force && emitted == p.emittedAtSave && len(p.pending.state) == 0 && time.Since(p.lastSavedAt) < idleSaveEvery &&
			p.pending.pos.File == p.lastSaved.File) {
		p.mu.Unlock()
		return nil
	}
	pos, state := p.pending.pos, p.pending.state
	p.pending.state = map[stateKey][]byte{}
	rowsAtPos := p.rowsRead.Load() // rows read past pos make the lag count on from them
	p.mu.Unlock()
	// A save that fails gives its state back: the next save (say, the last one on
	// shutdown, after this one was cut short) must not record pos without it.
	giveBack := func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		for k, v := range state {
			if _, newer := p.pending.state[k]; !newer {
				p.pending.state[k] = v
			}
		}
	}

	// Every message of transactions up to pos was emitted before this call. (Exactly-once,
	// the Save below commits them with the checkpoint.)
	if !p.opts.ExactlyOnce {
		if err := p.opts.Sink.Flush(ctx); err != nil {
			giveBack()
			return fmt.Errorf("waiting for the broker to acknowledge up to %s: %w", pos, err)
		}
	}
	rows := make([]canal.StateRow, 0, len(state))
	for k, v := range state {
		rows = append(rows, canal.StateRow{Scope: k.rule, Key: k.key, Value: v})
	}
	if err := store.Save(ctx, pos, rows); err != nil {
		giveBack()
		return err
	}
	p.mu.Lock()
	p.lastSaved = pos
	p.mu.Unlock()
	p.lastSavedAt, p.emittedAtSave = time.Now(), emitted
	if p.rowsRead.Load() == rowsAtPos {
		p.unsavedSince.Store(0)
	} else { // read while saving: counted from the last of them (the lag is at least that)
		p.unsavedSince.Store(p.lastRowAt.Load())
	}
	p.showCheckpoint(pos)
	p.log.Debug("checkpoint saved", zap.Stringer("pos", pos), zap.Int("state_rows", len(rows)))
	return nil
}

// showCheckpoint sets the checkpoint metrics to pos, saved (or loaded) now.
func (p *Pipeline) showCheckpoint(pos canal.Position) {
	p.m.CheckpointPos.Set(float64(pos.Pos))
	p.m.CheckpointFile.Set(binlogFileNumber(pos.File))
	p.m.CheckpointSaved.SetToCurrentTime()
}

// lastSavedPosition is the position of the last saved checkpoint.
func (p *Pipeline) lastSavedPosition() canal.Position {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastSaved
}

func binlogFileNumber(file string) float64 {
	i := strings.LastIndexByte(file, '.')
	n, _ := strconv.ParseFloat(file[i+1:], 64)
	return n
}

// ruleStateRows are the state rows of rules: not the progress of a snapshot or a re-read.
func ruleStateRows(rows []canal.StateRow) []canal.StateRow {
	out := rows[:0:0]
	for _, r := range rows {
		if !isProgress(r) {
			out = append(out, r)
		}
	}
	return out
}

// KeptOnMove reports whether a state row is kept when an operator moves the checkpoint
// (stocksync checkpoint set): a rule's group, not its seed marker nor a snapshot's or a
// re-read's progress, which are wrong at another position. Without its marker the rule is
// seeded again at the next start, and takes back each kept group its seed does not publish
// (one whose rows vanished meanwhile).
func KeptOnMove(r canal.StateRow) bool {
	return !isProgress(r) && !rules.IsSeedMarker(r.Key)
}

// isProgress reports whether a state row is a snapshot's or a re-read's progress.
func isProgress(r canal.StateRow) bool {
	return r.Scope == snapshotScope || r.Scope == rereadScope
}

// stateValue is the value of the state row scope/key among rows; nil if there is none.
func stateValue(rows []canal.StateRow, scope, key string) []byte {
	for _, r := range rows {
		if r.Scope == scope && r.Key == key {
			return r.Value
		}
	}
	return nil
}

// keepState records a state row of stocksync's own for the next checkpoint; nil deletes it.
func (p *Pipeline) keepState(scope, key string, value []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pending.state[stateKey{scope, key}] = value
}

func fromStateRows(rows []canal.StateRow) []rules.StateEntry {
	out := make([]rules.StateEntry, len(rows))
	for i, r := range rows {
		out[i] = rules.StateEntry{Rule: r.Scope, Key: r.Key, Value: r.Value}
	}
	return out
}
