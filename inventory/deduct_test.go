package inventory

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// mergeModes runs a test with and without the merging of concurrent deductions.
var mergeModes = []struct {
	name string
	opts Options
}{
	{"merge=off", Options{DisableMerging: true}},
	{"merge=on", Options{}},
}

func TestConcurrentDeductionsNeverOversell(t *testing.T) {
	const (
		initial  = 3000
		callers  = 64
		attempts = 40 // 64 × 40 × 4 on average requested: far more than initial
	)
	for _, shards := range []int{1, 8} {
		for _, mode := range mergeModes {
			t.Run(fmt.Sprintf("M=%d/%s", shards, mode.name), func(t *testing.T) {
				t.Parallel()
				store, db := newTestStore(t, mode.opts)
				ctx := t.Context()
				if _, err := store.SetStock(ctx, "hot", initial, shards); err != nil {
					t.Fatal(err)
				}
				var grantedQty, grantedItems, shortages atomic.Int64
				var wg sync.WaitGroup
				errs := make(chan error, callers)
				for c := range callers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := range attempts {
							qty := int64(1 + rand.IntN(7))
							order, err := store.Deduct(ctx, DeductRequest{OrderNo: fmt.Sprintf("o-%d-%d", c, i), Items: []Item{{SKU: "hot", Qty: qty}}})
							var short *ShortageError
							switch {
							case errors.As(err, &short):
								shortages.Add(1)
							case err != nil:
								errs <- err
								return
							default:
								if len(order.Items) != 1 || order.Items[0].Qty != qty || order.Replayed {
									errs <- fmt.Errorf("order %s answered %+v for qty %d", order.OrderNo, order, qty)
									return
								}
								grantedQty.Add(qty)
								grantedItems.Add(1)
							}
						}
					}()
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					t.Fatalf("deducting: %v", err)
				}
				if n := queryInt(t, db, "SELECT COUNT(*) FROM sellable_shard WHERE sku_id = 'hot' AND qty < 0"); n != 0 {
					t.Fatalf("%d shards negative", n)
				}
				final := sellable(t, db, "hot")
				if initial-final != grantedQty.Load() {
					t.Fatalf("initial %d − final %d = %d, but %d units were granted", initial, final, initial-final, grantedQty.Load())
				}
				if n := queryInt(t, db, "SELECT COUNT(*) FROM deduction_log WHERE sku_id = 'hot'"); n != grantedItems.Load() {
					t.Fatalf("%d log rows for %d granted items", n, grantedItems.Load())
				}
				if n := queryInt(t, db, "SELECT SUM(qty) FROM deduction_log WHERE sku_id = 'hot'"); n != grantedQty.Load() {
					t.Fatalf("log rows sum to %d, granted %d", n, grantedQty.Load())
				}
				if n := queryInt(t, db, "SELECT COUNT(*) FROM hold"); n != grantedItems.Load() {
					t.Fatalf("%d holds for %d granted orders (a refused order must leave none)", n, grantedItems.Load())
				}
				if batches, orders := store.MergeStats(); !mode.opts.DisableMerging && batches == 0 {
					t.Fatalf("merging on, but no merged batch committed")
				} else {
					t.Logf("%d orders granted, %d of them in %d merged batches", grantedItems.Load(), orders, batches)
				}
				if shortages.Load() == 0 || final > 6 {
					t.Fatalf("stock should run out: %d shortages, %d left", shortages.Load(), final)
				}
			})
		}
	}
}

