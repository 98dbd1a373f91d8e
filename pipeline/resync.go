package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/stocksync/stocksync/canal"
	"github.com/stocksync/stocksync/rules"
	"github.com/stocksync/stocksync/sinks"
)

// ErrNotStreaming answers a resync asked of a pipeline that is not streaming: starting,
// taking a snapshot, restarting after a failure, or stopped.
var ErrNotStreaming = errors.New("the pipeline is not streaming")

// ErrResyncRules marks a resync refused for its rule names or keys; nothing was published.
var ErrResyncRules = errors.New("resync refused")

// ErrRereadInterrupted answers a resync whose re-read stopped with the stream (the daemon
// stopped, the broker failed, the lease ran out) before its end. Its progress is saved
// with the checkpoint: the re-read goes on from its last acknowledged chunk once a
// pipeline streams from that checkpoint again, in this daemon or in the standby.
var ErrRereadInterrupted = errors.New("the re-read was interrupted")

// ResyncResult is what a resync republished, the binlog position its state is of, and
// how the re-read of its row rules' tables went, if it named any.
type ResyncResult struct {
	Position string              `json:"position"`
	Reread   *RereadResult       `json:"reread,omitempty"`
	Rules    []rules.ResyncCount `json:"rules"`
}

// RereadResult is how the tables of a resync's row rules were re-read: in primary-key
// chunks, each of its own consistent snapshot and published where the stream reached
// that snapshot's position, from the first chunk's position to the last one's.
type RereadResult struct {
	Tables []string `json:"tables"`
	Chunks int      `json:"chunks"`
	From   string   `json:"from,omitempty"`
	To     string   `json:"to,omitempty"`
	// ReadAgain counts chunks read a second time because the stream went past their
	// position without stopping at it.
	ReadAgain int `json:"read_again,omitempty"`
}

type resyncRequest struct {
	req   rules.ResyncRequest
	reply chan resyncReply // buffered: the reading goroutine never waits on the caller
}

type resyncReply struct {
	result ResyncResult
	err    error
}

// Resync republishes the current state of the aggregate and transition rules req names
// (rules.Engine.Resync) at the next transaction boundary (within about a second on an
// idle source, at the binlog heartbeat), and re-reads the tables of the row rules it
// names chunk by chunk while the stream goes on (rereadJob). It returns once the broker
// has acknowledged everything (exactly-once: once the Kafka transaction committed). A
// resync asked while a re-read runs waits for it. A wrong request is refused with
// ErrResyncRules and publishes nothing. A ctx that ends first only stops the waiting: the
// resync still runs.
func (p *Pipeline) Resync(ctx context.Context, req rules.ResyncRequest) (ResyncResult, error) {
	if !p.Ready() {
		return ResyncResult{}, ErrNotStreaming
	}
	asked := resyncRequest{req: req, reply: make(chan resyncReply, 1)}
	select {
	case p.resyncs <- asked:
	case <-p.stopped:
		return ResyncResult{}, ErrNotStreaming
	case <-ctx.Done():
		return ResyncResult{}, ctx.Err()
	}
	select {
	case r := <-asked.reply:
		return r.result, r.err
	case <-p.stopped:
		select {
		case r := <-asked.reply: // answered just before the end
			return r.result, r.err
		default:
			return ResyncResult{}, ErrNotStreaming
		}
	case <-ctx.Done():
		return ResyncResult{}, ctx.Err()
	}
}

// serveResync, at a transaction boundary of the reading goroutine (idle: the source is
// quiet), moves a running re-read on, or else runs a resync asked for, if any. An error
// it returns (the broker failed, the lease ran out) ends the stream: the messages already
// handed over may be only part of the resync.
func (p *Pipeline) serveResync(ctx context.Context, idle bool) error {
	if p.reread != nil {
		return p.continueReread(ctx, idle)
	}
	if !p.pastEarlierRuns(idle) {
		return nil
	}
	var asked resyncRequest
	select {
	case asked = <-p.resyncs:
	default:
		return nil
	}
	result, rowRules, err := p.resyncState(ctx, asked.req)
	if err == nil && len(rowRules) > 0 {
		if err = p.startReread(ctx, asked, result, rowRules); err == nil {
			// Saved at once (exactly-once, committed with the resync's other messages):
			// from here on, a stop leaves a re-read to go on with.
			if err := p.saveCheckpoint(ctx, p.store, true); err != nil {
				return p.endReread(ctx, err)
			}
			return p.continueReread(ctx, idle)
		}
	}
	if err == nil {
		err = p.acknowledged(ctx, result)
	}
	asked.reply <- resyncReply{result, err}
	if errors.Is(err, ErrResyncRules) || errors.Is(err, errResyncFailed) {
		return nil
	}
	return err
}

