package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/stocksync/stocksync/sinks"
)

// Heartbeat is the heartbeat topic's setting (config kafka.heartbeat_topic and
// kafka.heartbeat_interval); an empty Topic sends none.
type Heartbeat struct {
	Topic    string
	Interval time.Duration
}

// heartbeatValue is a heartbeat message's value (docs/topics.md, Heartbeats).
type heartbeatValue struct {
	// Name is the checkpoint's name, also the message's key.
	Name string `json:"name"`
	// File, Pos and GTID are the end of the last transaction the stream read: every
	// change before it has been handed to the producer ahead of this heartbeat.
	File string `json:"file"`
	Pos  uint32 `json:"pos"`
	GTID string `json:"gtid,omitempty"`
	// TsMs is when the heartbeat was sent, by the daemon's clock.
	TsMs int64 `json:"ts_ms"`
	// LagMs is stocksync_source_lag_seconds then, in milliseconds.
	LagMs int64 `json:"lag_ms"`
}

// heartbeat sends a heartbeat when one is due, at a transaction boundary of the reading
// goroutine (Commit, or Idle at the binlog's heartbeat when the source is quiet), so it
// follows every message of the transactions before it and comes before the next one's.
//
// At least once, it is not counted in p.emitted: that count decides whether an idle
// checkpoint is saved, and each save is a transaction on the source that the stream reads
// back, so counting heartbeats would write to the source at every one. Exactly once, it
// is (the open Kafka transaction holds it, and an idle source commits it: Idle).
func (p *Pipeline) heartbeat(ctx context.Context) error {
	hb := p.opts.Heartbeat
	// Not during the snapshot of a first start, which commits through Commit before the
	// stream opens.
	if hb.Topic == "" || p.stream == nil {
		return nil
	}
	// A run sends its first heartbeat once it has streamed for an interval: one that
	// keeps stopping at the same change, restarted again and again, sends none, so its
	// consumers do not take it for alive.
	if p.lastHeartbeat.IsZero() {
		p.lastHeartbeat = time.Now()
	}
	if time.Since(p.lastHeartbeat) < hb.Interval {
		return nil
	}
	if err := p.checkLease(); err != nil {
		return err
	}
	pos := p.streamPosition()
	now := time.Now()
	value, err := json.Marshal(heartbeatValue{Name: p.opts.CheckpointName, File: pos.File, Pos: pos.Pos, GTID: pos.GTIDSet,
		TsMs: now.UnixMilli(), LagMs: p.lag().Milliseconds()})
	if err != nil {
		return fmt.Errorf("encoding a heartbeat: %w", err)
	}
	p.lastHeartbeat = now
	p.m.MessagesEmitted.Inc()
	p.m.Heartbeats.Inc()
	if p.opts.ExactlyOnce {
		p.emitted.Add(1)
	}
	if err := p.opts.Sink.Emit(ctx, sinks.Message{Topic: hb.Topic, Key: []byte(p.opts.CheckpointName), Value: value}); err != nil {
		return fmt.Errorf("sending a heartbeat to %s (kafka.heartbeat_topic): %w", hb.Topic, err)
	}
	return nil
}
