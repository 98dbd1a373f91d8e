package pipeline_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"

	"github.com/stocksync/stocksync/canal"
	"github.com/stocksync/stocksync/internal/testutil"
	"github.com/stocksync/stocksync/pipeline"
	"github.com/stocksync/stocksync/rules"
	"github.com/stocksync/stocksync/sinks"
)

// env is one test's real parts: a fresh database on the private MariaDB, a kfake broker
// and a topic of its own.
type env struct {
	t      *testing.T
	mysql  testutil.MySQL
	db     string
	broker string
	topic  string
	// exactlyOnce: pipelines start with a transactional sink and their checkpoint in the
	// topic topic+".checkpoints", as the daemon's exactly_once does.
	exactlyOnce bool
}

// inBothDeliveryModes runs test as two subtests, at-least-once and exactly-once, each on
// a newEnv of its own in that mode.
func inBothDeliveryModes(t *testing.T, test func(t *testing.T, e *env)) {
	for _, exactlyOnce := range []bool{false, true} {
		t.Run(map[bool]string{false: "at-least-once", true: "exactly-once"}[exactlyOnce], func(t *testing.T) {
			e := newEnv(t)
			e.exactlyOnce = exactlyOnce
			test(t, e)
		})
	}
}

func newEnv(t *testing.T) *env {
	t.Helper()
	m := testutil.MySQLServer(t)
	db, _ := m.FreshDatabase(t, t.Name())
	return &env{t: t, mysql: m, db: db, broker: testutil.Broker(t), topic: testutil.Name("stock.")}
}

func (e *env) exec(stmts ...string) {
	e.t.Helper()
	testutil.Exec(e.t, e.mysql.Open(e.t, e.db), stmts...)
}

func (e *env) rules(yaml string) *rules.Set {
	e.t.Helper()
	path := filepath.Join(e.t.TempDir(), "rules.yaml")
	yaml = strings.NewReplacer("DB", e.db, "TOPIC", e.topic).Replace(yaml)
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		e.t.Fatal(err)
	}
	set, err := rules.Load(path)
	if err != nil {
		e.t.Fatalf("loading rules: %v", err)
	}
	return set
}

// running is a pipeline running in the background.
type running struct {
	p      *pipeline.Pipeline
	cancel context.CancelFunc
	done   chan error
	sink   interface{ Close() error }
}

func (e *env) start(set *rules.Set, serverID uint32, tweaks ...func(*pipeline.Options)) *running {
	e.t.Helper()
	r := e.run(set, serverID, tweaks...)
	testutil.Eventually(e.t, 20*time.Second, "the pipeline to be ready", func() bool {
		select {
		case err := <-r.done:
			r.done <- err // for the cleanup's stop
			e.t.Fatalf("pipeline stopped before it was ready: %v", err)
		default:
		}
		return r.p.Ready()
	})
	return r
}

// run starts a pipeline in the background, without waiting for it to be ready.
func (e *env) run(set *rules.Set, serverID uint32, tweaks ...func(*pipeline.Options)) *running {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sink, checkpoints := e.delivery(ctx)
	opts := pipeline.Options{
		Source:             canal.Config{Addr: e.mysql.Addr, User: e.mysql.User, Password: e.mysql.Password, ServerID: serverID},
		CheckpointTable:    e.db + ".checkpoint",
		CheckpointName:     "test",
		CheckpointInterval: 100 * time.Millisecond,
		Rules:              set,
		Sink:               sink,
		Checkpoints:        checkpoints,
		ExactlyOnce:        e.exactlyOnce,
		Logger:             zaptest.NewLogger(e.t),
	}
	for _, tweak := range tweaks {
		tweak(&opts)
	}
	p := pipeline.New(opts)
	r := &running{p: p, cancel: cancel, done: make(chan error, 1), sink: sink}
	go func() { r.done <- p.Run(ctx) }()
	e.t.Cleanup(func() { r.stop(e.t) }) // also when it never gets ready
	return r
}

// delivery connects the sink, and exactly-once the checkpoints kept in Kafka with it (as
// the daemon does: the transactional producer first, then the checkpoints read).
func (e *env) delivery(ctx context.Context) (interface {
	pipeline.Sink
	Close() error
}, pipeline.Checkpointer) {
	e.t.Helper()
	brokers := []string{e.broker}
	if !e.exactlyOnce {
		sink, err := sinks.NewKafka(ctx, sinks.KafkaConfig{Brokers: brokers, ClientID: "test"})
		if err != nil {
			e.t.Fatal(err)
		}
		return sink, nil
	}
	cpTopic := e.topic + ".checkpoints"
	tx, err := sinks.NewTransactional(ctx, sinks.TransactionalConfig{Brokers: brokers, ClientID: "test",
		TransactionalID: e.topic, CheckpointTopic: cpTopic})
	if err != nil {
		e.t.Fatal(err)
	}
	loaded, err := sinks.ReadCheckpoints(ctx, brokers, sinks.Security{}, cpTopic)
	if err != nil {
		tx.Close()
		e.t.Fatal(err)
	}
	return tx, &pipeline.KafkaCheckpoints{Name: "test", Sink: tx, Loaded: loaded}
}

// consume reads the test's topic as its consumers would: exactly-once, committed
// messages only.
func (e *env) consume(want int, timeout time.Duration) []testutil.Record {
	e.t.Helper()
	return testutil.Consume(e.t, e.broker, []string{e.topic}, want, timeout, testutil.ConsumeOptions{ReadCommitted: e.exactlyOnce})
}

