package rules

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stocksync/stocksync/canal"
	"github.com/stocksync/stocksync/sinks"
)

// discard is an Emitter that drops messages.
type discard struct{ n int }

func (d *discard) Emit(_ context.Context, _ sinks.Message) error { d.n++; return nil }

// benchTable is the shape of the catch-up benchmark's table.
var benchTable = &canal.Table{
	Schema: "stocksync_bench",
	Name:   "bench_stock",
	Columns: []canal.Column{
		{Name: "id", Kind: canal.KindInt}, {Name: "sku_id", Kind: canal.KindString},
		{Name: "warehouse", Kind: canal.KindString}, {Name: "qty", Kind: canal.KindInt},
		{Name: "price", Kind: canal.KindDecimal},
		{Name: "updated_at", Kind: canal.KindDateTime},
	},
	PrimaryKey: []int{0},
}

const benchPlainRule = `
rules:
  - name: bench-rows
    match: {table: "stocksync_bench.bench_stock"}
    topic: bench.stock
`

func benchEngine(b *testing.B, rulesYAML string) {
	benchEngineOver(b, rulesYAML, benchTable, func(n int) any { return int64(n) })
}

// benchEngineOver is benchEngine over table t, of benchTable's columns, whose qty column
// holds qty(n) for the whole number n.
func benchEngineOver(b *testing.B, rulesYAML string, t *canal.Table, qty func(n int) any) {
	set := mustParse(b, rulesYAML)
	e := NewEngine(set, 1)
	out := &discard{}
	ctx := context.Background()
	const txnRows = 2
	changes := make([]*canal.RowChange, 1000)
	for i := range changes {
		sku := fmt.Sprintf("sku-%d", i%500)
		wh := fmt.Sprintf("w%d", i%2)
		changes[i] = &canal.RowChange{
			Op:     canal.OpUpdate,
			Table:  t,
			Before: []any{int64(i), sku, wh, qty(100 + i%50), "19.90", "2024-02-29T10:00:00Z"},
			After:  []any{int64(i), sku, wh, qty(99 + i%50), "19.90", "2024-02-29T10:00:01Z"},
			Source: canal.Source{ServerID: 1, File: "binlog.000001", Pos: uint32(4 + i/txnRows*300), TsMs: 1700000000000, Row: i % txnRows},
		}
	}
	pos := canal.Position{File: "binlog.000001"}
	// seed the aggregate's state as a snapshot would
	for _, c := range changes {
		seed := *c
		seed.Op, seed.Before = canal.OpRead, nil
		if err := e.Row(ctx, &seed, out); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := e.Commit(ctx, pos, out); err != nil {
		b.Fatal(err)
	}
	out.n = 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := e.Row(ctx, changes[i%len(changes)], out); err != nil {
			b.Fatal(err)
		}
		if i%txnRows == txnRows-1 {
			pos.Pos = uint32(i)
			if _, err := e.Commit(ctx, pos, out); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(ns, "ns/event")
	b.ReportMetric(1e9/ns, "events/s")
	b.ReportMetric(float64(out.n)/float64(b.N), "msgs/event")
}

// BenchmarkEngineRow is one plain row rule (debezium), updates in 2-row transactions.
func BenchmarkEngineRow(b *testing.B) { benchEngine(b, benchPlainRule) }

// BenchmarkEngineTenRules is the ten rules of testdata/bench_ten.good.yaml: conditions,
// projections, three formats, one aggregate.
func BenchmarkEngineTenRules(b *testing.B) { benchEngineFile(b, "testdata/bench_ten.good.yaml") }

// BenchmarkEngineTenSelective is the ten rules of testdata/bench_ten_selective.good.yaml:
// one plain rule, one aggregate, eight conditions that select few rows.
func BenchmarkEngineTenSelective(b *testing.B) {
	benchEngineFile(b, "testdata/bench_ten_selective.good.yaml")
}

// BenchmarkEngineSum is one aggregate rule summing qty per SKU, updates in 2-row
// transactions: qty an integer column, a DECIMAL one ("12.5"), and a DOUBLE one (n/10,
// none of them a binary fraction but the halves), whose sums are exact binary fractions.
func BenchmarkEngineSum(b *testing.B) {
	const rule = `
rules:
  - name: bench-total
    match: {table: "stocksync_bench.bench_stock"}
    emit: aggregate
    group_by: [sku_id]
    sum: {qty: qty}
    topic: bench.total
`
	for _, tc := range []struct {
		class string
		kind  canal.ColumnKind
		qty   func(n int) any
	}{
		{"integer", canal.KindInt, func(n int) any { return int64(n) }},
		{"decimal", canal.KindDecimal, func(n int) any { return strconv.Itoa(n/10) + "." + strconv.Itoa(n%10) }},
		{"float", canal.KindFloat, func(n int) any { return float64(n) / 10 }},
	} {
		b.Run(tc.class, func(b *testing.B) {
			t := *benchTable
			t.Columns = slices.Clone(benchTable.Columns)
			t.Columns[3].Kind = tc.kind
			benchEngineOver(b, rule, &t, tc.qty)
		})
	}
}

func benchEngineFile(b *testing.B, path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	benchEngine(b, string(data))
}

// BenchmarkResync measures a resync of the issue's two rules over 100,000 SKUs (200,000
// messages a run, to an emitter that drops them): what the stream waits for, before the
// broker's share.
func BenchmarkResync(b *testing.B) {
	e := NewEngine(mustParse(b, issueRules), 1)
	e.MarkSeeded(e.Unseeded(), canal.Position{})
	var out discard
	for i := range 100000 {
		c := ins(fmt.Sprintf("SKU-%06d", i), 0, int64(i%7))
		c.Source = canal.Source{File: "binlog.000001", Pos: 4}
		if err := e.Row(context.Background(), c, &out); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := e.Commit(context.Background(), canal.Position{File: "binlog.000001", Pos: 5}, &out); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		out.n = 0
		if _, err := e.Resync(context.Background(), ResyncRequest{}, canal.Source{File: "binlog.000001", Pos: 5}, &out); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(out.n)*float64(b.N)/b.Elapsed().Seconds(), "messages/s")
}

// BenchmarkCheckColumns is the check the daemon makes at start and at each reload, and
// `rules validate --live` makes (column names, sums, expression types), of the ten rules of
// the catch-up benchmark over 1,000 tenant schemas' bench_stock tables: of one shape, then
// each of a shape of its own (an extra column), where every expression is compiled again
// per table.
func BenchmarkCheckColumns(b *testing.B) {
	data, err := os.ReadFile("testdata/bench_ten.good.yaml")
	if err != nil {
		b.Fatal(err)
	}
	set := mustParse(b, strings.ReplaceAll(string(data), "stocksync_bench.", "tenant_*."))
	for _, shapes := range []string{"one", "each"} {
		b.Run("shapes="+shapes, func(b *testing.B) {
			tables := make([]TableInfo, 1000)
			for i := range tables {
				tables[i] = TableInfo{Schema: fmt.Sprintf("tenant_%04d", i), Name: benchTable.Name, Columns: benchTable.Columns}
				if shapes == "each" {
					tables[i].Columns = append(slices.Clone(benchTable.Columns), canal.Column{Name: fmt.Sprintf("extra_%d", i), Kind: canal.KindInt})
				}
			}
			for b.Loop() {
				if errs := set.CheckColumns(tables); len(errs) != 0 {
					b.Fatal(errs)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/check")
		})
	}
}

// BenchmarkGroupMemory measures the heap the issue's two rules (the README's) keep per
// SKU, one group of each, over 200,000 SKUs ("SKU-00000042"): the state that grows with
// the catalogue, apart from what waits for the brokers (docs/operations.md, Memory). A
// group holds its key and sums, not its rows, so the SKU's number of shard rows does not
// change it.
func BenchmarkGroupMemory(b *testing.B) {
	const skus = 200000
	liveHeap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	var perSKU float64
	for b.Loop() {
		b.StopTimer()
		before := liveHeap()
		b.StartTimer()
		e := NewEngine(mustParse(b, issueRules), 1)
		var out discard
		for i := range skus {
			c := ins(fmt.Sprintf("SKU-%08d", i), 0, 5)
			c.Source = src(0)
			if err := e.Row(context.Background(), c, &out); err != nil {
				b.Fatal(err)
			}
			if i%1000 == 999 {
				if _, err := e.Commit(context.Background(), canal.Position{File: "binlog.000003", Pos: uint32(i)}, &out); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.StopTimer()
		perSKU = (float64(liveHeap()) - float64(before)) / skus
		runtime.KeepAlive(e)
		b.StartTimer()
	}
	b.ReportMetric(perSKU, "heap-bytes/SKU")
}
