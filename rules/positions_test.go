package rules

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stocksync/stocksync/canal"
)

// placeOf is "line:col" of the first occurrence of token on the first line of src holding
// mark (mark "" means token's own line), counted in runes from 1.
func placeOf(t *testing.T, src, mark, token string) string {
	t.Helper()
	if mark == "" {
		mark = token
	}
	for i, line := range strings.Split(src, "\n") {
		if !strings.Contains(line, mark) {
			continue
		}
		if j := strings.Index(line, token); j >= 0 {
			return fmt.Sprintf("%d:%d", i+1, len([]rune(line[:j]))+1)
		}
	}
	t.Fatalf("no %q on a line with %q", token, mark)
	return ""
}

// TestRulesExpressionErrorPositions: a problem in an expression is reported at its line
// and column in the file, whatever the style of the YAML scalar holding the expression;
// when the place cannot be told, at the scalar, with the place inside the expression.
func TestRulesExpressionErrorPositions(t *testing.T) {
	rule := func(when string) string {
		return "rules:\n  - name: cond\n    match:\n      table: shop.stock\n      when: " + when + "\n    topic: t\n"
	}
	for _, tc := range []struct {
		name, src, mark, token, msg string
		after                       bool // the place just after token
	}{
		{name: "literal", src: rule("|\n        after.qty > 0 &&\n          before.qty > nope"), token: "nope", msg: "unknown name nope"},
		{name: "literal, strip", src: rule("|-\n        after.qty > 0 &&\n          before.qty > nope"), token: "nope", msg: "unknown name nope"},
		{name: "literal, keep", src: rule("|+\n        after.qty > 0 &&\n\n          before.qty > nope\n"), token: "nope", msg: "unknown name nope"},
		{name: "literal, comment after the indicator", src: rule("| # stock falls\n        after.qty > 0 && nope"), token: "nope", msg: "unknown name nope"},
		{name: "folded", src: rule(">-\n        after.qty > 0 &&\n        before.qty > 0 &&\n           nope > 1"), token: "nope", msg: "unknown name nope"},
		{name: "folded, blank line", src: rule(">\n        after.qty > 0 &&\n\n        nope > 1"), token: "nope", msg: "unknown name nope"},
		{name: "plain, two lines", src: rule("after.qty > 0 &&\n        nope > 1"), token: "nope", msg: "unknown name nope"},
		{name: "double-quoted, escapes", src: rule(`"after.s == \"a\" && row.s != \"\u00e9\" && nope"`), token: "nope", msg: "unknown name nope"},
		{name: "double-quoted, two lines and an escaped break", src: rule("\"after.qty > 0 &&\n        before.qty > \\\n        nope\""), token: "nope", msg: "unknown name nope"},
		{name: "single-quoted, quotes", src: rule(`'after.s == ''a'' && nope'`), token: "nope", msg: "unknown name nope"},
		{name: "flow mapping", src: "rules:\n  - {name: cond, match: {table: shop.stock, when: \"after.qty > nope\"}, topic: t}\n", token: "nope", msg: "unknown name nope"},
		{name: "syntax error at the end", src: rule("|\n        after.qty > 0 &&\n        (before.qty > 1"), mark: "(before", token: "1", msg: "unexpected token EOF", after: true},
		{name: "transition value", src: "rules:\n  - name: flag\n    match: {table: inventory.sellable_shard}\n    emit: transition\n    group_by: [sku_id]\n    sum: {sellable: qty}\n    value: |\n      sellable > 0 &&\n        stock > 1\n    topic: t\n", token: "stock", msg: "unknown name stock"},
		{name: "computed field", src: "rules:\n  - name: f\n    match: {table: shop.stock}\n    fields:\n      total: >-\n        after.qty *\n        price\n    topic: t\n", token: "price", msg: "unknown name price"},
	} {
		_, err := Parse("r.yaml", []byte(tc.src))
		want := "r.yaml:" + placeOf(t, tc.src, tc.mark, tc.token) + ":"
		if tc.after {
			var line, col int
			fmt.Sscanf(placeOf(t, tc.src, tc.mark, tc.token), "%d:%d", &line, &col)
			want = fmt.Sprintf("r.yaml:%d:%d:", line, col+len(tc.token))
		}
		if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), tc.msg) || strings.Contains(err.Error(), "in the expression at") {
			t.Errorf("%s: got %v, want %s … %s", tc.name, err, want, tc.msg)
		}
		// an unknown name is told what the expression sees instead
		if hint := map[string]string{"nope": "a column is after.nope, before.nope or row.nope", "price": "a column is after.price",
			"stock": "value sees the rule's group_by columns and sum fields: sku_id, sellable"}[tc.token]; err != nil && hint != "" && !strings.Contains(err.Error(), hint) {
			t.Errorf("%s: got %v, want the hint %q", tc.name, err, hint)
		}
	}

	// An anchor (or a tag) comes before the scalar: the scalar's place, and the place in
	// the expression.
	src := rule("&w \"after.qty > 0 &&\n        nope\"")
	_, err := Parse("r.yaml", []byte(src))
	if want := "r.yaml:" + placeOf(t, src, "", "&w") + `: rule "cond": match.when: unknown name nope (in the expression at line 1, column 18)` +
		` (a row expression sees before, after, row, op, schema, table and changed("col"); a column is after.nope, before.nope or row.nope)`; err == nil || err.Error() != want {
		t.Errorf("anchored: got %v, want %s", err, want)
	}
	// a known name failing for another reason gets no hint
	if _, err := Parse("r.yaml", []byte(rule(`"op"`))); err == nil || !strings.HasSuffix(err.Error(), "match.when: expected bool, but got string") {
		t.Errorf("when: op: got %v, want only the type error", err)
	}
}

