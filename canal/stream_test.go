package canal_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/stocksync/stocksync/canal"
	"github.com/stocksync/stocksync/internal/testutil"
)

// countingFilter matches the tables of one schema listed in tables, and counts how often
// it was asked about each table of that schema.
type countingFilter struct {
	schema   string
	tables   map[string]bool
	stateful map[string]bool // tables an aggregate or transition rule reads, as it were
	alone    map[string]bool // stateful tables whose rules read no other
	mu       sync.Mutex
	asked    map[string]int
}

func (f *countingFilter) StatefulTables(schema, table string) bool {
	return schema == f.schema && f.stateful[table]
}

func (f *countingFilter) StatefulSchema(schema string) bool {
	return schema == f.schema && len(f.stateful) > 0
}

func (f *countingFilter) StatefulAlone(schema, table string) bool {
	return schema == f.schema && f.alone[table]
}

// emptier is a recorder that takes tables emptied by DDL (canal.TableEmptier), noting
// each with its source and the commits recorded before it.
type emptier struct {
	*recorder
	emptied []emptiedTable
}

type emptiedTable struct {
	table   string
	src     canal.Source
	commits int
}

func (e *emptier) Emptied(_ context.Context, schema, table string, src canal.Source) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.emptied = append(e.emptied, emptiedTable{table: schema + "." + table, src: src, commits: len(e.commits)})
	return nil
}

func (f *countingFilter) PatternRule(_, _ string) (string, bool) { return "", false }

