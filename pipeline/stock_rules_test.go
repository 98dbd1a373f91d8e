package pipeline_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stocksync/stocksync/config"
	"github.com/stocksync/stocksync/internal/testutil"
	"github.com/stocksync/stocksync/inventory"
	"github.com/stocksync/stocksync/pipeline"
	"github.com/stocksync/stocksync/rules"
	"github.com/stocksync/stocksync/sinks"
)

const stockRulesYAML = `
rules:
  - name: product-stock
    match: {table: "DB.sellable_shard"}
    emit: aggregate
    group_by: [sku_id]
    sum: {sellable: qty}
    topic: TOPIC.product
  - name: search-in-stock
    match: {table: "DB.sellable_shard"}
    emit: transition
    group_by: [sku_id]
    sum: {sellable: qty}
    value: "sellable > 0"
    topic: TOPIC.search
`

// groupMessage is an aggregate or transition message.
type groupMessage struct {
	Op     string         `json:"op"`
	Before map[string]any `json:"before"`
	After  map[string]any `json:"after"`
}

// TestShardedStockAggregatesAndTransitionsUnderConcurrentDeductions runs real concurrent
// deductions on SKUs sharded over 8 rows, restarts the pipeline in the middle, and checks
// that the product topic's last value per SKU is SUM over its shards and the search
// topic holds exactly the sell-out and back-in-stock crossings.
func TestShardedStockAggregatesAndTransitionsUnderConcurrentDeductions(t *testing.T) {
	e := newEnv(t)
	cfg := config.Default()
	cfg.Source.Addr, cfg.Source.User, cfg.Source.Password = e.mysql.Addr, e.mysql.User, e.mysql.Password
	cfg.Inventory.Database = e.db
	ctx := context.Background()
	invDB, err := inventory.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer invDB.Close()
	if _, err := inventory.MigrateDB(ctx, invDB); err != nil {
		t.Fatal(err)
	}
	store := inventory.New(invDB, inventory.Options{})
	set := e.rules(stockRulesYAML)
	id := testutil.ServerID()
	r := e.start(set, id)

	skus := []string{"S1", "S2", "S3", "S4"}
	for _, s := range skus {
		if _, err := store.SetStock(ctx, s, 120, 8); err != nil {
			t.Fatal(err)
		}
	}
	// Deduct until every SKU is sold out; restart the pipeline half way through.
	var orders sync.Map // order_no → sku
	var wg sync.WaitGroup
	var granted sync.Map
	restartAt := make(chan struct{})
	var once sync.Once
	var n int64
	var mu sync.Mutex
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			soldOut := map[string]bool{}
			for i := 0; len(soldOut) < len(skus); i++ {
				sku := skus[rng.IntN(len(skus))]
				if soldOut[sku] {
					continue
				}
				no := fmt.Sprintf("o-%d-%d", w, i)
				_, err := store.Deduct(ctx, inventory.DeductRequest{OrderNo: no, Items: []inventory.Item{{SKU: sku, Qty: int64(1 + rng.IntN(4))}}})
				var short *inventory.ShortageError
				switch {
				case errors.As(err, &short):
					if st, err := store.Get(ctx, sku); err == nil && st.Sellable == 0 {
						soldOut[sku] = true
					}
				case err != nil:
					t.Errorf("deducting %s: %v", no, err)
					return
				default:
					orders.Store(no, sku)
					granted.Store(no, true)
					mu.Lock()
					n++
					if n == 100 {
						once.Do(func() { close(restartAt) })
					}
					mu.Unlock()
				}
			}
		}(w)
	}
	<-restartAt
	r.stop(t)
	e.start(set, id)
	wg.Wait()
	// Bring S1 and S2 back in stock by cancelling one of their orders each.
	back := map[string]bool{}
	orders.Range(func(k, v any) bool {
		sku := v.(string)
		if (sku == "S1" || sku == "S2") && !back[sku] {
			if _, err := store.Cancel(ctx, k.(string)); err != nil {
				t.Errorf("cancelling %s: %v", k, err)
			}
			back[sku] = true
		}
		return true
	})

	want := map[string]int64{}
	for _, s := range skus {
		st, err := store.Get(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		var sum int64
		if err := invDB.QueryRow("SELECT SUM(qty) FROM sellable_shard WHERE sku_id = ?", s).Scan(&sum); err != nil {
			t.Fatal(err)
		}
		if sum != st.Sellable {
			t.Fatalf("%s: Get says %d, SUM says %d", s, st.Sellable, sum)
		}
		want[s] = sum
	}
	// Read until the product topic's last value per SKU is the final SUM.
	awaitLastSums(t, e.broker, e.topic+".product", want)
	// Transitions: in stock at SetStock, sold out once, back for S1 and S2. A restart
	// repeats at most what came after the last checkpoint, and a repeat carries the same
	// source: drop repeats by it.
	crossings := map[string][]bool{}
	seen := map[string]bool{}
	for _, rec := range testutil.Consume(t, e.broker, []string{e.topic + ".search"}, 0, 3*time.Second) {
		var m struct {
			After  map[string]any `json:"after"`
			Source map[string]any `json:"source"`
		}
		if err := json.Unmarshal([]byte(rec.Value), &m); err != nil {
			t.Fatal(err)
		}
		src := rec.Key + fmt.Sprint(m.Source["file"], m.Source["pos"], m.Source["row"])
		if seen[src] {
			continue
		}
		seen[src] = true
		var k struct {
			SKU string `json:"sku_id"`
		}
		json.Unmarshal([]byte(rec.Key), &k)
		crossings[k.SKU] = append(crossings[k.SKU], m.After["value"].(bool))
	}
	for _, s := range skus {
		w := "[true false]"
		if back[s] {
			w = "[true false true]"
		}
		if g := fmt.Sprint(crossings[s]); g != w {
			t.Errorf("%s transitions %s, want %s", s, g, w)
		}
	}
	var total int
	granted.Range(func(any, any) bool { total++; return true })
	t.Logf("%d orders granted over %d SKUs × 8 shards", total, len(skus))
}

