package canal_test

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/stocksync/stocksync/canal"
	"github.com/stocksync/stocksync/internal/testutil"
)

// TestDeletedCheckpointTakesItsStateWithIt: an operator who deletes a checkpoint's row to
// start afresh leaves its rule state behind; the next Load (a first start) deletes it, so
// that groups of the old state never come back with a later restart. Another checkpoint's
// state stays.
func TestDeletedCheckpointTakesItsStateWithIt(t *testing.T) {
	s := newSource(t)
	table := s.name + ".ckpt"
	store, err := canal.NewCheckpointStore(t.Context(), s.server.DB, table, "test")
	if err != nil {
		t.Fatal(err)
	}
	other, err := canal.NewCheckpointStore(t.Context(), s.server.DB, table, "other")
	if err != nil {
		t.Fatal(err)
	}
	row := []canal.StateRow{{Scope: "total", Key: `{"sku_id":"Y1"}`, Value: []byte(`{"count":1}`)}}
	at := canal.Position{File: "binlog.000001", Pos: 4}
	if err := store.Save(t.Context(), at, row); err != nil {
		t.Fatal(err)
	}
	if err := other.Save(t.Context(), at, row); err != nil {
		t.Fatal(err)
	}
	testutil.Exec(t, s.db, "DELETE FROM ckpt WHERE name = 'test'")
	if _, state, found, err := store.Load(t.Context()); err != nil || found || len(state) != 0 {
		t.Fatalf("load after the checkpoint's row was deleted: found %v, %d state rows, %v", found, len(state), err)
	}
	if err := store.Save(t.Context(), at, nil); err != nil { // the first start's save
		t.Fatal(err)
	}
	if _, state, _, err := store.Load(t.Context()); err != nil || len(state) != 0 {
		t.Errorf("the deleted checkpoint's state came back: %v (%v)", state, err)
	}
	if _, state, found, err := other.Load(t.Context()); err != nil || !found || len(state) != 1 {
		t.Errorf("the other checkpoint: found %v, %d state rows (%v); want its one row", found, len(state), err)
	}
}

