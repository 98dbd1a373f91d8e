package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stocksync/stocksync/canal"
	"github.com/stocksync/stocksync/internal/testutil"
	"github.com/stocksync/stocksync/rules"
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
	if err == nil || err.Error() != "2 rule evaluations failed at run time (f: 2): each is on stderr" {
		t.Fatalf("rules test with failing evaluations: %v, want an error counting them by rule (a CI step must fail)", err)
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

// TestRulesTestPrintsEveryRunTimeFailure: `rules test` prints each failure on stderr, as
// its error says ("each is on stderr"), past the first 100 that the daemon logs.
func TestRulesTestPrintsEveryRunTimeFailure(t *testing.T) {
	dir := t.TempDir()
	rulesFile, events := filepath.Join(dir, "rules.yaml"), filepath.Join(dir, "events.json")
	writeFile(t, rulesFile, `rules:
  - name: f
    match: {table: shop.stock}
    fields: {sku: sku_id, big: "row.qty > 1"}
    topic: t
`)
	var changes []string
	for i := range 150 {
		changes = append(changes, fmt.Sprintf(`{"schema":"shop","table":"stock","op":"insert","after":{"sku_id":"A%d","qty":null}}`, i))
	}
	writeFile(t, events, "["+strings.Join(changes, ",\n")+"]")
	_, stderr, err := runRulesCLI(t, "test", rulesFile, "--event", events)
	if n := strings.Count(stderr, "rule expression failed"); n != 150 || err == nil || !strings.Contains(err.Error(), "150 rule evaluations failed at run time (f: 150): each is on stderr") {
		t.Errorf("%d failures printed on stderr, want 150; the command says: %v", n, err)
	}
}

const flagAndTotalRules = `rules:
  - name: product-stock
    match: {table: "inventory.sellable_shard"}
    emit: aggregate
    group_by: [sku_id]
    sum: {sellable: qty}
    topic: product.stock
  - name: search-in-stock
    match: {table: "inventory.sellable_shard"}
    emit: transition
    group_by: [sku_id]
    sum: {sellable: qty}
    value: "sellable > 0"
    topic: search.availability
`

// TestRulesTestGuessesAColumnsKindOverTheWholeFile: without "columns", a column's kind is
// guessed from every value the file gives it, not change by change: a stock column
// written 5 in the read and 4.5 in the update is a float in both, where guessing each
// change alone took the update for a change of the column's type (an ALTER TABLE), whose
// seed rules test never runs, and printed a d and the flag false. A null says nothing:
// null then 3 is an int column.
func TestRulesTestGuessesAColumnsKindOverTheWholeFile(t *testing.T) {
	dir := t.TempDir()
	rulesFile, events := filepath.Join(dir, "rules.yaml"), filepath.Join(dir, "events.json")
	writeFile(t, rulesFile, flagAndTotalRules)
	writeFile(t, events, `[[{"schema":"inventory","table":"sellable_shard","op":"read","after":{"sku_id":"A1","shard":0,"qty":5}},
  {"schema":"inventory","table":"sellable_shard","op":"read","after":{"sku_id":"A1","shard":1,"qty":null}}],
 [{"schema":"inventory","table":"sellable_shard","op":"update","before":{"sku_id":"A1","shard":0,"qty":5},"after":{"sku_id":"A1","shard":0,"qty":4.5}}],
 [{"schema":"inventory","table":"sellable_shard","op":"update","before":{"sku_id":"A1","shard":1,"qty":null},"after":{"sku_id":"A1","shard":1,"qty":3}}]]`)
	stdout, stderr, err := runRulesCLI(t, "test", rulesFile, "--event", events)
	if err != nil {
		t.Fatalf("rules test: %v\n%s", err, stderr)
	}
	txns := parseRulesTestOutput(t, stdout)
	if len(txns) != 3 || len(txns[1].messages) != 1 || len(txns[2].messages) != 1 ||
		shownPart(txns[1].messages[0].value) != `{"op":"u","before":{"sku_id":"A1","sellable":5},"after":{"sku_id":"A1","sellable":4.5}}` ||
		shownPart(txns[2].messages[0].value) != `{"op":"u","before":{"sku_id":"A1","sellable":4.5},"after":{"sku_id":"A1","sellable":7.5}}` {
		t.Errorf("rules test over 5, then 4.5, then null to 3:\n%s", stdout)
	}
}

// TestRulesTestSaysWhichKindsItGuessed: a column null in every change is guessed a string
// for want of a value; summed, the error that it is no number says it was guessed, and
// to give "columns". A column holding a number in one change and a string in another is
// refused, naming both changes.
func TestRulesTestSaysWhichKindsItGuessed(t *testing.T) {
	dir := t.TempDir()
	rulesFile, events := filepath.Join(dir, "rules.yaml"), filepath.Join(dir, "events.json")
	writeFile(t, rulesFile, flagAndTotalRules)
	for _, tc := range []struct{ events, want string }{
		{`[{"schema":"inventory","table":"sellable_shard","op":"read","after":{"sku_id":"A1","shard":0,"qty":null}}]`,
			`without "columns", the kinds of inventory.sellable_shard's columns were guessed from the events' values: qty string (null in every change), shard int, sku_id string; give its changes "columns" with each column's kind`},
		{`[{"schema":"inventory","table":"sellable_shard","op":"read","after":{"sku_id":"A1","shard":0,"qty":"3"}},
  {"schema":"inventory","table":"sellable_shard","op":"read","after":{"sku_id":"A1","shard":1,"qty":3}}]`,
			`change 2: column qty of inventory.sellable_shard is a number here and a string in change 1, so its kind cannot be guessed: give the changes of inventory.sellable_shard "columns"`},
	} {
		writeFile(t, events, tc.events)
		if _, _, err := runRulesCLI(t, "test", rulesFile, "--event", events); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want …%s…", tc.events, err, tc.want)
		}
	}
}