// TestAggregateRuleAddedLaterIsSeeded: an aggregate rule added to the file of a restart,
// and another added by a reload while running, start from their table's contents, not
// from zero: the first totals they publish are SUM over the shards.
func TestAggregateRuleAddedLaterIsSeeded(t *testing.T) {
	e := newEnv(t)
	db := e.mysql.Open(t, e.db)
	testutil.Exec(t, db, "CREATE TABLE sellable_shard (sku_id VARCHAR(8), shard INT, qty BIGINT, PRIMARY KEY (sku_id, shard))")
	rowsOnly := e.rules(allOpsRules)
	id := testutil.ServerID()
	r := e.start(rowsOnly, id)
	testutil.Exec(t, db, "INSERT INTO sellable_shard VALUES ('A', 0, 5), ('A', 1, 7), ('B', 0, 3)")
	r.stop(t)

	// Restart with an aggregate rule the checkpoint has no state for.
	withTotal := e.rules(allOpsRules + `
  - name: total
    match: {table: "DB.sellable_shard"}
    emit: aggregate
    group_by: [sku_id]
    sum: {sellable: qty}
    topic: TOPIC.total
`)
	r = e.start(withTotal, id)
	testutil.Exec(t, db, "UPDATE sellable_shard SET qty = qty - 1 WHERE sku_id = 'A' AND shard = 1")
	awaitLastSums(t, e.broker, e.topic+".total", map[string]int64{"A": 11, "B": 3})

	// A reload adds a second aggregate while running.
	withTwo := e.rules(allOpsRules + `
  - name: total
    match: {table: "DB.sellable_shard"}
    emit: aggregate
    group_by: [sku_id]
    sum: {sellable: qty}
    topic: TOPIC.total
  - name: total-again
    match: {table: "DB.sellable_shard"}
    emit: aggregate
    group_by: [sku_id]
    sum: {sellable: qty}
    topic: TOPIC.again
`)
	r.p.Reload(withTwo)
	testutil.Exec(t, db, "UPDATE sellable_shard SET qty = qty + 10 WHERE sku_id = 'B'")
	testutil.Exec(t, db, "UPDATE sellable_shard SET qty = qty + 1 WHERE sku_id = 'B'")
	awaitLastSums(t, e.broker, e.topic+".again", map[string]int64{"A": 11, "B": 14})
	awaitLastSums(t, e.broker, e.topic+".total", map[string]int64{"A": 11, "B": 14})
}

