package pipeline

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stocksync/stocksync/canal"
	"github.com/stocksync/stocksync/rules"
	"github.com/stocksync/stocksync/sinks"
)

// flakySink fails its next Flush when failNext is set.
type flakySink struct{ failNext bool }

func (*flakySink) Emit(context.Context, sinks.Message) error { return nil }
func (s *flakySink) Flush(ctx context.Context) error {
	if s.failNext {
		s.failNext = false
		return context.Canceled
	}
	return nil
}

// savedCheckpoints records every Save.
type savedCheckpoints struct{ saves [][]canal.StateRow }

func (*savedCheckpoints) Load(context.Context) (canal.Position, []canal.StateRow, bool, error) {
	return canal.Position{}, nil, false, nil
}
func (c *savedCheckpoints) Save(_ context.Context, _ canal.Position, state []canal.StateRow) error {
	c.saves = append(c.saves, state)
	return nil
}

// TestFailedSaveKeepsItsState: a periodic save cut short (the stop cancels it while it
// waits for the broker) must leave its rule state for the next save, or the last
// checkpoint would record the position without the groups changed up to it.
func TestFailedSaveKeepsItsState(t *testing.T) {
	sink := &flakySink{failNext: true}
	store := &savedCheckpoints{}
	p := New(Options{Sink: sink})
	pos := canal.Position{File: "binlog.000001", Pos: 400}
	p.pending.pos, p.pending.have = pos, true
	p.pending.state[stateKey{"product-stock", `{"sku_id":"S4"}`}] = []byte(`{"count":8,"sums":{"sellable":0}}`)
	p.pending.state[stateKey{"product-stock", `{"sku_id":"S1"}`}] = []byte(`{"count":8,"sums":{"sellable":5}}`)
	p.emitted.Add(1)

	if err := p.saveCheckpoint(t.Context(), store, false); !errors.Is(err, context.Canceled) {
		t.Fatalf("first save: %v, want the sink's cancellation", err)
	}
	// A later transaction changed S1 again before the last save.
	p.pending.state[stateKey{"product-stock", `{"sku_id":"S1"}`}] = []byte(`{"count":8,"sums":{"sellable":4}}`)
	if err := p.saveCheckpoint(t.Context(), store, true); err != nil {
		t.Fatal(err)
	}
	if len(store.saves) != 1 {
		t.Fatalf("%d saves, want 1", len(store.saves))
	}
	got := map[string]string{}
	for _, r := range store.saves[0] {
		got[r.Key] = string(r.Value)
	}
	if got[`{"sku_id":"S4"}`] != `{"count":8,"sums":{"sellable":0}}` || got[`{"sku_id":"S1"}`] != `{"count":8,"sums":{"sellable":4}}` {
		t.Fatalf("last save holds %v; want S4 from the failed save and S1's newer value", got)
	}
}

// gateSink holds each Flush until the test releases the gate it sends.
type gateSink struct{ gates chan chan struct{} }

func (*gateSink) Emit(context.Context, sinks.Message) error { return nil }
func (s *gateSink) Flush(ctx context.Context) error {
	g := make(chan struct{})
	s.gates <- g
	<-g
	return nil
}

// tableStore keeps what the checkpoint table would: the last position saved, and each
// state row as last written.
type tableStore struct {
	mu    sync.Mutex
	pos   canal.Position
	state map[string]string
}

func (*tableStore) Load(context.Context) (canal.Position, []canal.StateRow, bool, error) {
	return canal.Position{}, nil, false, nil
}
func (s *tableStore) Save(_ context.Context, pos canal.Position, rows []canal.StateRow) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pos = pos
	for _, r := range rows {
		s.state[r.Key] = string(r.Value)
	}
	return nil
}

