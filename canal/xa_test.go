package canal_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/stocksync/stocksync/canal"
	"github.com/stocksync/stocksync/internal/testutil"
)

// sequence records, in the order the stream hands them, each row (its first column) and
// each commit, and ends the stream at the first commit at or after `to`.
type sequence struct {
	mu     sync.Mutex
	events []string
	to     canal.Position
	done   context.CancelFunc
}

func (s *sequence) Row(_ context.Context, c *canal.RowChange) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	row := c.After
	if row == nil {
		row = c.Before
	}
	s.events = append(s.events, fmt.Sprintf("%s:%v", c.Table.Name, row[0]))
	return nil
}

func (s *sequence) Idle(context.Context) error { return nil }

func (s *sequence) Commit(_ context.Context, p canal.Position) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, "commit")
	if p.Compare(s.to) >= 0 {
		s.done()
	}
	return nil
}

func (s *sequence) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.events, " ")
}

// runSequence streams the source's binlog from `from` until a commit at or after `to`.
func (s *source) runSequence(from, to canal.Position) *sequence {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.t.Context(), 30*time.Second)
	defer cancel()
	seq := &sequence{to: to, done: cancel}
	if err := canal.NewStream(s.cfg, s.server, schemaFilter(s.name), zaptest.NewLogger(s.t)).Run(ctx, from, seq); err != nil {
		s.t.Fatalf("stream: %v", err)
	}
	if ctx.Err() == context.DeadlineExceeded {
		s.t.Fatalf("the stream did not reach %s: %s", to, seq)
	}
	return seq
}

// TestCreateTableSelectIsOneTransaction: MariaDB writes CREATE TABLE … SELECT as one
// group (its GTID, the statement, the rows, an Xid). The stream commits it once, after
// its rows: a checkpoint never falls between the statement and its rows, where a restart
// would resume past the whole group and never publish the rest.
func TestCreateTableSelectIsOneTransaction(t *testing.T) {
	s := newSource(t)
	from := s.position()
	testutil.Exec(t, s.db, "CREATE TABLE copied (id INT PRIMARY KEY) SELECT seq AS id FROM seq_1_to_3",
		"CREATE TABLE plain (id INT PRIMARY KEY)", "INSERT INTO plain VALUES (9)")
	seq := s.runSequence(from, s.position())
	if got, want := seq.String(), "copied:1 copied:2 copied:3 commit commit plain:9 commit"; got != want {
		t.Errorf("the stream handed %q; want %q (the CREATE TABLE … SELECT committed after its rows, once)", got, want)
	}
}

// TestXATransactionsArePublishedOnlyIfTheyCommit: an XA transaction's rows are in the
// binlog from its XA PREPARE, before its outcome. The stream hands them on only when its
// XA COMMIT follows, never after an XA ROLLBACK; while one is prepared and undecided it
// waits at it, and goes on once it is decided.
func TestXATransactionsArePublishedOnlyIfTheyCommit(t *testing.T) {
	s := newSource(t)
	testutil.Exec(t, s.db, "CREATE TABLE stock (id INT PRIMARY KEY)")
	conn, err := s.db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	xa := func(stmts ...string) {
		t.Helper()
		for _, q := range stmts {
			if _, err := conn.ExecContext(t.Context(), q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}
	from := s.position()
	xa("XA START 'c1'", "INSERT INTO stock VALUES (1)", "XA END 'c1'", "XA PREPARE 'c1'", "XA COMMIT 'c1'")
	xa("XA START 'r1'", "INSERT INTO stock VALUES (2)", "XA END 'r1'", "XA PREPARE 'r1'", "XA ROLLBACK 'r1'")
	xa("XA START 'one'", "INSERT INTO stock VALUES (3)", "XA END 'one'", "XA COMMIT 'one' ONE PHASE")
	xa("XA START 'p1'", "INSERT INTO stock VALUES (4)", "XA END 'p1'", "XA PREPARE 'p1'")
	testutil.Exec(t, s.db, "INSERT INTO stock VALUES (5)")
	to := s.position()

	f := s.follow(from)
	// Decided only once the stream is at p1's XA PREPARE, reading ahead for it.
	testutil.Eventually(t, 20*time.Second, "the stream to reach the prepared XA transaction", func() bool {
		f.rec.mu.Lock()
		defer f.rec.mu.Unlock()
		return len(f.rec.rows) >= 2
	})
	xa("XA COMMIT 'p1'")
	var ids []string
	for _, c := range f.until(to) {
		ids = append(ids, fmt.Sprint(c.After[0]))
	}
	if got := strings.Join(ids, " "); got != "1 3 4 5" {
		t.Errorf("the stream handed rows %q; want \"1 3 4 5\" (2 was rolled back; 4 committed after the stream reached its PREPARE)", got)
	}
}
