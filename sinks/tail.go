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
func Tail(ctx context.Context, brokers []string, topics []string, fromStart bool, fn func(Record)) error {
	offset := kgo.NewOffset().AtEnd()
	if fromStart {
		offset = kgo.NewOffset().AtStart()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topics...), kgo.ConsumeResetOffset(offset),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.AllowAutoTopicCreation())
	if err != nil {
		return fmt.Errorf("connecting to Kafka brokers %v to tail %v: %w", brokers, topics, err)
	}
	defer cl.Close()
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