// TestRulesTestRefusesAKindThatChangesBetweenChanges: a column given one kind in some
// changes of its table and another in others (DECIMAL in the reads, float in the
// updates, or a kind guessed from the values beside one given in "columns") is refused
// before anything runs, naming the table, the column, both kinds and both changes. It
// was taken for an ALTER TABLE: an aggregate rule prepared a seed that rules test never
// runs, published a stock of 4.5 as gone (the flag false), and exited 0.
func TestRulesTestRefusesAKindThatChangesBetweenChanges(t *testing.T) {
	dir := t.TempDir()
	events := filepath.Join(dir, "events.json")
	cols := func(qty string) string {
		return `"columns":[{"name":"sku_id","kind":"string"},{"name":"shard","kind":"int"},{"name":"qty","kind":"` + qty + `"}],"primary_key":["sku_id","shard"],`
	}
	for _, tc := range []struct{ update, want string }{
		{cols("float"), `transaction 2: change 1: column qty of inventory.sellable_shard is float here and decimal in transaction 1: change 1: ` +
			`a column keeps its kind from change to change (only an ALTER TABLE changes it, and rules test runs no seed after one): ` +
			`give every change of inventory.sellable_shard the same kind for qty in "columns"`},
		{"", `transaction 2: change 1: column qty of inventory.sellable_shard is float (guessed from its values) here and decimal in transaction 1: change 1: `},
	} {
		writeFile(t, events, `[[{"schema":"inventory","table":"sellable_shard","op":"read",`+cols("decimal")+`"after":{"sku_id":"A1","shard":0,"qty":"5.50"}}],
 [{"schema":"inventory","table":"sellable_shard","op":"update",`+tc.update+`"before":{"sku_id":"A1","shard":0,"qty":5.5},"after":{"sku_id":"A1","shard":0,"qty":4.5}}]]`)
		stdout, _, err := runRulesCLI(t, "test", "../../examples/rules.yaml", "--event", events)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v\nwant …%s…", err, tc.want)
		}
		if stdout != "" {
			t.Errorf("something ran before the kinds were refused:\n%s", stdout)
		}
	}
}

// TestRulesTestEventErrorsSayWhere: a mistake in an events file names the change it is
// in (a misspelt key, a value of the wrong type, a missing table), and a JSON syntax
// error its line and column, so that the 40th change of a long file is found.
func TestRulesTestEventErrorsSayWhere(t *testing.T) {
	dir := t.TempDir()
	events := filepath.Join(dir, "events.json")
	read := `{"schema":"inventory","table":"sellable_shard","op":"read","after":{"sku_id":"A1","shard":0,"qty":1}}`
	for _, tc := range []struct{ events, want string }{
		{"[[" + read + "],\n [" + read + `, {"schema":"inventory","table":"sellable_shard","op":"read","colums":[],"after":{"sku_id":"A1","shard":1,"qty":1}}]]`,
			`transaction 2: change 2: json: unknown field "colums"`},
		{"[" + read + `, {"schema":"inventory","table":"sellable_shard","op":"read","source":{"pos":"x"},"after":{"sku_id":"A1","shard":1,"qty":1}}]`,
			`change 2: json: cannot unmarshal string into Go struct field`},
		{`{"schema":"inventory","op":"read","after":{"sku_id":"A1"}}`, `change 1: schema and table are required`},
		{"[" + read + ",\n  {\"schema\":\"inventory\" \"table\":\"sellable_shard\"}]", `line 2, column 25: invalid character '"' after object key:value pair`},
		{"[" + read + ",\n", `line 2, column 1: unexpected end of JSON input`},
	} {
		writeFile(t, events, tc.events)
		if _, _, err := runRulesCLI(t, "test", "../../examples/rules.yaml", "--event", events); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n got %v\nwant …%s…", tc.events, err, tc.want)
		}
	}
}

