package pipeline_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stocksync/stocksync/internal/testutil"
	"github.com/stocksync/stocksync/pipeline"
	"github.com/stocksync/stocksync/rules"
	"github.com/stocksync/stocksync/sinks"
)

// TestResyncRepublishesRestoredState restarts the pipeline, so that its groups come from
// the saved state and no change touches them, then asks for a resync: every SKU's total
// and flag goes out as a read, a sold-out SKU's false flag included, and the broker has
// them when Resync returns. Wrong names publish nothing.
func TestResyncRepublishesRestoredState(t *testing.T) {
	e := newEnv(t)
	db := e.mysql.Open(t, e.db)
	testutil.Exec(t, db, "CREATE TABLE sellable_shard (sku_id VARCHAR(8), shard INT, qty BIGINT, PRIMARY KEY (sku_id, shard))")
	set := e.rules(stockRulesYAML + `
  - name: shard-rows
    match: {table: "DB.sellable_shard"}
    topic: TOPIC.rows
`)
	id := testutil.ServerID()
	r := e.start(set, id)
	testutil.Exec(t, db,
		"INSERT INTO sellable_shard VALUES ('A', 0, 5), ('A', 1, 7), ('B', 0, 2)",
		"UPDATE sellable_shard SET qty = 0 WHERE sku_id = 'B'",
		"INSERT INTO sellable_shard VALUES ('C', 0, 1)",
		"DELETE FROM sellable_shard WHERE sku_id = 'C'")
	search, product := e.topic+".search", e.topic+".product"
	// product: A c, B c, B u, C c, C d; search: A, B and C true, B and C false.
	testutil.Consume(t, e.broker, []string{search, product}, 10, 20*time.Second)
	r.stop(t)

	r = e.start(set, id)
	ctx := t.Context()
	if _, err := r.p.Resync(ctx, rules.ResyncRequest{Rules: []string{"shard-rows", "nope"}}); !errors.Is(err, pipeline.ErrResyncRules) {
		t.Fatalf("a resync of a row rule and an unknown rule: %v", err)
	}
	res, err := r.p.Resync(ctx, rules.ResyncRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rules) != 2 || res.Rules[0].Messages != 2 || res.Rules[1].Messages != 2 || res.Position == "" {
		t.Fatalf("resync result %+v", res)
	}
	// Resync returned after the broker acknowledged: the reads are there now.
	after := testutil.Consume(t, e.broker, []string{search, product}, 10+4, 5*time.Second)
	got := map[string]string{}
	for _, rec := range after {
		var m struct {
			Op     string         `json:"op"`
			After  map[string]any `json:"after"`
			Source struct {
				Snapshot bool   `json:"snapshot"`
				Table    string `json:"table"`
			} `json:"source"`
		}
		if err := json.Unmarshal([]byte(rec.Value), &m); err != nil {
			t.Fatal(err)
		}
		if m.Op != "r" {
			continue
		}
		if !m.Source.Snapshot || m.Source.Table != "sellable_shard" {
			t.Errorf("%s %s: not a snapshot read of sellable_shard: %s", rec.Topic, rec.Key, rec.Value)
		}
		v, _ := json.Marshal(m.After)
		got[rec.Topic+" "+rec.Key] = string(v)
	}
	want := map[string]string{
		product + ` {"sku_id":"A"}`: `{"sellable":12,"sku_id":"A"}`,
		product + ` {"sku_id":"B"}`: `{"sellable":0,"sku_id":"B"}`,
		search + ` {"sku_id":"A"}`:  `{"sellable":12,"sku_id":"A","value":true}`,
		search + ` {"sku_id":"B"}`:  `{"sellable":0,"sku_id":"B","value":false}`,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %s, want %s", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("resync messages %v, want %v", got, want)
	}
	// The row rule's messages of the first run: 3 inserts, 1 update, 1 insert, 1 delete.
	rows := e.topic + ".rows"
	if all := testutil.Consume(t, e.broker, []string{rows, search, product}, 0, 5*time.Second); len(all) != 14+6 {
		t.Errorf("%d messages in all, want 20: the refused resync published something", len(all))
		for _, rec := range all {
			t.Log(rec.Topic, rec.Key, rec.Value)
		}
	}

	// A row rule's resync re-reads its table; a change committed meanwhile is not lost,
	// and none older than the re-read follows it.
	updated := make(chan error, 1)
	go func() {
		_, err := db.Exec("UPDATE sellable_shard SET qty = 6 WHERE sku_id = 'A' AND shard = 0")
		updated <- err
	}()
	res, err = r.p.Resync(ctx, rules.ResyncRequest{Rules: []string{"shard-rows"}})
	if err != nil || res.Reread == nil || res.Reread.Chunks != 1 || res.Reread.From == "" || len(res.Rules) != 1 || res.Rules[0].Messages != 3 {
		t.Fatalf("re-reading shard-rows: %+v, %v", res, err)
	}
	if err := <-updated; err != nil {
		t.Fatal(err)
	}
	testutil.Exec(t, db, "UPDATE sellable_shard SET qty = 9 WHERE sku_id = 'B'")
	history := map[string]string{}
	testutil.Eventually(t, 20*time.Second, "the re-read rows, then the change after them", func() bool {
		clear(history)
		for _, rec := range testutil.Consume(t, e.broker, []string{rows}, 0, 3*time.Second) {
			m := decode(t, rec)
			history[rec.Key] += fmt.Sprintf("%s%v;", m.Op, m.After["qty"])
		}
		return strings.HasSuffix(history[`{"sku_id":"B","shard":0}`], "u9;")
	})
	// A's shard 0: the update came before the chunk's position (u6 then r6) or after it
	// (r5 then u6); never the update after a re-read that already holds it.
	switch a0 := history[`{"sku_id":"A","shard":0}`]; a0 {
	case "c5;u6;r6;", "c5;r5;u6;":
	default:
		t.Errorf("A shard 0: %s", a0)
	}
	if history[`{"sku_id":"A","shard":1}`] != "c7;r7;" || history[`{"sku_id":"B","shard":0}`] != "c2;u0;r0;u9;" || history[`{"sku_id":"C","shard":0}`] != "c1;d<nil>;" {
		t.Errorf("rows after the re-read: %v", history)
	}

	// After a binlog rotation on a quiet source, the stream stands at the end of the old
	// file and a chunk's snapshot names the new one: the same point, so the re-read ends.
	testutil.Exec(t, db, "FLUSH BINARY LOGS")
	quiet, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	res, err = r.p.Resync(quiet, rules.ResyncRequest{Rules: []string{"shard-rows"}})
	if err != nil || res.Reread == nil || res.Reread.Chunks != 1 || res.Rules[0].Messages != 3 {
		t.Fatalf("re-reading shard-rows after a rotation: %+v, %v", res, err)
	}
}