// stopAfter is a sink that holds the message for which stopHere first reports true until
// the pipeline's ctx ends or the test lets it go, having told reached: the test then
// stops the pipeline there, inside whatever that message is part of (as a SIGTERM at that
// instant would), or looks at the pipeline while it waits.
type stopAfter struct {
	pipeline.Sink
	stopHere func(sinks.Message) bool
	reached  chan struct{} // closed once; Emit runs on the reading goroutine alone
	release  chan struct{} // closed by letGo
}

func newStopAfter(stopHere func(sinks.Message) bool) *stopAfter {
	return &stopAfter{stopHere: stopHere, reached: make(chan struct{}), release: make(chan struct{})}
}

// letGo lets the held message, and every later one, through.
func (s *stopAfter) letGo() { close(s.release) }

// waitReached fails the test unless the held message is reached within d.
func (s *stopAfter) waitReached(t *testing.T, d time.Duration, what string) {
	t.Helper()
	select {
	case <-s.reached:
	case <-time.After(d):
		t.Fatalf("%s: not reached within %v", what, d)
	}
}

func (s *stopAfter) wrap(o *pipeline.Options) { s.Sink = o.Sink; o.Sink = s }

func (s *stopAfter) Emit(ctx context.Context, m sinks.Message) error {
	if err := s.Sink.Emit(ctx, m); err != nil {
		return err
	}
	select {
	case <-s.reached:
		return nil
	default:
	}
	if !s.stopHere(m) {
		return nil
	}
	close(s.reached)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-s.release:
		return nil
	}
}

// stopped waits for the pipeline to stop by itself, and returns its error.
func (r *running) stopped(t *testing.T, within time.Duration) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.cancel()
		r.cancel = nil
		r.sink.Close()
		return err
	case <-time.After(within):
		t.Fatalf("the pipeline did not stop within %v", within)
		return nil
	}
}

// stop cancels the pipeline (as SIGTERM does) and checks it stopped cleanly.
func (r *running) stop(t *testing.T) {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("pipeline stopped with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("pipeline did not stop within 10s")
	}
	r.sink.Close()
}

// envelope is the part of a message the tests look at. Its Source has every field a
// consumer drops repeats by (topics.md, Repeats): a group taken back and a seed of the same
// key can share all but ts_ms.
type envelope struct {
	Op     string         `json:"op"`
	Before map[string]any `json:"before"`
	After  map[string]any `json:"after"`
	Source struct {
		DB       string `json:"db"`
		Table    string `json:"table"`
		File     string `json:"file"`
		Pos      int64  `json:"pos"`
		Row      int    `json:"row"`
		GTID     string `json:"gtid"`
		ServerID int64  `json:"server_id"`
		TsMs     int64  `json:"ts_ms"`
		Snapshot bool   `json:"snapshot"`
	} `json:"source"`
}

func decode(t *testing.T, r testutil.Record) envelope {
	t.Helper()
	var e envelope
	d := json.NewDecoder(bytes.NewReader([]byte(r.Value)))
	d.UseNumber()
	if err := d.Decode(&e); err != nil {
		t.Fatalf("decoding %s: %v", r.Value, err)
	}
	return e
}