// TestConcurrentSavesNeverMoveTheCheckpointBack: at-least-once, the checkpoint loop and
// the reading goroutine (a resync starting a re-read saves at once) both save. A save
// begun while the loop's older one waits for the broker must not commit before it: the
// loop's, committed last, would take the checkpoint back to its position, and a group
// changed in both would keep its older value, which the next save (of what changed
// since) never corrects.
func TestConcurrentSavesNeverMoveTheCheckpointBack(t *testing.T) {
	sink := &gateSink{gates: make(chan chan struct{})}
	store := &tableStore{state: map[string]string{}}
	p := New(Options{Sink: sink})
	p1 := canal.Position{File: "binlog.000001", Pos: 100}
	p2 := canal.Position{File: "binlog.000001", Pos: 200}
	p3 := canal.Position{File: "binlog.000001", Pos: 300}
	sku := `{"sku_id":"A1"}`

	p.pend(p1, []rules.StateEntry{{Rule: "product-stock", Key: sku, Value: []byte(`{"sums":{"sellable":10}}`)}})
	p.emitted.Add(1)
	loopDone := make(chan error, 1)
	go func() { loopDone <- p.saveCheckpoint(t.Context(), store, false) }() // the checkpoint loop
	loopGate := <-sink.gates                                                // waiting for the broker

	// The reader commits a later transaction that changes the same group, then starts a
	// re-read, which saves at once.
	p.pend(p2, []rules.StateEntry{{Rule: "product-stock", Key: sku, Value: []byte(`{"sums":{"sellable":7}}`)}})
	p.emitted.Add(1)
	readerDone := make(chan error, 1)
	go func() { readerDone <- p.saveCheckpoint(t.Context(), store, true) }()
	select {
	case readerGate := <-sink.gates:
		// The reader's save reached the broker while the loop's was open: let it commit
		// first, the order that took the checkpoint back.
		t.Error("a second save waited for the broker while the first was still open")
		close(readerGate)
		if err := <-readerDone; err != nil {
			t.Fatal(err)
		}
		close(loopGate)
		if err := <-loopDone; err != nil {
			t.Fatal(err)
		}
	case <-time.After(200 * time.Millisecond): // waiting for its turn, as it should
		close(loopGate)
		if err := <-loopDone; err != nil {
			t.Fatal(err)
		}
		close(<-sink.gates)
		if err := <-readerDone; err != nil {
			t.Fatal(err)
		}
	}
	if store.pos != p2 || store.state[sku] != `{"sums":{"sellable":7}}` || p.lastSavedPosition() != p2 {
		t.Errorf("after both saves: checkpoint %s (in memory %s), %s = %s; want %s and the value as of it, {\"sums\":{\"sellable\":7}}",
			store.pos, p.lastSavedPosition(), sku, store.state[sku], p2)
	}

	// The next periodic save, of another group changed after p2, keeps A1's value.
	p.pend(p3, []rules.StateEntry{{Rule: "product-stock", Key: `{"sku_id":"B2"}`, Value: []byte(`{"sums":{"sellable":1}}`)}})
	p.emitted.Add(1)
	go func() { close(<-sink.gates) }()
	if err := p.saveCheckpoint(t.Context(), store, false); err != nil {
		t.Fatal(err)
	}
	if store.pos != p3 || store.state[sku] != `{"sums":{"sellable":7}}` {
		t.Errorf("checkpoint %s saves %s = %s; want %s with the value as of %s, {\"sums\":{\"sellable\":7}}", store.pos, sku, store.state[sku], p3, p2)
	}
}

// TestLeasedCheckpointsSaveOnlyWhileHeld: a daemon that lost the lead must not move the
// checkpoint the new leader resumes from.
func TestLeasedCheckpointsSaveOnlyWhileHeld(t *testing.T) {
	store := &savedCheckpoints{}
	held := true
	leased := leasedCheckpoints{Checkpointer: store, lease: func() error {
		if !held {
			return ErrLeaseLost
		}
		return nil
	}}
	pos := canal.Position{File: "binlog.000001", Pos: 400}
	if err := leased.Save(t.Context(), pos, nil); err != nil {
		t.Fatal(err)
	}
	held = false
	if err := leased.Save(t.Context(), pos, nil); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("save without the lease: %v, want ErrLeaseLost", err)
	}
	if len(store.saves) != 1 {
		t.Fatalf("%d saves reached the store, want 1 (the one made with the lease)", len(store.saves))
	}
}

// committedSink accepts every Commit.
type committedSink struct{}

func (committedSink) Commit(context.Context, []sinks.CheckpointRecord) error { return nil }

// TestKafkaCheckpointsLostAfterACommit: once a run of the process committed (or loaded) a
// checkpoint, a later run that finds the checkpoint topic empty (the brokers lost their
// data) stops with ErrCheckpointLost, not retryable, naming the lost position, instead of
// starting over as on a first start. A process that never saw one starts as before.
func TestKafkaCheckpointsLostAfterACommit(t *testing.T) {
	var last atomic.Pointer[canal.Position]
	first := &KafkaCheckpoints{Name: "cp", Sink: committedSink{}, Loaded: map[string][]byte{}, Last: &last}
	if _, _, found, err := first.Load(t.Context()); found || err != nil {
		t.Fatalf("first start on an empty topic: found=%v err=%v, want a first start", found, err)
	}
	pos := canal.Position{File: "binlog.000007", Pos: 4321}
	if err := first.Save(t.Context(), pos, nil); err != nil {
		t.Fatal(err)
	}
	again := &KafkaCheckpoints{Name: "cp", Sink: committedSink{}, Loaded: map[string][]byte{}, Last: &last}
	_, _, found, err := again.Load(t.Context())
	if found || !errors.Is(err, ErrCheckpointLost) || Retryable(err) || !strings.Contains(err.Error(), pos.String()) {
		t.Fatalf("restart on an emptied topic: found=%v err=%v, want ErrCheckpointLost naming %s, not retryable", found, err, pos)
	}

	// Loaded counts as seen too.
	var loadedOnly atomic.Pointer[canal.Position]
	withOne := &KafkaCheckpoints{Name: "cp", Loaded: map[string][]byte{"cp/position": []byte(`{"file":"binlog.000002","pos":4}`)}, Last: &loadedOnly}
	if _, _, found, err := withOne.Load(t.Context()); !found || err != nil {
		t.Fatalf("loading a checkpoint: found=%v err=%v", found, err)
	}
	emptied := &KafkaCheckpoints{Name: "cp", Loaded: map[string][]byte{}, Last: &loadedOnly}
	if _, _, _, err := emptied.Load(t.Context()); !errors.Is(err, ErrCheckpointLost) {
		t.Fatalf("restart after a loaded checkpoint on an emptied topic: %v, want ErrCheckpointLost", err)
	}
}

