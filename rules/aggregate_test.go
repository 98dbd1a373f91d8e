package rules

import (
	"strings"
	"testing"

	"github.com/stocksync/stocksync/canal"
)

const issueRules = `
rules:
  - name: product-stock
    match: {table: "inventory.sellable_shard"}
    emit: aggregate
    group_by: [sku_id]
    sum: {sellable: qty}
    topic: product.stock
  - name: search-in-stock
    match: {table: "inventory.sellable_shard"}
    emit: transition
    group_by: [sku_id]
    sum: {sellable: qty}
    value: "sellable > 0"
    topic: search.availability
`

var shardTable = &canal.Table{
	Schema:     "inventory",
	Name:       "sellable_shard",
	Columns:    []canal.Column{{Name: "sku_id", Kind: canal.KindString}, {Name: "shard", Kind: canal.KindInt}, {Name: "qty", Kind: canal.KindInt}},
	PrimaryKey: []int{0, 1},
}

// txn feeds changes as one transaction and returns the messages and state entries.
func txn(t *testing.T, e *Engine, changes ...*canal.RowChange) ([]string, []StateEntry) {
	t.Helper()
	var out recorder
	for i, c := range changes {
		c.Source = src(i)
		if err := e.Row(t.Context(), c, &out); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := e.Commit(t.Context(), canal.Position{File: "binlog.000003", Pos: 9999}, &out)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range out.msgs {
		got = append(got, m.Topic+" "+string(m.Key)+" "+afterOf(string(m.Value)))
	}
	return got, entries
}

// afterOf cuts a debezium value down to op, before and after.
func afterOf(v string) string {
	if i := strings.Index(v, `,"source"`); i > 0 {
		return v[:i] + "}"
	}
	return v
}

func shardRow(sku string, shard, qty int64) []any { return []any{sku, shard, qty} }

func ins(sku string, shard, qty int64) *canal.RowChange {
	return &canal.RowChange{Op: canal.OpCreate, Table: shardTable, After: shardRow(sku, shard, qty)}
}

func upd(sku string, shard, from, to int64) *canal.RowChange {
	return &canal.RowChange{Op: canal.OpUpdate, Table: shardTable, Before: shardRow(sku, shard, from), After: shardRow(sku, shard, to)}
}

func del(sku string, shard, qty int64) *canal.RowChange {
	return &canal.RowChange{Op: canal.OpDelete, Table: shardTable, Before: shardRow(sku, shard, qty)}
}

func TestAggregateAndTransition(t *testing.T) {
	e := newTestEngine(mustParse(t, issueRules))
	steps := []struct {
		changes []*canal.RowChange
		want    []string
	}{
		{
			[]*canal.RowChange{ins("A1", 0, 2), ins("A1", 1, 3), ins("B2", 0, 0)},
			[]string{
				`product.stock {"sku_id":"A1"} {"op":"c","before":null,"after":{"sku_id":"A1","sellable":5}}`,
				`product.stock {"sku_id":"B2"} {"op":"c","before":null,"after":{"sku_id":"B2","sellable":0}}`,
				`search.availability {"sku_id":"A1"} {"op":"u","before":{"sku_id":"A1","sellable":0,"value":false},"after":{"sku_id":"A1","sellable":5,"value":true}}`,
			},
		},
		{ // a deduction that does not sell out: aggregate only
			[]*canal.RowChange{upd("A1", 0, 2, 0)},
			[]string{`product.stock {"sku_id":"A1"} {"op":"u","before":{"sku_id":"A1","sellable":5},"after":{"sku_id":"A1","sellable":3}}`},
		},
		{ // sell out
			[]*canal.RowChange{upd("A1", 1, 3, 1), upd("A1", 1, 1, 0)},
			[]string{
				`product.stock {"sku_id":"A1"} {"op":"u","before":{"sku_id":"A1","sellable":3},"after":{"sku_id":"A1","sellable":0}}`,
				`search.availability {"sku_id":"A1"} {"op":"u","before":{"sku_id":"A1","sellable":3,"value":true},"after":{"sku_id":"A1","sellable":0,"value":false}}`,
			},
		},
		{ // back in stock, and B2's last shard deleted
			[]*canal.RowChange{upd("A1", 1, 0, 7), del("B2", 0, 0)},
			[]string{
				`product.stock {"sku_id":"A1"} {"op":"u","before":{"sku_id":"A1","sellable":0},"after":{"sku_id":"A1","sellable":7}}`,
				`product.stock {"sku_id":"B2"} {"op":"d","before":{"sku_id":"B2","sellable":0},"after":null}`,
				`search.availability {"sku_id":"A1"} {"op":"u","before":{"sku_id":"A1","sellable":0,"value":false},"after":{"sku_id":"A1","sellable":7,"value":true}}`,
			},
		},
	}
	var lastEntries []StateEntry
	for i, s := range steps {
		got, entries := txn(t, e, s.changes...)
		if strings.Join(got, "\n") != strings.Join(s.want, "\n") {
			t.Errorf("step %d:\n got %s\nwant %s", i, strings.Join(got, "\n     "), strings.Join(s.want, "\n     "))
		}
		lastEntries = entries
	}
	wantEntries := []StateEntry{
		{Rule: "product-stock", Key: `{"sku_id":"A1"}`, Value: []byte(`{"count":2,"sums":{"sellable":7},"db":"inventory","table":"sellable_shard"}`)},
		{Rule: "product-stock", Key: `{"sku_id":"B2"}`},
		{Rule: "search-in-stock", Key: `{"sku_id":"A1"}`, Value: []byte(`{"count":2,"sums":{"sellable":7},"value":true,"db":"inventory","table":"sellable_shard"}`)},
		{Rule: "search-in-stock", Key: `{"sku_id":"B2"}`},
	}
	if len(lastEntries) != len(wantEntries) {
		t.Fatalf("entries %+v", lastEntries)
	}
	for i, w := range wantEntries {
		g := lastEntries[i]
		if g.Rule != w.Rule || g.Key != w.Key || string(g.Value) != string(w.Value) {
			t.Errorf("entry %d: got %s %s %s, want %s %s %s", i, g.Rule, g.Key, g.Value, w.Rule, w.Key, w.Value)
		}
	}
}

// TestRestoreContinues checks that an engine restored from the saved entries emits what
// the engine that saved them would have.
func TestRestoreContinues(t *testing.T) {
	set := mustParse(t, issueRules)
	first := newTestEngine(set)
	first.MarkSeeded(first.Unseeded(), canal.Position{}) // its tables started empty
	var saved []StateEntry
	for _, c := range []*canal.RowChange{ins("A1", 0, 2), ins("A1", 1, 3)} {
		_, ents := txn(t, first, c)
		saved = mergeEntries(saved, ents)
	}
	second := newTestEngine(set)
	if err := second.Restore(saved); err != nil {
		t.Fatal(err)
	}
	next := []*canal.RowChange{upd("A1", 0, 2, 0), upd("A1", 1, 3, 0)}
	want, _ := txn(t, first, next...)
	got, _ := txn(t, second, next...)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("restored engine:\n got %v\nwant %v", got, want)
	}
	if len(got) != 2 || !strings.Contains(got[1], `"value":false`) {
		t.Errorf("expected the sell-out transition, got %v", got)
	}
}

