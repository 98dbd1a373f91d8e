package rules

import (
	"testing"

	"github.com/expr-lang/expr/vm"

	"github.com/stocksync/stocksync/canal"
)

// TestFastWhenAgreesWithTheStructEnvironment evaluates conditions every way over inserts,
// updates and deletes: the flat program, and the closures where they decide, must give
// the same answer as the validating struct program, errors included.
func TestFastWhenAgreesWithTheStructEnvironment(t *testing.T) {
	table := &canal.Table{Schema: "shop", Name: "stock", Columns: []canal.Column{
		{Name: "sku_id", Kind: canal.KindString}, {Name: "qty", Kind: canal.KindInt}, {Name: "price", Kind: canal.KindDecimal},
		{Name: "big", Kind: canal.KindUint}, {Name: "note", Kind: canal.KindBytes}, {Name: "ratio", Kind: canal.KindFloat}},
		PrimaryKey: []int{0}}
	changes := []*canal.RowChange{
		{Op: canal.OpCreate, Table: table, After: []any{"A", int64(5), "10.50", uint64(7), []byte("hi"), 0.5}},
		{Op: canal.OpUpdate, Table: table, Before: []any{"A", int64(5), "10.50", uint64(7), []byte("hi"), 0.5},
			After: []any{"A", int64(0), "12.00", uint64(1 << 63), nil, 2.0}},
		{Op: canal.OpUpdate, Table: table, Before: []any{"B", int64(1), "1.00", uint64(0), nil, nil},
			After: []any{"B", int64(70), "1.00", uint64(0), []byte("x"), nil}},
		{Op: canal.OpDelete, Table: table, Before: []any{"A", int64(0), "12.00", uint64(3), []byte("hi"), -1.5}},
		{Op: canal.OpRead, Table: table, After: []any{"C", nil, "bad", uint64(2), []byte{}, 3.0}},
	}
	conditions := []string{
		"after.qty < 2", "after.qty == 0 && before.qty > 0", `changed("price")`, `changed("nope")`, "after.qty - before.qty > 50",
		"after.price > 11.0", `row.sku_id == "A"`, `op == "delete"`, `table == "stock" && schema == "shop"`,
		"after.nope == nil", "row.qty >= 5 || before.qty == 1", `op in ["insert", "update"]`, `row.sku_id not in ["A", "C"]`,
		"row.qty in [0, 5, 70]", "row.qty / 2 > 1", "row.qty % 2 == 1", "row.qty * row.ratio >= 2.5", "-row.qty < -1",
		`row.sku_id startsWith "A" or row.note contains "x"`, `row.note endsWith "i"`, "row.big > 5", "row.big == row.big",
		`row.qty > 1 ? row.price < 11 : row.ratio > 0`, "not (row.qty == 5)", "row.qty < row.price", "row.qty == row.sku_id",
		"row.qty < 3", "row.ratio < 1", `row.sku_id < "B"`, "row.price != nil", "row.qty % 0 == 1", "row.qty + 1 > 5",
		`row.sku_id + "x" == "Ax"`, "before.qty == nil", "row.qty in 1..10", `row.note == "hi"`, "(after.qty ?? 0) > 0", `(row.ratio ?? "x") == "x"`,
		"2 > after.qty", "11.5 <= row.price", "row.ratio >= 2", "row.sku_id > 1", "before.price < 5", "row.note < 1",
	}
	closures := 0
	for _, src := range conditions {
		fast, names := compileFastWhen(src)
		if fast == nil {
			t.Errorf("%s: no fast program", src)
			continue
		}
		fn := compileWhenFunc(fast.Node(), table)
		if fn != nil {
			closures++
		}
		set := mustParse(t, "rules:\n  - name: r\n    match: {table: \"shop.stock\", when: '"+src+"'}\n    topic: t\n")
		slow := set.rules[0].when
		for _, c := range changes {
			e := NewEngine(set, 1)
			e.cur = c
			plan := e.plan(table)
			e.prepareFlat(c, plan)
			e.prepareEnv(c, plan.rules[0].table)
			e.env.Row = e.currentImage()
			var m vm.VM
			got, err1 := m.Run(fast, e.flat)
			want, err2 := m.Run(slow, &e.env)
			if (err1 == nil) != (err2 == nil) || got != want {
				t.Errorf("%s on %c (names %v): fast %v (%v), struct %v (%v)", src, c.Op, names, got, err1, want, err2)
			}
			if fn == nil {
				continue
			}
			if match, ok := fn(c); ok && (err2 != nil || match != want) {
				t.Errorf("%s on %c: closures decided %v, struct program %v (%v)", src, c.Op, match, want, err2)
			}
		}
	}
	if closures < len(conditions)-2 {
		t.Errorf("only %d of %d conditions compiled to closures", closures, len(conditions))
	}
	if p, _ := compileFastWhen("after != nil"); p != nil {
		t.Error("an image used whole must keep the struct program")
	}
}

// TestWhenClosuresDecideThePlainCases checks that plain conditions are decided by the
// closures, not handed back to the expression program.
func TestWhenClosuresDecideThePlainCases(t *testing.T) {
	table := &canal.Table{Schema: "shop", Name: "stock", Columns: []canal.Column{
		{Name: "sku_id", Kind: canal.KindString}, {Name: "qty", Kind: canal.KindInt}, {Name: "price", Kind: canal.KindDecimal}}}
	c := &canal.RowChange{Op: canal.OpUpdate, Table: table, Before: []any{"A", int64(5), "10.50"}, After: []any{"A", int64(0), "12.00"}}
	for src, want := range map[string]bool{
		"after.qty == 0 && before.qty > 0": true, `changed("price")`: true, "after.price > 999.0": false,
		`op in ["update", "delete"]`: true, "(before.qty ?? 0) > 4": true, "after.qty - before.qty > 50": false, `row.sku_id == "B"`: false,
	} {
		fast, _ := compileFastWhen(src)
		fn := compileWhenFunc(fast.Node(), table)
		if fn == nil {
			t.Errorf("%s: not compiled to closures", src)
			continue
		}
		if match, ok := fn(c); !ok || match != want {
			t.Errorf("%s: closures gave %v (decided %v), want %v", src, match, ok, want)
		}
	}
}
