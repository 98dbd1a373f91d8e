package rulefmt

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestParseKeepsPositionsAndTheSpineForm(t *testing.T) {
	f, err := Parse("rules.yaml", []byte(`rules:
  - name: stock-rows
    match: {table: "shop.stock_*", ops: [insert, update, delete]}
    topic: shop.stock
    key: [sku_id]
`))
	if err != nil {
		t.Fatal(err)
	}
	r := f.Rules[0]
	if r.Name.Value != "stock-rows" || r.Name.Pos.Line != 2 || len(r.Tables) != 1 || r.Tables[0].Value != "shop.stock_*" ||
		len(r.Ops) != 3 || r.Topic.Value != "shop.stock" || len(r.Key) != 1 || r.Key[0].Value != "sku_id" {
		t.Errorf("parsed %+v", r)
	}
	if r.Topic.Pos.Line != 4 || r.Topic.Pos.Col != 12 {
		t.Errorf("topic at %d:%d, want 4:12", r.Topic.Pos.Line, r.Topic.Pos.Col)
	}
}

func TestParseReportsEveryProblemWithItsPosition(t *testing.T) {
	_, err := Parse("r.yaml", []byte(`rules:
  - name: a
    match: {table: "x.y"}
    topic: t
    bogus: 1
  - name: b
    tpoic: t
`))
	var errs Errors
	if !errors.As(err, &errs) || len(errs) < 2 {
		t.Fatalf("want at least two errors, got %v", err)
	}
	text := err.Error()
	for _, want := range []string{"r.yaml:5:5", "bogus", "r.yaml:7:5", "tpoic"} {
		if !strings.Contains(text, want) {
			t.Errorf("errors lack %q:\n%s", want, text)
		}
	}
}

// TestParseSaysWhereAMisplacedKeyBelongs: a match key written beside match, or a rule key
// under it, is told where it goes.
func TestParseSaysWhereAMisplacedKeyBelongs(t *testing.T) {
	_, err := Parse("r.yaml", []byte(`rules:
  - name: a
    match: {table: "x.y", topic: t}
    ops: [insert]
`))
	text := fmt.Sprint(err)
	for _, want := range []string{"ops: unknown key (known: ", "; ops belongs under match: match: {ops: …}",
		"topic: unknown key (known: table, ops, when); topic is a key of the rule, beside match, not under it"} {
		if !strings.Contains(text, want) {
			t.Errorf("errors lack %q:\n%s", want, text)
		}
	}
}

func TestParseRefusesWhatIsNotARulesFile(t *testing.T) {
	for _, src := range []string{"rules: [\n", "- a\n", "rules: 3\n"} {
		if _, err := Parse("r.yaml", []byte(src)); err == nil || !strings.HasPrefix(err.Error(), "r.yaml:") {
			t.Errorf("%q: %v, want a positioned error", src, err)
		}
	}
}

func TestSplitTemplate(t *testing.T) {
	cases := map[string]string{
		"shop.stock":           "[{shop.stock false}]",
		"{schema}.stock":       "[{schema true} {.stock false}]",
		"a.{table}.{op}":       "[{a. false} {table true} {. false} {op true}]",
		"{sku_id}":             "[{sku_id true}]",
		"a}b":                  "error",
		"a{b":                  "error",
		"{1x}":                 "[{1x true}]",
		"{库存}.{sku-id}":        "[{库存 true} {. false} {sku-id true}]",
		"{}":                   "error",
		"{a{b}":                "error",
		"{schema}{table}-tail": "[{schema true} {table true} {-tail false}]",
	}
	for in, want := range cases {
		parts, err := SplitTemplate(in)
		got := fmt.Sprint(parts)
		if err != nil {
			got = "error"
		}
		if got != want {
			t.Errorf("SplitTemplate(%q) = %s, want %s", in, got, want)
		}
	}
	if CheckTemplate("") == nil {
		t.Error("an empty topic template passed")
	}
}

