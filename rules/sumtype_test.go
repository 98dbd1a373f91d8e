package rules

import (
	"slices"
	"strings"
	"testing"

	"github.com/stocksync/stocksync/canal"
)

// decimalShardTable is shardTable after ALTER TABLE … MODIFY qty DECIMAL(10,2).
var decimalShardTable = &canal.Table{
	Schema:     "inventory",
	Name:       "sellable_shard",
	Columns:    []canal.Column{{Name: "sku_id", Kind: canal.KindString}, {Name: "shard", Kind: canal.KindInt}, {Name: "qty", Kind: canal.KindDecimal}},
	PrimaryKey: []int{0, 1},
}

// TestSummedColumnOfAnotherClassSeedsAgain: a row of a table whose summed column is now of
// another class (INT to DECIMAL) folds nothing and leaves the rules to be seeded again,
// their old groups retired: the seed publishes the group afresh, as a decimal. The
// classes are saved with the marker, so an engine restored from it does the same; a
// table of the same classes goes on.
func TestSummedColumnOfAnotherClassSeedsAgain(t *testing.T) {
	set := mustParse(t, issueRules)
	e := newTestEngine(set)
	e.MarkSeeded(e.Unseeded(), canal.Position{})
	_, saved := txn(t, e, ins("A1", 0, 2))

	restored := newTestEngine(set)
	if err := restored.Restore(saved); err != nil {
		t.Fatal(err)
	}
	for name, eng := range map[string]*Engine{"running": e, "restored": restored} {
		c := &canal.RowChange{Op: canal.OpCreate, Table: decimalShardTable, After: []any{"A1", int64(1), "1.50"}, Source: src(0)}
		var out recorder
		if err := eng.Row(t.Context(), c, &out); err != nil {
			t.Fatal(err)
		}
		if !eng.SeedsWanted() || !slices.Equal(eng.Unseeded(), []string{"product-stock", "search-in-stock"}) {
			t.Fatalf("%s: after a row with qty DECIMAL: seeds wanted %v, unseeded %v; want both rules to seed", name, eng.SeedsWanted(), eng.Unseeded())
		}
		names := eng.Unseeded()
		seedAt := canal.Position{File: "binlog.000003", Pos: 20000}
		for i, row := range [][]any{{"A1", int64(0), "2.00"}, {"A1", int64(1), "1.50"}} {
			read := &canal.RowChange{Op: canal.OpRead, Table: decimalShardTable, After: row, Source: canal.Source{File: seedAt.File, Pos: seedAt.Pos, Snapshot: true, Row: i}}
			if err := eng.Seed(read, names); err != nil {
				t.Fatal(err)
			}
		}
		eng.MarkSeeded(names, seedAt)
		if eng.SeedsWanted() {
			t.Errorf("%s: seeds still wanted after MarkSeeded", name)
		}
		entries, err := eng.Commit(t.Context(), canal.Position{File: "binlog.000003", Pos: 9999}, &out)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, m := range out.msgs {
			got = append(got, m.Topic+" "+afterOf(string(m.Value)))
		}
		want := []string{`product.stock {"op":"c","before":null,"after":{"sku_id":"A1","sellable":"3.50"}}`}
		if len(got) == 0 || got[0] != want[0] {
			t.Errorf("%s: the seed's messages %v; want first %v", name, got, want)
		}
		var marker string
		for _, ent := range entries {
			if ent.Rule == "product-stock" && ent.Key == seedKey {
				marker = string(ent.Value)
			}
		}
		if _, _, types := readSeedMarker([]byte(marker)); types["inventory.sellable_shard"] != "decimal" {
			t.Errorf("%s: the marker saved %q; want the class decimal for inventory.sellable_shard", name, marker)
		}

		// The same classes: folded, no seed.
		more := &canal.RowChange{Op: canal.OpCreate, Table: decimalShardTable, After: []any{"A1", int64(2), "0.25"}, Source: canal.Source{File: "binlog.000003", Pos: 30000}}
		out.msgs = nil
		if err := eng.Row(t.Context(), more, &out); err != nil {
			t.Fatal(err)
		}
		if eng.SeedsWanted() {
			t.Errorf("%s: a row of the same classes wants a seed", name)
		}
		if _, err := eng.Commit(t.Context(), canal.Position{File: "binlog.000003", Pos: 30100}, &out); err != nil {
			t.Fatal(err)
		}
		if len(out.msgs) == 0 || !strings.Contains(string(out.msgs[0].Value), `"before":{"sku_id":"A1","sellable":"3.50"},"after":{"sku_id":"A1","sellable":"3.75"}`) {
			t.Errorf("%s: after the seed, %d messages; want A1 from \"3.50\" to \"3.75\"", name, len(out.msgs))
		}
	}
}
