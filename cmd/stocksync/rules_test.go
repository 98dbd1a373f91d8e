package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// runRulesCLI runs `stocksync rules ARGS…` in this process and returns its stdout,
// stderr and error.
func runRulesCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRootCmd()
	root.SetArgs(append([]string{"rules"}, args...))
	root.SetOut(&out)
	root.SetErr(&errOut)
	err = root.Execute()
	return out.String(), errOut.String(), err
}

// TestRulesTestShowsRunTimeFailures: `rules test` prints each failure of a rule at run
// time on stderr, naming rule, expression and error, rather than only a null.
func TestRulesTestShowsRunTimeFailures(t *testing.T) {
	dir := t.TempDir()
	rulesFile, events := filepath.Join(dir, "rules.yaml"), filepath.Join(dir, "events.json")
	writeFile(t, rulesFile, `rules:
  - name: f
    match: {table: shop.stock}
    fields: {sku: sku_id, big: "row.qty > 1"}
    topic: "t.{sku_id}"
`)
	writeFile(t, events, `[{"schema":"shop","table":"stock","op":"insert","after":{"sku_id":"A1","qty":null}},
 {"schema":"shop","table":"stock","op":"insert","after":{"sku_id":"A 1","qty":2}}]`)
	stdout, stderr, err := runRulesCLI(t, "test", rulesFile, "--event", events)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if len(lines) != 2 ||
		!strings.Contains(lines[0], `rule expression failed {"rule": "f", "table": "shop.stock", "expression": "fields.big", "error": "invalid operation: <nil> > int`) ||
		!strings.Contains(lines[1], `rule expression failed {"rule": "f", "table": "shop.stock", "expression": "topic", "error": "{sku_id} is \"A 1\": ' ' is not allowed in a Kafka topic name`) {
		t.Errorf("stderr:\n%s", stderr)
	}
	if !strings.Contains(stdout, `"big": null`) || strings.Count(stdout, "--- message") != 1 || !strings.Contains(stdout, "# 2 rule evaluations failed at run time") {
		t.Errorf("stdout:\n%s", stdout)
	}
}
