package canal_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/stocksync/stocksync/canal"
	"github.com/stocksync/stocksync/internal/testutil"
)

// schemaFilter matches every table of one database: the test's own fresh one.
type schemaFilter string

func (f schemaFilter) Matches(schema, _ string) bool   { return schema == string(f) }
func (f schemaFilter) StatefulTables(_, _ string) bool { return false }
func (f schemaFilter) StatefulAlone(_, _ string) bool  { return false }
func (f schemaFilter) StatefulSchema(string) bool      { return false }
func (f schemaFilter) PatternRule(_, _ string) (string, bool) {
	return "", false
}

// recorder is a Handler that keeps what it is given.
type recorder struct {
	mu      sync.Mutex
	rows    []*canal.RowChange
	commits []canal.Position
	// onCommit, when set, is called after each commit is recorded.
	onCommit func(canal.Position)
}

func (r *recorder) Row(_ context.Context, c *canal.RowChange) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rows = append(r.rows, c)
	return nil
}

func (r *recorder) Idle(context.Context) error { return nil }

func (r *recorder) Commit(_ context.Context, pos canal.Position) error {
	r.mu.Lock()
	r.commits = append(r.commits, pos)
	f := r.onCommit
	r.mu.Unlock()
	if f != nil {
		f(pos)
	}
	return nil
}

// source is one test's connection to the private MariaDB and a fresh database.
type source struct {
	t      *testing.T
	cfg    canal.Config
	server *canal.Server
	db     *sql.DB // independent client on the fresh database
	name   string
}

func newSource(t *testing.T) *source {
	t.Helper()
	return newSourceOn(t, testutil.MySQLServer(t), "snap")
}

// newSourceOn is newSource on the server m (a private one, whose binlogs a test may
// purge), with a fresh database named after prefix.
func newSourceOn(t *testing.T, m testutil.MySQL, prefix string) *source {
	t.Helper()
	name, db := m.FreshDatabase(t, prefix)
	cfg := canal.Config{Addr: m.Addr, User: m.User, Password: m.Password, ServerID: testutil.ServerID()}
	server, err := canal.Connect(t.Context(), cfg)
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	t.Cleanup(func() { server.Close() })
	return &source{t: t, cfg: cfg, server: server, db: db, name: name}
}

func (s *source) position() canal.Position {
	s.t.Helper()
	p, err := s.server.CurrentPosition(s.t.Context())
	if err != nil {
		s.t.Fatal(err)
	}
	return p
}

// stream reads the binlog with canal.Stream from `from` until a commit at or after `to`
// and returns the row changes of the fresh database.
func (s *source) stream(from, to canal.Position) []*canal.RowChange {
	s.t.Helper()
	return s.follow(from).until(to)
}

// following is a canal.Stream of the fresh database running in the background.
type following struct {
	t       *testing.T
	rec     *recorder
	commit  chan struct{} // ticks after a commit is recorded
	cancel  context.CancelFunc
	stopped chan struct{} // closed when Run returned, with err
	err     error
}

// follow starts reading the binlog from `from`; the stream stops with the test at the latest.
func (s *source) follow(from canal.Position) *following {
	ctx, cancel := context.WithTimeout(s.t.Context(), 30*time.Second)
	f := &following{t: s.t, commit: make(chan struct{}, 1), cancel: cancel, stopped: make(chan struct{})}
	f.rec = &recorder{onCommit: func(canal.Position) {
		select {
		case f.commit <- struct{}{}:
		default:
		}
	}}
	st := canal.NewStream(s.cfg, s.server, schemaFilter(s.name), zaptest.NewLogger(s.t))
	go func() {
		defer close(f.stopped)
		f.err = st.Run(ctx, from, f.rec)
	}()
	s.t.Cleanup(func() { cancel(); <-f.stopped })
	return f
}

// reach waits until the stream has committed a transaction at or after to.
func (f *following) reach(to canal.Position) {
	f.t.Helper()
	for {
		f.rec.mu.Lock()
		n := len(f.rec.commits)
		reached := n > 0 && f.rec.commits[n-1].Compare(to) >= 0
		f.rec.mu.Unlock()
		if reached {
			return
		}
		select {
		case <-f.commit:
		case <-f.stopped:
			f.t.Fatalf("stream stopped before reaching %s: %v", to, f.err)
		}
	}
}

// until waits for to, stops the stream and returns its row changes.
func (f *following) until(to canal.Position) []*canal.RowChange {
	f.t.Helper()
	f.reach(to)
	f.cancel()
	<-f.stopped
	if f.err != nil {
		f.t.Fatalf("stream: %v", f.err)
	}
	f.rec.mu.Lock()
	defer f.rec.mu.Unlock()
	return f.rec.rows
}

func (s *source) snapshot(h canal.Handler, opts canal.SnapshotOptions) (canal.Position, error) {
	if opts.Logger == nil {
		opts.Logger = zaptest.NewLogger(s.t)
	}
	return s.server.Snapshot(s.t.Context(), schemaFilter(s.name), h, opts)
}

const everyTypeTable = `CREATE TABLE every_type (
	id INT NOT NULL PRIMARY KEY,
	i8 TINYINT, u8 TINYINT UNSIGNED, i16 SMALLINT, u16 SMALLINT UNSIGNED, i24 MEDIUMINT, u24 MEDIUMINT UNSIGNED,
	i32 INT, u32 INT UNSIGNED, i64 BIGINT, u64 BIGINT UNSIGNED,
	dec4 DECIMAL(24,4), dec0 DECIMAL(10,0), f FLOAT, d DOUBLE,
	b1 BIT(1), b64 BIT(64), y YEAR,
	dt DATE, dt0 DATETIME, dt3 DATETIME(3), dt6 DATETIME(6), ts0 TIMESTAMP NULL, ts6 TIMESTAMP(6) NULL,
	tm TIME, tm3 TIME(3),
	c CHAR(10), vc VARCHAR(50), txt TEXT, l1 VARCHAR(20) CHARACTER SET latin1,
	bin BINARY(4), vb VARBINARY(10), bl BLOB,
	j JSON, e ENUM('small','large'), s SET('a','b','c')
)`