// TestLongGroupKeysAreSavedWhole: a group key longer than the state table's key column (a
// group_by over long text) is saved and loaded whole, apart from another that shares its
// first 2,048 bytes; deleted by a nil value, and seen whole by a Move's keep. A rule name
// or a row too long for the table is refused, naming it, with nothing written.
func TestLongGroupKeysAreSavedWhole(t *testing.T) {
	s := newSource(t)
	store, err := canal.NewCheckpointStore(t.Context(), s.server.DB, s.name+".ckpt", "test")
	if err != nil {
		t.Fatal(err)
	}
	long := `{"title":"` + strings.Repeat("é", 1200)
	rows := []canal.StateRow{
		{Scope: "total", Key: `{"sku_id":"Y1"}`, Value: []byte(`{"count":1}`)},
		{Scope: "total", Key: long + `a"}`, Value: []byte(`{"count":2}`)},
		{Scope: "total", Key: long + `b"}`, Value: []byte(`{"count":3}`)},
		{Scope: "total", Key: long + strings.Repeat("c", 20000) + `"}`, Value: []byte(`{"count":4}`)},
		{Scope: "total", Key: "\x00" + `{"odd":1}`, Value: []byte(`{"count":5}`)},
	}
	at := canal.Position{File: "binlog.000001", Pos: 4}
	if err := store.Save(t.Context(), at, rows); err != nil {
		t.Fatalf("saving keys of up to %d bytes: %v", len(rows[3].Key), err)
	}
	loaded := func() map[string]string { return loadedState(t, store) }
	want := map[string]string{}
	for _, r := range rows {
		want[r.Scope+"|"+r.Key] = string(r.Value)
	}
	if got := loaded(); !maps.Equal(got, want) {
		t.Fatalf("loaded %d rows, want the %d saved whole: %v", len(got), len(want), slices.Sorted(maps.Keys(got)))
	}
	// Changed and deleted under their long keys.
	if err := store.Save(t.Context(), at, []canal.StateRow{{Scope: "total", Key: rows[1].Key, Value: []byte(`{"count":7}`)}, {Scope: "total", Key: rows[2].Key}}); err != nil {
		t.Fatal(err)
	}
	want["total|"+rows[1].Key] = `{"count":7}`
	delete(want, "total|"+rows[2].Key)
	if got := loaded(); !maps.Equal(got, want) {
		t.Fatalf("after an update and a delete: %d rows, want %d", len(got), len(want))
	}
	// A Move's keep sees the keys whole.
	deleted, kept, err := store.Move(t.Context(), at, func(r canal.StateRow) bool { return r.Key != rows[3].Key })
	if err != nil || deleted != 1 || kept != 3 {
		t.Fatalf("move keeping all but the longest key: deleted %d, kept %d, %v; want 1, 3", deleted, kept, err)
	}
	delete(want, "total|"+rows[3].Key)
	if got := loaded(); !maps.Equal(got, want) {
		t.Fatalf("after the move: %d rows, want %d", len(got), len(want))
	}

	// A short key beginning with a NUL (the rules' seed marker), saved by a stocksync before
	// long keys, is updated and deleted in place, never kept beside a copy under its hash.
	testutil.Exec(t, s.db, "INSERT INTO ckpt_state (name, scope, k, v) VALUES ('test', 'total', CONCAT(CHAR(0), 'seeded'), 'old')")
	if err := store.Save(t.Context(), at, []canal.StateRow{{Scope: "total", Key: "\x00seeded", Value: []byte("new")}}); err != nil {
		t.Fatal(err)
	}
	want["total|\x00seeded"] = "new"
	if got := loaded(); !maps.Equal(got, want) {
		t.Fatalf("the marker saved over the old format's row: %d rows, want %d (one marker, \"new\")", len(got), len(want))
	}
	if err := store.Save(t.Context(), at, []canal.StateRow{{Scope: "total", Key: "\x00seeded"}}); err != nil {
		t.Fatal(err)
	}
	delete(want, "total|\x00seeded")
	if got := loaded(); !maps.Equal(got, want) {
		t.Fatalf("the marker deleted: %d rows, want %d", len(got), len(want))
	}

	for _, bad := range []struct {
		row  canal.StateRow
		want string
	}{
		{canal.StateRow{Scope: strings.Repeat("r", 256), Key: `{"a":1}`, Value: []byte("{}")}, "is 256 bytes; its state can be saved under at most 255"},
		{canal.StateRow{Scope: "total", Key: long + strings.Repeat("d", 70000) + `"}`, Value: []byte("{}")}, "a state row holds at most 65535"},
	} {
		err := store.Save(t.Context(), canal.Position{File: "binlog.000002", Pos: 4}, []canal.StateRow{{Scope: "total", Key: `{"a":2}`, Value: []byte("{}")}, bad.row})
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("saving a row too long: %v; want an error saying %q", err, bad.want)
		}
		if p, _, _, _ := store.Load(t.Context()); p != at || !maps.Equal(loaded(), want) {
			t.Errorf("a refused save wrote something: at %s", p)
		}
	}
}

