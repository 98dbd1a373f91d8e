package sinks

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
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
//
// It never creates a topic: a misspelt name would leave a junk topic behind, and the
// exactly-once checkpoint topic, created by the brokers' auto-creation, would be refused
// by the daemon (not compacted). A topic that does not exist yet is read from its first
// message once it appears (it is looked for again every second or so), also when
// fromStart is false: everything in it is newer than the call. With fromStart false, the
// partitions that exist when Tail starts are read from their end; partitions added to
// them later are not read.
func Tail(ctx context.Context, brokers []string, sec Security, topics []string, fromStart bool, fn func(Record)) error {
	secOpts, err := sec.kgoOpts()
	if err != nil {
		return err
	}
	base := append(secOpts, kgo.SeedBrokers(brokers...))
	atEnd, err := existingPartitions(ctx, brokers, sec, base, topics)
	if err != nil {
		return err
	}
	// Whole topics are read from their start (and one that does not exist yet, once it
	// appears); without fromStart, the partitions that exist are pinned at their end.
	opts := append(slices.Clip(base), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// A missing topic is looked for again at most this often (default 5 s), and a
		// topic found is added to the fetches once the one waiting returns (default 5 s).
		kgo.MetadataMinAge(time.Second), kgo.FetchMaxWait(time.Second))
	whole := topics
	if !fromStart {
		whole = slices.DeleteFunc(slices.Clone(topics), func(t string) bool { return atEnd[t] != nil })
		if len(atEnd) > 0 {
			opts = append(opts, kgo.ConsumePartitions(atEnd))
		}
	}
	if len(whole) > 0 {
		opts = append(opts, kgo.ConsumeTopics(whole...))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("setting up a Kafka client to tail %v: %w", topics, err)
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

// existingPartitions asks the brokers, without letting them create any, which of topics
// exist, and returns their partitions, each at its end offset. It is also Tail's first
// contact with the brokers: the consumer retries a refused connection forever, so a
// broker that is down or a TLS or SASL mismatch is turned into an error the user can act
// on here (see reach).
func existingPartitions(ctx context.Context, brokers []string, sec Security, opts []kgo.Opt, topics []string) (map[string]map[int32]kgo.Offset, error) {
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("setting up a Kafka client to tail %v: %w", topics, err)
	}
	defer cl.Close()
	// Ping first: it does not retry, where a request would retry a refused login until ctx
	// ends.
	if err := reach(ctx, brokers, sec, func() error { return cl.Ping(ctx) }); err != nil {
		return nil, err
	}
	req := kmsg.NewPtrMetadataRequest()
	req.AllowAutoTopicCreation = false
	for _, t := range topics {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(t)
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, fmt.Errorf("asking the Kafka brokers %v which of topics %v exist: %w", brokers, topics, err)
	}
	out := map[string]map[int32]kgo.Offset{}
	for _, t := range resp.Topics {
		if t.Topic == nil {
			continue
		}
		switch err := kerr.ErrorForCode(t.ErrorCode); {
		case errors.Is(err, kerr.UnknownTopicOrPartition) || kerr.IsRetriable(err):
			continue // not there yet (or just made): read from its start once it appears
		case err != nil:
			return nil, fmt.Errorf("asking the brokers about topic %s: %w", *t.Topic, err)
		}
		ps := map[int32]kgo.Offset{}
		for _, p := range t.Partitions {
			ps[p.Partition] = kgo.NewOffset().AtEnd()
		}
		out[*t.Topic] = ps
	}
	return out, nil
}