// pastEarlierRuns reports whether the stream has read past everything an earlier run may
// have published (replayUntil), or is idle, so read past it too. Before that, a resync
// waits: its point would be older than messages already on the topics, and a consumer
// that drops repeats by source would keep its older values over the replayed changes.
func (p *Pipeline) pastEarlierRuns(idle bool) bool {
	if p.replayUntil.IsZero() {
		return true
	}
	if idle || p.streamPosition().Compare(p.replayUntil) >= 0 {
		p.replayUntil = canal.Position{}
		return true
	}
	return false
}

// resyncState checks req and publishes the state of the aggregate and transition rules
// it names; it returns the row rules it names, whose tables are re-read.
func (p *Pipeline) resyncState(ctx context.Context, req rules.ResyncRequest) (ResyncResult, []string, error) {
	rowRules, err := p.engine.Set().CheckResync(req)
	if err != nil {
		return ResyncResult{}, nil, fmt.Errorf("%w: %w", ErrResyncRules, err)
	}
	pos := p.streamPosition()
	counts, err := p.engine.Resync(ctx, req, p.server.SourceAt(pos), p)
	if err != nil {
		return ResyncResult{}, nil, err
	}
	return ResyncResult{Position: pos.String(), Rules: counts}, rowRules, nil
}

// streamPosition is the end of the last transaction the stream read (or its start).
func (p *Pipeline) streamPosition() canal.Position {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.pending.have {
		p.pending.pos, p.pending.have = p.lastSaved, true
	}
	return p.pending.pos
}

// acknowledged waits until the broker has what a resync published: exactly-once, the
// messages are in the open Kafka transaction, committed here with the checkpoint.
func (p *Pipeline) acknowledged(ctx context.Context, result ResyncResult) error {
	var err error
	if p.opts.ExactlyOnce {
		err = p.saveCheckpoint(ctx, p.store, true)
	} else {
		err = p.opts.Sink.Flush(ctx)
	}
	if err != nil {
		return fmt.Errorf("waiting for the broker to acknowledge the resync at %s: %w", result.Position, err)
	}
	p.log.Info("resync published", zap.String("pos", result.Position), zap.Any("reread", result.Reread), zap.Any("rules", result.Rules))
	return nil
}

// rereadJob re-reads the tables of a resync's row rules, an incremental snapshot (as
// Debezium's, with the snapshots' own binlog positions for watermarks): the reading
// goroutine reads one primary-key chunk at a boundary, in a consistent snapshot at
// position A, and hands its rows to those rules alone where the stream stands exactly
// at A, so that every change before A was published before the rows and every change
// after A follows them. The stream never waits longer than one chunk's read. Up to
// rereadAhead chunks wait at once, so that a busy stream, which reaches a chunk's
// position only some time after it was read, publishes several chunks in that time. A
// chunk whose position the stream went past without stopping at it is read again, with
// the chunks read after it.
type rereadJob struct {
	p       *Pipeline
	asked   resyncRequest
	result  ResyncResult
	names   []string
	reader  *canal.ChunkReader
	ahead   []*canal.Chunk // read, waiting in order for the stream to reach their At
	read    bool           // the reader has handed out every chunk
	rows    int64          // published, over every run of this re-read
	since   time.Time
	lastLog time.Time
}

// RereadStatus is how far the running re-read has come (GET /admin/resync).
type RereadStatus struct {
	Rules []string `json:"rules"`
	RereadResult
	Rows int64 `json:"rows"`
	// Resumed: the re-read went on after a stop (a restart, a takeover); Since is when
	// this pipeline began it or went on with it.
	Resumed bool      `json:"resumed,omitempty"`
	Since   time.Time `json:"since"`
}