// TestSnapshotValuesEqualStream inserts rows of every column type, reads them once from
// the binlog with canal.Stream and once with Snapshot, and wants the same table shape,
// kinds, Go types and values from both, and some of them spelled out.
func TestSnapshotValuesEqualStream(t *testing.T) {
	s := newSource(t)
	testutil.Exec(t, s.db, everyTypeTable)
	from := s.position()
	testutil.Exec(t, s.db, `SET time_zone = '+00:00', sql_mode = '';
	INSERT INTO every_type VALUES
	(1, -5, 200, -300, 60000, -8000000, 16000000, -2000000000, 4000000000, -9000000000000000000, 18446744073709551615,
	 '-12345678901234567890.1234', 42, 1.2345678, 0.1, b'1', b'1111111111111111111111111111111111111111111111111111111111111111', 2024,
	 '2024-02-29', '1969-12-31 23:59:59', '2024-02-29 23:59:58.120', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07', '1970-01-01 00:00:01.000001',
	 '-838:59:59', '12:00:00.500',
	 'abc', 'héllo wörld ✓', 'long text', 'café €', 'ab', x'00ff10', x'deadbeef', '{"k": [1, 2]}', 'large', 'a,c'),
	(2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
	 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
	(3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '0.0000', 0, 0, 0, b'0', b'101', 0,
	 '0000-00-00', '0000-00-00 00:00:00', '2024-00-00 00:00:00.000', '1970-01-01 00:00:00.000000', '0000-00-00 00:00:00', NULL,
	 '00:00:00', '00:00:00.000',
	 '', '', '', '', '', '', '', 'null', '', ''),
	(4, 127, 255, 32767, 65535, 8388607, 0, 2147483647, 0, 9223372036854775807, 9223372036854775808,
	 '0.5000', -1, -3.4e38, -1.7976931348623157e308, b'0', b'1', 1901,
	 '1000-01-01', '2000-01-01 00:00:00', '2024-12-31 23:59:59.999', '2024-06-01 12:00:00.000001', '1970-01-01 00:00:01', '2024-06-01 12:00:00.5',
	 '838:59:59', '-00:00:01.250',
	 'x', 'y', 'z', 'ÿ', x'00000000', x'', x'00', '[]', 'small', 'b')`)
	to := s.position()
	streamed := s.stream(from, to)
	if len(streamed) != 4 {
		t.Fatalf("stream gave %d rows, want 4", len(streamed))
	}

	rec := &recorder{}
	pos, err := s.snapshot(rec, canal.SnapshotOptions{})
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	if len(rec.rows) != 4 {
		t.Fatalf("snapshot gave %d rows, want 4", len(rec.rows))
	}
	if len(rec.commits) != 1 || rec.commits[0] != pos {
		t.Errorf("snapshot commits %v, want once %v", rec.commits, pos)
	}

	for i, want := range streamed {
		got := rec.rows[i]
		if got.Op != canal.OpRead || got.Before != nil {
			t.Errorf("row %d: op %s before %v, want r and nil", i, got.Op, got.Before)
		}
		if !reflect.DeepEqual(got.Table, want.Table) {
			t.Errorf("snapshot table\n%+v\nstream table\n%+v", *got.Table, *want.Table)
		}
		for c, col := range want.Table.Columns {
			g, w := got.After[c], want.After[c]
			if !reflect.DeepEqual(g, w) {
				t.Errorf("row id=%v column %s (%s): snapshot %T %#v, stream %T %#v", want.After[0], col.Name, col.Kind, g, g, w, w)
			}
		}
	}

	// Both could agree and be wrong: spell some values out.
	tbl := rec.rows[0].Table
	val := func(row int, col string) any { return rec.rows[row].After[tbl.ColumnIndex(col)] }
	spelled := []struct {
		row  int
		col  string
		want any
	}{
		{0, "i64", int64(-9000000000000000000)},
		{0, "u64", uint64(18446744073709551615)},
		{0, "dec4", "-12345678901234567890.1234"},
		{0, "f", 1.2345678},
		{0, "d", 0.1},
		{0, "b64", uint64(18446744073709551615)}, // BIT(64) is unsigned, as b64+0 shows
		{0, "y", int64(2024)},
		{0, "dt", "2024-02-29"},
		{0, "dt0", "1969-12-31T23:59:59Z"},
		{0, "dt3", "2024-02-29T23:59:58.120Z"},
		{0, "dt6", "9999-12-31T23:59:59.999999Z"},
		{0, "ts0", "2038-01-19T03:14:07Z"},
		{0, "ts6", "1970-01-01T00:00:01.000001Z"},
		{0, "tm", "-838:59:59"},
		{0, "tm3", "12:00:00.500"},
		{0, "vc", "héllo wörld ✓"},
		{0, "l1", "café €"},
		{0, "bin", []byte("ab\x00\x00")}, // BINARY(4): padded, as SQL returns it
		{0, "vb", []byte{0, 0xff, 0x10}},
		{3, "bin", []byte{0, 0, 0, 0}},
		{0, "j", []byte(`{"k": [1, 2]}`)},
		{0, "e", "large"},
		{0, "s", "a,c"},
		{1, "dt6", nil},
		{2, "dt", nil},
		{2, "dt0", nil},
		{2, "ts0", nil},
		{2, "dt3", "2024-00-00T00:00:00.000Z"},
		{2, "b64", uint64(5)},
		{3, "f", -3.4e38},
		{3, "ts6", "2024-06-01T12:00:00.500000Z"},
		{3, "u64", uint64(9223372036854775808)},
	}
	for _, sp := range spelled {
		if got := val(sp.row, sp.col); !reflect.DeepEqual(got, sp.want) {
			t.Errorf("row %d column %s = %T %#v, want %T %#v", sp.row, sp.col, got, got, sp.want, sp.want)
		}
	}

	// The source of a snapshot row names the snapshot's position and the server.
	var serverID uint32
	if err := s.db.QueryRow("SELECT @@server_id").Scan(&serverID); err != nil {
		t.Fatal(err)
	}
	for i, c := range rec.rows {
		if c.Source.ServerID != serverID || c.Source.File != pos.File || c.Source.Pos != pos.Pos || c.Source.Row != i || c.Source.TsMs == 0 {
			t.Errorf("row %d source %+v, want server %d at %s, row %d", i, c.Source, serverID, pos, i)
		}
	}
	if pos.Compare(to) < 0 {
		t.Errorf("snapshot position %s is before the inserts' end %s", pos, to)
	}
}

