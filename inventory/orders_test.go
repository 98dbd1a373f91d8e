package inventory

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stocksync/stocksync/config"
	"github.com/stocksync/stocksync/internal/testutil"
)

// lifecycleStore is a store with one SKU of 100 in 2 shards, a warehouse W1 holding 50 of
// it, and order o1 holding 3.
func lifecycleStore(t *testing.T) (*Store, func() (sellableQty, reserved, physical int64)) {
	t.Helper()
	store, db := newTestStore(t, Options{})
	ctx := t.Context()
	if _, err := store.SetStock(ctx, "s1", 100, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := store.PutWarehouse(ctx, Warehouse{Code: "W1", Name: "Central", Type: "central"}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.SyncPhysical(ctx, []PhysicalLevel{{SKU: "s1", Warehouse: "W1", Qty: 50}}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Deduct(ctx, DeductRequest{OrderNo: "o1", Items: []Item{{SKU: "s1", Qty: 3}}}); err != nil {
		t.Fatal(err)
	}
	return store, func() (int64, int64, int64) {
		return sellable(t, db, "s1"), queryInt(t, db, "SELECT COALESCE((SELECT qty FROM reserved WHERE sku_id = 's1'), 0)"),
			queryInt(t, db, "SELECT qty FROM physical_stock WHERE sku_id = 's1' AND warehouse_code = 'W1'")
	}
}

func TestOrderLifecycle(t *testing.T) {
	type step struct {
		op      string // confirm, cancel, ship
		wantErr error
	}
	tests := []struct {
		name  string
		steps []step
		// stock after the last step: sellable, reserved, physical
		sellable, reserved, physical int64
		status                       OrderStatus
	}{
		{"confirm reserves", []step{{"confirm", nil}}, 97, 3, 50, StatusConfirmed},
		{"confirm twice is a replay", []step{{"confirm", nil}, {"confirm", nil}}, 97, 3, 50, StatusConfirmed},
		{"ship releases reserved and lowers physical", []step{{"confirm", nil}, {"ship", nil}}, 97, 0, 47, StatusShipped},
		{"cancel after ship is refused", []step{{"confirm", nil}, {"ship", nil}, {"cancel", ErrShipped}}, 97, 0, 47, StatusShipped},
		{"cancel a hold restores sellable", []step{{"cancel", nil}}, 100, 0, 50, StatusCancelled},
		{"cancel a paid order restores sellable and reserved", []step{{"confirm", nil}, {"cancel", nil}}, 100, 0, 50, StatusCancelled},
		{"cancel twice is a replay", []step{{"cancel", nil}, {"cancel", nil}}, 100, 0, 50, StatusCancelled},
		{"confirm after cancel is refused", []step{{"cancel", nil}, {"confirm", ErrCancelled}}, 100, 0, 50, StatusCancelled},
		{"ship before payment is refused", []step{{"ship", ErrNotConfirmed}}, 97, 0, 50, StatusHeld},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			store, stock := lifecycleStore(t)
			ctx := t.Context()
			for _, st := range tt.steps {
				var err error
				switch st.op {
				case "confirm":
					_, err = store.Confirm(ctx, "o1")
				case "cancel":
					_, err = store.Cancel(ctx, "o1")
				case "ship":
					_, err = store.Ship(ctx, "o1", "W1")
				}
				if !errors.Is(err, st.wantErr) || (st.wantErr == nil && err != nil) {
					t.Fatalf("%s = %v, want %v", st.op, err, st.wantErr)
				}
			}
			sell, reserved, physical := stock()
			if sell != tt.sellable || reserved != tt.reserved || physical != tt.physical {
				t.Fatalf("sellable, reserved, physical = %d, %d, %d; want %d, %d, %d", sell, reserved, physical, tt.sellable, tt.reserved, tt.physical)
			}
			order, err := store.GetOrder(ctx, "o1")
			if err != nil || order.Status != tt.status {
				t.Fatalf("order = %+v, %v; want status %s", order, err, tt.status)
			}
		})
	}
}

func TestCancelWritesRollbackAndSoftDeletes(t *testing.T) {
	store, db := newTestStore(t, Options{})
	ctx := t.Context()
	store.SetStock(ctx, "x", 10, 1)
	store.SetStock(ctx, "y", 10, 3)
	if _, err := store.Deduct(ctx, DeductRequest{OrderNo: "rb", Items: []Item{{SKU: "x", Qty: 2}, {SKU: "y", Qty: 5}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Cancel(ctx, "rb"); err != nil {
		t.Fatal(err)
	}
	if n := queryInt(t, db, "SELECT COUNT(*) FROM deduction_log WHERE order_no = 'rb' AND deleted_at IS NOT NULL"); n != 2 {
		t.Fatalf("%d log rows soft-deleted, want 2", n)
	}
	if n := queryInt(t, db, "SELECT COUNT(*) FROM rollback_log WHERE order_no = 'rb' AND reason = 'cancel'"); n != 2 {
		t.Fatalf("%d rollback rows, want 2", n)
	}
	// A retried deduction of the cancelled order deducts nothing and says the order no
	// longer holds stock; one asking for other items says that first.
	order, err := store.Deduct(ctx, DeductRequest{OrderNo: "rb", Items: []Item{{SKU: "y", Qty: 5}, {SKU: "x", Qty: 2}}})
	if !errors.Is(err, ErrCancelled) || !order.Replayed || order.Status != StatusCancelled {
		t.Fatalf("deduct after cancel = %+v, %v; want the cancelled order and ErrCancelled", order, err)
	}
	if _, err := store.Deduct(ctx, DeductRequest{OrderNo: "rb", Items: []Item{{SKU: "x", Qty: 2}}}); !errors.Is(err, ErrOrderConflict) ||
		!strings.Contains(err.Error(), "deducted as x x2, y x5, this request asks for x x2") {
		t.Fatalf("deduct of other items after cancel: %v; want ErrOrderConflict naming both", err)
	}
	if sellable(t, db, "x") != 10 || sellable(t, db, "y") != 10 {
		t.Fatalf("stock after cancel and retry: x=%d y=%d, want 10 and 10", sellable(t, db, "x"), sellable(t, db, "y"))
	}
}

func TestHoldExpiry(t *testing.T) {
	store, db := newTestStore(t, Options{})
	ctx := t.Context()
	store.SetStock(ctx, "e", 10, 1)
	if _, err := store.Deduct(ctx, DeductRequest{OrderNo: "short-lived", Items: []Item{{SKU: "e", Qty: 4}}, HoldTTL: time.Microsecond}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Deduct(ctx, DeductRequest{OrderNo: "long-lived", Items: []Item{{SKU: "e", Qty: 1}}}); err != nil {
		t.Fatal(err)
	}
	if got := sellable(t, db, "e"); got != 5 {
		t.Fatalf("sellable = %d before the sweep, want 5", got)
	}
	n, err := store.SweepExpired(ctx)
	if err != nil || n != 1 {
		t.Fatalf("SweepExpired = %d, %v; want 1 released", n, err)
	}
	if got := sellable(t, db, "e"); got != 9 {
		t.Fatalf("sellable = %d after the sweep, want 9", got)
	}
	if n, err := store.SweepExpired(ctx); err != nil || n != 0 {
		t.Fatalf("second SweepExpired = %d, %v; want nothing left", n, err)
	}
	if _, err := store.Confirm(ctx, "short-lived"); !errors.Is(err, ErrExpired) {
		t.Fatalf("confirming an expired hold = %v, want ErrExpired", err)
	}
	// The order's retried deduction finds its stock given back: no success, nothing taken.
	if order, err := store.Deduct(ctx, DeductRequest{OrderNo: "short-lived", Items: []Item{{SKU: "e", Qty: 4}}}); !errors.Is(err, ErrExpired) ||
		order.Status != StatusExpired {
		t.Fatalf("retried deduction of an expired order = %+v, %v; want the expired order and ErrExpired", order, err)
	}
	if got := sellable(t, db, "e"); got != 9 {
		t.Fatalf("sellable = %d after a retried deduction of the expired order, want 9", got)
	}
	if n := queryInt(t, db, "SELECT COUNT(*) FROM rollback_log WHERE order_no = 'short-lived' AND reason = 'expired'"); n != 1 {
		t.Fatalf("%d rollback rows for the expired hold, want 1", n)
	}
}

// A hold is expired from its expires_at on, whether or not the sweeper has run: GET shows
// it expired, and a repeated deduction answers hold_expired and gives the stock back, as a
// confirm does; a cancel answers it as the expired order it is.
func TestHoldPastItsExpiryIsExpiredBeforeTheSweep(t *testing.T) {
	tests := []struct {
		name string
		call func(ctx context.Context, store *Store) (Order, error)
		// what the call answers, and the stock after it (6 while the order holds 4)
		wantErr      error
		wantReplayed bool
		wantSellable int64
	}{
		{"repeated deduction", func(ctx context.Context, store *Store) (Order, error) {
			return store.Deduct(ctx, DeductRequest{OrderNo: "lapsed", Items: []Item{{SKU: "e", Qty: 4}}})
		}, ErrExpired, true, 10},
		{"confirm", func(ctx context.Context, store *Store) (Order, error) { return store.Confirm(ctx, "lapsed") }, ErrExpired, false, 10},
		{"cancel", func(ctx context.Context, store *Store) (Order, error) { return store.Cancel(ctx, "lapsed") }, nil, true, 10},
		{"GET", func(ctx context.Context, store *Store) (Order, error) { return store.GetOrder(ctx, "lapsed") }, nil, false, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			store, db := newTestStore(t, Options{})
			clock := useFakeClock(store, time.Date(2030, 11, 11, 0, 0, 0, 0, time.UTC))
			ctx := t.Context()
			if _, err := store.SetStock(ctx, "e", 10, 1); err != nil {
				t.Fatal(err)
			}
			deduction := DeductRequest{OrderNo: "lapsed", Items: []Item{{SKU: "e", Qty: 4}}, HoldTTL: 15 * time.Minute}
			if _, err := store.Deduct(ctx, deduction); err != nil {
				t.Fatal(err)
			}
			clock.advance(15*time.Minute - time.Microsecond)
			if order, err := store.Deduct(ctx, deduction); err != nil || order.Status != StatusHeld || !order.Replayed {
				t.Fatalf("repeated deduction just before the expiry = %+v, %v; want the held order, replayed", order, err)
			}
			clock.advance(time.Microsecond) // at expires_at; the sweeper has not run
			order, err := tt.call(ctx, store)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) || order.Status != StatusExpired || order.Replayed != tt.wantReplayed {
				t.Fatalf("%s at the expiry = %+v, %v; want the order expired (replayed %v) and error %v", tt.name, order, err, tt.wantReplayed, tt.wantErr)
			}
			if got := sellable(t, db, "e"); got != tt.wantSellable {
				t.Fatalf("sellable = %d after the %s, want %d", got, tt.name, tt.wantSellable)
			}
			// What the call did not give back, the sweeper does, once.
			if n, err := store.SweepExpired(ctx); err != nil || sellable(t, db, "e") != 10 {
				t.Fatalf("SweepExpired = %d, %v; sellable %d after it, want 10", n, err, sellable(t, db, "e"))
			}
			if n := queryInt(t, db, "SELECT COUNT(*) FROM rollback_log WHERE order_no = 'lapsed' AND reason = 'expired'"); n != 1 {
				t.Fatalf("%d rollback rows of the expiry, want 1", n)
			}
		})
	}
}

func TestConfirmAfterExpiryReleasesTheHold(t *testing.T) {
	store, db := newTestStore(t, Options{})
	ctx := t.Context()
	store.SetStock(ctx, "e", 10, 1)
	if _, err := store.Deduct(ctx, DeductRequest{OrderNo: "late", Items: []Item{{SKU: "e", Qty: 4}}, HoldTTL: time.Microsecond}); err != nil {
		t.Fatal(err)
	}
	// No sweep ran: the payment arrives after the expiry and finds the hold still there.
	if _, err := store.Confirm(ctx, "late"); !errors.Is(err, ErrExpired) {
		t.Fatalf("Confirm = %v, want ErrExpired", err)
	}
	if got := sellable(t, db, "e"); got != 10 {
		t.Fatalf("sellable = %d, want 10 (the late confirm releases the hold)", got)
	}
	if n, _ := store.SweepExpired(ctx); n != 0 {
		t.Fatalf("the sweeper released %d more", n)
	}
}

// TestExtendHold: an extension makes a held order's hold last hold_ttl from now, never
// shorter, at most the deduction's maximum; a retry does not stack; past the expiry, and
// for an order not held, it is refused.
func TestExtendHold(t *testing.T) {
	store, db := newTestStore(t, Options{})
	start := time.Date(2030, 11, 11, 0, 0, 0, 0, time.UTC)
	clock := useFakeClock(store, start)
	ctx := t.Context()
	if _, err := store.SetStock(ctx, "x", 10, 1); err != nil {
		t.Fatal(err)
	}
	for _, o := range []string{"slow", "paid", "refunded"} {
		if _, err := store.Deduct(ctx, DeductRequest{OrderNo: o, Items: []Item{{SKU: "x", Qty: 2}}, HoldTTL: 15 * time.Minute}); err != nil {
			t.Fatal(err)
		}
	}
	store.Confirm(ctx, "paid")
	store.Cancel(ctx, "refunded")
	storedExpiry := func() time.Time {
		var at time.Time
		if err := db.QueryRow("SELECT expires_at FROM hold WHERE order_no = 'slow'").Scan(&at); err != nil {
			t.Fatal(err)
		}
		return at
	}
	clock.advance(10 * time.Minute)
	for _, tt := range []struct {
		name         string
		ttl          time.Duration
		wantExpiry   time.Time
		wantReplayed bool
	}{
		{"extension", 20 * time.Minute, start.Add(30 * time.Minute), false},
		{"retry", 20 * time.Minute, start.Add(30 * time.Minute), true},
		{"shorter", 5 * time.Minute, start.Add(30 * time.Minute), true},
		{"the longest", config.MaxHoldTTL, start.Add(10*time.Minute + config.MaxHoldTTL), false},
	} {
		order, err := store.Extend(ctx, "slow", tt.ttl)
		if err != nil || order.Status != StatusHeld || !order.ExpiresAt.Equal(tt.wantExpiry) || order.Replayed != tt.wantReplayed || len(order.Items) != 1 {
			t.Fatalf("%s by %v = %+v, %v; want held until %v, replayed %v", tt.name, tt.ttl, order, err, tt.wantExpiry, tt.wantReplayed)
		}
		if got := storedExpiry(); !got.Equal(tt.wantExpiry) {
			t.Fatalf("%s: stored expiry %v, want %v", tt.name, got, tt.wantExpiry)
		}
	}
	for _, ttl := range []time.Duration{0, -time.Minute, config.MaxHoldTTL + time.Microsecond} {
		var invalid *ValidationError
		if _, err := store.Extend(ctx, "slow", ttl); !errors.As(err, &invalid) || invalid.Field != "hold_ttl" {
			t.Fatalf("extending by %v = %v, want a ValidationError of hold_ttl", ttl, err)
		}
	}
	for order, want := range map[string]error{"paid": ErrNotHeld, "refunded": ErrCancelled, "never": ErrNotFound} {
		if _, err := store.Extend(ctx, order, time.Hour); !errors.Is(err, want) {
			t.Fatalf("extending order %s = %v, want %v", order, err, want)
		}
	}
	// Past its expiry the hold is gone: the extension gives its stock back, as the sweeper would.
	clock.advance(config.MaxHoldTTL)
	if order, err := store.Extend(ctx, "slow", time.Hour); !errors.Is(err, ErrExpired) || order.Status != StatusExpired {
		t.Fatalf("extending at the expiry = %+v, %v; want the order expired, ErrExpired", order, err)
	}
	if got := sellable(t, db, "x"); got != 8 {
		t.Fatalf("sellable %d after the lapsed hold was released, want 8 (the paid order keeps 2)", got)
	}
}

func TestTwoSweepersReleaseEachHoldOnce(t *testing.T) {
	first, db := newTestStore(t, Options{DisableMerging: true})
	ctx := t.Context()
	// A second daemon: its own pool and Store on the same database.
	second := New(secondPool(t, first), Options{})
	const orders = 250
	first.SetStock(ctx, "sw", 10000, 4)
	var wg sync.WaitGroup
	for i := range orders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := first.Deduct(ctx, DeductRequest{OrderNo: fmt.Sprintf("sw-%d", i), Items: []Item{{SKU: "sw", Qty: 2}}, HoldTTL: time.Microsecond}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if got := sellable(t, db, "sw"); got != 10000-2*orders {
		t.Fatalf("sellable = %d, want %d", got, 10000-2*orders)
	}
	released := make([]int, 4)
	for i := range released {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := first
			if i%2 == 1 {
				s = second
			}
			n, err := s.SweepExpired(ctx)
			if err != nil {
				t.Error(err)
			}
			released[i] = n
		}()
	}
	wg.Wait()
	total := 0
	for _, n := range released {
		total += n
	}
	if total != orders {
		t.Fatalf("sweepers released %v = %d holds, want %d", released, total, orders)
	}
	if got := sellable(t, db, "sw"); got != 10000 {
		t.Fatalf("sellable = %d after the sweeps, want 10000", got)
	}
	if n := queryInt(t, db, "SELECT COUNT(*) FROM rollback_log"); n != orders {
		t.Fatalf("%d rollback rows, want %d", n, orders)
	}
}

func TestRunSweeperStopsWithContext(t *testing.T) {
	store, db := newTestStore(t, Options{SweepInterval: 10 * time.Millisecond})
	ctx := t.Context()
	store.SetStock(ctx, "r", 5, 1)
	if _, err := store.Deduct(ctx, DeductRequest{OrderNo: "r1", Items: []Item{{SKU: "r", Qty: 5}}, HoldTTL: time.Microsecond}); err != nil {
		t.Fatal(err)
	}
	sweepCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- store.RunSweeper(sweepCtx) }()
	deadline := time.Now().Add(10 * time.Second)
	for sellable(t, db, "r") != 5 {
		if time.Now().After(deadline) {
			t.Fatal("the running sweeper did not release the expired hold within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("RunSweeper = %v, want nil after its context ends", err)
	}
}

// A cancel whose deduction is in flight, its hold row written but not committed, waits
// for it and cancels the order: it neither answers ErrNotFound nor records a second order.
func TestCancelWaitsForADeductionInFlight(t *testing.T) {
	store, db := newTestStore(t, Options{})
	ctx := t.Context()
	// The deduction's first statement, in a transaction that has not committed yet.
	deduction, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer deduction.Rollback()
	if _, err := deduction.ExecContext(ctx, "INSERT INTO hold (order_no, status, expires_at) VALUES ('racing', ?, ?)",
		StatusHeld, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	type result struct {
		order Order
		err   error
	}
	cancelled := make(chan result, 1)
	go func() {
		order, err := store.Cancel(ctx, "racing")
		cancelled <- result{order, err}
	}()
	awaitStatement(t, db, "FROM hold WHERE order_no") // the cancel's look, waiting for the row
	if err := deduction.Commit(); err != nil {
		t.Fatal(err)
	}
	got := <-cancelled
	if got.err != nil || got.order.Status != StatusCancelled || got.order.Replayed {
		t.Fatalf("Cancel = %+v, %v; want the order its deduction wrote, cancelled", got.order, got.err)
	}
}

// awaitStatement returns once another session on db's database runs a statement holding
// fragment: one that waits for a row lock, as it would be done at once otherwise. (MariaDB
// does not always list a transaction waiting while it plans a statement in INNODB_TRX.)
func awaitStatement(t *testing.T, db *sql.DB, fragment string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for queryInt(t, db, `SELECT COUNT(*) FROM information_schema.PROCESSLIST
		WHERE db = DATABASE() AND id <> CONNECTION_ID() AND INSTR(info, ?) > 0`, fragment) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no statement holding %q ran within 10s", fragment)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestCancelOfAnOrderNeverDeducted(t *testing.T) {
	store, db := newTestStore(t, Options{})
	ctx := t.Context()
	store.SetStock(ctx, "g", 10, 1)
	if _, err := store.Cancel(ctx, "ghost"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Cancel = %v, want ErrNotFound", err)
	}
	// Its deduction arriving after the cancel must not hold stock forever.
	if _, err := store.Deduct(ctx, DeductRequest{OrderNo: "ghost", Items: []Item{{SKU: "g", Qty: 1}}}); !errors.Is(err, ErrCancelled) {
		t.Fatalf("deduction after the cancel = %v, want ErrCancelled", err)
	}
	if got := sellable(t, db, "g"); got != 10 {
		t.Fatalf("sellable = %d, want 10", got)
	}
	// From then on the order exists, cancelled with no items.
	order, err := store.Cancel(ctx, "ghost")
	if err != nil || !order.Replayed || order.Status != StatusCancelled || len(order.Items) != 0 {
		t.Fatalf("repeated Cancel = %+v, %v; want the cancelled order with no items, replayed", order, err)
	}
	if order, err := store.GetOrder(ctx, "ghost"); err != nil || order.Status != StatusCancelled {
		t.Fatalf("GetOrder = %+v, %v; want the cancelled order", order, err)
	}
}

// A cancel is carried out whatever its caller does: one whose caller hangs up before it
// ends still records the order, so that its deduction, arriving later, holds no stock.
func TestCancelIsRecordedWhenTheCallerHangsUp(t *testing.T) {
	for _, tt := range []struct {
		name   string
		caller func(ctx context.Context) (context.Context, context.CancelFunc)
	}{
		{"caller gone before the cancel starts", func(ctx context.Context) (context.Context, context.CancelFunc) {
			ctx, hangUp := context.WithCancel(ctx)
			hangUp()
			return ctx, hangUp
		}},
		{"caller times out during the cancel", func(ctx context.Context) (context.Context, context.CancelFunc) {
			return context.WithTimeout(ctx, 20*time.Millisecond)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			store, db := newTestStore(t, Options{})
			ctx := t.Context()
			if _, err := store.SetStock(ctx, "h", 10, 1); err != nil {
				t.Fatal(err)
			}
			callerCtx, hangUp := tt.caller(ctx)
			defer hangUp()
			store.Cancel(callerCtx, "hung-up") // what it answers the gone caller does not matter
			if _, err := store.Deduct(ctx, DeductRequest{OrderNo: "hung-up", Items: []Item{{SKU: "h", Qty: 4}}}); !errors.Is(err, ErrCancelled) {
				t.Fatalf("deduction after a cancel whose caller hung up = %v, want ErrCancelled", err)
			}
			if got := sellable(t, db, "h"); got != 10 {
				t.Fatalf("sellable = %d, want 10: the late deduction holds stock", got)
			}
		})
	}
}

func TestShipChecksWarehouseAndPhysicalStock(t *testing.T) {
	store, stock := lifecycleStore(t)
	ctx := t.Context()
	if _, err := store.Confirm(ctx, "o1"); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Ship(ctx, "o1", "NOPE"); !errors.Is(err, ErrUnknownWarehouse) {
		t.Fatalf("ship from an unknown warehouse = %v, want ErrUnknownWarehouse", err)
	}
	if _, err := store.SyncPhysicalSKU(ctx, "s1", []PhysicalLevel{{Warehouse: "W1", Qty: 2}}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Ship(ctx, "o1", "W1"); !errors.As(err, new(*ShortageError)) {
		t.Fatalf("shipping 3 from 2 physical = %v, want a shortage", err)
	}
	if sell, reserved, physical := stock(); sell != 97 || reserved != 3 || physical != 2 {
		t.Fatalf("a refused shipment changed stock: %d %d %d", sell, reserved, physical)
	}
}

// TestShipAndSyncFollowTheirCommitOrder pins what docs/api.md (Shipments and syncs) says:
// a ship lowers physical stock, a sync sets it, and what commits last stands, whether or
// not the sync's count already had the shipment out.
func TestShipAndSyncFollowTheirCommitOrder(t *testing.T) {
	store, counts := lifecycleStore(t) // W1 holds 50 of s1; o1 holds 3
	ctx := t.Context()
	if _, err := store.Deduct(ctx, DeductRequest{OrderNo: "o2", Items: []Item{{SKU: "s1", Qty: 2}}}); err != nil {
		t.Fatal(err)
	}
	physical := func() int64 { _, _, p := counts(); return p }
	steps := []struct {
		what string
		do   func() error
		want int64
	}{
		{"confirm o1 and o2", func() error {
			_, err := store.Confirm(ctx, "o1")
			if err == nil {
				_, err = store.Confirm(ctx, "o2")
			}
			return err
		}, 50},
		{"ship o1", func() error { _, err := store.Ship(ctx, "o1", "W1"); return err }, 47},
		{"a sync counted before o1 left: o1 comes back", func() error {
			_, err := store.SyncPhysical(ctx, []PhysicalLevel{{SKU: "s1", Warehouse: "W1", Qty: 50}})
			return err
		}, 50},
		{"a sync counted after o2 left", func() error {
			_, err := store.SyncPhysical(ctx, []PhysicalLevel{{SKU: "s1", Warehouse: "W1", Qty: 45}})
			return err
		}, 45},
		{"ship o2 after it: taken off twice", func() error { _, err := store.Ship(ctx, "o2", "W1"); return err }, 43},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.what, err)
		}
		if got := physical(); got != st.want {
			t.Fatalf("%s: physical %d, want %d", st.what, got, st.want)
		}
	}
}

func TestPhysicalSync(t *testing.T) {
	store, db := newTestStore(t, Options{})
	ctx := t.Context()
	for _, w := range []string{"A", "B"} {
		if _, err := store.PutWarehouse(ctx, Warehouse{Code: w, Name: "warehouse " + w, Type: "regional"}); err != nil {
			t.Fatal(err)
		}
	}
	level := func(sku, w string) int64 {
		return queryInt(t, db, "SELECT qty FROM physical_stock WHERE sku_id = ? AND warehouse_code = ?", sku, w)
	}
	if _, err := store.SyncPhysical(ctx, []PhysicalLevel{{"p", "A", 5}, {"q", "A", 7}, {"p", "B", 1}}); err != nil {
		t.Fatal(err)
	}
	// A full sync of A that no longer names q: q is 0 in A; B is untouched.
	if _, err := store.SyncPhysical(ctx, []PhysicalLevel{{"p", "A", 6}}); err != nil {
		t.Fatal(err)
	}
	if level("p", "A") != 6 || level("q", "A") != 0 || level("p", "B") != 1 {
		t.Fatalf("after full sync of A: p@A=%d q@A=%d p@B=%d; want 6 0 1", level("p", "A"), level("q", "A"), level("p", "B"))
	}
	// A single-SKU sync of p naming only B: p is 0 in A.
	if _, err := store.SyncPhysicalSKU(ctx, "p", []PhysicalLevel{{Warehouse: "B", Qty: 9}}); err != nil {
		t.Fatal(err)
	}
	if level("p", "A") != 0 || level("p", "B") != 9 {
		t.Fatalf("after single-SKU sync: p@A=%d p@B=%d; want 0 9", level("p", "A"), level("p", "B"))
	}
	if _, err := store.SyncPhysical(ctx, []PhysicalLevel{{"p", "A", 1}, {"p", "Z", 1}}); !errors.Is(err, ErrUnknownWarehouse) {
		t.Fatalf("sync naming an unknown warehouse = %v, want ErrUnknownWarehouse", err)
	}
	if level("p", "A") != 0 {
		t.Fatal("a refused sync wrote")
	}
}

func TestAdjust(t *testing.T) {
	store, db := newTestStore(t, Options{})
	ctx := t.Context()
	store.SetStock(ctx, "adj", 10, 4)
	if _, err := store.Adjust(ctx, AdjustRequest{SKU: "adj", Delta: 5, Reason: "found a box"}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Adjust(ctx, AdjustRequest{SKU: "adj", Delta: -12, Reason: "damaged"}); err != nil {
		t.Fatal(err)
	}
	if got := sellable(t, db, "adj"); got != 3 {
		t.Fatalf("sellable = %d, want 3", got)
	}
	if _, err := store.Adjust(ctx, AdjustRequest{SKU: "adj", Delta: -4, Reason: "too many"}); !errors.As(err, new(*ShortageError)) {
		t.Fatalf("removing 4 of 3 = %v, want a shortage", err)
	}
	if _, err := store.Adjust(ctx, AdjustRequest{SKU: "missing", Delta: 1, Reason: "x"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("adjusting an unknown SKU = %v, want ErrNotFound", err)
	}
	if n := queryInt(t, db, "SELECT COUNT(*) FROM adjustment_log"); n != 2 {
		t.Fatalf("%d adjustment rows, want 2", n)
	}
}

// shardQty reads sku's shard quantities in shard order.
func shardQty(t *testing.T, db *sql.DB, sku string) []int64 {
	t.Helper()
	rows, err := db.Query("SELECT qty FROM sellable_shard WHERE sku_id = ? ORDER BY shard", sku)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var q int64
		if err := rows.Scan(&q); err != nil {
			t.Fatal(err)
		}
		out = append(out, q)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// releases are the ways an order's stock comes back: a cancel (of a hold or of a paid
// order), the sweeper, and a payment arriving after the expiry.
var releases = []struct {
	name    string
	holdTTL time.Duration
	release func(ctx context.Context, s *Store, orderNo string) error
}{
	{"cancel", 0, func(ctx context.Context, s *Store, orderNo string) error {
		_, err := s.Cancel(ctx, orderNo)
		return err
	}},
	{"cancel after confirm", 0, func(ctx context.Context, s *Store, orderNo string) error {
		if _, err := s.Confirm(ctx, orderNo); err != nil {
			return err
		}
		_, err := s.Cancel(ctx, orderNo)
		return err
	}},
	{"sweeper", time.Microsecond, func(ctx context.Context, s *Store, orderNo string) error {
		if n, err := s.SweepExpired(ctx); err != nil || n != 1 {
			return fmt.Errorf("SweepExpired = %d, %v; want 1 released", n, err)
		}
		return nil
	}},
	{"confirm after expiry", time.Microsecond, func(ctx context.Context, s *Store, orderNo string) error {
		if _, err := s.Confirm(ctx, orderNo); !errors.Is(err, ErrExpired) {
			return fmt.Errorf("Confirm = %v, want ErrExpired", err)
		}
		return nil
	}},
}

func TestReleaseRestoresEveryShardTaken(t *testing.T) {
	for _, rel := range releases {
		t.Run(rel.name, func(t *testing.T) {
			t.Parallel()
			store, db := newTestStore(t, Options{})
			ctx := t.Context()
			if _, err := store.SetStock(ctx, "split", 40, 4); err != nil {
				t.Fatal(err)
			}
			// Uneven shards, so that restoring onto the wrong ones shows.
			if _, err := store.Deduct(ctx, DeductRequest{OrderNo: "small", Items: []Item{{SKU: "split", Qty: 3}}}); err != nil {
				t.Fatal(err)
			}
			before := shardQty(t, db, "split")
			order, err := store.Deduct(ctx, DeductRequest{OrderNo: "big", Items: []Item{{SKU: "split", Qty: 25}}, HoldTTL: rel.holdTTL})
			if err != nil {
				t.Fatal(err)
			}
			if takes := order.Items[0].Shards; len(takes) < 3 {
				t.Fatalf("25 of %v taken from shards %v, want at least 3", before, takes)
			}
			if err := rel.release(ctx, store, "big"); err != nil {
				t.Fatal(err)
			}
			if after := shardQty(t, db, "split"); !slices.Equal(after, before) {
				t.Fatalf("shards %v after taking %v and giving it back, want %v as before", after, order.Items[0].Shards, before)
			}
		})
	}
}

func TestReleaseAfterReshardDownKeepsTotal(t *testing.T) {
	for _, rel := range releases {
		t.Run(rel.name, func(t *testing.T) {
			t.Parallel()
			store, db := newTestStore(t, Options{})
			ctx := t.Context()
			if _, err := store.SetStock(ctx, "rd", 40, 4); err != nil {
				t.Fatal(err)
			}
			order, err := store.Deduct(ctx, DeductRequest{OrderNo: "big", Items: []Item{{SKU: "rd", Qty: 25}}, HoldTTL: rel.holdTTL})
			if err != nil {
				t.Fatal(err)
			}
			takes := order.Items[0].Shards
			if !slices.ContainsFunc(takes, func(t ShardTake) bool { return t.Shard >= 2 }) {
				t.Fatalf("25 of 4×10 taken from shards %v, want some from shard 2 or 3", takes)
			}
			if _, err := store.Reshard(ctx, "rd", 2); err != nil {
				t.Fatal(err)
			}
			// Each take goes back to its shard; those of the removed shards 2 and 3 to shard 0.
			want := shardQty(t, db, "rd")
			for _, take := range takes {
				if take.Shard < len(want) {
					want[take.Shard] += take.Qty
				} else {
					want[0] += take.Qty
				}
			}
			if err := rel.release(ctx, store, "big"); err != nil {
				t.Fatal(err)
			}
			if got := shardQty(t, db, "rd"); !slices.Equal(got, want) {
				t.Fatalf("shards %v after giving back %v on 2 shards, want %v", got, takes, want)
			}
			if got := sellable(t, db, "rd"); got != 40 {
				t.Fatalf("sellable = %d after giving back the order, want 40", got)
			}
		})
	}
}

func TestSplitsQty(t *testing.T) {
	tests := []struct {
		takes []ShardTake
		qty   int64
		want  bool
	}{
		{[]ShardTake{{0, 5}}, 5, true},
		{[]ShardTake{{3, 2}, {1, 3}}, 5, true},
		{nil, 5, false},                          // a log row without takes
		{[]ShardTake{{0, 4}}, 5, false},          // short
		{[]ShardTake{{0, 4}, {1, 2}}, 5, false},  // more than qty
		{[]ShardTake{{0, 6}, {1, -1}}, 5, false}, // a negative take
		{[]ShardTake{{0, 0}, {1, 5}}, 5, false},  // an empty take
		{[]ShardTake{{-1, 5}}, 5, false},         // no such shard
		{[]ShardTake{{0, math.MaxInt64}, {1, math.MaxInt64}}, 5, false},
	}
	for _, tt := range tests {
		if got := splitsQty(tt.takes, tt.qty); got != tt.want {
			t.Errorf("splitsQty(%v, %d) = %v, want %v", tt.takes, tt.qty, got, tt.want)
		}
	}
}

func TestAdjustKeepsStockUnderTheMaximum(t *testing.T) {
	store, db := newTestStore(t, Options{})
	ctx := t.Context()
	if _, err := store.SetStock(ctx, "top", maxQty-5, 3); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Adjust(ctx, AdjustRequest{SKU: "top", Delta: 5, Reason: "to the top"}); err != nil {
		t.Fatalf("adjusting up to exactly %d: %v", int64(maxQty), err)
	}
	if _, err := store.Adjust(ctx, AdjustRequest{SKU: "top", Delta: 1, Reason: "one more"}); !errors.As(err, new(*ValidationError)) {
		t.Fatalf("adjusting over %d = %v, want a *ValidationError", int64(maxQty), err)
	}
	if _, err := store.SetStock(ctx, "top", maxQty+1, 0); !errors.As(err, new(*ValidationError)) {
		t.Fatalf("setting %d = %v, want a *ValidationError", int64(maxQty+1), err)
	}
	if got := sellable(t, db, "top"); got != maxQty {
		t.Fatalf("sellable = %d, want %d", got, int64(maxQty))
	}
	stock, err := store.Get(ctx, "top")
	if err != nil || stock.Sellable != maxQty {
		t.Fatalf("Get = %+v, %v; want sellable %d", stock, err, int64(maxQty))
	}
}

// retentionSQL is the purge of old orders that docs/operations.md (Orders and logs:
// retention) gives DBAs: its first sql block.
func retentionSQL(t *testing.T) string {
	t.Helper()
	doc, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "\n## Orders and logs: retention\n")
	_, block, ok2 := strings.Cut(section, "```sql\n")
	block, _, ok3 := strings.Cut(block, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("docs/operations.md has no sql block under ## Orders and logs: retention")
	}
	return block
}

// TestPurgeOfOldOrdersKeepsTheLiveOnes runs the documented purge: it deletes the old
// shipped, cancelled and expired orders with their log and rollback rows, reading hold
// by hold_status_created, and leaves held, confirmed and recent orders whole. A deduction
// repeated with a purged order number deducts again, as the document warns; a cancel of
// one answers not found.
func TestPurgeOfOldOrdersKeepsTheLiveOnes(t *testing.T) {
	store, _ := lifecycleStore(t) // o1 holds 3 of s1
	db := store.db
	ctx := t.Context()
	deduct := func(no string) {
		t.Helper()
		if _, err := store.Deduct(ctx, DeductRequest{OrderNo: no, Items: []Item{{SKU: "s1", Qty: 1}}, HoldTTL: time.Hour}); err != nil {
			t.Fatalf("deducting %s: %v", no, err)
		}
	}
	for _, no := range []string{"shipped", "cancelled", "confirmed", "recent"} {
		deduct(no)
	}
	for _, no := range []string{"shipped", "confirmed", "recent"} {
		if _, err := store.Confirm(ctx, no); err != nil {
			t.Fatal(err)
		}
	}
	for _, no := range []string{"shipped", "recent"} {
		if _, err := store.Ship(ctx, no, "W1"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := store.Cancel(ctx, "cancelled"); err != nil {
		t.Fatal(err)
	}
	testutil.Exec(t, db, "UPDATE hold SET created_at = created_at - INTERVAL 100 DAY, updated_at = updated_at - INTERVAL 100 DAY WHERE order_no <> 'recent'",
		// Recent orders, so that the old ones are a range worth an index.
		"INSERT INTO hold (order_no, status, expires_at) SELECT CONCAT('bulk-', seq), ELT(1 + seq % 3, 'shipped', 'cancelled', 'expired'), UTC_TIMESTAMP(6) FROM seq_1_to_3000",
		"ANALYZE TABLE hold")

	conn, err := db.Conn(ctx) // the statements share a session (@before)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	statements := strings.Split(strings.TrimSpace(retentionSQL(t)), ";")
	for _, stmt := range statements[:len(statements)-2] {
		if _, err := conn.ExecContext(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	purge := statements[len(statements)-2]
	var plan []string
	rows, err := conn.QueryContext(ctx, "EXPLAIN "+purge)
	if err != nil {
		t.Fatal(err)
	}
	cols, _ := rows.Columns()
	holdKey := ""
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, fmt.Sprint(vals))
		if i := slices.Index(cols, "table"); vals[i].String == "h" {
			holdKey = vals[slices.Index(cols, "key")].String
		}
	}
	rows.Close()
	if holdKey != "hold_status_created" {
		t.Errorf("the purge reads hold by %q, want hold_status_created: %v", holdKey, plan)
	}
	if _, err := conn.ExecContext(ctx, purge); err != nil {
		t.Fatalf("%s: %v", purge, err)
	}

	for no, want := range map[string]int64{"shipped": 0, "cancelled": 0, "o1": 1, "confirmed": 1, "recent": 1} {
		holds := queryInt(t, db, "SELECT COUNT(*) FROM hold WHERE order_no = ?", no)
		logs := queryInt(t, db, "SELECT COUNT(*) FROM deduction_log WHERE order_no = ?", no)
		rollbacks := queryInt(t, db, "SELECT COUNT(*) FROM rollback_log WHERE order_no = ?", no)
		if holds != want || logs != want || rollbacks != 0 {
			t.Errorf("order %s after the purge: %d hold, %d log, %d rollback rows; want %d, %d, 0", no, holds, logs, rollbacks, want, want)
		}
	}
	before := sellable(t, db, "s1")
	again, err := store.Deduct(ctx, DeductRequest{OrderNo: "shipped", Items: []Item{{SKU: "s1", Qty: 1}}})
	if err != nil || again.Replayed || sellable(t, db, "s1") != before-1 {
		t.Errorf("repeating the purged order's deduction: %+v, %v, sellable %d → %d; want it deducted again", again, err, before, sellable(t, db, "s1"))
	}
	if _, err := store.Cancel(ctx, "cancelled"); !errors.Is(err, ErrNotFound) {
		t.Errorf("cancelling the purged cancelled order: %v; want ErrNotFound", err)
	}
}
