package pipeline_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stocksync/stocksync/internal/testutil"
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