// TestRulesTestTransactions: an events file that is a list of lists runs each list as
// one transaction, the state carried over; an update of a row no earlier change gave is
// flagged; a list mixing changes and lists is refused.
func TestRulesTestTransactions(t *testing.T) {
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "rules.yaml")
	writeFile(t, rulesFile, `rules:
  - name: stock
    match: {table: inventory.sellable_shard}
    emit: aggregate
    group_by: [sku_id]
    sum: {sellable: qty}
    topic: product.stock
    format: canal
`)
	const read = `{"schema":"inventory","table":"sellable_shard","op":"read","primary_key":["sku_id","shard"],"after":{"sku_id":"A1","shard":0,"qty":1}}`
	const sell = `{"schema":"inventory","table":"sellable_shard","op":"update","primary_key":["sku_id","shard"],"before":{"sku_id":"A1","shard":0,"qty":1},"after":{"sku_id":"A1","shard":0,"qty":0}}`
	run := func(events string) (string, error) {
		path := filepath.Join(dir, "events.json")
		writeFile(t, path, events)
		stdout, _, err := runRulesCLI(t, "test", rulesFile, "--event", path)
		return stdout, err
	}

	stdout, err := run("[[" + read + "], [" + sell + "]]")
	if err != nil {
		t.Fatal(err)
	}
	txns := parseRulesTestOutput(t, stdout)
	if len(txns) != 2 || len(txns[1].messages) != 1 ||
		!strings.Contains(txns[1].messages[0].value, `"data":[{"sku_id":"A1","sellable":"0"}],"database":"inventory","table":"sellable_shard","type":"UPDATE","old":[{"sellable":"1"}]`) ||
		!strings.Contains(stdout, "# transaction 2 (1 change)\n") || strings.Contains(stdout, "no earlier change") {
		t.Errorf("two transactions:\n%s", stdout)
	}

	stdout, err = run("[" + sell + "]")
	if err != nil || !strings.Contains(stdout, "# change 1 (update inventory.sellable_shard): no earlier change of these events inserted or read this row") ||
		strings.Contains(stdout, "# transaction") {
		t.Errorf("a lone update: %v\n%s", err, stdout)
	}

	if _, err := run("[" + read + ", [" + sell + "]]"); err == nil || !strings.Contains(err.Error(), "a list holding both changes and lists") {
		t.Errorf("a mixed list: %v", err)
	}
}

// rowIdentity tells apart keys whose values would run together as text.
func TestRowIdentityKeepsKeyValuesApart(t *testing.T) {
	table := &canal.Table{Schema: "s", Name: "t", PrimaryKey: []int{0, 1}}
	if a, b := rowIdentity(table, []any{"A1", int64(0)}), rowIdentity(table, []any{"A", int64(10)}); a == b {
		t.Errorf("keys (A1, 0) and (A, 10) both named %s", a)
	}
}

// liveRulesSetup makes a fresh database with the tables of create, and a config that
// reaches it; it returns the database's name and where to write the rules (the config's
// rules file) and the config.
func liveRulesSetup(t *testing.T, create ...string) (db, rulesFile, configFile string) {
	t.Helper()
	m := testutil.MySQLServer(t)
	db, conn := m.FreshDatabase(t, t.Name())
	testutil.Exec(t, conn, create...)
	dir := t.TempDir()
	rulesFile, configFile = filepath.Join(dir, "rules.yaml"), filepath.Join(dir, "stocksync.yaml")
	writeFile(t, configFile, fmt.Sprintf("source: {addr: %s, user: %s, password: %s}\nrules: rules.yaml\n", m.Addr, m.User, m.Password))
	return db, rulesFile, configFile
}

