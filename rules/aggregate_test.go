package rules

import (
	"math"
	"slices"
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
		{Rule: "product-stock", Key: `{"sku_id":"A1"}`, Value: []byte(`{"count":2,"sums":{"sellable":7},"db":"inventory","table":"sellable_shard","topic":"product.stock"}`)},
		{Rule: "product-stock", Key: `{"sku_id":"B2"}`},
		{Rule: "search-in-stock", Key: `{"sku_id":"A1"}`, Value: []byte(`{"count":2,"sums":{"sellable":7},"value":true,"db":"inventory","table":"sellable_shard","topic":"search.availability"}`)},
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

// floatShardTable is shardTable with qty DOUBLE.
var floatShardTable = &canal.Table{Schema: "inventory", Name: "sellable_shard", Columns: []canal.Column{{Name: "sku_id", Kind: canal.KindString}, {Name: "shard", Kind: canal.KindInt}, {Name: "qty", Kind: canal.KindFloat}}, PrimaryKey: []int{0, 1}}

func floatUpd(shard int64, from, to float64) *canal.RowChange {
	return &canal.RowChange{Op: canal.OpUpdate, Table: floatShardTable, Before: []any{"A1", shard, from}, After: []any{"A1", shard, to}}
}

// TestFloatSumIsExact: a float column's sum is the exact sum of the group's values,
// rounded to float64 only where it is written, as SELECT SUM over those rows gives 0 for
// rows at 0: shard rows 0.1 and 0.2 both set to 0 leave the sum 0 and the transition
// false, where a float64 running sum leaves 2.8e-17 and `sellable > 0` true for ever. The
// saved state keeps it exact across a restart; a state saved by a float64 running sum
// (2.7755575615628914e-17) is read as that float64.
func TestFloatSumIsExact(t *testing.T) {
	set := mustParse(t, issueRules)
	e := newTestEngine(set)
	e.MarkSeeded(e.Unseeded(), canal.Position{})
	_, saved := txn(t, e, &canal.RowChange{Op: canal.OpCreate, Table: floatShardTable, After: []any{"A1", int64(0), 0.1}},
		&canal.RowChange{Op: canal.OpCreate, Table: floatShardTable, After: []any{"A1", int64(1), 0.2}})
	_, ents := txn(t, e, floatUpd(0, 0.1, 0))
	saved = mergeEntries(saved, ents)
	restored := newTestEngine(set)
	if err := restored.Restore(saved); err != nil {
		t.Fatal(err)
	}
	for name, eng := range map[string]*Engine{"running": e, "restored": restored} {
		got, _ := txn(t, eng, floatUpd(1, 0.2, 0))
		joined := strings.Join(got, "\n")
		if !strings.Contains(joined, `"after":{"sku_id":"A1","sellable":0}`) || !strings.Contains(joined, `"after":{"sku_id":"A1","sellable":0,"value":false}`) {
			t.Errorf("%s: both shard rows at 0; messages:\n%s", name, joined)
		}
	}

	var old accumulator
	if !old.restore("2.7755575615628914e-17") || old.float64() != 2.7755575615628914e-17 || string(old.appendState(nil)) != "2.7755575615628914e-17" {
		t.Errorf("a float64 sum's saved state read back as %v, saved again as %s", old.exprValue(), old.appendState(nil))
	}
	var exact accumulator
	exact.add(0.1, 1)
	exact.add(0.2, 1)
	state := string(exact.appendState(nil))
	if state != "0.3000000000000000166533453693773481063544750213623046875" {
		t.Errorf("0.1 + 0.2 saved as %s, want its exact value", state)
	}
	var back accumulator
	if !back.restore(state) || back.f.exact.Cmp(&exact.f.exact) != 0 {
		t.Errorf("%s read back as %v", state, back.exprValue())
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

// TestSumTypeFollowsTheColumn: a sum's JSON type is its column's in every message,
// whatever the values: a DECIMAL column's is a string from a new group's 0 on, an
// integer column's a number past int64 too, and back.
func TestSumTypeFollowsTheColumn(t *testing.T) {
	table := &canal.Table{Schema: "shop", Name: "t", Columns: []canal.Column{
		{Name: "g", Kind: canal.KindInt}, {Name: "u", Kind: canal.KindUint}, {Name: "d", Kind: canal.KindDecimal},
	}}
	e := newTestEngine(mustParse(t, `
rules:
  - name: flag
    match: {table: "shop.t"}
    emit: transition
    group_by: [g]
    sum: {du: u, dd: d}
    value: "du > 5"
    topic: flag
  - name: sums
    match: {table: "shop.t"}
    emit: aggregate
    group_by: [g]
    sum: {du: u, dd: d}
    topic: sums
`))
	row := func(u uint64, d string) []any { return []any{int64(1), u, d} }
	got, _ := txn(t, e, &canal.RowChange{Op: canal.OpCreate, Table: table, After: row(9, "1.50")})
	got2, _ := txn(t, e, &canal.RowChange{Op: canal.OpCreate, Table: table, After: row(math.MaxUint64, "1.505")})
	got3, _ := txn(t, e, &canal.RowChange{Op: canal.OpDelete, Table: table, Before: row(math.MaxUint64, "1.505")})
	want := []string{
		`flag {"g":1} {"op":"u","before":{"g":1,"du":0,"dd":"0","value":false},"after":{"g":1,"du":9,"dd":"1.50","value":true}}`,
		`sums {"g":1} {"op":"c","before":null,"after":{"g":1,"du":9,"dd":"1.50"}}`,
		`sums {"g":1} {"op":"u","before":{"g":1,"du":9,"dd":"1.50"},"after":{"g":1,"du":18446744073709551624,"dd":"3.005"}}`,
		`sums {"g":1} {"op":"u","before":{"g":1,"du":18446744073709551624,"dd":"3.005"},"after":{"g":1,"du":9,"dd":"1.500"}}`,
	}
	if all := append(append(got, got2...), got3...); strings.Join(all, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(all, "\n"), strings.Join(want, "\n"))
	}
}

// TestEmptyTable: emptying the table of rules that read it alone publishes every group
// as if its last row had been deleted, at the statement's source with row counting the
// rule's groups in key order (aggregate: d; transition: only a group whose value changes,
// B2 staying false), deletes their state, and later rows start the groups
// again. A rule seeded after the statement already holds it; a set whose stateful rule
// reads other tables too refuses.
func TestEmptyTable(t *testing.T) {
	e := newTestEngine(mustParse(t, issueRules))
	txn(t, e, ins("A1", 0, 2), ins("A1", 1, 3), ins("B2", 0, 0), ins("C3", 0, 4))
	at := canal.Source{ServerID: 7, GTID: "0-7-42", File: "binlog.000003", Pos: 5000, TsMs: 1700000005000}
	if err := e.Empty("inventory", "sellable_shard", at); err != nil {
		t.Fatal(err)
	}
	var out recorder
	entries, err := e.Commit(t.Context(), canal.Position{File: "binlog.000003", Pos: 5100}, &out)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range out.msgs {
		got = append(got, m.Topic+" "+string(m.Key)+" "+string(m.Value))
	}
	source := func(row int) string {
		return `"source":{"server_id":7,"gtid":"0-7-42","file":"binlog.000003","pos":5000,"db":"inventory","table":"sellable_shard","ts_ms":1700000005000,"row":` +
			string(rune('0'+row)) + `},"ts_ms":1700000000999}`
	}
	want := []string{
		`product.stock {"sku_id":"A1"} {"op":"d","before":{"sku_id":"A1","sellable":5},"after":null,` + source(0),
		`product.stock {"sku_id":"B2"} {"op":"d","before":{"sku_id":"B2","sellable":0},"after":null,` + source(1),
		`product.stock {"sku_id":"C3"} {"op":"d","before":{"sku_id":"C3","sellable":4},"after":null,` + source(2),
		`search.availability {"sku_id":"A1"} {"op":"u","before":{"sku_id":"A1","sellable":5,"value":true},"after":{"sku_id":"A1","sellable":0,"value":false},` + source(0),
		`search.availability {"sku_id":"C3"} {"op":"u","before":{"sku_id":"C3","sellable":4,"value":true},"after":{"sku_id":"C3","sellable":0,"value":false},` + source(2),
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("emptied:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(want, "\n     "))
	}
	for _, ent := range entries {
		if ent.Value != nil {
			t.Errorf("state entry %s %s = %s after emptying; want it deleted", ent.Rule, ent.Key, ent.Value)
		}
	}
	if len(entries) != 6 {
		t.Errorf("%d state entries; want one per group of each rule, deleted", len(entries))
	}
	got, _ = txn(t, e, ins("A1", 0, 1))
	want = []string{
		`product.stock {"sku_id":"A1"} {"op":"c","before":null,"after":{"sku_id":"A1","sellable":1}}`,
		`search.availability {"sku_id":"A1"} {"op":"u","before":{"sku_id":"A1","sellable":0,"value":false},"after":{"sku_id":"A1","sellable":1,"value":true}}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("after emptying:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(want, "\n     "))
	}

	e.MarkSeeded([]string{"product-stock"}, canal.Position{File: "binlog.000003", Pos: 6000})
	if err := e.Empty("inventory", "sellable_shard", at); err != nil {
		t.Fatal(err)
	}
	out.msgs = nil
	if _, err := e.Commit(t.Context(), canal.Position{File: "binlog.000003", Pos: 5100}, &out); err != nil {
		t.Fatal(err)
	}
	if len(out.msgs) != 1 || string(out.msgs[0].Key) != `{"sku_id":"A1"}` || !strings.HasPrefix(out.msgs[0].Topic, "search.") {
		t.Errorf("emptying before a rule's seed: %d messages; want only the other rule's A1", len(out.msgs))
	}

	shared := newTestEngine(mustParse(t, strings.Replace(issueRules, `match: {table: "inventory.sellable_shard"}`, `match: {table: "inventory.sellable_*"}`, 1)))
	if err := shared.Empty("inventory", "sellable_shard", at); err == nil {
		t.Error("emptying a table that a rule reads through a pattern: no error")
	}
}

// TestStatefulAlone: a table's stateful rules read it alone when each has one glob that
// names it without a pattern; row rules do not count.
func TestStatefulAlone(t *testing.T) {
	s := mustParse(t, spineRules+totalsRule+`  - name: two
    match: {table: [inventory.a, inventory.b]}
    emit: aggregate
    group_by: [sku_id]
    sum: {sellable: qty}
    topic: product.stock
  - name: any-b
    match: {table: [inventory.b*]}
    emit: transition
    group_by: [sku_id]
    sum: {sellable: qty}
    value: "sellable > 0"
    topic: product.stock
  - name: rows-c
    match: {table: [inventory.c*]}
    topic: c
  - name: c
    match: {table: [inventory.c]}
    emit: aggregate
    group_by: [sku_id]
    sum: {sellable: qty}
    topic: product.stock
`)
	for table, want := range map[string]bool{"sellable_shard": true, "a": false, "b": false, "bb": false, "c": true, "d": false} {
		if got := s.StatefulAlone("inventory", table); got != want {
			t.Errorf("StatefulAlone(inventory, %s) = %v; want %v", table, got, want)
		}
	}
	// shop has only a row rule's tables.
	for schema, want := range map[string]bool{"inventory": true, "shop": false} {
		if got := s.StatefulSchema(schema); got != want {
			t.Errorf("StatefulSchema(%s) = %v; want %v", schema, got, want)
		}
	}
}

// TestTransitionValueSeesGroupByAsItsKey: a transition's value sees a DECIMAL group_by
// column as the string its key holds and a binary one as its key's base64 string, and the
// live type check agrees: it accepts a comparison with a string and refuses one with a
// number.
func TestTransitionValueSeesGroupByAsItsKey(t *testing.T) {
	table := &canal.Table{Schema: "shop", Name: "t", Columns: []canal.Column{
		{Name: "d", Kind: canal.KindDecimal}, {Name: "b", Kind: canal.KindBytes}, {Name: "qty", Kind: canal.KindInt},
	}}
	src := `
rules:
  - name: flag
    match: {table: "shop.t"}
    emit: transition
    group_by: [d, b]
    sum: {n: qty}
    value: 'd == "12.340" && b == "YWI=" && n > 0'
    topic: flag
`
	set := mustParse(t, src)
	if errs := set.CheckTables([]TableInfo{{Schema: "shop", Name: "t", Columns: table.Columns}}); len(errs) != 0 {
		t.Errorf("live check: %v", errs)
	}
	e := newTestEngine(set)
	got, _ := txn(t, e, &canal.RowChange{Op: canal.OpCreate, Table: table, After: []any{"12.340", []byte("ab"), int64(2)}})
	if want := `flag {"d":"12.340","b":"YWI="} {"op":"u","before":{"d":"12.340","b":"YWI=","n":0,"value":false},"after":{"d":"12.340","b":"YWI=","n":2,"value":true}}`; strings.Join(got, "\n") != want {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), want)
	}
	bad := mustParse(t, strings.Replace(src, `d == "12.340"`, "d > 12", 1))
	if errs := bad.CheckTables([]TableInfo{{Schema: "shop", Name: "t", Columns: table.Columns}}); len(errs) != 1 || !strings.Contains(errs[0].Error(), "mismatched types string and int") {
		t.Errorf("live check of d > 12: %v", errs)
	}
}

// TestSeedPositionSurvivesARestart: a rule seeded at P while the stream is behind it saves
// P in its marker with the state; an engine restored from a checkpoint before P skips the
// transactions up to P, already in the state, instead of folding them again, and once the
// stream passes P the marker is saved again without it.
func TestSeedPositionSurvivesARestart(t *testing.T) {
	set := mustParse(t, issueRules)
	e := newTestEngine(set)
	seedAt := canal.Position{File: "binlog.000003", Pos: 6000}
	names := e.Unseeded()
	e.MarkSeeded(names, seedAt)
	var out recorder
	seed := ins("A1", 0, 5)
	seed.Op, seed.Source = canal.OpRead, canal.Source{File: seedAt.File, Pos: seedAt.Pos, Snapshot: true}
	if err := e.Seed(seed, names); err != nil {
		t.Fatal(err)
	}
	saved, err := e.Commit(t.Context(), canal.Position{File: "binlog.000003", Pos: 5000}, &out) // the stream, behind the seed
	if err != nil {
		t.Fatal(err)
	}

	restarted := newTestEngine(set)
	if err := restarted.Restore(saved); err != nil {
		t.Fatal(err)
	}
	if u := restarted.Unseeded(); len(u) != 0 {
		t.Fatalf("unseeded after the restore: %v", u)
	}
	// A transaction between the checkpoint and the seed, read again: already in the state.
	before := upd("A1", 0, 4, 5)
	before.Source = canal.Source{File: "binlog.000003", Pos: 5500}
	if err := restarted.Row(t.Context(), before, &out); err != nil {
		t.Fatal(err)
	}
	out.msgs = nil
	entries, err := restarted.Commit(t.Context(), canal.Position{File: "binlog.000003", Pos: 6000}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.msgs) != 0 {
		t.Errorf("a transaction before the seed position folded again after the restart: %d messages", len(out.msgs))
	}
	markers := 0
	for _, ent := range entries {
		if ent.Key == seedKey {
			markers++
			if sig, at, _ := readSeedMarker(ent.Value); sig != set.Rule(ent.Rule).Signature() || !at.IsZero() {
				t.Errorf("marker of %s past the seed: %q at %v, want the bare signature", ent.Rule, sig, at)
			}
		}
	}
	if markers != 2 {
		t.Errorf("%d markers saved again once the stream passed the seed, want 2", markers)
	}
	after := upd("A1", 0, 5, 2)
	after.Source = canal.Source{File: "binlog.000003", Pos: 6100}
	if got, _ := txn(t, restarted, after); len(got) != 1 || !strings.Contains(got[0], `"before":{"sku_id":"A1","sellable":5},"after":{"sku_id":"A1","sellable":2}`) {
		t.Errorf("after the seed position: %v, want A1 from 5 to 2 (the flag stays true)", got)
	}
}

// TestSignatureIgnoresWhereTheRuleIsWritten: a comment or a rule moved in the file keeps a
// stateful rule's signature (no new seed); a marker in the form saved before (which held
// the sums' places) is still taken for an unchanged file, and saved again in today's form.
func TestSignatureIgnoresWhereTheRuleIsWritten(t *testing.T) {
	set := mustParse(t, issueRules)
	moved := mustParse(t, "# a comment\n\n"+issueRules)
	for _, r := range set.Rules() {
		if r.Stateful() && r.Signature() != moved.Rule(r.Name()).Signature() {
			t.Errorf("%s: signature %q changed by a comment to %q", r.Name(), r.Signature(), moved.Rule(r.Name()).Signature())
		}
	}
	e := newTestEngine(set)
	r := set.Rule("product-stock")
	if err := e.Restore([]StateEntry{{Rule: r.name, Key: seedKey, Value: []byte(stateSignature(r, r.src.Value.Value, signatureSumPlaces))}}); err != nil {
		t.Fatal(err)
	}
	if u := e.Unseeded(); len(u) != 1 || u[0] != "search-in-stock" {
		t.Errorf("unseeded after restoring a legacy marker: %v, want only search-in-stock", u)
	}
	entries, err := e.Commit(t.Context(), canal.Position{File: "binlog.000003", Pos: 100}, &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || string(entries[0].Value) != r.Signature() {
		t.Errorf("entries after a legacy marker: %v, want its marker saved again in today's form", entries)
	}
}

// TestGlobOrderIsNotANewDefinition: listing a stateful rule's tables in another order, or
// one twice, keeps its signature (no new seed, no group republished); a marker saved
// before globs were sorted, which holds them as written, is still taken for an unchanged
// file, and saved again in today's form.
func TestGlobOrderIsNotANewDefinition(t *testing.T) {
	rule := func(tables string) *Rule {
		return mustParse(t, "rules:\n  - name: totals\n    match: {table: "+tables+"}\n    emit: aggregate\n    group_by: [sku_id]\n    sum: {n: qty}\n    topic: t\n").Rules()[0]
	}
	ab, ba, aba := rule("[shop.a, shop.b]"), rule("[shop.b, shop.a]"), rule("[shop.a, shop.b, shop.a]")
	if ab.Signature() != ba.Signature() || ab.Signature() != aba.Signature() {
		t.Errorf("signatures differ: %q, %q, %q", ab.Signature(), ba.Signature(), aba.Signature())
	}
	if other := rule("[shop.a, shop.c]"); other.Signature() == ab.Signature() {
		t.Errorf("other tables, same signature %q", other.Signature())
	}
	e := newTestEngine(&Set{rules: []*Rule{ba}})
	written := stateSignature(ba, "", signatureWrittenGlobs)
	if written == ba.Signature() {
		t.Fatalf("the written-order form %q is today's: the test tests nothing", written)
	}
	if err := e.Restore([]StateEntry{{Rule: "totals", Key: seedKey, Value: []byte(written)}}); err != nil {
		t.Fatal(err)
	}
	if u := e.Unseeded(); len(u) != 0 {
		t.Errorf("unseeded after restoring a marker of the globs as written: %v, want none", u)
	}
	entries, err := e.Commit(t.Context(), canal.Position{File: "binlog.000003", Pos: 100}, &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || string(entries[0].Value) != ba.Signature() {
		t.Errorf("entries after a marker of the globs as written: %v, want it saved again in today's form", entries)
	}
}

// TestChangeTheSeedHoldsNeedsNoColumns: a stateful rule seeded at P after a column it
// names was renamed skips the changes before P of the table's old shape (its seed holds
// them), instead of stopping on the column the old shape lacks; after P the old shape
// is refused as before.
func TestChangeTheSeedHoldsNeedsNoColumns(t *testing.T) {
	e := newTestEngine(mustParse(t, strings.Replace(issueRules, "sum: {sellable: qty}", "sum: {sellable: quantity}", -1)))
	e.MarkSeeded(e.Unseeded(), canal.Position{File: "binlog.000003", Pos: 6000})
	old := ins("A1", 0, 5) // of the shape before the rename: (sku_id, shard, qty)
	old.Source = canal.Source{File: "binlog.000003", Pos: 5000}
	if err := e.Row(t.Context(), old, &recorder{}); err != nil {
		t.Errorf("a change before the seed, of the old shape: %v", err)
	}
	old.Source.Pos = 6100
	if err := e.Row(t.Context(), old, &recorder{}); err == nil || !strings.Contains(err.Error(), `no column "quantity"`) {
		t.Errorf("a change after the seed, of the old shape: %v, want the missing column", err)
	}
}

// TestStaleStateIsDeleted: saved entries that no longer belong to a rule as defined are
// deleted with the next Commit, so that a later restart cannot take them: a removed
// rule's groups and marker, a changed rule's old groups (at a restart, and at a reload:
// with the Commit after its seed),
// and a group whose key is not of the rule's group_by (left by an older build), which is
// dropped with a warning instead of stopping the restore.
func TestStaleStateIsDeleted(t *testing.T) {
	set := mustParse(t, issueRules)
	first := newTestEngine(set)
	first.MarkSeeded(first.Unseeded(), canal.Position{})
	_, entries := txn(t, first, ins("A1", 0, 3))
	all := append([]StateEntry{}, entries...)
	_, entries = txn(t, first, ins("B1", 0, 2))
	all = append(all, entries...)
	_, entries = txn(t, first, ins("A1", 1, 1))
	all = append(all, entries...)
	// the markers, as the first Commit saved them
	for _, r := range set.Rules() {
		if r.Stateful() {
			all = append(all, StateEntry{Rule: r.Name(), Key: seedKey, Value: seedMarker(r, canal.Position{}, "")})
		}
	}

	// product-stock's sum changed, search-in-stock removed.
	changed := mustParse(t, `
rules:
  - name: product-stock
    match: {table: "inventory.sellable_shard"}
    emit: aggregate
    group_by: [sku_id]
    sum: {sellable: shard}
    topic: product.stock
`)
	restarted := newTestEngine(changed)
	if err := restarted.Restore(all); err != nil {
		t.Fatalf("restore: %v", err)
	}
	deleted := func(entries []StateEntry) []string {
		var out []string
		for _, ent := range entries {
			if ent.Value == nil {
				out = append(out, ent.Rule+" "+strings.ReplaceAll(ent.Key, seedKey, "marker"))
			}
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	// The changed rule's old groups wait for its seed, whose Commit retracts them.
	restarted.MarkSeeded(restarted.Unseeded(), canal.Position{})
	got, err := restarted.Commit(t.Context(), canal.Position{File: "binlog.000003", Pos: 100}, &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`product-stock {"sku_id":"A1"}`, `product-stock {"sku_id":"B1"}`,
		`search-in-stock marker`, `search-in-stock {"sku_id":"A1"}`, `search-in-stock {"sku_id":"B1"}`,
	}
	if d := deleted(got); !slices.Equal(d, want) {
		t.Errorf("deleted at the restart's first Commit:\n%s\nwant\n%s", strings.Join(d, "\n"), strings.Join(want, "\n"))
	}

	// A reload that changes a rule deletes its groups, the marker staying for the seed.
	e := newTestEngine(set)
	e.MarkSeeded(e.Unseeded(), canal.Position{})
	txn(t, e, ins("A1", 0, 3))
	e.Install(changed)
	e.MarkSeeded(e.Unseeded(), canal.Position{})
	got, err = e.Commit(t.Context(), canal.Position{File: "binlog.000003", Pos: 200}, &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	if d, want := deleted(got), []string{`product-stock {"sku_id":"A1"}`, `search-in-stock marker`, `search-in-stock {"sku_id":"A1"}`}; !slices.Equal(d, want) {
		t.Errorf("deleted after a reload:\n%s\nwant\n%s", strings.Join(d, "\n"), strings.Join(want, "\n"))
	}

	// A group that is not of the rule's group_by, under the rule's own marker.
	bogus := StateEntry{Rule: "product-stock", Key: `{"sku_id":"A1","shard":0}`, Value: []byte(`{"count":1,"sums":{"sellable":5}}`)}
	again := newTestEngine(set)
	if err := again.Restore(append(slices.Clone(all), bogus)); err != nil {
		t.Fatalf("restoring a group of another group_by: %v; want it dropped", err)
	}
	got, err = again.Commit(t.Context(), canal.Position{File: "binlog.000003", Pos: 300}, &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	if d, want := deleted(got), []string{bogus.Rule + " " + bogus.Key}; !slices.Equal(d, want) {
		t.Errorf("deleted after restoring a group of another group_by: %v, want %v", d, want)
	}
}

// TestGroupBornAndGoneInOneTransactionIsNotPublished: an aggregate group whose rows are
// inserted and deleted within one transaction was never published and sends nothing (not
// a d without a before); its neighbour in the transaction is published as usual.
func TestGroupBornAndGoneInOneTransactionIsNotPublished(t *testing.T) {
	e := newTestEngine(mustParse(t, issueRules))
	e.MarkSeeded(e.Unseeded(), canal.Position{})
	gone := &canal.RowChange{Op: canal.OpDelete, Table: shardTable, Before: shardRow("Z9", 0, 4)}
	got, _ := txn(t, e, ins("Z9", 0, 4), gone, ins("A1", 0, 1))
	for _, m := range got {
		if strings.Contains(m, "Z9") {
			t.Errorf("a group born and gone in one transaction was published: %s", m)
		}
	}
	if len(got) != 2 {
		t.Errorf("got %v, want A1's aggregate and flag", got)
	}
}

// TestFloatSumStateRoundTripsFloat64sPast2To53: a float sum whose value is a float64 at
// or past 2^53 (a DOUBLE column holding 12345678901234567890, or a sum reaching 1e23),
// whose shortest decimal is another integer, is saved exactly and read back as itself:
// after the restore, taking the row away again leaves 0, as in the running engine.
func TestFloatSumStateRoundTripsFloat64sPast2To53(t *testing.T) {
	for _, v := range []float64{12345678901234567890, 1e23, 9007199254740993 * 2} {
		var running accumulator
		running.add(v, 1)
		state := string(running.appendState(nil))
		var back accumulator
		if !back.restore(state) {
			t.Fatalf("state %q not read back", state)
		}
		running.add(v, -1)
		back.add(v, -1)
		if got := back.float64(); got != 0 || running.float64() != 0 {
			t.Errorf("sum of %v saved as %q; after subtracting the row again: running %v, restored %v (want 0 for both)",
				v, state, running.float64(), got)
		}
	}
}

// TestRestoredLargeFloatSumReturnsToZero: the same through the engine: one shard row at
// 1e23 saved, the daemon restarted (Restore), the row set to 0: the restored engine, as
// the running one, publishes sellable 0 and the flag false.
func TestRestoredLargeFloatSumReturnsToZero(t *testing.T) {
	set := mustParse(t, issueRules)
	e := newTestEngine(set)
	e.MarkSeeded(e.Unseeded(), canal.Position{})
	_, saved := txn(t, e, &canal.RowChange{Op: canal.OpCreate, Table: floatShardTable, After: []any{"A1", int64(0), 1e23}})
	restored := newTestEngine(set)
	if err := restored.Restore(saved); err != nil {
		t.Fatal(err)
	}
	for name, eng := range map[string]*Engine{"running": e, "restored": restored} {
		got, _ := txn(t, eng, floatUpd(0, 1e23, 0))
		joined := strings.Join(got, "\n")
		if !strings.Contains(joined, `"after":{"sku_id":"A1","sellable":0}`) || !strings.Contains(joined, `"value":false`) {
			t.Errorf("%s: the only shard row set to 0; messages:\n%s", name, joined)
		}
	}
}
