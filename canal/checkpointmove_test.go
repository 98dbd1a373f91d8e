package canal_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/stocksync/stocksync/canal"
	"github.com/stocksync/stocksync/internal/testutil"
)

// TestMovingACheckpointDeletesItsRuleState: Saved reads a checkpoint as it is, without
// creating its table; Move sets another position and deletes the state rows saved with
// the old one that its caller does not keep, in one transaction, and Reset deletes both; another checkpoint of the table
// keeps its own.
func TestMovingACheckpointDeletesItsRuleState(t *testing.T) {
	s := newSource(t)
	ctx := t.Context()
	table := s.name + ".ckpt"
	missing, err := canal.OpenCheckpointStore(s.server.DB, table, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, found, err := missing.Saved(ctx); found || err != nil {
		t.Fatalf("Saved before the table exists: found %v, %v; want none", found, err)
	}
	var tables int
	if err := s.db.QueryRow("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?", s.name).Scan(&tables); err != nil || tables != 0 {
		t.Fatalf("Saved created %d tables (%v); want none", tables, err)
	}

	store, err := canal.NewCheckpointStore(ctx, s.server.DB, table, "test")
	if err != nil {
		t.Fatal(err)
	}
	other, err := canal.NewCheckpointStore(ctx, s.server.DB, table, "other")
	if err != nil {
		t.Fatal(err)
	}
	state := []canal.StateRow{{Scope: "total", Key: `{"sku_id":"A1"}`, Value: []byte(`{"count":1}`)},
		{Scope: "total", Key: `{"sku_id":"B2"}`, Value: []byte(`{"count":2}`)}}
	at := canal.Position{File: "binlog.000001", Pos: 4, GTIDSet: "0-1-1"}
	for _, c := range []*canal.CheckpointStore{store, other} {
		if err := c.Save(ctx, at, state); err != nil {
			t.Fatal(err)
		}
	}
	saved, found, err := store.Saved(ctx)
	if err != nil || !found || saved.Position != at || saved.StateRows != 2 || saved.SavedAt.IsZero() {
		t.Fatalf("Saved = %+v, found %v, %v; want %s with 2 state rows and its time", saved, found, err, at)
	}

	to := canal.Position{GTIDSet: "0-1-7"}
	deleted, kept, err := store.Move(ctx, to, func(r canal.StateRow) bool { return r.Key == state[1].Key })
	if err != nil || deleted != 1 || kept != 1 {
		t.Fatalf("Move(%s) = %d state rows deleted, %d kept, %v; want 1 and 1", to, deleted, kept, err)
	}
	pos, rows, found, err := store.Load(ctx)
	if err != nil || !found || pos != to || len(rows) != 1 || rows[0].Key != state[1].Key || string(rows[0].Value) != string(state[1].Value) {
		t.Errorf("Load after Move = %s, state %+v, found %v, %v; want %s with the kept row %s", pos, rows, found, err, to, state[1].Key)
	}
	if _, rows, _, err := other.Load(ctx); err != nil || len(rows) != 2 {
		t.Errorf("the other checkpoint after Move: %d state rows (%v); want its 2", len(rows), err)
	}

	if err := store.Save(ctx, to, state[:1]); err != nil {
		t.Fatal(err)
	}
	if err := store.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if _, found, err := store.Saved(ctx); found || err != nil {
		t.Errorf("Saved after Reset: found %v, %v; want none", found, err)
	}
	var left int
	if err := s.db.QueryRow("SELECT COUNT(*) FROM ckpt_state WHERE name = 'test'").Scan(&left); err != nil || left != 0 {
		t.Errorf("Reset left %d state rows (%v)", left, err)
	}
}

// TestPositionsTheServerCannotStreamFromAreRefused: a checkpoint is moved only to where
// the server can stream from: a listed file, a position within it where an event ends,
// GTIDs the server has written. Each refusal names the value; a good file position comes
// back with the GTID position there, by which the daemon resumes.
func TestPositionsTheServerCannotStreamFromAreRefused(t *testing.T) {
	s := newSource(t)
	ctx := t.Context()
	testutil.Exec(t, s.db, "CREATE TABLE t (id INT PRIMARY KEY)")
	before := s.position()
	testutil.Exec(t, s.db, "INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (2)")
	now := s.position()
	files, err := s.server.BinlogFileSizes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	last := files[len(files)-1]

	got, err := s.server.FilePosition(ctx, before.File, uint64(before.Pos))
	if err != nil || got != before {
		t.Errorf("FilePosition(%s, %d) = %s, %v; want %s", before.File, before.Pos, got, err, before)
	}
	got, err = s.server.GTIDPosition(ctx, before.GTIDSet)
	if err != nil || got != (canal.Position{GTIDSet: before.GTIDSet}) {
		t.Errorf("GTIDPosition(%s) = %s, %v; want the set alone", before.GTIDSet, got, err)
	}
	// Other packages' tests may write to the server meanwhile, and rotate its binlog.
	if d, err := s.server.Behind(ctx, before, now, nil); err != nil || d.Transactions < 2 || before.File == now.File && (d.Bytes != int64(now.Pos-before.Pos) || d.Files != 0) {
		t.Errorf("Behind(%s, %s) = %+v, %v; want 2 transactions or more, and in one file %d bytes", before, now, d, err, now.Pos-before.Pos)
	}

	var seq uint64 // of domain 0
	for _, g := range strings.Split(now.GTIDSet, ",") {
		if rest, ok := strings.CutPrefix(g, "0-"); ok {
			seq, _ = strconv.ParseUint(rest[strings.IndexByte(rest, '-')+1:], 10, 64)
		}
	}
	beyond := "0-1-" + strconv.FormatUint(seq+1000, 10)
	// In domain 0 and within its sequence numbers, but of a server_id that never wrote there.
	otherServer := "0-4000000001-" + strconv.FormatUint(seq, 10)
	// The event after a transaction's Gtid event: inside that transaction; and where the
	// next transaction begins (its Gtid event), which the refusal names.
	inside, next := uint64(0), uint64(0)
	rows, err := s.db.Query("SHOW BINLOG EVENTS IN '" + before.File + "' FROM " + strconv.FormatUint(uint64(before.Pos), 10) + " LIMIT 50")
	if err != nil {
		t.Fatal(err)
	}
	for gtid := false; rows.Next() && next == 0; {
		var name, typ, info string
		var pos, serverID, end uint64
		if err := rows.Scan(&name, &pos, &typ, &serverID, &end, &info); err != nil {
			t.Fatal(err)
		}
		switch {
		case gtid && inside == 0:
			inside = pos
		case inside != 0 && typ == "Gtid":
			next = pos
		}
		gtid = typ == "Gtid"
	}
	rows.Close()
	if next == 0 {
		t.Fatalf("no two transactions after %s in its file", before)
	}
	insidePos := "--pos " + strconv.FormatUint(inside, 10)
	for _, tc := range []struct {
		name, value string
		try         func() (canal.Position, error)
	}{
		{"a file the server does not list", "--file binlog.999999", func() (canal.Position, error) { return s.server.FilePosition(ctx, "binlog.999999", 4) }},
		{"a position past the file's end", "--pos 99999999", func() (canal.Position, error) { return s.server.FilePosition(ctx, last.Name, 99999999) }},
		{"a position inside an event", "--pos 5", func() (canal.Position, error) { return s.server.FilePosition(ctx, last.Name, 5) }},
		{"a GTID beyond the server's", "--gtid " + beyond, func() (canal.Position, error) { return s.server.GTIDPosition(ctx, beyond) }},
		{"inside a transaction", insidePos + " of binlog " + before.File + " is inside a transaction",
			func() (canal.Position, error) { return s.server.FilePosition(ctx, before.File, inside) }},
		{"inside a transaction: where the next begins", "the next one begins at --pos " + strconv.FormatUint(next, 10),
			func() (canal.Position, error) { return s.server.FilePosition(ctx, before.File, inside) }},
		{"a GTID of a server_id that never wrote in its domain", "--gtid " + otherServer,
			func() (canal.Position, error) { return s.server.GTIDPosition(ctx, otherServer) }},
		{"a replication domain the server has not written", "--gtid 77-1-1", func() (canal.Position, error) { return s.server.GTIDPosition(ctx, "77-1-1") }},
		{"not a GTID set", `--gtid "0:1"`, func() (canal.Position, error) { return s.server.GTIDPosition(ctx, "0:1") }},
	} {
		pos, err := tc.try()
		if !errors.Is(err, canal.ErrNotStreamable) || !strings.Contains(err.Error(), tc.value) {
			t.Errorf("%s: %s, %v; want ErrNotStreamable naming %s", tc.name, pos, err, tc.value)

		}
	}
}

// TestBehindCountsCheckpointSaves: of the transactions after a position, those writing
// only the checkpoint's tables are counted apart, so that a daemon stopped when caught up
// (its last save is a transaction after the position it saved) is not taken for one a
// transaction behind. A transaction writing another table of the same schema (a
// checkpoint.table beside the tables the rules read), or the checkpoint and another table,
// and DDL, are not saves. On a private server, where no other test writes in between.
func TestBehindCountsCheckpointSaves(t *testing.T) {
	m := testutil.StartPrivateMariaDB(t, "")
	s := newSourceOn(t, m.MySQL, "saves")
	testutil.Exec(t, s.db, "CREATE TABLE t (id INT PRIMARY KEY)",
		"CREATE TABLE ckpt (name VARCHAR(20) PRIMARY KEY, pos INT)", "CREATE TABLE ckpt_state (k INT PRIMARY KEY)")
	store, err := canal.OpenCheckpointStore(s.server.DB, s.name+".ckpt", "default")
	if err != nil {
		t.Fatal(err)
	}
	before := s.position()
	testutil.Exec(t, s.db, "INSERT INTO ckpt VALUES ('a', 1)", "UPDATE ckpt SET pos = 2", "INSERT INTO ckpt_state VALUES (1)",
		"CREATE TABLE other (k INT PRIMARY KEY)", "INSERT INTO t VALUES (1)")
	tx, err := s.db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"INSERT INTO t VALUES (2)", "UPDATE ckpt SET pos = 3"} {
		if _, err := tx.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	now := s.position()
	d, err := s.server.Behind(t.Context(), before, now, store.Tables())
	if err != nil || d.Transactions != 6 || d.CheckpointSaves != 3 {
		t.Errorf("Behind(%s, %s, %v) = %+v, %v; want 6 transactions, 3 of them saves", before, now, store.Tables(), d, err)
	}
	if d, err := s.server.Behind(t.Context(), before, now, nil); err != nil || d.CheckpointSaves != 0 {
		t.Errorf("Behind without the checkpoint's tables = %+v, %v; want no saves", d, err)
	}
}