// TestRulesValidateLiveReportsEveryProblemAtOnce: in a file where one rule has a problem
// of its own, `rules validate --live` still checks the other rules against the source, so
// the author sees both kinds of problem, each at its place, in one run.
func TestRulesValidateLiveReportsEveryProblemAtOnce(t *testing.T) {
	db, rulesFile, configFile := liveRulesSetup(t, "CREATE TABLE stock (sku_id VARCHAR(32) PRIMARY KEY, qty INT NOT NULL)")
	writeFile(t, rulesFile, fmt.Sprintf(`rules:
  - name: broken
    match: {table: "%[1]s.stock", when: "after.qty >"}
    topic: a
  - name: unknown-column
    match: {table: "%[1]s.stock"}
    topic: b
    fields: [sku_id, qtty]
`, db))

	_, stderr, err := runRulesCLI(t, "validate", "--live", "--config", configFile, rulesFile)
	if !errors.Is(err, errRulesInvalid) {
		t.Fatalf("validate --live: %v\n%s", err, stderr)
	}
	for _, want := range []string{
		rulesFile + `:3:`, `rule "broken": match.when:`,
		rulesFile + `:8:22: rule "unknown-column": table ` + db + `.stock has no column "qtty"`,
		"--live checked against the source only the one rule valid on its own",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}

	// serve and validate without --live still refuse the file whole.
	if _, err := rules.Load(rulesFile); err == nil {
		t.Error("rules.Load accepted a file with a problem")
	}
	if _, stderr, err := runRulesCLI(t, "validate", rulesFile); !errors.Is(err, errRulesInvalid) || strings.Contains(stderr, "qtty") {
		t.Errorf("validate without --live: %v\n%s", err, stderr)
	}
}

// TestRulesValidateLiveRefusesATableTheStreamCannotDecode: a rule matching a table with a
// column in a character set the stream has no decoder for (dec8) is refused by the live
// check (`rules validate --live`, and serve at start and at each reload), naming the
// column and the set: the stream would stop at the table's first change. A rule that
// leaves the table out is not.
func TestRulesValidateLiveRefusesATableTheStreamCannotDecode(t *testing.T) {
	db, rulesFile, configFile := liveRulesSetup(t, "CREATE TABLE stock (sku_id VARCHAR(32) PRIMARY KEY, qty INT NOT NULL)",
		"CREATE TABLE legacy (id INT PRIMARY KEY, note VARCHAR(20) CHARACTER SET dec8)")
	writeFile(t, rulesFile, fmt.Sprintf("rules:\n  - name: every-table\n    match: {table: \"%s.*\"}\n    topic: a\n", db))
	_, stderr, err := runRulesCLI(t, "validate", "--live", "--config", configFile, rulesFile)
	if want := `rule "every-table": column note of ` + db + `.legacy is in character set dec8, which stocksync cannot decode`; !errors.Is(err, errRulesInvalid) || !strings.Contains(stderr, want) {
		t.Errorf("validate --live of a rule over a dec8 column: %v\n%s\nwant %q", err, stderr, want)
	}
	writeFile(t, rulesFile, fmt.Sprintf("rules:\n  - name: stock\n    match: {table: \"%s.stock\"}\n    topic: a\n", db))
	if _, stderr, err := runRulesCLI(t, "validate", "--live", "--config", configFile, rulesFile); err != nil {
		t.Errorf("validate --live of a rule that leaves the dec8 table out: %v\n%s", err, stderr)
	}
}

