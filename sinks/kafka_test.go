package sinks_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/stocksync/stocksync/config"
	"github.com/stocksync/stocksync/internal/testutil"
	"github.com/stocksync/stocksync/sinks"
)

// smallMessagesOnly makes a broker refuse, asynchronously, a produce batch over 2,000
// bytes: a delivery failure the sinks cannot see coming.
var smallMessagesOnly = kfake.BrokerConfigs(map[string]string{"message.max.bytes": "2000"})

func newKafka(t testing.TB, broker string) *sinks.Kafka {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	k, err := sinks.NewKafka(ctx, sinks.KafkaConfig{Brokers: []string{broker}, ClientID: "test"})
	if err != nil {
		t.Fatalf("NewKafka: %v", err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// After Flush returns, every message emitted before it is on the broker, with its key
// and headers, in per-key order.
func TestKafkaFlushMeansDelivered(t *testing.T) {
	broker := testutil.Broker(t)
	k := newKafka(t, broker)
	const n = 500
	for i := range n {
		m := sinks.Message{Topic: "alo", Key: fmt.Appendf(nil, "k%d", i%5), Value: fmt.Appendf(nil, "%d", i),
			Headers: []sinks.Header{{Key: "seq", Value: fmt.Appendf(nil, "%d", i)}}}
		if err := k.Emit(t.Context(), m); err != nil {
			t.Fatalf("Emit %d: %v", i, err)
		}
	}
	if err := k.Flush(t.Context()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	got := testutil.Consume(t, broker, []string{"alo"}, n, 10*time.Second)
	last := map[string]int{}
	for _, r := range got {
		var v int
		fmt.Sscanf(r.Value, "%d", &v)
		if r.Headers["seq"] != r.Value {
			t.Fatalf("record %+v: header seq != value", r)
		}
		if prev, ok := last[r.Key]; ok && prev >= v {
			t.Fatalf("key %s: %d after %d", r.Key, v, prev)
		}
		last[r.Key] = v
	}
	if len(last) != 5 {
		t.Fatalf("read keys %v, want 5 keys", last)
	}
}

// A message the broker refuses fails the sink: Flush and later Emits return
// ErrSinkFailed. (The broker's message.max.bytes here is below the sink's limit.)
func TestKafkaFailureIsSticky(t *testing.T) {
	broker := testutil.Broker(t, smallMessagesOnly)
	k := newKafka(t, broker)
	if err := k.Emit(t.Context(), sinks.Message{Topic: "alo", Value: bytes.Repeat([]byte("x"), 5000)}); err != nil {
		t.Fatalf("Emit: %v (the refusal should come later)", err)
	}
	if err := k.Flush(t.Context()); !errors.Is(err, sinks.ErrSinkFailed) {
		t.Fatalf("Flush = %v, want ErrSinkFailed", err)
	}
	if err := k.Emit(t.Context(), sinks.Message{Topic: "alo", Value: []byte("x")}); !errors.Is(err, sinks.ErrSinkFailed) {
		t.Fatalf("Emit after a failure = %v, want ErrSinkFailed", err)
	}
	if err := k.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := k.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// After a delivery failure, Close stops the producer: the messages it still held, each
// at its own retry, are given up at once rather than retried one by one against the gone
// broker for minutes, each counted in stocksync_produce_errors_total and held in memory
// beside the next pipeline's (the broker-outage drill: the errors rose for minutes after
// the broker was back).
func TestKafkaCloseAfterAFailureStopsTheProducer(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(3))
	if err != nil {
		t.Fatal(err)
	}
	k := newKafka(t, c.ListenAddrs()[0])
	if err := k.Emit(t.Context(), sinks.Message{Topic: "gone", Key: []byte("k"), Value: []byte("first")}); err != nil {
		t.Fatal(err)
	}
	if err := k.Flush(t.Context()); err != nil {
		t.Fatalf("Flush before the broker went: %v", err)
	}
	c.Close()
	// Messages emitted while the broker is gone, until the first gives up: each reaches
	// its retries at its own time, so some are still retrying when the sink fails.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		if err := k.Emit(t.Context(), sinks.Message{Topic: "gone", Key: fmt.Appendf(nil, "k%d", i), Value: []byte("v")}); err != nil {
			if !errors.Is(err, sinks.ErrSinkFailed) {
				t.Fatalf("Emit %d: %v, want ErrSinkFailed", i, err)
			}
			t.Logf("the sink failed after %d messages", i)
			break
		}
		<-tick.C
	}
	if err := k.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if !k.Stopped() {
		t.Fatal("Close returned with the failed producer still retrying the messages it held")
	}
}

// BenchmarkKafkaThroughput is the at-least-once baseline for
// BenchmarkTransactionalThroughput: the same messages, a Flush every 10,000.
func BenchmarkKafkaThroughput(b *testing.B) {
	broker := testutil.Broker(b)
	k := newKafka(b, broker)
	value := bytes.Repeat([]byte("x"), 1000)
	ctx := context.Background()
	const perFlush = 10000
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := k.Emit(ctx, sinks.Message{Topic: "bench", Key: fmt.Appendf(nil, "%d", i%1000), Value: value}); err != nil {
			b.Fatal(err)
		}
		if (i+1)%perFlush == 0 {
			if err := k.Flush(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := k.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// TestPartitionerPutsKeysWhereItsClientFamilyDoes: each kafka.partitioner choice puts
// every key on the partition that franz-go's model of that client family computes: the
// Java client (murmur2), librdkafka's consistent (crc32) and sarama's default (fnv1a).
func TestPartitionerPutsKeysWhereItsClientFamilyDoes(t *testing.T) {
	const partitions = 7
	fnv1a := func(b []byte) uint32 { h := fnv.New32a(); h.Write(b); return h.Sum32() }
	javaDefault := kgo.StickyKeyPartitioner(nil).ForTopic("any")
	want := map[string]func(key []byte) int{
		"":        func(key []byte) int { return javaDefault.Partition(&kgo.Record{Key: key}, partitions) },
		"murmur2": func(key []byte) int { return javaDefault.Partition(&kgo.Record{Key: key}, partitions) },
		"crc32":   func(key []byte) int { return kgo.SaramaHasher(crc32.ChecksumIEEE)(key, partitions) },
		"fnv1a":   func(key []byte) int { return kgo.SaramaCompatHasher(fnv1a)(key, partitions) },
	}
	for _, name := range config.Partitioners {
		if want[name] == nil {
			t.Errorf("kafka.partitioner takes %q, which this test does not check", name)
		}
	}
	broker := testutil.Broker(t, kfake.DefaultNumPartitions(partitions))
	for name, partitionOf := range want {
		topic := "part-" + name
		k, err := sinks.NewKafka(t.Context(), sinks.KafkaConfig{Brokers: []string{broker}, ClientID: "test", Partitioner: name})
		if err != nil {
			t.Fatalf("NewKafka with partitioner %q: %v", name, err)
		}
		const n = 200
		for i := range n {
			if err := k.Emit(t.Context(), sinks.Message{Topic: topic, Key: fmt.Appendf(nil, `{"sku_id":"SKU-%d"}`, i), Value: []byte("v")}); err != nil {
				t.Fatal(err)
			}
		}
		if err := k.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		k.Close()
		used := map[int32]bool{}
		for _, r := range testutil.Consume(t, broker, []string{topic}, n, 10*time.Second) {
			used[r.Partition] = true
			if w := partitionOf([]byte(r.Key)); int(r.Partition) != w {
				t.Errorf("partitioner %q: key %s on partition %d, want %d", name, r.Key, r.Partition, w)
				break
			}
		}
		if len(used) < partitions-1 {
			t.Errorf("partitioner %q used %d of %d partitions", name, len(used), partitions)
		}
	}
	if _, err := sinks.NewKafka(t.Context(), sinks.KafkaConfig{Brokers: []string{broker}, Partitioner: "random"}); err == nil ||
		!strings.Contains(err.Error(), `kafka.partitioner: "random"`) {
		t.Errorf("an unknown partitioner gave %v, want an error naming it", err)
	}
}

// TestOversizedMessageIsRefusedByName: a message over MaxMessageBytes fails Emit at once
// with a TooLargeError naming its topic, key and size (not ErrSinkFailed, which a restart
// would run into again), and the sink stays usable; both sinks.
func TestOversizedMessageIsRefusedByName(t *testing.T) {
	broker := testutil.Broker(t)
	k, err := sinks.NewKafka(t.Context(), sinks.KafkaConfig{Brokers: []string{broker}, MaxMessageBytes: 2048})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	tx, err := sinks.NewTransactional(t.Context(), sinks.TransactionalConfig{Brokers: []string{broker},
		TransactionalID: "big", CheckpointTopic: "big.checkpoints", MaxMessageBytes: 2048})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	big := sinks.Message{Topic: "big", Key: []byte(`{"sku_id":7}`), Value: bytes.Repeat([]byte("x"), 3000)}
	for name, emit := range map[string]func(sinks.Message) error{
		"at-least-once": func(m sinks.Message) error { return k.Emit(t.Context(), m) },
		"exactly-once":  func(m sinks.Message) error { return tx.Emit(t.Context(), m) },
	} {
		err := emit(big)
		var tooLarge *sinks.TooLargeError
		if !errors.As(err, &tooLarge) || errors.Is(err, sinks.ErrSinkFailed) {
			t.Fatalf("%s: emitting 3000 bytes over a 2048-byte limit: %v, want a TooLargeError", name, err)
		}
		for _, w := range []string{"topic big", `key {"sku_id":7}`, "kafka.max_message_bytes (2048)"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error lacks %q: %v", name, w, err)
			}
		}
		if err := emit(sinks.Message{Topic: "big", Key: []byte("small"), Value: []byte(name)}); err != nil {
			t.Errorf("%s: a small message after the refused one: %v", name, err)
		}
	}
	if err := k.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	got := testutil.Consume(t, broker, []string{"big"}, 2, 10*time.Second, testutil.ConsumeOptions{ReadCommitted: true})
	if len(got) != 2 {
		t.Errorf("%d records on the topic, want the 2 small ones", len(got))
	}
	for _, r := range got {
		if len(r.Value) > 100 {
			t.Errorf("the oversized message reached the topic")
		}
	}
}

// TestMissingTopicIsNamedWithWhatToDo: on brokers that do not create topics on first use,
// a delivery to a topic nobody created fails naming the topic and what to do.
func TestMissingTopicIsNamedWithWhatToDo(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	k := newKafka(t, c.ListenAddrs()[0])
	if err := k.Emit(t.Context(), sinks.Message{Topic: "never.created", Key: []byte("k"), Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	err = k.Flush(t.Context())
	if !errors.Is(err, sinks.ErrSinkFailed) || !strings.Contains(err.Error(), "producing to never.created") ||
		!strings.Contains(err.Error(), "auto.create.topics.enable") {
		t.Fatalf("flushing a message to a topic the brokers lack: %v, want the topic named and what to do", err)
	}
}

// stalledBroker is a broker that holds every produce request until release is called
// (safe to call twice; the test calls it at the end, before the sinks' Close, which would
// wait for the held requests).
func stalledBroker(t *testing.T) (addr string, release func()) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(3))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	held := make(chan struct{})
	c.ControlKey(kmsg.Produce.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		c.SleepControl(func() { <-held })
		return nil, nil, false // then as the broker would
	})
	release = sync.OnceFunc(func() { close(held) })
	t.Cleanup(release)
	return c.ListenAddrs()[0], release
}

// boundedSink is what both delivery modes give the pipeline, and how each makes what was
// emitted durable.
type boundedSink struct {
	Emit    func(context.Context, sinks.Message) error
	Durable func(context.Context) error
	Close   func() error
}

// deliveryModes open a sink of each delivery mode on broker with the byte budget
// maxBytes: both go through the same window, and both must honour it.
var deliveryModes = []struct {
	name string
	open func(t *testing.T, broker string, maxBytes int) boundedSink
}{
	{"at-least-once", func(t *testing.T, broker string, maxBytes int) boundedSink {
		k, err := sinks.NewKafka(t.Context(), sinks.KafkaConfig{Brokers: []string{broker}, ClientID: "test", MaxInFlightBytes: maxBytes})
		if err != nil {
			t.Fatal(err)
		}
		return boundedSink{Emit: k.Emit, Durable: k.Flush, Close: k.Close}
	}},
	{"exactly-once", func(t *testing.T, broker string, maxBytes int) boundedSink {
		tx, err := sinks.NewTransactional(t.Context(), sinks.TransactionalConfig{Brokers: []string{broker}, ClientID: "test",
			TransactionalID: "bytes", CheckpointTopic: "bytes.checkpoints", MaxInFlightBytes: maxBytes})
		if err != nil {
			t.Fatal(err)
		}
		return boundedSink{Emit: tx.Emit, Close: tx.Close, Durable: func(ctx context.Context) error {
			return tx.Commit(ctx, []sinks.CheckpointRecord{{Key: "position", Value: []byte("bin.1:4")}})
		}}
	}},
}

// waits reports whether Emit of m waits (for half a second) rather than return.
func waits(t *testing.T, s boundedSink, m sinks.Message) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	err := s.Emit(ctx, m)
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Emit: %v", err)
	}
	return err != nil
}

// While the brokers hold every produce request (an ISR shrink, a slow disk, a leader
// election), Emit hands over messages until kafka.max_in_flight_bytes of them wait, and
// then waits itself, whatever kafka.max_in_flight (here its default, 100,000) allows: rows
// with large columns no longer pile up to 100,000 × their size in memory. Once the
// brokers answer, it goes on and everything is delivered.
func TestEmitWaitsOnceTheByteBudgetIsUsed(t *testing.T) {
	const budget, valueSize = 1 << 20, 100 << 10
	for _, mode := range deliveryModes {
		t.Run(mode.name, func(t *testing.T) {
			broker, release := stalledBroker(t)
			s := mode.open(t, broker, budget)
			defer s.Close()
			defer release() // first: Close would wait for the held requests
			topic := "bytes"
			msg := func(i int) sinks.Message {
				return sinks.Message{Topic: topic, Key: fmt.Appendf(nil, "k%02d", i), Value: bytes.Repeat([]byte{'a' + byte(i)}, valueSize)}
			}
			const fit = 10 // 10 messages of 100 KiB and a few bytes of key and framing fit in 1 MiB, 11 do not
			for i := range fit {
				if waits(t, s, msg(i)) {
					t.Fatalf("Emit %d waited with %d KiB of %d KiB outstanding", i, i*valueSize>>10, budget>>10)
				}
			}
			if !waits(t, s, msg(fit)) {
				t.Fatalf("Emit %d returned with %d KiB outstanding and a budget of %d KiB: want it to wait", fit, fit*valueSize>>10, budget>>10)
			}
			release()
			if err := s.Emit(t.Context(), msg(fit+1)); err != nil {
				t.Fatalf("Emit once the broker answers: %v", err)
			}
			if err := s.Durable(t.Context()); err != nil {
				t.Fatal(err)
			}
			got := testutil.Consume(t, broker, []string{topic}, fit+1, 10*time.Second, testutil.ConsumeOptions{ReadCommitted: true})
			if len(got) != fit+1 {
				t.Fatalf("read %d messages, want %d", len(got), fit+1)
			}
		})
	}
}

// A message larger than the whole byte budget (kafka.max_in_flight_bytes under
// kafka.max_message_bytes) is handed over alone, never waiting for good; the next one
// waits for its acknowledgement.
func TestEmitHandsOverAMessageLargerThanTheByteBudgetAlone(t *testing.T) {
	for _, mode := range deliveryModes {
		t.Run(mode.name, func(t *testing.T) {
			broker, release := stalledBroker(t)
			s := mode.open(t, broker, 64<<10)
			defer s.Close()
			defer release() // first: Close would wait for the held requests
			topic := "large"
			large := sinks.Message{Topic: topic, Key: []byte("large"), Value: bytes.Repeat([]byte("x"), 200<<10)}
			if waits(t, s, large) {
				t.Fatal("Emit of a 200 KiB message with nothing outstanding and a budget of 64 KiB waited")
			}
			if !waits(t, s, sinks.Message{Topic: topic, Key: []byte("small"), Value: []byte("v")}) {
				t.Fatal("Emit after the large message returned before it was acknowledged")
			}
			release()
			if err := s.Emit(t.Context(), sinks.Message{Topic: topic, Key: []byte("small"), Value: []byte("v")}); err != nil {
				t.Fatalf("Emit once the broker answers: %v", err)
			}
			if err := s.Durable(t.Context()); err != nil {
				t.Fatal(err)
			}
		})
	}
}
