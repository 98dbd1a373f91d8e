package rules

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stocksync/stocksync/canal"
)

// opsTable has columns named like the names row expressions see.
var opsTable = &canal.Table{
	Schema:     "shop",
	Name:       "audit",
	Columns:    []canal.Column{{Name: "id", Kind: canal.KindInt}, {Name: "op", Kind: canal.KindString}, {Name: "table", Kind: canal.KindString}, {Name: "true", Kind: canal.KindInt}},
	PrimaryKey: []int{0},
}

// TestRulesFieldsNamedLikeExpressionNames: an item of a list of fields is a column,
// whatever its name; in the fields mapping op, table… are the expression's names, a
// column of such a name is row.op, and rules validate --live refuses a mapping value that
// could mean either.
func TestRulesFieldsNamedLikeExpressionNames(t *testing.T) {
	set := mustParse(t, `
rules:
  - name: listed
    match: {table: shop.audit}
    fields: [id, op, table, "true"]
    topic: listed
  - name: mapped
    match: {table: shop.audit}
    fields: {id: id, kind: $env.op, op_column: row.op, yes: (true), true_column: row.true}
    topic: mapped
`)
	e := newTestEngine(set)
	var out recorder
	if err := e.Row(t.Context(), &canal.RowChange{Op: canal.OpCreate, Table: opsTable, After: []any{int64(1), "refund", "orders", int64(7)}, Source: src(0)}, &out); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`{"op":"c","before":null,"after":{"id":1,"op":"refund","table":"orders","true":7}}`,
		`{"op":"c","before":null,"after":{"id":1,"kind":"insert","op_column":"refund","yes":true,"true_column":7}}`,
	}
	if len(out.msgs) != 2 {
		t.Fatalf("%d messages", len(out.msgs))
	}
	for i, m := range out.msgs {
		if got := afterOf(string(m.Value)); got != want[i] {
			t.Errorf("%s:\n got %s\nwant %s", m.Topic, got, want[i])
		}
	}
	if errs := set.CheckTables([]TableInfo{{Schema: "shop", Name: "audit", Columns: opsTable.Columns}}); len(errs) != 0 {
		t.Errorf("CheckTables: %v", errs)
	}

	ambiguous := mustParse(t, "rules:\n  - name: m\n    match: {table: shop.audit}\n    fields: {id: id, kind: op, at: table, yes: true, t: schema}\n    topic: m\n")
	var got []string
	for _, err := range ambiguous.CheckTables([]TableInfo{{Schema: "shop", Name: "audit", Columns: opsTable.Columns}}) {
		got = append(got, err.Error())
	}
	wantErrs := []string{
		`rules.yaml:4:28: rule "m": fields.kind: op means the expression name op, not the column op of table shop.audit: write row.op for the column, or $env.op for the expression name`,
		`rules.yaml:4:36: rule "m": fields.at: table means the expression name table, not the column table of table shop.audit: write row.table for the column, or $env.table for the expression name`,
		`rules.yaml:4:48: rule "m": fields.yes: true means the expression name true, not the column true of table shop.audit: write row.true for the column, or (true) for the expression name`,
	}
	if strings.Join(got, "\n") != strings.Join(wantErrs, "\n") {
		t.Errorf("CheckTables:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantErrs, "\n"))
	}
}

// TestRulesCheckTablesInFileOrder: rules validate --live lists its problems by their
// place in the file, whatever rule, table or kind of problem they come from.
func TestRulesCheckTablesInFileOrder(t *testing.T) {
	set := mustParse(t, `rules:
  - name: r
    fields: [gone]
    match: {table: ["shop.*", "none.x"], when: "after.missing > 1"}
    topic: t
  - name: s
    match: {table: "shop.*"}
    fields: [id, lost]
    topic: u
`)
	errs := set.CheckTables([]TableInfo{{Schema: "shop", Name: "a", Columns: []canal.Column{{Name: "id"}}}, {Schema: "shop", Name: "b", Columns: []canal.Column{{Name: "gone"}}}})
	var got []string
	for _, err := range errs {
		at := err.(Error).Pos
		got = append(got, fmt.Sprintf("%d:%d", at.Line, at.Col))
	}
	if want := "3:14 4:31 4:55 4:55 8:14 8:18 8:18"; strings.Join(got, " ") != want {
		t.Errorf("places %s, want %s:\n%v", strings.Join(got, " "), want, errs)
	}
}

// TestColumnsHintNamesAWideTablesFirstColumns: a missing column's message lists the
// table's columns, cut short for a wide table.
func TestColumnsHintNamesAWideTablesFirstColumns(t *testing.T) {
	if got := columnsHint("nope", stockTable.Columns); got != "its columns: sku_id, qty" {
		t.Errorf("columnsHint: %s", got)
	}
	wide := make([]canal.Column, maxColumnsShown+5)
	for i := range wide {
		wide[i].Name = fmt.Sprintf("c%d", i)
	}
	got := columnsHint("nope", wide)
	if !strings.HasPrefix(got, "its columns: c0, c1, ") || !strings.HasSuffix(got, fmt.Sprintf(", c%d, … (%d in all)", maxColumnsShown-1, maxColumnsShown+5)) {
		t.Errorf("columnsHint of %d columns: %s", len(wide), got)
	}
}

