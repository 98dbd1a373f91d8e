package pipeline_test

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stocksync/stocksync/canal"
	"github.com/stocksync/stocksync/internal/testutil"
	"github.com/stocksync/stocksync/pipeline"
	"github.com/stocksync/stocksync/rules"
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
	if err != nil || res.RereadAt == "" || len(res.Rules) != 1 || res.Rules[0].Messages != 3 {
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
	// A's shard 0: the update came before the stream's point (u6 then r6), between it and
	// the re-read (r6 alone: the rule skips it), or after the re-read (r5 then u6); never
	// the update's change after a re-read that already holds it.
	switch a0 := history[`{"sku_id":"A","shard":0}`]; a0 {
	case "c5;u6;r6;", "c5;r6;", "c5;r5;u6;":
	default:
		t.Errorf("A shard 0: %s", a0)
	}
	if history[`{"sku_id":"A","shard":1}`] != "c7;r7;" || history[`{"sku_id":"B","shard":0}`] != "c2;u0;r0;u9;" || history[`{"sku_id":"C","shard":0}`] != "c1;d<nil>;" {
		t.Errorf("rows after the re-read: %v", history)
	}

	// The re-read's position is saved with the checkpoint (a restart before the stream
	// passes it still skips what the re-read holds), and deleted once the stream passes it.
	res, err = r.p.Resync(ctx, rules.ResyncRequest{Rules: []string{"shard-rows"}})
	if err != nil {
		t.Fatal(err)
	}
	saved := func() (string, bool) {
		var v string
		err := db.QueryRow("SELECT v FROM checkpoint_state WHERE name = 'test' AND scope = 'shard-rows' AND k = '\\0reread'").Scan(&v)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			t.Fatal(err)
		}
		return v, err == nil
	}
	testutil.Eventually(t, 10*time.Second, "the re-read position in the checkpoint state", func() bool {
		_, ok := saved()
		return ok
	})
	v, _ := saved()
	var at canal.Position
	if err := json.Unmarshal([]byte(v), &at); err != nil || at.String() != res.RereadAt {
		t.Errorf("saved re-read position %s (%v), the re-read was at %s", v, err, res.RereadAt)
	}
	testutil.Exec(t, db, "UPDATE sellable_shard SET qty = 8 WHERE sku_id = 'B'")
	testutil.Eventually(t, 10*time.Second, "the re-read position deleted once the stream passed it", func() bool {
		_, ok := saved()
		return !ok
	})
}
