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

// totalOverTwoTables is an aggregate rule summing qty over two tables of one SKU.
const totalOverTwoTables = `
rules:
  - name: total
    match: {table: ["inventory.stock_a", "inventory.stock_b"]}
    emit: aggregate
    group_by: [sku_id]
    sum: {total: qty}
    topic: product.total
`

// stockOf is inventory.<name> (sku_id, qty) with qty of kind k.
func stockOf(name string, k canal.ColumnKind) *canal.Table {
	return &canal.Table{Schema: "inventory", Name: name, Columns: []canal.Column{{Name: "sku_id", Kind: canal.KindString}, {Name: "qty", Kind: k}}, PrimaryKey: []int{0}}
}

// TestSumColumnOfOneClassInEveryTable: one rule's summed column must be of one class in
// every table it matches, since one group may hold rows of both and its sum's JSON type
// is its column's: the live check (validate --live, the start, each reload) refuses an
// INT beside a DECIMAL, naming the rule, the sum, both tables and their types, at the sum;
// kinds of one class (INT and BIGINT UNSIGNED) pass.
func TestSumColumnOfOneClassInEveryTable(t *testing.T) {
	set := mustParse(t, totalOverTwoTables)
	info := func(tables ...*canal.Table) []TableInfo {
		var out []TableInfo
		for _, tb := range tables {
			out = append(out, TableInfo{Schema: tb.Schema, Name: tb.Name, Columns: tb.Columns})
		}
		return out
	}
	errs := set.CheckColumns(info(stockOf("stock_a", canal.KindInt), stockOf("stock_b", canal.KindDecimal)))
	want := "rules.yaml:" + placeOf(t, totalOverTwoTables, "total: qty", "qty") + `: rule "total": sum.total: column qty is decimal (class decimal) in inventory.stock_b but int (class integer) in inventory.stock_a: ` +
		"a sum's JSON type is its column's, so the column must be of one class (integer, decimal or float) in every table the rule reads; narrow match.table, or alter the column to one class"
	if len(errs) != 1 || errs[0].Error() != want {
		t.Errorf("INT beside DECIMAL: got %v\nwant %s", errs, want)
	}
	if errs := set.CheckTables(info(stockOf("stock_a", canal.KindInt), stockOf("stock_b", canal.KindFloat))); len(errs) != 1 || !strings.Contains(errs[0].Error(), "float (class float) in inventory.stock_b") {
		t.Errorf("INT beside DOUBLE: got %v", errs)
	}
	if errs := set.CheckColumns(info(stockOf("stock_a", canal.KindInt), stockOf("stock_b", canal.KindUint))); len(errs) != 0 {
		t.Errorf("INT beside BIGINT UNSIGNED, one class: %v", errs)
	}
}

// TestTableOfAnotherSumClassSeedsTheRuleAgain: a row of a table the live check did not
// see (created while the daemon runs, under the rule's glob, or altered since) whose
// summed column is of another class than in a table the rule's state met is not folded:
// the rule is seeded again from its tables as they are. Tables that still disagree fail
// the seed, the error naming the rule, the sum and both tables; tables that agree by then
// (the row was written before an ALTER that made them agree, and is read again after a
// restart) seed the rule, which goes on.
func TestTableOfAnotherSumClassSeedsTheRuleAgain(t *testing.T) {
	a, b := stockOf("stock_a", canal.KindInt), stockOf("stock_b", canal.KindDecimal)
	bAltered := stockOf("stock_b", canal.KindInt)
	seedAt := canal.Position{File: "binlog.000003", Pos: 10100}
	for _, tc := range []struct {
		name    string
		live    *canal.Table // stock_b as the seed reads it
		liveQty any
		err     string
	}{
		{"still decimal", b, "2.50", `rule "total": sum.total: column inventory.stock_b.qty is decimal but inventory.stock_a.qty is integer: a sum's JSON type is its column's`},
		{"altered to int", bAltered, int64(2), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEngine(mustParse(t, totalOverTwoTables))
			e.MarkSeeded(e.Unseeded(), canal.Position{})
			txn(t, e, &canal.RowChange{Op: canal.OpCreate, Table: a, After: []any{"A1", int64(5)}})
			var out recorder
			if err := e.Row(t.Context(), &canal.RowChange{Op: canal.OpCreate, Table: b, After: []any{"A1", "2.50"}, Source: src(0)}, &out); err != nil {
				t.Fatal(err)
			}
			if !e.SeedsWanted() || !slices.Equal(e.Unseeded(), []string{"total"}) {
				t.Fatalf("after a row of stock_b (DECIMAL) beside stock_a (INT): seeds wanted %v, unseeded %v; want the rule to seed", e.SeedsWanted(), e.Unseeded())
			}
			names := e.Unseeded()
			var err error
			for i, c := range []*canal.RowChange{
				{Op: canal.OpRead, Table: a, After: []any{"A1", int64(5)}},
				{Op: canal.OpRead, Table: tc.live, After: []any{"A1", tc.liveQty}},
			} {
				c.Source = canal.Source{File: seedAt.File, Pos: seedAt.Pos, Snapshot: true, Row: i}
				if err = e.Seed(c, names); err != nil {
					break
				}
			}
			if tc.err != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.err) {
					t.Fatalf("the seed over tables that disagree: %v; want %s…", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			e.MarkSeeded(names, seedAt)
			if _, err := e.Commit(t.Context(), canal.Position{File: "binlog.000003", Pos: 9999}, &out); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range out.msgs {
				got = append(got, afterOf(string(m.Value)))
			}
			if want := `{"op":"u","before":{"sku_id":"A1","total":5},"after":{"sku_id":"A1","total":7}}`; len(got) != 1 || got[0] != want {
				t.Errorf("the seed's messages %v; want %s", got, want)
			}
			// The decimal row, read again before the seed's position: the seed holds it.
			if err := e.Row(t.Context(), &canal.RowChange{Op: canal.OpCreate, Table: b, After: []any{"A1", "2.50"}, Source: src(0)}, &out); err != nil || e.SeedsWanted() {
				t.Errorf("the row before the seed again: %v, seeds wanted %v", err, e.SeedsWanted())
			}
		})
	}
}