// awaitLastSums reads an aggregate topic until the last "sellable" per SKU is want.
func awaitLastSums(t *testing.T, broker, topic string, want map[string]int64) {
	t.Helper()
	last := map[string]int64{}
	defer func() {
		if t.Failed() {
			t.Logf("last sums on %s: %v, want %v", topic, last, want)
		}
	}()
	testutil.Eventually(t, 30*time.Second, "the last sums on "+topic, func() bool {
		for _, rec := range testutil.Consume(t, broker, []string{topic}, 0, time.Second) {
			var m groupMessage
			if err := json.Unmarshal([]byte(rec.Value), &m); err != nil {
				t.Fatal(err)
			}
			var k struct {
				SKU string `json:"sku_id"`
			}
			json.Unmarshal([]byte(rec.Key), &k)
			v, _ := m.After["sellable"].(float64)
			last[k.SKU] = int64(v)
		}
		return fmt.Sprint(last) == fmt.Sprint(want)
	})
}

// TestFirstStartWithoutSnapshotSeedsOnlyTheStatefulRules: with `snapshot: never`, a first
// start still reads the tables an aggregate rule folds, but a row rule on the same table
// publishes only what changes from then on, not the rows that were there (no op r).
func TestFirstStartWithoutSnapshotSeedsOnlyTheStatefulRules(t *testing.T) {
	e := newEnv(t)
	db := e.mysql.Open(t, e.db)
	testutil.Exec(t, db, "CREATE TABLE stock_shard (sku_id VARCHAR(8), shard INT, qty BIGINT, PRIMARY KEY (sku_id, shard))",
		"INSERT INTO stock_shard VALUES ('A', 0, 5), ('A', 1, 7), ('B', 0, 3)")
	set := e.rules(allOpsRules + `
  - name: total
    match: {table: "DB.stock_shard"}
    emit: aggregate
    group_by: [sku_id]
    sum: {sellable: qty}
    topic: TOPIC.total
`)
	e.start(set, testutil.ServerID(), func(o *pipeline.Options) { o.Snapshot = pipeline.SnapshotNever })
	testutil.Exec(t, db, "INSERT INTO stock_shard VALUES ('B', 1, 4)")
	awaitLastSums(t, e.broker, e.topic+".total", map[string]int64{"A": 12, "B": 7})
	got := e.consume(1, 10*time.Second)
	if op := decode(t, got[0]).Op; op != "c" || got[0].Key != `{"sku_id":"B"}` {
		t.Errorf("the row rule's first message is op %q for key %s; want only the insert after the start (op c, sku B)", op, got[0].Key)
	}
}

