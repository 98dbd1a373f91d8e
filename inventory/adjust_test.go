package inventory

import (
	"errors"
	"strings"
	"testing"
)

// adjustmentsOf counts the adjustment_log rows of a request_id.
func adjustmentsOf(t *testing.T, store *Store, requestID string) int64 {
	t.Helper()
	return queryInt(t, store.db, "SELECT COUNT(*) FROM adjustment_log WHERE request_id = ?", requestID)
}

func TestAdjustWithRequestIDAppliesOnce(t *testing.T) {
	store, db := newTestStore(t, Options{})
	ctx := t.Context()
	for _, sku := range []string{"a", "b"} {
		if _, err := store.SetStock(ctx, sku, 10, 4); err != nil {
			t.Fatal(err)
		}
	}
	req := AdjustRequest{SKU: "a", Delta: -3, Reason: "damaged", RequestID: "adj-1"}
	first, err := store.Adjust(ctx, req)
	if err != nil || first.Replayed || first.Sellable != 7 {
		t.Fatalf("first adjust = %+v, %v; want sellable 7, not replayed", first, err)
	}
	// A retry, also with another reason (the first one's is kept), adjusts nothing.
	for _, reason := range []string{"damaged", "damaged (retry)"} {
		retry := req
		retry.Reason = reason
		again, err := store.Adjust(ctx, retry)
		if err != nil || !again.Replayed || again.Sellable != 7 || again.SKU != "a" {
			t.Fatalf("repeated adjust with reason %q = %+v, %v; want sellable 7, replayed", reason, again, err)
		}
	}
	if got := sellable(t, db, "a"); got != 7 {
		t.Fatalf("sellable = %d after repeats, want 7", got)
	}

	// The same request_id for another SKU or delta is refused and writes nothing.
	before := snapshot(t, db)
	for _, other := range []AdjustRequest{
		{SKU: "a", Delta: -4, Reason: "damaged", RequestID: "adj-1"},
		{SKU: "a", Delta: 3, Reason: "damaged", RequestID: "adj-1"},
		{SKU: "b", Delta: -3, Reason: "damaged", RequestID: "adj-1"},
	} {
		_, err := store.Adjust(ctx, other)
		if !errors.Is(err, ErrRequestConflict) {
			t.Fatalf("adjust %+v = %v, want ErrRequestConflict", other, err)
		}
		for _, want := range []string{"request_id adj-1 adjusted a by -3", "adjusting stock of " + other.SKU} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("conflict %v does not say %q", err, want)
			}
		}
	}
	if after := snapshot(t, db); after != before {
		t.Fatalf("a conflicting adjust wrote:\nbefore\n%s\nafter\n%s", before, after)
	}
	if n := adjustmentsOf(t, store, "adj-1"); n != 1 {
		t.Fatalf("%d log rows of adj-1, want 1", n)
	}

	// Without a request_id every call adjusts, as before.
	for range 2 {
		out, err := store.Adjust(ctx, AdjustRequest{SKU: "b", Delta: 2, Reason: "found"})
		if err != nil || out.Replayed {
			t.Fatalf("adjust without request_id = %+v, %v", out, err)
		}
	}
	if got := sellable(t, db, "b"); got != 14 {
		t.Fatalf("sellable of b = %d after two +2 without request_id, want 14", got)
	}
	if n := queryInt(t, db, "SELECT COUNT(*) FROM adjustment_log WHERE request_id IS NULL"); n != 2 {
		t.Fatalf("%d log rows without request_id, want 2", n)
	}
}