func TestIsIdent(t *testing.T) {
	for s, want := range map[string]bool{"sku_id": true, "_x": true, "A1": true, "1a": false, "": false, "a-b": false, "é": false} {
		if IsIdent(s) != want {
			t.Errorf("IsIdent(%q) = %v", s, !want)
		}
	}
}

// TestParseRulesFileOfOneDocumentIndentedWithSpaces: a second YAML document is refused
// at its start, whether it is valid YAML or not (yaml.v3 would read the first alone); a
// tab in the indentation is named, at its own line and column; a line indented too far
// is named at its own line, not at the start of its block (as yaml.v3 names it).
func TestParseRulesFileOfOneDocumentIndentedWithSpaces(t *testing.T) {
	const one = "rules:\n  - name: a\n    match: {table: \"x.y\"}\n    topic: t\n"
	for _, tc := range []struct{ name, src, want string }{
		{"second document", one + "---\nrules:\n  - name: b\n", "r.yaml:5:1: a rules file holds one YAML document"},
		{"second document, not valid YAML", one + "---\n: : bad [\n", "r.yaml:5:1: a rules file holds one YAML document"},
		{"second document after a leading marker", "# rules\n---\n" + one + "--- # more\nrules: []\n", "r.yaml:7:1: a rules file holds one YAML document"},
		{"empty second document", one + "---\n", "r.yaml:5:1: a rules file holds one YAML document"},
		{"tab before a key", "rules:\n  - name: a\n    match:\n\t  table: x\n", "r.yaml:4:1: a tab in the indentation: YAML indents with spaces"},
		{"tab after spaces", "rules:\n  - name: a\n  \t  match: x\n", "r.yaml:3:3: a tab in the indentation: YAML indents with spaces"},
		{"rule indented one space too far", one + "   - name: b\n", "r.yaml:5:1: not valid YAML: did not find expected '-' indicator"},
		{"key indented one space too far", "rules:\n  - name: a\n    match: {table: \"x.y\"}\n     topic: t\n", "r.yaml:4:1: not valid YAML: did not find expected key"},
	} {
		_, err := Parse("r.yaml", []byte(tc.src))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %s", tc.name, err, tc.want)
		}
	}
	for _, src := range []string{
		"---\n" + one,
		one + "...\n",
		"rules:\n  - name: a\n    match: {table: \"x.y\"}\n    topic: t\n    fields:\n      x: |\n        row.a +\n        \trow.b\n", // a tab inside a block scalar is text
	} {
		if _, err := Parse("r.yaml", []byte(src)); err != nil {
			t.Errorf("%q: %v", src, err)
		}
	}
}

// TestParseRefusesANameWrittenTwice: a column written twice in fields, key or group_by,
// and a transition's group_by column named value (beside its flag "value"), would be
// JSON objects with a name twice ({"sku_id":"A1","sku_id":"A1"}), which strict JSON
// readers refuse and others read as one. Each is refused at the second place, naming the
// first.
func TestParseRefusesANameWrittenTwice(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"rules:\n  - name: r\n    match: {table: shop.stock}\n    fields: [sku_id, qty, qty]\n    topic: t\n",
			`r.yaml:4:27: rule "r": fields: "qty" is written twice (first at line 4, column 22)`},
		{"rules:\n  - name: r\n    match: {table: shop.stock}\n    key: [sku_id, sku_id]\n    topic: t\n",
			`r.yaml:4:19: rule "r": key: "sku_id" is written twice (first at line 4, column 11)`},
		{"rules:\n  - name: a\n    match: {table: shop.stock}\n    emit: aggregate\n    group_by: [sku_id, sku_id]\n    sum: {s: qty}\n    topic: t\n",
			`r.yaml:5:24: rule "a": group_by: "sku_id" is written twice (first at line 5, column 16)`},
		{"rules:\n  - name: a\n    match: {table: shop.attrs}\n    emit: transition\n    group_by: [value]\n    sum: {n: qty}\n    value: \"n > 0\"\n    topic: t\n",
			`r.yaml:5:16: rule "a": group_by: "value": a transition's messages hold its flag under "value"`},
	} {
		_, err := Parse("r.yaml", []byte(tc.src))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %s…", tc.src, err, tc.want)
		}
	}
	// An aggregate's group_by may hold a column named value: its messages have no flag.
	if _, err := Parse("r.yaml", []byte("rules:\n  - name: a\n    match: {table: shop.attrs}\n    emit: aggregate\n    group_by: [value]\n    sum: {n: qty}\n    topic: t\n")); err != nil {
		t.Errorf("an aggregate grouped by a column named value: %v", err)
	}
}