// TestSaveDeletesManyGroupsInFewStatements: a save that deletes many groups' state (a
// TRUNCATE or a mass DELETE of a table an aggregate rule folds) deletes them 500 to a
// statement, as it writes them, not one statement per group; and it deletes exactly the
// groups it names: long keys under their hash, nothing of another rule or checkpoint,
// nor a group only sharing a long key's first 2,048 bytes. A Move that drops many groups
// deletes them so too. Statements are counted on the store's one connection.
func TestSaveDeletesManyGroupsInFewStatements(t *testing.T) {
	s := newSource(t)
	db := testutil.MySQLServer(t).Open(t, s.name)
	db.SetMaxOpenConns(1) // the session whose Com_delete counts the store's statements
	store, err := canal.NewCheckpointStore(t.Context(), db, s.name+".ckpt", "test")
	if err != nil {
		t.Fatal(err)
	}
	other, err := canal.NewCheckpointStore(t.Context(), db, s.name+".ckpt", "other")
	if err != nil {
		t.Fatal(err)
	}
	deletes := func() int {
		t.Helper()
		var name string
		var n int
		if err := db.QueryRowContext(t.Context(), "SHOW SESSION STATUS LIKE 'Com_delete'").Scan(&name, &n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	long := `{"title":"` + strings.Repeat("x", 2100)
	var rows []canal.StateRow
	for i := range 1200 {
		key := fmt.Sprintf(`{"sku_id":"SKU-%05d"}`, i)
		if i%100 == 0 {
			key = long + fmt.Sprintf(`%05d"}`, i) // saved under its hash
		}
		rows = append(rows, canal.StateRow{Scope: "product-stock", Key: key, Value: []byte(`{"count":1}`)})
	}
	kept := []canal.StateRow{
		{Scope: "product-stock", Key: `{"sku_id":"KEEP"}`, Value: []byte(`{"count":2}`)},
		{Scope: "product-stock", Key: long + `"}`, Value: []byte(`{"count":3}`)},     // shares the long keys' first 2,048 bytes
		{Scope: "search-in-stock", Key: rows[1].Key, Value: []byte(`{"count":4}`)},   // another rule, same group
		{Scope: "search-in-stock", Key: rows[100].Key, Value: []byte(`{"count":5}`)}, // another rule, same long group
	}
	at := canal.Position{File: "binlog.000001", Pos: 4}
	for _, st := range []*canal.CheckpointStore{store, other} {
		if err := st.Save(t.Context(), at, append(slices.Clone(rows), kept...)); err != nil {
			t.Fatal(err)
		}
	}
	gone := make([]canal.StateRow, len(rows))
	for i, r := range rows {
		gone[i] = canal.StateRow{Scope: r.Scope, Key: r.Key} // nil Value: delete
	}
	before := deletes()
	at.Pos = 5
	if err := store.Save(t.Context(), at, gone); err != nil {
		t.Fatal(err)
	}
	if n := deletes() - before; n > 3 {
		t.Errorf("deleting %d groups' state took %d DELETE statements; want at most 3 (500 groups a statement)", len(gone), n)
	}
	loaded := func(st *canal.CheckpointStore) map[string]string { return loadedState(t, st) }
	want := map[string]string{}
	for _, r := range kept {
		want[r.Scope+"|"+r.Key] = string(r.Value)
	}
	if got := loaded(store); !maps.Equal(got, want) {
		t.Errorf("after deleting %d groups: %d rows left, want the %d not named", len(gone), len(got), len(want))
	}
	if got := loaded(other); len(got) != len(rows)+len(kept) {
		t.Errorf("the other checkpoint has %d rows left, want its %d untouched", len(got), len(rows)+len(kept))
	}

	// A Move dropping all but one of the other checkpoint's groups.
	before = deletes()
	deleted, keptN, err := other.Move(t.Context(), at, func(r canal.StateRow) bool { return r.Key == `{"sku_id":"KEEP"}` })
	if err != nil || deleted != int64(len(rows)+len(kept)-1) || keptN != 1 {
		t.Fatalf("move keeping one group: deleted %d, kept %d, %v; want %d, 1", deleted, keptN, err, len(rows)+len(kept)-1)
	}
	if n := deletes() - before; n > 4 { // 3 batches and the checkpoint's row
		t.Errorf("a move deleting %d groups' state ran %d DELETE statements; want at most 4", deleted, n)
	}
	if got := loaded(other); len(got) != 1 || got[`product-stock|{"sku_id":"KEEP"}`] == "" {
		t.Errorf("after the move: %v; want only the group kept", slices.Sorted(maps.Keys(got)))
	}
}

// loadedState is the state store holds, "scope|key" → value.
func loadedState(t *testing.T, store *canal.CheckpointStore) map[string]string {
	t.Helper()
	_, state, _, err := store.Load(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range state {
		got[r.Scope+"|"+r.Key] = string(r.Value)
	}
	return got
}
