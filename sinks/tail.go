package sinks

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Record is one message read back by Tail.
type Record struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []Header
}

// Tail reads topics from their start (or only new messages when fromStart is false) and
// calls fn for each record until ctx is done. It is for people looking at what stocksync
// published (`stocksync tail`), not part of delivery.
func Tail(ctx context.Context, brokers []string, sec Security, topics []string, fromStart bool, fn func(Record)) error {
	offset := kgo.NewOffset().AtEnd()
	if fromStart {
		offset = kgo.NewOffset().AtStart()
	}
	opts, err := sec.kgoOpts()
	if err != nil {
		return err
	}
	opts = append(opts, kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topics...), kgo.ConsumeResetOffset(offset),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.AllowAutoTopicCreation())
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("setting up a Kafka client to tail %v: %w", topics, err)
	}
	defer cl.Close()
	// The consumer retries a refused connection forever; one ping first turns a broker
	// that is down or a TLS or SASL mismatch into an error the user can act on.
	if err := reach(ctx, brokers, sec, func() error { return cl.Ping(ctx) }); err != nil {
		return err
	}
	for ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachError(func(topic string, p int32, err error) {
			if ctx.Err() == nil {
				fn(Record{Topic: topic, Partition: p, Value: []byte("error: " + err.Error())})
			}
		})
		fs.EachRecord(func(r *kgo.Record) {
			rec := Record{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Key: r.Key, Value: r.Value}
			for _, h := range r.Headers {
				rec.Headers = append(rec.Headers, Header{Key: h.Key, Value: h.Value})
			}
			fn(rec)
		})
	}
	return nil
}