// TestTruncateEmptiesTheGroupsOfRulesThatReadTheTableAlone: a TRUNCATE of the one table
// an aggregate and a transition rule read publishes their groups emptied, at the
// statement, as deletes of every row would: the aggregate's groups a d each, the
// transition's groups that were true a false (none for C, already false). A stop while
// publishing them (checkpoint before the TRUNCATE) replays them the same, with the same
// source; a clean stop after it saves the emptied state, so that rows inserted after a
// restart start their group again (c, true) instead of adding to the old totals.
func TestTruncateEmptiesTheGroupsOfRulesThatReadTheTableAlone(t *testing.T) {
	inBothDeliveryModes(t, func(t *testing.T, e *env) {
		db := e.mysql.Open(t, e.db)
		testutil.Exec(t, db, "CREATE TABLE sellable_shard (sku_id VARCHAR(8), shard INT, qty BIGINT, PRIMARY KEY (sku_id, shard))")
		set := e.rules(stockRulesYAML)
		id := testutil.ServerID()
		stop := newStopAfter(func(m sinks.Message) bool { return strings.Contains(string(m.Value), `"op":"d"`) })
		r := e.start(set, id, stop.wrap)
		testutil.Exec(t, db, "INSERT INTO sellable_shard VALUES ('A', 0, 5), ('A', 1, 7), ('B', 0, 3), ('C', 0, 0)", "TRUNCATE TABLE sellable_shard")
		stop.waitReached(t, 20*time.Second, "the TRUNCATE's first message")
		r.stop(t) // inside the TRUNCATE's messages: its checkpoint is the one before

		truncated := map[string]string{
			"product A": "c:-:12 d:12:-", "product B": "c:-:3 d:3:-", "product C": "c:-:0 d:0:-",
			"search A": "u:false:true u:true:false", "search B": "u:false:true u:true:false",
		}
		r = e.start(set, id)
		var msgs map[string][]envelope
		testutil.Eventually(t, 30*time.Second, "the TRUNCATE's messages", func() bool {
			msgs = groupMessages(t, e)
			return fmt.Sprint(sequences(msgs)) == fmt.Sprint(truncated)
		})
		// The TRUNCATE's messages name it: its table, its GTID and position, one row per
		// group of a rule, after the insert's.
		ins, trunc := msgs["product A"][0].Source, msgs["product A"][1].Source
		for key, ms := range msgs {
			s := ms[1].Source
			if s.GTID != trunc.GTID || s.File != trunc.File || s.Pos != trunc.Pos || s.Table != "sellable_shard" || s.DB != e.db {
				t.Errorf("%s: the TRUNCATE's message has source %+v; want the statement's, as A's %+v", key, s, trunc)
			}
		}
		if trunc.GTID == "" || trunc.GTID == ins.GTID || trunc.File != ins.File || trunc.Pos <= ins.Pos {
			t.Errorf("the TRUNCATE's source %+v; want its own GTID and a position after the insert's %+v", trunc, ins)
		}
		if rows := fmt.Sprint(msgs["product A"][1].Source.Row, msgs["product B"][1].Source.Row, msgs["product C"][1].Source.Row); rows != "0 1 2" {
			t.Errorf("the TRUNCATE's product messages have rows %s; want 0 1 2 (the groups in key order)", rows)
		}
		r.stop(t) // a clean stop: the checkpoint is after the TRUNCATE

		e.start(set, id)
		testutil.Exec(t, db, "INSERT INTO sellable_shard VALUES ('A', 0, 2)")
		truncated["product A"] += " c:-:2"
		truncated["search A"] += " u:false:true"
		testutil.Eventually(t, 30*time.Second, "the insert's messages after the TRUNCATE", func() bool {
			return fmt.Sprint(sequences(groupMessages(t, e))) == fmt.Sprint(truncated)
		})
		// Read again, a second later: nothing more came.
		if got := fmt.Sprint(sequences(groupMessages(t, e))); got != fmt.Sprint(truncated) {
			t.Errorf("messages per key:\n got %s\nwant %s", got, fmt.Sprint(truncated))
		}
	})
}

// groupMessages reads the product and search topics whole, by "product SKU" and "search
// SKU" in order, a repeat (the same whole source, as a consumer tells repeats) once.
func groupMessages(t *testing.T, e *env) map[string][]envelope {
	t.Helper()
	out := map[string][]envelope{}
	seen := map[string]bool{}
	topics := []string{e.topic + ".product", e.topic + ".search"}
	for _, rec := range testutil.Consume(t, e.broker, topics, 0, time.Second, testutil.ConsumeOptions{ReadCommitted: e.exactlyOnce}) {
		m := decode(t, rec)
		var k struct {
			SKU string `json:"sku_id"`
		}
		json.Unmarshal([]byte(rec.Key), &k)
		key := strings.TrimPrefix(rec.Topic, e.topic+".") + " " + k.SKU
		if id := fmt.Sprint(key, m.Source); seen[id] {
			continue
		} else {
			seen[id] = true
		}
		out[key] = append(out[key], m)
	}
	return out
}

