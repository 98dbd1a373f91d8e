package rules

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stocksync/stocksync/canal"
	"github.com/stocksync/stocksync/sinks"
)

// recorder is a fake Emitter that keeps every message.
type recorder struct{ msgs []sinks.Message }

func (r *recorder) Emit(_ context.Context, m sinks.Message) error {
	r.msgs = append(r.msgs, m)
	return nil
}

func mustParse(t testing.TB, yaml string) *Set {
	t.Helper()
	s, err := Parse("rules.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return s
}

func newTestEngine(s *Set) *Engine {
	e := NewEngine(s, 1)
	e.SetClock(func() time.Time { return time.UnixMilli(1700000000999) })
	return e
}

var stockTable = &canal.Table{
	Schema:     "shop",
	Name:       "stock_1",
	Columns:    []canal.Column{{Name: "sku_id", Kind: canal.KindString}, {Name: "qty", Kind: canal.KindInt}},
	PrimaryKey: []int{0},
}

func src(row int) canal.Source {
	return canal.Source{ServerID: 7, File: "binlog.000003", Pos: 1234, TsMs: 1700000000000, Row: row}
}

const spineRules = `
rules:
  - name: stock-rows
    match: {table: "shop.stock_*", ops: [insert, update, delete]}
    topic: shop.stock
    key: [sku_id]
`

func TestSpineFormDebezium(t *testing.T) {
	e := newTestEngine(mustParse(t, spineRules))
	var out recorder
	ctx := t.Context()
	changes := []*canal.RowChange{
		{Op: canal.OpCreate, Table: stockTable, After: []any{"A1", int64(5)}, Source: src(0)},
		{Op: canal.OpUpdate, Table: stockTable, Before: []any{"A1", int64(5)}, After: []any{"A1", int64(4)}, Source: src(1)},
		{Op: canal.OpDelete, Table: stockTable, Before: []any{"A1", int64(4)}, Source: src(2)},
		{Op: canal.OpRead, Table: stockTable, After: []any{"A1", int64(4)}, Source: src(3)},
	}
	for _, c := range changes {
		if err := e.Row(ctx, c, &out); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.Commit(ctx, canal.Position{File: "binlog.000003", Pos: 2000}, &out); err != nil {
		t.Fatal(err)
	}
	const source = `"source":{"server_id":7,"gtid":null,"file":"binlog.000003","pos":1234,"db":"shop","table":"stock_1","ts_ms":1700000000000,"row":`
	want := []string{
		`{"op":"c","before":null,"after":{"sku_id":"A1","qty":5},` + source + `0},"ts_ms":1700000000999}`,
		`{"op":"u","before":{"sku_id":"A1","qty":5},"after":{"sku_id":"A1","qty":4},` + source + `1},"ts_ms":1700000000999}`,
		`{"op":"d","before":{"sku_id":"A1","qty":4},"after":null,` + source + `2},"ts_ms":1700000000999}`,
	}
	if len(out.msgs) != len(want) {
		t.Fatalf("got %d messages, want %d (the read is not in ops)", len(out.msgs), len(want))
	}
	for i, m := range out.msgs {
		if string(m.Value) != want[i] {
			t.Errorf("message %d:\n got %s\nwant %s", i, m.Value, want[i])
		}
		if m.Topic != "shop.stock" || string(m.Key) != `{"sku_id":"A1"}` {
			t.Errorf("message %d: topic %q key %s", i, m.Topic, m.Key)
		}
		if len(m.Headers) != 2 || m.Headers[0].Key != HeaderRule || string(m.Headers[0].Value) != "stock-rows" ||
			m.Headers[1].Key != HeaderPosition || string(m.Headers[1].Value) != "binlog.000003:1234" {
			t.Errorf("message %d: headers %+v", i, m.Headers)
		}
	}
}

// totalsRule is an aggregate rule over inventory.sellable_shard alone, to follow
// spineRules.
const totalsRule = `
  - name: totals
    match: {table: [inventory.sellable_shard]}
    emit: aggregate
    group_by: [sku_id]
    sum: {sellable: qty}
    topic: product.stock
`

func TestSetMatches(t *testing.T) {
	s := mustParse(t, spineRules+totalsRule)
	cases := []struct {
		schema, table     string
		matches, stateful bool
	}{
		{"shop", "stock_1", true, false},
		{"shop", "stock", false, false},
		{"shop", "orders", false, false},
		{"inventory", "sellable_shard", true, true},
	}
	for _, c := range cases {
		if got := s.Matches(c.schema, c.table); got != c.matches {
			t.Errorf("Matches(%s, %s) = %v", c.schema, c.table, got)
		}
		if got := s.StatefulTables(c.schema, c.table); got != c.stateful {
			t.Errorf("StatefulTables(%s, %s) = %v", c.schema, c.table, got)
		}
	}
	if names := ruleNames(s); names != "stock-rows,totals" {
		t.Errorf("rules %s", names)
	}
}

// TestGlobMatchesDatabaseAndTableApart: a glob's database half and table half are matched
// apart, since either name may hold a dot: "shop.*" does not reach into database shop.eu,
// a database with a dot is named in backquotes (or by a pattern half), * matches a '/'
// (MySQL allows one in a name), and a DROP DATABASE is taken as touching exactly the
// TestSetCachesABoundedNumberOfTables: a Set caches which rules match each table it is
// asked about, at most maxCachedMatches of them: the stream asks about every table a DDL
// statement drops or truncates, and a shop's staging tables, each created and dropped
// under a new name, left an entry each for as long as the rules ran.
func TestSetCachesABoundedNumberOfTables(t *testing.T) {
	set := mustParse(t, spineRules)
	for i := range 3 * maxCachedMatches {
		if set.Matches("shop", fmt.Sprintf("staging_%d", i)) {
			t.Fatalf("shop.staging_%d matched", i)
		}
	}
	cached := 0
	set.matches.Range(func(any, any) bool { cached++; return true })
	if cached > maxCachedMatches {
		t.Errorf("the set caches %d tables after being asked about %d; want at most %d", cached, 3*maxCachedMatches, maxCachedMatches)
	}
	if !set.Matches("shop", "stock_1") || set.Matches("shop", "staging_1") {
		t.Error("after its cache was cleared, the set answers wrongly")
	}
}

// rules that read its tables.
func TestGlobMatchesDatabaseAndTableApart(t *testing.T) {
	cases := []struct {
		glob, schema, table string
		want                bool
	}{
		{"shop.*", "shop.eu", "stock", false},
		{"shop.*", "shop", "x/y", true},
		{"shop.*", "shop", "eu.stock", true}, // a dot in the table's own name
		{"shop.eu.stock", "shop", "eu.stock", true},
		{"shop.eu.stock", "shop.eu", "stock", false},
		{"`st.eu`.*", "st.eu", "stock", true},
		{"`st.eu`.*", "st", "eu.stock", false},
		{"`st.eu`.`stock`", "st.eu", "stock", true},
		{"`st.eu`.`x*`", "st.eu", "x*", true},
		{"`st.eu`.`x*`", "st.eu", "xy", false},
		{"`a``b`.t", "a`b", "t", true},
		{"`s*`.t", "sx", "t", false},
		{"st?eu.*", "st.eu", "stock", true},
		{"*.*", "a/b", "c.d", true},
		{"shop.s?ock", "shop", "s/ock", true},
		{"shop.[^a]x", "shop", "/x", true},
		{`shop.\*`, "shop", "*", true},
		{`shop.\*`, "shop", "x", false},
	}
	for _, c := range cases {
		set := mustParse(t, fmt.Sprintf("rules:\n  - name: totals\n    match: {table: %q}\n    emit: aggregate\n    group_by: [sku_id]\n    sum: {n: qty}\n    topic: t\n", c.glob))
		r := set.Rules()[0]
		if got := r.MatchesTable(c.schema, c.table); got != c.want {
			t.Errorf("%s: MatchesTable(%q, %q) = %v, want %v", c.glob, c.schema, c.table, got, c.want)
		}
		if got := set.Matches(c.schema, c.table); got != c.want {
			t.Errorf("%s: Matches(%q, %q) = %v, want %v", c.glob, c.schema, c.table, got, c.want)
		}
		// What a rule reads, a DROP DATABASE of its database touches.
		if dropped := set.StatefulRulesReading(nil, []string{c.schema}); c.want && len(dropped) == 0 {
			t.Errorf("%s: reads table %q of database %q, but a DROP DATABASE of it names no rule", c.glob, c.table, c.schema)
		}
	}
	set := mustParse(t, "rules:\n  - name: totals\n    match: {table: \"shop.*\"}\n    emit: aggregate\n    group_by: [sku_id]\n    sum: {n: qty}\n    topic: t\n")
	if dropped := set.StatefulRulesReading(nil, []string{"shop.eu"}); len(dropped) != 0 {
		t.Errorf("a DROP DATABASE of shop.eu names %v, which reads database shop only", dropped)
	}
	// A glob written for the tables of a dotted database as one string is told how to
	// name that database.
	errs := mustParse(t, "rules:\n  - name: r\n    match: {table: \"st.*\"}\n    topic: t\n").CheckTables([]TableInfo{{Schema: "st.eu", Name: "stock"}})
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "write database st.eu in backquotes, as in \"`st.eu`.stock\"") {
		t.Errorf("st.* against table stock of database st.eu: %v; want one error telling to write `st.eu` in backquotes", errs)
	}
	// Two tables whose schema.table are the same text are told apart (Set.match caches per table).
	dotted := mustParse(t, "rules:\n  - name: r\n    match: {table: \"`st.eu`.stock\"}\n    topic: t\n")
	if !dotted.Matches("st.eu", "stock") || dotted.Matches("st", "eu.stock") {
		t.Errorf("`st.eu`.stock: Matches(st.eu, stock) = %v, Matches(st, eu.stock) = %v; want true, false",
			dotted.Matches("st.eu", "stock"), dotted.Matches("st", "eu.stock"))
	}
}

// TestPatternRule: the stream checks that source.user may read a table matched
// through a glob that is a pattern (the check at start cannot see them all), naming a
// stateful rule first; a table matched only by literal globs is left to the start.
func TestPatternRule(t *testing.T) {
	s := mustParse(t, `
rules:
  - name: tenant-rows
    match: {table: ["shop_*.stock", "shop_a.orders"]}
    topic: shop.stock
  - name: literal-totals
    match: {table: shop_a.stock}
    emit: aggregate
    group_by: [sku_id]
    sum: {sellable: qty}
    topic: product.stock
  - name: tenant-totals
    match: {table: "shop_?.stock"}
    emit: aggregate
    group_by: [sku_id]
    sum: {sellable: qty}
    topic: product.stock.tenants
  - name: split-rows
    match: {table: "shop_a.stock_*"}
    topic: shop.split
`)
	cases := []struct {
		schema, table string
		rule          string
		stateful      bool
	}{
		{"shop_a", "stock", "tenant-totals", true},
		{"shop_ab", "stock", "tenant-rows", false},
		{"shop_a", "orders", "", false},
		{"shop", "stock", "", false},
		{"shop_a", "stock_b", "split-rows", false}, // a table pattern in a literal schema
	}
	for _, c := range cases {
		if rule, stateful := s.PatternRule(c.schema, c.table); rule != c.rule || stateful != c.stateful {
			t.Errorf("PatternRule(%s, %s) = %q, %v; want %q, %v", c.schema, c.table, rule, stateful, c.rule, c.stateful)
		}
	}
}

func ruleNames(s *Set) string {
	var names []string
	for _, r := range s.Rules() {
		names = append(names, r.Name())
	}
	return strings.Join(names, ",")
}

// TestKeyTemplate: a key given as a template is the filled-in text, from the row's
// current image (before, for a delete).
func TestKeyTemplate(t *testing.T) {
	e := newTestEngine(mustParse(t, `
rules:
  - name: by-text
    match: {table: "shop.stock_*"}
    topic: "t.{table}"
    key: "{schema}/{sku_id}:{qty}"
`))
	var out recorder
	for _, c := range []*canal.RowChange{
		{Op: canal.OpCreate, Table: stockTable, After: []any{"A1", int64(5)}, Source: src(0)},
		{Op: canal.OpDelete, Table: stockTable, Before: []any{"B2", nil}, Source: src(1)},
	} {
		if err := e.Row(t.Context(), c, &out); err != nil {
			t.Fatal(err)
		}
	}
	if len(out.msgs) != 2 || string(out.msgs[0].Key) != "shop/A1:5" || string(out.msgs[1].Key) != "shop/B2:" ||
		out.msgs[0].Topic != "t.stock_1" {
		for _, m := range out.msgs {
			t.Logf("topic %q key %q", m.Topic, m.Key)
		}
		t.Fatal(`want keys "shop/A1:5" and "shop/B2:" on topic t.stock_1`)
	}
}

// TestColumnsNamedBeyondASCIIIdentifiers: columns whose names MySQL takes but an
// expression cannot spell bare (库存, sku-id) are summed, grouped by, copied and put in
// keys and topics by name, and an expression reads them as row["库存"].
func TestColumnsNamedBeyondASCIIIdentifiers(t *testing.T) {
	e := newTestEngine(mustParse(t, `
rules:
  - name: total
    match: {table: inventory.stock}
    emit: aggregate
    group_by: [sku-id]
    sum: {total: 库存}
    topic: "total.{sku-id}"
  - name: rows
    match: {table: inventory.stock}
    fields: [sku-id, 库存]
    key: "{sku-id}/{仓库}"
    topic: rows
  - name: computed
    match: {table: inventory.stock, when: 'row["库存"] > 1'}
    fields: {stock: 'row["库存"] * 2'}
    topic: computed
`))
	tbl := &canal.Table{Schema: "inventory", Name: "stock", PrimaryKey: []int{0, 1},
		Columns: []canal.Column{{Name: "sku-id", Kind: canal.KindString}, {Name: "仓库", Kind: canal.KindString}, {Name: "库存", Kind: canal.KindInt}}}
	got, _ := txn(t, e, &canal.RowChange{Op: canal.OpCreate, Table: tbl, After: []any{"A1", "SZ", int64(5)}})
	want := []string{
		`rows A1/SZ {"op":"c","before":null,"after":{"sku-id":"A1","库存":5}}`,
		`computed {"sku-id":"A1","仓库":"SZ"} {"op":"c","before":null,"after":{"stock":10}}`,
		`total.A1 {"sku-id":"A1"} {"op":"c","before":null,"after":{"sku-id":"A1","total":5}}`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("messages:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestEngineHoldsOnePlanPerTableAcrossDescriptions: the stream describes a table anew
// (a new *canal.Table) after DDL that may have changed it. The engine keeps one plan per
// table, for its latest description, however many there were, where it kept one per
// description for the whole run (20,000 plans, 52 MB, after 20,000 DDL statements); and a
// new description with another shape is planned anew, not served the old plan.
func TestEngineHoldsOnePlanPerTableAcrossDescriptions(t *testing.T) {
	set := mustParse(t, issueRules+`
  - name: rows
    match: {table: "inventory.*", when: "after.qty > 0"}
    topic: shard.rows
    fields: [sku_id, qty]
`)
	e := newTestEngine(set)
	var out recorder
	ctx := t.Context()
	cols := []canal.Column{{Name: "sku_id", Kind: canal.KindString}, {Name: "shard", Kind: canal.KindInt}, {Name: "qty", Kind: canal.KindInt}}
	other := &canal.Table{Schema: "inventory", Name: "reserved", Columns: cols, PrimaryKey: []int{0, 1}}
	change := func(tbl *canal.Table, before, after []any, i int) {
		t.Helper()
		c := &canal.RowChange{Op: canal.OpUpdate, Table: tbl, Before: before, After: after, Source: src(0)}
		if err := e.Row(ctx, c, &out); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Commit(ctx, canal.Position{File: "binlog.000003", Pos: uint32(2000 + i)}, &out); err != nil {
			t.Fatal(err)
		}
	}
	const descriptions = 1000
	for i := range descriptions {
		tbl := &canal.Table{Schema: "inventory", Name: "sellable_shard", Columns: slices.Clone(cols), PrimaryKey: []int{0, 1}}
		change(tbl, []any{"A1", int64(0), int64(5000 - i)}, []any{"A1", int64(0), int64(4999 - i)}, i)
		change(other, []any{"A1", int64(0), int64(1)}, []any{"A1", int64(0), int64(2)}, i)
		if i == 0 {
			if err := e.Seed(&canal.RowChange{Op: canal.OpRead, Table: tbl, After: []any{"B1", int64(0), int64(3)}, Source: src(0)}, []string{"product-stock"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(e.plans) != 2 {
		t.Errorf("the engine holds %d plans for 2 tables after %d descriptions of one; want 2", len(e.plans), descriptions)
	}

	// The table altered: qty moved to the second column. Its rows are read by the new shape.
	moved := &canal.Table{Schema: "inventory", Name: "sellable_shard",
		Columns: []canal.Column{cols[0], cols[2], cols[1]}, PrimaryKey: []int{0, 2}}
	out.msgs = nil
	change(moved, []any{"A1", int64(7), int64(0)}, []any{"A1", int64(8), int64(0)}, descriptions)
	var rows []string
	for _, m := range out.msgs {
		if m.Topic == "shard.rows" {
			rows = append(rows, string(m.Value))
		}
	}
	if len(rows) != 1 || !strings.Contains(rows[0], `"qty":8`) {
		t.Errorf("after the table's shape changed, the row rule published %q; want qty 8, read from the new description's second column", rows)
	}
	if len(e.plans) != 2 {
		t.Errorf("the engine holds %d plans for 2 tables; want 2", len(e.plans))
	}
}