// TestRulesLiveColumnPositions: a column a table lacks is reported where the expression
// names it.
func TestRulesLiveColumnPositions(t *testing.T) {
	src := "rules:\n  - name: cond\n    match:\n      table: shop.stock_1\n      when: |\n        after.qty > 0 &&\n          changed(\"qty\") && after.nope > 1\n    topic: t\n"
	errs := mustParse(t, src).CheckTables([]TableInfo{{Schema: "shop", Name: "stock_1", Columns: stockTable.Columns}})
	want := "rules.yaml:" + placeOf(t, src, "", "nope") + `: rule "cond": table shop.stock_1 has no column "nope" (its columns: sku_id, qty)`
	if len(errs) != 1 || errs[0].Error() != want {
		t.Errorf("got %v, want %s", errs, want)
	}
}

// TestRulesLiveTypes: over a live table's column types, an expression that would fail at
// every row (a number column compared with a string, a when that is not a boolean, a sum
// compared with a string) is reported where it goes wrong, once for all the tables the
// rule matches; what only NULL breaks, and what the types allow, is not.
func TestRulesLiveTypes(t *testing.T) {
	src := `rules:
  - name: cond
    match: {table: "shop.stock_*", when: 'after.qty > "5"'}
    fields: {sku: sku_id, n: "after.qty", bad: "after.sku_id * 2", fine: "(after.qty ?? 0) > 1.5 && after.sku_id startsWith 'A'"}
    topic: t
  - name: flag
    match: {table: "shop.stock_*", when: "after.qty"}
    topic: t
  - name: avail
    match: {table: "shop.stock_*"}
    emit: transition
    group_by: [sku_id]
    sum: {sellable: qty}
    value: "sellable > '0'"
    topic: t
`
	two := []TableInfo{{Schema: "shop", Name: "stock_1", Columns: stockTable.Columns}, {Schema: "shop", Name: "stock_2", Columns: stockTable.Columns}}
	errs := mustParse(t, src).CheckTables(two)
	var got []string
	for _, err := range errs {
		got = append(got, err.Error())
	}
	want := []string{
		"rules.yaml:" + placeOf(t, src, `'after.qty > "5"'`, ">") + `: rule "cond", over table shop.stock_1: match.when: invalid operation: > (mismatched types int64 and string)`,
		"rules.yaml:" + placeOf(t, src, `bad: "after.sku_id * 2"`, "*") + `: rule "cond", over table shop.stock_1: fields.bad: invalid operation: * (mismatched types string and int)`,
		"rules.yaml:" + placeOf(t, src, `"after.qty"}`, `"after.qty"`) + `: rule "flag", over table shop.stock_1: match.when: expected bool, but got int64`,
		"rules.yaml:" + placeOf(t, src, `"sellable > '0'"`, ">") + `: rule "avail", over table shop.stock_1: value: invalid operation: > (mismatched types int64 and string)`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestRulesLiveColumnMissingTwice: a column a table lacks, named in fields and in key, is
// reported at both places, so that one run lists every place to mend.
func TestRulesLiveColumnMissingTwice(t *testing.T) {
	src := "rules:\n  - name: r\n    match: {table: shop.stock_1}\n    fields: [sku_id, gone]\n    key: [gone]\n    topic: t\n"
	errs := mustParse(t, src).CheckTables([]TableInfo{{Schema: "shop", Name: "stock_1", Columns: stockTable.Columns}})
	if len(errs) != 2 || !strings.HasPrefix(errs[0].Error(), "rules.yaml:4:") || !strings.HasPrefix(errs[1].Error(), "rules.yaml:5:") {
		t.Errorf("got %v, want the missing column at line 4 and at line 5", errs)
	}
}

// TestRulesLiveTypesOfUnsignedAndJSONColumns: an unsigned or BIT column is a number to the
// type check and a JSON column a string, as expressions see them at run time.
func TestRulesLiveTypesOfUnsignedAndJSONColumns(t *testing.T) {
	cols := []canal.Column{{Name: "id", Kind: canal.KindUint}, {Name: "flags", Kind: canal.KindBit}, {Name: "doc", Kind: canal.KindJSON}}
	for _, tc := range []struct{ when, want string }{
		{`after.id > "5"`, "mismatched types int64 and string"},
		{`after.flags == "1"`, "mismatched types int64 and string"},
		{`after.doc > 5`, "mismatched types string and int"},
		{`after.id % 2 == 0 && after.flags > 0 && after.doc contains "x"`, ""},
	} {
		set := mustParse(t, "rules:\n  - {name: r, match: {table: shop.u, when: '"+tc.when+"'}, topic: t}\n")
		errs := set.CheckTables([]TableInfo{{Schema: "shop", Name: "u", Columns: cols}})
		if tc.want == "" && len(errs) != 0 || tc.want != "" && (len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.want)) {
			t.Errorf("%s: got %v, want %q", tc.when, errs, tc.want)
		}
	}
}