// TestRulesValidateLiveWarnsAboutForeignKeysThatCascade: InnoDB applies a foreign key's
// CASCADE or SET NULL to the child table without writing it to the binlog, so a rule
// reading the child misses those changes. `rules validate --live` (as serve at start and
// at each reload) warns, one line a key, naming the key, its child and parent, the
// actions, the rules reading the child, what is missed and what to do; it still exits 0,
// the file valid. A RESTRICT key, a cascading key of a table no rule reads, and a row
// rule whose match.ops take no kind of change the key makes, are not named.
func TestRulesValidateLiveWarnsAboutForeignKeysThatCascade(t *testing.T) {
	db, rulesFile, configFile := liveRulesSetup(t,
		"CREATE TABLE parent (id INT PRIMARY KEY)",
		"CREATE TABLE stock_lines (id INT PRIMARY KEY, parent_id INT, qty INT, wh INT, CONSTRAINT fk_lines FOREIGN KEY (parent_id) REFERENCES parent (id) ON DELETE CASCADE)",
		"CREATE TABLE stock_holds (id INT PRIMARY KEY, parent_id INT, qty INT, wh INT, CONSTRAINT fk_holds FOREIGN KEY (parent_id) REFERENCES parent (id) ON DELETE SET NULL ON UPDATE CASCADE)",
		"CREATE TABLE stock_kept (id INT PRIMARY KEY, parent_id INT, qty INT, wh INT, CONSTRAINT fk_kept FOREIGN KEY (parent_id) REFERENCES parent (id) ON DELETE RESTRICT)",
		"CREATE TABLE audit (id INT PRIMARY KEY, parent_id INT, CONSTRAINT fk_audit FOREIGN KEY (parent_id) REFERENCES parent (id) ON DELETE CASCADE)")
	writeFile(t, rulesFile, fmt.Sprintf(`rules:
  - name: stock-rows
    match: {table: "%[1]s.stock_*"}
    topic: a
  - name: line-totals
    match: {table: "%[1]s.stock_lines"}
    emit: aggregate
    group_by: [wh]
    sum: {qty: qty}
    topic: b
  - name: new-lines
    match: {table: "%[1]s.stock_lines", ops: [insert]}
    topic: c
  - name: hold-deletes
    match: {table: "%[1]s.stock_holds", ops: [delete, read]}
    topic: d
`, db))

	cmd := exec.Command(binary, "rules", "validate", "--live", "--config", configFile, rulesFile)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("validate --live of rules over tables with cascading foreign keys: %v (want exit 0)\n%s", err, stderr.String())
	}
	if want := rulesFile + ": 4 rules, valid\n"; stdout.String() != want {
		t.Errorf("stdout %q, want %q", stdout.String(), want)
	}
	warnings := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
	if len(warnings) != 2 {
		t.Fatalf("stderr has %d lines, want a warning for each of the two cascading keys of tables the rules read:\n%s", len(warnings), stderr.String())
	}
	for i, wants := range [][]string{{
		"stocksync: warning: " + rulesFile + `: rule "stock-rows": foreign key fk_holds of ` + db + ".stock_holds references " + db + ".parent ON DELETE SET NULL ON UPDATE CASCADE: ",
		"a DELETE of a row of " + db + ".parent sets (parent_id) of its rows of " + db + ".stock_holds to NULL",
		"a change of (id) in a row of " + db + ".parent changes (parent_id) of its rows of " + db + ".stock_holds to match",
		"writes none of it to the binlog",
		"make the key ON DELETE RESTRICT ON UPDATE RESTRICT (docs/operations.md, Foreign keys that cascade)",
	}, {
		"stocksync: warning: " + rulesFile + `: rules "stock-rows", "line-totals": foreign key fk_lines of ` + db + ".stock_lines references " + db + ".parent ON DELETE CASCADE: ",
		"a DELETE of a row of " + db + ".parent deletes its rows of " + db + ".stock_lines, inside InnoDB",
		"Have the application change the rows of " + db + ".stock_lines itself, in the same transaction before those of " + db + ".parent, or make the key ON DELETE RESTRICT (",
	}} {
		for _, want := range wants {
			if !strings.Contains(warnings[i], want) {
				t.Errorf("warning %d lacks %q:\n%s", i+1, want, warnings[i])
			}
		}
	}
	for _, unwanted := range []string{"fk_kept", "fk_audit"} {
		if strings.Contains(stderr.String(), unwanted) {
			t.Errorf("stderr names %s, which changes no table a rule reads:\n%s", unwanted, stderr.String())
		}
	}
	// A row rule that takes none of the kinds of change a key makes misses nothing of it:
	// new-lines hears inserts only (fk_lines deletes), hold-deletes deletes only (fk_holds
	// updates).
	for _, unwanted := range []string{"new-lines", "hold-deletes"} {
		if strings.Contains(stderr.String(), unwanted) {
			t.Errorf("stderr names rule %s, whose ops take no change the keys make:\n%s", unwanted, stderr.String())
		}
	}

	// explain, which makes the same live check, prints them too.
	if _, stderr, err := runRulesCLI(t, "explain", "--config", configFile, rulesFile); err != nil || strings.Count(stderr, "stocksync: warning:") != 2 {
		t.Errorf("explain: %v, want the two warnings on stderr:\n%s", err, stderr)
	}
}