// TestRereadInChunksWhileWriting re-reads a table one row per chunk while a writer
// updates, inserts and deletes all over it. Per key, what the topic holds must be a
// history a consumer can apply: no version older than one already published, whether
// streamed or re-read, and each key ends as the table is. (A chunk published before the
// stream reached its position could publish a row older than a streamed change.)
func TestRereadInChunksWhileWriting(t *testing.T) {
	e := newEnv(t)
	db := e.mysql.Open(t, e.db)
	testutil.Exec(t, db, "CREATE TABLE item (id INT PRIMARY KEY, version INT NOT NULL)")
	var values []string
	for i := 1; i <= 40; i++ {
		values = append(values, fmt.Sprintf("(%d, 1)", i))
	}
	testutil.Exec(t, db, "INSERT INTO item VALUES "+strings.Join(values, ", "))
	set := e.rules(`
rules:
  - name: item-rows
    match: {table: "DB.item"}
    topic: TOPIC.items
`)
	r := e.start(set, testutil.ServerID(), func(o *pipeline.Options) { o.SnapshotChunkSize = 1 })
	testutil.Exec(t, db, "UPDATE item SET version = 2 WHERE id = 1")
	items := e.topic + ".items"
	testutil.Consume(t, e.broker, []string{items}, 1, 20*time.Second)

	stop := make(chan struct{})
	wrote := make(chan error, 1)
	go func() {
		var err error
		for n := 0; err == nil; n++ {
			select {
			case <-time.After(time.Duration(n/1000) * time.Millisecond): // fewer writes after the first thousand
			case <-stop:
				wrote <- nil
				return
			default:
			}
			id := n*7%45 + 1 // ids 41 to 45 come and go
			switch {
			case id > 40 && n%2 == 0:
				_, err = db.Exec("INSERT INTO item VALUES (?, 100) ON DUPLICATE KEY UPDATE version = version + 1", id)
			case id > 40:
				_, err = db.Exec("DELETE FROM item WHERE id = ?", id)
			default:
				_, err = db.Exec("UPDATE item SET version = version + 1 WHERE id = ?", id)
			}
		}
		wrote <- err
	}()
	res, err := r.p.Resync(t.Context(), rules.ResyncRequest{Rules: []string{"item-rows"}})
	close(stop)
	if werr := <-wrote; werr != nil {
		t.Fatal(werr)
	}
	if err != nil || res.Reread == nil || res.Reread.Chunks < 40 || res.Rules[0].Messages != res.Reread.Chunks {
		t.Fatalf("re-reading item-rows: %+v, %v; want a chunk per row", res, err)
	}
	t.Logf("re-read: %+v", *res.Reread)
	testutil.Exec(t, db, "UPDATE item SET version = version + 1000 WHERE id = 1")

	final := map[string]int64{}
	rows, err := db.Query("SELECT id, version FROM item")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, v int64
		rows.Scan(&id, &v)
		final[fmt.Sprintf(`{"id":%d}`, id)] = v
	}
	rows.Close()
	last := map[string]float64{}
	var reads int
	testutil.Eventually(t, 60*time.Second, "the change after the re-read", func() bool {
		clear(last)
		reads = 0
		for _, rec := range testutil.Consume(t, e.broker, []string{items}, 0, 20*time.Second) {
			m := decode(t, rec)
			if m.Op == "d" {
				last[rec.Key] = -1
				continue
			}
			v, err := m.After["version"].(json.Number).Float64()
			if err != nil {
				t.Fatalf("%s: version %v", rec.Value, m.After["version"])
			}
			if m.Op == "r" {
				reads++
			}
			if prev, ok := last[rec.Key]; ok && prev > v {
				t.Fatalf("key %s: %s of version %v after version %v", rec.Key, m.Op, v, prev)
			}
			last[rec.Key] = v
		}
		return last[`{"id":1}`] == float64(final[`{"id":1}`])
	})
	if reads != res.Reread.Chunks {
		t.Errorf("%d reads on the topic, the re-read published %d", reads, res.Reread.Chunks)
	}
	for k, v := range final {
		if last[k] != float64(v) {
			t.Errorf("key %s ends at version %v on the topic, %d in the table", k, last[k], v)
		}
	}
	for k, v := range last {
		if _, ok := final[k]; !ok && v != -1 {
			t.Errorf("key %s ends at version %v on the topic, and is not in the table", k, v)
		}
	}
}

