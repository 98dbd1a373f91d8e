package pipeline_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/stocksync/stocksync/canal"
	"github.com/stocksync/stocksync/internal/testutil"
	"github.com/stocksync/stocksync/pipeline"
)

// tenants makes two schemas DB_a and DB_b, one per tenant, each with a table t holding
// rows, and a user that may read DB_a (and the checkpoint's DB) but not DB_b, as a DBA who
// forgot the newest tenant leaves it. It returns the user's canal.Config tweak.
func tenants(t *testing.T, e *env) (a, b string, asUser func(*pipeline.Options)) {
	t.Helper()
	admin := e.mysql.Open(t, "")
	a, b = e.db+"_a", e.db+"_b"
	testutil.Exec(t, admin,
		"CREATE DATABASE "+a, "CREATE DATABASE "+b,
		"CREATE TABLE "+a+".t (sku_id VARCHAR(8) PRIMARY KEY, qty BIGINT)",
		"CREATE TABLE "+b+".t (sku_id VARCHAR(8) PRIMARY KEY, qty BIGINT)",
		"INSERT INTO "+a+".t VALUES ('A', 5)",
		"INSERT INTO "+b+".t VALUES ('B', 7)")
	t.Cleanup(func() {
		admin.Exec("DROP DATABASE IF EXISTS " + a)
		admin.Exec("DROP DATABASE IF EXISTS " + b)
	})
	return a, b, sourceUser(t, e, "`"+a+"`.*")
}

// sourceUser creates a replication user that may do anything in the checkpoint's DB and
// SELECT what selects names (`schema`.* or `schema`.`table`), and returns the
// pipeline.Options tweak that streams as it.
func sourceUser(t *testing.T, e *env, selects ...string) func(*pipeline.Options) {
	t.Helper()
	admin := e.mysql.Open(t, "")
	user := fmt.Sprintf("limited_%d", testutil.ServerID())
	stmts := []string{"CREATE USER '" + user + "'@'%' IDENTIFIED BY 'pw'",
		"GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '" + user + "'@'%'",
		"GRANT ALL ON `" + e.db + "`.* TO '" + user + "'@'%'"}
	for _, on := range selects {
		stmts = append(stmts, "GRANT SELECT ON "+on+" TO '"+user+"'@'%'")
	}
	testutil.Exec(t, admin, stmts...)
	t.Cleanup(func() { admin.Exec("DROP USER '" + user + "'@'%'") })
	return func(o *pipeline.Options) { o.Source.User, o.Source.Password = user, "pw" }
}

// TestStreamStopsAtATenantItMayNotRead: a glob whose schema part is a pattern
// (DB_*.t, one schema per tenant) cannot be checked at start. The first start's seed
// reads DB_a.t but information_schema hides DB_b.t, which the user may not SELECT; the
// binlog still carries DB_b's changes. Folding them onto a seed without DB_b's rows
// would publish wrong sums for good: the stream stops at DB_b's first row event with an
// error naming the table, the rule and the grant, and publishes nothing of it.
func TestStreamStopsAtATenantItMayNotRead(t *testing.T) {
	e := newEnv(t)
	a, b, asUser := tenants(t, e)
	set := e.rules(`
rules:
  - name: tenant-stock
    match: {table: "DB_*.t"}
    emit: aggregate
    group_by: [sku_id]
    sum: {sellable: qty}
    topic: TOPIC.total
`)
	r := e.start(set, testutil.ServerID(), asUser)
	awaitLastSums(t, e.broker, e.topic+".total", map[string]int64{"A": 5}) // the seed: DB_b.t unseen
	testutil.Exec(t, e.mysql.Open(t, ""), "UPDATE "+b+".t SET qty = qty - 1", "UPDATE "+a+".t SET qty = qty + 1")
	select {
	case err := <-r.done:
		r.cancel = nil // ended already
		r.sink.Close()
		want := "GRANT SELECT ON `" + b + "`.`t`"
		if !errors.Is(err, canal.ErrUnreadableTable) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), `"tenant-stock"`) {
			t.Fatalf("Run ended with %v; want ErrUnreadableTable naming the rule and %s", err, want)
		}
		if pipeline.Retryable(err) {
			t.Errorf("%v is retryable; a restart after the GRANT would fold DB_b onto a seed without its rows", err)
		}
	case <-time.After(20 * time.Second):
		t.Error("the pipeline kept streaming past a row event of a table its user may not read")
	}
	for _, rec := range testutil.Consume(t, e.broker, []string{e.topic + ".total"}, 0, time.Second) {
		if strings.Contains(rec.Key, `"B"`) {
			t.Errorf("published %s for a table the seed could not read: %s", rec.Key, rec.Value)
		}
	}
}