// sequences writes each key's messages as "op:before:after" of the sum (aggregate) or
// the value (transition), "-" for no image.
func sequences(msgs map[string][]envelope) map[string]string {
	out := map[string]string{}
	for key, ms := range msgs {
		field := "sellable"
		if strings.HasPrefix(key, "search") {
			field = "value"
		}
		var parts []string
		for _, m := range ms {
			img := func(i map[string]any) string {
				if i == nil {
					return "-"
				}
				return fmt.Sprint(i[field])
			}
			parts = append(parts, m.Op+":"+img(m.Before)+":"+img(m.After))
		}
		out[key] = strings.Join(parts, " ")
	}
	return out
}

// TestChangedRuleRetractsWhatItNoLongerCovers: a reload that narrows the tables of an
// aggregate and a transition rule takes back, on their topics, the SKU only the dropped
// table had (a d, and a false), before the seed's new totals. A stop while publishing them
// (the checkpoint before) and a restart with the changed file publish them again: none
// is lost; once checkpointed, a later restart takes nothing back again. Exactly-once, a
// read_committed consumer sees them once.
func TestChangedRuleRetractsWhatItNoLongerCovers(t *testing.T) {
	inBothDeliveryModes(t, testChangedRuleRetracts)
}

func testChangedRuleRetracts(t *testing.T, e *env) {
	exactlyOnce := e.exactlyOnce
	db := e.mysql.Open(t, e.db)
	testutil.Exec(t, db, "CREATE TABLE sellable_shard (sku_id VARCHAR(8), shard INT, qty BIGINT, PRIMARY KEY (sku_id, shard))",
		"CREATE TABLE sellable_extra LIKE sellable_shard", "CREATE TABLE other (id INT PRIMARY KEY)",
		"INSERT INTO sellable_shard VALUES ('A', 0, 5)", "INSERT INTO sellable_extra VALUES ('A', 1, 2), ('B', 0, 3)")
	wide := e.rules(strings.ReplaceAll(stockRulesYAML, "DB.sellable_shard", "DB.sellable_*"))
	narrow := e.rules(stockRulesYAML)
	id := testutil.ServerID()
	stop := newStopAfter(func(m sinks.Message) bool { return strings.Contains(string(m.Value), `"op":"d"`) })
	r := e.start(wide, id, stop.wrap)
	want := map[string]string{"product A": "c:-:7", "product B": "c:-:3", "search A": "u:false:true", "search B": "u:false:true"}
	testutil.Eventually(t, 20*time.Second, "the first seed's messages", func() bool {
		return fmt.Sprint(sequences(groupMessages(t, e))) == fmt.Sprint(want)
	})

	r.p.Reload(narrow)
	testutil.Exec(t, db, "INSERT INTO other VALUES (1)") // the seed goes out with it, or before it at idle
	stop.waitReached(t, 20*time.Second, "the retraction of B")
	r.stop(t) // inside the retractions: the checkpoint is the one before

	r = e.start(narrow, id)
	want = map[string]string{"product A": "c:-:7 c:-:5", "product B": "c:-:3 d:3:-", "search A": "u:false:true u:false:true", "search B": "u:false:true u:true:false"}
	var msgs map[string][]envelope
	// What the consumers have, B's repeats left out at least once: the stopped run's
	// retractions of B may have reached the broker, at its seed's position, and this
	// run's come again, at its own.
	published := func() string {
		msgs = groupMessages(t, e)
		got := sequences(msgs)
		if !exactlyOnce {
			for _, k := range []string{"product B", "search B"} {
				got[k] = repeatsDropped(got[k])
			}
		}
		return fmt.Sprint(got)
	}
	testutil.Eventually(t, 20*time.Second, "B taken back after the restart", func() bool {
		return published() == fmt.Sprint(want)
	})
	last := func(key string) envelope { return msgs[key][len(msgs[key])-1] }
	if s := last("product B").Source; s.Table != "sellable_extra" || s.Row != 0 {
		t.Errorf("B's d names %+v; want its last change's table, row 0", s)
	}
	// Taken back where the seed is published, and ordered as its messages are: the same
	// GTID and the source server's id (not stocksync's replica id).
	var sourceID int64
	if err := db.QueryRow("SELECT @@server_id").Scan(&sourceID); err != nil {
		t.Fatal(err)
	}
	seed := msgs["product A"][1].Source
	for _, key := range []string{"product B", "search B"} {
		if s := last(key).Source; s.GTID != seed.GTID || s.GTID == "" || s.ServerID != sourceID || s.File != seed.File || s.Pos != seed.Pos {
			t.Errorf("%s taken back at gtid %q, server_id %d, %s:%d; want the seed's gtid %q and position %s:%d, server_id %d",
				key, s.GTID, s.ServerID, s.File, s.Pos, seed.GTID, seed.File, seed.Pos, sourceID)
		}
	}
	if exactlyOnce { // the stopped run's Kafka transaction was aborted: B's d is there once
		if n := e.committedOf(t, e.topic+".product", `{"sku_id":"B"}`); n != 2 {
			t.Errorf("%d messages of B on the product topic, want its c and one d", n)
		}
	}
	r.stop(t)

	e.start(narrow, id)
	testutil.Exec(t, db, "INSERT INTO sellable_shard VALUES ('D', 0, 1)")
	want["product D"], want["search D"] = "c:-:1", "u:false:true"
	testutil.Eventually(t, 20*time.Second, "D's messages, and nothing taken back again", func() bool {
		return published() == fmt.Sprint(want)
	})
}