func TestDuplicateOrderDeductsOnce(t *testing.T) {
	for _, mode := range mergeModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			store, db := newTestStore(t, mode.opts)
			ctx := t.Context()
			if _, err := store.SetStock(ctx, "dup", 100, 4); err != nil {
				t.Fatal(err)
			}
			const senders = 20
			results, errs := atOnce(senders, func(int) (Order, error) {
				return store.Deduct(ctx, DeductRequest{OrderNo: "same", Items: []Item{{SKU: "dup", Qty: 3}}})
			})
			fresh := 0
			for i := range senders {
				if errs[i] != nil {
					t.Fatalf("sender %d: %v", i, errs[i])
				}
				if !results[i].Replayed {
					fresh++
				}
				if len(results[i].Items) != 1 || results[i].Items[0].Qty != 3 || results[i].Status != StatusHeld {
					t.Fatalf("sender %d got %+v", i, results[i])
				}
				if !slices.Equal(results[i].Items[0].Shards, results[0].Items[0].Shards) {
					t.Fatalf("sender %d got shards %v, sender 0 %v: not the first result", i, results[i].Items[0].Shards, results[0].Items[0].Shards)
				}
			}
			if fresh != 1 {
				t.Fatalf("%d senders deducted, want exactly 1 (the others replay)", fresh)
			}
			if got := sellable(t, db, "dup"); got != 97 {
				t.Fatalf("sellable = %d, want 97", got)
			}
			if n := queryInt(t, db, "SELECT COUNT(*) FROM deduction_log WHERE order_no = 'same'"); n != 1 {
				t.Fatalf("%d log rows, want 1", n)
			}
		})
	}
}

func TestDeductionIsAllOrNothing(t *testing.T) {
	store, db := newTestStore(t, Options{})
	ctx := t.Context()
	for sku, qty := range map[string]int64{"a": 10, "b": 2, "c": 1} {
		if _, err := store.SetStock(ctx, sku, qty, 2); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name      string
		items     []Item
		wantShort []string
		wantErr   error
	}{
		{"one item short", []Item{{SKU: "a", Qty: 5}, {SKU: "b", Qty: 3}}, []string{"b"}, nil},
		{"every short item listed", []Item{{SKU: "c", Qty: 2}, {SKU: "a", Qty: 5}, {SKU: "b", Qty: 3}}, []string{"b", "c"}, nil},
		{"unknown sku", []Item{{SKU: "a", Qty: 1}, {SKU: "nope", Qty: 1}}, nil, ErrUnknownSKU},
		{"unknown activity", []Item{{SKU: "a", Qty: 1}, {SKU: "b", Qty: 1, Activity: "sale"}}, nil, ErrUnknownActivity},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := store.Deduct(ctx, DeductRequest{OrderNo: fmt.Sprintf("aon-%d", i), Items: tt.items})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Deduct = %v, want %v", err, tt.wantErr)
				}
			} else {
				var short *ShortageError
				if !errors.As(err, &short) {
					t.Fatalf("Deduct = %v, want a *ShortageError", err)
				}
				got := short.SKUs()
				slices.Sort(got)
				if !slices.Equal(got, tt.wantShort) {
					t.Fatalf("short SKUs = %v, want %v", got, tt.wantShort)
				}
			}
			if a, b, c := sellable(t, db, "a"), sellable(t, db, "b"), sellable(t, db, "c"); a != 10 || b != 2 || c != 1 {
				t.Fatalf("stock changed by a refused order: a=%d b=%d c=%d", a, b, c)
			}
			if n := queryInt(t, db, "SELECT COUNT(*) FROM deduction_log") + queryInt(t, db, "SELECT COUNT(*) FROM hold"); n != 0 {
				t.Fatalf("a refused order left %d log/hold rows", n)
			}
		})
	}
}

