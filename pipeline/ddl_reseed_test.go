package pipeline_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stocksync/stocksync/canal"
	"github.com/stocksync/stocksync/internal/testutil"
	"github.com/stocksync/stocksync/pipeline"
)

// patternStockRulesYAML are stockRulesYAML's two rules over every DB.stock_* table: a
// rule that reads other tables too, which a TRUNCATE of one of them cannot simply empty.
const patternStockRulesYAML = `
rules:
  - name: product-stock
    match: {table: "DB.stock_*"}
    emit: aggregate
    group_by: [sku_id]
    sum: {sellable: qty}
    topic: TOPIC.product
  - name: search-in-stock
    match: {table: "DB.stock_*"}
    emit: transition
    group_by: [sku_id]
    sum: {sellable: qty}
    value: "sellable > 0"
    topic: TOPIC.search
`

// TestDDLWithoutRowEventsSeedsTheRulesAgain: DDL that moves or removes rows of a table a
// rule reads with others, without row events, seeds the rule again from its tables as they
// are, and the stream goes on. Only the groups that changed are published: a TRUNCATE
// of one table takes A (only there) away and lowers B; a two-step cut-over, read after
// both its statements ran, publishes only C, which the copy changed, and its second
// statement nothing more (a row inserted after it comes next); a rename to another name the
// rules read publishes nothing. A table renamed away while its name stays empty stops the
// stream, saying it waits; once a table has the name, the restart goes on from there. Tables
// renamed away whose names stay empty past source.renamed_table_wait are taken as dropped.
func TestDDLWithoutRowEventsSeedsTheRulesAgain(t *testing.T) {
	inBothDeliveryModes(t, func(t *testing.T, e *env) {
		db := e.mysql.Open(t, e.db)
		testutil.Exec(t, db, "CREATE TABLE stock_a (id INT PRIMARY KEY, sku_id VARCHAR(8), qty BIGINT)",
			"CREATE TABLE stock_b LIKE stock_a",
			"INSERT INTO stock_a VALUES (1, 'A', 5), (2, 'B', 3)", "INSERT INTO stock_b VALUES (3, 'B', 4), (4, 'C', 2)")
		set := e.rules(patternStockRulesYAML)
		id := testutil.ServerID()
		want := map[string]string{
			"product A": "c:-:5", "product B": "c:-:7", "product C": "c:-:2",
			"search A": "u:false:true", "search B": "u:false:true", "search C": "u:false:true",
		}
		awaitSequences := func(what string) {
			t.Helper()
			testutil.Eventually(t, 30*time.Second, what, func() bool {
				return fmt.Sprint(sequences(groupMessages(t, e))) == fmt.Sprint(want)
			})
		}
		r := e.start(set, id)
		awaitSequences("the seed's messages")

		testutil.Exec(t, db, "TRUNCATE TABLE stock_a", "INSERT INTO stock_b VALUES (5, 'D', 1)")
		want["product A"] += " d:5:-"
		want["product B"] += " u:7:4"
		want["search A"] += " u:true:false"
		want["product D"], want["search D"] = "c:-:1", "u:false:true"
		awaitSequences("the TRUNCATE's messages, then the insert's")
		r.stop(t)

		// gh-ost's --cut-over=two-step, while the daemon is stopped; _stock_b_gho is no
		// stock_* table, so its own rows are not read.
		testutil.Exec(t, db, "CREATE TABLE _stock_b_gho LIKE stock_b", "INSERT INTO _stock_b_gho SELECT * FROM stock_b",
			"UPDATE _stock_b_gho SET qty = 9 WHERE sku_id = 'C'",
			"RENAME TABLE stock_b TO _stock_b_del", "RENAME TABLE _stock_b_gho TO stock_b")
		r = e.start(set, id)
		// A row after the cut-over: once its messages are in, nothing else came before them.
		testutil.Exec(t, db, "INSERT INTO stock_a VALUES (7, 'E', 1)")
		want["product C"] += " u:2:9"
		want["product E"], want["search E"] = "c:-:1", "u:false:true"
		awaitSequences("the cut-over's one change, then the insert's")

		// Renamed to a name the rules read as well: the rows never left them; seeded again
		// at once, nothing changed.
		testutil.Exec(t, db, "RENAME TABLE stock_a TO stock_z", "INSERT INTO stock_z VALUES (8, 'F', 1)")
		want["product F"], want["search F"] = "c:-:1", "u:false:true"
		awaitSequences("a rename within the rules' tables publishing nothing, then the insert's")

		testutil.Exec(t, db, "RENAME TABLE stock_b TO old_b")
		err := r.stopped(t, 30*time.Second)
		if !errors.Is(err, canal.ErrStatefulTableEmptied) || !strings.Contains(err.Error(), "no table has its name on the server now") ||
			!strings.Contains(err.Error(), "waits here") {
			t.Fatalf("a rename away that leaves the name empty: the pipeline ended with %v; want ErrStatefulTableEmptied saying it waits for the name", err)
		}
		testutil.Exec(t, db, "CREATE TABLE stock_b LIKE stock_z", "INSERT INTO stock_b VALUES (6, 'B', 1)")
		e.start(set, id, func(o *pipeline.Options) { o.Source.RenamedAwayWait = 2 * time.Second })
		want["product B"] += " u:4:1"
		want["product C"] += " d:9:-"
		want["product D"] += " d:1:-"
		want["search C"] += " u:true:false"
		want["search D"] += " u:true:false"
		awaitSequences("the new stock_b's changes")

		// Every table the rules read renamed away for good: past source.renamed_table_wait,
		// taken as dropped, every group gone.
		testutil.Exec(t, db, "RENAME TABLE stock_z TO archived_z, stock_b TO archived_b")
		for _, sku := range []string{"B", "E", "F"} {
			want["product "+sku] += " d:1:-"
			want["search "+sku] += " u:true:false"
		}
		awaitSequences("every group gone once the renamed tables' names stayed empty")
	})
}