// Reread reports the running re-read, if any; safe from any goroutine.
func (p *Pipeline) Reread() (RereadStatus, bool) {
	if s := p.rereadStatus.Load(); s != nil {
		return *s, true
	}
	return RereadStatus{}, false
}

// runReread makes j the running re-read.
func (p *Pipeline) runReread(j *rereadJob) {
	p.reread = j
	j.since, j.lastLog = time.Now(), time.Now()
	p.m.RereadRunning.Set(1)
	j.showStatus()
}

// showStatus publishes a copy of j's progress for Reread and the metrics.
func (j *rereadJob) showStatus() {
	rr := *j.result.Reread
	rr.Tables = slices.Clone(rr.Tables)
	j.p.rereadStatus.Store(&RereadStatus{Rules: slices.Clone(j.names), RereadResult: rr, Rows: j.rows,
		Resumed: j.asked.reply == nil, Since: j.since}) // nobody asked this pipeline: it went on after a stop
	j.p.m.RereadChunks.Set(float64(rr.Chunks))
}

// sameRules reports whether set has the job's rules, as row rules reading the same tables:
// a reload that keeps them lets the re-read go on.
func (j *rereadJob) sameRules(set *rules.Set) bool {
	old := j.p.engine.Set()
	for _, n := range j.names {
		r := set.Rule(n)
		if r == nil || r.Stateful() || r.Signature() != old.Rule(n).Signature() {
			return false
		}
	}
	return true
}

// rereadAhead bounds the chunks read and not yet published.
const rereadAhead = 4

func (p *Pipeline) startReread(ctx context.Context, asked resyncRequest, result ResyncResult, names []string) error {
	reader, err := p.readChunksOf(ctx, names)
	if err != nil {
		return fmt.Errorf("%w: %w", errResyncFailed, err)
	}
	result.Reread = &RereadResult{Tables: reader.Tables()}
	for _, n := range names {
		result.Rules = append(result.Rules, rules.ResyncCount{Rule: n})
	}
	j := &rereadJob{p: p, asked: asked, result: result, names: names, reader: reader}
	if err := j.saveProgress(canal.ChunkCursor{}); err != nil {
		reader.Close()
		return fmt.Errorf("%w: %w", errResyncFailed, err)
	}
	p.runReread(j)
	p.log.Info("resync: re-reading the tables of row rules chunk by chunk", zap.Strings("rules", names),
		zap.Strings("tables", result.Reread.Tables))
	return nil
}

// readChunksOf prepares the chunked read of the tables of the named rules.
func (p *Pipeline) readChunksOf(ctx context.Context, names []string) (*canal.ChunkReader, error) {
	set := p.engine.Set()
	filter := scopedFilter{TableFilter: p.filterFor(set), within: set.TablesOf(names)}
	reader, err := p.server.ReadChunks(ctx, filter, p.opts.SnapshotChunkSize, p.log.Named("reread"))
	if err != nil {
		return nil, fmt.Errorf("preparing the re-read of the tables of %v: %w", names, err)
	}
	return reader, nil
}

// rereadScope and rereadKey name the state row that holds a running re-read's progress
// (rereadProgress). It is saved with the checkpoints after each published chunk, deleted
// when the re-read ends or fails, and read on start, so that a re-read stopped with the
// stream goes on from its last saved chunk, in this daemon or in the standby.
const (
	rereadScope = "stocksync.reread"
	rereadKey   = "progress"
)

// rereadProgress is a re-read's saved progress: its result so far, the signatures of its
// rules (it goes on only under the same ones) and where its next chunk begins.
type rereadProgress struct {
	Result     ResyncResult      `json:"result"`
	Rules      []string          `json:"rules"` // the row rules re-read
	Signatures map[string]string `json:"signatures"`
	Next       canal.ChunkCursor `json:"next"`
}

// saveProgress records, for the next checkpoint, that the re-read goes on at next.
func (j *rereadJob) saveProgress(next canal.ChunkCursor) error {
	prog := rereadProgress{Result: j.result, Rules: j.names, Signatures: map[string]string{}, Next: next}
	set := j.p.engine.Set()
	for _, n := range j.names {
		prog.Signatures[n] = set.Rule(n).Signature()
	}
	raw, err := json.Marshal(prog)
	if err != nil {
		return fmt.Errorf("encoding the progress of the re-read of the tables of %v: %w", j.names, err)
	}
	j.p.keepState(rereadScope, rereadKey, raw)
	return nil
}

