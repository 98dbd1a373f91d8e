package rules

import (
	"fmt"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/stocksync/stocksync/canal"
)

// TestRulesEvalFailuresLoggedAlike: a transition value that fails at run time is counted
// and logged as a when or a field that fails is: naming the rule, the expression and the
// error, and no more than the first 100 of all failures.
func TestRulesEvalFailuresLoggedAlike(t *testing.T) {
	e := newTestEngine(mustParse(t, `
rules:
  - name: cond
    match: {table: inventory.sellable_shard, when: "after.qty > 1"}
    topic: rows
  - name: flag
    match: {table: inventory.sellable_shard}
    emit: transition
    group_by: [sku_id]
    sum: {sellable: qty}
    value: "sellable > 0 ? 1 / 0 > 1 : sku_id + 1"
    topic: flags
`))
	core, logs := observer.New(zapcore.WarnLevel)
	e.SetLogger(zap.New(core))
	// qty NULL: the when fails; the group's value fails (a string plus a number).
	txn(t, e, &canal.RowChange{Op: canal.OpCreate, Table: shardTable, After: []any{"A1", int64(0), nil}})
	var whenLog, valueLog map[string]any
	for _, entry := range logs.All() {
		fields := entry.ContextMap()
		if entry.Message != "rule expression failed" {
			t.Errorf("logged %q", entry.Message)
		}
		switch fields["rule"] {
		case "cond":
			whenLog = fields
		case "flag":
			valueLog = fields
		}
	}
	if whenLog == nil || whenLog["expression"] != "match.when" || whenLog["table"] != "inventory.sellable_shard" || whenLog["error"] == nil {
		t.Errorf("the when's failure: %v", whenLog)
	}
	if valueLog == nil || valueLog["expression"] != "value" || !strings.Contains(fmt.Sprint(valueLog["error"]), `group {"sku_id":"A1"}`) {
		t.Errorf("the value's failure: %v (every log: %v)", valueLog, logs.All())
	}
	for i := range 200 {
		txn(t, e, &canal.RowChange{Op: canal.OpCreate, Table: shardTable, After: []any{fmt.Sprint("B", i), int64(0), nil}})
	}
	if logs.Len() != maxEvalFailureLogs || e.EvalErrors() <= maxEvalFailureLogs {
		t.Errorf("%d failures logged of %d, want the first %d", logs.Len(), e.EvalErrors(), maxEvalFailureLogs)
	}
}

// TestLogEveryFailureLogsPastTheFirst100: an engine told LogEveryFailure (`rules test`'s)
// logs each failure, past the 100 the daemon's logs.
func TestLogEveryFailureLogsPastTheFirst100(t *testing.T) {
	e := newTestEngine(mustParse(t, "rules:\n  - name: cond\n    match: {table: inventory.sellable_shard, when: \"after.qty > 1\"}\n    topic: rows\n"))
	core, logs := observer.New(zapcore.WarnLevel)
	e.SetLogger(zap.New(core))
	e.LogEveryFailure()
	for i := range 150 {
		txn(t, e, &canal.RowChange{Op: canal.OpCreate, Table: shardTable, After: []any{fmt.Sprint("B", i), int64(0), nil}})
	}
	if logs.Len() != 150 || e.EvalErrors() != 150 {
		t.Errorf("%d failures logged of %d, want all 150", logs.Len(), e.EvalErrors())
	}
}

// TestRepeatRefusesAResultOverTheMemoryBudgetBeforeMakingIt: expr's own repeat(s, n)
// allocates len(s)·n bytes before charging them to the expression's budget, so
// repeat(row.note, 1000000) over a 5 KB note asked for 5 GB and killed the daemon at that
// row after every restart. The rules' repeat works as expr's under the budget and fails,
// as any expression may (the field null, counted and logged), before allocating over it.
func TestRepeatRefusesAResultOverTheMemoryBudgetBeforeMakingIt(t *testing.T) {
	e := newTestEngine(mustParse(t, `
rules:
  - name: banner
    match: {table: inventory.sellable_shard, when: "repeat(row.sku_id, 2) == 'A1A1'"}
    fields: {small: 'repeat(row.sku_id, 3)', big: 'repeat(row.sku_id, 1000000)'}
    topic: rows
`))
	core, logs := observer.New(zapcore.WarnLevel)
	e.SetLogger(zap.New(core))
	msgs, _ := txn(t, e, &canal.RowChange{Op: canal.OpCreate, Table: shardTable, After: []any{"A1", int64(0), int64(5)}})
	if len(msgs) != 1 || !strings.Contains(msgs[0], `"small":"A1A1A1"`) || !strings.Contains(msgs[0], `"big":null`) {
		t.Fatalf("messages %v, want one with small A1A1A1 and big null", msgs)
	}
	if e.EvalErrors() != 1 || logs.Len() != 1 || !strings.Contains(fmt.Sprint(logs.All()[0].ContextMap()["error"]), "repeat: 1000000 times 2 bytes is over the 1000000 bytes an expression may make") {
		t.Errorf("%d eval errors, logged %v; want the big field's, naming the size", e.EvalErrors(), logs.All())
	}
}