func mergeEntries(all, more []StateEntry) []StateEntry {
	for _, m := range more {
		replaced := false
		for i := range all {
			if all[i].Rule == m.Rule && all[i].Key == m.Key {
				all[i] = m
				replaced = true
			}
		}
		if !replaced {
			all = append(all, m)
		}
	}
	return all
}

func TestAggregateDecimalAndMove(t *testing.T) {
	table := &canal.Table{Schema: "inventory", Name: "price_shard", Columns: []canal.Column{
		{Name: "sku_id", Kind: canal.KindInt}, {Name: "amount", Kind: canal.KindDecimal},
	}}
	e := newTestEngine(mustParse(t, `
rules:
  - name: amounts
    match: {table: "inventory.price_shard"}
    emit: aggregate
    group_by: [sku_id]
    sum: {total: amount}
    topic: amounts
`))
	got, _ := txn(t, e,
		&canal.RowChange{Op: canal.OpCreate, Table: table, After: []any{int64(1), "0.10"}},
		&canal.RowChange{Op: canal.OpCreate, Table: table, After: []any{int64(1), "0.2"}},
		&canal.RowChange{Op: canal.OpCreate, Table: table, After: []any{int64(2), "99999999999999999999.5"}},
	)
	want := []string{
		`amounts {"sku_id":1} {"op":"c","before":null,"after":{"sku_id":1,"total":"0.30"}}`,
		`amounts {"sku_id":2} {"op":"c","before":null,"after":{"sku_id":2,"total":"99999999999999999999.5"}}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got %v", got)
	}
	// an update moving a row from group 2 to group 1 touches both groups
	got, _ = txn(t, e, &canal.RowChange{Op: canal.OpUpdate, Table: table, Before: []any{int64(2), "99999999999999999999.5"}, After: []any{int64(1), "1"}})
	want = []string{
		`amounts {"sku_id":2} {"op":"d","before":{"sku_id":2,"total":"99999999999999999999.5"},"after":null}`,
		`amounts {"sku_id":1} {"op":"u","before":{"sku_id":1,"total":"0.30"},"after":{"sku_id":1,"total":"1.30"}}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got %v", got)
	}
}