// rememberedCheckpoint is a mirror holding one position.
type rememberedCheckpoint struct{ pos *canal.Position }

func (m *rememberedCheckpoint) Load(context.Context) (canal.Position, []canal.StateRow, bool, error) {
	if m.pos == nil {
		return canal.Position{}, nil, false, nil
	}
	return *m.pos, nil, true, nil
}

func (m *rememberedCheckpoint) Save(_ context.Context, pos canal.Position, _ []canal.StateRow) error {
	m.pos = &pos
	return nil
}

// failingCommit refuses every commit.
type failingCommit struct{}

func (failingCommit) Commit(context.Context, []sinks.CheckpointRecord) error {
	return errors.New("fenced")
}

// TestKafkaCheckpointsLostWhileStopped: with the mirror, a process that never saw a
// checkpoint itself (started after the brokers lost the topic) stops with
// ErrCheckpointLost too, naming the remembered position and the row to delete to begin
// afresh. The mirror follows commits only, the first of a run and of each binlog file.
func TestKafkaCheckpointsLostWhileStopped(t *testing.T) {
	mirror := &rememberedCheckpoint{}
	committing := &KafkaCheckpoints{Name: "cp", Sink: committedSink{}, Loaded: map[string][]byte{}, MirrorTable: "meta.checkpoint", mirror: mirror}
	if _, _, found, err := committing.Load(t.Context()); found || err != nil {
		t.Fatalf("first start, nothing remembered: found=%v err=%v, want a first start", found, err)
	}
	pos := canal.Position{File: "binlog.000009", Pos: 77}
	if err := committing.Save(t.Context(), pos, nil); err != nil {
		t.Fatal(err)
	}
	if mirror.pos == nil || *mirror.pos != pos {
		t.Fatalf("the mirror holds %v after a commit at %s", mirror.pos, pos)
	}
	// Later commits of the same file write nothing to the source; the first of the next
	// file is kept.
	if err := committing.Save(t.Context(), canal.Position{File: "binlog.000009", Pos: 88}, nil); err != nil {
		t.Fatal(err)
	}
	if *mirror.pos != pos {
		t.Fatalf("a second commit in %s moved the mirror to %s", pos.File, *mirror.pos)
	}
	next := canal.Position{File: "binlog.000010", Pos: 4}
	if err := committing.Save(t.Context(), next, nil); err != nil {
		t.Fatal(err)
	}
	if *mirror.pos != next {
		t.Fatalf("the mirror holds %s after the first commit in %s", *mirror.pos, next.File)
	}
	pos = next
	refused := &KafkaCheckpoints{Name: "cp", Sink: failingCommit{}, Loaded: map[string][]byte{}, MirrorTable: "meta.checkpoint", mirror: mirror}
	if err := refused.Save(t.Context(), canal.Position{File: "binlog.000011", Pos: 99}, nil); err == nil {
		t.Fatal("a refused commit saved")
	}
	if *mirror.pos != pos {
		t.Fatalf("a refused commit moved the mirror to %s", *mirror.pos)
	}

	// A new process (no Last), the topic empty: refused, and told how to begin afresh.
	_, _, found, err := refused.Load(t.Context())
	if found || !errors.Is(err, ErrCheckpointLost) || Retryable(err) {
		t.Fatalf("a new process on an emptied topic: found=%v err=%v, want ErrCheckpointLost", found, err)
	}
	for _, want := range []string{"was at or after " + pos.String(), "DELETE FROM meta.checkpoint WHERE name = 'cp/exactly-once'"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q\ndoes not say %q", err, want)
		}
	}
}

// TestTableFilterNeverMatchesTheCheckpointTables: the stream skips checkpoint.table and
// its _state table whatever the rules' globs match, and only them.
func TestTableFilterNeverMatchesTheCheckpointTables(t *testing.T) {
	set, err := rules.Parse("rules.yaml", []byte("rules:\n  - name: all\n    match: {table: \"stocksync.*\"}\n    topic: t\n"))
	if err != nil {
		t.Fatal(err)
	}
	f := (&Pipeline{opts: Options{CheckpointTable: "stocksync.checkpoint"}}).filterFor(set)
	for table, want := range map[string]bool{"checkpoint": false, "checkpoint_state": false, "checkpoints": true, "stock": true, "heckpoint": true} {
		if got := f.Matches("stocksync", table); got != want {
			t.Errorf("Matches(stocksync, %s) = %v, want %v", table, got, want)
		}
	}
}