// TestReloadDuringAReread reloads the rules while a re-read, one row per chunk, follows a
// busy stream. A reload that keeps what the re-read's rule reads lets it go on; one that
// changes it ends it, the resync answers why, and the stream goes on.
func TestReloadDuringAReread(t *testing.T) {
	e := newEnv(t)
	db := e.mysql.Open(t, e.db)
	testutil.Exec(t, db, "CREATE TABLE item (id INT PRIMARY KEY)", "CREATE TABLE busy (id INT PRIMARY KEY, n INT)",
		"INSERT INTO item SELECT seq FROM seq_1_to_5000", "INSERT INTO busy VALUES (1, 0)")
	const itemRule = `
rules:
  - name: item-rows
    match: {table: "DB.ITEMS"}
    topic: TOPIC.items
  - name: busy-rows
    match: {table: "DB.busy"}
    topic: TOPIC.busy
`
	set := e.rules(strings.Replace(itemRule, "ITEMS", "item", 1))
	r := e.start(set, testutil.ServerID(), func(o *pipeline.Options) { o.SnapshotChunkSize = 1 })
	stop := make(chan struct{})
	wrote := make(chan error, 1)
	go func() { // moves the binlog on, so that each chunk waits for the stream
		for {
			select {
			case <-stop:
				wrote <- nil
				return
			default:
			}
			if _, err := db.Exec("UPDATE busy SET n = n + 1"); err != nil {
				wrote <- err
				return
			}
		}
	}()
	answer := make(chan error, 1)
	go func() {
		_, err := r.p.Resync(t.Context(), rules.ResyncRequest{Rules: []string{"item-rows"}})
		answer <- err
	}()
	items := e.topic + ".items"
	// The re-read has begun once its first rows are on the topic (only reads go there).
	testutil.Consume(t, e.broker, []string{items}, 1, 20*time.Second)

	// The same item-rows, and a new rule whose first message shows the reload installed.
	r.p.Reload(e.rules(strings.Replace(itemRule, "ITEMS", "item", 1) + `
  - name: busy-copy
    match: {table: "DB.busy"}
    topic: TOPIC.copy
`))
	testutil.Consume(t, e.broker, []string{e.topic + ".copy"}, 1, 20*time.Second)
	before := len(testutil.Consume(t, e.broker, []string{items}, 0, time.Second))
	testutil.Consume(t, e.broker, []string{items}, before+5, 20*time.Second) // the re-read goes on
	select {
	case err := <-answer:
		t.Fatalf("the resync answered %v after a reload that kept item-rows as it was; want it to go on", err)
	default:
	}
	if st, running := r.p.Reread(); !running || fmt.Sprint(st.Rules) != "[item-rows]" || st.Chunks < before || st.Rows != int64(st.Chunks) {
		t.Errorf("the running re-read: %+v, %v; want item-rows with at least %d one-row chunks", st, running, before)
	}

	r.p.Reload(e.rules(strings.Replace(itemRule, "ITEMS", "item*", 1)))
	err := <-answer
	close(stop)
	if werr := <-wrote; werr != nil {
		t.Fatal(werr)
	}
	if err == nil || !strings.Contains(err.Error(), "removed or changed what those rules read") {
		t.Fatalf("a reload changing item-rows' tables during the re-read: %v", err)
	}
	if st, running := r.p.Reread(); running {
		t.Errorf("a re-read still running after it ended: %+v", st)
	}
	testutil.Exec(t, db, "UPDATE busy SET n = -1")
	testutil.Eventually(t, 20*time.Second, "the stream going on after the ended re-read", func() bool {
		recs := testutil.Consume(t, e.broker, []string{e.topic + ".busy"}, 0, 5*time.Second)
		return len(recs) > 0 && strings.Contains(recs[len(recs)-1].Value, `"n":-1`)
	})
}

