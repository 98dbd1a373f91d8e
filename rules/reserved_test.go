package rules

import (
	"errors"
	"strings"
	"testing"
)

// TestCheckReservedTopics: a rule whose topic is the heartbeat or checkpoint topic, or a
// template that could be filled in as one, is refused at its topic's line, naming the
// rule and the config key (in an aggregate rule grouping by a column named op, {op} is
// that column's value, any value); a template whose literal text, ops or globs rule it
// out is not.
func TestCheckReservedTopics(t *testing.T) {
	set := mustParse(t, `
rules:
  - name: literal
    match: {table: "inventory.sellable_shard"}
    topic: stocksync.heartbeats
  - name: per-table
    match: {table: "stocksync.*"}
    topic: "{schema}.{table}"
  - name: per-table-elsewhere
    match: {table: "inventory.*"}
    topic: "{schema}.{table}"
  - name: per-op
    match: {table: "inventory.sellable_shard"}
    topic: "stocksync.{op}"
  - name: per-sku
    match: {table: "inventory.sellable_shard"}
    emit: aggregate
    group_by: [sku_id]
    sum: {sellable: qty}
    topic: "stocksync.check{sku_id}"
  - name: by-op-column
    match: {table: "shop.ops"}
    emit: aggregate
    group_by: [op]
    sum: {n: qty}
    topic: "stocksync.{op}"
  - name: fine
    match: {table: "inventory.sellable_shard"}
    topic: product.stock
`)
	reserved := []ReservedTopic{{"stocksync.heartbeats", "kafka.heartbeat_topic"}, {"stocksync.checkpoints", "kafka.checkpoint_topic"}, {"", "kafka.unset"}}
	err := set.CheckReservedTopics(reserved)
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("got %v, want the rules' problems", err)
	}
	want := []string{
		`rules.yaml:5:12: rule "literal": topic "stocksync.heartbeats" is kafka.heartbeat_topic, which the daemon writes its own records to: name another topic (or another kafka.heartbeat_topic)`,
		`rules.yaml:8:12: rule "per-table": topic "{schema}.{table}" could be filled in as "stocksync.heartbeats", kafka.heartbeat_topic,`,
		`rules.yaml:8:12: rule "per-table": topic "{schema}.{table}" could be filled in as "stocksync.checkpoints", kafka.checkpoint_topic,`,
		`rules.yaml:20:12: rule "per-sku": topic "stocksync.check{sku_id}" could be filled in as "stocksync.checkpoints", kafka.checkpoint_topic,`,
		`rules.yaml:26:12: rule "by-op-column": topic "stocksync.{op}" could be filled in as "stocksync.heartbeats", kafka.heartbeat_topic,`,
		`rules.yaml:26:12: rule "by-op-column": topic "stocksync.{op}" could be filled in as "stocksync.checkpoints", kafka.checkpoint_topic,`,
	}
	if len(errs) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(errs), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(errs[i].Error(), w) {
			t.Errorf("problem %d:\n got %s\nwant %s…", i, errs[i].Error(), w)
		}
	}
	if err := set.CheckReservedTopics([]ReservedTopic{{"shop.stock", "kafka.heartbeat_topic"}}); err != nil {
		t.Errorf("with a topic no rule can reach: %v", err)
	}
}