// TestCreateOrReplaceTableSeedsTheRulesAgain: MariaDB's CREATE OR REPLACE TABLE … SELECT
// drops the table's rows without row events, then brings the copy's as inserts in the
// same transaction. The rules that read the table are seeded again at the statement, so
// the groups end as the tables now are (A from the copy alone, B without stock_a's
// rows), not the copy's rows added onto the old totals.
func TestCreateOrReplaceTableSeedsTheRulesAgain(t *testing.T) {
	e := newEnv(t)
	db := e.mysql.Open(t, e.db)
	testutil.Exec(t, db, "CREATE TABLE stock_a (id INT PRIMARY KEY, sku_id VARCHAR(8), qty BIGINT)",
		"CREATE TABLE stock_b LIKE stock_a",
		"INSERT INTO stock_a VALUES (1, 'A', 5), (2, 'B', 3)", "INSERT INTO stock_b VALUES (3, 'B', 4)")
	e.start(e.rules(patternStockRulesYAML), testutil.ServerID())
	want := map[string]string{"product A": "c:-:5", "product B": "c:-:7", "search A": "u:false:true", "search B": "u:false:true"}
	await := func(what string) {
		t.Helper()
		testutil.Eventually(t, 30*time.Second, what, func() bool {
			return fmt.Sprint(sequences(groupMessages(t, e))) == fmt.Sprint(want)
		})
	}
	await("the seed's messages")
	testutil.Exec(t, db, "CREATE OR REPLACE TABLE stock_a (id INT PRIMARY KEY, sku_id VARCHAR(8), qty BIGINT) SELECT 9 AS id, 'A' AS sku_id, 1 AS qty",
		"INSERT INTO stock_b VALUES (10, 'Z', 1)")
	want["product A"] += " u:5:1"
	want["product B"] += " u:7:4"
	want["product Z"], want["search Z"] = "c:-:1", "u:false:true"
	await("the groups as the tables now are, then the insert's")
}
