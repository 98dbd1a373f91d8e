package rules

import (
	"testing"

	"github.com/expr-lang/expr/vm"

	"github.com/stocksync/stocksync/canal"
)

// TestFastWhenAgreesWithTheStructEnvironment evaluates conditions both ways over inserts,
// updates and deletes: the flat program must give the same answer as the validating one.
func TestFastWhenAgreesWithTheStructEnvironment(t *testing.T) {
	table := &canal.Table{Schema: "shop", Name: "stock", Columns: []canal.Column{
		{Name: "sku_id", Kind: canal.KindString}, {Name: "qty", Kind: canal.KindInt}, {Name: "price", Kind: canal.KindDecimal}},
		PrimaryKey: []int{0}}
	changes := []*canal.RowChange{
		{Op: canal.OpCreate, Table: table, After: []any{"A", int64(5), "10.50"}},
		{Op: canal.OpUpdate, Table: table, Before: []any{"A", int64(5), "10.50"}, After: []any{"A", int64(0), "12.00"}},
		{Op: canal.OpUpdate, Table: table, Before: []any{"B", int64(1), "1.00"}, After: []any{"B", int64(70), "1.00"}},
		{Op: canal.OpDelete, Table: table, Before: []any{"A", int64(0), "12.00"}},
	}
	conditions := []string{
		"after.qty < 2", "after.qty == 0 && before.qty > 0", `changed("price")`, "after.qty - before.qty > 50",
		"after.price > 11.0", `row.sku_id == "A"`, `op == "delete"`, `table == "stock" && schema == "shop"`,
		"after.nope == nil", "row.qty >= 5 || before.qty == 1",
	}
	for _, src := range conditions {
		fast, names := compileFastWhen(src)
		if fast == nil {
			t.Errorf("%s: no fast program", src)
			continue
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
		}
	}
	if p, _ := compileFastWhen("after != nil"); p != nil {
		t.Error("an image used whole must keep the struct program")
	}
}
