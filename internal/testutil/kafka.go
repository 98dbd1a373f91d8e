package testutil

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Broker starts an in-process Kafka-protocol broker (kfake) with topic auto-creation
// and returns its address; it stops when the test ends.
func Broker(t testing.TB, opts ...kfake.Opt) string {
	t.Helper()
	opts = append([]kfake.Opt{kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(3)}, opts...)
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatalf("starting kfake broker: %v", err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()[0]
}

// Record is one message read back from a topic by the independent consumer.
type Record struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       string
	Value     string
	Headers   map[string]string
}

// ConsumeOptions tune Consume.
type ConsumeOptions struct {
	// ReadCommitted reads only committed Kafka transactions.
	ReadCommitted bool
}

// Consume reads topics from the start with franz-go (independent of the code under test)
// until want records have arrived or timeout passes; it fails the test on a timeout and
// returns what it read. want <= 0 reads until the topics are idle for a second.
func Consume(t testing.TB, brokers string, topics []string, want int, timeout time.Duration, opt ...ConsumeOptions) []Record {
	t.Helper()
	kopts := []kgo.Opt{kgo.SeedBrokers(brokers), kgo.ConsumeTopics(topics...), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(200 * time.Millisecond)}
	if len(opt) > 0 && opt[0].ReadCommitted {
		kopts = append(kopts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	cl := KafkaClient(t, kopts...)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out []Record
	idle := time.Now()
	for want <= 0 || len(out) < want {
		pctx, pcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		fs := cl.PollFetches(pctx)
		pcancel()
		n := 0
		fs.EachRecord(func(r *kgo.Record) {
			n++
			h := map[string]string{}
			for _, hd := range r.Headers {
				h[hd.Key] = string(hd.Value)
			}
			out = append(out, Record{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Key: string(r.Key), Value: string(r.Value), Headers: h})
		})
		if n > 0 {
			idle = time.Now()
		}
		if ctx.Err() != nil {
			if want > 0 {
				t.Fatalf("consuming %v: got %d of %d records within %s", topics, len(out), want, timeout)
			}
			return out
		}
		if want <= 0 && time.Since(idle) > time.Second {
			return out
		}
	}
	return out
}

// CleanupPolicy asks the broker, with an independent client, for topic's cleanup.policy;
// "" if the topic does not exist or has none.
func CleanupPolicy(t testing.TB, broker, topic string) string {
	t.Helper()
	cl := KafkaClient(t, kgo.SeedBrokers(broker))
	defer cl.Close()
	req := kmsg.NewPtrDescribeConfigsRequest()
	res := kmsg.NewDescribeConfigsRequestResource()
	res.ResourceType, res.ResourceName = kmsg.ConfigResourceTypeTopic, topic
	req.Resources = append(req.Resources, res)
	resp, err := req.RequestWith(t.Context(), cl)
	if err != nil {
		t.Fatalf("describing %s: %v", topic, err)
	}
	for _, c := range resp.Resources[0].Configs {
		if c.Name == "cleanup.policy" && c.Value != nil {
			return *c.Value
		}
	}
	return ""
}

// KafkaClient is a franz-go client with opts, independent of the code under test; the
// test fails if it cannot be made. The caller closes it.
func KafkaClient(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatalf("creating a Kafka client: %v", err)
	}
	return cl
}