// TestSnapshotChunksInKeyOrder reads tables over many chunks: a composite key whose
// string part sorts by a case-insensitive collation and whose integer part passes 2^63;
// a key of DATETIME(6) and DECIMAL(30,20) values that doubles cannot tell apart; and a
// table without a key, read in one pass.
func TestSnapshotChunksInKeyOrder(t *testing.T) {
	s := newSource(t)
	testutil.Exec(t, s.db,
		`CREATE TABLE order_lines (region VARCHAR(8) COLLATE utf8mb4_general_ci NOT NULL, n INT NOT NULL, seq BIGINT UNSIGNED NOT NULL,
			payload VARCHAR(20), PRIMARY KEY (region, n, seq))`,
		`CREATE TABLE exact (at DATETIME(6) NOT NULL, k DECIMAL(30,20) NOT NULL, PRIMARY KEY (at, k))`,
		`CREATE TABLE nokey (v INT)`)
	var values []string
	for _, region := range []string{"a", "B", "c", "É"} {
		for n := 1; n <= 10; n++ {
			for _, seq := range []string{"1", "9223372036854775813"} {
				values = append(values, fmt.Sprintf("('%s', %d, %s, 'p')", region, n, seq))
			}
		}
	}
	testutil.Exec(t, s.db, "INSERT INTO order_lines VALUES "+strings.Join(values, ", "))
	values = values[:0]
	for i := 1; i <= 10; i++ {
		values = append(values, fmt.Sprintf("('2024-01-01 00:00:00.00000%d', '1.000000000000000000%02d')", i%2, i))
	}
	testutil.Exec(t, s.db, "INSERT INTO exact VALUES "+strings.Join(values, ", "),
		"INSERT INTO nokey VALUES (1), (2), (2), (3), (5)")

	const chunk = 7
	rec := &recorder{}
	var progress []canal.SnapshotProgress
	pos, err := s.snapshot(rec, canal.SnapshotOptions{ChunkSize: chunk, OnChunk: func(_ context.Context, p canal.SnapshotProgress) error {
		progress = append(progress, p)
		return nil
	}})
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}

	// Rows per table in the order handed on, against an independent read in key order.
	byTable := map[string][]string{}
	for _, c := range rec.rows {
		var parts []string
		for _, i := range c.Table.PrimaryKey {
			parts = append(parts, fmt.Sprint(c.After[i]))
		}
		if len(c.Table.PrimaryKey) == 0 {
			parts = append(parts, fmt.Sprint(c.After...))
		}
		byTable[c.Table.Name] = append(byTable[c.Table.Name], strings.Join(parts, "|"))
	}
	want := map[string][]string{
		"order_lines": s.strings("SELECT CONCAT_WS('|', region, n, seq) FROM order_lines ORDER BY region, n, seq"),
		"exact":       s.strings("SELECT CONCAT_WS('|', DATE_FORMAT(at, '%Y-%m-%dT%H:%i:%s.%fZ'), k) FROM exact ORDER BY at, k"),
		"nokey":       s.strings("SELECT v FROM nokey"),
	}
	if len(want["order_lines"]) != 80 || len(want["exact"]) != 10 {
		t.Fatalf("fixture has %d and %d rows", len(want["order_lines"]), len(want["exact"]))
	}
	for name, w := range want {
		g := byTable[name]
		if name == "nokey" {
			g = append([]string(nil), g...)
			w = append([]string(nil), w...)
			sortStrings(g)
			sortStrings(w)
		}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("table %s: snapshot rows\n%v\nwant\n%v", name, g, w)
		}
	}

	// Progress: one call per chunk (exact: 2 chunks; nokey: 1 pass; order_lines: 12), rows
	// counted up, tables done in order, no key left at the end.
	if len(progress) != 2+12+1 {
		t.Errorf("OnChunk called %d times, want 15", len(progress))
	}
	var prev int64
	for i, p := range progress {
		if p.RowsDone <= prev || p.Position != pos || p.RowsEstimated < p.RowsDone {
			t.Errorf("progress %d: %+v after %d rows", i, p, prev)
		}
		prev = p.RowsDone
	}
	last := progress[len(progress)-1]
	wantTables := []string{s.name + ".exact", s.name + ".nokey", s.name + ".order_lines"}
	if !reflect.DeepEqual(last.Tables, wantTables) || len(last.Done) != 3 || len(last.LastKey) != 0 || last.RowsDone != 95 || last.ETA != 0 {
		t.Errorf("last progress %+v, want tables %v all done, 95 rows", last, wantTables)
	}
	if p := progress[4]; !p.Done[s.name+".nokey"] || p.Done[s.name+".order_lines"] || len(p.LastKey[s.name+".order_lines"]) != 3 {
		t.Errorf("progress after the 2nd chunk of order_lines: %+v", p)
	}
	if len(rec.commits) != 1 || rec.commits[0] != pos {
		t.Errorf("commits %v, want once %s", rec.commits, pos)
	}
	for i, c := range rec.rows {
		if c.Source.Row != i {
			t.Fatalf("row %d has source row %d", i, c.Source.Row)
		}
	}
}