// TestRereadGoesOnAfterAStop stops the pipeline (as SIGTERM does) in the middle of the
// 10th chunk of a 20-chunk re-read: the resync answers that it was interrupted, and the
// next start goes on with it. At-least-once, the rows of the 9 chunks published before the
// stop are not published again; exactly-once, a read_committed consumer sees every row
// once (the part of the chunk before the stop is aborted with its Kafka transaction).
func TestRereadGoesOnAfterAStop(t *testing.T) {
	inBothDeliveryModes(t, func(t *testing.T, e *env) {
		exactlyOnce := e.exactlyOnce
		db := e.mysql.Open(t, e.db)
		testutil.Exec(t, db, "CREATE TABLE item (id INT PRIMARY KEY, v INT NOT NULL)",
			"INSERT INTO item SELECT seq, seq FROM seq_1_to_200",
			"CREATE TABLE kind (k INT PRIMARY KEY, n INT NOT NULL)", "INSERT INTO kind VALUES (1, 5)")
		set := e.rules(`
rules:
  - name: item-rows
    match: {table: "DB.item"}
    topic: TOPIC
  - name: kind-total
    match: {table: "DB.kind"}
    emit: aggregate
    group_by: [k]
    sum: {n: n}
    topic: TOPIC.totals
`)
		id := testutil.ServerID()
		chunkOf10 := func(o *pipeline.Options) { o.SnapshotChunkSize = 10 }
		reads := 0
		stop := newStopAfter(func(m sinks.Message) bool {
			if m.Topic == e.topic {
				reads++
			}
			return reads == 95
		})
		r := e.start(set, id, chunkOf10, stop.wrap)
		answer := make(chan error, 1)
		go func() {
			// An aggregate rule too: its state is sent at once, and the re-read goes on without it.
			_, err := r.p.Resync(context.Background(), rules.ResyncRequest{Rules: []string{"kind-total", "item-rows"}})
			answer <- err
		}()
		stop.waitReached(t, 20*time.Second, "the re-read's 95th row")
		r.stop(t)
		if err := <-answer; !errors.Is(err, pipeline.ErrRereadInterrupted) {
			t.Fatalf("the resync stopped in its 10th chunk answered %v; want ErrRereadInterrupted", err)
		}

		// The next pipeline goes on with it, as nobody's request: hold its first row to
		// see it running.
		hold := newStopAfter(func(m sinks.Message) bool { return m.Topic == e.topic })
		r = e.start(set, id, chunkOf10, hold.wrap)
		hold.waitReached(t, 20*time.Second, "the first row the re-read publishes after the restart")
		status, running := r.p.Reread()
		// At-least-once the clean stop saved the 9 chunks published; exactly-once their
		// Kafka transaction may have been left to abort with the chunk cut short.
		if !running || !status.Resumed || !slices.Equal(status.Rules, []string{"item-rows"}) || !exactlyOnce && status.Chunks < 9 {
			t.Errorf("the re-read after the restart shows %+v (running %v); want item-rows running, resumed (at-least-once: after the 9 chunks saved)", status, running)
		}
		hold.letGo()
		seen := map[string]int{}
		testutil.Eventually(t, 30*time.Second, "every row of the table published", func() bool {
			clear(seen)
			for _, m := range e.consume(0, 2*time.Second) {
				seen[m.Key]++
			}
			return len(seen) == 200
		})
		for i := 1; i <= 200; i++ {
			n := seen[fmt.Sprintf(`{"id":%d}`, i)]
			switch {
			case exactlyOnce && n != 1:
				t.Errorf("row %d published %d times, want once", i, n)
			case !exactlyOnce && i <= 90 && n != 1:
				t.Errorf("row %d, of a chunk published before the stop, published %d times; want once: the re-read goes on after it", i, n)
			}
		}
	})
}