// repeatsDropped is seq (sequences' form) with each message that repeats the one before
// it left out.
func repeatsDropped(seq string) string {
	var out []string
	for _, m := range strings.Fields(seq) {
		if len(out) == 0 || out[len(out)-1] != m {
			out = append(out, m)
		}
	}
	return strings.Join(out, " ")
}

// TestSeedAtStartIsPublishedAndSavedBeforeTheStream: a rule changed while the daemon was
// stopped is seeded at the start, and what the seed publishes (here: taking back the
// groups whose table a refused RENAME took away before the seed read them) goes out and is
// saved with the checkpoint before the stream replays. A stream that then stops at its
// first transaction, at every retry, neither leaves it unpublished nor seeds again.
func TestSeedAtStartIsPublishedAndSavedBeforeTheStream(t *testing.T) {
	e := newEnv(t)
	e.exec("CREATE TABLE stock_seed (sku_id VARCHAR(8) PRIMARY KEY, qty INT)")
	rule := func(sum string) *rules.Set {
		return e.rules(`
rules:
  - name: total
    match: {table: "DB.stock_*"}
    emit: aggregate
    group_by: [sku_id]
    sum: {` + sum + `: qty}
    topic: TOPIC
`)
	}
	id := testutil.ServerID()
	r := e.start(rule("qty"), id)
	e.exec("INSERT INTO stock_seed VALUES ('a1', 1), ('b1', 2)")
	e.consume(2, 20*time.Second)
	r.stop(t)

	e.exec("RENAME TABLE stock_seed TO seed_old") // its name left empty: the stream refuses it
	changed := rule("total_qty")
	for run := range 2 {
		waitsOn := func(o *pipeline.Options) { o.Source.RenamedAwayWait = time.Hour } // not taken as dropped while the test runs
		if err := e.run(changed, id, waitsOn).stopped(t, 30*time.Second); err == nil {
			t.Fatalf("run %d went on past the RENAME; want it stopped there", run+1)
		}
	}
	deletes := map[string]int{}
	for _, rec := range e.consume(0, 5*time.Second) {
		if decode(t, rec).Op == "d" {
			deletes[rec.Key]++
		}
	}
	if deletes[`{"sku_id":"a1"}`] != 1 || deletes[`{"sku_id":"b1"}`] != 1 || len(deletes) != 2 {
		t.Errorf("after two runs stopped at the RENAME: d messages by key %v; want a1 and b1 taken back once each (the seed published and saved at the first start, not seeded again)", deletes)
	}
}

