package rules

import (
	"slices"
	"strings"
	"testing"

	"github.com/stocksync/stocksync/canal"
)

// TestReseedAfterDDLPublishesOnlyWhatChanged: a seed after DDL (PrepareReseed) publishes
// each group against what it held. A group the seed fills as it was publishes nothing,
// also one whose DECIMAL sum is "0" over NULLs only; a changed one a u; one no row fills a
// d, at the seed's position as the refilled ones; one whose sum moved to another class a
// c in the new type. A rule seeded after the DDL already holds it and is left alone.
func TestReseedAfterDDLPublishesOnlyWhatChanged(t *testing.T) {
	set := mustParse(t, issueRules)
	e := newTestEngine(set)
	e.MarkSeeded(e.Unseeded(), canal.Position{})
	row := func(table *canal.Table, sku string, shard int64, qty any, s canal.Source) *canal.RowChange {
		return &canal.RowChange{Op: canal.OpRead, Table: table, After: []any{sku, shard, qty}, Source: s}
	}
	var out recorder
	for i, r := range []*canal.RowChange{
		row(decimalShardTable, "same", 0, "1.50", src(0)), row(decimalShardTable, "nulls", 0, nil, src(1)),
		row(decimalShardTable, "changed", 0, "2.00", src(2)), row(decimalShardTable, "gone", 0, "3.00", src(3)),
		row(decimalShardTable, "retyped", 0, "4.00", src(4)),
	} {
		r.Op = canal.OpCreate
		if err := e.Row(t.Context(), r, &out); err != nil {
			t.Fatal(i, err)
		}
	}
	if _, err := e.Commit(t.Context(), canal.Position{File: "binlog.000003", Pos: 9999}, &out); err != nil {
		t.Fatal(err)
	}

	ddl := canal.Source{File: "binlog.000004", Pos: 100}
	if got := e.PrepareReseed([]string{"product-stock", "search-in-stock"}, ddl); !slices.Equal(got, []string{"product-stock", "search-in-stock"}) || !slices.Equal(e.Unseeded(), got) {
		t.Fatalf("PrepareReseed = %v, unseeded %v; want both rules", got, e.Unseeded())
	}
	seedAt := canal.Position{File: "binlog.000004", Pos: 500}
	read := canal.Source{File: seedAt.File, Pos: seedAt.Pos, Snapshot: true}
	for _, r := range []*canal.RowChange{
		row(decimalShardTable, "same", 0, "1.50", read), row(decimalShardTable, "nulls", 0, nil, read),
		row(decimalShardTable, "changed", 0, "2.25", read), row(shardTable, "retyped", 0, int64(4), read),
	} {
		if err := e.Seed(r, e.Unseeded()); err != nil {
			t.Fatal(err)
		}
	}
	e.MarkSeeded(e.Unseeded(), seedAt)
	out.msgs = nil
	if _, err := e.Commit(t.Context(), canal.Position{File: "binlog.000004", Pos: 200}, &out); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range out.msgs {
		if m.Topic == "product.stock" {
			got = append(got, afterOf(string(m.Value)))
			if !strings.Contains(string(m.Value), `"file":"binlog.000004","pos":500`) {
				t.Errorf("%s: want the seed's position, binlog.000004:500", m.Value)
			}
		}
	}
	want := []string{
		`{"op":"u","before":{"sku_id":"changed","sellable":"2.00"},"after":{"sku_id":"changed","sellable":"2.25"}}`,
		`{"op":"d","before":{"sku_id":"gone","sellable":"3.00"},"after":null}`,
		`{"op":"c","before":null,"after":{"sku_id":"retyped","sellable":4}}`,
	}
	slices.Sort(got)
	slices.Sort(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("the reseed's product messages:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Seeded at 500: a DDL statement before it is already in the state.
	if got := e.PrepareReseed([]string{"product-stock"}, canal.Source{File: "binlog.000004", Pos: 300}); len(got) != 0 {
		t.Errorf("PrepareReseed for DDL before the seed's position = %v; want none", got)
	}
}