// summary renders a message as "table op key before→after" for comparisons.
func summary(t *testing.T, r testutil.Record) string {
	e := decode(t, r)
	img := func(m map[string]any) string {
		if m == nil {
			return "-"
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		for _, k := range keys {
			fmt.Fprintf(&b, "%s=%v,", k, m[k])
		}
		return b.String()
	}
	return fmt.Sprintf("%s %s %s %s>%s", e.Source.Table, e.Op, r.Key, img(e.Before), img(e.After))
}

const stockRules = `
rules:
  - name: stock-rows
    match: {table: "DB.stock_*", ops: [insert, update, delete]}
    topic: TOPIC
    key: [sku_id]
`

func TestStreamsCommittedChangesInCommitOrderPerKey(t *testing.T) {
	e := newEnv(t)
	e.exec(
		"CREATE TABLE stock_a (sku_id VARCHAR(32) PRIMARY KEY, qty INT NOT NULL)",
		"CREATE TABLE stock_b (sku_id VARCHAR(32), warehouse VARCHAR(8), qty INT NOT NULL, PRIMARY KEY (sku_id, warehouse))",
		"CREATE TABLE other (id INT PRIMARY KEY, x INT)",
	)
	e.start(e.rules(stockRules), testutil.ServerID())

	e.exec(
		"INSERT INTO stock_a VALUES ('A1', 10)",
		"BEGIN; INSERT INTO stock_a VALUES ('A2', 5); UPDATE stock_a SET qty = 9 WHERE sku_id = 'A1'; "+
			"INSERT INTO stock_b VALUES ('A1', 'W1', 3); INSERT INTO other VALUES (1, 1); COMMIT",
		"INSERT INTO other VALUES (2, 2)",
		"BEGIN; DELETE FROM stock_a WHERE sku_id = 'A2'; UPDATE stock_b SET qty = qty - 1; COMMIT",
		"BEGIN; INSERT INTO stock_a VALUES ('A3', 1); ROLLBACK",
		"UPDATE stock_a SET qty = qty + 1",
		"INSERT INTO stock_a VALUES ('END', 0)",
	)
	want := []string{
		`stock_a c {"sku_id":"A1"} ->qty=10,sku_id=A1,`,
		`stock_a c {"sku_id":"A2"} ->qty=5,sku_id=A2,`,
		`stock_a u {"sku_id":"A1"} qty=10,sku_id=A1,>qty=9,sku_id=A1,`,
		`stock_b c {"sku_id":"A1"} ->qty=3,sku_id=A1,warehouse=W1,`,
		`stock_a d {"sku_id":"A2"} qty=5,sku_id=A2,>-`,
		`stock_b u {"sku_id":"A1"} qty=3,sku_id=A1,warehouse=W1,>qty=2,sku_id=A1,warehouse=W1,`,
		`stock_a u {"sku_id":"A1"} qty=9,sku_id=A1,>qty=10,sku_id=A1,`,
		`stock_a c {"sku_id":"END"} ->qty=0,sku_id=END,`,
	}
	got := testutil.Consume(t, e.broker, []string{e.topic}, len(want), 20*time.Second)
	// Kafka keeps order per partition; compare the order per key.
	perKey := func(lines []string) map[string][]string {
		m := map[string][]string{}
		for _, l := range lines {
			k := strings.Fields(l)[2]
			m[k] = append(m[k], l)
		}
		return m
	}
	var gotLines []string
	for _, r := range got {
		gotLines = append(gotLines, summary(t, r))
		if r.Headers["stocksync-rule"] != "stock-rows" {
			t.Errorf("header stocksync-rule = %q, want stock-rows", r.Headers["stocksync-rule"])
		}
	}
	if g, w := perKey(gotLines), perKey(want); fmt.Sprint(g) != fmt.Sprint(w) {
		t.Errorf("messages per key:\n got %v\nwant %v", g, w)
	}
	// The two changes of one transaction carry one source position and rows 0, 1, ...
	a2, a1u := decode(t, got[indexOf(gotLines, want[1])]), decode(t, got[indexOf(gotLines, want[2])])
	if a2.Source.Pos != a1u.Source.Pos || a2.Source.Row != 0 || a1u.Source.Row != 1 || a2.Source.GTID == "" {
		t.Errorf("one transaction's source: %+v and %+v", a2.Source, a1u.Source)
	}
}

func indexOf(lines []string, s string) int {
	for i, l := range lines {
		if l == s {
			return i
		}
	}
	return 0
}

func TestTablesNoRuleMatchesPublishNothing(t *testing.T) {
	e := newEnv(t)
	e.exec("CREATE TABLE stock_a (sku_id VARCHAR(32) PRIMARY KEY, qty INT)", "CREATE TABLE orders (id INT PRIMARY KEY)")
	metrics := pipeline.NewMetrics(nil)
	e.start(e.rules(stockRules), testutil.ServerID(), func(o *pipeline.Options) { o.Metrics = metrics })
	e.exec("INSERT INTO orders VALUES (1), (2), (3)", "UPDATE orders SET id = id + 10", "INSERT INTO stock_a VALUES ('only', 1)")
	got := testutil.Consume(t, e.broker, []string{e.topic}, 1, 20*time.Second)
	// Wait for anything more that might arrive after the one expected message.
	more := testutil.Consume(t, e.broker, []string{e.topic}, 0, 5*time.Second)
	if len(more) != 1 || decode(t, got[0]).Source.Table != "stock_a" {
		t.Fatalf("want only the stock_a insert, got %d messages: %v", len(more), more)
	}
	// The two rows events of orders were skipped without decoding, and the metric says so.
	testutil.Eventually(t, 5*time.Second, "stocksync_binlog_rows_events_skipped_total to count the orders events", func() bool {
		return promtest.ToFloat64(metrics.EventsSkipped) >= 2
	})
	if n := promtest.ToFloat64(metrics.EventsRead); n != 1 {
		t.Errorf("stocksync_events_read_total = %v, want 1 (the stock_a insert alone)", n)
	}
}

// TestMessagesAreCountedByRule: stocksync_rule_messages_total counts each rule's
// messages, and stocksync_rule_eval_errors each rule's failed evaluations.
func TestMessagesAreCountedByRule(t *testing.T) {
	e := newEnv(t)
	e.exec("CREATE TABLE stock_a (sku_id VARCHAR(32) PRIMARY KEY, qty INT)", "CREATE TABLE stock_b (sku_id VARCHAR(32) PRIMARY KEY, qty INT)")
	metrics := pipeline.NewMetrics(nil)
	e.start(e.rules(`
rules:
  - name: a-rows
    match: {table: "DB.stock_a"}
    topic: TOPIC
    key: [sku_id]
  - name: b-rows
    match: {table: "DB.stock_b"}
    topic: TOPIC
    key: [sku_id]
  - name: b-odd
    match: {table: "DB.stock_b"}
    topic: TOPIC
    fields: {sku_id: sku_id, odd: "after.qty > 'x'"}
`), testutil.ServerID(), func(o *pipeline.Options) { o.Metrics = metrics })
	// a, then b, then a again: the counter of a rule counted before is found again.
	e.exec("INSERT INTO stock_a VALUES ('a1', 1), ('a2', 2)", "INSERT INTO stock_b VALUES ('b1', 1)", "INSERT INTO stock_a VALUES ('a3', 3)")
	testutil.Consume(t, e.broker, []string{e.topic}, 5, 20*time.Second)
	for rule, want := range map[string]float64{"a-rows": 3, "b-rows": 1, "b-odd": 1} {
		if got := promtest.ToFloat64(metrics.RuleMessages.WithLabelValues(rule)); got != want {
			t.Errorf("stocksync_rule_messages_total{rule=%q} = %v, want %v", rule, got, want)
		}
	}
	testutil.Eventually(t, 10*time.Second, "b-odd's failed field to be counted", func() bool {
		return promtest.ToFloat64(metrics.RuleEvalErrors.WithLabelValues("b-odd")) == 1
	})
	if n := promtest.ToFloat64(metrics.RuleEvalErrors.WithLabelValues("b-rows")); n != 0 {
		t.Errorf("stocksync_rule_eval_errors{rule=\"b-rows\"} = %v, want 0", n)
	}
}

func TestEveryColumnTypeRoundTrips(t *testing.T) {
	e := newEnv(t)
	e.exec(`CREATE TABLE stock_types (
		sku_id INT PRIMARY KEY,
		t TINYINT, s SMALLINT, m MEDIUMINT, i INT, b BIGINT, ub BIGINT UNSIGNED, ui INT UNSIGNED,
		d DECIMAL(20,6), f FLOAT, db DOUBLE,
		dt DATE, dtm DATETIME(6), ts TIMESTAMP(3) NULL, tm TIME, y YEAR,
		c CHAR(4), v VARCHAR(20), tx TEXT, bl BLOB, vb VARBINARY(8),
		j JSON, e ENUM('red','green'), st SET('a','b','c'), bt BIT(8), b64 BIT(64), n INT NULL,
		l1 VARCHAR(20) CHARACTER SET latin1, u8 VARCHAR(20) CHARACTER SET utf8mb4)`)
	e.start(e.rules(`
rules:
  - name: types
    match: {table: "DB.stock_types"}
    topic: TOPIC
`), testutil.ServerID())
	e.exec(`SET time_zone = '+00:00'`)
	db := e.mysql.Open(t, e.db)
	if _, err := db.Exec(`SET time_zone = '+00:00'; INSERT INTO stock_types VALUES (1,
		-128, -32768, -8388608, -2147483648, -9223372036854775808, 18446744073709551615, 4294967295,
		'-12345678901234.123456', 1.5, 0.1,
		'2024-02-29', '2024-02-29 23:59:58.123456', '2024-03-01 00:00:01.250', '-12:30:00', 2024,
		'ab', 'héllo "quoted"', 'line1\nline2', x'00ff10', x'cafe',
		'{"a": [1, 2.5, "x"], "b": null}', 'green', 'a,c', b'10100101', b'1111111111111111111111111111111111111111111111111111111111111111', NULL, 'café', '库存 ✓')`); err != nil {
		t.Fatal(err)
	}
	got := testutil.Consume(t, e.broker, []string{e.topic}, 1, 20*time.Second)
	ev := decode(t, got[0])
	want := map[string]string{
		"sku_id": "1", "t": "-128", "s": "-32768", "m": "-8388608", "i": "-2147483648", "b": "-9223372036854775808",
		"ub": "18446744073709551615", "ui": "4294967295",
		"d": "-12345678901234.123456", "f": "1.5", "db": "0.1",
		"dt": "2024-02-29", "dtm": "2024-02-29T23:59:58.123456Z", "ts": "2024-03-01T00:00:01.250Z", "tm": "-12:30:00", "y": "2024",
		"c": "ab", "v": `héllo "quoted"`, "tx": "line1\nline2", "bl": "AP8Q", "vb": "yv4=",
		"j": `map[a:[1 2.5 x] b:<nil>]`, "e": "green", "st": "a,c", "bt": "165", "b64": "18446744073709551615", "n": "<nil>", "l1": "café", "u8": "库存 ✓",
	}
	for col, w := range want {
		if g := fmt.Sprint(ev.After[col]); g != w {
			t.Errorf("column %s: got %s, want %s", col, g, w)
		}
	}
	// Exact JSON types: numbers stay numbers, DECIMAL is a string, unsigned BIGINT exact.
	for col, kind := range map[string]string{"ub": "json.Number", "d": "string", "f": "json.Number", "j": "map[string]interface {}", "n": "<nil>"} {
		if g := fmt.Sprintf("%T", ev.After[col]); g != kind {
			t.Errorf("column %s is a %s in JSON, want %s", col, g, kind)
		}
	}
	for _, exact := range []string{`"ub":18446744073709551615`, `"b64":18446744073709551615`} {
		if !strings.Contains(got[0].Value, exact) {
			t.Errorf("unsigned BIGINT or BIT(64) not written exactly (want %s): %s", exact, got[0].Value)
		}
	}
}

// TestJSONColumnWithTextThatIsNotJSON: MariaDB's JSON column is a LONGTEXT whose
// json_valid check a session can switch off (and which a row written before an ALTER to
// JSON never passed). Such text must reach the topic as a string, in a message that is
// still JSON, not spliced in raw.
func TestJSONColumnWithTextThatIsNotJSON(t *testing.T) {
	e := newEnv(t)
	e.exec(`CREATE TABLE stock_j (sku_id INT PRIMARY KEY, j JSON)`)
	e.start(e.rules(`
rules:
  - name: types
    match: {table: "DB.stock_j"}
    topic: TOPIC
`), testutil.ServerID())
	db := e.mysql.Open(t, e.db)
	if _, err := db.Exec(`SET check_constraint_checks = 0; INSERT INTO stock_j VALUES (1, 'not "json" {'), (2, '{"a": 1}')`); err != nil {
		t.Fatal(err)
	}
	got := testutil.Consume(t, e.broker, []string{e.topic}, 2, 20*time.Second)
	want := map[string]string{`{"sku_id":1}`: `"j":"not \"json\" {"`, `{"sku_id":2}`: `"j":{"a": 1}`}
	for _, m := range got {
		if !json.Valid([]byte(m.Value)) {
			t.Errorf("message of %s is not JSON: %s", m.Key, m.Value)
		}
		if !strings.Contains(m.Value, want[m.Key]) {
			t.Errorf("message of %s: %s, want it to hold %s", m.Key, m.Value, want[m.Key])
		}
	}
}

func TestRestartResumesFromCheckpoint(t *testing.T) {
	e := newEnv(t)
	e.exec("CREATE TABLE stock_r (sku_id INT PRIMARY KEY, qty INT)")
	set := e.rules(stockRules)
	id := testutil.ServerID()
	r := e.start(set, id)
	for i := 0; i < 50; i++ {
		e.exec(fmt.Sprintf("INSERT INTO stock_r VALUES (%d, %d)", i, i))
	}
	testutil.Consume(t, e.broker, []string{e.topic}, 50, 20*time.Second)
	r.stop(t)
	// Written while the daemon is stopped: must arrive after the restart.
	for i := 50; i < 100; i++ {
		e.exec(fmt.Sprintf("INSERT INTO stock_r VALUES (%d, %d)", i, i))
	}
	metrics := pipeline.NewMetrics(nil)
	e.start(set, id, func(o *pipeline.Options) { o.Metrics, o.CheckpointInterval = metrics, time.Hour })
	// Before any save of this run, the metrics show the checkpoint it resumed from.
	if file, pos := promtest.ToFloat64(metrics.CheckpointFile), promtest.ToFloat64(metrics.CheckpointPos); file == 0 || pos == 0 {
		t.Errorf("checkpoint metrics after a restart, before its first save: file %v, pos %v; want the loaded checkpoint", file, pos)
	}
	got := testutil.Consume(t, e.broker, []string{e.topic}, 100, 20*time.Second)
	seen := map[string]int{}
	for _, m := range got {
		seen[m.Key]++
	}
	for i := 0; i < 100; i++ {
		if k := fmt.Sprintf(`{"sku_id":%d}`, i); seen[k] != 1 {
			t.Errorf("row %d published %d times after a clean stop and restart, want once", i, seen[k])
		}
	}
}

// TestExactlyOnceStopInsideATransaction stops an exactly-once pipeline (as SIGTERM does)
// after 40 of the 200 messages of one transaction, while 30 committed transactions before
// it sit in the same open Kafka transaction. After a restart, read_committed consumers
// must see every row once: the stop must not commit the part of the transaction it had.
func TestExactlyOnceStopInsideATransaction(t *testing.T) {
	e := newEnv(t)
	e.exactlyOnce = true
	e.exec("CREATE TABLE stock_x (sku_id INT PRIMARY KEY, qty INT)")
	set := e.rules(stockRules)
	id := testutil.ServerID()
	emitted := 0
	stop := newStopAfter(func(sinks.Message) bool { emitted++; return emitted == 30+40 })
	r := e.start(set, id, stop.wrap)
	for i := range 30 {
		e.exec(fmt.Sprintf("INSERT INTO stock_x VALUES (%d, 1)", i))
	}
	e.exec("INSERT INTO stock_x SELECT 1000 + seq, 2 FROM seq_1_to_200")
	stop.waitReached(t, 20*time.Second, "the 70th message")
	r.stop(t)
	e.start(set, id)
	e.consume(230, 20*time.Second)
	got := e.consume(0, 2*time.Second) // then everything there is
	seen := map[string]int{}
	for _, m := range got {
		seen[m.Key]++
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s published %d times, want once", k, n)
		}
	}
	if len(seen) != 230 {
		t.Errorf("%d rows published, want 230", len(seen))
	}
}