// TestRuleOfAnotherKindRetractsTheOldKindsGroups: a reload that changes an aggregate rule
// into a transition rule of the same name, on another topic, takes back every group the
// aggregate published, on the aggregate's topic and as the aggregate would (a d with the
// last sellable), before the transition's seed; then the reverse change takes back each
// true flag on the transition's topic (a false), before the aggregate's seed. A stop while
// publishing the d's (the checkpoint before) and a restart with the changed file publish
// them again: none is lost; once checkpointed, a later restart takes nothing back again.
// Exactly-once, a read_committed consumer sees them once.
func TestRuleOfAnotherKindRetractsTheOldKindsGroups(t *testing.T) {
	inBothDeliveryModes(t, testRuleOfAnotherKindRetracts)
}

// committedOf counts the messages of key on topic that a read_committed consumer reads.
func (e *env) committedOf(t *testing.T, topic, key string) int {
	t.Helper()
	n := 0
	for _, rec := range testutil.Consume(t, e.broker, []string{topic}, 0, time.Second, testutil.ConsumeOptions{ReadCommitted: true}) {
		if rec.Key == key {
			n++
		}
	}
	return n
}

func testRuleOfAnotherKindRetracts(t *testing.T, e *env) {
	exactlyOnce := e.exactlyOnce
	db := e.mysql.Open(t, e.db)
	testutil.Exec(t, db, "CREATE TABLE sellable_shard (sku_id VARCHAR(8), shard INT, qty BIGINT, PRIMARY KEY (sku_id, shard))",
		"CREATE TABLE other (id INT PRIMARY KEY)", "INSERT INTO sellable_shard VALUES ('A', 0, 5), ('B', 0, 3)")
	const aggregate = `
rules:
  - name: stock
    match: {table: "DB.sellable_shard"}
    emit: aggregate
    group_by: [sku_id]
    sum: {sellable: qty}
    topic: TOPIC.product
`
	const transition = `
rules:
  - name: stock
    match: {table: "DB.sellable_shard"}
    emit: transition
    group_by: [sku_id]
    sum: {sellable: qty}
    value: "sellable > 0"
    topic: TOPIC.search
`
	id := testutil.ServerID()
	stop := newStopAfter(func(m sinks.Message) bool { return strings.Contains(string(m.Value), `"op":"d"`) })
	r := e.start(e.rules(aggregate), id, stop.wrap)
	want := map[string]string{"product A": "c:-:5", "product B": "c:-:3"}
	testutil.Eventually(t, 20*time.Second, "the aggregate's seed", func() bool {
		return fmt.Sprint(sequences(groupMessages(t, e))) == fmt.Sprint(want)
	})

	r.p.Reload(e.rules(transition))
	testutil.Exec(t, db, "UPDATE sellable_shard SET qty = 0 WHERE sku_id = 'B'") // a transaction to commit the seed with
	stop.waitReached(t, 20*time.Second, "the aggregate's d of A")
	r.stop(t) // inside the retractions: the checkpoint is the one before

	r = e.start(e.rules(transition), id)
	want = map[string]string{"product A": "c:-:5 d:5:-", "product B": "c:-:3 d:3:-", "search A": "u:false:true"}
	var msgs map[string][]envelope
	// At least once, the stopped run's d of A may have reached the broker, and this run's
	// comes again: repeats left out.
	published := func() string {
		msgs = groupMessages(t, e)
		got := sequences(msgs)
		if !exactlyOnce {
			for k, seq := range got {
				got[k] = repeatsDropped(seq)
			}
		}
		return fmt.Sprint(got)
	}
	testutil.Eventually(t, 20*time.Second, "the aggregate's groups taken back after the restart", func() bool {
		return published() == fmt.Sprint(want)
	})
	seed := msgs["search A"][0].Source
	for _, key := range []string{"product A", "product B"} {
		if s := msgs[key][len(msgs[key])-1].Source; s.GTID != seed.GTID || s.GTID == "" || s.File != seed.File || s.Pos != seed.Pos {
			t.Errorf("%s taken back at gtid %q, %s:%d; want the seed's gtid %q and position %s:%d",
				key, s.GTID, s.File, s.Pos, seed.GTID, seed.File, seed.Pos)
		}
	}
	if exactlyOnce { // the stopped run's Kafka transaction was aborted: A's d is there once
		if n := e.committedOf(t, e.topic+".product", `{"sku_id":"A"}`); n != 2 {
			t.Errorf("%d messages of A on the product topic, want its c and one d", n)
		}
	}
	r.stop(t)

	// Back to the aggregate, at a restart: A's true flag is taken back, on the search
	// topic; B's (false, the empty value) has nothing to take back. (A write while it is
	// stopped places the seed after the last one: the test's reader tells messages apart
	// by their source.)
	testutil.Exec(t, db, "INSERT INTO other VALUES (2)")
	r = e.start(e.rules(aggregate), id)
	testutil.Exec(t, db, "INSERT INTO sellable_shard VALUES ('D', 0, 1)")
	want = map[string]string{"product A": "c:-:5 d:5:- c:-:5", "product B": "c:-:3 d:3:- c:-:0", "product D": "c:-:1",
		"search A": "u:false:true u:true:false"}
	testutil.Eventually(t, 20*time.Second, "the transition's flag taken back, then the aggregate's seed", func() bool {
		return published() == fmt.Sprint(want)
	})
	r.stop(t)

	e.start(e.rules(aggregate), id)
	testutil.Exec(t, db, "INSERT INTO sellable_shard VALUES ('E', 0, 2)")
	want["product E"] = "c:-:2"
	testutil.Eventually(t, 20*time.Second, "E's message, and nothing taken back again", func() bool {
		return published() == fmt.Sprint(want)
	})
}

