package canal_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/stocksync/stocksync/canal"
	"github.com/stocksync/stocksync/internal/testutil"
)

// TestChunkReaderChunksAreOfTheirPosition reads two tables in chunks of 7 rows while
// every chunk is followed by inserts, updates and deletes before, inside and after the
// next chunk's key range. Each chunk must hold exactly the rows of its key range that the
// binlog up to its position At gives: a chunk is of its own instant, and that instant is
// At to the transaction.
func TestChunkReaderChunksAreOfTheirPosition(t *testing.T) {
	s := newSource(t)
	from := s.position()
	testutil.Exec(t, s.db,
		"CREATE TABLE acct (id INT NOT NULL PRIMARY KEY, v INT NOT NULL)",
		"CREATE TABLE empty_one (id INT NOT NULL PRIMARY KEY)",
		"CREATE TABLE small (id INT NOT NULL PRIMARY KEY, v INT NOT NULL)",
		"CREATE TABLE keyless (v INT NOT NULL, f FLOAT)", // FLOAT: read exactly, as the stream gives it
		"INSERT INTO small VALUES (1, 1), (2, 2)",
		"INSERT INTO keyless VALUES (1, 123456.79), (2, 16777216), (3, 0.1)")
	var values []string
	for i := 1; i <= 40; i++ {
		values = append(values, fmt.Sprintf("(%d, %d)", i*10, i))
	}
	testutil.Exec(t, s.db, "INSERT INTO acct VALUES "+strings.Join(values, ", "))

	reader, err := s.server.ReadChunks(t.Context(), schemaFilter(s.name), 7, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	if got, want := reader.Tables(), []string{s.name + ".acct", s.name + ".empty_one", s.name + ".keyless", s.name + ".small"}; !slices.Equal(got, want) {
		t.Fatalf("tables %v, want %v", got, want)
	}
	var chunks []*canal.Chunk
	for round := 1; ; round++ {
		c, err := reader.Next(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if c == nil {
			break
		}
		if len(chunks) > 0 && c.At.Compare(chunks[len(chunks)-1].At) <= 0 {
			t.Errorf("chunk %d is at %s, not after the previous chunk's %s", len(chunks), c.At, chunks[len(chunks)-1].At)
		}
		chunks = append(chunks, c)
		// Something in every part of the key space, so that each chunk is of a new instant.
		testutil.Exec(t, s.db,
			fmt.Sprintf("UPDATE acct SET v = v + 1000 WHERE id %% 20 = %d", round%2*10),
			fmt.Sprintf("INSERT INTO acct VALUES (%d, -1)", round*70+5),
			fmt.Sprintf("DELETE FROM acct WHERE id = %d", round*60),
			fmt.Sprintf("UPDATE small SET v = v + 1 WHERE id = %d", round%2+1))
	}
	if len(chunks) < 8 {
		t.Fatalf("%d chunks; want the 40 rows and more of acct in chunks of 7, then small and keyless", len(chunks))
	}
	changes := s.stream(from, s.position())

	var prevTable string
	var after int64 // the last id of the previous chunk of the same table
	for i, c := range chunks {
		if c.Table != prevTable {
			prevTable, after = c.Table, -1<<62
		}
		_, table, _ := strings.Cut(c.Table, ".")
		// The table up to c.At: every change of a transaction that began before it.
		m := model{}
		m.applyUpserts(slices.DeleteFunc(slices.Clone(changes), func(ch *canal.RowChange) bool {
			return ch.Table.Name != table || (canal.Position{File: ch.Source.File, Pos: ch.Source.Pos}).Compare(c.At) >= 0
		}))
		last := int64(1 << 62)
		if i+1 < len(chunks) && chunks[i+1].Table == c.Table {
			last = c.Rows[len(c.Rows)-1].Value(0).(int64)
		}
		var want []string
		if table == "keyless" { // no key to tell its rows apart in a model: its inserts, unchanged
			for _, ch := range changes {
				if ch.Table.Name == table {
					want = append(want, fmt.Sprint(ch.After))
				}
			}
		}
		for _, row := range m {
			if table == "keyless" {
				break
			}
			if id := row[0].(int64); id > after && id <= last {
				want = append(want, fmt.Sprint(row))
			}
		}
		var got []string
		for _, r := range c.Rows {
			if r.Op != canal.OpRead || r.Source.File != c.At.File || r.Source.Pos != c.At.Pos || !r.Source.Snapshot {
				t.Errorf("chunk %d: row %v is op %s from %s:%d, want op r from %s", i, r.After, r.Op.Name(), r.Source.File, r.Source.Pos, c.At)
			}
			got = append(got, fmt.Sprint(r.After))
		}
		slices.Sort(want)
		slices.Sort(got)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("chunk %d of %s at %s: rows %v, the binlog up to there gives %v", i, c.Table, c.At, got, want)
		}
		after = last
	}
	if chunks[len(chunks)-1].Table != s.name+".small" {
		t.Errorf("the last chunk is of %s, want small (empty_one has no rows)", chunks[len(chunks)-1].Table)
	}
}

// TestChunkReaderRewind reads the same key range again after Rewind, at a newer position.
func TestChunkReaderRewind(t *testing.T) {
	s := newSource(t)
	testutil.Exec(t, s.db, "CREATE TABLE acct (id INT NOT NULL PRIMARY KEY, v INT NOT NULL)",
		"INSERT INTO acct VALUES (1, 1), (2, 2), (3, 3), (4, 4), (5, 5)")
	reader, err := s.server.ReadChunks(t.Context(), schemaFilter(s.name), 2, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	ids := func(c *canal.Chunk) []int64 {
		var out []int64
		for _, r := range c.Rows {
			out = append(out, r.Value(0).(int64))
		}
		return out
	}
	first, err := reader.Next(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	second, err := reader.Next(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reader.Next(t.Context()); err != nil { // [5], read ahead and dropped
		t.Fatal(err)
	}
	testutil.Exec(t, s.db, "UPDATE acct SET v = 30 WHERE id = 3")
	reader.Rewind(second)
	again, err := reader.Next(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids(first), []int64{1, 2}) || !slices.Equal(ids(second), []int64{3, 4}) || !slices.Equal(ids(again), []int64{3, 4}) {
		t.Fatalf("chunks %v, %v, then again %v; want [1 2], [3 4], [3 4]", ids(first), ids(second), ids(again))
	}
	if again.At.Compare(second.At) <= 0 || again.Rows[0].After[1] != int64(30) || again.Rows[0].Source.Row != second.Rows[0].Source.Row {
		t.Errorf("the chunk read again is at %s (first read at %s), row 3 is %v (#%d, was #%d); want a newer read with v 30 and the same row numbers",
			again.At, second.At, again.Rows[0].After, again.Rows[0].Source.Row, second.Rows[0].Source.Row)
	}
	last, err := reader.Next(t.Context())
	if err != nil || last == nil || !slices.Equal(ids(last), []int64{5}) {
		t.Fatalf("the last chunk: %v, %v; want [5]", last, err)
	}
	if end, err := reader.Next(t.Context()); end != nil || err != nil {
		t.Errorf("after the last chunk: %v, %v; want nil", end, err)
	}
}

// TestChunkReaderSeek goes on, in a second reader, from a cursor saved as JSON halfway
// through a table with a two-column key (a BINARY column among it): every row is read
// once over both readers, a table done is not read again, the row numbers run on, and a
// table the filter matches only now is read too.
func TestChunkReaderSeek(t *testing.T) {
	s := newSource(t)
	testutil.Exec(t, s.db,
		"CREATE TABLE a_done (id INT PRIMARY KEY)",
		"CREATE TABLE b_pair (k BINARY(2) NOT NULL, n BIGINT UNSIGNED NOT NULL, PRIMARY KEY (k, n))",
		"CREATE TABLE c_next (id INT PRIMARY KEY)",
		"INSERT INTO a_done VALUES (1), (2)",
		"INSERT INTO b_pair VALUES (0x00ff, 18446744073709551615), (0x00ff, 1), (0x0100, 7), (0xffff, 0), (0xffff, 9)",
		"INSERT INTO c_next VALUES (5)")
	key := func(r *canal.RowChange) string {
		return fmt.Sprintf("%s:%x/%v", r.Table.Name, r.Value(0), r.After[len(r.After)-1])
	}
	first, err := s.server.ReadChunks(t.Context(), schemaFilter(s.name), 2, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	var read []string
	var chunk *canal.Chunk
	for range 3 { // a_done whole, then two chunks of b_pair
		if chunk, err = first.Next(t.Context()); err != nil || chunk == nil {
			t.Fatalf("reading the first chunks: %v, %v", chunk, err)
		}
		for _, r := range chunk.Rows {
			read = append(read, key(r))
		}
	}
	first.Close()
	saved, err := json.Marshal(chunk.Then)
	if err != nil {
		t.Fatal(err)
	}
	var cursor canal.ChunkCursor
	if err := json.Unmarshal(saved, &cursor); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cursor.Done, []string{s.name + ".a_done"}) || cursor.Table != s.name+".b_pair" || cursor.Rows != 6 {
		t.Fatalf("cursor %s; want a_done done, b_pair next, 6 rows read", saved)
	}
	testutil.Exec(t, s.db, "CREATE TABLE a_added (id INT PRIMARY KEY)", "INSERT INTO a_added VALUES (3)")

	second, err := s.server.ReadChunks(t.Context(), schemaFilter(s.name), 2, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if err := second.Seek(t.Context(), cursor); err != nil {
		t.Fatal(err)
	}
	row := 6
	for {
		c, err := second.Next(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if c == nil {
			break
		}
		for _, r := range c.Rows {
			read = append(read, key(r))
			if r.Source.Row != row {
				t.Errorf("row %s is #%d, want #%d: the numbers run on from the cursor", key(r), r.Source.Row, row)
			}
			row++
		}
	}
	slices.Sort(read)
	want := []string{"a_added:3/3", "a_done:1/1", "a_done:2/2", "b_pair:00ff/1", "b_pair:00ff/18446744073709551615",
		"b_pair:0100/7", "b_pair:ffff/0", "b_pair:ffff/9", "c_next:5/5"}
	if !slices.Equal(read, want) {
		t.Errorf("read over both readers %v, want each row once: %v", read, want)
	}

	third, err := s.server.ReadChunks(t.Context(), schemaFilter(s.name), 2, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	bad := cursor
	bad.After = canal.SnapshotKey{"x"}
	if err := third.Seek(t.Context(), bad); !errors.Is(err, canal.ErrCursorMismatch) || !strings.Contains(err.Error(), "b_pair") {
		t.Errorf("Seek with a one-column key for a two-column one: %v; want an error naming the table", err)
	}
}

// TestSamePoint: two ends of a rotation are one point; two sides of a transaction are not.
func TestSamePoint(t *testing.T) {
	s := newSource(t)
	testutil.Exec(t, s.db, "CREATE TABLE t (id INT PRIMARY KEY)")
	before := s.position()
	testutil.Exec(t, s.db, "FLUSH BINARY LOGS")
	rotated := s.position()
	testutil.Exec(t, s.db, "INSERT INTO t VALUES (1)")
	written := s.position()
	for _, c := range []struct {
		a, b canal.Position
		want bool
	}{{before, before, true}, {before, rotated, true}, {rotated, written, false}, {before, written, false}} {
		got, err := s.server.SamePoint(t.Context(), c.a, c.b)
		if err != nil || got != c.want {
			t.Errorf("SamePoint(%s, %s) = %v, %v; want %v", c.a, c.b, got, err, c.want)
		}
	}
}

// BenchmarkChunkReader reads a 200,000-row table in chunks of 10,000 (the default
// snapshot_chunk_size): rows/s, and how long one chunk's read takes, which is how long a
// re-read holds the stream at a time.
func BenchmarkChunkReader(b *testing.B) {
	m := testutil.MySQLServer(b)
	name, db := m.FreshDatabase(b, "chunkbench")
	server, err := canal.Connect(b.Context(), canal.Config{Addr: m.Addr, User: m.User, Password: m.Password, ServerID: testutil.ServerID()})
	if err != nil {
		b.Fatal(err)
	}
	defer server.Close()
	testutil.Exec(b, db, "CREATE TABLE item (id INT PRIMARY KEY, sku VARCHAR(32) NOT NULL, qty BIGINT NOT NULL, note VARCHAR(64), updated DATETIME(6) NOT NULL)",
		// MariaDB's sequence engine: the table seq_1_to_N holds 1 to N.
		"INSERT INTO item SELECT seq, CONCAT('SKU-', seq), seq % 97, REPEAT('x', 20 + seq % 40), NOW(6) FROM seq_1_to_200000")
	var reads []time.Duration
	var rows int
	b.ResetTimer()
	for b.Loop() {
		reader, err := server.ReadChunks(b.Context(), schemaFilter(name), 10000, nil)
		if err != nil {
			b.Fatal(err)
		}
		for {
			start := time.Now()
			c, err := reader.Next(b.Context())
			if err != nil {
				b.Fatal(err)
			}
			if c == nil {
				break
			}
			reads = append(reads, time.Since(start))
			rows += len(c.Rows)
		}
		reader.Close()
	}
	b.StopTimer()
	if rows != 200000*b.N {
		b.Fatalf("%d rows read in %d runs, want 200,000 a run", rows, b.N)
	}
	slices.Sort(reads)
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(reads[len(reads)/2].Microseconds())/1000, "ms/chunk(median)")
	b.ReportMetric(float64(reads[len(reads)-1].Microseconds())/1000, "ms/chunk(max)")
}

// A re-read's chunk ends after the row that brings its values to the byte cap, as a
// snapshot's does (TestSnapshotEndsAChunkAtItsByteCap), and its cursor goes on after that
// row: read on, or from the cursor by another reader (a restart, a takeover), every row
// comes once.
func TestChunkReaderEndsAChunkAtItsByteCap(t *testing.T) {
	s := newSource(t)
	want := s.largeRows()
	read := func(r *canal.ChunkReader, chunks int) (rows []string, last *canal.Chunk) {
		for i := 0; chunks == 0 || i < chunks; i++ {
			c, err := r.Next(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if c == nil {
				break
			}
			if len(c.Rows) > 4 {
				t.Errorf("a chunk of %d rows of about 10 KB, over the 32 KiB cap by more than its last row", len(c.Rows))
			}
			for _, row := range c.Rows {
				rows = append(rows, docsKey(row))
			}
			last = c
		}
		return rows, last
	}
	open := func() *canal.ChunkReader {
		r, err := s.server.ReadChunks(t.Context(), schemaFilter(s.name), 1000, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.Close)
		r.SetChunkBytes(32 << 10)
		return r
	}
	first := open()
	head, chunk := read(first, 1)
	if !slices.Equal(head, want[:4]) {
		t.Fatalf("first chunk %v, want the first 4 rows %v: it ends at its 32 KiB cap, not at 1,000 rows", head, want[:4])
	}
	rest, _ := read(first, 0)
	if got := append(slices.Clone(head), rest...); !slices.Equal(got, want) {
		t.Errorf("read %v, want each row once in key order: %v", got, want)
	}
	second := open()
	if err := second.Seek(t.Context(), chunk.Then); err != nil {
		t.Fatal(err)
	}
	if rest, _ := read(second, 0); !slices.Equal(rest, want[4:]) {
		t.Errorf("read from the first chunk's cursor %v, want the rows after it %v", rest, want[4:])
	}
}