// TestRulesValidateLiveChecksSystemVersionedTablesAndLeavesSequencesOut: the live check
// (`rules validate --live`, and serve at start and at each reload) reads a table WITH
// SYSTEM VERSIONING as a table, with the columns SELECT * shows (its period columns are
// published by neither the stream nor a snapshot), leaves out a sequence a rule's glob
// matches (its NEXTVAL rows are not data, and the stream leaves them out), and refuses a
// transaction-precise versioned table, whose changes MariaDB logs as statements.
func TestRulesValidateLiveChecksSystemVersionedTablesAndLeavesSequencesOut(t *testing.T) {
	db, rulesFile, configFile := liveRulesSetup(t,
		"CREATE TABLE sv_stock (id INT PRIMARY KEY, wh VARCHAR(8), qty INT) WITH SYSTEM VERSIONING",
		"CREATE TABLE stock_a (id INT PRIMARY KEY, wh VARCHAR(8), qty INT)", "CREATE SEQUENCE stock_seq",
		`CREATE TABLE trx_stock (id INT PRIMARY KEY, wh VARCHAR(8), qty INT,
		  rs BIGINT UNSIGNED GENERATED ALWAYS AS ROW START INVISIBLE, re BIGINT UNSIGNED GENERATED ALWAYS AS ROW END INVISIBLE,
		  PERIOD FOR SYSTEM_TIME (rs, re)) ENGINE=InnoDB WITH SYSTEM VERSIONING`)
	stateful := `
  - name: sv
    match: {table: "%[1]s.sv_stock"}
    emit: aggregate
    group_by: [wh]
    sum: {qty: qty}
    topic: t1
  - name: glob
    match: {table: "%[1]s.stock_*"}
    emit: aggregate
    group_by: [wh]
    sum: {qty: qty}
    topic: t2
`
	writeFile(t, rulesFile, fmt.Sprintf("rules:"+stateful, db))
	if _, stderr, err := runRulesCLI(t, "validate", "--live", "--config", configFile, rulesFile); err != nil {
		t.Errorf("validate --live of rules over a system-versioned table and a glob that matches a sequence: %v\n%s", err, stderr)
	}
	writeFile(t, rulesFile, fmt.Sprintf("rules:"+stateful+`  - name: period
    match: {table: "%[1]s.sv_stock"}
    topic: t3
    fields: [id, row_end]
  - name: trx
    match: {table: "%[1]s.trx_stock"}
    topic: t4
`, db))
	_, stderr, err := runRulesCLI(t, "validate", "--live", "--config", configFile, rulesFile)
	if !errors.Is(err, errRulesInvalid) {
		t.Fatalf("validate --live: %v\n%s", err, stderr)
	}
	for _, want := range []string{
		`rule "period": table ` + db + `.sv_stock has no column "row_end"`,
		`rule "trx": ` + db + `.trx_stock is system-versioned with transaction-precise history`,
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	for _, unwanted := range []string{"stock_seq", `rule "sv"`, `rule "glob"`} {
		if strings.Contains(stderr, unwanted) {
			t.Errorf("stderr names %q:\n%s", unwanted, stderr)
		}
	}
}

// TestRulesCLIAuthorMistakes: what a rule author gets wrong outside the rules file is
// named as such: a misspelt key of an event is refused, not ignored, and a rules file
// that cannot be read is not reported as "not valid".
func TestRulesCLIAuthorMistakes(t *testing.T) {
	dir := t.TempDir()
	rulesFile, events := filepath.Join(dir, "rules.yaml"), filepath.Join(dir, "events.json")
	writeFile(t, rulesFile, "rules:\n  - name: r\n    match: {table: shop.t}\n    topic: t\n")
	writeFile(t, events, `{"schema": "shop", "table": "t", "op": "insert", "after": {"id": 1}, "colums": [{"name": "id", "kind": "uint"}]}`)
	if _, _, err := runRulesCLI(t, "test", rulesFile, "--event", events); err == nil || !strings.Contains(err.Error(), `unknown field "colums"`) {
		t.Errorf("rules test with a misspelt key: %v; want the key named", err)
	}
	missing := filepath.Join(dir, "nope.yaml")
	if _, _, err := runRulesCLI(t, "validate", missing); err == nil || errors.Is(err, errRulesInvalid) || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("validate of a missing file: %v; want the reading error", err)
	}
}

// TestRulesExplainLeavesOutTheCheckpointTables: checkpoint.table and its _state table are
// stocksync's own, whose changes the daemon never reads whatever a rule's globs match:
// `rules explain` does not list them, and `rules validate --live` (as serve at start and
// at a reload) does not check the rules' columns against them.
func TestRulesExplainLeavesOutTheCheckpointTables(t *testing.T) {
	db, rulesFile, configFile := liveRulesSetup(t, "CREATE TABLE stock (sku_id VARCHAR(32) PRIMARY KEY, qty INT NOT NULL)",
		"CREATE TABLE ckpt (name VARCHAR(64) PRIMARY KEY)", "CREATE TABLE ckpt_state (name VARCHAR(64) PRIMARY KEY)")
	config, err := os.ReadFile(configFile)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, configFile, string(config)+fmt.Sprintf("checkpoint: {table: %s.ckpt}\n", db))
	writeFile(t, rulesFile, fmt.Sprintf("rules:\n  - name: every-table\n    match: {table: \"%s.*\"}\n    fields: [sku_id, qty]\n    topic: a\n", db))
	stdout, stderr, err := runRulesCLI(t, "explain", "--config", configFile, rulesFile)
	if err != nil || strings.Contains(stdout, ".ckpt") || !strings.Contains(stdout, "  "+db+".stock\n") {
		t.Errorf("explain: %v\n%s%s", err, stdout, stderr)
	}
	if _, stderr, err := runRulesCLI(t, "validate", "--live", "--config", configFile, rulesFile); err != nil {
		t.Errorf("validate --live: %v\n%s", err, stderr)
	}
}

