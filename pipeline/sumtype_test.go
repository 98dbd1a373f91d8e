package pipeline_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stocksync/stocksync/internal/testutil"
	"github.com/stocksync/stocksync/pipeline"
)

const sumTypesRules = `
rules:
  - name: types-agg
    match: {table: "DB.types"}
    emit: aggregate
    group_by: [s]
    sum: {total: d, cnt: i}
    topic: TOPIC
`

// TestSummedColumnChangingTypeIsSeededAgain: a summed column moved to another type class
// (DOUBLE to DECIMAL, INT to DECIMAL, DECIMAL back to INT while the daemon is stopped) is
// published afresh in the new JSON type, exact: a c, never a u whose before and after
// differ in type. An ALTER TABLE … MODIFY is met at the statement (the rule is seeded
// again from the table); an online schema change's one-statement swap onto a copy of
// another type, at the first row in the new type. A change within a class goes on as a u:
// INT to BIGINT changes no value and publishes nothing; a DECIMAL's scale raised is
// published at the ALTER, as the table's SUM now writes it. The last message equals the
// database's SUM. At-least-once and exactly-once.
func TestSummedColumnChangingTypeIsSeededAgain(t *testing.T) {
	inBothDeliveryModes(t, testSummedColumnChangingType)
}

func testSummedColumnChangingType(t *testing.T, e *env) {
	db := e.mysql.Open(t, e.db)
	testutil.Exec(t, db, "CREATE TABLE types (id INT PRIMARY KEY, i INT, d DOUBLE, s VARCHAR(8))",
		"INSERT INTO types VALUES (1, 2, 0.5, 'g2'), (2, 1, 1.25, 'g2')")
	set := e.rules(sumTypesRules)
	id := testutil.ServerID()
	r := e.start(set, id)

	var want []string
	step := func(what string, stmts []string, msgs ...string) {
		t.Helper()
		testutil.Exec(t, db, stmts...)
		want = append(want, msgs...)
		var got []string
		testutil.Eventually(t, 20*time.Second, what, func() bool {
			got = sumTypeMessages(t, e)
			return len(got) >= len(want)
		})
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("%s: the group's messages are\n%s\nwant\n%s", what, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	step("the seed", nil, `c - > total=1.75 cnt=3`)
	step("an insert", []string{"INSERT INTO types VALUES (3, 1, 0.25, 'g2')"},
		`u total=1.75 cnt=3 > total=2 cnt=4`)
	// Whether the ALTER's seed reads the insert or not, one message says the same.
	step("INT to BIGINT, the same class", []string{"ALTER TABLE types MODIFY i BIGINT", "INSERT INTO types VALUES (4, 1, 0.25, 'g2')"},
		`u total=2 cnt=4 > total=2.25 cnt=5`)
	step("DOUBLE to DECIMAL by an online schema change's swap", []string{"CREATE TABLE _types_gho LIKE types",
		"ALTER TABLE _types_gho MODIFY d DECIMAL(10,3)", "INSERT INTO _types_gho SELECT * FROM types",
		"RENAME TABLE types TO _types_del, _types_gho TO types", "INSERT INTO types VALUES (14, 1, 0.125, 'g2')"},
		`c - > total="2.375" cnt=6`)
	step("an insert after it", []string{"INSERT INTO types VALUES (21, 1, 0.1, 'g2')"},
		`u total="2.375" cnt=6 > total="2.475" cnt=7`)
	step("INT to DECIMAL", []string{"ALTER TABLE types MODIFY i DECIMAL(10,2)"},
		`c - > total="2.475" cnt="7.00"`)
	step("an insert after the ALTER", []string{"INSERT INTO types VALUES (31, 0.5, 0.1, 'g2')"},
		`u total="2.475" cnt="7.00" > total="2.575" cnt="7.50"`)
	step("DECIMAL(10,3) to DECIMAL(12,4), the same class", []string{"ALTER TABLE types MODIFY d DECIMAL(12,4)"},
		`u total="2.575" cnt="7.50" > total="2.5750" cnt="7.50"`)
	step("an insert at the new scale", []string{"INSERT INTO types VALUES (41, 1, 0.0001, 'g2')"},
		`u total="2.5750" cnt="7.50" > total="2.5751" cnt="8.50"`)
	r.stop(t)

	// While the daemon is stopped: the restart meets the ALTER and does the same, with
	// the insert after it in the seed. (0.50 is rounded to 1 by the ALTER.)
	testutil.Exec(t, db, "ALTER TABLE types MODIFY i INT", "INSERT INTO types VALUES (51, 1, 0.5, 'g2')")
	r = e.start(set, id)
	step("DECIMAL to INT while stopped", nil, `c - > total="3.0751" cnt=10`)
	step("an insert after the restart's seed", []string{"INSERT INTO types VALUES (52, 2, 0.25, 'g2')"},
		`u total="3.0751" cnt=10 > total="3.3251" cnt=12`)
	var sumD, sumI string
	if err := db.QueryRow("SELECT SUM(d), SUM(i) FROM types WHERE s = 'g2'").Scan(&sumD, &sumI); err != nil {
		t.Fatal(err)
	}
	if last := want[len(want)-1]; !strings.HasSuffix(last, fmt.Sprintf(`total=%q cnt=%s`, sumD, sumI)) {
		t.Errorf("the last message %s; the database's sums are %s and %s", last, sumD, sumI)
	}
	if !r.p.Ready() {
		t.Error("the pipeline is not ready after the seeds")
	}
}

// sumTypeMessages renders the messages of group g2 as "op before > after", each image's
// sums with their JSON as published: a string quoted, a number bare. A message repeated
// at the same source (at-least-once, across a restart) is shown once.
func sumTypeMessages(t *testing.T, e *env) []string {
	t.Helper()
	image := func(raw json.RawMessage) string {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("decoding %s: %v", raw, err)
		}
		if m == nil {
			return "-"
		}
		return fmt.Sprintf("total=%s cnt=%s", m["total"], m["cnt"])
	}
	var out []string
	seen := map[string]bool{}
	for _, rec := range e.consume(0, time.Second) {
		if rec.Key != `{"s":"g2"}` {
			continue
		}
		var msg struct {
			Op     string          `json:"op"`
			Before json.RawMessage `json:"before"`
			After  json.RawMessage `json:"after"`
			Source json.RawMessage `json:"source"`
		}
		if err := json.Unmarshal([]byte(rec.Value), &msg); err != nil {
			t.Fatalf("decoding %s: %v", rec.Value, err)
		}
		s := fmt.Sprintf("%s %s > %s", msg.Op, image(msg.Before), image(msg.After))
		if id := s + string(msg.Source); seen[id] {
			continue
		} else {
			seen[id] = true
		}
		out = append(out, s)
	}
	return out
}

// TestTableOfAnotherSumClassStopsTheStreamRetrying: a table created while the daemon runs,
// which the rule's glob matches and whose summed column is of another class than the
// other tables' (DECIMAL beside INT), stops the stream at its first row with an error
// naming both tables, and the stop is one the daemon retries (not ready, its HTTP API
// up), not one that ends it, at every retry; nothing of the mix is published.
func TestTableOfAnotherSumClassStopsTheStreamRetrying(t *testing.T) {
	e := newEnv(t)
	db := e.mysql.Open(t, e.db)
	testutil.Exec(t, db, "CREATE TABLE stock_a (id INT PRIMARY KEY, sku_id VARCHAR(8), qty INT)", "INSERT INTO stock_a VALUES (1, 'A', 5)")
	set := e.rules(`
rules:
  - name: total
    match: {table: "DB.stock_*"}
    emit: aggregate
    group_by: [sku_id]
    sum: {qty: qty}
    topic: TOPIC
`)
	id := testutil.ServerID()
	r := e.start(set, id)
	e.consume(1, 20*time.Second)
	testutil.Exec(t, db, "CREATE TABLE stock_b (id INT PRIMARY KEY, sku_id VARCHAR(8), qty DECIMAL(10,2))", "INSERT INTO stock_b VALUES (2, 'A', 1.5)")
	err := r.stopped(t, 30*time.Second)
	if err == nil || !strings.Contains(err.Error(), e.db+".stock_b.qty is decimal") || !strings.Contains(err.Error(), e.db+".stock_a") {
		t.Fatalf("the pipeline ended with %v; want an error naming %s.stock_b.qty as decimal against %s.stock_a", err, e.db, e.db)
	}
	if !pipeline.Retryable(err) {
		t.Errorf("the stop is not retryable: %v; want the daemon to retry (not ready), not to exit", err)
	}
	// The retry meets it again, the same way.
	if err := e.run(set, id).stopped(t, 30*time.Second); err == nil || !pipeline.Retryable(err) || !strings.Contains(err.Error(), e.db+".stock_b.qty is decimal") {
		t.Errorf("the retry ended with %v; want the same retryable stop", err)
	}
	if got := e.consume(0, 3*time.Second); len(got) != 1 {
		t.Errorf("%d messages; want the seed's one alone (nothing of the mix)", len(got))
	}
}