// TestTakenBackGroupIsNoRepeatOfTheSeedOfItsKey: a rule changed from aggregate to
// transition on the same topic takes its key back (a d) and seeds it again (a u) in one
// commit, as snapshot reads at the same place of the same table and row. topics.md
// (Repeats) tells consumers to drop repeats by the whole source with topic, key and the
// stocksync-rule header: the two must differ there (the one taken back has ts_ms 0), or a
// consumer drops the seed and holds the key as gone.
func TestTakenBackGroupIsNoRepeatOfTheSeedOfItsKey(t *testing.T) {
	e := newEnv(t)
	e.exec("CREATE TABLE stock (sku_id VARCHAR(8), shard INT, qty INT, PRIMARY KEY (sku_id, shard))")
	r := e.start(e.rules(`
rules:
  - name: avail
    match: {table: "DB.stock"}
    emit: aggregate
    group_by: [sku_id]
    sum: {sellable: qty}
    topic: TOPIC
`), testutil.ServerID())
	e.exec("INSERT INTO stock VALUES ('A1', 0, 5)")
	e.consume(1, 20*time.Second)
	r.p.Reload(e.rules(`
rules:
  - name: avail
    match: {table: "DB.stock"}
    emit: transition
    group_by: [sku_id]
    sum: {sellable: qty}
    value: "sellable > 0"
    topic: TOPIC
`))
	e.exec("CREATE TABLE other (id INT PRIMARY KEY)", "INSERT INTO other VALUES (1)")
	got := e.consume(3, 20*time.Second)
	seen := map[string]int{}
	ops := ""
	for i, m := range got {
		var v struct {
			Op     string          `json:"op"`
			Source json.RawMessage `json:"source"`
		}
		if err := json.Unmarshal([]byte(m.Value), &v); err != nil {
			t.Fatal(err)
		}
		ops += v.Op
		id := strings.Join([]string{m.Topic, m.Key, m.Headers["stocksync-rule"], string(v.Source)}, "|")
		if j, ok := seen[id]; ok {
			t.Errorf("messages %d (%s) and %d (%s) share topic, key, rule and source: a consumer dropping repeats drops the second", j, got[j].Value, i, m.Value)
		}
		seen[id] = i
	}
	if ops != "cdu" {
		t.Errorf("ops %q; want the aggregate's c, its d taken back, the transition's u", ops)
	}
}
