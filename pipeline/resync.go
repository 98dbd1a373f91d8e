package pipeline

import (
	"context"
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/stocksync/stocksync/rules"
)

// ErrNotStreaming answers a resync asked of a pipeline that is not streaming: starting,
// taking a snapshot, restarting after a failure, or stopped.
var ErrNotStreaming = errors.New("the pipeline is not streaming")

// ErrResyncRules marks a resync refused for its rule names or keys; nothing was published.
var ErrResyncRules = errors.New("resync refused")

// ResyncResult is what a resync republished, and the binlog position its state is of.
type ResyncResult struct {
	Position string              `json:"position"`
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
// (rules.Engine.Resync): at the next transaction boundary (within about a second on an
// idle source, at the binlog heartbeat) each group's state goes out as a read, and Resync
// returns once the broker has acknowledged it (exactly-once: once its Kafka transaction
// committed). A wrong request is refused with ErrResyncRules and publishes nothing. A ctx
// that ends first only stops the waiting: the resync still runs.
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
	if err := p.engine.Set().CheckResync(req); err != nil {
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
	if p.opts.ExactlyOnce {
		// The messages are in the open Kafka transaction: commit it with the checkpoint.
		err = p.saveCheckpoint(ctx, p.store, true)
	} else {
		err = p.opts.Sink.Flush(ctx)
	}
	if err != nil {
		return ResyncResult{}, fmt.Errorf("waiting for the broker to acknowledge the resync at %s: %w", pos, err)
	}
	p.log.Info("resync published", zap.Stringer("pos", pos), zap.Any("rules", counts))
	return ResyncResult{Position: pos.String(), Rules: counts}, nil
}
