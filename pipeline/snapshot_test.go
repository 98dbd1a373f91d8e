package pipeline_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/stocksync/stocksync/canal"
	"github.com/stocksync/stocksync/internal/testutil"
	"github.com/stocksync/stocksync/pipeline"
	"github.com/stocksync/stocksync/rules"
	"github.com/stocksync/stocksync/sinks"
)

// allOpsRules publishes every op, snapshot reads included.
const allOpsRules = `
rules:
  - name: stock-rows
    match: {table: "DB.stock_*"}
    topic: TOPIC
    key: [sku_id]
`

// TestSnapshotThenStreamWithWritesDuringTheSnapshot: rows that exist before the first
// start are read by the snapshot (op r) while a writer changes the table; then the stream
// continues from the snapshot's position. Replaying every message in order gives the
// table's final contents, and no change is published twice.
func TestSnapshotThenStreamWithWritesDuringTheSnapshot(t *testing.T) {
	e := newEnv(t)
	db := e.mysql.Open(t, e.db)
	testutil.Exec(t, db, "CREATE TABLE stock_s (sku_id INT PRIMARY KEY, qty INT NOT NULL)")
	testutil.Exec(t, db, "INSERT INTO stock_s VALUES "+rowsUpTo(3000))

	// The writer changes rows while the snapshot reads them, and goes on after.
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		rng := rand.New(rand.NewPCG(1, 2))
		for i := 3000; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			var err error
			switch rng.IntN(3) {
			case 0:
				_, err = db.Exec("INSERT INTO stock_s VALUES (?, ?)", i, i)
			case 1:
				_, err = db.Exec("UPDATE stock_s SET qty = qty + 1 WHERE sku_id = ?", rng.IntN(i))
			case 2:
				_, err = db.Exec("DELETE FROM stock_s WHERE sku_id = ?", rng.IntN(i))
			}
			if err != nil {
				done <- err
				return
			}
		}
	}()
	e.start(e.rules(allOpsRules), testutil.ServerID(), func(o *pipeline.Options) {
		o.Snapshot = pipeline.SnapshotInitial
		o.SnapshotChunkSize = 100
	})
	time.Sleep(300 * time.Millisecond) // let the writer run on after the snapshot (a duration of load, not a wait for a condition)
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	testutil.Exec(t, db, "INSERT INTO stock_s VALUES (-1, 0)") // the end marker

	final := map[int]int{}
	rows, err := db.Query("SELECT sku_id, qty FROM stock_s")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k, v int
		rows.Scan(&k, &v)
		final[k] = v
	}
	rows.Close()

	replayed := map[int]int{}
	sources := map[string]string{}
	reads := 0
	testutil.Eventually(t, 60*time.Second, "the end marker", func() bool {
		replayed, sources, reads = map[int]int{}, map[string]string{}, 0
		for _, r := range testutil.Consume(t, e.broker, []string{e.topic}, 0, 2*time.Second) {
			var m struct {
				Op     string         `json:"op"`
				Before map[string]int `json:"before"`
				After  map[string]int `json:"after"`
				Source map[string]any `json:"source"`
			}
			if err := json.Unmarshal([]byte(r.Value), &m); err != nil {
				t.Fatal(err)
			}
			// The repeat key of the topic contract: server_id, file, pos, row, snapshot.
			src := fmt.Sprint(m.Source["server_id"], " ", m.Source["file"], " ", m.Source["pos"], " ", m.Source["row"], " ", m.Source["snapshot"])
			if sources[src] != "" {
				t.Fatalf("change %s published twice:\n%s\n%s", src, sources[src], r.Value)
			}
			sources[src] = r.Value
			switch m.Op {
			case "r":
				reads++
				if _, ok := replayed[m.After["sku_id"]]; ok {
					t.Fatalf("row %d read twice by the snapshot", m.After["sku_id"])
				}
				replayed[m.After["sku_id"]] = m.After["qty"]
			case "c", "u":
				replayed[m.After["sku_id"]] = m.After["qty"]
			case "d":
				delete(replayed, m.Before["sku_id"])
			}
		}
		_, ok := replayed[-1]
		return ok
	})
	if fmt.Sprint(replayed) != fmt.Sprint(final) {
		t.Errorf("replaying the topic gives %d rows, the table has %d", len(replayed), len(final))
		for k, v := range final {
			if rv, ok := replayed[k]; !ok || rv != v {
				t.Errorf("row %d: table %d, topic %d (present %v)", k, v, rv, ok)
				break
			}
		}
	}
	if reads < 2000 {
		t.Errorf("only %d snapshot reads", reads)
	}
}