// TestRowRuleOnATenantItMayNotReadWarns: a row rule's stream messages are whole, so a
// table of a schema-pattern glob that the user may not read does not stop the stream; it
// is said once, with the grant, since a snapshot or a re-read of it would find nothing.
func TestRowRuleOnATenantItMayNotReadWarns(t *testing.T) {
	e := newEnv(t)
	a, b, asUser := tenants(t, e)
	core, logs := observer.New(zapcore.WarnLevel)
	e.start(e.rules(`
rules:
  - name: tenant-rows
    match: {table: "DB_*.t"}
    topic: TOPIC
    key: [sku_id]
`), testutil.ServerID(), asUser, func(o *pipeline.Options) { o.Logger = zap.New(core) })
	admin := e.mysql.Open(t, "")
	testutil.Exec(t, admin, "INSERT INTO "+b+".t VALUES ('C', 1)", "INSERT INTO "+a+".t VALUES ('D', 1)", "INSERT INTO "+b+".t VALUES ('E', 1)")
	if got := e.consume(3, 20*time.Second); len(got) != 3 {
		t.Fatalf("%d messages published, want the 3 inserts", len(got))
	}
	warned := logs.FilterMessageSnippet("may not be read").All()
	if len(warned) != 1 {
		t.Fatalf("%d warnings of a table that may not be read, want 1 (of %s.t, once): %v", len(warned), b, warned)
	}
	fields := warned[0].ContextMap()
	if fields["table"] != b+".t" || fields["rule"] != "tenant-rows" || !strings.Contains(fmt.Sprint(fields["fix"]), "GRANT SELECT ON `"+b+"`.`t`") {
		t.Errorf("the warning says %v; want the table %s.t, the rule and the grant", fields, b)
	}
}

// TestStreamStopsAtATableOfATablePatternItMayNotRead: a glob whose table part is a
// pattern (DB_g.stock_*) over a schema whose tables are granted one by one cannot be
// checked whole at start either: information_schema hides stock_b, which the user may not
// SELECT, from the seed, and the start's check can only tell a schema the user may read
// nothing of. The stream stops at stock_b's first row event, naming the grant, rather
// than fold its changes onto a seed without its rows (which published 5 and then 6 where
// the true total was 13).
func TestStreamStopsAtATableOfATablePatternItMayNotRead(t *testing.T) {
	e := newEnv(t)
	admin := e.mysql.Open(t, "")
	g := e.db + "_g"
	testutil.Exec(t, admin, "CREATE DATABASE "+g,
		"CREATE TABLE "+g+".stock_a (sku_id VARCHAR(8) PRIMARY KEY, qty BIGINT)",
		"CREATE TABLE "+g+".stock_b (sku_id VARCHAR(8) PRIMARY KEY, qty BIGINT)",
		"INSERT INTO "+g+".stock_a VALUES ('X', 5)", "INSERT INTO "+g+".stock_b VALUES ('X', 7)")
	t.Cleanup(func() { admin.Exec("DROP DATABASE IF EXISTS " + g) })
	asUser := sourceUser(t, e, "`"+g+"`.`stock_a`")
	r := e.start(e.rules(`
rules:
  - name: total
    match: {table: "DB_g.stock_*"}
    emit: aggregate
    group_by: [sku_id]
    sum: {sellable: qty}
    topic: TOPIC.total
`), testutil.ServerID(), asUser)
	awaitLastSums(t, e.broker, e.topic+".total", map[string]int64{"X": 5}) // the seed: stock_b unseen
	testutil.Exec(t, admin, "UPDATE "+g+".stock_b SET qty = 8")
	select {
	case err := <-r.done:
		r.cancel = nil // ended already
		r.sink.Close()
		want := "GRANT SELECT ON `" + g + "`.`stock_b`"
		if !errors.Is(err, canal.ErrUnreadableTable) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), `"total"`) {
			t.Fatalf("Run ended with %v; want ErrUnreadableTable naming the rule and %s", err, want)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the pipeline kept streaming past a row event of a table its user may not read")
	}
	for _, rec := range testutil.Consume(t, e.broker, []string{e.topic + ".total"}, 0, time.Second) {
		if strings.Contains(rec.Value, `"sellable":6`) {
			t.Errorf("published a total folded onto a seed without stock_b: %s", rec.Value)
		}
	}
}
