package pipeline_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

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
	if all := testutil.Consume(t, e.broker, []string{e.topic + ".rows", search, product}, 0, 5*time.Second); len(all) != 14+6 {
		t.Errorf("%d messages in all, want 20: the refused resync published something", len(all))
		for _, rec := range all {
			t.Log(rec.Topic, rec.Key, rec.Value)
		}
	}
}