// TestPurgedCheckpointStopsOrResnapshots: a checkpoint in a binlog the server no longer
// has stops the pipeline with the fix named; with snapshot: when_needed it takes a new
// snapshot and streams on.
func TestPurgedCheckpointStopsOrResnapshots(t *testing.T) {
	e := newEnv(t)
	db := e.mysql.Open(t, e.db)
	testutil.Exec(t, db, "CREATE TABLE stock_p (sku_id INT PRIMARY KEY, qty INT)", "INSERT INTO stock_p VALUES (1, 1), (2, 2)")
	set := e.rules(allOpsRules)
	src := canal.Config{Addr: e.mysql.Addr, User: e.mysql.User, Password: e.mysql.Password, ServerID: testutil.ServerID()}
	server, err := canal.Connect(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	store, err := canal.NewCheckpointStore(context.Background(), server.DB, e.db+".checkpoint", "test")
	if err != nil {
		t.Fatal(err)
	}
	// binlog.000000 is older than anything the server keeps: as if it was purged.
	if err := store.Save(context.Background(), canal.Position{File: "binlog.000000", Pos: 4}, nil); err != nil {
		t.Fatal(err)
	}
	sink, err := sinks.NewKafka(context.Background(), sinks.KafkaConfig{Brokers: []string{e.broker}})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	p := pipeline.New(pipeline.Options{Source: src, CheckpointTable: e.db + ".checkpoint", CheckpointName: "test",
		Rules: set, Sink: sink, Logger: zaptest.NewLogger(t), Snapshot: pipeline.SnapshotNever})
	err = p.Run(context.Background())
	if !errors.Is(err, pipeline.ErrBinlogPurged) || pipeline.Retryable(err) {
		t.Fatalf("want a terminal ErrBinlogPurged, got %v", err)
	}
	for _, w := range []string{"binlog.000000", "snapshot: when_needed", "oldest binlog the server still has"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}

	e.start(set, src.ServerID, func(o *pipeline.Options) { o.Snapshot = pipeline.SnapshotWhenNeeded })
	testutil.Exec(t, db, "INSERT INTO stock_p VALUES (3, 3)")
	got := testutil.Consume(t, e.broker, []string{e.topic}, 3, 20*time.Second)
	ops := map[string]string{}
	for _, r := range got {
		ops[r.Key] = decode(t, r).Op
	}
	if want := `map[{"sku_id":1}:r {"sku_id":2}:r {"sku_id":3}:c]`; fmt.Sprint(ops) != want {
		t.Errorf("after re-snapshot: %v, want %s", ops, want)
	}
}

// totalAndInStockRules are an aggregate and a transition rule of stock_v's qty by sku_id.
const totalAndInStockRules = `
rules:
  - name: total
    match: {table: "DB.stock_v"}
    emit: aggregate
    group_by: [sku_id]
    sum: {qty: qty}
    topic: TOPIC
  - name: instock
    match: {table: "DB.stock_v"}
    emit: transition
    group_by: [sku_id]
    sum: {qty: qty}
    value: "qty > 0"
    topic: TOPIC
`

// sortedChanges is each record as "key op before after", sorted: what a test compares
// when the order between keys and rules is not its point.
func sortedChanges(t *testing.T, recs []testutil.Record) []string {
	t.Helper()
	lines := make([]string, len(recs))
	for i, rec := range recs {
		m := decode(t, rec)
		lines[i] = fmt.Sprintf("%s %s %v %v", rec.Key, m.Op, m.Before, m.After)
	}
	slices.Sort(lines)
	return lines
}

// TestResnapshotRetractsVanishedGroups: when the binlog since the checkpoint is purged and
// snapshot: when_needed reads the tables again, a group whose rows were deleted in the lost
// binlog is published as gone (aggregate: op d; transition: false), not left as it was;
// a group still there is published with its new sums.
func TestResnapshotRetractsVanishedGroups(t *testing.T) {
	e := newEnv(t)
	db := e.mysql.Open(t, e.db)
	testutil.Exec(t, db, "CREATE TABLE stock_v (id INT PRIMARY KEY, sku_id VARCHAR(8), qty INT)",
		"INSERT INTO stock_v VALUES (1, 'X1', 1), (2, 'Y1', 2), (3, 'Y1', 3)")
	set := e.rules(totalAndInStockRules)
	serverID := testutil.ServerID()
	r := e.start(set, serverID)
	e.consume(4, 20*time.Second) // X1 and Y1, by each rule
	r.stop(t)
	// While the daemon is away: Y1's rows go, X1 grows, and the binlog saying so is lost
	// (the checkpoint moved to a file older than any the server keeps, its state kept).
	testutil.Exec(t, db, "DELETE FROM stock_v WHERE sku_id = 'Y1'", "UPDATE stock_v SET qty = 5 WHERE id = 1",
		"UPDATE checkpoint SET file = 'binlog.000000', pos = 4, gtid_set = '' WHERE name = 'test'")

	e.start(set, serverID, func(o *pipeline.Options) { o.Snapshot = pipeline.SnapshotWhenNeeded })
	lines := sortedChanges(t, e.consume(7, 20*time.Second)) // the seeding's 4 again, and the new snapshot's
	want := []string{
		`{"sku_id":"X1"} c map[] map[qty:1 sku_id:X1]`,
		`{"sku_id":"X1"} u map[qty:0 sku_id:X1 value:false] map[qty:1 sku_id:X1 value:true]`,
		`{"sku_id":"X1"} u map[qty:1 sku_id:X1] map[qty:5 sku_id:X1]`,
		`{"sku_id":"Y1"} c map[] map[qty:5 sku_id:Y1]`,
		`{"sku_id":"Y1"} d map[qty:5 sku_id:Y1] map[]`,
		`{"sku_id":"Y1"} u map[qty:0 sku_id:Y1 value:false] map[qty:5 sku_id:Y1 value:true]`,
		`{"sku_id":"Y1"} u map[qty:5 sku_id:Y1 value:true] map[qty:0 sku_id:Y1 value:false]`,
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("after the new snapshot:\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

// TestGTIDCheckpointIsCheckedByItsTransactions: a checkpoint with a GTID set resumes by
// GTID, so whether its changes are gone is a question of its transactions, not of its file
// name. On a server of the test's own, whose binlogs it purges: a checkpoint whose file
// is another server's (as after a failover to a promoted replica) but whose transactions
// the server has streams on; one whose transactions were purged is refused with
// ErrBinlogPurged, even though a file of its name is still listed.
func TestGTIDCheckpointIsCheckedByItsTransactions(t *testing.T) {
	e, m, db := newPrivateEnv(t, "gtidcp")
	testutil.Exec(t, db, "CREATE TABLE stock_g (sku_id INT PRIMARY KEY, qty INT)", "INSERT INTO stock_g VALUES (1, 1)",
		"FLUSH BINARY LOGS", "FLUSH BINARY LOGS") // files older than the checkpoint's, for the metric
	src := canal.Config{Addr: m.Addr, User: m.User, Password: m.Password, ServerID: testutil.ServerID()}
	server, err := canal.Connect(t.Context(), src)
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	at, err := server.CurrentPosition(t.Context())
	if err != nil || at.GTIDSet == "" {
		t.Fatalf("the server's position %s has no GTID set (%v)", at, err)
	}
	store, err := canal.NewCheckpointStore(t.Context(), server.DB, e.db+".checkpoint", "test")
	if err != nil {
		t.Fatal(err)
	}
	set := e.rules(allOpsRules)

	if err := store.Save(t.Context(), canal.Position{File: "promoted-bin.000042", Pos: 4, GTIDSet: at.GTIDSet}, nil); err != nil {
		t.Fatal(err)
	}
	metrics := pipeline.NewMetrics(nil)
	r := e.start(set, src.ServerID, func(o *pipeline.Options) { o.Metrics = metrics })
	testutil.Exec(t, db, "INSERT INTO stock_g VALUES (2, 2)")
	if got := e.consume(1, 20*time.Second); len(got) != 1 || got[0].Key != `{"sku_id":2}` || decode(t, got[0]).Op != "c" {
		t.Fatalf("from a checkpoint of another server's file name whose GTIDs the server has: %v; want the insert of sku 2", got)
	}
	// The checkpoint's file name is not the server's, yet its binlog is placed by GTID:
	// the newest file, after every other the server keeps.
	files, err := server.BinlogFiles(t.Context())
	if err != nil || len(files) < 3 || files[len(files)-1] != at.File {
		t.Fatalf("binlogs %v (%v); want at least 3, the newest %s", files, err, at.File)
	}
	if got := promtest.ToFloat64(metrics.CheckpointBinlogsBehind); got != float64(len(files)-1) {
		t.Errorf("stocksync_checkpoint_binlog_files_older = %v for a checkpoint of another server's file name in %s; want %d (binlogs %v)",
			got, at.File, len(files)-1, files)
	}
	r.stop(t)

	// The transactions after `at` go: the checkpoint at `at` is behind the oldest binlog,
	// which it names as its file (a server of the same binlog names, as a promoted replica may have).
	testutil.Exec(t, db, "INSERT INTO stock_g VALUES (3, 3)")
	left := testutil.PurgeBinlogs(t, db)
	if err := store.Save(t.Context(), canal.Position{File: left, Pos: 4, GTIDSet: at.GTIDSet}, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err = e.runSnapshotting(ctx, set, src.ServerID, pipeline.SnapshotNever, nil)
	if !errors.Is(err, pipeline.ErrBinlogPurged) || pipeline.Retryable(err) {
		t.Fatalf("from a checkpoint whose transactions were purged: %v; want a terminal ErrBinlogPurged", err)
	}
	for _, w := range []string{"checkpoint " + left, "oldest binlog the server still has is " + left + ", which begins after GTID", "snapshot: when_needed"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}
}

// TestResumedSnapshotIsCheckedForPurgedBinlogs: a snapshot interrupted after its first
// chunk streams on, once resumed, from its first run's position. When the server has
// purged that position's binlogs meanwhile, the restart says so at once with
// ErrBinlogPurged, before reading the rest of the tables and publishing nothing more;
// with snapshot: when_needed it takes a new snapshot from the beginning instead.
func TestResumedSnapshotIsCheckedForPurgedBinlogs(t *testing.T) {
	e, _, db := newPrivateEnv(t, "resumepurged")
	testutil.Exec(t, db, "CREATE TABLE stock_r (sku_id INT PRIMARY KEY, qty INT)", "INSERT INTO stock_r VALUES "+rowsUpTo(300))
	set := e.rules(allOpsRules)
	serverID := testutil.ServerID()
	run := func(ctx context.Context, mode string, tweak func(*pipeline.Options)) error {
		return e.runSnapshotting(ctx, set, serverID, mode, tweak)
	}

	// Interrupted inside the second chunk: the first chunk's progress is saved.
	emitted := 0
	hold := newStopAfter(func(sinks.Message) bool { emitted++; return emitted == 150 })
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- run(ctx, pipeline.SnapshotInitial, hold.wrap) }()
	hold.waitReached(t, 30*time.Second, "the 150th row of the snapshot")
	cancel()
	if err := <-done; err == nil {
		t.Fatal("the interrupted snapshot's pipeline returned nil")
	}
	var progress int
	if err := db.QueryRow("SELECT COUNT(*) FROM checkpoint_state WHERE scope = 'stocksync.snapshot'").Scan(&progress); err != nil || progress != 1 {
		t.Fatalf("saved snapshot progress rows: %d (%v); want 1", progress, err)
	}
	published := len(e.consume(0, time.Second))

	// Its position's binlogs go.
	testutil.Exec(t, db, "INSERT INTO stock_r VALUES (300, 300)")
	left := testutil.PurgeBinlogs(t, db)
	ctx, cancel = context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err := run(ctx, pipeline.SnapshotInitial, nil)
	if !errors.Is(err, pipeline.ErrBinlogPurged) || pipeline.Retryable(err) {
		t.Fatalf("resuming a snapshot whose position was purged: %v; want a terminal ErrBinlogPurged", err)
	}
	for _, w := range []string{"the interrupted snapshot's position", "oldest binlog the server still has is " + left, "snapshot: when_needed"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}
	if now := len(e.consume(0, time.Second)); now != published {
		t.Errorf("%d messages published by the refused resume, want none", now-published)
	}

	// when_needed: a new snapshot from the beginning, so the first chunk's rows are read
	// again (a resume would read only after them), then the stream goes on.
	e.start(set, serverID, func(o *pipeline.Options) {
		o.Snapshot = pipeline.SnapshotWhenNeeded
		o.SnapshotChunkSize = 100
	})
	testutil.Exec(t, db, "INSERT INTO stock_r VALUES (-1, 0)")
	reads := map[string]int{}
	testutil.Eventually(t, 30*time.Second, "the insert after the new snapshot", func() bool {
		clear(reads)
		marker := false
		for _, r := range e.consume(0, time.Second) {
			switch decode(t, r).Op {
			case "r":
				reads[r.Key]++
			case "c":
				marker = marker || r.Key == `{"sku_id":-1}`
			}
		}
		return marker
	})
	if len(reads) != 301 || reads[`{"sku_id":0}`] != 2 || reads[`{"sku_id":300}`] != 1 {
		t.Errorf("read %d rows, sku 0 %d times, sku 300 %d times; want 301, 2 (the interrupted run's first chunk, then the new snapshot) and 1",
			len(reads), reads[`{"sku_id":0}`], reads[`{"sku_id":300}`])
	}
}

// TestSnapshotWaitsForNoStreamItCannotOpen: a user without REPLICATION SLAVE may read the
// tables but not the binlog. The first start says so before its snapshot, which on a shop
// database may take hours, and publishes and saves nothing.
func TestSnapshotWaitsForNoStreamItCannotOpen(t *testing.T) {
	e := newEnv(t)
	db := e.mysql.Open(t, e.db)
	testutil.Exec(t, db, "CREATE TABLE stock_s (sku_id INT PRIMARY KEY, qty INT NOT NULL)", "INSERT INTO stock_s VALUES (1, 1), (2, 2)")
	user := fmt.Sprintf("norepl_%d", testutil.ServerID())
	testutil.Exec(t, db, "CREATE USER '"+user+"'@'%' IDENTIFIED BY 'pw'",
		"GRANT REPLICATION CLIENT ON *.* TO '"+user+"'@'%'", "GRANT ALL ON `"+e.db+"`.* TO '"+user+"'@'%'")
	t.Cleanup(func() { db.Exec("DROP USER '" + user + "'@'%'") })
	sink, _ := e.delivery(t.Context())
	defer sink.Close()
	p := pipeline.New(pipeline.Options{
		Source:             canal.Config{Addr: e.mysql.Addr, User: user, Password: "pw", ServerID: testutil.ServerID()},
		CheckpointTable:    e.db + ".checkpoint",
		CheckpointName:     "test",
		CheckpointInterval: 100 * time.Millisecond,
		Rules:              e.rules(allOpsRules),
		Sink:               sink,
		Snapshot:           pipeline.SnapshotInitial,
		Logger:             zaptest.NewLogger(t),
	})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err := p.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "before the snapshot") || !strings.Contains(err.Error(), "lacks REPLICATION SLAVE") {
		t.Fatalf("a first start by a user without REPLICATION SLAVE ended with %v; want a refusal before the snapshot naming the grant", err)
	}
	if got := e.consume(0, time.Second); len(got) != 0 {
		t.Errorf("%d messages published before the refusal, want none", len(got))
	}
	var saved int
	if err := db.QueryRow("SELECT COUNT(*) FROM checkpoint").Scan(&saved); err == nil && saved != 0 {
		t.Errorf("%d checkpoints saved before the refusal, want none", saved)
	}
}

// flushStop is a sink whose second Flush (a snapshot's second chunk, at-least-once) waits
// for the pipeline's ctx, having told reached: the snapshot stops there with its first
// chunk's progress saved.
type flushStop struct {
	pipeline.Sink
	flushes int
	reached chan struct{}
}

func (f *flushStop) Flush(ctx context.Context) error {
	if f.flushes++; f.flushes < 2 {
		return f.Sink.Flush(ctx)
	}
	if f.flushes == 2 {
		close(f.reached)
	}
	<-ctx.Done()
	return ctx.Err()
}

// TestInterruptedSeedingReadWithoutStatefulRulesLeft: a first start under snapshot: never
// reads the aggregate rule's table to seed it and is stopped half way; the restart's file
// has only a row rule. Nothing is left to seed, so the read is dropped: the row rule gets
// no op r of the table's rows, and the stream goes on from the read's position.
func TestInterruptedSeedingReadWithoutStatefulRulesLeft(t *testing.T) {
	e := newEnv(t)
	db := e.mysql.Open(t, e.db)
	testutil.Exec(t, db, "CREATE TABLE stock_k (sku_id INT PRIMARY KEY, qty INT)", "INSERT INTO stock_k VALUES "+rowsUpTo(300))
	serverID := testutil.ServerID()
	seeding := e.rules(allOpsRules + `
  - name: total
    match: {table: "DB.stock_k"}
    emit: aggregate
    group_by: [sku_id]
    sum: {qty: qty}
    topic: TOPIC.total
`)
	ctx, cancel := context.WithCancel(t.Context())
	stop := &flushStop{reached: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		done <- e.runSnapshotting(ctx, seeding, serverID, pipeline.SnapshotNever, func(o *pipeline.Options) { stop.Sink, o.Sink = o.Sink, stop })
	}()
	select {
	case <-stop.reached:
	case err := <-done:
		t.Fatalf("the seeding read ended before its second chunk: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the seeding read's second chunk was not reached within 30s")
	}
	cancel()
	<-done
	var progress int
	if err := db.QueryRow("SELECT COUNT(*) FROM checkpoint_state WHERE scope = 'stocksync.snapshot'").Scan(&progress); err != nil || progress != 1 {
		t.Fatalf("saved seeding progress rows: %d (%v); want 1", progress, err)
	}

	testutil.Exec(t, db, "INSERT INTO stock_k VALUES (300, 300)")
	e.start(e.rules(allOpsRules), serverID, func(o *pipeline.Options) { o.SnapshotChunkSize = 100 })
	testutil.Exec(t, db, "INSERT INTO stock_k VALUES (301, 301)")
	got := e.consume(2, 20*time.Second)
	ops := map[string]string{}
	for _, r := range got {
		ops[r.Key] = decode(t, r).Op
	}
	if want := `map[{"sku_id":300}:c {"sku_id":301}:c]`; fmt.Sprint(ops) != want {
		reads := 0
		for _, op := range ops {
			if op == "r" {
				reads++
			}
		}
		t.Errorf("after the dropped seeding read, the row rule published %d messages, %d of them op r; want %s", len(ops), reads, want)
	}
	if err := db.QueryRow("SELECT COUNT(*) FROM checkpoint_state WHERE scope = 'stocksync.snapshot'").Scan(&progress); err != nil || progress != 0 {
		t.Errorf("seeding progress rows after the restart: %d (%v); want none", progress, err)
	}
}

// interruptAtTheSecondChunk runs a first start of set under mode (100-row chunks,
// at-least-once) until its snapshot or seeding read has saved its first chunk's progress,
// runs change while it is held inside the second, and stops it there, as a kill would.
func (e *env) interruptAtTheSecondChunk(set *rules.Set, serverID uint32, mode string, change func()) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(e.t.Context())
	defer cancel()
	stop := &flushStop{reached: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		done <- e.runSnapshotting(ctx, set, serverID, mode, func(o *pipeline.Options) { stop.Sink, o.Sink = o.Sink, stop })
	}()
	select {
	case <-stop.reached:
	case err := <-done:
		e.t.Fatalf("the first start's read ended before its second chunk: %v", err)
	case <-time.After(30 * time.Second):
		e.t.Fatal("the first start's read did not reach its second chunk within 30s")
	}
	change()
	cancel()
	<-done
	var progress int
	db := e.mysql.Open(e.t, e.db)
	if err := db.QueryRow("SELECT COUNT(*) FROM checkpoint_state WHERE scope = 'stocksync.snapshot'").Scan(&progress); err != nil || progress != 1 {
		e.t.Fatalf("saved read progress rows: %d (%v); want 1", progress, err)
	}
}

// lastByKey replays recs in order: each key's last message.
func lastByKey(t *testing.T, recs []testutil.Record) map[string]envelope {
	t.Helper()
	last := map[string]envelope{}
	for _, r := range recs {
		last[r.Key] = decode(t, r)
	}
	return last
}

// checkGroupsEqualTheTable fails the test unless each group of wh in table, as the last
// message of its key in last says it, has the table's sum of qty.
func checkGroupsEqualTheTable(t *testing.T, db *sql.DB, table string, last map[string]envelope) {
	t.Helper()
	rows, err := db.Query("SELECT wh, SUM(qty) FROM " + table + " GROUP BY wh")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var wh, sum int
		if err := rows.Scan(&wh, &sum); err != nil {
			t.Fatal(err)
		}
		key := fmt.Sprintf(`{"wh":%d}`, wh)
		if g, ok := last[key]; !ok || g.Op == "d" || fmt.Sprint(g.After["qty"]) != fmt.Sprint(sum) {
			t.Errorf("group %s: last message %s %v, want the table's sum %d", key, g.Op, g.After, sum)
		}
	}
}

// TestSeedInterruptedAtTheFirstStartLosesNoChange: under snapshot: never, the first start
// reads the aggregate rule's table to seed it, at P, saving P as the checkpoint with the
// read's progress after each chunk. Stopped half way (a kill -9), the restart seeds the
// rule again from a snapshot of its own but streams from P, the checkpoint: the row rule's
// change committed meanwhile is published, and the rule's groups end at the table's sums,
// changes in between not folded twice. (It used to stream from the new snapshot's
// position, and the row change was never published.)
func TestSeedInterruptedAtTheFirstStartLosesNoChange(t *testing.T) {
	e := newEnv(t)
	db := e.mysql.Open(t, e.db)
	testutil.Exec(t, db, "CREATE TABLE orders (id INT PRIMARY KEY, sku_id INT)",
		"CREATE TABLE stock_k (id INT PRIMARY KEY, wh INT NOT NULL, qty INT NOT NULL)",
		"INSERT INTO stock_k SELECT seq, seq % 3, seq FROM seq_0_to_299")
	set := e.rules(`
rules:
  - name: order-rows
    match: {table: "DB.orders"}
    topic: TOPIC
    key: [id]
  - name: total
    match: {table: "DB.stock_k"}
    emit: aggregate
    group_by: [wh]
    sum: {qty: qty}
    topic: TOPIC
`)
	serverID := testutil.ServerID()
	e.interruptAtTheSecondChunk(set, serverID, pipeline.SnapshotNever, func() {
		testutil.Exec(t, db, "INSERT INTO orders VALUES (1, 42)", // after the read's position P
			"DELETE FROM stock_k WHERE id = 3", "UPDATE stock_k SET qty = 1000 WHERE id = 250")
	})

	e.start(set, serverID, func(o *pipeline.Options) { o.SnapshotChunkSize = 100 })
	testutil.Exec(t, db, "INSERT INTO orders VALUES (2, 43)", "UPDATE stock_k SET qty = qty + 1 WHERE id = 4")
	var last map[string]envelope
	testutil.Eventually(t, 30*time.Second, "order 2 after the restart", func() bool {
		last = lastByKey(t, e.consume(0, time.Second))
		_, ok := last[`{"id":2}`]
		return ok
	})
	if o := last[`{"id":1}`]; o.Op != "c" {
		t.Errorf("order 1, committed after the checkpoint the stopped first start saved: last message %q %v, want its insert", o.Op, o.After)
	}
	checkGroupsEqualTheTable(t, db, "stock_k", last)
}

// TestSnapshotInterruptedWithAggregateRulesEndsEqualToTheTable: under snapshot: initial,
// a first start publishes the row rule's reads chunk by chunk and is stopped half way,
// after rows it already published as reads were deleted. The restart reads on from the
// last chunk for the row rule, seeds the aggregate rule again from a snapshot of its own,
// and streams from the interrupted snapshot's position: a consumer replaying the topic ends
// with the table's rows (the deleted ones with a d) and its sums. (It used to take a new
// snapshot and stream from there: the deleted rows never got their d.)
func TestSnapshotInterruptedWithAggregateRulesEndsEqualToTheTable(t *testing.T) {
	e := newEnv(t)
	db := e.mysql.Open(t, e.db)
	testutil.Exec(t, db, "CREATE TABLE stock_r (sku_id INT PRIMARY KEY, wh INT NOT NULL, qty INT NOT NULL)",
		"INSERT INTO stock_r SELECT seq, seq % 3, seq FROM seq_0_to_299")
	set := e.rules(allOpsRules + `
  - name: total
    match: {table: "DB.stock_r"}
    emit: aggregate
    group_by: [wh]
    sum: {qty: qty}
    topic: TOPIC
`)
	serverID := testutil.ServerID()
	e.interruptAtTheSecondChunk(set, serverID, pipeline.SnapshotInitial, func() {
		testutil.Exec(t, db, "DELETE FROM stock_r WHERE sku_id IN (5, 150, 250)", // read in the first, second and third chunk
			"UPDATE stock_r SET qty = 600 WHERE sku_id = 6", "INSERT INTO stock_r VALUES (1000, 1, 7)")
	})

	e.start(set, serverID, func(o *pipeline.Options) {
		o.Snapshot, o.SnapshotChunkSize = pipeline.SnapshotInitial, 100
	})
	testutil.Exec(t, db, "INSERT INTO stock_r VALUES (-1, 2, 0)")
	var last map[string]envelope
	testutil.Eventually(t, 30*time.Second, "the insert after the restart", func() bool {
		last = lastByKey(t, e.consume(0, time.Second))
		_, ok := last[`{"sku_id":-1}`]
		return ok
	})
	want := map[string]string{}
	rows, err := db.Query("SELECT sku_id, qty FROM stock_r")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var sku, qty int
		if err := rows.Scan(&sku, &qty); err != nil {
			t.Fatal(err)
		}
		want[fmt.Sprintf(`{"sku_id":%d}`, sku)] = fmt.Sprint(qty)
	}
	rows.Close()
	for key, m := range last {
		if !strings.HasPrefix(key, `{"sku_id":`) {
			continue
		}
		qty, ok := want[key]
		switch {
		case !ok && m.Op != "d":
			t.Errorf("row %s is not in the table, but its last message is %q %v", key, m.Op, m.After)
		case ok && (m.Op == "d" || fmt.Sprint(m.After["qty"]) != qty):
			t.Errorf("row %s: last message %q %v, want qty %s", key, m.Op, m.After, qty)
		}
	}
	for key := range want {
		if _, ok := last[key]; !ok {
			t.Errorf("row %s was never published", key)
		}
	}
	checkGroupsEqualTheTable(t, db, "stock_r", last)
}

