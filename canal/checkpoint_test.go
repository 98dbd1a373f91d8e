package canal_test

import (
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
