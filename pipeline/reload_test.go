package pipeline_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/stocksync/stocksync/internal/testutil"
	"github.com/stocksync/stocksync/pipeline"
)

// TestReloadAppliesFromTheNextTransaction: once Reload has returned, the next transaction
// the stream reads is matched and evaluated by the new rules, however long it comes
// after, and never by the old: a rule added publishes it, a rule removed does not.
func TestReloadAppliesFromTheNextTransaction(t *testing.T) {
	e := newEnv(t)
	e.exec("CREATE TABLE stock_a (sku_id VARCHAR(8) PRIMARY KEY, qty INT)",
		"CREATE TABLE other (id INT PRIMARY KEY)")
	r := e.start(e.rules(allOpsRules), testutil.ServerID())
	e.exec("INSERT INTO stock_a VALUES ('A', 1)")
	e.consume(1, 20*time.Second)

	// Added: one transaction, alone, right after the reload.
	r.p.Reload(e.rules(allOpsRules + `
  - name: other-rows
    match: {table: "DB.other"}
    topic: TOPIC.other
`))
	e.exec("INSERT INTO other VALUES (1)")
	other := testutil.Consume(t, e.broker, []string{e.topic + ".other"}, 1, 20*time.Second)
	if len(other) != 1 || fmt.Sprint(decode(t, other[0]).After["id"]) != "1" {
		t.Fatalf("the added rule's messages: %v, want the one row inserted right after the reload", other)
	}

	// Removed: stock-rows publishes nothing of the transaction after the reload.
	r.p.Reload(e.rules(strings.Replace(allOpsRules, "DB.stock_*", "DB.nothing_here", 1) + `
  - name: other-rows
    match: {table: "DB.other"}
    topic: TOPIC.other
`))
	e.exec("INSERT INTO stock_a VALUES ('B', 2)")
	e.exec("INSERT INTO other VALUES (2)") // the marker: once it is out, so would B be
	testutil.Consume(t, e.broker, []string{e.topic + ".other"}, 2, 20*time.Second)
	if stock := e.consume(0, time.Second); len(stock) != 1 {
		t.Fatalf("%d messages on the removed rule's topic, want only the one before the reload: %v", len(stock), stock)
	}
}

// TestReloadOfATopicOnlyWarnsToResync: a reload that changes only an aggregate rule's
// topic keeps its state (no seed), so the new topic gets only the groups that change; the
// reload warns, naming the rule, both topics and the resync that fills the new topic.
// A reload that keeps the topic does not.
func TestReloadOfATopicOnlyWarnsToResync(t *testing.T) {
	e := newEnv(t)
	e.exec("CREATE TABLE stock_t (sku_id VARCHAR(8) PRIMARY KEY, qty INT)", "INSERT INTO stock_t VALUES ('A', 1), ('B', 2)")
	const totals = `
rules:
  - name: totals
    match: {table: "DB.stock_t"}
    emit: aggregate
    group_by: [sku_id]
    sum: {n: qty}
    topic: TOPIC
`
	core, logs := observer.New(zapcore.WarnLevel)
	r := e.start(e.rules(totals), testutil.ServerID(), func(o *pipeline.Options) { o.Logger = zap.New(core) })
	e.consume(2, 20*time.Second) // the seed: A and B

	moved := func() *observer.ObservedLogs { return logs.FilterMessageSnippet("publishes on another topic") }
	r.p.Reload(e.rules(totals + "# a comment\n"))
	e.exec("UPDATE stock_t SET qty = 3 WHERE sku_id = 'A'")
	e.consume(3, 20*time.Second)
	if n := moved().Len(); n != 0 {
		t.Fatalf("%d topic warnings after a reload that kept the topic", n)
	}

	r.p.Reload(e.rules(strings.Replace(totals, "topic: TOPIC", "topic: TOPIC.new", 1)))
	e.exec("UPDATE stock_t SET qty = 4 WHERE sku_id = 'A'")
	got := testutil.Consume(t, e.broker, []string{e.topic + ".new"}, 1, 20*time.Second)
	if len(got) != 1 || !strings.Contains(got[0].Key, "A") {
		t.Fatalf("the new topic holds %v, want only group A, which changed", got)
	}
	warned := moved().AllUntimed()
	if len(warned) != 1 {
		t.Fatalf("%d topic warnings after the topic changed, want 1", len(warned))
	}
	fields := warned[0].ContextMap()
	want := map[string]any{"rule": "totals", "old_topic": e.topic, "new_topic": e.topic + ".new", "resync": "stocksync resync totals"}
	for k, v := range want {
		if fields[k] != v {
			t.Errorf("warning field %s = %v, want %v (all: %v)", k, fields[k], v, fields)
		}
	}
}

// TestReloadOnAQuietSourcePublishesAtOnce: a reload that raises a transition rule's
// threshold on a source where nothing is written afterwards (a night, a closed shop)
// publishes its take-backs and seed at once, at the stream's position: the search index
// loses B (3, no longer > 5) without waiting for a write that may not come for hours.
// Exactly-once, a read_committed consumer sees them, so they were committed with the
// checkpoint; a restart with the reloaded rules neither seeds nor takes back again.
func TestReloadOnAQuietSourcePublishesAtOnce(t *testing.T) {
	inBothDeliveryModes(t, func(t *testing.T, e *env) {
		e.exec("CREATE TABLE sellable_shard (sku_id VARCHAR(8), shard INT, qty BIGINT, PRIMARY KEY (sku_id, shard))",
			"INSERT INTO sellable_shard VALUES ('B', 0, 3), ('C', 0, 10)")
		id := testutil.ServerID()
		r := e.start(e.rules(stockRulesYAML), id)
		want := map[string]string{"product B": "c:-:3", "product C": "c:-:10", "search B": "u:false:true", "search C": "u:false:true"}
		published := func(what string) {
			t.Helper()
			testutil.Eventually(t, 20*time.Second, what, func() bool {
				return fmt.Sprint(sequences(groupMessages(t, e))) == fmt.Sprint(want)
			})
		}
		published("the first seed's messages")

		raised := e.rules(strings.Replace(stockRulesYAML, `value: "sellable > 0"`, `value: "sellable > 5"`, 1))
		r.p.Reload(raised) // nothing is written to the source after it

		want["search B"] += " u:true:false" // taken back: 3 is not > 5
		want["search C"] += " u:false:true" // the changed rule's seed
		published("the reload's take-back of B and seed, with no write after it")
		r.stop(t)

		e.start(raised, id)
		e.exec("INSERT INTO sellable_shard VALUES ('D', 0, 6)")
		want["product D"], want["search D"] = "c:-:6", "u:false:true"
		published("D's messages after a restart, and nothing seeded or taken back again")
	})
}