// TestExactlyOnceSnapshotCommitsInParts: exactly-once, a snapshot whose Kafka transaction
// has been open for SnapshotPartAfter (half kafka.transaction_timeout, which the brokers
// enforce) commits the rows read so far with its progress and goes on in a new
// transaction; interrupted, it resumes after the last part, and a read_committed consumer
// sees every row once, also when an aggregate rule reads the table (seeded again at the
// restart, its groups at the table's sums). Without parts, nothing of an interrupted
// snapshot is committed.
func TestExactlyOnceSnapshotCommitsInParts(t *testing.T) {
	t.Run("row rule", func(t *testing.T) { exactlyOnceSnapshotInParts(t, "") })
	t.Run("with an aggregate rule", func(t *testing.T) {
		exactlyOnceSnapshotInParts(t, `
  - name: total
    match: {table: "DB.stock_p"}
    emit: aggregate
    group_by: [wh]
    sum: {qty: qty}
    topic: TOPIC.total
`)
	})
}

func exactlyOnceSnapshotInParts(t *testing.T, moreRules string) {
	e := newEnv(t)
	e.exactlyOnce = true
	e.exec("CREATE TABLE stock_p (sku_id INT PRIMARY KEY, wh INT NOT NULL, qty INT NOT NULL)", "INSERT INTO stock_p SELECT seq, seq % 3, seq FROM seq_0_to_299")
	set := e.rules(allOpsRules + moreRules)
	serverID := testutil.ServerID()
	core, logs := observer.New(zapcore.InfoLevel)
	run := func(ctx context.Context, tweak func(*pipeline.Options)) error {
		return e.runSnapshotting(ctx, set, serverID, pipeline.SnapshotInitial, func(o *pipeline.Options) {
			o.Logger, o.SnapshotPartAfter = zap.New(core), time.Nanosecond
			if tweak != nil {
				tweak(o)
			}
		})
	}

	// Interrupted inside the second chunk: the first is committed, as a part.
	emitted := 0
	hold := newStopAfter(func(sinks.Message) bool { emitted++; return emitted == 150 })
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- run(ctx, hold.wrap) }()
	hold.waitReached(t, 30*time.Second, "the 150th row of the snapshot")
	if got := len(e.consume(100, 10*time.Second)); got != 100 {
		t.Fatalf("read_committed sees %d rows while the snapshot's second chunk is read, want the first part's 100", got)
	}
	cancel()
	<-done

	// Started again, it resumes after the part.
	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	go func() { done <- run(ctx, nil) }()
	got := e.consume(300, 30*time.Second)
	var groups []testutil.Record
	if moreRules != "" {
		groups = testutil.Consume(t, e.broker, []string{e.topic + ".total"}, 3, 30*time.Second, testutil.ConsumeOptions{ReadCommitted: true})
	}
	cancel()
	<-done
	seen := map[string]int{}
	for _, r := range got {
		seen[r.Key]++
	}
	if len(got) != 300 || len(seen) != 300 {
		t.Errorf("read_committed saw %d rows, %d of them different, want each of the 300 once", len(got), len(seen))
	}
	if logs.FilterMessage("resuming an interrupted snapshot").Len() != 1 {
		t.Error("the second run did not resume the snapshot")
	}
	if moreRules != "" {
		if len(groups) != 3 {
			t.Errorf("read_committed saw %d group messages, want the 3 groups once", len(groups))
		}
		checkGroupsEqualTheTable(t, e.mysql.Open(t, e.db), "stock_p", lastByKey(t, groups))
	}
}