// TestRulesExplainShowsTheRulesValidOnTheirOwn: in a file where one rule has a problem of
// its own, `rules explain` still shows what the other rules match on the source, prints
// every problem (the file's and the source's) on stderr and fails; a file without
// problems is explained and succeeds.
func TestRulesExplainShowsTheRulesValidOnTheirOwn(t *testing.T) {
	db, rulesFile, configFile := liveRulesSetup(t, "CREATE TABLE stock (sku_id VARCHAR(32) PRIMARY KEY, qty INT NOT NULL)",
		"CREATE TABLE audit (id INT PRIMARY KEY)")
	good := fmt.Sprintf(`rules:
  - name: stock-rows
    match: {table: "%[1]s.stock"}
    topic: a
  - name: audit-rows
    match: {table: "%[1]s.audit"}
    fields: [id, qtty]
    topic: b
`, db)
	broken := good + fmt.Sprintf(`  - name: broken
    match: {table: "%[1]s.audit", when: "after.id >"}
    topic: c
`, db)

	writeFile(t, rulesFile, broken)
	stdout, stderr, err := runRulesCLI(t, "explain", "--config", configFile, rulesFile)
	if !errors.Is(err, errRulesInvalid) {
		t.Fatalf("explain of a file with a problem: %v; want errRulesInvalid\n%s", err, stderr)
	}
	for _, want := range []string{
		"rule stock-rows (emit row, format debezium, topic a) matches " + db + ".stock:\n  " + db + ".stock\n",
		"rule audit-rows (emit row, format debezium, topic b) matches " + db + ".audit:\n  " + db + ".audit\n",
		"tables none of these rules matches (", "; the rules with problems are left out):\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "broken") {
		t.Errorf("stdout explains the rule with a problem:\n%s", stdout)
	}
	for _, want := range []string{
		rulesFile + `:7:18: rule "audit-rows": table ` + db + `.audit has no column "qtty"`,
		rulesFile + `:10:`, `rule "broken": match.when:`,
		rulesFile + ": explain showed only the 2 rules valid on their own; the others are explained once their own problems are mended",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}

	writeFile(t, rulesFile, "rules:\n  - name: only-broken\n    match: {table: shop.t}\n")
	stdout, stderr, err = runRulesCLI(t, "explain", "--config", configFile, rulesFile)
	if !errors.Is(err, errRulesInvalid) || stdout != "" ||
		!strings.Contains(stderr, `rule "only-broken": topic: missing`) || !strings.Contains(stderr, "explain showed no rule (none is valid on its own)") {
		t.Errorf("explain of a file with no rule valid on its own: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}

	writeFile(t, rulesFile, strings.Replace(good, "[id, qtty]", "[id]", 1))
	stdout, stderr, err = runRulesCLI(t, "explain", "--config", configFile, rulesFile)
	if err != nil || stderr != "" || !strings.Contains(stdout, "rule audit-rows") || !strings.Contains(stdout, "tables no rule matches (") {
		t.Errorf("explain of a valid file: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}
}

// TestRulesExplainSaysWhatATruncateDoes: for each table an aggregate or transition rule
// matches, explain says whether a TRUNCATE or DROP TABLE of it publishes the groups empty
// (every such rule reads it alone) or stops the stream.
func TestRulesExplainSaysWhatATruncateDoes(t *testing.T) {
	db, rulesFile, configFile := liveRulesSetup(t, "CREATE TABLE stock (sku_id VARCHAR(32) PRIMARY KEY, qty INT NOT NULL)",
		"CREATE TABLE shard_a (sku_id VARCHAR(32) PRIMARY KEY, qty INT NOT NULL)")
	writeFile(t, rulesFile, fmt.Sprintf(`rules:
  - name: stock-total
    match: {table: "%[1]s.stock"}
    emit: aggregate
    group_by: [sku_id]
    sum: {n: qty}
    topic: a
  - name: shard-total
    match: {table: "%[1]s.shard_*"}
    emit: aggregate
    group_by: [sku_id]
    sum: {n: qty}
    topic: b
  - name: stock-rows
    match: {table: "%[1]s.stock"}
    topic: c
`, db))
	stdout, stderr, err := runRulesCLI(t, "explain", "--config", configFile, rulesFile)
	if err != nil {
		t.Fatalf("explain: %v\n%s", err, stderr)
	}
	for _, want := range []string{
		"  " + db + ".stock  (a TRUNCATE or DROP TABLE of it publishes its groups empty)\n",
		"  " + db + ".shard_a  (a TRUNCATE or DROP TABLE of it seeds the rules that read it again: one of them reads other tables too)\n",
		"matches " + db + ".stock:\n  " + db + ".stock\n", // the row rule: no note
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
}

// TestRulesTestLowStockFlagStartsLow: as rules.md says of a transition whose value is true
// for an empty group (`sellable < 5`), a SKU that starts low sends nothing, and the first
// message of one that starts above says false, before holding true.
func TestRulesTestLowStockFlagStartsLow(t *testing.T) {
	dir := t.TempDir()
	rulesFile, events := filepath.Join(dir, "rules.yaml"), filepath.Join(dir, "events.json")
	writeFile(t, rulesFile, `rules:
  - name: low-stock
    match: {table: inventory.sellable_shard}
    emit: transition
    group_by: [sku_id]
    sum: {sellable: qty}
    value: "sellable < 5"
    topic: alerts.low-stock
`)
	writeFile(t, events, `[[{"schema":"inventory","table":"sellable_shard","op":"read","after":{"sku_id":"LOW","shard":0,"qty":3}}],
 [{"schema":"inventory","table":"sellable_shard","op":"insert","after":{"sku_id":"HIGH","shard":0,"qty":10}}]]`)
	stdout, stderr, err := runRulesCLI(t, "test", rulesFile, "--event", events)
	if err != nil || stderr != "" {
		t.Fatalf("rules test: %v\n%s", err, stderr)
	}
	txns := parseRulesTestOutput(t, stdout)
	if len(txns) != 2 || !txns[0].nothing || len(txns[1].messages) != 1 ||
		shownPart(txns[1].messages[0].value) != `{"op":"u","before":{"sku_id":"HIGH","sellable":0,"value":true},"after":{"sku_id":"HIGH","sellable":10,"value":false}}` {
		t.Errorf("rules test:\n%s", stdout)
	}
}

// TestRulesValidateRefusesTheDaemonsOwnTopics: given --config, `rules validate` refuses a
// rule publishing to kafka.heartbeat_topic, or (exactly-once) kafka.checkpoint_topic, or
// whose topic template could be filled in as one, at the rule's topic, naming the rule and
// the config key; without --config it cannot know them.
func TestRulesValidateRefusesTheDaemonsOwnTopics(t *testing.T) {
	dir := t.TempDir()
	rulesFile, configFile := filepath.Join(dir, "rules.yaml"), filepath.Join(dir, "stocksync.yaml")
	writeFile(t, configFile, "kafka:\n  heartbeat_topic: shop.heartbeats\n  exactly_once: true\n  transactional_id: t\n  checkpoint_topic: shop.checkpoints\n")
	writeFile(t, rulesFile, `rules:
  - name: beats
    match: {table: "inventory.stock"}
    topic: shop.heartbeats
  - name: per-table
    match: {table: "shop.check*"}
    topic: "{schema}.{table}"
  - name: fine
    match: {table: "inventory.stock"}
    topic: shop.stock
`)
	_, stderr, err := runRulesCLI(t, "validate", "--config", configFile, rulesFile)
	if !errors.Is(err, errRulesInvalid) {
		t.Fatalf("validate --config: %v\n%s", err, stderr)
	}
	for _, want := range []string{
		rulesFile + `:4:12: rule "beats": topic "shop.heartbeats" is kafka.heartbeat_topic`,
		rulesFile + `:7:12: rule "per-table": topic "{schema}.{table}" could be filled in as "shop.checkpoints", kafka.checkpoint_topic`,
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr, `"fine"`) || strings.Contains(stderr, `"per-table": topic "{schema}.{table}" could be filled in as "shop.heartbeats"`) {
		t.Errorf("refused more than the two rules' topics:\n%s", stderr)
	}
	if out, stderr, err := runRulesCLI(t, "validate", rulesFile); err != nil || !strings.Contains(out, "3 rules, valid") {
		t.Errorf("validate without --config: %v\n%s%s", err, out, stderr)
	}
}
