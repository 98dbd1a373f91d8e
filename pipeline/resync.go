package pipeline

import (
	"context"
	"errors"
	"fmt"

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

// ResyncResult is what a resync republished, the binlog position its state is of, and
// the position its row rules' tables were re-read at, if any.
type ResyncResult struct {
	Position string              `json:"position"`
	RereadAt string              `json:"reread_at,omitempty"`
	Rules    []rules.ResyncCount `json:"rules"`
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
// (rules.Engine.Resync), and re-reads the tables of the row rules it names (reread): at
// the next transaction boundary (within about a second on an idle source, at the binlog
// heartbeat) each group's state and each re-read row goes out as a read, and Resync
// returns once the broker has acknowledged them (exactly-once: once their Kafka
// transaction committed). A wrong request is refused with ErrResyncRules and publishes
// nothing. A ctx that ends first only stops the waiting: the resync still runs.
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
	case <-ctx.Done():
		return ResyncResult{}, ctx.Err()
	}
}

// serveResync runs a resync asked for, if any, at a transaction boundary of the reading
// goroutine. An error it returns (the broker failed, the lease ran out) ends the stream:
// the messages already handed over may be only part of the resync.
func (p *Pipeline) serveResync(ctx context.Context) error {
	var asked resyncRequest
	select {
	case asked = <-p.resyncs:
	default:
		return nil
	}
	result, err := p.resync(ctx, asked.req)
	asked.reply <- resyncReply{result, err}
	if errors.Is(err, ErrResyncRules) {
		return nil
	}
	return err
}

func (p *Pipeline) resync(ctx context.Context, req rules.ResyncRequest) (ResyncResult, error) {
	rowRules, err := p.engine.Set().CheckResync(req)
	if err != nil {
		return ResyncResult{}, fmt.Errorf("%w: %w", ErrResyncRules, err)
	}
	p.mu.Lock()
	if !p.pending.have {
		p.pending.pos, p.pending.have = p.lastSaved, true
	}
	pos := p.pending.pos
	p.mu.Unlock()
	at, err := p.server.SourceAt(ctx, pos)
	if err != nil {
		return ResyncResult{}, MarkRetryable(fmt.Errorf("resyncing: %w", err))
	}
	counts, err := p.engine.Resync(ctx, req, at, p)
	if err != nil {
		return ResyncResult{}, err
	}
	result := ResyncResult{Position: pos.String(), Rules: counts}
	if len(rowRules) > 0 {
		reread, err := p.reread(ctx, rowRules)
		if err != nil {
			return ResyncResult{}, err
		}
		result.RereadAt, result.Rules = reread.at.String(), append(result.Rules, reread.counts...)
	}
	if p.opts.ExactlyOnce {
		// The messages are in the open Kafka transaction: commit it with the checkpoint.
		err = p.saveCheckpoint(ctx, p.store, true)
	} else {
		err = p.opts.Sink.Flush(ctx)
	}
	if err != nil {
		return ResyncResult{}, fmt.Errorf("waiting for the broker to acknowledge the resync at %s: %w", pos, err)
	}
	p.log.Info("resync published", zap.Stringer("pos", pos), zap.String("reread_at", result.RereadAt), zap.Any("rules", result.Rules))
	return result, nil
}

// rereader hands the rows of a resync's re-read to the row rules being resynced, and
// counts their messages.
type rereader struct {
	p      *Pipeline
	names  []string
	at     canal.Position
	counts []rules.ResyncCount
}

// reread reads the tables of the named row rules in a consistent snapshot at a position
// P, while the stream waits, and publishes their rows through those rules alone; from
// then on they skip the streamed changes of transactions before P, which the rows
// already hold (rules.Engine.MarkReread).
func (p *Pipeline) reread(ctx context.Context, names []string) (*rereader, error) {
	set := p.engine.Set()
	filter := scopedFilter{base: p.filterFor(set), stateful: set.TablesOf(names)}
	r := &rereader{p: p, names: names}
	for _, n := range names {
		r.counts = append(r.counts, rules.ResyncCount{Rule: n})
	}
	p.log.Info("resync: re-reading the tables of row rules", zap.Strings("rules", names))
	at, err := p.server.Snapshot(ctx, filter, r, canal.SnapshotOptions{ChunkSize: p.opts.SnapshotChunkSize, Logger: p.log.Named("reread")})
	if err != nil {
		return nil, fmt.Errorf("resyncing: re-reading the tables of %v: %w", names, err)
	}
	marks := p.engine.MarkReread(names, at)
	p.mu.Lock()
	for _, e := range marks {
		p.pending.state[stateKey{e.Rule, e.Key}] = e.Value
	}
	p.mu.Unlock()
	r.at = at
	return r, nil
}

func (r *rereader) Row(ctx context.Context, c *canal.RowChange) error {
	return r.p.engine.Reread(ctx, c, r.names, r)
}

// Emit counts the message for its rule and hands it on.
func (r *rereader) Emit(ctx context.Context, m sinks.Message) error {
	for _, h := range m.Headers {
		if h.Key != rules.HeaderRule {
			continue
		}
		for i := range r.counts {
			if r.counts[i].Rule == string(h.Value) {
				r.counts[i].Messages++
			}
		}
	}
	return r.p.Emit(ctx, m)
}

func (r *rereader) Commit(context.Context, canal.Position) error { return nil }
func (r *rereader) Idle(context.Context) error                   { return nil }