// testLease is a lease the test takes away.
type testLease struct{ held atomic.Bool }

func (l *testLease) Held() bool { return l.held.Load() }

// TestLostLeaseStopsPublishing: once the lease is gone, nothing more reaches the broker
// and Run ends with ErrLeaseLost (the daemon then waits for the lock again).
func TestLostLeaseStopsPublishing(t *testing.T) {
	e := newEnv(t)
	e.exec("CREATE TABLE stock_l (sku_id INT PRIMARY KEY, qty INT)")
	lease := &testLease{}
	lease.held.Store(true)
	r := e.start(e.rules(stockRules), testutil.ServerID(), func(o *pipeline.Options) { o.Lease = lease })
	for i := 0; i < 5; i++ {
		e.exec(fmt.Sprintf("INSERT INTO stock_l VALUES (%d, 1)", i))
	}
	testutil.Consume(t, e.broker, []string{e.topic}, 5, 20*time.Second)

	lease.held.Store(false)
	for i := 5; i < 10; i++ {
		e.exec(fmt.Sprintf("INSERT INTO stock_l VALUES (%d, 1)", i))
	}
	select {
	case err := <-r.done:
		if !errors.Is(err, pipeline.ErrLeaseLost) {
			t.Fatalf("Run ended with %v, want ErrLeaseLost", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the pipeline kept running without its lease")
	}
	r.cancel = nil // ended already
	r.sink.Close()
	if got := testutil.Consume(t, e.broker, []string{e.topic}, 0, 10*time.Second); len(got) != 5 {
		t.Errorf("%d records on the topic, want the 5 published while the lease was held", len(got))
	}
}

// TestCheckpointFollowsARotationOnOtherTables: while only tables no rule matches change,
// the checkpoint still moves into the binlog file the server writes after a rotation
// (FLUSH BINARY LOGS, or a full file), well within the minute between idle saves, so
// that purging the files before the current one never takes the checkpoint's file.
func TestCheckpointFollowsARotationOnOtherTables(t *testing.T) {
	e := newEnv(t)
	e.exec("CREATE TABLE stock_x (sku_id INT PRIMARY KEY, qty INT)", "CREATE TABLE other (id INT PRIMARY KEY)",
		"INSERT INTO stock_x VALUES (1, 1)")
	e.start(e.rules(stockRules), testutil.ServerID())
	db := e.mysql.Open(t, e.db)
	saved := func() (file string) {
		db.QueryRow("SELECT file FROM checkpoint WHERE name = 'test'").Scan(&file)
		return file
	}
	testutil.Eventually(t, 10*time.Second, "a first checkpoint", func() bool { return saved() != "" })
	e.exec("FLUSH BINARY LOGS")
	var current string
	var pos, doDB, ignoreDB sql.NullString
	if err := db.QueryRow("SHOW MASTER STATUS").Scan(&current, &pos, &doDB, &ignoreDB); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		e.exec(fmt.Sprintf("INSERT INTO other VALUES (%d)", i))
	}
	testutil.Eventually(t, 10*time.Second, "the checkpoint in "+current, func() bool { return saved() >= current })
}

// stalledFlush is a sink whose Flush, once stalled, waits until the test lets it go or
// the pipeline's ctx ends: a broker that stops acknowledging.
type stalledFlush struct {
	pipeline.Sink
	stalled atomic.Bool
	release chan struct{}
}

func (s *stalledFlush) Flush(ctx context.Context) error {
	if s.stalled.Load() {
		select {
		case <-s.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.Sink.Flush(ctx)
}

// TestLagGrowsWhileTheBrokerStalls: stocksync_source_lag_seconds counts from the oldest
// change the broker has not acknowledged, so it keeps growing while the broker stalls
// (the stream itself has read everything), and falls back once it acknowledges.
func TestLagGrowsWhileTheBrokerStalls(t *testing.T) {
	e := newEnv(t) // at least once: the checkpoint waits for the broker's acknowledgements
	e.exec("CREATE TABLE stock_lag (sku_id VARCHAR(32) PRIMARY KEY, qty INT)")
	metrics := pipeline.NewMetrics(nil)
	sink := &stalledFlush{release: make(chan struct{})}
	e.start(e.rules(allOpsRules), testutil.ServerID(), func(o *pipeline.Options) {
		o.Metrics = metrics
		sink.Sink, o.Sink = o.Sink, sink
	})
	sink.stalled.Store(true)
	e.exec("INSERT INTO stock_lag VALUES ('a1', 1)")
	testutil.Eventually(t, 20*time.Second, "the lag to pass 3 s while the broker stalls", func() bool {
		return promtest.ToFloat64(metrics.Lag) >= 3
	})
	close(sink.release)
	testutil.Eventually(t, 20*time.Second, "the lag to fall back once the broker acknowledges", func() bool {
		return promtest.ToFloat64(metrics.Lag) < 2
	})
}

// TestLagGrowsWhileTheStreamIsStopped: while the stream is stopped on a change it refuses
// (a rename of a table an aggregate rule reads, its name left empty), stocksync_source_lag_seconds
// grows on from its last value, between runs and through a run that stops there again,
// instead of staying at its last value or starting again from 0. The first run that stops
// there reads a committed transaction before it, where it could send a heartbeat: it sends
// none, since a run sends its first only after streaming an interval.
func TestLagGrowsWhileTheStreamIsStopped(t *testing.T) {
	e := newEnv(t)
	e.exec("CREATE TABLE stock_lag (sku_id VARCHAR(32) PRIMARY KEY, qty INT)")
	set := e.rules(`
rules:
  - name: total
    match: {table: "DB.stock_*"}
    emit: aggregate
    group_by: [sku_id]
    sum: {qty: qty}
    topic: TOPIC
`)
	metrics := pipeline.NewMetrics(nil) // the process's, over its runs
	withMetrics := func(o *pipeline.Options) { o.Metrics = metrics }
	id := testutil.ServerID()
	r := e.start(set, id, withMetrics)
	e.exec("INSERT INTO stock_lag VALUES ('a1', 1)")
	e.consume(1, 20*time.Second)
	testutil.Eventually(t, 20*time.Second, "the lag to be 0, caught up", func() bool { return promtest.ToFloat64(metrics.Lag) == 0 })
	r.stop(t) // its last checkpoint is past a1

	e.exec("INSERT INTO stock_lag VALUES ('a2', 2)", "RENAME TABLE stock_lag TO lag_old")
	heartbeatTopic := e.topic + ".heartbeat"
	heartbeats := func(o *pipeline.Options) {
		o.Heartbeat = pipeline.Heartbeat{Topic: heartbeatTopic, Interval: time.Second}
		o.Source.RenamedAwayWait = time.Hour // not taken as dropped while the test runs
	}
	if err := e.run(set, id, withMetrics, heartbeats).stopped(t, 20*time.Second); err == nil {
		t.Fatal("the stream went on past the RENAME; want it stopped there")
	}
	testutil.Eventually(t, 20*time.Second, "the lag to grow while no stream reads", func() bool {
		return promtest.ToFloat64(metrics.Lag) >= 2
	})
	before := promtest.ToFloat64(metrics.Lag)
	if err := e.run(set, id, withMetrics, heartbeats).stopped(t, 20*time.Second); err == nil {
		t.Fatal("the restarted stream went on past the RENAME; want it stopped there again")
	}
	if after := promtest.ToFloat64(metrics.Lag); after < before {
		t.Errorf("the lag went from %.1f s to %.1f s over a run that stopped at the same change; want it growing on", before, after)
	}
	if got := testutil.Consume(t, e.broker, []string{heartbeatTopic}, 0, 5*time.Second); len(got) != 0 {
		t.Errorf("runs that stopped at the change they refuse sent %d heartbeats; want none (consumers would take them for alive)", len(got))
	}
}

// TestSnapshotMetByDDLIsRetryable: a snapshot or seed that met a table altered under it
// (canal.ErrTableChangedUnderSnapshot, the server's 1412), however wrapped, is retried
// from the checkpoint: a new snapshot reads the table in its new shape.
func TestSnapshotMetByDDLIsRetryable(t *testing.T) {
	err := fmt.Errorf("seeding the rules again after ALTER TABLE shop.stock … TRUNCATE PARTITION at binlog.000001:4: %w",
		fmt.Errorf("%w: reading chunk of shop.stock: Error 1412", canal.ErrTableChangedUnderSnapshot))
	if !pipeline.Retryable(err) {
		t.Errorf("Retryable(%v) = false", err)
	}
}

// TestSystemVersionedTablePublishesItsCurrentRows: rules over a table WITH SYSTEM
// VERSIONING publish its current rows only, as SELECT shows them. The aggregate's seed
// reads the table's rows, and its totals after UPDATEs, a DELETE and INSERTs equal SQL's
// SUM: the history rows the server writes for each UPDATE and DELETE are not counted. The
// row rule publishes an UPDATE as a u and a DELETE as a d, keyed by the declared primary
// key, with no period column in the images. A sequence the rules' glob also matches is
// left out: its NEXTVAL publishes nothing and stops nothing.
func TestSystemVersionedTablePublishesItsCurrentRows(t *testing.T) {
	e := newEnv(t)
	e.exec("CREATE TABLE stock_sv (id INT PRIMARY KEY, wh VARCHAR(8) NOT NULL, qty INT NOT NULL) WITH SYSTEM VERSIONING",
		"INSERT INTO stock_sv VALUES (1, 'w1', 5), (2, 'w1', 7), (3, 'w2', 1)", "UPDATE stock_sv SET qty = 6 WHERE id = 1",
		"CREATE SEQUENCE stock_seq")
	e.start(e.rules(`
rules:
  - name: rows
    match: {table: "DB.stock_*"}
    topic: TOPIC
  - name: wh-stock
    match: {table: "DB.stock_*"}
    emit: aggregate
    group_by: [wh]
    sum: {qty: qty}
    topic: TOPIC
`), testutil.ServerID())
	e.exec("UPDATE stock_sv SET qty = 4 WHERE id = 1", "SELECT NEXTVAL(stock_seq)", "DELETE FROM stock_sv WHERE id = 2", "INSERT INTO stock_sv VALUES (4, 'w1', 1)",
		"UPDATE stock_sv SET qty = 2 WHERE id = 3", "INSERT INTO stock_sv VALUES (9, 'end', 0)")

	var got []testutil.Record
	testutil.Eventually(t, 30*time.Second, "the aggregate's total of the last group written", func() bool {
		got = e.consume(0, 15*time.Second)
		return slices.ContainsFunc(got, func(r testutil.Record) bool { return r.Key == `{"wh":"end"}` })
	})
	var rows []string
	totals := map[string]string{}
	for _, r := range got {
		switch r.Headers["stocksync-rule"] {
		case "rows":
			rows = append(rows, summary(t, r))
		case "wh-stock":
			if env := decode(t, r); env.After != nil {
				totals[r.Key] = fmt.Sprint(env.After["qty"])
			} else {
				delete(totals, r.Key)
			}
		}
	}
	wantRows := []string{
		`stock_sv u {"id":1} id=1,qty=6,wh=w1,>id=1,qty=4,wh=w1,`,
		`stock_sv d {"id":2} id=2,qty=7,wh=w1,>-`,
		`stock_sv c {"id":4} ->id=4,qty=1,wh=w1,`,
		`stock_sv u {"id":3} id=3,qty=1,wh=w2,>id=3,qty=2,wh=w2,`,
		`stock_sv c {"id":9} ->id=9,qty=0,wh=end,`,
	}
	slices.Sort(rows) // Kafka keeps order per key only
	slices.Sort(wantRows)
	if !slices.Equal(rows, wantRows) {
		t.Errorf("row rule published:\n%s\nwant:\n%s", strings.Join(rows, "\n"), strings.Join(wantRows, "\n"))
	}
	sums := map[string]string{}
	res, err := e.mysql.Open(t, e.db).QueryContext(t.Context(), "SELECT wh, SUM(qty) FROM stock_sv GROUP BY wh")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	for res.Next() {
		var wh, sum string
		if err := res.Scan(&wh, &sum); err != nil {
			t.Fatal(err)
		}
		sums[`{"wh":"`+wh+`"}`] = sum
	}
	if fmt.Sprint(totals) != fmt.Sprint(sums) {
		t.Errorf("aggregate published totals %v, SQL's SUM is %v", totals, sums)
	}
}

// switchableModes makes a pipeline's checkpoints as the daemon's with its own brokers:
// exactly-once remembers its commits in the checkpoint table, and at-least-once can read
// the checkpoint topic, so that each takes over the other's checkpoint after a switch.
func (e *env) switchableModes(o *pipeline.Options) {
	if kc, ok := o.Checkpoints.(*pipeline.KafkaCheckpoints); ok {
		kc.MirrorTable = o.CheckpointTable
		return
	}
	o.ReadCheckpointTopic = func(ctx context.Context) (map[string][]byte, error) {
		return sinks.ReadCheckpoints(ctx, []string{e.broker}, sinks.Security{}, e.topic+".checkpoints")
	}
}

// TestSwitchingDeliveryModeLosesNothing turns kafka.exactly_once on, and off, with rows
// written while the daemon is stopped for the switch: the new mode takes over the other's
// checkpoint, so they are published, and the other's checkpoint is superseded, so that
// switching back resumes from where the new mode stopped, not from the old one's.
func TestSwitchingDeliveryModeLosesNothing(t *testing.T) {
	for _, fromExactlyOnce := range []bool{false, true} {
		t.Run(map[bool]string{false: "at-least-once to exactly-once", true: "exactly-once to at-least-once"}[fromExactlyOnce], func(t *testing.T) {
			e := newEnv(t)
			e.exec("CREATE TABLE stock_m (sku_id INT PRIMARY KEY, qty INT, wh INT NOT NULL DEFAULT 1)")
			set := e.rules(stockRules + `
  - name: total
    match: {table: "DB.stock_m"}
    emit: aggregate
    group_by: [wh]
    sum: {qty: qty}
    topic: TOPIC.total
`)
			id := testutil.ServerID()
			db := e.mysql.Open(t, e.db)
			published := func(want int) map[string]int {
				t.Helper()
				got := testutil.Consume(t, e.broker, []string{e.topic}, want, 20*time.Second, testutil.ConsumeOptions{ReadCommitted: true})
				got = append(got, testutil.Consume(t, e.broker, []string{e.topic}, 0, time.Second, testutil.ConsumeOptions{ReadCommitted: true})[len(got):]...)
				seen := map[string]int{}
				for _, m := range got {
					seen[m.Key]++
				}
				return seen
			}
			mode := func(exactlyOnce bool) *running {
				e.exactlyOnce = exactlyOnce
				return e.start(set, id, e.switchableModes)
			}

			r := mode(fromExactlyOnce)
			e.exec("INSERT INTO stock_m (sku_id, qty) VALUES (1, 1)")
			published(1)
			r.stop(t)
			e.exec("INSERT INTO stock_m (sku_id, qty) VALUES (2, 2)") // while stopped for the switch
			r = mode(!fromExactlyOnce)
			e.exec("INSERT INTO stock_m (sku_id, qty) VALUES (3, 3)")
			seen := published(3)
			for i := 1; i <= 3; i++ {
				if k := fmt.Sprintf(`{"sku_id":%d}`, i); seen[k] != 1 {
					t.Errorf("after the switch, row %d published %d times, want once", i, seen[k])
				}
			}
			r.stop(t)
			// The mode switched from has no checkpoint left to resume from.
			var rows int
			old := "test"
			if fromExactlyOnce {
				old = pipeline.MirrorName("test")
			}
			if err := db.QueryRow("SELECT COUNT(*) FROM checkpoint WHERE name = ?", old).Scan(&rows); err != nil {
				t.Fatal(err)
			}
			if rows != 0 {
				t.Errorf("row %q of the checkpoint table is still there after the switch: a switch back would resume from it", old)
			}
			// The rule state came along with the position: the total goes on from 6.
			e.exec("INSERT INTO stock_m (sku_id, qty) VALUES (4, 4)") // while stopped for the switch back
			r = mode(fromExactlyOnce)
			e.exec("INSERT INTO stock_m (sku_id, qty) VALUES (5, 5)")
			seen = published(5)
			for i := 1; i <= 5; i++ {
				if k := fmt.Sprintf(`{"sku_id":%d}`, i); seen[k] != 1 {
					t.Errorf("after switching back, row %d published %d times, want once", i, seen[k])
				}
			}
			totals := testutil.Consume(t, e.broker, []string{e.topic + ".total"}, 5, 20*time.Second, testutil.ConsumeOptions{ReadCommitted: true})
			var sums []string
			for _, m := range totals {
				sums = append(sums, fmt.Sprint(decode(t, m).After["qty"]))
			}
			if want := "1 3 6 10 15"; strings.Join(sums, " ") != want {
				t.Errorf("totals published %v, want %s once each: the rule state must follow the checkpoint across the switches", sums, want)
			}
			r.stop(t)
		})
	}
}