// resumeReread goes on with the re-read whose progress the checkpoint holds, if any, from
// its last saved chunk. Nobody waits for its answer: its end is logged. A re-read whose
// rules are gone, or changed what they read, is dropped with a warning.
func (p *Pipeline) resumeReread(ctx context.Context, state []canal.StateRow) error {
	raw := stateValue(state, rereadScope, rereadKey)
	if raw == nil {
		return nil
	}
	drop := func(why string, fields ...zap.Field) error {
		p.log.Warn("the saved re-read of a resync is dropped: "+why+"; ask for the resync again", fields...)
		p.keepState(rereadScope, rereadKey, nil)
		return nil
	}
	var prog rereadProgress
	if err := json.Unmarshal(raw, &prog); err != nil {
		return drop("its progress does not parse", zap.Error(err))
	}
	set := p.engine.Set()
	for _, n := range prog.Rules {
		r := set.Rule(n)
		if r == nil || r.Stateful() || !r.SignatureWas(prog.Signatures[n]) {
			return drop("its rule is gone, or reads other tables now", zap.String("rule", n))
		}
	}
	names := prog.Rules
	if len(names) == 0 || prog.Result.Reread == nil {
		return drop("its progress names no row rule")
	}
	reader, err := p.readChunksOf(ctx, names)
	if err != nil {
		return MarkRetryable(err)
	}
	if err := reader.Seek(ctx, prog.Next); err != nil {
		reader.Close()
		if errors.Is(err, canal.ErrCursorMismatch) {
			return drop("it cannot go on where it stopped", zap.Error(err))
		}
		return MarkRetryable(fmt.Errorf("going on with the re-read of the tables of %v: %w", names, err))
	}
	p.runReread(&rereadJob{p: p, result: prog.Result, names: names, reader: reader, rows: prog.Next.Rows})
	p.log.Info("resync: going on with the re-read of the tables of row rules where it stopped", zap.Strings("rules", names),
		zap.Int("chunks_done", prog.Result.Reread.Chunks), zap.Int64("rows_done", prog.Next.Rows), zap.String("next_table", prog.Next.Table))
	return nil
}

// continueReread publishes the chunks the stream has reached, and reads one more chunk
// when fewer than rereadAhead wait (on a quiet source, where each chunk is ready at once,
// it reads on until the end).
func (p *Pipeline) continueReread(ctx context.Context, idle bool) error {
	j := p.reread
	for {
		for len(j.ahead) > 0 {
			c := j.ahead[0]
			here := p.streamPosition()
			cmp := here.Compare(c.At)
			ready := cmp == 0
			// Two positions can be one point across a rotation: asked of the server when
			// the source is quiet, or once the stream is past At. (Not at every boundary
			// while the stream is in an earlier file: a catch-up would pay a query per
			// transaction. A busy stream sitting at the last transaction before the
			// rotation passes At with its next one, and the chunk is read again.)
			if !ready && (idle || cmp > 0) {
				same, err := p.server.SamePoint(ctx, here, c.At)
				if err != nil {
					if ctx.Err() != nil {
						return p.endReread(ctx, ctx.Err())
					}
					return p.endReread(ctx, fmt.Errorf("%w: %w", errResyncFailed, err))
				}
				ready = same
			}
			if !ready {
				if cmp > 0 {
					j.reader.Rewind(c)
					j.ahead, j.read = nil, false
					j.result.Reread.ReadAgain++
				}
				break
			}
			if err := j.publish(ctx, c); err != nil {
				return p.endReread(ctx, err)
			}
			j.ahead = j.ahead[1:]
			// On a quiet source the chunks follow one another here: exactly-once, the
			// re-read is committed, with its progress, every checkpoint.interval and in
			// Kafka transactions of bounded size (at-least-once, the checkpoint loop
			// saves its progress meanwhile).
			if p.opts.ExactlyOnce && (p.transactionFull() || time.Since(p.lastSavedAt) >= p.opts.CheckpointInterval) {
				if err := p.saveCheckpoint(ctx, p.store, true); err != nil {
					return p.endReread(ctx, err)
				}
			}
		}
		switch {
		case j.read && len(j.ahead) == 0:
			return p.endReread(ctx, nil)
		case j.read || len(j.ahead) >= rereadAhead:
			return nil // the stream has to reach the first chunk's position
		}
		c, err := j.reader.Next(ctx)
		if err != nil {
			if ctx.Err() != nil { // stopping: the re-read goes on after the restart
				return p.endReread(ctx, ctx.Err())
			}
			// The stream is not at fault: it goes on, the resync answers the error.
			return p.endReread(ctx, fmt.Errorf("%w: re-reading the tables of %v: %w", errResyncFailed, j.names, err))
		}
		if c == nil {
			j.read = true
			continue
		}
		j.ahead = append(j.ahead, c)
		if len(j.ahead) > 1 {
			return nil // one read per boundary while chunks wait: the stream goes on
		}
	}
}