// TestParseExpandsAliasesAndMergeKeys: YAML's aliases (*a) and merge keys (<<: *base),
// the way to write alike rules once, read as the values they name; a key the mapping
// writes itself wins over a merged one; a problem in a value used through an alias is
// reported where the value is written, once for each rule that uses it.
func TestParseExpandsAliasesAndMergeKeys(t *testing.T) {
	f, err := Parse("r.yaml", []byte(`rules:
  - &base
    name: a
    match: {table: &t "inventory.sellable_shard"}
    topic: t.a
    key: [sku_id]
  - name: b
    match: {table: *t}
    topic: t.b
  - <<: *base
    name: c
    topic: t.c
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Rules) != 3 {
		t.Fatalf("%d rules", len(f.Rules))
	}
	b, c := f.Rules[1], f.Rules[2]
	if len(b.Tables) != 1 || b.Tables[0].Value != "inventory.sellable_shard" || b.Tables[0].Pos != (Pos{4, 20}) {
		t.Errorf("rule b's table through an alias: %+v", b.Tables)
	}
	if c.Name.Value != "c" || c.Topic.Value != "t.c" || len(c.Tables) != 1 || c.Tables[0].Value != "inventory.sellable_shard" ||
		len(c.Key) != 1 || c.Key[0].Value != "sku_id" || c.Key[0].Pos != (Pos{6, 11}) {
		t.Errorf("rule c merged from a: name %q topic %q tables %+v key %+v", c.Name.Value, c.Topic.Value, c.Tables, c.Key)
	}

	_, err = Parse("r.yaml", []byte(`rules:
  - &base
    name: a
    match: {table: "shop stock"}
    topic: t
  - <<: *base
    name: b
`))
	want := `r.yaml:4:20: rule "a": match.table: "shop stock" must be schema.table (globs allowed, e.g. shop.stock_*)
r.yaml:4:20: rule "b": match.table: "shop stock" must be schema.table (globs allowed, e.g. shop.stock_*)`
	if err == nil || err.Error() != want {
		t.Errorf("a mistake in an anchored value: got\n%v\nwant\n%s", err, want)
	}
}

// TestParseRefusesAliasesThatCannotBeExpanded: an alias inside its own anchor's value,
// and aliases of aliases that would bring in more nodes than any rules file needs (the
// "billion laughs"), are refused at their place rather than expanded for ever.
func TestParseRefusesAliasesThatCannotBeExpanded(t *testing.T) {
	laughs := "rules:\n  - name: a\n    match: {table: shop.stock}\n    topic: t\n    x0: &x0 [a, a, a, a, a, a, a, a, a, a]\n"
	for i := 1; i <= 9; i++ {
		laughs += fmt.Sprintf("    x%d: &x%d [*x%[3]d, *x%[3]d, *x%[3]d, *x%[3]d, *x%[3]d, *x%[3]d, *x%[3]d, *x%[3]d, *x%[3]d, *x%[3]d]\n", i, i, i-1)
	}
	for _, tc := range []struct{ name, src, want string }{
		{"an alias inside its anchor", "rules: &r [*r]\n", "r.yaml:1:12: alias *r is inside the value of its own anchor &r"},
		{"a billion laughs", laughs, "aliases bring in more than 100000 YAML nodes"},
	} {
		_, err := Parse("r.yaml", []byte(tc.src))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %s", tc.name, err, tc.want)
		}
	}
}

// TestParseTakesEveryColumnNameMySQLTakes: MySQL column names may hold other characters
// than ASCII letters, digits and _ (库存, sku-id, menge_ü); sum, group_by, key and fields
// lists and template placeholders take them as they are, without backticks. What MySQL
// refuses (a space at the end, over 64 characters, beyond U+FFFF) and braces are refused.
func TestParseTakesEveryColumnNameMySQLTakes(t *testing.T) {
	f, err := Parse("r.yaml", []byte("rules:\n  - name: a\n    match: {table: inventory.stock}\n    emit: aggregate\n    group_by: [sku-id]\n    sum: {total: 库存}\n    topic: \"t.{sku-id}\"\n"+
		"  - name: b\n    match: {table: inventory.stock}\n    fields: [menge_ü, 库存]\n    key: \"{sku-id}/{仓库}\"\n    topic: t\n"))
	if err != nil {
		t.Fatal(err)
	}
	if a := f.Rules[0]; a.Sum[0].Expr.Value != "库存" || a.GroupBy[0].Value != "sku-id" {
		t.Errorf("rule a: %+v", a)
	}
	for _, name := range []string{"sku_id ", strings.Repeat("x", 65), "stock😀", "a{b", "a\x00b"} {
		if err := checkColumnName(name); err == nil {
			t.Errorf("%q taken as a column name", name)
		}
	}
	for _, name := range []string{"库存", "sku-id", "menge_ü", "1x", "qty * 2", strings.Repeat("库", 64)} {
		if err := checkColumnName(name); err != nil {
			t.Errorf("%q: %v", name, err)
		}
	}
}

// TestDuplicateNameTakenFromAnotherRuleIsReportedAtTheRuleThatTakesIt: a rule that takes
// its name through a merge key (<<: *stock) or an alias (name: *n) and writes none of its
// own duplicates the rule it takes it from; the problem is reported at the rule that takes
// it, saying how, not at the first rule's name as a duplicate of itself.
func TestDuplicateNameTakenFromAnotherRuleIsReportedAtTheRuleThatTakesIt(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"merge key", `rules:
  - &stock
    name: product-stock
    match: {table: "inventory.sellable_shard"}
    emit: aggregate
    group_by: [sku_id]
    sum: {sellable: qty}
    topic: product.stock
  - <<: *stock
    emit: transition
    value: "sellable > 0"
    topic: search.availability
`, `r.yaml:9:5: rule "product-stock" (rules[1]): name: taken through its merge key (<<) from line 3, and already the name of the rule at line 3: give this rule a name: of its own`},
		{"alias", `rules:
  - name: &n stock
    match: {table: shop.s}
    topic: t
  - name: *n
    match: {table: shop.s}
    topic: u
`, `r.yaml:5:5: rule "stock" (rules[1]): name: taken through an alias from line 2, and already the name of the rule at line 2: give this rule a name: of its own`},
		{"written twice", `rules:
  - {name: stock, match: {table: shop.s}, topic: t}
  - {name: stock, match: {table: shop.s}, topic: u}
`, `r.yaml:3:12: rule "stock": name: already the name of the rule at line 2 (each rule needs its own name)`},
	} {
		_, err := Parse("r.yaml", []byte(tc.src))
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s: got\n%v\nwant\n%s", tc.name, err, tc.want)
		}
	}
	// A rule that merges another's keys and writes its own name is fine.
	if _, err := Parse("r.yaml", []byte("rules:\n  - &s {name: a, match: {table: shop.s}, topic: t}\n  - {<<: *s, name: b}\n")); err != nil {
		t.Errorf("a merge with a name of its own: %v", err)
	}
}