// A refused adjust records nothing, not even its request_id: a corrected retry with the
// same one applies.
func TestRefusedAdjustLeavesItsRequestIDFree(t *testing.T) {
	store, db := newTestStore(t, Options{})
	ctx := t.Context()
	if _, err := store.SetStock(ctx, "few", 3, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := store.SetStock(ctx, "full", maxQty-1, 2); err != nil {
		t.Fatal(err)
	}
	refused := []struct {
		req   AdjustRequest
		check func(error) bool
	}{
		{AdjustRequest{SKU: "few", Delta: -5, Reason: "damaged", RequestID: "r1"}, func(err error) bool { return errors.As(err, new(*ShortageError)) }},
		{AdjustRequest{SKU: "nope", Delta: 1, Reason: "found", RequestID: "r2"}, func(err error) bool { return errors.Is(err, ErrNotFound) }},
		{AdjustRequest{SKU: "full", Delta: 2, Reason: "found", RequestID: "r3"}, func(err error) bool { return errors.As(err, new(*ValidationError)) }},
	}
	before := snapshot(t, db)
	for _, r := range refused {
		if _, err := store.Adjust(ctx, r.req); !r.check(err) {
			t.Fatalf("adjust %+v = %v, want it refused", r.req, err)
		}
	}
	if after := snapshot(t, db); after != before {
		t.Fatalf("a refused adjust wrote:\nbefore\n%s\nafter\n%s", before, after)
	}
	for _, fixed := range []AdjustRequest{
		{SKU: "few", Delta: -3, Reason: "damaged", RequestID: "r1"},
		{SKU: "few", Delta: 1, Reason: "found", RequestID: "r2"},
		{SKU: "full", Delta: 1, Reason: "found", RequestID: "r3"},
	} {
		out, err := store.Adjust(ctx, fixed)
		if err != nil || out.Replayed {
			t.Fatalf("corrected adjust %+v = %+v, %v; want it applied", fixed, out, err)
		}
	}
	if got := sellable(t, db, "few"); got != 1 {
		t.Fatalf("sellable of few = %d, want 1", got)
	}
	if got := sellable(t, db, "full"); got != maxQty {
		t.Fatalf("sellable of full = %d, want %d", got, int64(maxQty))
	}
}

func TestAdjustRequestIDIsValidatedLikeAnOrderNumber(t *testing.T) {
	for _, id := range []string{strings.Repeat("r", 65), "r ", "r\n1", "r\xff"} {
		err := checkAdjust(AdjustRequest{SKU: "a", Delta: 1, Reason: "x", RequestID: id})
		var validation *ValidationError
		if !errors.As(err, &validation) || validation.Field != "request_id" {
			t.Errorf("request_id %q: %v, want a *ValidationError of request_id", id, err)
		}
	}
	if err := checkAdjust(AdjustRequest{SKU: "a", Delta: 1, Reason: "x", RequestID: strings.Repeat("r", 64)}); err != nil {
		t.Errorf("a request_id of 64 bytes: %v", err)
	}
}

// Concurrent duplicates of one adjust, as retries racing their first attempt: exactly one
// applies, every other answers the same SKU replayed.
func TestConcurrentDuplicateAdjustsApplyOnce(t *testing.T) {
	for _, tt := range []struct {
		name  string
		delta int64
	}{{"remove", -3}, {"add", 3}} {
		delta := tt.delta
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			store, db := newTestStore(t, Options{})
			ctx := t.Context()
			if _, err := store.SetStock(ctx, "dup", 100, 4); err != nil {
				t.Fatal(err)
			}
			const senders = 20
			results, errs := atOnce(senders, func(int) (Adjustment, error) {
				return store.Adjust(ctx, AdjustRequest{SKU: "dup", Delta: delta, Reason: "recount", RequestID: "same"})
			})
			applied := 0
			for i := range senders {
				if errs[i] != nil {
					t.Fatalf("sender %d: %v", i, errs[i])
				}
				if !results[i].Replayed {
					applied++
				}
				if results[i].SKU != "dup" || results[i].Sellable != 100+delta {
					t.Fatalf("sender %d got %+v, want dup at %d", i, results[i].SKUStock, 100+delta)
				}
			}
			if applied != 1 {
				t.Fatalf("%d senders adjusted, want exactly 1 (the others replay)", applied)
			}
			if got := sellable(t, db, "dup"); got != 100+delta {
				t.Fatalf("sellable = %d, want %d", got, 100+delta)
			}
			if n := adjustmentsOf(t, store, "same"); n != 1 {
				t.Fatalf("%d log rows, want 1", n)
			}
		})
	}
}

// Concurrent duplicates that all fail leave no row, however their waits interleave.
func TestConcurrentRefusedDuplicatesRecordNothing(t *testing.T) {
	store, db := newTestStore(t, Options{})
	ctx := t.Context()
	if _, err := store.SetStock(ctx, "few", 2, 2); err != nil {
		t.Fatal(err)
	}
	_, errs := atOnce(20, func(int) (Adjustment, error) {
		return store.Adjust(ctx, AdjustRequest{SKU: "few", Delta: -3, Reason: "damaged", RequestID: "short"})
	})
	for i, err := range errs {
		if !errors.As(err, new(*ShortageError)) {
			t.Fatalf("sender %d: %v, want a shortage", i, err)
		}
	}
	if got := sellable(t, db, "few"); got != 2 {
		t.Fatalf("sellable = %d, want 2", got)
	}
	if n := adjustmentsOf(t, store, "short"); n != 0 {
		t.Fatalf("%d log rows of refused adjusts, want 0", n)
	}
}
