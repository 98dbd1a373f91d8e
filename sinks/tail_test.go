package sinks_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/stocksync/stocksync/internal/testutil"
	"github.com/stocksync/stocksync/sinks"
)

// observedBroker is a kfake broker that creates a topic whenever a client's metadata
// request allows it (as Kafka's default auto.create.topics.enable does), and counts the
// requests of key that name each topic.
type observedBroker struct {
	addr string
	mu   sync.Mutex
	seen map[kmsg.Key]map[string]int
}

func newObservedBroker(t *testing.T) *observedBroker {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(3))
	if err != nil {
		t.Fatalf("starting kfake: %v", err)
	}
	t.Cleanup(c.Close)
	b := &observedBroker{addr: c.ListenAddrs()[0], seen: map[kmsg.Key]map[string]int{}}
	count := func(key kmsg.Key, topic *string) {
		if topic == nil {
			return
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.seen[key] == nil {
			b.seen[key] = map[string]int{}
		}
		b.seen[key][*topic]++
	}
	// Not handled (false): the cluster answers as usual, and the function stays.
	c.ControlKey(kmsg.Metadata.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		for _, t := range req.(*kmsg.MetadataRequest).Topics {
			count(kmsg.Metadata, t.Topic)
		}
		return nil, nil, false
	})
	c.ControlKey(kmsg.ListOffsets.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		for _, t := range req.(*kmsg.ListOffsetsRequest).Topics {
			count(kmsg.ListOffsets, &t.Topic)
		}
		return nil, nil, false
	})
	return b
}

// asked is how many requests of key named topic.
func (b *observedBroker) asked(key kmsg.Key, topic string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.seen[key][topic]
}

// topics lists the broker's topics, asked by a client that creates none.
func (b *observedBroker) topics(t *testing.T) []string {
	t.Helper()
	cl := testutil.KafkaClient(t, kgo.SeedBrokers(b.addr))
	defer cl.Close()
	resp, err := kmsg.NewPtrMetadataRequest().RequestWith(t.Context(), cl) // nil Topics: every topic
	if err != nil {
		t.Fatalf("listing topics: %v", err)
	}
	var names []string
	for _, tp := range resp.Topics {
		names = append(names, *tp.Topic)
	}
	slices.Sort(names)
	return names
}

// produce writes values to topic with an independent client that may create it.
func (b *observedBroker) produce(t *testing.T, topic string, values ...string) {
	t.Helper()
	cl := testutil.KafkaClient(t, kgo.SeedBrokers(b.addr), kgo.AllowAutoTopicCreation())
	defer cl.Close()
	for _, v := range values {
		if err := cl.ProduceSync(t.Context(), &kgo.Record{Topic: topic, Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatalf("producing to %s: %v", topic, err)
		}
	}
}

// tail runs sinks.Tail until the test ends and sends "topic:value" of each record it
// reads (errors as "topic:error: …").
func tail(t *testing.T, broker string, topics []string, fromStart bool) <-chan string {
	t.Helper()
	got := make(chan string, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- sinks.Tail(ctx, []string{broker}, sinks.Security{}, topics, fromStart, func(r sinks.Record) {
			got <- r.Topic + ":" + string(r.Value)
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Tail: %v", err)
		}
	})
	return got
}

// Tailing topics that do not exist (a misspelt name, the exactly-once checkpoint topic on
// brokers that lost it) creates none of them, though the brokers would create a topic
// for any client that asks, and prints nothing meanwhile.
func TestTailCreatesNoTopic(t *testing.T) {
	b := newObservedBroker(t)
	b.produce(t, "product.stock", "v")
	missing := []string{"product.stok", "stocksync.checkpoints"}
	for _, fromStart := range []bool{true, false} {
		got := tail(t, b.addr, missing, fromStart)
		// The probe asks once; the consumer asks again while the topics are missing.
		asked := b.asked(kmsg.Metadata, missing[0]) + 3
		testutil.Eventually(t, 30*time.Second, "Tail's consumer to ask for the missing topics three times", func() bool {
			return b.asked(kmsg.Metadata, missing[0]) >= asked && b.asked(kmsg.Metadata, missing[1]) >= asked
		})
		if topics := b.topics(t); !slices.Equal(topics, []string{"product.stock"}) {
			t.Fatalf("fromStart %v: the broker has topics %v after Tail of %v; want only product.stock", fromStart, topics, missing)
		}
		select {
		case r := <-got:
			t.Fatalf("fromStart %v: Tail printed %q for topics that do not exist; want nothing", fromStart, r)
		default:
		}
	}
}

// Tail without fromStart reads the topics that exist from their end, and a topic created
// after it started from its first message, so that nothing published after the start is
// missed (scripts/demo.sh tails the daemon's topics before it creates them).
func TestTailFromNowReadsATopicCreatedLater(t *testing.T) {
	b := newObservedBroker(t)
	b.produce(t, "existing", "old")
	got := tail(t, b.addr, []string{"existing", "later"}, false)
	// The end of "existing" is fixed once the consumer has asked for its offsets.
	testutil.Eventually(t, 30*time.Second, "Tail to ask for the offsets of existing", func() bool {
		return b.asked(kmsg.ListOffsets, "existing") > 0
	})
	b.produce(t, "existing", "new")
	b.produce(t, "later", "first", "second")
	var read []string
	deadline := time.After(30 * time.Second)
	for len(read) < 3 {
		select {
		case r := <-got:
			read = append(read, r)
		case <-deadline:
			t.Fatalf("Tail read %v within 30s; want existing:new, later:first, later:second", read)
		}
	}
	slices.Sort(read)
	if want := []string{"existing:new", "later:first", "later:second"}; !slices.Equal(read, want) {
		t.Fatalf("Tail read %v, want %v", read, want)
	}
}