// errResyncFailed marks a resync that failed without harm to the stream.
var errResyncFailed = errors.New("resync failed")

// publish hands a chunk's rows to the row rules being re-read.
func (j *rereadJob) publish(ctx context.Context, c *canal.Chunk) error {
	rr := j.result.Reread
	for _, row := range c.Rows {
		if err := j.p.engine.Reread(ctx, row, j.names, j); err != nil {
			return fmt.Errorf("resyncing: re-reading %s at %s: %w", c.Table, c.At, err)
		}
	}
	if rr.Chunks == 0 {
		rr.From = c.At.String()
	}
	rr.Chunks, rr.To, j.rows = rr.Chunks+1, c.At.String(), c.Then.Rows
	j.showStatus()
	if err := j.saveProgress(c.Then); err != nil {
		return err
	}
	j.p.emittedWhole = j.p.emitted.Load() // the chunk is whole in the sink
	if time.Since(j.lastLog) >= 5*time.Second {
		j.lastLog = time.Now()
		j.p.log.Info("resync: re-read progress", zap.String("table", c.Table), zap.Int("chunks", rr.Chunks),
			zap.Int64("rows", j.rows), zap.Int("read_again", rr.ReadAgain))
	}
	return nil
}

// Emit counts the message for its rule and hands it on.
func (j *rereadJob) Emit(ctx context.Context, m sinks.Message) error {
	for _, h := range m.Headers {
		if h.Key != rules.HeaderRule {
			continue
		}
		for i := range j.result.Rules {
			if j.result.Rules[i].Rule == string(h.Value) {
				j.result.Rules[i].Messages++
			}
		}
	}
	return j.p.Emit(ctx, m)
}

// endReread ends the running re-read with err, or once the broker acknowledged it, and
// answers the resync. A re-read that ended or failed leaves no progress to resume; one
// that stopped with the stream (ErrNotStreaming on Run's way out, or the stream's own
// error) keeps it and answers ErrRereadInterrupted. Only an error of the stream's own
// (the broker, the lease) is returned, to end the stream.
func (p *Pipeline) endReread(ctx context.Context, err error) error {
	j := p.reread
	p.reread = nil
	p.rereadStatus.Store(nil)
	j.reader.Close()
	p.m.RereadRunning.Set(0)
	if err == nil || errors.Is(err, errResyncFailed) {
		p.keepState(rereadScope, rereadKey, nil) // nothing to go on with
	}
	if err == nil {
		err = p.acknowledged(ctx, j.result)
	}
	answer := err
	if err != nil && !errors.Is(err, errResyncFailed) {
		// The stream stopped: the checkpoint it restarts from holds the re-read's progress.
		answer = fmt.Errorf("%w after %d chunks of %v, and goes on from there once the pipeline streams again: %w",
			ErrRereadInterrupted, j.result.Reread.Chunks, j.result.Reread.Tables, err)
	}
	if j.asked.reply != nil {
		j.asked.reply <- resyncReply{j.result, answer}
	} else if answer != nil {
		p.log.Warn("resync: the re-read of row rules' tables did not end", zap.Strings("rules", j.names), zap.Error(answer))
	}
	if errors.Is(err, errResyncFailed) {
		p.log.Warn("resync failed; the stream goes on", zap.Error(err))
		return nil
	}
	if errors.Is(err, ErrNotStreaming) {
		return nil
	}
	return err
}