// TestResyncAfterARestartWaitsForTheReplay: a run stops without its last checkpoint (its
// lease lost, as at a kill) after publishing 30 changes of one SKU, and the next run
// replays them from the checkpoint. A resync asked while the replay begins is served
// after it: on the key's partition the r comes after every repeat, with the latest sum,
// so a consumer that drops repeats by source (topics.md) ends on the latest value, and
// the SKU inserted just before the restart is in it.
func TestResyncAfterARestartWaitsForTheReplay(t *testing.T) {
	e := newEnv(t)
	db := e.mysql.Open(t, e.db)
	testutil.Exec(t, db, "CREATE TABLE sellable_shard (sku_id VARCHAR(8), shard INT, qty BIGINT, PRIMARY KEY (sku_id, shard))")
	set := e.rules(stockRulesYAML)
	id := testutil.ServerID()
	lease := &testLease{}
	lease.held.Store(true)
	savesOnlyTheSeed := func(o *pipeline.Options) { o.CheckpointInterval, o.Lease = time.Hour, lease }
	r := e.start(set, id, savesOnlyTheSeed)
	testutil.Exec(t, db, "INSERT INTO sellable_shard VALUES ('A', 0, 1)")
	for qty := 2; qty <= 30; qty++ {
		testutil.Exec(t, db, fmt.Sprintf("UPDATE sellable_shard SET qty = %d WHERE sku_id = 'A'", qty))
	}
	product := e.topic + ".product"
	testutil.Consume(t, e.broker, []string{product}, 30, 20*time.Second)
	lease.held.Store(false)
	testutil.Exec(t, db, "INSERT INTO sellable_shard VALUES ('B', 0, 1)") // ends the run unpublished
	if err := r.stopped(t, 10*time.Second); !errors.Is(err, pipeline.ErrLeaseLost) {
		t.Fatalf("the run without its lease ended with %v, want ErrLeaseLost", err)
	}

	lease.held.Store(true)
	hold := newStopAfter(func(m sinks.Message) bool { return m.Topic == product })
	r = e.start(set, id, savesOnlyTheSeed, hold.wrap)
	hold.waitReached(t, 20*time.Second, "the first change the restart replays")
	answer := make(chan pipeline.ResyncResult, 1)
	go func() {
		res, err := r.p.Resync(t.Context(), rules.ResyncRequest{Rules: []string{"product-stock"}})
		if err != nil {
			t.Errorf("resync: %v", err)
		}
		answer <- res
	}()
	testutil.Eventually(t, 10*time.Second, "the resync to be asked", r.p.ResyncWaiting)
	hold.letGo()
	var res pipeline.ResyncResult
	select {
	case res = <-answer:
	case <-time.After(20 * time.Second):
		t.Fatal("the resync was not answered within 20s")
	}
	if len(res.Rules) != 1 || res.Rules[0].Messages != 2 {
		t.Errorf("the resync sent %+v; want product-stock's 2 groups, B's too: it was inserted before the restart", res.Rules)
	}
	var ops []string
	for _, rec := range testutil.Consume(t, e.broker, []string{product}, 0, 3*time.Second) {
		if rec.Key == `{"sku_id":"A"}` {
			m := decode(t, rec)
			ops = append(ops, fmt.Sprintf("%s%v", m.Op, m.After["sellable"]))
		}
	}
	if want := 61; len(ops) != want || ops[60] != "r30" || ops[59] != "u30" {
		t.Errorf("A's messages: %v; want its 30 changes, their 30 repeats, then the resync's r30", ops)
	}
}
