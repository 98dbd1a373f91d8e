package rules

import (
	"errors"
	"strings"
	"testing"

	"github.com/stocksync/stocksync/canal"
)

// TestParsePartialKeepsRulesWithoutProblems: ParsePartial returns, beside every problem,
// the rules that have none (so `rules validate --live` can check their columns in the
// same run), while Parse still refuses the file whole.
func TestParsePartialKeepsRulesWithoutProblems(t *testing.T) {
	const src = `rules:
  - name: syntax
    match: {table: shop.a, when: "after.qty >"}
    topic: a
  - name: structure
    match: {table: shop.b}
    emit: sometimes
    topic: b
  - name: good
    match: {table: shop.c}
    topic: c
    key: [gone]
  - name: good
    match: {table: shop.d}
    topic: d
`
	if set, err := Parse("rules.yaml", []byte(src)); set != nil || err == nil {
		t.Fatalf("Parse: set %v, error %v; want no set and the problems", set, err)
	}
	set, err := ParsePartial("rules.yaml", []byte(src))
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 3 {
		t.Fatalf("ParsePartial: %v; want the 3 problems (when, emit, duplicate name)", err)
	}
	if set == nil {
		t.Fatal("ParsePartial: no set; want the rule without problems")
	}
	var names []string
	for _, r := range set.Rules() {
		names = append(names, r.Name())
	}
	if strings.Join(names, ",") != "good" || set.Rule("good").Tables()[0] != "shop.c" {
		t.Fatalf("ParsePartial kept %v (%v); want the first rule good only", names, set.Rule("good").Tables())
	}
	live := set.CheckTables([]TableInfo{{Schema: "shop", Name: "c", Columns: []canal.Column{{Name: "id"}}}})
	if len(live) != 1 || live[0].Error() != `rules.yaml:12:11: rule "good": table shop.c has no column "gone" (its columns: id)` {
		t.Errorf("CheckTables of the partial set: %v", live)
	}

	if set, err := ParsePartial("rules.yaml", []byte("rules:\n  - name: x\n    topic: t\n")); set != nil || err == nil {
		t.Errorf("ParsePartial of a file whose only rule has a problem: set %v, error %v; want no set", set, err)
	}
}