// runSnapshotting runs a pipeline over set that begins with mode's snapshot, read in
// 100-row chunks, and streams on until ctx ends; exactly-once when e is. tweak, when
// set, adjusts its options.
func (e *env) runSnapshotting(ctx context.Context, set *rules.Set, serverID uint32, mode string, tweak func(*pipeline.Options)) error {
	e.t.Helper()
	sink, checkpoints := e.delivery(ctx)
	defer sink.Close()
	opts := pipeline.Options{Source: canal.Config{Addr: e.mysql.Addr, User: e.mysql.User, Password: e.mysql.Password, ServerID: serverID},
		CheckpointTable: e.db + ".checkpoint", CheckpointName: "test", CheckpointInterval: 100 * time.Millisecond,
		Checkpoints: checkpoints, ExactlyOnce: e.exactlyOnce, Rules: set, Sink: sink, Logger: zaptest.NewLogger(e.t),
		Snapshot: mode, SnapshotChunkSize: 100}
	if tweak != nil {
		tweak(&opts)
	}
	return pipeline.New(opts).Run(ctx)
}

// rowsUpTo is the VALUES list (0, 0), (1, 1), … of n rows (sku_id, qty).
func rowsUpTo(n int) string {
	values := make([]string, n)
	for i := range values {
		values[i] = fmt.Sprintf("(%d, %d)", i, i)
	}
	return strings.Join(values, ",")
}

