package sinks_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/stocksync/stocksync/internal/testutil"
	"github.com/stocksync/stocksync/sinks"
)

func newTxn(t testing.TB, broker, txid, cpTopic string) *sinks.Transactional {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := sinks.NewTransactional(ctx, sinks.TransactionalConfig{
		Brokers: []string{broker}, ClientID: "test", TransactionalID: txid, CheckpointTopic: cpTopic,
	})
	if err != nil {
		t.Fatalf("NewTransactional: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func emitN(t testing.TB, s *sinks.Transactional, topic, prefix string, n int) {
	t.Helper()
	for i := range n {
		m := sinks.Message{Topic: topic, Key: fmt.Appendf(nil, "k%d", i%7), Value: fmt.Appendf(nil, "%s-%d", prefix, i),
			Headers: []sinks.Header{{Key: "h", Value: []byte(prefix)}}}
		if err := s.Emit(t.Context(), m); err != nil {
			t.Fatalf("Emit %s-%d: %v", prefix, i, err)
		}
	}
}

func values(rs []testutil.Record) map[string]int {
	out := map[string]int{}
	for _, r := range rs {
		out[r.Value]++
	}
	return out
}

func readCheckpoints(t testing.TB, broker, topic string) map[string][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cp, err := sinks.ReadCheckpoints(ctx, []string{broker}, sinks.Security{}, topic)
	if err != nil {
		t.Fatalf("ReadCheckpoints: %v", err)
	}
	return cp
}

// Several MySQL transactions per Kafka transaction, two Kafka transactions: every
// message is seen exactly once by a read_committed reader, with keys and headers, and
// the checkpoint holds the last committed position.
func TestTransactionalCommittedVisibleExactlyOnce(t *testing.T) {
	broker := testutil.Broker(t)
	s := newTxn(t, broker, "tx-once", "cp-once")
	emitN(t, s, "orders", "a", 150) // e.g. three MySQL transactions of 50
	if err := s.Flush(t.Context()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if err := s.Commit(t.Context(), []sinks.CheckpointRecord{{Key: "position", Value: []byte("bin.1:100")}}); err != nil {
		t.Fatalf("first Commit: %v", err)
	}
	emitN(t, s, "orders", "b", 50)
	if err := s.Commit(t.Context(), []sinks.CheckpointRecord{{Key: "position", Value: []byte("bin.1:200")}}); err != nil {
		t.Fatalf("second Commit: %v", err)
	}
	// An empty commit (checkpoint only) is allowed too.
	if err := s.Commit(t.Context(), []sinks.CheckpointRecord{{Key: "position", Value: []byte("bin.1:300")}}); err != nil {
		t.Fatalf("checkpoint-only Commit: %v", err)
	}

	got := testutil.Consume(t, broker, []string{"orders"}, 0, 20*time.Second, testutil.ConsumeOptions{ReadCommitted: true})
	if len(got) != 200 {
		t.Fatalf("read %d records, want 200", len(got))
	}
	seen := values(got)
	for _, p := range []struct {
		prefix string
		n      int
	}{{"a", 150}, {"b", 50}} {
		for i := range p.n {
			if v := fmt.Sprintf("%s-%d", p.prefix, i); seen[v] != 1 {
				t.Errorf("%s seen %d times, want once", v, seen[v])
			}
		}
	}
	// Per-key order within the transaction (the same key lands on one partition).
	last := map[string]string{}
	for _, r := range got {
		if r.Headers["h"] == "" || !strings.HasPrefix(r.Value, r.Headers["h"]+"-") {
			t.Fatalf("record %+v: header h missing or wrong", r)
		}
		if prev, ok := last[r.Key]; ok && prev[0] == r.Value[0] && num(prev) > num(r.Value) {
			t.Fatalf("key %s: %s after %s", r.Key, r.Value, prev)
		}
		last[r.Key] = r.Value
	}
	if cp := readCheckpoints(t, broker, "cp-once"); string(cp["position"]) != "bin.1:300" || len(cp) != 1 {
		t.Fatalf("checkpoint = %q, want position=bin.1:300 only", cp)
	}
}

func num(v string) int {
	var n int
	fmt.Sscanf(v[strings.IndexByte(v, '-')+1:], "%d", &n)
	return n
}

// A transaction that is emitted but never committed, because the sink was closed or
// because its process died and a new instance took over the transactional id, is never
// visible to a read_committed reader, though its records did reach the broker.
func TestTransactionalUncommittedInvisible(t *testing.T) {
	for _, tc := range []struct {
		name    string
		abandon func(t *testing.T, s *sinks.Transactional)
	}{
		{"closed without commit", func(t *testing.T, s *sinks.Transactional) {
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			if err := s.Emit(t.Context(), sinks.Message{Topic: "one", Value: []byte("x")}); err == nil {
				t.Fatal("Emit after Close succeeded")
			}
		}},
		{"abandoned mid-transaction", func(t *testing.T, s *sinks.Transactional) {
			// Like kill -9: no abort. The next instance's initialisation aborts it.
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			broker := testutil.Broker(t, kfake.SeedTopics(1, "one"))
			old := newTxn(t, broker, "tx-un", "cp-un")
			emitN(t, old, "one", "committed", 10)
			if err := old.Commit(t.Context(), []sinks.CheckpointRecord{{Key: "pos", Value: []byte("1")}}); err != nil {
				t.Fatalf("Commit: %v", err)
			}
			emitN(t, old, "one", "lost", 20)
			if err := old.Flush(t.Context()); err != nil { // on the broker, not committed
				t.Fatalf("Flush: %v", err)
			}
			tc.abandon(t, old)

			next := newTxn(t, broker, "tx-un", "cp-un")
			if cp := readCheckpoints(t, broker, "cp-un"); string(cp["pos"]) != "1" {
				t.Fatalf("checkpoint after takeover = %q, want pos=1", cp)
			}
			emitN(t, next, "one", "after", 5)
			if err := next.Commit(t.Context(), []sinks.CheckpointRecord{{Key: "pos", Value: []byte("2")}}); err != nil {
				t.Fatalf("Commit by the new instance: %v", err)
			}

			// The "after" records follow the lost ones in the single partition, so a
			// reader that showed lost records would show them before reaching 15.
			got := values(testutil.Consume(t, broker, []string{"one"}, 15, 10*time.Second, testutil.ConsumeOptions{ReadCommitted: true}))
			for v, n := range got {
				if strings.HasPrefix(v, "lost") || n != 1 {
					t.Fatalf("read_committed saw %s %d times", v, n)
				}
			}
			if got["committed-9"] != 1 || got["after-4"] != 1 {
				t.Fatalf("read_committed missed committed records: %v", got)
			}
			raw := values(testutil.Consume(t, broker, []string{"one"}, 35, 10*time.Second))
			if raw["lost-19"] != 1 {
				t.Fatalf("read_uncommitted did not see the aborted records, so the test proves nothing: %v", raw)
			}
			if cp := readCheckpoints(t, broker, "cp-un"); string(cp["pos"]) != "2" {
				t.Fatalf("checkpoint = %q, want pos=2", cp)
			}
		})
	}
}

// A second producer with the same transactional id fences the first: the first's Commit
// fails with ErrFenced (not the retryable ErrSinkFailed), its transaction stays
// invisible, and the zombie cannot disturb the new owner.
func TestTransactionalFencing(t *testing.T) {
	for _, tc := range []struct {
		name string
		// zombie acts after being fenced and returns the error it got.
		zombie func(t *testing.T, s *sinks.Transactional) error
	}{
		{"commit with checkpoint", func(t *testing.T, s *sinks.Transactional) error {
			return s.Commit(t.Context(), []sinks.CheckpointRecord{{Key: "pos", Value: []byte("zombie")}})
		}},
		{"emit then commit", func(t *testing.T, s *sinks.Transactional) error {
			// The partition is already in the transaction: the produce itself is refused.
			if err := s.Emit(t.Context(), sinks.Message{Topic: "one", Value: []byte("zombie-more")}); err != nil {
				return err
			}
			return s.Commit(t.Context(), nil)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			broker := testutil.Broker(t, kfake.SeedTopics(1, "one"))
			first := newTxn(t, broker, "tx-fence", "cp-fence")
			emitN(t, first, "one", "zombie", 10)
			if err := first.Flush(t.Context()); err != nil {
				t.Fatalf("Flush: %v", err)
			}
			second := newTxn(t, broker, "tx-fence", "cp-fence")

			err := tc.zombie(t, first)
			if !errors.Is(err, sinks.ErrFenced) {
				t.Fatalf("zombie got %v, want ErrFenced", err)
			}
			if errors.Is(err, sinks.ErrSinkFailed) {
				t.Fatalf("ErrFenced must not be retryable (ErrSinkFailed): %v", err)
			}
			if err := first.Emit(t.Context(), sinks.Message{Topic: "one", Value: []byte("zombie-late")}); !errors.Is(err, sinks.ErrFenced) {
				t.Fatalf("Emit after fencing: %v, want ErrFenced", err)
			}
			if err := first.Close(); err != nil {
				t.Logf("closing the zombie: %v", err)
			}

			emitN(t, second, "one", "owner", 10)
			if err := second.Commit(t.Context(), []sinks.CheckpointRecord{{Key: "pos", Value: []byte("owner")}}); err != nil {
				t.Fatalf("the new owner's Commit after the zombie's attempts: %v", err)
			}
			got := values(testutil.Consume(t, broker, []string{"one"}, 10, 10*time.Second, testutil.ConsumeOptions{ReadCommitted: true}))
			for v := range got {
				if !strings.HasPrefix(v, "owner") {
					t.Fatalf("read_committed saw the zombie's %s", v)
				}
			}
			if cp := readCheckpoints(t, broker, "cp-fence"); string(cp["pos"]) != "owner" {
				t.Fatalf("checkpoint = %q, want pos=owner", cp)
			}
		})
	}
}

// A message the producer refuses fails the transaction: Commit aborts it and returns
// ErrSinkFailed, and none of its messages become visible.
func TestTransactionalDeliveryFailureAborts(t *testing.T) {
	broker := testutil.Broker(t, kfake.SeedTopics(1, "one"), smallMessagesOnly)
	s := newTxn(t, broker, "tx-fail", "cp-fail")
	emitN(t, s, "one", "doomed", 10)
	// Larger than the broker's message.max.bytes: refused, asynchronously.
	if err := s.Emit(t.Context(), sinks.Message{Topic: "one", Value: bytes.Repeat([]byte("x"), 5000)}); err != nil {
		t.Fatalf("Emit of the big message: %v (the refusal should come later)", err)
	}
	err := s.Commit(t.Context(), []sinks.CheckpointRecord{{Key: "pos", Value: []byte("doomed")}})
	if !errors.Is(err, sinks.ErrSinkFailed) || errors.Is(err, sinks.ErrFenced) {
		t.Fatalf("Commit = %v, want ErrSinkFailed", err)
	}
	if err := s.Commit(t.Context(), nil); !errors.Is(err, sinks.ErrSinkFailed) {
		t.Fatalf("Commit on a failed sink = %v, want ErrSinkFailed", err)
	}
	s.Close()

	next := newTxn(t, broker, "tx-fail", "cp-fail")
	emitN(t, next, "one", "ok", 3)
	if err := next.Commit(t.Context(), []sinks.CheckpointRecord{{Key: "pos", Value: []byte("ok")}}); err != nil {
		t.Fatalf("Commit after restart: %v", err)
	}
	got := values(testutil.Consume(t, broker, []string{"one"}, 3, 10*time.Second, testutil.ConsumeOptions{ReadCommitted: true}))
	for v := range got {
		if !strings.HasPrefix(v, "ok") {
			t.Fatalf("read_committed saw %s from the failed transaction", v)
		}
	}
	if cp := readCheckpoints(t, broker, "cp-fail"); string(cp["pos"]) != "ok" {
		t.Fatalf("checkpoint = %q, want pos=ok", cp)
	}
}

// ReadCheckpoints returns the last committed value per key: later commits win,
// tombstones delete, aborted and still-open transactions are ignored, and it returns
// although a transaction is open on the topic.
func TestReadCheckpoints(t *testing.T) {
	broker := testutil.Broker(t)
	const topic = "cp-read"
	if cp := readCheckpoints(t, broker, "cp-missing"); len(cp) != 0 {
		t.Fatalf("missing topic read as %q", cp)
	}
	s := newTxn(t, broker, "tx-read", topic)
	if cp := readCheckpoints(t, broker, topic); len(cp) != 0 {
		t.Fatalf("new topic read as %q", cp)
	}
	commit := func(s *sinks.Transactional, recs ...sinks.CheckpointRecord) {
		t.Helper()
		if err := s.Commit(t.Context(), recs); err != nil {
			t.Fatalf("Commit: %v", err)
		}
	}
	commit(s, sinks.CheckpointRecord{Key: "pos", Value: []byte("1")}, sinks.CheckpointRecord{Key: "state/a", Value: []byte("a1")},
		sinks.CheckpointRecord{Key: "state/b", Value: []byte("b1")})
	commit(s, sinks.CheckpointRecord{Key: "pos", Value: []byte("2")}, sinks.CheckpointRecord{Key: "state/b"},
		sinks.CheckpointRecord{Key: "state/empty", Value: []byte{}})

	// An aborted transaction holding checkpoint-like records, then an open one.
	for _, v := range []string{"aborted", "open"} {
		if err := s.Emit(t.Context(), sinks.Message{Topic: topic, Key: []byte("pos"), Value: []byte(v)}); err != nil {
			t.Fatalf("Emit: %v", err)
		}
		if err := s.Emit(t.Context(), sinks.Message{Topic: topic, Key: []byte("state/c"), Value: []byte(v)}); err != nil {
			t.Fatalf("Emit: %v", err)
		}
		if err := s.Flush(t.Context()); err != nil {
			t.Fatalf("Flush: %v", err)
		}
		if v == "aborted" {
			s.Close()
			s = newTxn(t, broker, "tx-read", topic)
		}
	}
	want := map[string][]byte{"pos": []byte("2"), "state/a": []byte("a1"), "state/empty": {}}
	if cp := readCheckpoints(t, broker, topic); !maps.EqualFunc(cp, want, bytes.Equal) || cp["state/empty"] == nil {
		t.Fatalf("checkpoints = %q, want %q", cp, want)
	}
	commit(s, sinks.CheckpointRecord{Key: "pos", Value: []byte("3")})
	want["pos"], want["state/c"] = []byte("3"), []byte("open")
	if cp := readCheckpoints(t, broker, topic); !maps.EqualFunc(cp, want, bytes.Equal) {
		t.Fatalf("checkpoints after the open transaction committed = %q, want %q", cp, want)
	}

	// Checked with an independent client: one partition, compacted.
	cl := testutil.KafkaClient(t, kgo.SeedBrokers(broker))
	defer cl.Close()
	if policy := testutil.CleanupPolicy(t, broker, topic); policy != "compact" {
		t.Fatalf("cleanup.policy of %s = %q, want compact", topic, policy)
	}
	meta := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(topic)
	meta.Topics = append(meta.Topics, mt)
	mresp, err := meta.RequestWith(t.Context(), cl)
	if err != nil {
		t.Fatalf("metadata: %v", err)
	}
	if n := len(mresp.Topics[0].Partitions); n != 1 {
		t.Fatalf("%s has %d partitions, want 1", topic, n)
	}
}

// The brokers lose everything while the sink runs (the development broker restarted
// without --data-dir, a cluster rebuilt). The commit after that fails, and the failing
// producer does not create the checkpoint topic again by asking for its metadata: the
// broker would make it with its default cleanup.policy (delete), which every later
// NewTransactional refuses, so the daemon would retry forever. The next sink creates it
// compacted, and it is empty.
func TestTransactionalCheckpointTopicNotAutoCreatedAfterBrokerLoss(t *testing.T) {
	port := testutil.FreePort(t) // the restarted broker must answer at the same address
	startBroker := func() *kfake.Cluster {
		c, err := kfake.NewCluster(kfake.Ports(port), kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(3))
		if err != nil {
			t.Fatalf("starting kfake broker on port %d: %v", port, err)
		}
		return c
	}
	first := startBroker()
	broker := first.ListenAddrs()[0]
	s := newTxn(t, broker, "tx-lost", "cp-lost")
	emitN(t, s, "orders", "a", 10)
	if err := s.Commit(t.Context(), []sinks.CheckpointRecord{{Key: "position", Value: []byte("bin.1:100")}}); err != nil {
		t.Fatalf("Commit before the broker lost its data: %v", err)
	}
	first.Close()
	second := startBroker()
	t.Cleanup(second.Close)

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	emitN(t, s, "orders", "b", 10)
	err := s.Commit(ctx, []sinks.CheckpointRecord{{Key: "position", Value: []byte("bin.1:200")}})
	if !errors.Is(err, sinks.ErrSinkFailed) {
		t.Fatalf("Commit after the broker lost its data = %v, want ErrSinkFailed", err)
	}
	s.Close()
	if policy := testutil.CleanupPolicy(t, broker, "cp-lost"); policy != "" {
		t.Fatalf("the failing producer created checkpoint topic cp-lost (cleanup.policy=%s)", policy)
	}
	again := newTxn(t, broker, "tx-lost", "cp-lost")
	if policy := testutil.CleanupPolicy(t, broker, "cp-lost"); policy != "compact" {
		t.Fatalf("cleanup.policy of the recreated cp-lost = %q, want compact", policy)
	}
	if cp := readCheckpoints(t, broker, "cp-lost"); len(cp) != 0 {
		t.Fatalf("checkpoints after the broker lost its data = %q, want none", cp)
	}
	// The new sink works, and still creates the topics rules write to.
	emitN(t, again, "orders-new", "c", 5)
	if err := again.Commit(t.Context(), []sinks.CheckpointRecord{{Key: "position", Value: []byte("bin.1:300")}}); err != nil {
		t.Fatalf("Commit of the new sink: %v", err)
	}
	if got := testutil.Consume(t, broker, []string{"orders-new"}, 5, 20*time.Second, testutil.ConsumeOptions{ReadCommitted: true}); len(got) != 5 {
		t.Fatalf("read %d records from orders-new, want 5", len(got))
	}
}

// A topic a rule writes to that does not exist, on brokers that do not create topics,
// fails Emit with ErrSinkFailed naming the topic and the broker setting.
func TestTransactionalMissingTopicWithoutAutoCreation(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatalf("starting kfake broker: %v", err)
	}
	t.Cleanup(c.Close)
	s := newTxn(t, c.ListenAddrs()[0], "tx-noauto", "cp-noauto")
	err = s.Emit(t.Context(), sinks.Message{Topic: "absent", Value: []byte("x")})
	if !errors.Is(err, sinks.ErrSinkFailed) || !strings.Contains(err.Error(), "absent") || !strings.Contains(err.Error(), "auto.create.topics.enable") {
		t.Fatalf("Emit to a missing topic = %v, want ErrSinkFailed naming the topic and auto.create.topics.enable", err)
	}
}

// An existing checkpoint topic that is not compacted is refused: its checkpoints would
// expire.
func TestTransactionalRefusesUncompactedCheckpointTopic(t *testing.T) {
	broker := testutil.Broker(t, kfake.SeedTopics(1, "cp-delete"))
	_, err := sinks.NewTransactional(t.Context(), sinks.TransactionalConfig{
		Brokers: []string{broker}, TransactionalID: "tx-del", CheckpointTopic: "cp-delete",
	})
	if err == nil || !strings.Contains(err.Error(), "cleanup.policy") {
		t.Fatalf("NewTransactional = %v, want a cleanup.policy refusal", err)
	}
}

// A transaction of 100,000 messages commits, and all of them are read back.
func TestTransactionalLargeTransaction(t *testing.T) {
	if testing.Short() {
		t.Skip("large transaction")
	}
	broker := testutil.Broker(t)
	s := newTxn(t, broker, "tx-large", "cp-large")
	const n = 100000
	value := bytes.Repeat([]byte("v"), 200)
	for i := range n {
		if err := s.Emit(t.Context(), sinks.Message{Topic: "large", Key: fmt.Appendf(nil, "%d", i), Value: value}); err != nil {
			t.Fatalf("Emit %d: %v", i, err)
		}
	}
	if err := s.Commit(t.Context(), []sinks.CheckpointRecord{{Key: "pos", Value: []byte("large")}}); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	got := testutil.Consume(t, broker, []string{"large"}, n, 30*time.Second, testutil.ConsumeOptions{ReadCommitted: true})
	keys := map[string]bool{}
	for _, r := range got {
		keys[r.Key] = true
	}
	if len(keys) != n {
		t.Fatalf("read %d distinct keys, want %d", len(keys), n)
	}
}

// BenchmarkTransactionalThroughput emits ~1 KB messages and commits every 10,000, as the
// pipeline would at MySQL transaction boundaries.
func BenchmarkTransactionalThroughput(b *testing.B) {
	broker := testutil.Broker(b)
	s := newTxn(b, broker, "tx-bench", "cp-bench")
	value := bytes.Repeat([]byte("x"), 1000)
	ctx := context.Background()
	const perTxn = 10000
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.Emit(ctx, sinks.Message{Topic: "bench", Key: fmt.Appendf(nil, "%d", i%1000), Value: value}); err != nil {
			b.Fatal(err)
		}
		if (i+1)%perTxn == 0 {
			if err := s.Commit(ctx, []sinks.CheckpointRecord{{Key: "pos", Value: fmt.Appendf(nil, "%d", i)}}); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := s.Commit(ctx, []sinks.CheckpointRecord{{Key: "pos", Value: []byte("end")}}); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// TestTransactionalMaxInFlightBoundsEmit: exactly-once takes kafka.max_in_flight too. While
// the broker holds every produce request, Emit hands over MaxInFlight messages and then
// waits for an acknowledgement; once the broker answers, it goes on.
func TestTransactionalMaxInFlightBoundsEmit(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	release := make(chan struct{})
	c.ControlKey(kmsg.Produce.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		c.SleepControl(func() { <-release })
		return nil, nil, false // then as the broker would
	})
	const maxInFlight = 3
	tx, err := sinks.NewTransactional(t.Context(), sinks.TransactionalConfig{Brokers: c.ListenAddrs(), ClientID: "test",
		TransactionalID: "window", CheckpointTopic: "window.checkpoints", MaxInFlight: maxInFlight})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	free := sync.OnceFunc(func() { close(release) })
	defer free() // before Close, which would wait for the held requests
	msg := func(i int) sinks.Message {
		return sinks.Message{Topic: "window", Key: fmt.Appendf(nil, "k%d", i), Value: []byte("v")}
	}
	for i := range maxInFlight {
		if err := tx.Emit(t.Context(), msg(i)); err != nil {
			t.Fatalf("Emit %d of %d: %v", i, maxInFlight, err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	err = tx.Emit(ctx, msg(maxInFlight))
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Emit beyond MaxInFlight %d with nothing acknowledged: %v, want it to wait (context.DeadlineExceeded)", maxInFlight, err)
	}
	free()
	if err := tx.Emit(t.Context(), msg(maxInFlight+1)); err != nil {
		t.Fatalf("Emit once the broker answers: %v", err)
	}
}

// A transaction left open longer than the transaction timeout (a long snapshot under
// exactly-once) is aborted by the broker; the next Commit says so, naming
// kafka.transaction_timeout, and is terminal, not taken for a newer producer's fence
// alone. A timeout over the broker's transaction.max.timeout.ms is refused at start,
// naming both.
func TestTransactionalTimeoutIsNamed(t *testing.T) {
	broker := testutil.Broker(t, kfake.SeedTopics(1, "one"))
	tx, err := sinks.NewTransactional(t.Context(), sinks.TransactionalConfig{Brokers: []string{broker}, ClientID: "test",
		TransactionalID: "tx-timeout", CheckpointTopic: "cp-timeout", TransactionTimeout: time.Second})
	if err != nil {
		t.Fatalf("NewTransactional: %v", err)
	}
	defer tx.Close()
	emitN(t, tx, "one", "slow", 3)
	if err := tx.Flush(t.Context()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	cl := testutil.KafkaClient(t, kgo.SeedBrokers(broker))
	defer cl.Close()
	testutil.Eventually(t, 20*time.Second, "the broker to abort the transaction that outlived its timeout", func() bool {
		req := kmsg.NewPtrDescribeTransactionsRequest()
		req.TransactionalIDs = []string{"tx-timeout"}
		resp, err := req.RequestWith(t.Context(), cl)
		return err == nil && len(resp.TransactionStates) == 1 && resp.TransactionStates[0].State != "Ongoing"
	})
	err = tx.Commit(t.Context(), []sinks.CheckpointRecord{{Key: "pos", Value: []byte("late")}})
	if !errors.Is(err, sinks.ErrTransactionTimedOut) || errors.Is(err, sinks.ErrSinkFailed) || !strings.Contains(err.Error(), "kafka.transaction_timeout") {
		t.Fatalf("Commit after the broker aborted the transaction on its timeout: %v; want a terminal ErrTransactionTimedOut naming kafka.transaction_timeout", err)
	}
	if got := testutil.Consume(t, broker, []string{"one"}, 0, time.Second, testutil.ConsumeOptions{ReadCommitted: true}); len(got) != 0 {
		t.Errorf("read_committed saw %d messages of the aborted transaction", len(got))
	}

	_, err = sinks.NewTransactional(t.Context(), sinks.TransactionalConfig{Brokers: []string{broker}, ClientID: "test",
		TransactionalID: "tx-too-long", CheckpointTopic: "cp-timeout", TransactionTimeout: 20 * time.Minute})
	if err == nil || !strings.Contains(err.Error(), "kafka.transaction_timeout") || !strings.Contains(err.Error(), "transaction.max.timeout.ms") {
		t.Fatalf("a transaction timeout over the broker's maximum: %v; want a refusal naming kafka.transaction_timeout and transaction.max.timeout.ms", err)
	}
}