func TestItemLargerThanAnyShardTakesFromSeveral(t *testing.T) {
	store, db := newTestStore(t, Options{})
	ctx := t.Context()
	if _, err := store.SetStock(ctx, "big", 40, 4); err != nil {
		t.Fatal(err)
	}
	order, err := store.Deduct(ctx, DeductRequest{OrderNo: "big-1", Items: []Item{{SKU: "big", Qty: 25}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(order.Items[0].Shards) < 3 {
		t.Fatalf("25 of 4×10 taken from shards %v, want at least 3", order.Items[0].Shards)
	}
	var sum int64
	for _, take := range order.Items[0].Shards {
		sum += take.Qty
	}
	if sum != 25 || sellable(t, db, "big") != 15 {
		t.Fatalf("took %d from shards, %d left; want 25 and 15", sum, sellable(t, db, "big"))
	}
	if _, err := store.Deduct(ctx, DeductRequest{OrderNo: "big-2", Items: []Item{{SKU: "big", Qty: 16}}}); err == nil {
		t.Fatal("deducting 16 of 15 succeeded")
	}
	if _, err := store.Cancel(ctx, "big-1"); err != nil {
		t.Fatal(err)
	}
	if got := sellable(t, db, "big"); got != 40 {
		t.Fatalf("after cancel sellable = %d, want 40", got)
	}
}

func TestActivityStock(t *testing.T) {
	store, db := newTestStore(t, Options{})
	ctx := t.Context()
	if _, err := store.SetStock(ctx, "phone", 100, 1); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	for _, a := range []Activity{
		{SKU: "phone", Activity: "flash", Qty: 5, StartsAt: now.Add(-time.Hour), EndsAt: now.Add(time.Hour)},
		{SKU: "phone", Activity: "later", Qty: 5, StartsAt: now.Add(time.Hour), EndsAt: now.Add(2 * time.Hour)},
	} {
		if _, err := store.PutActivity(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := store.Deduct(ctx, DeductRequest{OrderNo: "f1", Items: []Item{{SKU: "phone", Qty: 4, Activity: "flash"}, {SKU: "phone", Qty: 1}}}); err != nil {
		t.Fatal(err)
	}
	if got := queryInt(t, db, "SELECT qty FROM activity_stock WHERE activity_id = 'flash'"); got != 1 {
		t.Fatalf("flash stock = %d, want 1", got)
	}
	if got := sellable(t, db, "phone"); got != 99 {
		t.Fatalf("sellable = %d, want 99 (activity items leave sellable alone)", got)
	}
	if _, err := store.Deduct(ctx, DeductRequest{OrderNo: "f2", Items: []Item{{SKU: "phone", Qty: 2, Activity: "flash"}}}); !errors.As(err, new(*ShortageError)) {
		t.Fatalf("deducting 2 of 1 activity stock = %v, want a shortage", err)
	}
	if _, err := store.Deduct(ctx, DeductRequest{OrderNo: "f3", Items: []Item{{SKU: "phone", Qty: 1, Activity: "later"}}}); !errors.Is(err, ErrActivityInactive) {
		t.Fatalf("deducting from an activity not started = %v, want ErrActivityInactive", err)
	}
	if _, err := store.Cancel(ctx, "f1"); err != nil {
		t.Fatal(err)
	}
	if got := queryInt(t, db, "SELECT qty FROM activity_stock WHERE activity_id = 'flash'"); got != 5 {
		t.Fatalf("flash stock after cancel = %d, want 5", got)
	}
	stock, err := store.Get(ctx, "phone")
	if err != nil {
		t.Fatal(err)
	}
	if stock.Sellable != 100 || len(stock.Activities) != 2 {
		t.Fatalf("Get = %+v", stock)
	}
}

// Activity stock is the campaign's own (docs/api.md): a PUT leaves sellable stock alone
// and states what is left now, orders keep what they hold, and a cancel after the
// campaign gives the units back to the activity, not to sellable stock.
func TestActivityStockIsItsOwn(t *testing.T) {
	store, db := newTestStore(t, Options{})
	start := time.Date(2030, 11, 11, 0, 0, 0, 0, time.UTC)
	clock := useFakeClock(store, start)
	ctx := t.Context()
	if _, err := store.SetStock(ctx, "tv", 100, 1); err != nil {
		t.Fatal(err)
	}
	campaign := Activity{SKU: "tv", Activity: "1111", Qty: 50, StartsAt: start, EndsAt: start.Add(24 * time.Hour)}
	if _, err := store.PutActivity(ctx, campaign); err != nil {
		t.Fatal(err)
	}
	activityQty := func() int64 {
		return queryInt(t, db, "SELECT qty FROM activity_stock WHERE sku_id = 'tv' AND activity_id = '1111'")
	}
	if got := sellable(t, db, "tv"); got != 100 {
		t.Fatalf("sellable = %d after the PUT, want 100: activity stock is not carved out of it", got)
	}
	if _, err := store.Deduct(ctx, DeductRequest{OrderNo: "a-1", Items: []Item{{SKU: "tv", Qty: 10, Activity: "1111"}}, HoldTTL: 48 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	campaign.Qty = 100 // restated while a-1 holds 10
	if _, err := store.PutActivity(ctx, campaign); err != nil {
		t.Fatal(err)
	}
	clock.advance(25 * time.Hour) // the campaign is over
	if _, err := store.Cancel(ctx, "a-1"); err != nil {
		t.Fatal(err)
	}
	if got, sell := activityQty(), sellable(t, db, "tv"); got != 110 || sell != 100 {
		t.Fatalf("after the campaign, cancelling 10 set to 100: activity %d, sellable %d; want 110 and 100", got, sell)
	}
	if _, err := store.Deduct(ctx, DeductRequest{OrderNo: "a-2", Items: []Item{{SKU: "tv", Qty: 1, Activity: "1111"}}}); !errors.Is(err, ErrActivityInactive) {
		t.Fatalf("deducting from the ended campaign = %v, want ErrActivityInactive", err)
	}
}

func TestReshardDuringLoadKeepsTotal(t *testing.T) {
	store, db := newTestStore(t, Options{})
	ctx := t.Context()
	const initial = 100000
	if _, err := store.SetStock(ctx, "rs", initial, 1); err != nil {
		t.Fatal(err)
	}
	var granted atomic.Int64
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for c := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; loadCtx.Err() == nil; i++ {
				qty := int64(1 + rand.IntN(3))
				_, err := store.Deduct(ctx, DeductRequest{OrderNo: fmt.Sprintf("rs-%d-%d", c, i), Items: []Item{{SKU: "rs", Qty: qty}}})
				if err != nil {
					errs <- err
					return
				}
				granted.Add(qty)
			}
		}()
	}
	sequence := []int{8, 3, 16, 1, 32, 5}
	for _, m := range sequence {
		// Let deductions land on the current layout before changing it.
		for before := granted.Load(); granted.Load() < before+200; {
			select {
			case err := <-errs:
				t.Fatal(err)
			case <-time.After(time.Millisecond):
			}
		}
		if _, err := store.Reshard(ctx, "rs", m); err != nil {
			t.Fatalf("resharding to %d: %v", m, err)
		}
	}
	stopLoad()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := sellable(t, db, "rs"); got != initial-granted.Load() {
		t.Fatalf("sellable = %d, want %d − %d = %d", got, initial, granted.Load(), initial-granted.Load())
	}
	last := sequence[len(sequence)-1]
	if n := queryInt(t, db, "SELECT COUNT(*) FROM sellable_shard WHERE sku_id = 'rs'"); n != int64(last) {
		t.Fatalf("%d shard rows, want %d", n, last)
	}
	if n := queryInt(t, db, "SELECT shards FROM sku WHERE sku_id = 'rs'"); n != int64(last) {
		t.Fatalf("sku.shards = %d, want %d", n, last)
	}
}

func TestShardHintOfARemovedShardCorrectsItself(t *testing.T) {
	first, db := newTestStore(t, Options{DisableMerging: true})
	ctx := t.Context()
	// A second daemon on the same database reshards; first's hint does not hear of it.
	second := New(secondPool(t, first), Options{})
	if _, err := first.SetStock(ctx, "h", 1000, 8); err != nil {
		t.Fatal(err)
	}
	if _, err := second.Reshard(ctx, "h", 1); err != nil {
		t.Fatal(err)
	}
	first.shardHints.set("h", 8)
	var taken int64
	for i := 0; ; i++ {
		if m, ok := first.shardHints.get("h"); ok && m == 1 {
			break
		}
		if i == 100 {
			t.Fatal("100 deductions after a reshard to 1 shard, and the hint still says 8 shards")
		}
		order, err := first.Deduct(ctx, DeductRequest{OrderNo: fmt.Sprintf("h-%d", i), Items: []Item{{SKU: "h", Qty: 1}}})
		if err != nil {
			t.Fatalf("deduction %d with a stale hint: %v", i, err)
		}
		if takes := order.Items[0].Shards; len(takes) != 1 || takes[0].Shard != 0 {
			t.Fatalf("deduction %d took from shards %v, but only shard 0 exists", i, takes)
		}
		taken++
	}
	if got := sellable(t, db, "h"); got != 1000-taken {
		t.Fatalf("sellable = %d after %d deductions of 1, want %d", got, taken, 1000-taken)
	}
}

func TestMergedBatchWhoseSumWouldOverflowDoesNotRun(t *testing.T) {
	store, db := newTestStore(t, Options{})
	ctx := t.Context()
	if _, err := store.SetStock(ctx, "wrap", 10, 1); err != nil {
		t.Fatal(err)
	}
	// 1025 orders of the largest quantity sum past int64 (a MergeMaxBatch over 1024 allows
	// such a batch); a wrapped, negative sum would add stock instead of taking it.
	calls := make([]*mergeCall, 1025)
	for i := range calls {
		calls[i] = &mergeCall{ctx: ctx, req: DeductRequest{OrderNo: fmt.Sprintf("wrap-%d", i),
			Items: []Item{{SKU: "wrap", Qty: maxQty}}, HoldTTL: time.Minute}}
	}
	if _, err := store.merger.runMerged("wrap", calls); !errors.Is(err, errMergeDoesNotFit) {
		t.Fatalf("runMerged = %v, want errMergeDoesNotFit", err)
	}
	if got := sellable(t, db, "wrap"); got != 10 {
		t.Fatalf("sellable = %d, want 10", got)
	}
	if n := queryInt(t, db, "SELECT COUNT(*) FROM hold"); n != 0 {
		t.Fatalf("%d holds written", n)
	}
}

// TestDeductOneProcedure: a one-item order on a SKU whose shard count is known is decided
// by one call of deduct_one: deducted and logged, replayed when repeated, and handed back
// with nothing written when its shard lacks the quantity.
func TestDeductOneProcedure(t *testing.T) {
	store, db := newTestStore(t, Options{DisableMerging: true})
	ctx := t.Context()
	if _, err := store.SetStock(ctx, "p", 10, 2); err != nil {
		t.Fatal(err)
	}
	store.shardHints.set("p", 2)
	req, err := store.normalize(DeductRequest{OrderNo: "p-1", Items: []Item{{SKU: "p", Qty: 3}}})
	if err != nil {
		t.Fatal(err)
	}
	order, decided, err := store.deductOneCall(ctx, req)
	if err != nil || !decided {
		t.Fatalf("deduct_one: decided %v, %v", decided, err)
	}
	takes := order.Items[0].Shards
	if order.Status != StatusHeld || order.Replayed || len(takes) != 1 || takes[0].Qty != 3 {
		t.Fatalf("deduct_one answered %+v", order)
	}
	shardLeft := queryInt(t, db, "SELECT qty FROM sellable_shard WHERE sku_id = 'p' AND shard = ?", takes[0].Shard)
	logged := queryInt(t, db, "SELECT COUNT(*) FROM deduction_log WHERE order_no = 'p-1' AND qty = 3 AND shard = ? AND shard_takes = ?",
		takes[0].Shard, formatTakes(takes))
	held := queryInt(t, db, "SELECT COUNT(*) FROM hold WHERE order_no = 'p-1' AND status = 'held'")
	if shardLeft != 2 || logged != 1 || held != 1 {
		t.Fatalf("after deduct_one: shard %d holds %d (want 2), %d log rows, %d holds (want 1 each)", takes[0].Shard, shardLeft, logged, held)
	}

	again, decided, err := store.deductOneCall(ctx, req)
	if err != nil || !decided || !again.Replayed || again.Items[0].Shards[0] != takes[0] {
		t.Fatalf("repeated order: decided %v, %+v, %v; want the stored order replayed", decided, again, err)
	}

	big, _ := store.normalize(DeductRequest{OrderNo: "p-2", Items: []Item{{SKU: "p", Qty: 6}}})
	if _, decided, err := store.deductOneCall(ctx, big); decided || err != nil {
		t.Fatalf("6 units where no shard holds 6: decided %v, %v; want it handed to the general path", decided, err)
	}
	if n := queryInt(t, db, "SELECT COUNT(*) FROM hold WHERE order_no = 'p-2'"); n != 0 || sellable(t, db, "p") != 7 {
		t.Fatalf("a missed deduct_one wrote something: %d holds, sellable %d", n, sellable(t, db, "p"))
	}
	// The general path then takes 6 from both shards.
	if order, err := store.Deduct(ctx, big); err != nil || len(order.Items[0].Shards) != 2 {
		t.Fatalf("6 units over two shards: %+v, %v", order, err)
	}
}

// TestDeductBatchProcedure: a merged batch on a SKU whose shard count is known is decided
// by one call of deduct_batch: every order held and logged and the shard lowered by the
// sum; a batch holding an existing order, or one its shard cannot serve, writes nothing.
func TestDeductBatchProcedure(t *testing.T) {
	store, db := newTestStore(t, Options{})
	ctx := t.Context()
	if _, err := store.SetStock(ctx, "b", 10, 1); err != nil {
		t.Fatal(err)
	}
	store.shardHints.set("b", 1)
	batch := func(orders ...string) ([]*mergeCall, []Order) {
		calls := make([]*mergeCall, len(orders))
		out := make([]Order, len(orders))
		for i, o := range orders {
			req, err := store.normalize(DeductRequest{OrderNo: o, Items: []Item{{SKU: "b", Qty: 2}}})
			if err != nil {
				t.Fatal(err)
			}
			calls[i] = &mergeCall{ctx: ctx, req: req}
			out[i] = Order{OrderNo: o, Status: StatusHeld, ExpiresAt: time.Now().Add(time.Hour).Truncate(time.Microsecond)}
		}
		return calls, out
	}
	calls, orders := batch("b-1", "b-2", `b-"3"`)
	done, err := store.merger.callBatch(ctx, "b", 6, calls, orders)
	if err != nil || !done {
		t.Fatalf("deduct_batch: done %v, %v", done, err)
	}
	for _, o := range orders {
		if len(o.Items) != 1 || o.Items[0].Qty != 2 || o.Items[0].Shards[0].Shard != 0 {
			t.Fatalf("order %s answered %+v", o.OrderNo, o)
		}
	}
	var holds int64
	for _, o := range orders {
		holds += queryInt(t, db, "SELECT COUNT(*) FROM hold WHERE order_no = ? AND status = 'held' AND expires_at = ?", o.OrderNo, o.ExpiresAt)
	}
	logged := queryInt(t, db, "SELECT COUNT(*) FROM deduction_log WHERE sku_id = 'b' AND qty = 2 AND shard_takes = '0:2'")
	quoted := queryInt(t, db, "SELECT COUNT(*) FROM deduction_log WHERE order_no = ?", `b-"3"`)
	if holds != 3 || logged != 3 || quoted != 1 || sellable(t, db, "b") != 4 {
		t.Fatalf("after deduct_batch: %d holds with the expiry, %d log rows (%d of the quoted order), sellable %d; want 3, 3, 1, 4",
			holds, logged, quoted, sellable(t, db, "b"))
	}

	calls, orders = batch("b-4", "b-1")
	if done, err := store.merger.callBatch(ctx, "b", 4, calls, orders); done || !errors.Is(err, errMergeDuplicate) {
		t.Fatalf("a batch with an existing order: done %v, %v; want errMergeDuplicate", done, err)
	}
	calls, orders = batch("b-5", "b-6", "b-7")
	if done, err := store.merger.callBatch(ctx, "b", 6, calls, orders); done || err != nil {
		t.Fatalf("a batch of 6 on a shard holding 4: done %v, %v; want it handed back", done, err)
	}
	if n := queryInt(t, db, "SELECT COUNT(*) FROM hold WHERE order_no IN ('b-4', 'b-5', 'b-6', 'b-7')"); n != 0 || sellable(t, db, "b") != 4 {
		t.Fatalf("refused batches wrote something: %d holds, sellable %d", n, sellable(t, db, "b"))
	}
}

// An identifier with a control character is refused, C1 (U+0080–U+009F) as well as C0 and
// DEL (docs/api.md: no control characters), naming the field and the character's code
// point; other characters outside ASCII are identifiers' own.
func TestIdentifierWithAControlCharacterIsRefusedNamingIt(t *testing.T) {
	for _, c := range []struct{ id, want string }{
		{"a\nb", "U+000A at byte 1"},
		{"a\x7fb", "U+007F at byte 1"},
		{"x\u0080", "U+0080 at byte 1"},
		{"a\u0085b", "U+0085 at byte 1"},
		{"\u009b31m", "U+009B at byte 0"},
	} {
		err := validID("order_no", c.id)
		var validation *ValidationError
		if !errors.As(err, &validation) || validation.Field != "order_no" || !strings.Contains(err.Error(), "control characters") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("validID(order_no, %q) = %v; want order_no refused for its control character, %s", c.id, err, c.want)
		}
	}
	for _, id := range []string{"caf\u00e9", "a\u00a0b", "\u5e93\u5b58-1", "\u00ff"} {
		if err := validID("order_no", id); err != nil {
			t.Errorf("validID(order_no, %q) = %v; want it accepted", id, err)
		}
	}
}

// Every deduction path writes its log rows with its order's creation time
// (hold.created_at), which listing a SKU's orders pages on (deduction_log_sku_created):
// deduct_one, deduct_batch, a merged batch run statement by statement, and an order of
// several items, one from an activity, run statement by statement.
func TestLogRowsCarryTheirOrdersCreationTime(t *testing.T) {
	store, db := newTestStore(t, Options{})
	ctx := t.Context()
	seedStore(t, store, seed{
		stock:      []SKUStock{{SKU: "t1", Sellable: 100, Shards: 1}, {SKU: "t2", Sellable: 100, Shards: 2}},
		activities: []Activity{{SKU: "t2", Activity: "a1", Qty: 10, StartsAt: time.Now().Add(-time.Hour), EndsAt: time.Now().Add(time.Hour)}},
	})
	store.shardHints.set("t1", 1)
	one, err := store.normalize(DeductRequest{OrderNo: "t-one", Items: []Item{{SKU: "t1", Qty: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, decided, err := store.deductOneCall(ctx, one); err != nil || !decided {
		t.Fatalf("deduct_one: decided %v, %v", decided, err)
	}
	batch := func(orders ...string) ([]*mergeCall, []Order) {
		calls := make([]*mergeCall, len(orders))
		out := make([]Order, len(orders))
		for i, o := range orders {
			req, err := store.normalize(DeductRequest{OrderNo: o, Items: []Item{{SKU: "t1", Qty: 1}}})
			if err != nil {
				t.Fatal(err)
			}
			calls[i] = &mergeCall{ctx: ctx, req: req}
			out[i] = Order{OrderNo: o, Status: StatusHeld, ExpiresAt: time.Now().Add(time.Hour).Truncate(time.Microsecond)}
		}
		return calls, out
	}
	calls, orders := batch("t-batch-1", "t-batch-2")
	if done, err := store.merger.callBatch(ctx, "t1", 2, calls, orders); err != nil || !done {
		t.Fatalf("deduct_batch: done %v, %v", done, err)
	}
	calls, orders = batch("t-merged-1", "t-merged-2")
	if err := store.inTx(ctx, func(tx *sql.Tx) error { return store.merger.batchInTx(ctx, tx, "t1", 2, calls, orders) }); err != nil {
		t.Fatalf("a merged batch statement by statement: %v", err)
	}
	if _, err := store.Deduct(ctx, DeductRequest{OrderNo: "t-several", Items: []Item{{SKU: "t1", Qty: 1}, {SKU: "t2", Qty: 1}, {SKU: "t2", Qty: 1, Activity: "a1"}}}); err != nil {
		t.Fatal(err)
	}
	rows := queryInt(t, db, "SELECT COUNT(*) FROM deduction_log d JOIN hold h USING (order_no)")
	differ := queryInt(t, db, "SELECT COUNT(*) FROM deduction_log d JOIN hold h USING (order_no) WHERE d.created_at <> h.created_at")
	if rows != 8 || differ != 0 {
		t.Errorf("%d log rows, %d of them at another time than their order's; want 8, none", rows, differ)
	}
}