// newPrivateEnv is newEnv on a MariaDB of the test's own (binlogs it may purge): the env,
// the server, and the database it opened.
func newPrivateEnv(t *testing.T, prefix string) (*env, *testutil.PrivateMariaDB, *sql.DB) {
	t.Helper()
	m := testutil.StartPrivateMariaDB(t, "")
	e := &env{t: t, mysql: m.MySQL, broker: testutil.Broker(t), topic: testutil.Name("stock.")}
	var db *sql.DB
	e.db, db = m.FreshDatabase(t, prefix)
	return e, m, db
}

// TestMovedCheckpointRetractsVanishedGroups: a checkpoint moved as `stocksync checkpoint
// set` moves it (Move keeping what KeptOnMove keeps: the groups, not the seed markers)
// seeds its rules again at the next start, and a group whose rows were deleted while the
// daemon was away is published as gone (aggregate: op d; transition: false).
func TestMovedCheckpointRetractsVanishedGroups(t *testing.T) {
	e := newEnv(t)
	db := e.mysql.Open(t, e.db)
	testutil.Exec(t, db, "CREATE TABLE stock_v (id INT PRIMARY KEY, sku_id VARCHAR(8), qty INT)",
		"INSERT INTO stock_v VALUES (1, 'A6', 2), (2, 'B1', 3)")
	set := e.rules(totalAndInStockRules)
	serverID := testutil.ServerID()
	r := e.start(set, serverID)
	e.consume(4, 20*time.Second) // A6 and B1, by each rule
	r.stop(t)
	testutil.Exec(t, db, "DELETE FROM stock_v WHERE sku_id = 'A6'")
	server, err := canal.Connect(t.Context(), canal.Config{Addr: e.mysql.Addr, User: e.mysql.User, Password: e.mysql.Password, ServerID: serverID})
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	now, err := server.CurrentPosition(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	store, err := canal.OpenCheckpointStore(server.DB, e.db+".checkpoint", "test")
	if err != nil {
		t.Fatal(err)
	}
	if deleted, kept, err := store.Move(t.Context(), now, pipeline.KeptOnMove); err != nil || deleted != 2 || kept != 4 {
		t.Fatalf("moving the checkpoint to %s: %d state rows deleted, %d kept, %v; want the 2 seed markers deleted and the 4 groups (2 rules, 2 SKUs) kept",
			now, deleted, kept, err)
	}

	e.start(set, serverID)
	lines := sortedChanges(t, e.consume(8, 20*time.Second)) // the first start's 4, and the seed's
	want := []string{
		`{"sku_id":"A6"} c map[] map[qty:2 sku_id:A6]`,
		`{"sku_id":"A6"} d map[qty:2 sku_id:A6] map[]`,
		`{"sku_id":"A6"} u map[qty:0 sku_id:A6 value:false] map[qty:2 sku_id:A6 value:true]`,
		`{"sku_id":"A6"} u map[qty:2 sku_id:A6 value:true] map[qty:0 sku_id:A6 value:false]`,
		`{"sku_id":"B1"} c map[] map[qty:3 sku_id:B1]`,
		`{"sku_id":"B1"} c map[] map[qty:3 sku_id:B1]`,
		`{"sku_id":"B1"} u map[qty:0 sku_id:B1 value:false] map[qty:3 sku_id:B1 value:true]`,
		`{"sku_id":"B1"} u map[qty:0 sku_id:B1 value:false] map[qty:3 sku_id:B1 value:true]`,
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("after the moved checkpoint's start:\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

// TestGroupByMariaDBUUIDIsOneGroupSeededAndStreamed: an aggregate rule grouped by a
// MariaDB UUID column is seeded from the table (SQL prints the UUID), then follows the
// binlog (which holds its 16 bytes). A change to the seeded group updates it under the key
// the seed published, instead of starting a second group under the bytes' base64.
func TestGroupByMariaDBUUIDIsOneGroupSeededAndStreamed(t *testing.T) {
	e := newEnv(t)
	e.exec("CREATE TABLE shard (id INT PRIMARY KEY, wh UUID NOT NULL, qty INT NOT NULL)",
		"INSERT INTO shard VALUES (1, '123e4567-e89b-12d3-a456-426655440000', 5)")
	e.start(e.rules(`
rules:
  - name: wh-stock
    match: {table: "DB.shard"}
    emit: aggregate
    group_by: [wh]
    sum: {qty: qty}
    topic: TOPIC
`), testutil.ServerID())
	e.exec("UPDATE shard SET qty = 4 WHERE id = 1",
		"INSERT INTO shard VALUES (2, '123e4567-e89b-12d3-a456-426655440000', 10)")
	const wh = "wh=123e4567-e89b-12d3-a456-426655440000,"
	want := []string{
		`shard c {"wh":"123e4567-e89b-12d3-a456-426655440000"} ->qty=5,` + wh,
		`shard u {"wh":"123e4567-e89b-12d3-a456-426655440000"} qty=5,` + wh + `>qty=4,` + wh,
		`shard u {"wh":"123e4567-e89b-12d3-a456-426655440000"} qty=4,` + wh + `>qty=14,` + wh,
	}
	var got []string
	for _, r := range e.consume(len(want), 20*time.Second) {
		got = append(got, summary(t, r))
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("published:\n%s\nwant the seed's group updated twice under its key:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestFirstStartWarnsOfPreparedXATransactions: an XA transaction prepared before a first
// start and committed after it is never published (its rows are before the start, its
// XA COMMIT after carries none), so the first start names it at WARN.
func TestFirstStartWarnsOfPreparedXATransactions(t *testing.T) {
	e := newEnv(t)
	e.exec("CREATE TABLE stock_xa (sku_id INT PRIMARY KEY, qty INT)")
	db := e.mysql.Open(t, e.db)
	xid := testutil.Name("xa")
	conn, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{"XA START '" + xid + "'", "INSERT INTO stock_xa VALUES (1, 1)", "XA END '" + xid + "'", "XA PREPARE '" + xid + "'"} {
		if _, err := conn.ExecContext(t.Context(), stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	conn.Close() // MariaDB keeps the transaction prepared
	t.Cleanup(func() { db.Exec("XA ROLLBACK '" + xid + "'") })
	core, logs := observer.New(zapcore.WarnLevel)
	e.start(e.rules(stockRules), testutil.ServerID(), func(o *pipeline.Options) { o.Logger = zap.New(core) })
	var named bool
	for _, entry := range logs.FilterMessageSnippet("first start while XA transactions are prepared").All() {
		for _, f := range entry.Context {
			if f.Key == "xids" && strings.Contains(fmt.Sprint(f.Interface), "'"+xid+"'") {
				named = true
			}
		}
	}
	if !named {
		t.Errorf("first start with %s prepared: logged %v; want a WARN naming it", xid, logs.All())
	}
}