func (s *source) strings(query string) []string {
	s.t.Helper()
	rows, err := s.db.Query(query)
	if err != nil {
		s.t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			s.t.Fatal(err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		s.t.Fatal(err)
	}
	return out
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// model is a table's rows by key, built by applying row changes in order.
type model map[string][]any

func rowKey(c *canal.RowChange) string {
	var parts []string
	for _, i := range c.Table.PrimaryKey {
		parts = append(parts, fmt.Sprintf("%v", c.Value(i)))
	}
	return c.Table.Name + "/" + strings.Join(parts, "|")
}

// applyExact applies changes that must fit the model exactly: a read or insert of a key
// already there, or an update or delete whose before-image is not what the model
// holds, is a change missed or repeated.
func (m model) applyExact(t *testing.T, changes []*canal.RowChange) {
	t.Helper()
	for _, c := range changes {
		k := rowKey(c)
		switch c.Op {
		case canal.OpRead, canal.OpCreate:
			if old, ok := m[k]; ok {
				t.Errorf("%s of %s which is already there as %v: read twice or missed a delete", c.Op.Name(), k, old)
			}
			m[k] = c.After
		case canal.OpUpdate, canal.OpDelete:
			if old := m[k]; !reflect.DeepEqual(old, c.Before) {
				t.Errorf("%s of %s: before-image %v, but the snapshot and binlog so far give %v", c.Op.Name(), k, c.Before, old)
			}
			if c.Op == canal.OpDelete {
				delete(m, k)
			} else {
				m[k] = c.After
			}
		}
	}
}

// applyUpserts applies changes as a consumer that keeps the latest image per key does.
func (m model) applyUpserts(changes []*canal.RowChange) {
	for _, c := range changes {
		if c.Op == canal.OpDelete {
			delete(m, rowKey(c))
		} else {
			m[rowKey(c)] = c.After
		}
	}
}

// current is the table as a fresh snapshot (another instant, no writers) reads it, in
// the model's form.
func (s *source) current() model {
	s.t.Helper()
	rec := &recorder{}
	if _, err := s.snapshot(rec, canal.SnapshotOptions{}); err != nil {
		s.t.Fatal(err)
	}
	m := model{}
	for _, c := range rec.rows {
		m[rowKey(c)] = c.After
	}
	return m
}

func (m model) diff(t *testing.T, want model) {
	t.Helper()
	for k, v := range want {
		if g, ok := m[k]; !ok {
			t.Errorf("row %s %v is missing", k, v)
		} else if !reflect.DeepEqual(g, v) {
			t.Errorf("row %s is %v, want %v", k, g, v)
		}
	}
	for k, v := range m {
		if _, ok := want[k]; !ok {
			t.Errorf("row %s %v should not be there", k, v)
		}
	}
}

// TestSnapshotPositionIsExact writes inserts, updates and deletes all over a table
// while the snapshot reads it in small chunks: the snapshot's rows followed by the
// binlog from the returned position must fit exactly (no row twice, no update or delete
// of a row in another state than the one known) and end as the table is.
func TestSnapshotPositionIsExact(t *testing.T) {
	s := newSource(t)
	testutil.Exec(t, s.db, "CREATE TABLE acct (id INT NOT NULL PRIMARY KEY, v INT NOT NULL, note VARCHAR(20))")
	var values []string
	for i := 1; i <= 600; i++ {
		values = append(values, fmt.Sprintf("(%d, %d, 'n%d')", i, i, i))
	}
	testutil.Exec(t, s.db, "INSERT INTO acct VALUES "+strings.Join(values, ", "))

	ctx, stop := context.WithCancel(t.Context())
	commits := make(chan struct{}, 1)
	var writes atomic.Int64
	writerDone := make(chan error, 1)
	go func() {
		rng := rand.New(rand.NewPCG(1, 2))
		next := 1000
		for ctx.Err() == nil {
			tx, err := s.db.BeginTx(ctx, nil)
			if err != nil {
				writerDone <- nil
				return
			}
			for range 1 + rng.IntN(3) {
				id := 1 + rng.IntN(next)
				switch rng.IntN(3) {
				case 0:
					next++
					_, err = tx.Exec("INSERT INTO acct VALUES (?, ?, 'new')", next, next)
				case 1:
					_, err = tx.Exec("UPDATE acct SET v = v + 1, note = 'upd' WHERE id = ?", id)
				case 2:
					_, err = tx.Exec("DELETE FROM acct WHERE id = ?", id)
				}
				if err != nil {
					break
				}
			}
			if err != nil {
				tx.Rollback()
				if ctx.Err() != nil {
					break
				}
				writerDone <- err
				return
			}
			if err := tx.Commit(); err != nil {
				if ctx.Err() != nil {
					break
				}
				writerDone <- err
				return
			}
			writes.Add(1)
			select {
			case commits <- struct{}{}:
			default:
			}
		}
		writerDone <- nil
	}()

	rec := &recorder{}
	chunks := 0
	pos, err := s.snapshot(rec, canal.SnapshotOptions{ChunkSize: 25, OnChunk: func(ctx context.Context, _ canal.SnapshotProgress) error {
		chunks++
		// Let the writer commit at least twice more before the next chunk is read.
		select {
		case <-commits:
		default:
		}
		for range 2 {
			select {
			case <-commits:
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(10 * time.Second):
				return errors.New("the writer made no progress in 10s")
			}
		}
		return nil
	}})
	stop()
	if werr := <-writerDone; werr != nil {
		t.Fatalf("writer: %v", werr)
	}
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	if chunks < 20 || writes.Load() < 2*int64(chunks) {
		t.Fatalf("only %d chunks and %d writes: the test did not write during the snapshot", chunks, writes.Load())
	}
	end := s.position()

	m := model{}
	m.applyExact(t, rec.rows)
	changes := s.stream(pos, end)
	if len(changes) == 0 {
		t.Fatal("no changes streamed after the snapshot's position, though writes went on during it")
	}
	m.applyExact(t, changes)
	m.diff(t, s.current())
	t.Logf("%d snapshot rows, %d chunks, %d writer transactions, %d changes after %s", len(rec.rows), chunks, writes.Load(), len(changes), pos)
}

// TestSnapshotResumesAfterLastKey interrupts a snapshot (OnChunk fails on a chunk whose
// progress is then not saved), changes the tables, and resumes from the progress saved
// before, through JSON: finished tables are skipped, the unfinished one continues right
// after its saved key (64-bit unsigned and binary key parts), the position returned is
// the first run's, and the rows of both runs plus the binlog from it end as the tables are.
func TestSnapshotResumesAfterLastKey(t *testing.T) {
	s := newSource(t)
	testutil.Exec(t, s.db,
		"CREATE TABLE a_small (id INT NOT NULL PRIMARY KEY, v INT)",
		"CREATE TABLE b_big (id BIGINT UNSIGNED NOT NULL, tag VARBINARY(4) NOT NULL, v INT, PRIMARY KEY (id, tag))",
		"INSERT INTO a_small VALUES (1, 1), (2, 2), (3, 3), (4, 4), (5, 5)")
	var values []string
	for i := 0; i < 30; i++ {
		for _, tag := range []string{"x'00ff'", "'z'"} {
			values = append(values, fmt.Sprintf("(%d, %s, %d)", uint64(1)<<63+uint64(i), tag, i))
		}
	}
	testutil.Exec(t, s.db, "INSERT INTO b_big VALUES "+strings.Join(values, ", "))

	errInterrupted := errors.New("interrupted")
	first := &recorder{}
	var saved []byte
	calls := 0
	_, err := s.snapshot(first, canal.SnapshotOptions{ChunkSize: 8, OnChunk: func(_ context.Context, p canal.SnapshotProgress) error {
		calls++
		if calls == 4 {
			return errInterrupted
		}
		var err error
		saved, err = json.Marshal(p)
		return err
	}})
	if !errors.Is(err, errInterrupted) {
		t.Fatalf("interrupted snapshot returned %v, want %v", err, errInterrupted)
	}
	if len(first.commits) != 0 {
		t.Errorf("interrupted snapshot committed %v", first.commits)
	}
	var resume canal.SnapshotProgress
	if err := json.Unmarshal(saved, &resume); err != nil {
		t.Fatalf("decoding saved progress %s: %v", saved, err)
	}
	big := s.name + ".b_big"
	if !resume.Done[s.name+".a_small"] || resume.Done[big] || resume.RowsDone != 5+16 || len(resume.LastKey[big]) != 2 {
		t.Fatalf("saved progress %s: want a_small done and 16 rows of b_big", saved)
	}
	if len(first.rows) != 5+24 {
		t.Fatalf("first run handed %d rows, want 29", len(first.rows))
	}

	// Changes between the runs: to a row already read, a row not yet read, a new row
	// after the key and a new row of the finished table.
	testutil.Exec(t, s.db,
		fmt.Sprintf("UPDATE b_big SET v = 100 WHERE id = %d", uint64(1)<<63),
		fmt.Sprintf("DELETE FROM b_big WHERE id = %d AND tag = 'z'", uint64(1)<<63+20),
		fmt.Sprintf("INSERT INTO b_big VALUES (%d, 'new', 7)", uint64(1)<<63+99),
		"INSERT INTO a_small VALUES (6, 6)",
		"UPDATE a_small SET v = 10 WHERE id = 1")

	second := &recorder{}
	var progress []canal.SnapshotProgress
	pos, err := s.snapshot(second, canal.SnapshotOptions{ChunkSize: 8, Resume: &resume, OnChunk: func(_ context.Context, p canal.SnapshotProgress) error {
		progress = append(progress, p)
		return nil
	}})
	if err != nil {
		t.Fatalf("resumed snapshot: %v", err)
	}
	if pos != resume.Position {
		t.Errorf("resumed snapshot returned %s, want the first run's %s", pos, resume.Position)
	}
	if len(second.commits) != 1 || second.commits[0] != resume.Position {
		t.Errorf("resumed snapshot committed %v, want once %s", second.commits, resume.Position)
	}

	// Exactly the rows of b_big after the 16th as they are now, in key order.
	var got []string
	for _, c := range second.rows {
		if c.Table.Name != "b_big" {
			t.Fatalf("resumed snapshot read %s, which was done", c.Table.FullName())
		}
		got = append(got, fmt.Sprintf("%v|%x|%v", c.After[0], c.After[1], c.After[2]))
		if c.Source.File == resume.Position.File && c.Source.Pos == resume.Position.Pos {
			t.Errorf("resumed row %d has the first run's position %s as source; it was read later", c.Source.Row, resume.Position)
		}
	}
	all := s.strings("SELECT CONCAT_WS('|', id, HEX(tag), v) FROM b_big ORDER BY id, tag")
	wantRows := all[16:]
	for i := range wantRows {
		wantRows[i] = strings.ToLower(wantRows[i])
	}
	if !reflect.DeepEqual(got, wantRows) {
		t.Errorf("resumed rows\n%v\nwant\n%v", got, wantRows)
	}
	if second.rows[0].Source.Row != 21 {
		t.Errorf("resumed rows are numbered from %d, want 21", second.rows[0].Source.Row)
	}
	last := progress[len(progress)-1]
	if last.RowsDone != 21+int64(len(wantRows)) || len(last.Done) != 2 || last.Position != resume.Position || last.ReadAt.Compare(resume.Position) <= 0 {
		t.Errorf("last progress %+v", last)
	}

	// Resuming a snapshot whose last table was done reads nothing and commits P1.
	third := &recorder{}
	if pos, err := s.snapshot(third, canal.SnapshotOptions{Resume: &last}); err != nil || pos != resume.Position ||
		len(third.rows) != 0 || len(third.commits) != 1 || third.commits[0] != resume.Position {
		t.Errorf("resuming a finished snapshot: %s, %v, %d rows, commits %v; want %s, no rows, one commit",
			pos, err, len(third.rows), third.commits, resume.Position)
	}

	// What a consumer applying both runs and the binlog from the position ends with.
	m := model{}
	m.applyUpserts(first.rows)
	m.applyUpserts(second.rows)
	m.applyUpserts(s.stream(pos, s.position()))
	m.diff(t, s.current())
}

// TestSnapshotAndChunksReadADatabaseWithADot: MySQL allows a dot in a database's name
// (`st.eu`). A snapshot and a chunked read carry a table's database and name apart, so
// they read its tables (not table `eu.stock` of the database named by its first part,
// whose schema.table is the same text), and a saved cursor names it in backquotes, so
// that a Seek in another process goes on there.
func TestSnapshotAndChunksReadADatabaseWithADot(t *testing.T) {
	s := newSource(t)
	dotted := s.name + ".eu"
	q := "`" + dotted + "`"
	testutil.Exec(t, s.db, "CREATE DATABASE "+q)
	t.Cleanup(func() { s.db.Exec("DROP DATABASE IF EXISTS " + q) })
	testutil.Exec(t, s.db,
		"CREATE TABLE "+q+".stock (id INT PRIMARY KEY, qty INT)",
		"INSERT INTO "+q+".stock VALUES (1, 5), (2, 7)",
		"CREATE TABLE `eu.stock` (id INT PRIMARY KEY, qty INT)",
		"INSERT INTO `eu.stock` VALUES (9, 9)")
	filter := schemaFilter(dotted)
	var rec recorder
	if _, err := s.server.Snapshot(t.Context(), filter, &rec, canal.SnapshotOptions{Logger: zaptest.NewLogger(t)}); err != nil {
		t.Fatalf("snapshot of database %s: %v", dotted, err)
	}
	var read []string
	for _, r := range rec.rows {
		read = append(read, fmt.Sprintf("%s|%s|%v", r.Table.Schema, r.Table.Name, r.After[0]))
	}
	if want := []string{dotted + "|stock|1", dotted + "|stock|2"}; !slices.Equal(read, want) {
		t.Errorf("snapshot read %v, want %v", read, want)
	}

	first, err := s.server.ReadChunks(t.Context(), filter, 1, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	chunk, err := first.Next(t.Context())
	first.Close()
	if err != nil || chunk == nil {
		t.Fatalf("first chunk: %v, %v", chunk, err)
	}
	if want := q + ".stock"; chunk.Table != want || chunk.Then.Table != want || !slices.Equal(first.Tables(), []string{want}) {
		t.Fatalf("chunk of %q, cursor in %q, tables %v; want %q", chunk.Table, chunk.Then.Table, first.Tables(), want)
	}
	second, err := s.server.ReadChunks(t.Context(), filter, 1, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if err := second.Seek(t.Context(), chunk.Then); err != nil {
		t.Fatal(err)
	}
	next, err := second.Next(t.Context())
	if err != nil || next == nil || len(next.Rows) != 1 || next.Rows[0].After[0] != int64(2) {
		t.Fatalf("the chunk after the cursor: %+v, %v; want row 2 of %s", next, err, q+".stock")
	}
}

// TestSnapshotProgressJSON: saved progress survives JSON with 64-bit keys exact and
// binary keys intact (as base64), the way the pipeline stores it.
func TestSnapshotProgressJSON(t *testing.T) {
	p := canal.SnapshotProgress{
		Position: canal.Position{File: "binlog.000007", Pos: 4242, GTIDSet: "0-1-99"},
		Tables:   []string{"db.a", "db.b"},
		Done:     map[string]bool{"db.a": true},
		LastKey:  map[string]canal.SnapshotKey{"db.b": {uint64(18446744073709551615), int64(-9223372036854775808), []byte{0, 0xff}, "x"}},
		RowsDone: 10, RowsEstimated: 20, ETA: 3 * time.Second,
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var back canal.SnapshotProgress
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	want := canal.SnapshotKey{json.Number("18446744073709551615"), json.Number("-9223372036854775808"), "AP8=", "x"}
	if !reflect.DeepEqual(back.LastKey["db.b"], want) {
		t.Errorf("key after JSON %#v, want %#v", back.LastKey["db.b"], want)
	}
	back.LastKey, p.LastKey = nil, nil
	if !reflect.DeepEqual(back, p) {
		t.Errorf("progress after JSON %+v, want %+v", back, p)
	}
}

// TestLatin1EnumAndSetLabelsAreUTF8: the binlog carries ENUM and SET labels in the
// column's character set; latin1 ones reach the handler as UTF-8, as a snapshot reads them,
// with plans and without.
func TestLatin1EnumAndSetLabelsAreUTF8(t *testing.T) {
	s := newSource(t)
	testutil.Exec(t, s.db, `CREATE TABLE labels (id INT PRIMARY KEY,
		e ENUM('thé', 'café €') CHARACTER SET latin1, st SET('crème', 'brûlée', 'x') CHARACTER SET latin1)`)
	planned, plain, used, _ := readBothWays(t, s, "INSERT INTO labels VALUES (1, 'café €', 'crème,brûlée')")
	want := []any{int64(1), "café €", "crème,brûlée"}
	if used == 0 {
		t.Error("no rows event was decoded by a plan")
	}
	for way, streamed := range map[string][]*canal.RowChange{"with plans": planned, "without": plain} {
		if len(streamed) != 1 || !reflect.DeepEqual(streamed[0].After, want) {
			var got [][]any
			for _, c := range streamed {
				got = append(got, c.After)
			}
			t.Errorf("%s: streamed %#v, want %#v", way, got, want)
		}
	}
	rec := &recorder{}
	if _, err := s.snapshot(rec, canal.SnapshotOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(rec.rows) != 1 || !reflect.DeepEqual(rec.rows[0].After, want) {
		t.Errorf("snapshot read %d rows, want one with %#v", len(rec.rows), want)
	}
}

// TestBinaryKeepsItsTrailingZeros: the binlog drops the trailing zero bytes of a BINARY(n)
// value, which SQL returns; a BINARY(16) UUID that ends in 00 must not lose a byte in the
// stream, with plans and without, and the stream must equal a snapshot.
func TestBinaryKeepsItsTrailingZeros(t *testing.T) {
	s := newSource(t)
	testutil.Exec(t, s.db, "CREATE TABLE fixed (id INT PRIMARY KEY, b BINARY(4), vb VARBINARY(4))")
	planned, plain, used, _ := readBothWays(t, s, "INSERT INTO fixed VALUES (1, x'0100', x'0100'), (2, x'00000000', x''), (3, x'01020304', x'01020300'), (4, '', NULL)")
	want := [][]any{
		{int64(1), []byte{1, 0, 0, 0}, []byte{1, 0}},
		{int64(2), []byte{0, 0, 0, 0}, []byte{}},
		{int64(3), []byte{1, 2, 3, 4}, []byte{1, 2, 3, 0}},
		{int64(4), []byte{0, 0, 0, 0}, nil},
	}
	afters := func(changes []*canal.RowChange) [][]any {
		var out [][]any
		for _, c := range changes {
			out = append(out, c.After)
		}
		return out
	}
	if used == 0 {
		t.Error("no rows event was decoded by a plan")
	}
	for way, streamed := range map[string][]*canal.RowChange{"with plans": planned, "without": plain} {
		if got := afters(streamed); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: streamed %v, want %v", way, got, want)
		}
	}
	rec := &recorder{}
	if _, err := s.snapshot(rec, canal.SnapshotOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := afters(rec.rows); !reflect.DeepEqual(got, want) {
		t.Errorf("snapshot read %v, want %v", got, want)
	}
}

// TestTextInOtherCharacterSetsStreamsAsSQLReadsIt: the binlog holds a string column's
// bytes in its own character set, which SQL converts to utf8mb4. GBK (Chinese shops'
// legacy tables), GB2312, Big5, the Japanese and Korean sets, UTF-16 and UTF-32, and
// single-byte sets reach the handler as the same text a snapshot reads, ENUM and SET labels
// too, with plans and without; so do characters whose server mapping differs from the
// WHATWG one (Big5's ETEN kana, GB2312's middle dot and horizontal bar, EUC-JP's wave dash, cp932's
// user-defined area); and a column of a MariaDB collation whose id is past 2047
// (utf8mb4_uca1400_ai_ci), which information_schema.COLLATIONS does not list.
func TestTextInOtherCharacterSetsStreamsAsSQLReadsIt(t *testing.T) {
	s := newSource(t)
	testutil.Exec(t, s.db, `CREATE TABLE cs (id INT PRIMARY KEY, name VARCHAR(20) CHARACTER SET gbk, note TEXT CHARACTER SET gbk,
		big CHAR(4) CHARACTER SET big5, g2 VARCHAR(10) CHARACTER SET gb2312, sj VARCHAR(10) CHARACTER SET sjis,
		uj VARCHAR(10) CHARACTER SET ujis, w CHAR(4) CHARACTER SET cp932, kr VARCHAR(10) CHARACTER SET euckr,
		u16 VARCHAR(10) CHARACTER SET utf16, u16le TEXT CHARACTER SET utf16le, u32 CHAR(3) CHARACTER SET utf32,
		l2 VARCHAR(10) CHARACTER SET latin2, ru CHAR(5) CHARACTER SET koi8r,
		e ENUM('小','大') CHARACTER SET gbk, st SET('红','绿','蓝') CHARACTER SET gbk,
		uca VARCHAR(10) COLLATE utf8mb4_uca1400_ai_ci)`) // a MariaDB collation id past 2047
	want := [][]any{
		{int64(1), "库存", "华为手机 Mate", "庫存", "库・存", "在庫〜", "〜在庫", "\ue000倉", "재고", "héllo ✓", "𝄞 clef", "a€𝄞", "Łódź", "склад", "大", "红,蓝", "ça 库"},
		{int64(2), "plain", "", "ヾぁア", "―", "", "ｱ", "", "", "", "", "", "", "", "小", "", "x"},
		{int64(3), nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil},
	}
	insert := "INSERT INTO cs VALUES "
	for i, row := range want {
		var vals []string
		for _, v := range row {
			switch v := v.(type) {
			case nil:
				vals = append(vals, "NULL")
			case string:
				vals = append(vals, "'"+v+"'")
			default:
				vals = append(vals, fmt.Sprint(v))
			}
		}
		if i > 0 {
			insert += ", "
		}
		insert += "(" + strings.Join(vals, ", ") + ")"
	}
	planned, plain, used, _ := readBothWays(t, s, "INSERT INTO cs (id) VALUES (0)", insert, "UPDATE cs SET name = '仓库', e = '小' WHERE id = 1", "DELETE FROM cs WHERE id = 0")
	if used == 0 {
		t.Error("no rows event was decoded by a plan")
	}
	requireSameChanges(t, planned, plain)
	if len(plain) != 6 || !reflect.DeepEqual(plain[1].After, want[0]) || !reflect.DeepEqual(plain[2].After, want[1]) || !reflect.DeepEqual(plain[4].Before, want[0]) {
		for _, c := range plain {
			t.Logf("%s %q %q", c.Op, c.Before, c.After)
		}
		t.Fatalf("streamed %d changes; want the inserted rows as written, then the update and the delete", len(plain))
	}
	rec := &recorder{}
	if _, err := s.snapshot(rec, canal.SnapshotOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(rec.rows) != 3 || !reflect.DeepEqual(rec.rows[0].After, plain[4].After) || !reflect.DeepEqual(rec.rows[1].After, want[1]) {
		t.Errorf("snapshot read %d rows; want what the stream gave, the update's after image first", len(rec.rows))
	}
}

// TestMariaDBTypesStreamAsSnapshotsReadThem: MariaDB's UUID, INET6 and INET4 columns
// (BINARY(16) and BINARY(4) to the binlog) stream as strings in the server's printed form,
// as a snapshot reads them, beside a virtual and a stored generated column, an invisible
// one, and edge values of TIME(6), DECIMAL(65,30), YEAR and a SET of 64 labels.
func TestMariaDBTypesStreamAsSnapshotsReadThem(t *testing.T) {
	s := newSource(t)
	testutil.Exec(t, s.db, `CREATE TABLE odd (id INT PRIMARY KEY, u UUID, i6 INET6, i4 INET4,
		g INT AS (id * 10) VIRTUAL, gs VARCHAR(20) AS (CONCAT('x', id)) STORED, hid INT INVISIBLE DEFAULT 7,
		tm6 TIME(6), dec65 DECIMAL(65,30), y2 YEAR, s64 SET(`+labels("v", 64)+`))`)
	from := s.position()
	testutil.Exec(t, s.db, `INSERT INTO odd (id, u, i6, i4, tm6, dec65, y2, s64) VALUES
		(1, '123e4567-e89b-12d3-a456-426655440000', '2001:db8::1', '192.168.1.10', '-00:00:00.000001', '-99999999999999999999999999999999999.999999999999999999999999999999', 0, 'v63,v0'),
		(2, NULL, '::ffff:1.2.3.4', '0.0.0.0', '838:59:59.000000', '0.000000000000000000000000000001', 1901, '')`)
	streamed := s.stream(from, s.position())
	rec := &recorder{}
	if _, err := s.snapshot(rec, canal.SnapshotOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(streamed) != 2 || len(rec.rows) != 2 {
		t.Fatalf("stream %d rows, snapshot %d, want 2 each", len(streamed), len(rec.rows))
	}
	for i := range streamed {
		w, g := streamed[i], rec.rows[i]
		if !reflect.DeepEqual(w.Table.Columns, g.Table.Columns) {
			t.Fatalf("stream columns %+v, snapshot columns %+v", w.Table.Columns, g.Table.Columns)
		}
		for c, col := range w.Table.Columns {
			if !reflect.DeepEqual(w.After[c], g.After[c]) {
				t.Errorf("row %d column %s: stream %s %T %#v, snapshot %T %#v", i, col.Name, col.Kind, w.After[c], w.After[c], g.After[c], g.After[c])
			}
		}
	}
	if got := streamed[0].After[1:4]; !reflect.DeepEqual(got, []any{"123e4567-e89b-12d3-a456-426655440000", "2001:db8::1", "192.168.1.10"}) {
		t.Errorf("streamed u, i6, i4 %#v", got)
	}
}

// TestMariaDBUUIDAndInetStreamAsTheServerPrintsThem: UUIDs of every version nibble and
// variant, edge and random IPv6 addresses (IPv4-mapped and -compatible, runs of zero
// groups of every length and place) and IPv4 addresses stream, with plans and without,
// exactly as SELECT prints them.
func TestMariaDBUUIDAndInetStreamAsTheServerPrintsThem(t *testing.T) {
	s := newSource(t)
	testutil.Exec(t, s.db, "CREATE TABLE addr (id INT PRIMARY KEY, u UUID, i6 INET6, i4 INET4)")
	rng := rand.New(rand.NewPCG(5, 8))
	hexBytes := func(b []byte) string { return fmt.Sprintf("X'%x'", b) }
	var rows []string
	for id := range 200 {
		u := make([]byte, 16)
		for i := range u {
			u[i] = byte(rng.Uint32())
		}
		u[6] = u[6]&0x0F | byte(id%16)<<4   // every version nibble
		u[8] = u[8]&0x1F | byte(id/16%8)<<5 // and variant
		if id%9 == 0 {
			u[15], u[14] = 0, 0 // trailing zeros, which the binlog drops
		}
		ip := make([]byte, 16)
		for i := range ip {
			if rng.IntN(3) > 0 { // zero groups, in runs of every length
				ip[i] = byte(rng.Uint32())
			}
		}
		switch id % 10 {
		case 0:
			copy(ip, make([]byte, 10))
			ip[10], ip[11] = 0xff, 0xff // IPv4-mapped
		case 1:
			copy(ip, make([]byte, 12)) // IPv4-compatible
		case 2:
			clear(ip)
			ip[15] = byte(id) // ::1 and the like
		case 3:
			clear(ip[id%16:])
		}
		i4 := []byte{byte(rng.Uint32()), byte(rng.Uint32()), 0, byte(id)}
		rows = append(rows, fmt.Sprintf("(%d, CAST(%s AS UUID), CAST(%s AS INET6), CAST(%s AS INET4))", id, hexBytes(u), hexBytes(ip), hexBytes(i4)))
	}
	planned, plain, used, _ := readBothWays(t, s, "INSERT INTO addr VALUES (1000, NULL, '::', '0.0.0.0')", "INSERT INTO addr VALUES "+strings.Join(rows, ", "))
	if used == 0 {
		t.Error("no rows event was decoded by a plan")
	}
	requireSameChanges(t, planned, plain)
	printed := map[int64][]any{}
	rs, err := s.db.QueryContext(t.Context(), "SELECT id, CAST(u AS CHAR), CAST(i6 AS CHAR), CAST(i4 AS CHAR) FROM addr")
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	for rs.Next() {
		var id int64
		var u sql.NullString
		var i6, i4 string
		if err := rs.Scan(&id, &u, &i6, &i4); err != nil {
			t.Fatal(err)
		}
		printed[id] = []any{id, nil, i6, i4}
		if u.Valid {
			printed[id][1] = u.String
		}
	}
	if len(plain) != 201 {
		t.Fatalf("streamed %d rows, want 201", len(plain))
	}
	for _, c := range plain {
		if want := printed[c.After[0].(int64)]; !reflect.DeepEqual(c.After, want) {
			t.Errorf("streamed %#v, SELECT prints %#v", c.After, want)
		}
	}

	// A snapshot reads them alike, and a table keyed by UUID() values in chunks. (Not
	// keys of every version and variant mixed, as above: MariaDB 10.11 orders an index of
	// those otherwise than it compares them, and key ranges skip rows, whoever reads them.)
	testutil.Exec(t, s.db, "CREATE TABLE by_uuid (u UUID PRIMARY KEY, n INT) SELECT UUID() AS u, seq AS n FROM seq_1_to_50")
	uuids := map[int64]string{}
	for _, line := range s.strings("SELECT CONCAT(n, ' ', CAST(u AS CHAR)) FROM by_uuid") {
		n, u, _ := strings.Cut(line, " ")
		id, _ := strconv.ParseInt(n, 10, 64)
		uuids[id] = u
	}
	rec := &recorder{}
	if _, err := s.snapshot(rec, canal.SnapshotOptions{ChunkSize: 4}); err != nil {
		t.Fatal(err)
	}
	byUUID := 0
	for _, r := range rec.rows {
		switch r.Table.Name {
		case "addr":
			if want := printed[r.After[0].(int64)]; !reflect.DeepEqual(r.After, want) {
				t.Errorf("snapshot read %#v, SELECT prints %#v", r.After, want)
			}
		case "by_uuid":
			if byUUID++; r.After[0] != uuids[r.After[1].(int64)] {
				t.Errorf("snapshot read %#v from by_uuid, SELECT prints %s", r.After, uuids[r.After[1].(int64)])
			}
		}
	}
	if byUUID != 50 {
		t.Errorf("snapshot read %d rows of by_uuid in chunks of 4, want 50", byUUID)
	}
}

// alteringRecorder is a recorder that runs alter, once, at the first row it is handed.
type alteringRecorder struct {
	recorder
	alter func()
}

func (r *alteringRecorder) Row(ctx context.Context, c *canal.RowChange) error {
	if r.alter != nil {
		r.alter()
		r.alter = nil
	}
	return r.recorder.Row(ctx, c)
}

// TestSnapshotOfATableAlteredUnderItIsRetryable: a table rebuilt by DDL after the
// snapshot's instant, before the snapshot reads it (the next of several ALTERs while a
// seed after the first one reads), cannot be read in that snapshot (the server's 1412):
// Snapshot says so with ErrTableChangedUnderSnapshot, which a new snapshot gets past.
func TestSnapshotOfATableAlteredUnderItIsRetryable(t *testing.T) {
	s := newSource(t)
	testutil.Exec(t, s.db, "CREATE TABLE a_first (id INT PRIMARY KEY)", "CREATE TABLE b_second (id INT PRIMARY KEY)",
		"INSERT INTO a_first VALUES (1)", "INSERT INTO b_second VALUES (1)")
	h := &alteringRecorder{alter: func() { testutil.Exec(t, s.db, "ALTER TABLE b_second ENGINE=InnoDB") }}
	_, err := s.snapshot(h, canal.SnapshotOptions{})
	if !errors.Is(err, canal.ErrTableChangedUnderSnapshot) || !strings.Contains(err.Error(), "b_second") {
		t.Fatalf("snapshot of a table rebuilt after its instant: %v; want ErrTableChangedUnderSnapshot naming b_second", err)
	}
	rec := &recorder{}
	if _, err := s.snapshot(rec, canal.SnapshotOptions{}); err != nil || len(rec.rows) != 2 {
		t.Fatalf("a new snapshot: %d rows, %v; want both tables' rows", len(rec.rows), err)
	}
}

// largeRows makes table docs: 30 rows of about 10 KB, under a two-column key whose order
// is not the insert order, and returns its keys in key order ("shelf|id").
func (s *source) largeRows() []string {
	s.t.Helper()
	testutil.Exec(s.t, s.db, "CREATE TABLE docs (shelf INT NOT NULL, id INT NOT NULL, body LONGTEXT, PRIMARY KEY (shelf, id))",
		"INSERT INTO docs SELECT seq % 3, seq, REPEAT(CHAR(97 + seq % 26), 10000) FROM seq_1_to_30")
	return s.strings("SELECT CONCAT_WS('|', shelf, id) FROM docs ORDER BY shelf, id")
}

// docsKey is a docs row's key as largeRows writes it.
func docsKey(r *canal.RowChange) string { return fmt.Sprintf("%v|%v", r.After[0], r.After[1]) }

// A chunk is read whole before its first row is handed on, so a chunk of
// snapshot_chunk_size rows with large columns was held at once (10,000 rows of 256 KiB:
// 2.5 GiB). A chunk now ends after the row that brings its values to ChunkBytes, and the
// next starts after that row: rows of about 10 KB under a cap of 32 KiB come 4 to the first
// chunk (not the 1,000 of ChunkSize), at most 4 to any, each row once, in key order.
func TestSnapshotEndsAChunkAtItsByteCap(t *testing.T) {
	s := newSource(t)
	want := s.largeRows()
	rec := &recorder{}
	var progress []canal.SnapshotProgress
	if _, err := s.snapshot(rec, canal.SnapshotOptions{ChunkSize: 1000, ChunkBytes: 32 << 10,
		OnChunk: func(_ context.Context, p canal.SnapshotProgress) error {
			progress = append(progress, p)
			return nil
		}}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rec.rows {
		got = append(got, docsKey(r))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("rows handed on %v, want each row once in key order: %v", got, want)
	}
	if len(progress) == 0 || progress[0].RowsDone != 4 {
		t.Fatalf("progress after the first chunk %+v; want 4 rows, the first chunk ending at its 32 KiB cap", progress)
	}
	if k := progress[0].LastKey[s.name+".docs"]; fmt.Sprintf("%v|%v", k...) != want[3] {
		t.Errorf("the first chunk's last key %v, want %s: the next chunk starts after its last row", k, want[3])
	}
	for i := 1; i < len(progress); i++ {
		if n := progress[i].RowsDone - progress[i-1].RowsDone; n > 4 {
			t.Errorf("chunk %d holds %d rows of about 10 KB, over the 32 KiB cap by more than its last row", i, n)
		}
	}
}