func (f *countingFilter) Matches(schema, table string) bool {
	if schema != f.schema {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked[table]++
	return f.tables[table]
}

func (f *countingFilter) askedAbout(table string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.asked[table]
}

// TestStreamLeavesUnmatchedTablesUndecoded: rows events of tables the filter does not
// match are not decoded, and the matched table's rows still arrive whole.
func TestStreamLeavesUnmatchedTablesUndecoded(t *testing.T) {
	s := newSource(t)
	testutil.Exec(t, s.db, "CREATE TABLE wanted (id INT PRIMARY KEY, qty INT)", "CREATE TABLE other (id INT PRIMARY KEY, note VARCHAR(20))")
	from := s.position()
	testutil.Exec(t, s.db, "INSERT INTO other VALUES (1, 'a'), (2, 'b')", "INSERT INTO wanted VALUES (1, 10), (2, 20)", "INSERT INTO other VALUES (3, 'c')")
	to := s.position()
	filter := &countingFilter{schema: s.name, tables: map[string]bool{"wanted": true}, asked: map[string]int{}}
	st := canal.NewStream(s.cfg, s.server, filter, zaptest.NewLogger(t))
	rows, err := runUntil(t.Context(), st, from, to, &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Table.Name != "wanted" || rows[1].After[1] != int64(20) {
		t.Fatalf("want the two rows of wanted, got %d: %+v", len(rows), rows)
	}
	if st.Undecoded() < 2 {
		t.Errorf("Undecoded = %d, want at least the 2 rows events of other", st.Undecoded())
	}
}

// TestStreamDecodesLateWhenTheFilterChanges: events parsed ahead while the filter did not
// match their table, and handled after a new filter that does, are decoded then: a
// reload loses no row.
func TestStreamDecodesLateWhenTheFilterChanges(t *testing.T) {
	s := newSource(t)
	if _, err := s.db.Exec("CREATE TABLE stock (id INT PRIMARY KEY, qty INT)"); err != nil {
		t.Fatal(err)
	}
	from := s.position()
	if _, err := s.db.Exec("INSERT INTO stock VALUES (1, 1), (2, 2)"); err != nil {
		t.Fatal(err)
	}
	first := s.position()
	if _, err := s.db.Exec("INSERT INTO stock VALUES (3, 3), (4, 4), (5, 5)"); err != nil {
		t.Fatal(err)
	}
	to := s.position()

	filter := &countingFilter{schema: s.name, tables: map[string]bool{}, asked: map[string]int{}}
	matchAll := &countingFilter{schema: s.name, tables: map[string]bool{"stock": true}, asked: map[string]int{}}
	st := canal.NewStream(s.cfg, s.server, filter, zaptest.NewLogger(t))
	release := make(chan struct{})
	var blocked atomic.Bool
	rec := &recorder{onCommit: func(p canal.Position) {
		// Hold the reader at the first transaction's commit until the second one has
		// been parsed ahead under the old filter.
		if p.Compare(first) >= 0 && blocked.CompareAndSwap(false, true) {
			<-release
		}
	}}
	type result struct {
		rows []*canal.RowChange
		err  error
	}
	done := make(chan result, 1)
	go func() {
		rows, err := runUntil(t.Context(), st, from, to, rec)
		done <- result{rows, err}
	}()
	// Asked three times about stock: by the parser for each transaction's rows event, and
	// by the reader for the first transaction's table map, before it blocks.
	testutil.Eventually(t, 20*time.Second, "the second transaction parsed under the old filter",
		func() bool { return filter.askedAbout("stock") >= 3 && blocked.Load() })
	st.SetFilter(matchAll)
	close(release)
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	rows := res.rows
	if len(rows) != 3 {
		t.Fatalf("want the second transaction's 3 rows, decoded after the filter changed; got %d: %+v", len(rows), rows)
	}
	for i, r := range rows {
		if want := int64(i + 3); r.After[0] != want || r.After[1] != want {
			t.Errorf("row %d = %v, want id and qty %d", i, r.After, want)
		}
	}
}

// runUntil runs st from `from` until a commit at or after `to` and returns the rows rec
// saw.
func runUntil(ctx context.Context, st *canal.Stream, from, to canal.Position, rec *recorder) ([]*canal.RowChange, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var reached atomic.Bool
	inner := rec.onCommit
	rec.onCommit = func(p canal.Position) {
		if inner != nil {
			inner(p)
		}
		if p.Compare(to) >= 0 {
			reached.Store(true)
			cancel()
		}
	}
	err := st.Run(ctx, from, rec)
	if !reached.Load() {
		return nil, fmt.Errorf("stream from %s stopped before %s: %v", from, to, err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.rows, nil
}

// TestStreamRowIndexIgnoresOtherTables: a change's Source.Row counts its transaction's
// changes of its own table, so that it is the same whichever other tables the rules
// match, and a repeat after a rules change names the change as the first message did.
func TestStreamRowIndexIgnoresOtherTables(t *testing.T) {
	s := newSource(t)
	testutil.Exec(t, s.db, "CREATE TABLE wanted (id INT PRIMARY KEY)", "CREATE TABLE other (id INT PRIMARY KEY)")
	from := s.position()
	tx, err := s.db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"INSERT INTO other VALUES (1), (2)", "INSERT INTO wanted VALUES (1), (2)",
		"INSERT INTO other VALUES (3)", "INSERT INTO wanted VALUES (3)"} {
		if _, err := tx.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	to := s.position()
	indexes := func(tables map[string]bool) map[string][]int {
		filter := &countingFilter{schema: s.name, tables: tables, asked: map[string]int{}}
		rows, err := runUntil(t.Context(), canal.NewStream(s.cfg, s.server, filter, zaptest.NewLogger(t)), from, to, &recorder{})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string][]int{}
		for _, c := range rows {
			got[c.Table.Name] = append(got[c.Table.Name], c.Source.Row)
		}
		return got
	}
	alone := indexes(map[string]bool{"wanted": true})
	both := indexes(map[string]bool{"wanted": true, "other": true})
	want := fmt.Sprint([]int{0, 1, 2})
	if fmt.Sprint(alone["wanted"]) != want || fmt.Sprint(both["wanted"]) != want || fmt.Sprint(both["other"]) != want {
		t.Errorf("row indexes: wanted alone %v; wanted %v and other %v matched together; want %s each", alone["wanted"], both["wanted"], both["other"], want)
	}
}

// TestStreamStopsAtAStatementLoggedChange: a session whose binlog_format is STATEMENT
// (which the server-wide check at start cannot see) writes its changes as SQL. One of a
// table no rule matches is passed over as part of its transaction; one of a matched table
// stops the stream with ErrStatementChange, naming the table, instead of being lost. The
// error quotes the statement with its password literals redacted, as the log's schema
// change lines do: /readyz answers it to anyone.
func TestStreamStopsAtAStatementLoggedChange(t *testing.T) {
	s := newSource(t)
	testutil.Exec(t, s.db, "CREATE TABLE wanted (id INT PRIMARY KEY, qty INT)", "CREATE TABLE other (id INT PRIMARY KEY)")
	conn, err := s.db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	from := s.position()
	for _, q := range []string{"INSERT INTO wanted VALUES (1, 1)", "SET SESSION binlog_format = 'STATEMENT'",
		"BEGIN", "INSERT INTO other VALUES (1)", "COMMIT", "SET SESSION binlog_format = 'ROW'", "INSERT INTO wanted VALUES (2, 2)"} {
		if _, err := conn.ExecContext(t.Context(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	to := s.position()
	filter := &countingFilter{schema: s.name, tables: map[string]bool{"wanted": true}, asked: map[string]int{}}
	rows, err := runUntil(t.Context(), canal.NewStream(s.cfg, s.server, filter, zaptest.NewLogger(t)), from, to, &recorder{})
	if err != nil || len(rows) != 2 {
		t.Fatalf("around a statement-logged change of another table: %d rows, %v; want both rows of wanted", len(rows), err)
	}

	for _, q := range []string{"SET SESSION binlog_format = 'STATEMENT'", "UPDATE wanted SET qty = 777 WHERE id = 1 AND PASSWORD('hunter2-secret') <> ''", "SET SESSION binlog_format = 'ROW'"} {
		if _, err := conn.ExecContext(t.Context(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	err = canal.NewStream(s.cfg, s.server, filter, zaptest.NewLogger(t)).Run(ctx, to, &recorder{})
	if !errors.Is(err, canal.ErrStatementChange) || !strings.Contains(err.Error(), s.name+".wanted") {
		t.Fatalf("a statement-logged UPDATE of a matched table: the stream ended with %v; want ErrStatementChange naming %s.wanted", err, s.name)
	}
	if strings.Contains(err.Error(), "hunter2-secret") || !strings.Contains(err.Error(), "PASSWORD('<redacted>')") {
		t.Errorf("the error quotes the statement with its password literal: %v", err)
	}
}

// TestStreamStopsAtAPartialRowImage: a session whose binlog_row_image is MINIMAL or
// NOBLOB (which the server-wide check at start cannot see) leaves columns out of its row
// images. Images that are whole all the same pass: FULL with generated columns (VIRTUAL
// and PERSISTENT), MINIMAL on a table without a primary key (the server logs every
// column), NOBLOB on a table without BLOB or TEXT, and any image of a table no rule
// matches. A partial image of a matched table stops the stream with ErrPartialRowImage,
// naming the table, the position and the missing columns, instead of publishing them as
// NULL (UPDATE … SET price = price + 1 would otherwise publish id 2 → null).
func TestStreamStopsAtAPartialRowImage(t *testing.T) {
	s := newSource(t)
	testutil.Exec(t, s.db, `CREATE TABLE products (id INT PRIMARY KEY, name VARCHAR(20), price DECIMAL(10,2), note TEXT,
		price_cents INT AS (price * 100) VIRTUAL, label VARCHAR(30) AS (CONCAT(name, '!')) PERSISTENT)`,
		"CREATE TABLE nopk (sku VARCHAR(10), qty INT)", "CREATE TABLE noblobs (id INT PRIMARY KEY, qty INT)",
		"CREATE TABLE other (id INT PRIMARY KEY, qty INT, note TEXT)",
		"INSERT INTO noblobs VALUES (1, 1)", "INSERT INTO other VALUES (1, 1, 'o')")
	conn, err := s.db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	exec := func(statements ...string) {
		t.Helper()
		for _, q := range statements {
			if _, err := conn.ExecContext(t.Context(), q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}
	filter := &countingFilter{schema: s.name, tables: map[string]bool{"products": true, "nopk": true, "noblobs": true}, asked: map[string]int{}}

	from := s.position()
	exec("INSERT INTO products (id, name, price, note) VALUES (1, 'a', 1.00, 'n'), (2, 'b', 2.00, 'm')",
		"UPDATE products SET price = price + 1 WHERE id = 2",
		"SET SESSION binlog_row_image = 'MINIMAL'", "UPDATE other SET qty = 2 WHERE id = 1",
		"INSERT INTO nopk (sku) VALUES ('k')", "UPDATE nopk SET qty = 2",
		"SET SESSION binlog_row_image = 'NOBLOB'", "UPDATE noblobs SET qty = 2 WHERE id = 1",
		"SET SESSION binlog_row_image = 'FULL'")
	to := s.position()
	rows, err := runUntil(t.Context(), canal.NewStream(s.cfg, s.server, filter, zaptest.NewLogger(t)), from, to, &recorder{})
	if err != nil {
		t.Fatalf("past whole row images, and a partial one of a table no rule matches: %v", err)
	}
	var got []string
	for _, c := range rows {
		got = append(got, fmt.Sprintf("%s %s %v → %v", c.Op, c.Table.Name, c.Before, c.After))
	}
	want := []string{
		"c products [] → [1 a 1.00 n 100 a!]",
		"c products [] → [2 b 2.00 m 200 b!]",
		"u products [2 b 2.00 m 200 b!] → [2 b 3.00 m 300 b!]",
		"c nopk [] → [k <nil>]",
		"u nopk [k <nil>] → [k 2]",
		"u noblobs [1 1] → [1 2]",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("row changes past whole row images:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	for _, tc := range []struct {
		image, statement string
		want             []string
	}{
		{"MINIMAL", "UPDATE products SET price = price + 1 WHERE id = 2",
			[]string{"this update of " + s.name + ".products", "its before image lacks name, price, note,", "its after image lacks id, name, note"}},
		{"NOBLOB", "UPDATE products SET price = price + 1 WHERE id = 1",
			[]string{"this update of " + s.name + ".products", "its before image lacks note and its after image lacks note"}},
		{"MINIMAL", "INSERT INTO products (id, name, price) VALUES (3, 'c', 3.00)",
			[]string{"this insert of " + s.name + ".products", "its after image lacks note"}},
		{"MINIMAL", "DELETE FROM products WHERE id = 1",
			[]string{"this delete of " + s.name + ".products", "its before image lacks name, price, note"}},
	} {
		at := s.position()
		exec("SET SESSION binlog_row_image = '"+tc.image+"'", tc.statement, "SET SESSION binlog_row_image = 'FULL'")
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		rec := &recorder{}
		err := canal.NewStream(s.cfg, s.server, filter, zaptest.NewLogger(t)).Run(ctx, at, rec)
		cancel()
		if !errors.Is(err, canal.ErrPartialRowImage) {
			t.Fatalf("%s under binlog_row_image %s: the stream ended with %v; want ErrPartialRowImage", tc.statement, tc.image, err)
		}
		for _, w := range append(tc.want, "at "+at.File+":", "binlog_row_image MINIMAL or NOBLOB", "SET GLOBAL binlog_row_image=FULL",
			"docs/operations.md, Partial row images") {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s under binlog_row_image %s: the error lacks %q: %v", tc.statement, tc.image, w, err)
			}
		}
		if len(rec.rows) != 0 {
			t.Errorf("%s under binlog_row_image %s: handed on %d row changes before stopping; want none", tc.statement, tc.image, len(rec.rows))
		}
	}
}

// TestStreamStopsAtAPartialRowImageAfterSetGlobal: SET GLOBAL binlog_row_image=MINIMAL
// while a stream runs (the check at start saw FULL) makes every new session's row images
// partial; the running stream stops at the first such change of a matched table.
func TestStreamStopsAtAPartialRowImageAfterSetGlobal(t *testing.T) {
	m := testutil.StartPrivateMariaDB(t, "")
	s := newSourceOn(t, m.MySQL, "minimal")
	testutil.Exec(t, s.db, "CREATE TABLE products (id INT PRIMARY KEY, name VARCHAR(20), price DECIMAL(10,2))",
		"INSERT INTO products VALUES (2, 'b', 2.00)")
	from := s.position()
	f := s.follow(from)
	testutil.Exec(t, s.db, "UPDATE products SET price = 2.50 WHERE id = 2")
	f.reach(s.position()) // streaming, past a whole image
	testutil.Exec(t, s.db, "SET GLOBAL binlog_row_image = 'MINIMAL'")
	testutil.Exec(t, m.Open(t, s.name), "UPDATE products SET price = price + 1 WHERE id = 2") // a session opened after it
	<-f.stopped
	if !errors.Is(f.err, canal.ErrPartialRowImage) || !strings.Contains(f.err.Error(), "this update of "+s.name+".products") {
		t.Fatalf("after SET GLOBAL binlog_row_image=MINIMAL: the stream ended with %v; want ErrPartialRowImage naming %s.products", f.err, s.name)
	}
	for _, c := range f.rec.rows {
		if c.After[0] == nil {
			t.Errorf("handed on %v → %v, with the key null", c.Before, c.After)
		}
	}
}

// TestStreamRefusesACharacterSetItCannotDecode: a matched table with a column in a
// character set the stream has no decoder for (dec8 here) stops the stream at its rows
// with ErrUnsupportedCharset naming the table, the column and the set, rather than hand
// its bytes on as text; the rows before it are handed on.
func TestStreamRefusesACharacterSetItCannotDecode(t *testing.T) {
	s := newSource(t)
	testutil.Exec(t, s.db, "CREATE TABLE ok (id INT PRIMARY KEY, name VARCHAR(10) CHARACTER SET gbk)",
		"CREATE TABLE legacy (id INT PRIMARY KEY, name VARCHAR(10), label VARCHAR(10) CHARACTER SET dec8)")
	from := s.position()
	f := s.follow(from)
	testutil.Exec(t, s.db, "INSERT INTO ok VALUES (1, '库存')", "INSERT INTO legacy VALUES (1, 'a', 'b')")
	<-f.stopped
	if !errors.Is(f.err, canal.ErrUnsupportedCharset) || !strings.Contains(f.err.Error(), "column label of "+s.name+".legacy is in character set dec8") {
		t.Fatalf("the stream ended with %v; want ErrUnsupportedCharset naming column label of %s.legacy and dec8", f.err, s.name)
	}
	if len(f.rec.rows) != 1 || f.rec.rows[0].After[1] != "库存" {
		t.Errorf("handed on %d rows before the refused table, want the one of ok", len(f.rec.rows))
	}
}

// TestStreamLogsDDLWithoutPasswords: at debug level the stream logs each DDL statement
// the binlog holds; the account statements a DBA runs appear with their passwords, and the
// hash MariaDB writes for SET PASSWORD, as '<redacted>', the statement's shape kept.
func TestStreamLogsDDLWithoutPasswords(t *testing.T) {
	s := newSource(t)
	user := "'redact_" + s.name[len(s.name)-6:] + "'@'%'"
	t.Cleanup(func() { s.db.Exec("DROP USER IF EXISTS " + user) })
	var hash string
	if err := s.db.QueryRow("SELECT PASSWORD('pw-set-secret')").Scan(&hash); err != nil {
		t.Fatal(err)
	}
	from := s.position()
	testutil.Exec(t, s.db, "CREATE USER "+user+" IDENTIFIED BY 'pw-create-secret'",
		"ALTER USER "+user+" IDENTIFIED BY \"pw-alter-secret\"",
		"SET PASSWORD FOR "+user+" = PASSWORD('pw-set-secret')",
		"GRANT SELECT ON "+s.name+".* TO "+user+" IDENTIFIED BY 'pw-grant-secret'",
		"CREATE OR REPLACE USER "+user+" IDENTIFIED VIA mysql_native_password USING PASSWORD('pw-via-secret')",
		"CREATE TABLE after_users (id INT PRIMARY KEY)")
	to := s.position()
	core, logs := observer.New(zap.DebugLevel)
	filter := &countingFilter{schema: s.name, tables: map[string]bool{}, asked: map[string]int{}}
	if _, err := runUntil(t.Context(), canal.NewStream(s.cfg, s.server, filter, zap.New(core)), from, to, &recorder{}); err != nil {
		t.Fatal(err)
	}
	var queries []string
	for _, e := range logs.FilterMessage("schema change").All() {
		q := e.ContextMap()["query"].(string)
		queries = append(queries, q)
		if strings.Contains(q, "secret") || strings.Contains(q, hash) {
			t.Errorf("logged a password: %s", q)
		}
	}
	want := []string{
		"CREATE USER " + user + " IDENTIFIED BY '<redacted>'",
		"ALTER USER " + user + " IDENTIFIED BY '<redacted>'",
		"SET PASSWORD FOR " + user + "='<redacted>'", // as MariaDB writes it: the hash
		"GRANT SELECT ON " + s.name + ".* TO " + user + " IDENTIFIED BY '<redacted>'",
		"CREATE OR REPLACE USER " + user + " IDENTIFIED VIA mysql_native_password USING PASSWORD('<redacted>')",
		"CREATE TABLE after_users (id INT PRIMARY KEY)",
	}
	if !slices.Equal(queries, want) {
		t.Errorf("logged DDL:\n%s\nwant\n%s", strings.Join(queries, "\n"), strings.Join(want, "\n"))
	}
}

// TestStreamStopsWhenAStatefulTableIsEmptiedByDDL: TRUNCATE or DROP TABLE remove rows
// without row events. Of a table only row rules read, the stream goes on past it; of one
// an aggregate or transition rule reads that also reads other tables (a pattern, several
// globs), it stops there, naming the statement and table, for a handler that takes
// emptied tables but cannot seed rules again (TestStreamHandsRowlessDDLToAReseeder).
func TestStreamStopsWhenAStatefulTableIsEmptiedByDDL(t *testing.T) {
	s := newSource(t)
	testutil.Exec(t, s.db, "CREATE TABLE rowsonly (id INT PRIMARY KEY)", "CREATE TABLE totals (id INT PRIMARY KEY, qty INT)")
	from := s.position()
	testutil.Exec(t, s.db, "INSERT INTO rowsonly VALUES (1)", "TRUNCATE TABLE rowsonly", "INSERT INTO totals VALUES (1, 5)")
	to := s.position()
	filter := &countingFilter{schema: s.name, tables: map[string]bool{"rowsonly": true, "totals": true},
		stateful: map[string]bool{"totals": true}, asked: map[string]int{}}
	rows, err := runUntil(t.Context(), canal.NewStream(s.cfg, s.server, filter, zaptest.NewLogger(t)), from, to, &recorder{})
	if err != nil || len(rows) != 2 {
		t.Fatalf("past a TRUNCATE of a table only row rules read: %d rows, %v; want both inserts", len(rows), err)
	}
	testutil.Exec(t, s.db, "TRUNCATE TABLE totals", "DROP TABLE rowsonly")
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	h := &emptier{recorder: &recorder{}}
	err = canal.NewStream(s.cfg, s.server, filter, zaptest.NewLogger(t)).Run(ctx, to, h)
	if !errors.Is(err, canal.ErrStatefulTableEmptied) || !strings.Contains(err.Error(), "TRUNCATE of "+s.name+".totals") || len(h.emptied) != 0 {
		t.Fatalf("a TRUNCATE of a table an aggregate rule reads with others: the stream ended with %v, emptied %v; want ErrStatefulTableEmptied naming %s.totals", err, h.emptied, s.name)
	}
}

// TestStreamHandsOnATableEmptiedByDDLThatRulesReadAlone: TRUNCATE and DROP TABLE of a
// table whose aggregate and transition rules read no other go to a TableEmptier handler,
// with the statement's source, before its Commit, and the stream goes on. A rename of it,
// away or onto its name, still stops it, and so does any emptying for a handler that does
// not take emptied tables.
func TestStreamHandsOnATableEmptiedByDDLThatRulesReadAlone(t *testing.T) {
	s := newSource(t)
	testutil.Exec(t, s.db, "CREATE TABLE totals (id INT PRIMARY KEY, qty INT)", "CREATE TABLE incoming (id INT PRIMARY KEY, qty INT)")
	filter := &countingFilter{schema: s.name, tables: map[string]bool{"totals": true},
		stateful: map[string]bool{"totals": true}, alone: map[string]bool{"totals": true}, asked: map[string]int{}}
	from := s.position()
	var want []string
	var before, after []canal.Position // the positions around each emptying statement
	for _, q := range []string{"TRUNCATE TABLE totals", "DROP TABLE totals", "CREATE TABLE totals (id INT PRIMARY KEY, qty INT)"} {
		at := s.position()
		testutil.Exec(t, s.db, q)
		if !strings.HasPrefix(q, "CREATE") {
			want = append(want, s.name+".totals")
			before, after = append(before, at), append(after, s.position())
		}
	}
	to := s.position()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := canal.NewStream(s.cfg, s.server, filter, zaptest.NewLogger(t)).Run(ctx, from, &recorder{}); !errors.Is(err, canal.ErrStatefulTableEmptied) {
		t.Fatalf("a TRUNCATE for a handler that does not take emptied tables: %v; want ErrStatefulTableEmptied", err)
	}
	h := &emptier{recorder: &recorder{}}
	h.onCommit = func(p canal.Position) {
		if p.Compare(to) >= 0 {
			cancel()
		}
	}
	if err := canal.NewStream(s.cfg, s.server, filter, zaptest.NewLogger(t)).Run(ctx, from, h); err != nil {
		t.Fatalf("past DDL emptying a table rules read alone: %v", err)
	}
	var got []string
	for i, e := range h.emptied {
		got = append(got, e.table)
		if i >= len(before) {
			break
		}
		if e.src.File != before[i].File || e.src.Pos < before[i].Pos || e.src.TsMs == 0 || e.src.GTID == "" || e.src.Row != 0 {
			t.Errorf("emptied %s: source %+v; want the statement's, after %s, with its GTID and time", e.table, e.src, before[i])
		}
		if next := h.commits[e.commits]; next.Compare(before[i]) <= 0 || next.Compare(after[i]) > 0 {
			t.Errorf("emptied %s before the commit at %s; want it just before the statement's own, after %s, at or before %s", e.table, next, before[i], after[i])
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("emptied %v; want %v (TRUNCATE, DROP TABLE)", got, want)
	}

	// A rename stops it, away (the rows still exist, under the other name; a two-step
	// cut-over brings a copy back next) or onto the name.
	for _, c := range []struct{ q, want string }{
		{"ALTER TABLE totals RENAME TO totals_old", "Its rows left it"},
		{"RENAME TABLE incoming TO totals", "arrived in it"},
	} {
		at := s.position()
		testutil.Exec(t, s.db, c.q)
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		err := canal.NewStream(s.cfg, s.server, filter, zaptest.NewLogger(t)).Run(ctx, at, &emptier{recorder: &recorder{}})
		cancel()
		if !errors.Is(err, canal.ErrStatefulTableEmptied) || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%s of a table rules read alone: the stream ended with %v; want ErrStatefulTableEmptied saying %q", c.q, err, c.want)
		}
	}
}

// TestStreamStopsWhenAStatefulTableIsRenamedByDDL: a rename moves rows between names
// without row events. Of a table only row rules read, the stream goes on past it; for a
// handler that cannot seed rules again, renaming a table an aggregate or transition rule
// reads away (ALTER TABLE … RENAME), or another table onto its name (RENAME TABLE), stops
// it there, naming the statement and both tables.
func TestStreamStopsWhenAStatefulTableIsRenamedByDDL(t *testing.T) {
	s := newSource(t)
	testutil.Exec(t, s.db, "CREATE TABLE rowsonly (id INT PRIMARY KEY)", "CREATE TABLE totals (id INT PRIMARY KEY, qty INT)",
		"CREATE TABLE incoming (id INT PRIMARY KEY, qty INT)", "INSERT INTO incoming VALUES (7, 70)", "CREATE TABLE _totals_gho LIKE totals")
	from := s.position()
	// An online schema change's cut-over swaps a copy onto the stateful table's name in one
	// statement (gh-ost, pt-online-schema-change): the stream goes on.
	testutil.Exec(t, s.db, "INSERT INTO rowsonly VALUES (1)", "RENAME TABLE rowsonly TO rowsonly_old",
		"RENAME TABLE totals TO _totals_del, _totals_gho TO totals", "INSERT INTO totals VALUES (1, 5)")
	to := s.position()
	filter := &countingFilter{schema: s.name, tables: map[string]bool{"rowsonly": true, "totals": true},
		stateful: map[string]bool{"totals": true}, asked: map[string]int{}}
	rows, err := runUntil(t.Context(), canal.NewStream(s.cfg, s.server, filter, zaptest.NewLogger(t)), from, to, &recorder{})
	if err != nil || len(rows) != 2 {
		t.Fatalf("past a RENAME of a table only row rules read, and a cut-over's swap of a stateful one: %d rows, %v; want both inserts", len(rows), err)
	}
	if _, err := s.db.Exec("ALTER TABLE totals ADD note INT, RENAME TO totals_old"); err != nil {
		t.Fatal(err)
	}
	away := s.position()
	if _, err := s.db.Exec("RENAME TABLE incoming TO totals"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		from canal.Position
		want []string
	}{
		{to, []string{"ALTER TABLE … RENAME of " + s.name + ".totals to " + s.name + ".totals_old", "rule reads " + s.name + ".totals.", "left it"}},
		{away, []string{"RENAME TABLE of " + s.name + ".incoming to " + s.name + ".totals", "rule reads " + s.name + ".totals.", "arrived in it"}},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		err = canal.NewStream(s.cfg, s.server, filter, zaptest.NewLogger(t)).Run(ctx, tc.from, &recorder{})
		cancel()
		if !errors.Is(err, canal.ErrStatefulTableEmptied) {
			t.Fatalf("from %s: the stream ended with %v; want ErrStatefulTableEmptied", tc.from, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("from %s: the error lacks %q: %v", tc.from, w, err)
			}
		}
	}
}

// TestWrongPasswordIsNotUnreachable: a server that refuses the user or password was reached;
// TestStreamDescribesAgainOnlyTheTablesDDLNames: a DDL statement makes the stream
// describe again (a new *canal.Table, on MariaDB after asking information_schema) only
// the tables it names, where any statement anywhere on the server made it describe every
// table again, and the rules engine plan each anew. An ALTER through a spaced, dotted and
// backquoted name and each table of a multi-table RENAME are described again with their
// new shapes; a statement it cannot read for its tables (here a CREATE VIEW) makes it
// describe every table again.
func TestStreamDescribesAgainOnlyTheTablesDDLNames(t *testing.T) {
	s := newSource(t)
	testutil.Exec(t, s.db, "CREATE TABLE kept (id INT PRIMARY KEY, qty INT)", "CREATE TABLE altered (id INT PRIMARY KEY, qty INT)",
		"CREATE TABLE spare (id INT PRIMARY KEY, note VARCHAR(10), qty INT)", "CREATE TABLE other (a INT)")
	from := s.position()
	round := func(i int, keptNote bool, alteredNote bool) {
		t.Helper()
		kept, altered := fmt.Sprintf("INSERT INTO kept VALUES (%d, %d)", i, i), fmt.Sprintf("INSERT INTO altered VALUES (%d, %d)", i, i)
		if keptNote {
			kept = fmt.Sprintf("INSERT INTO kept VALUES (%d, 'n%d', %d)", i, i, i)
		}
		if alteredNote {
			altered = fmt.Sprintf("INSERT INTO altered VALUES (%d, %d, %d)", i, i, i)
		}
		testutil.Exec(t, s.db, kept, altered)
	}
	round(0, false, false)
	// Unrelated DDL: a staging table's life, an index and a TRUNCATE of another table.
	testutil.Exec(t, s.db, "CREATE TABLE staging (a INT)", "INSERT INTO staging VALUES (1)", "DROP TABLE staging",
		"CREATE INDEX a ON other (a)", "TRUNCATE TABLE other", "ALTER TABLE other ADD b INT")
	round(1, false, false)
	testutil.Exec(t, s.db, fmt.Sprintf("ALTER TABLE `%s` . `altered` ADD note INT", s.name))
	round(2, false, true)
	testutil.Exec(t, s.db, "CREATE VIEW v AS SELECT 1 AS one")
	round(3, false, true)
	testutil.Exec(t, s.db, "RENAME TABLE kept TO kept_old, spare TO kept")
	round(4, true, true)
	to := s.position()
	filter := &countingFilter{schema: s.name, tables: map[string]bool{"kept": true, "altered": true}, asked: map[string]int{}}
	rows, err := runUntil(t.Context(), canal.NewStream(s.cfg, s.server, filter, zaptest.NewLogger(t)), from, to, &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 10 {
		t.Fatalf("got %d rows; want 2 in each of 5 rounds", len(rows))
	}
	kept := func(round int) *canal.Table { return rows[2*round].Table }
	altered := func(round int) *canal.Table { return rows[2*round+1].Table }
	for _, c := range []struct {
		what           string
		a, b           *canal.Table
		describedAgain bool
	}{
		{"kept, after DDL of other tables", kept(0), kept(1), false},
		{"altered, after DDL of other tables", altered(0), altered(1), false},
		{"kept, after ALTER TABLE of altered", kept(1), kept(2), false},
		{"altered, after its ALTER TABLE", altered(1), altered(2), true},
		{"kept, after CREATE VIEW", kept(2), kept(3), true},
		{"altered, after CREATE VIEW", altered(2), altered(3), true},
		{"kept, after RENAME TABLE spare TO kept", kept(3), kept(4), true},
		{"altered, after RENAME TABLE of others", altered(3), altered(4), false},
	} {
		if again := c.a != c.b; again != c.describedAgain {
			t.Errorf("%s: described again %v; want %v", c.what, again, c.describedAgain)
		}
	}
	if got := altered(2).Columns; len(got) != 3 || got[2].Name != "note" || rows[5].After[2] != int64(2) {
		t.Errorf("altered after its ALTER: columns %+v, row %v; want note third, 2", got, rows[5].After)
	}
	if got := kept(4).Columns; len(got) != 3 || got[1].Name != "note" || rows[8].After[1] != "n4" {
		t.Errorf("kept after spare took its name: columns %+v, row %v; want spare's, note n4", got, rows[8].After)
	}
}

// the error names the keys to mend and is not one the pipeline waits out as unreachable.
func TestWrongPasswordIsNotUnreachable(t *testing.T) {
	s := newSource(t)
	cfg := s.cfg
	cfg.Password = "not-the-password"
	_, err := canal.Connect(t.Context(), cfg)
	if err == nil || errors.Is(err, canal.ErrUnreachable) || !strings.Contains(err.Error(), "refused user "+cfg.User+" or its password (source.user, source.password)") {
		t.Fatalf("connecting with a wrong password: %v; want a refusal naming source.user and source.password, not ErrUnreachable", err)
	}
}

// TestMissingGrantsAreNamed: a user without REPLICATION CLIENT listing the binlogs, and
// one that may not create the checkpoint table, are told the GRANT, not only the server's
// "access denied".
func TestMissingGrantsAreNamed(t *testing.T) {
	s := newSource(t)
	user := "noclient_" + s.name[len(s.name)-6:]
	testutil.Exec(t, s.db, "CREATE USER '"+user+"'@'%' IDENTIFIED BY 'pw'", "GRANT SELECT, REPLICATION SLAVE ON *.* TO '"+user+"'@'%'")
	t.Cleanup(func() { s.db.Exec("DROP USER '" + user + "'@'%'") })
	cfg := s.cfg
	cfg.User, cfg.Password = user, "pw"
	server, err := canal.Connect(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	if _, err := server.BinlogFiles(t.Context()); err == nil || !strings.Contains(err.Error(), "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO it") {
		t.Errorf("listing binlogs without REPLICATION CLIENT: %v; want the grant named", err)
	}
	_, err = canal.NewCheckpointStore(t.Context(), server.DB, s.name+".ckpt", "test")
	if err == nil || !strings.Contains(err.Error(), "(checkpoint.table)") || !strings.Contains(err.Error(), "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE ON `"+s.name+"`.* TO it") {
		t.Errorf("creating the checkpoint table without CREATE: %v; want checkpoint.table and the grant named", err)
	}
}

// TestStreamErrorsSayWhatTheServerMeans: the server's own words for a user without
// REPLICATION SLAVE ("access denied … using password: YES") and for a second replica with
// the same server id send a DBA the wrong way; the stream's error names the grant and
// source.server_id.
func TestStreamErrorsSayWhatTheServerMeans(t *testing.T) {
	s := newSource(t)
	user := "norepl_" + s.name[len(s.name)-6:]
	testutil.Exec(t, s.db, "CREATE TABLE beat (n INT)", "CREATE USER '"+user+"'@'%' IDENTIFIED BY 'pw'", "GRANT SELECT, REPLICATION CLIENT ON *.* TO '"+user+"'@'%'")
	t.Cleanup(func() { s.db.Exec("DROP USER '" + user + "'@'%'") })
	cfg := s.cfg
	cfg.User, cfg.Password = user, "pw"
	server, err := canal.Connect(t.Context(), cfg)
	if err != nil {
		t.Fatalf("a user without REPLICATION SLAVE could not even check the server: %v", err)
	}
	defer server.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	filter := &countingFilter{schema: s.name, tables: map[string]bool{}, asked: map[string]int{}}
	err = canal.NewStream(cfg, server, filter, zaptest.NewLogger(t)).Run(ctx, s.position(), &recorder{})
	if err == nil || !strings.Contains(err.Error(), "lacks REPLICATION SLAVE") {
		t.Errorf("streaming without REPLICATION SLAVE: %v; want the error to name the grant", err)
	}

	first := make(chan error, 1)
	from := s.position()
	rec := &recorder{}
	go func() { first <- canal.NewStream(s.cfg, s.server, filter, zaptest.NewLogger(t)).Run(ctx, from, rec) }()
	testutil.Eventually(t, 10*time.Second, "the first stream to read", func() bool {
		s.db.Exec("INSERT INTO beat VALUES (1)")
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.commits) > 0
	})
	second, cancelSecond := context.WithCancel(ctx)
	defer cancelSecond()
	go canal.NewStream(s.cfg, s.server, filter, zaptest.NewLogger(t)).Run(second, s.position(), &recorder{})
	select {
	case err := <-first:
		if err == nil || !strings.Contains(err.Error(), "give each its own source.server_id") || !strings.Contains(err.Error(), `registered from host "stocksync-`) {
			t.Errorf("a second replica with the same id: the first stream ended with %v; want it to name source.server_id and the replica that has it", err)
		}
	case <-ctx.Done():
		t.Error("a second replica with the same id: the first stream went on")
	}
}

// TestStreamStopsAtDropDatabaseOfAStatefulSchema: DROP DATABASE takes every table of the
// database with it, without row events or a DROP TABLE of each: of a database another
// aggregate or transition rule reads, the stream of a handler that cannot seed rules again
// stops there, naming it; of any other database it goes on.
func TestStreamStopsAtDropDatabaseOfAStatefulSchema(t *testing.T) {
	s := newSource(t)
	m := testutil.MySQLServer(t)
	folded, foldedDB := m.FreshDatabase(t, "folded")
	other, _ := m.FreshDatabase(t, "other")
	testutil.Exec(t, foldedDB, "CREATE TABLE totals (id INT PRIMARY KEY, qty INT)")
	filter := &countingFilter{schema: folded, tables: map[string]bool{"totals": true},
		stateful: map[string]bool{"totals": true}, alone: map[string]bool{"totals": true}, asked: map[string]int{}}
	from := s.position()
	testutil.Exec(t, s.db, "DROP DATABASE "+other, "DROP DATABASE "+folded)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	err := canal.NewStream(s.cfg, s.server, filter, zaptest.NewLogger(t)).Run(ctx, from, &emptier{recorder: &recorder{}})
	if !errors.Is(err, canal.ErrStatefulTableEmptied) || !strings.Contains(err.Error(), "DROP DATABASE "+folded+",") {
		t.Fatalf("the stream past DROP DATABASE %s, then %s: %v; want ErrStatefulTableEmptied at the second", other, folded, err)
	}
}

// reseeder is an emptier that also seeds rules again (canal.TableReseeder), noting each
// statement handed to it and the commits recorded before it.
type reseeder struct {
	*emptier
	reseeded []canal.RowlessChange
	commits  []int
}

func (r *reseeder) ReseedAfter(_ context.Context, ddl canal.RowlessChange) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reseeded = append(r.reseeded, ddl)
	r.commits = append(r.commits, len(r.recorder.commits))
	return nil
}

// reseedUntil streams from `from` to a reseeder until a commit at or after to, or 30 s.
func (s *source) reseedUntil(filter canal.TableFilter, from, to canal.Position) (*reseeder, error) {
	ctx, cancel := context.WithTimeout(s.t.Context(), 30*time.Second)
	defer cancel()
	h := &reseeder{emptier: &emptier{recorder: &recorder{}}}
	h.onCommit = func(p canal.Position) {
		if p.Compare(to) >= 0 {
			cancel()
		}
	}
	return h, canal.NewStream(s.cfg, s.server, filter, zaptest.NewLogger(s.t)).Run(ctx, from, h)
}

// TestStreamHandsRowlessDDLToAReseeder: for a handler that can seed its rules again, DDL
// that moves or removes a stateful table's rows without row events goes to ReseedAfter,
// once per statement, before its commit, and the stream goes on: a TRUNCATE of a table a
// rule reads with others, both statements of a two-step cut-over (read after both ran, so
// the name is taken again), an ALTER TABLE … MODIFY (its values converted), and a DROP
// DATABASE of a schema a rule may read. A TRUNCATE of a table whose rules read it alone is
// still emptied, not reseeded; an ALTER that adds a column and an index is neither. A rename away whose
// name no table has stops the stream, saying it waits; once a table has the name, the
// same statement is reseeded.
func TestStreamHandsRowlessDDLToAReseeder(t *testing.T) {
	s := newSource(t)
	testutil.Exec(t, s.db, "CREATE TABLE totals (id INT PRIMARY KEY, qty INT)", "CREATE TABLE alone (id INT PRIMARY KEY, qty INT)",
		"CREATE TABLE _totals_gho LIKE totals")
	filter := &countingFilter{schema: s.name, tables: map[string]bool{"totals": true, "alone": true},
		stateful: map[string]bool{"totals": true, "alone": true}, alone: map[string]bool{"alone": true}, asked: map[string]int{}}
	from := s.position()
	statements := []string{"TRUNCATE TABLE totals", "TRUNCATE TABLE alone", "ALTER TABLE alone ADD note INT, ADD INDEX (qty)",
		"ALTER TABLE alone MODIFY qty BIGINT", "ALTER TABLE totals RENAME TO _totals_del", "RENAME TABLE _totals_gho TO totals"}
	var before []canal.Position // where each statement begins
	for _, q := range statements {
		before = append(before, s.position())
		testutil.Exec(t, s.db, q)
	}
	h, err := s.reseedUntil(filter, from, s.position())
	if err != nil {
		t.Fatalf("past DDL that moves or removes stateful tables' rows, for a handler that reseeds: %v", err)
	}
	totals := [2]string{s.name, "totals"}
	want := []struct {
		stmt    int
		what    string
		tables  [][2]string
		schemas []string
	}{
		{0, "TRUNCATE of " + s.name + ".totals", [][2]string{totals}, nil},
		{3, "ALTER TABLE " + s.name + ".alone … MODIFY", [][2]string{{s.name, "alone"}}, nil},
		{4, "ALTER TABLE … RENAME of " + s.name + ".totals to " + s.name + "._totals_del", [][2]string{totals}, nil},
		{5, "RENAME TABLE of " + s.name + "._totals_gho to " + s.name + ".totals", [][2]string{totals}, nil},
	}
	if len(h.reseeded) != len(want) {
		t.Fatalf("reseeded %d statements: %+v; want %d", len(h.reseeded), h.reseeded, len(want))
	}
	for i, w := range want {
		got := h.reseeded[i]
		if got.What != w.what || fmt.Sprint(got.Tables) != fmt.Sprint(w.tables) || fmt.Sprint(got.Schemas) != fmt.Sprint(w.schemas) {
			t.Errorf("reseeded %q tables %v schemas %v; want %q, %v, %v", got.What, got.Tables, got.Schemas, w.what, w.tables, w.schemas)
		}
		if got.Src.File != before[w.stmt].File || got.Src.Pos < before[w.stmt].Pos || got.Src.GTID == "" {
			t.Errorf("%s: source %+v; want the statement's, after %s, with its GTID", w.what, got.Src, before[w.stmt])
		}
		if next := h.recorder.commits[h.commits[i]]; next.Compare(before[w.stmt]) <= 0 {
			t.Errorf("%s: reseeded before the commit at %s; want it before the statement's own, after %s", w.what, next, before[w.stmt])
		}
	}
	if len(h.emptied) != 1 || h.emptied[0].table != s.name+".alone" {
		t.Errorf("emptied %+v; want %s.alone alone (its rules read no other table)", h.emptied, s.name)
	}

	// A rename away that leaves the name empty waits for it to be taken.
	m := testutil.MySQLServer(t)
	name, db := m.FreshDatabase(t, "waits")
	testutil.Exec(t, db, "CREATE TABLE totals (id INT PRIMARY KEY, qty INT)")
	filter = &countingFilter{schema: name, tables: map[string]bool{"totals": true}, stateful: map[string]bool{"totals": true}, asked: map[string]int{}}
	at := s.position()
	testutil.Exec(t, db, "RENAME TABLE totals TO totals_old")
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	err = canal.NewStream(s.cfg, s.server, filter, zaptest.NewLogger(t)).Run(ctx, at, &reseeder{emptier: &emptier{recorder: &recorder{}}})
	if !errors.Is(err, canal.ErrStatefulTableEmptied) || !strings.Contains(err.Error(), "no table has its name on the server now. The stream waits here") {
		t.Fatalf("a rename away that leaves the name empty: %v; want ErrStatefulTableEmptied saying the stream waits for the name", err)
	}
	testutil.Exec(t, db, "CREATE TABLE totals (id INT PRIMARY KEY, qty INT)")
	if h, err = s.reseedUntil(filter, at, s.position()); err != nil {
		t.Fatalf("the same rename once a table has the name again: %v", err)
	}
	if len(h.reseeded) != 1 || fmt.Sprint(h.reseeded[0].Tables) != fmt.Sprint([][2]string{{name, "totals"}}) {
		t.Errorf("reseeded %+v; want the rename of %s.totals", h.reseeded, name)
	}

	at = s.position()
	testutil.Exec(t, s.db, "DROP DATABASE "+name)
	if h, err = s.reseedUntil(filter, at, s.position()); err != nil {
		t.Fatalf("past DROP DATABASE %s: %v", name, err)
	}
	if len(h.reseeded) != 1 || h.reseeded[0].What != "DROP DATABASE "+name || fmt.Sprint(h.reseeded[0].Schemas) != "["+name+"]" || len(h.reseeded[0].Tables) != 0 {
		t.Errorf("reseeded %+v; want DROP DATABASE %s, its schema and no table", h.reseeded, name)
	}

	// A rename away whose name no table takes within the source's RenamedAwayWait is taken
	// as a drop: reseeded, and the stream goes on. The first stream stops before the wait
	// is over, saying until when it waits.
	name, db = m.FreshDatabase(t, "for_good")
	testutil.Exec(t, db, "CREATE TABLE totals (id INT PRIMARY KEY, qty INT)")
	filter = &countingFilter{schema: name, tables: map[string]bool{"totals": true}, stateful: map[string]bool{"totals": true}, asked: map[string]int{}}
	at = s.position()
	testutil.Exec(t, db, "RENAME TABLE totals TO totals_archived")
	cfg := s.cfg
	cfg.RenamedAwayWait = time.Hour
	ctx, cancel = context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	err = canal.NewStream(cfg, s.server, filter, zaptest.NewLogger(t)).Run(ctx, at, &reseeder{emptier: &emptier{recorder: &recorder{}}})
	if !errors.Is(err, canal.ErrStatefulTableEmptied) || !strings.Contains(err.Error(), "source.renamed_table_wait after the statement), "+name+".totals is taken as dropped") {
		t.Fatalf("a rename away an hour before its wait ends: %v; want ErrStatefulTableEmptied saying when the table is taken as dropped", err)
	}
	s.cfg.RenamedAwayWait = 2 * time.Second
	if h, err = s.reseedUntil(filter, at, s.position()); err != nil {
		t.Fatalf("a rename away whose name stays empty past source.renamed_table_wait: %v", err)
	}
	if len(h.reseeded) != 1 || fmt.Sprint(h.reseeded[0].Tables) != fmt.Sprint([][2]string{{name, "totals"}}) {
		t.Errorf("reseeded %+v; want the rename of %s.totals, taken as dropped", h.reseeded, name)
	}
}

// TestTwoPhaseAlterReseedsOnceAtItsCommit: with MariaDB's binlog_alter_two_phase, an ALTER
// is binlogged as it starts (START ALTER) and again, in a group of its own, once it
// committed or was rolled back. A stateful table's rules are seeded again once, at the
// COMMIT ALTER, when the table has its new shape; an ALTER rolled back seeds nothing.
func TestTwoPhaseAlterReseedsOnceAtItsCommit(t *testing.T) {
	s := newSource(t)
	testutil.Exec(t, s.db, "CREATE TABLE totals (id INT PRIMARY KEY, qty INT)", "INSERT INTO totals VALUES (1, 1000)")
	conn, err := s.db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, q := range []string{"SET SESSION binlog_alter_two_phase=ON", "SET SESSION sql_mode='STRICT_ALL_TABLES'"} {
		if _, err := conn.ExecContext(t.Context(), q); err != nil {
			t.Skipf("this server cannot binlog ALTERs in two phases (%s): %v", q, err)
		}
	}
	from := s.position()
	if _, err := conn.ExecContext(t.Context(), "ALTER TABLE totals MODIFY qty TINYINT"); err == nil {
		t.Fatal("ALTER to TINYINT of a row holding 1000 succeeded; want it refused, and rolled back")
	}
	if _, err := conn.ExecContext(t.Context(), "ALTER TABLE totals MODIFY qty BIGINT"); err != nil {
		t.Fatal(err)
	}
	to := s.position()
	// Where the BIGINT ALTER's COMMIT ALTER group begins, as the server lists it.
	rows, err := s.db.QueryContext(t.Context(), fmt.Sprintf("SHOW BINLOG EVENTS IN '%s' FROM %d", from.File, from.Pos))
	if err != nil {
		t.Fatal(err)
	}
	phases := map[string]int{}
	var commitAt uint32
	for rows.Next() {
		var file, typ, info string
		var pos, server, end uint32
		if err := rows.Scan(&file, &pos, &typ, &server, &end, &info); err != nil {
			t.Fatal(err)
		}
		for _, phase := range []string{"START ALTER", "COMMIT ALTER", "ROLLBACK ALTER"} {
			if typ == "Gtid" && strings.Contains(info, phase) {
				phases[phase]++
				if phase == "COMMIT ALTER" {
					commitAt = pos
				}
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if phases["START ALTER"] != 2 || phases["COMMIT ALTER"] != 1 || phases["ROLLBACK ALTER"] != 1 {
		t.Fatalf("the binlog holds %v; want two START ALTERs, one COMMIT ALTER, one ROLLBACK ALTER", phases)
	}
	filter := &countingFilter{schema: s.name, tables: map[string]bool{"totals": true}, stateful: map[string]bool{"totals": true}, asked: map[string]int{}}
	h, err := s.reseedUntil(filter, from, to)
	if err != nil {
		t.Fatal(err)
	}
	if len(h.reseeded) != 1 {
		t.Fatalf("reseeded %d times: %+v; want once, at the COMMIT ALTER", len(h.reseeded), h.reseeded)
	}
	if got := h.reseeded[0]; got.Src.File != from.File || got.Src.Pos != commitAt || !strings.HasSuffix(got.What, "… MODIFY") {
		t.Errorf("reseeded after %q at %s:%d; want the MODIFY's COMMIT ALTER, at %s:%d", got.What, got.Src.File, got.Src.Pos, from.File, commitAt)
	}
}

// TestStreamOverAUnixSocket: source.addr may be the server's Unix socket (a daemon beside
// the database): the binlog stream connects through it as the SQL connections do, where
// it failed on "missing port in address".
func TestStreamOverAUnixSocket(t *testing.T) {
	socket := os.Getenv("STOCKSYNC_TEST_MYSQL_SOCKET")
	if socket == "" {
		t.Skip("STOCKSYNC_TEST_MYSQL_SOCKET is not set: run `make test`")
	}
	s := newSource(t)
	s.cfg.Addr = socket
	server, err := canal.Connect(t.Context(), s.cfg)
	if err != nil {
		t.Fatalf("connecting through %s: %v", socket, err)
	}
	t.Cleanup(func() { server.Close() })
	s.server = server
	testutil.Exec(t, s.db, "CREATE TABLE over_socket (id INT PRIMARY KEY)")
	from := s.position()
	testutil.Exec(t, s.db, "INSERT INTO over_socket VALUES (1)")
	got := s.stream(from, s.position())
	if len(got) != 1 || got[0].Op != canal.OpCreate || got[0].Table.Name != "over_socket" {
		t.Fatalf("streamed %d changes through the socket; want the one insert", len(got))
	}
}

// TestStreamFromAPositionWithoutItsGTIDsReportsThem: on MariaDB a position without its
// GTID set (`checkpoint set --file <first binlog> --pos 4`, at the head of the history,
// where the set is empty; or a checkpoint kept without one) is streamed by GTID from the
// set there, so that the commits it reports carry their sets, by which a checkpoint
// resumes, on this server or another.
func TestStreamFromAPositionWithoutItsGTIDsReportsThem(t *testing.T) {
	s := newSource(t)
	testutil.Exec(t, s.db, "CREATE TABLE without_gtids (id INT PRIMARY KEY)")
	from := s.position()
	testutil.Exec(t, s.db, "INSERT INTO without_gtids VALUES (1)")
	to := s.position()
	f := s.follow(canal.Position{File: from.File, Pos: from.Pos})
	f.reach(to)
	f.rec.mu.Lock()
	last := f.rec.commits[len(f.rec.commits)-1]
	f.rec.mu.Unlock()
	if last.GTIDSet != to.GTIDSet {
		t.Errorf("streamed from %s:%d without its GTID set, the commit at %s:%d carries %q; want the server's %q", from.File, from.Pos, last.File, last.Pos, last.GTIDSet, to.GTIDSet)
	}

	files, err := s.server.BinlogFiles(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	head := s.follow(canal.Position{File: files[0], Pos: 4})
	select {
	case <-head.commit:
	case <-head.stopped:
		t.Fatalf("the stream from %s:4 stopped: %v", files[0], head.err)
	case <-time.After(20 * time.Second):
		t.Fatalf("no commit streamed from %s:4 within 20s", files[0])
	}
	head.rec.mu.Lock()
	first := head.rec.commits[0]
	head.rec.mu.Unlock()
	if first.GTIDSet == "" {
		t.Errorf("streamed from the head of the binlog history, %s:4, the first commit (%s:%d) carries no GTID set", files[0], first.File, first.Pos)
	}
}

// TestCascadingForeignKeysAreListedAndTheirChangesAreNotStreamed: CascadingForeignKeys
// lists the keys whose ON DELETE or ON UPDATE action changes the child table (CASCADE,
// SET NULL), with their columns in order, and leaves out a RESTRICT or NO ACTION one. What
// those actions do to the child is not in the binlog: deleting parent rows streams their
// deletes alone, neither the child rows deleted nor the ones set to NULL, which is why the
// live check of the rules warns about such keys.
func TestCascadingForeignKeysAreListedAndTheirChangesAreNotStreamed(t *testing.T) {
	s := newSource(t)
	testutil.Exec(t, s.db,
		"CREATE TABLE parent (id INT NOT NULL, region INT NOT NULL, PRIMARY KEY (id, region))",
		`CREATE TABLE lines_cascade (id INT PRIMARY KEY, parent_id INT, parent_region INT,
		  CONSTRAINT fk_cascade FOREIGN KEY (parent_id, parent_region) REFERENCES parent (id, region) ON DELETE CASCADE)`,
		`CREATE TABLE lines_null (id INT PRIMARY KEY, parent_id INT, parent_region INT,
		  CONSTRAINT fk_null FOREIGN KEY (parent_id, parent_region) REFERENCES parent (id, region) ON DELETE SET NULL ON UPDATE CASCADE)`,
		`CREATE TABLE lines_restrict (id INT PRIMARY KEY, parent_id INT, parent_region INT,
		  CONSTRAINT fk_restrict FOREIGN KEY (parent_id, parent_region) REFERENCES parent (id, region) ON DELETE RESTRICT ON UPDATE NO ACTION)`,
		"INSERT INTO parent VALUES (1, 10), (2, 20)",
		"INSERT INTO lines_cascade VALUES (1, 1, 10), (2, 1, 10)",
		"INSERT INTO lines_null VALUES (1, 1, 10)")

	ours := func(schema, _ string) bool { return schema == s.name }
	keys, err := canal.CascadingForeignKeys(t.Context(), s.db, ours)
	if err != nil {
		t.Fatal(err)
	}
	want := []canal.ForeignKey{
		{Name: "fk_cascade", Table: canal.TableName{Schema: s.name, Name: "lines_cascade"}, Columns: []string{"parent_id", "parent_region"},
			Parent: canal.TableName{Schema: s.name, Name: "parent"}, ParentColumns: []string{"id", "region"}, OnDelete: "CASCADE", OnUpdate: "RESTRICT"},
		{Name: "fk_null", Table: canal.TableName{Schema: s.name, Name: "lines_null"}, Columns: []string{"parent_id", "parent_region"},
			Parent: canal.TableName{Schema: s.name, Name: "parent"}, ParentColumns: []string{"id", "region"}, OnDelete: "SET NULL", OnUpdate: "CASCADE"},
	}
	if fmt.Sprint(keys) != fmt.Sprint(want) {
		t.Errorf("cascading foreign keys:\n got %+v\nwant %+v", keys, want)
	}
	if got, want := keys[1].Actions(), "ON DELETE SET NULL ON UPDATE CASCADE"; len(keys) == 2 && got != want {
		t.Errorf("Actions() = %q, want %q", got, want)
	}
	if keys, err := canal.CascadingForeignKeys(t.Context(), s.db, func(string, string) bool { return false }); err != nil || len(keys) != 0 {
		t.Errorf("keys of no table read: %v, %v; want none", keys, err)
	}

	// A user with SELECT on the tables alone: MariaDB's REFERENTIAL_CONSTRAINTS shows it no
	// key, and the actions come from SHOW CREATE TABLE.
	user := "fk_" + strconv.FormatUint(uint64(testutil.ServerID()), 10)
	testutil.Exec(t, s.db, "CREATE USER '"+user+"'@'%' IDENTIFIED BY 'pw'", "GRANT SELECT ON `"+s.name+"`.* TO '"+user+"'@'%'")
	t.Cleanup(func() { s.db.Exec("DROP USER '" + user + "'@'%'") })
	reader := s.cfg
	reader.User, reader.Password = user, "pw"
	rdb, err := reader.OpenDB("")
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	keys, err = canal.CascadingForeignKeys(t.Context(), rdb, ours)
	if err != nil || fmt.Sprint(keys) != fmt.Sprint(want) {
		t.Errorf("cascading foreign keys as a user with SELECT alone: %v\n got %+v\nwant %+v", err, keys, want)
	}

	from := s.position()
	testutil.Exec(t, s.db, "DELETE FROM parent WHERE id = 1")
	var left, nulled int
	if err := s.db.QueryRow("SELECT (SELECT COUNT(*) FROM lines_cascade), (SELECT COUNT(*) FROM lines_null WHERE parent_id IS NULL)").Scan(&left, &nulled); err != nil {
		t.Fatal(err)
	}
	if left != 0 || nulled != 1 {
		t.Fatalf("the keys did not act: %d rows left in lines_cascade, %d set to NULL in lines_null", left, nulled)
	}
	var streamed []string
	for _, c := range s.stream(from, s.position()) {
		streamed = append(streamed, c.Op.Name()+" "+c.Table.Name)
	}
	if want := []string{"delete parent"}; !slices.Equal(streamed, want) {
		t.Errorf("streamed %q after deleting a parent row; want %q: the binlog was believed to leave out what the keys did", streamed, want)
	}
}

// TestLostBinlogConnectionEndsTheStream: when the server drops the binlog connection (a
// DBA's KILL of the Binlog Dump thread, a proxy's reset), Run ends with an error, for the
// pipeline to restart from its checkpoint, and hands on no transaction twice. (go-mysql's
// own reconnect resumed from the GTID set before the last transaction read, so the server
// sent it again and an aggregate counted it twice.)
func TestLostBinlogConnectionEndsTheStream(t *testing.T) {
	s := newPurgeableSource(t, "dropped")
	testutil.Exec(t, s.db, "CREATE TABLE dropped (id INT PRIMARY KEY, qty INT)")
	from := s.position()
	testutil.Exec(t, s.db, "INSERT INTO dropped VALUES (1, 10)", "UPDATE dropped SET qty = 9 WHERE id = 1")
	f := s.follow(from)
	f.reach(s.position())
	rows, err := s.db.Query("SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'")
	if err != nil {
		t.Fatal(err)
	}
	var dumps []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		dumps = append(dumps, id)
	}
	rows.Close()
	if len(dumps) != 1 {
		t.Fatalf("%d binlog dump threads on the test's own server, want the stream's one", len(dumps))
	}
	testutil.Exec(t, s.db, fmt.Sprintf("KILL CONNECTION %d", dumps[0]))
	testutil.Exec(t, s.db, "UPDATE dropped SET qty = 8 WHERE id = 1")
	select {
	case <-f.stopped:
	case <-time.After(20 * time.Second):
		t.Fatal("the stream went on after its binlog connection was killed")
	}
	if f.err == nil {
		t.Error("the stream whose binlog connection was killed ended without an error")
	}
	f.rec.mu.Lock()
	defer f.rec.mu.Unlock()
	seen := map[string]bool{}
	for _, c := range f.rec.commits {
		if seen[c.GTIDSet] {
			t.Errorf("the transaction ending at %s (%s) was handed on twice", c.GTIDSet, c)
		}
		seen[c.GTIDSet] = true
	}
}
