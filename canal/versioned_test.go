package canal_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/stocksync/stocksync/canal"
	"github.com/stocksync/stocksync/internal/testutil"
)

// describeChange is op, table, columns, key columns and images, to compare with what a
// test expects.
func describeChange(c *canal.RowChange) string {
	var cols, key []string
	for _, col := range c.Table.Columns {
		cols = append(cols, col.Name)
	}
	for _, k := range c.Table.PrimaryKey {
		key = append(key, c.Table.Columns[k].Name)
	}
	return fmt.Sprintf("%s %s (%s) key (%s) %v %v", c.Op, c.Table.Name, strings.Join(cols, " "), strings.Join(key, " "), c.Before, c.After)
}

// TestStreamAndSnapshotReadTheCurrentRowsOfSystemVersionedTables: a table WITH SYSTEM
// VERSIONING (timestamp-precise: MariaDB binlogs a transaction-precise one's changes as
// statements, which the stream refuses) streams and snapshots as SELECT shows
// it: an UPDATE is a u, a DELETE a d, the history rows the server writes (and DELETE
// HISTORY deletes) are never handed on, the period columns are in neither image and the
// key is the declared one, without row_end. An ALTER … DROP SYSTEM VERSIONING read after
// the fact changes nothing of that.
func TestStreamAndSnapshotReadTheCurrentRowsOfSystemVersionedTables(t *testing.T) {
	for _, tc := range []struct{ name, ddl, dropVersioning string }{
		{"timestamp", "CREATE TABLE sv (id INT PRIMARY KEY, qty INT) WITH SYSTEM VERSIONING",
			"ALTER TABLE sv DROP SYSTEM VERSIONING"},
		{"visible period columns", `CREATE TABLE sv (id INT PRIMARY KEY, qty INT,
			rs TIMESTAMP(6) GENERATED ALWAYS AS ROW START, re TIMESTAMP(6) GENERATED ALWAYS AS ROW END,
			PERIOD FOR SYSTEM_TIME (rs, re)) WITH SYSTEM VERSIONING`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSource(t)
			testutil.Exec(t, s.db, tc.ddl)
			from := s.position()
			testutil.Exec(t, s.db, "INSERT INTO sv (id, qty) VALUES (1, 5), (2, 7)", "UPDATE sv SET qty = 4 WHERE id = 1",
				"DELETE FROM sv WHERE id = 2", "DELETE HISTORY FROM sv", "UPDATE sv SET id = 3 WHERE id = 1")
			want := []string{
				"c sv (id qty) key (id) [] [1 5]",
				"c sv (id qty) key (id) [] [2 7]",
				"u sv (id qty) key (id) [1 5] [1 4]",
				"d sv (id qty) key (id) [2 7] []",
				"u sv (id qty) key (id) [1 4] [3 4]",
			}
			if tc.dropVersioning != "" {
				testutil.Exec(t, s.db, tc.dropVersioning, "UPDATE sv SET qty = 2 WHERE id = 3")
				want = append(want, "u sv (id qty) key (id) [3 4] [3 2]")
			}
			var got []string
			for _, c := range s.stream(from, s.position()) {
				got = append(got, describeChange(c))
			}
			if !slices.Equal(got, want) {
				t.Errorf("streamed:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}

			got = s.snapshotDescribed()
			last := want[len(want)-1]
			wantSnap := "r sv (id qty) key (id) [] " + last[strings.LastIndex(last, "["):]
			if !slices.Equal(got, []string{wantSnap}) {
				t.Errorf("snapshot read:\n%s\nwant (as SELECT shows %v):\n%s", strings.Join(got, "\n"), s.strings("SELECT CONCAT(id, ' ', qty) FROM sv"), wantSnap)
			}
		})
	}
}

// snapshotDescribed reads the source's database whole and describes each row (describeChange).
func (s *source) snapshotDescribed() []string {
	s.t.Helper()
	rec := &recorder{}
	if _, err := s.snapshot(rec, canal.SnapshotOptions{}); err != nil {
		s.t.Fatal(err)
	}
	var got []string
	for _, c := range rec.rows {
		got = append(got, describeChange(c))
	}
	return got
}

// TestStreamAndSnapshotLeaveSequencesOut: a sequence the filter matches is not a table of
// data: the rows its NEXTVAL and SETVAL write are not handed on, nor does a snapshot
// read it.
func TestStreamAndSnapshotLeaveSequencesOut(t *testing.T) {
	s := newSource(t)
	testutil.Exec(t, s.db, "CREATE SEQUENCE sq START WITH 100 CACHE 2", "CREATE TABLE stock (id INT PRIMARY KEY)")
	from := s.position()
	testutil.Exec(t, s.db, "SELECT NEXTVAL(sq), NEXTVAL(sq), NEXTVAL(sq)", "SELECT SETVAL(sq, 500)", "INSERT INTO stock VALUES (1)")
	var got []string
	for _, c := range s.stream(from, s.position()) {
		got = append(got, describeChange(c))
	}
	if want := []string{"c stock (id) key (id) [] [1]"}; !slices.Equal(got, want) {
		t.Errorf("streamed %q, want %q", got, want)
	}
	got = s.snapshotDescribed()
	if want := []string{"r stock (id) key (id) [] [1]"}; !slices.Equal(got, want) {
		t.Errorf("snapshot read %q, want %q", got, want)
	}
}