// TestMisspeltNamesAreNamed: a name one or two letters away from a name the expression
// sees, or from a column of the table, is offered as what was meant; a name far from all
// of them is not.
func TestMisspeltNamesAreNamed(t *testing.T) {
	for _, tc := range []struct{ expr, want string }{
		{"befor.qty > 0", "unknown name befor (did you mean before? "},
		{"aftr.qty > 0", "unknown name aftr (did you mean after? "},
		{`chnaged("qty")`, "unknown name chnaged (did you mean changed? "},
		{"lenn(after.sku_id) > 2", "unknown name lenn (did you mean len? "},
		{"qty > 0", "unknown name qty (a row expression sees "},
	} {
		_, err := Parse("rules.yaml", []byte("rules:\n  - name: r\n    match: {table: shop.stock_1, when: '"+tc.expr+"'}\n    topic: t\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.expr, err, tc.want)
		}
	}
	_, err := Parse("rules.yaml", []byte("rules:\n  - {name: r, match: {table: shop.stock_1}, topic: t, emit: transition, group_by: [sku_id], sum: {sellable: qty}, value: 'selable > 0'}\n"))
	if err == nil || !strings.Contains(err.Error(), "unknown name selable (did you mean sellable? value sees") {
		t.Errorf("transition value: got %v", err)
	}
	for _, tc := range []struct {
		a, b string
		want int
	}{{"qty", "qty", 0}, {"qyt", "qty", 1}, {"befor", "before", 1}, {"chnaged", "changed", 1}, {"", "ab", 2}, {"sku", "qty", 3}, {"ab", "ba", 1}} {
		if got := editDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

// TestComputedFieldsOfEveryTypeAreJSON: a computed field is written as JSON of its
// value's type, whatever expr function gave it: a list (split, a range) as an array, a
// map (groupBy) as an object, a time (date) as RFC 3339 in UTC and a duration as a TIME
// column's text, as topics.md writes columns of those types; canal writes each as one
// JSON string, a list as its JSON text (as a JSON column), a time as its text, never
// quoted twice.
func TestComputedFieldsOfEveryTypeAreJSON(t *testing.T) {
	fields := `{parts: 'split(row.sku, "-")', day: 'date("2024-01-02")', took: 'date("2024-01-02T10:30:00.25Z") - date("2024-01-02")', ` +
		`late: 'date("2024-01-01") - date("2024-01-05T01:00:00Z")', odd: 'groupBy([1, 2, 3], # % 2)', span: '1..3'}`
	want := map[string]string{
		"debezium": `{"parts":["A","1"],"day":"2024-01-02T00:00:00Z","took":"10:30:00.25","late":"-97:00:00","odd":{"0":[2],"1":[1,3]},"span":[1,2,3]}`,
		"maxwell":  `{"parts":["A","1"],"day":"2024-01-02T00:00:00Z","took":"10:30:00.25","late":"-97:00:00","odd":{"0":[2],"1":[1,3]},"span":[1,2,3]}`,
		"canal":    `{"parts":"[\"A\",\"1\"]","day":"2024-01-02T00:00:00Z","took":"10:30:00.25","late":"-97:00:00","odd":"{\"0\":[2],\"1\":[1,3]}","span":"[1,2,3]"}`,
	}
	tbl := &canal.Table{Schema: "shop", Name: "s", PrimaryKey: []int{0}, Columns: []canal.Column{
		{Name: "id", Kind: canal.KindInt}, {Name: "sku", Kind: canal.KindString}}}
	for _, format := range []string{"debezium", "maxwell", "canal"} {
		set := mustParse(t, "rules:\n  - name: f\n    match: {table: shop.s}\n    topic: t\n    format: "+format+"\n    fields: "+fields+"\n")
		e := newTestEngine(set)
		var out recorder
		if err := e.Row(t.Context(), &canal.RowChange{Op: canal.OpCreate, Table: tbl, After: []any{int64(1), "A-1"}, Source: src(0)}, &out); err != nil {
			t.Fatal(err)
		}
		if e.EvalErrors() != 0 || len(out.msgs) != 1 {
			t.Fatalf("%s: %d eval errors, %d messages", format, e.EvalErrors(), len(out.msgs))
		}
		var msg map[string]json.RawMessage
		if err := json.Unmarshal(out.msgs[0].Value, &msg); err != nil {
			t.Fatalf("%s: %v: %s", format, err, out.msgs[0].Value)
		}
		image := msg["after"]
		switch format {
		case "maxwell":
			image = msg["data"]
		case "canal":
			image = msg["data"][1 : len(msg["data"])-1]
		}
		if string(image) != want[format] {
			t.Errorf("%s:\n got %s\nwant %s", format, image, want[format])
		}
	}
}

// TestDurationText: a duration is written as the server writes a TIME value.
func TestDurationText(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                                    "00:00:00",
		90 * time.Minute:                     "01:30:00",
		-90 * time.Second:                    "-00:01:30",
		100*time.Hour + 500*time.Millisecond: "100:00:00.5",
		time.Second + time.Nanosecond:        "00:00:01.000000001",
		time.Duration(math.MinInt64):         "-2562047:47:16.854775808",
	} {
		if got := durationText(d); got != want {
			t.Errorf("durationText(%v) = %q, want %q", d, got, want)
		}
	}
}
