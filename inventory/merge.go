package inventory

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// merger coalesces concurrent single-item sellable deductions of one SKU into one
// transaction: one hold row per order (a multi-row insert that must insert every row), one
// conditional update of one shard for the sum, one multi-row log insert, one commit. Each
// order still gets its own hold and log row, so results stay exact and idempotent.
//
// When the merged transaction cannot run as a whole — an order already exists (a retry or
// a duplicate), no single shard holds the sum, the SKU has no stock rows, or any error —
// it is rolled back and every
// order of the batch runs one by one (deductAlone), which answers each exactly.
//
// Per SKU at most MergeWorkers transactions run at once; while they run, new deductions
// queue and form the next batch, so batches grow with load (group commit).
type merger struct {
	s      *Store
	mu     sync.Mutex
	queues map[string]*mergeQueue

	// batches and merged count the merged transactions committed and the orders they served.
	batches, merged atomic.Int64
}

type mergeQueue struct {
	pending []*mergeCall
	running int
}

type mergeCall struct {
	ctx  context.Context
	req  DeductRequest
	done chan mergeResult // buffered: delivering never blocks
}

type mergeResult struct {
	order Order
	err   error
}

// mergeTxTimeout bounds one merged transaction; it runs for many callers, so no single
// caller's context may cancel it.
const mergeTxTimeout = 30 * time.Second

func newMerger(s *Store) *merger { return &merger{s: s, queues: map[string]*mergeQueue{}} }

// deduct queues a single-item sellable deduction and waits for its result or ctx. A caller
// that gives up after its deduction entered a transaction may still have been served; its
// retry with the same order_no returns that result.
func (m *merger) deduct(ctx context.Context, req DeductRequest) (Order, error) {
	call := &mergeCall{ctx: ctx, req: req, done: make(chan mergeResult, 1)}
	sku := req.Items[0].SKU
	m.mu.Lock()
	q := m.queues[sku]
	if q == nil {
		q = &mergeQueue{}
		m.queues[sku] = q
	}
	q.pending = append(q.pending, call)
	start := q.running < m.workers(sku)
	if start {
		q.running++
	}
	m.mu.Unlock()
	if start {
		go m.work(sku, q)
	}
	select {
	case r := <-call.done:
		return r.order, r.err
	case <-ctx.Done():
		return Order{}, fmt.Errorf("deducting order %s: %w", req.OrderNo, ctx.Err())
	}
}

// work runs batches of sku's queue until it is empty.
func (m *merger) work(sku string, q *mergeQueue) {
	for {
		m.mu.Lock()
		if len(q.pending) == 0 || q.running > m.workers(sku) {
			q.running--
			if q.running == 0 && m.queues[sku] == q {
				delete(m.queues, sku)
			}
			m.mu.Unlock()
			return
		}
		n := min(len(q.pending), m.s.opts.MergeMaxBatch)
		batch := q.pending[:n:n]
		q.pending = append([]*mergeCall(nil), q.pending[n:]...)
		m.mu.Unlock()
		m.run(sku, batch)
	}
}

// workers is how many merged transactions may run at once for sku. deduct_batch takes
// the shard's row lock last, for the update and the commit only, so batches on one shard
// still overlap their inserts and run side by side.
func (m *merger) workers(string) int { return m.s.opts.MergeWorkers }

var (
	errMergeDuplicate  = errors.New("an order of the batch already exists")
	errMergeDoesNotFit = errors.New("no shard holds the batch's sum")
)

// run serves one batch of calls for sku.
func (m *merger) run(sku string, calls []*mergeCall) {
	var leaders, repeats []*mergeCall
	seen := make(map[string]bool, len(calls))
	for _, c := range calls {
		switch {
		case c.ctx.Err() != nil:
			c.done <- mergeResult{err: fmt.Errorf("deducting order %s: %w", c.req.OrderNo, c.ctx.Err())}
		case seen[c.req.OrderNo]:
			repeats = append(repeats, c) // served after the first of its order: a replay
		default:
			seen[c.req.OrderNo] = true
			leaders = append(leaders, c)
		}
	}
	if len(leaders) > 1 {
		orders, err := m.runMerged(sku, leaders)
		if err == nil {
			m.batches.Add(1)
			m.merged.Add(int64(len(leaders)))
			for i, c := range leaders {
				c.done <- mergeResult{order: orders[i]}
			}
			leaders = nil
		} else {
			reason := "error"
			switch {
			case errors.Is(err, errMergeDoesNotFit):
				reason = "does_not_fit"
			case errors.Is(err, errMergeDuplicate):
				reason = "duplicate"
			case errors.Is(err, ErrUnknownSKU):
				// A client's answer (422 unknown_sku, a typo or a SKU not set yet), not a
				// failure to look into. The batch holds only sellable single-item orders, so
				// no other per-order answer (an unknown or inactive activity) can end it.
				reason = "unknown_sku"
			default:
				m.s.log.Warn("merged deduction failed; deducting one by one", zap.String("sku", sku),
					zap.Int("orders", len(leaders)), zap.Error(err))
			}
			m.s.m.mergeFallbacks.WithLabelValues(reason).Inc()
		}
	}
	for _, c := range append(leaders, repeats...) {
		order, err := m.s.deductAlone(c.ctx, c.req)
		c.done <- mergeResult{order: order, err: err}
	}
}

// runMerged deducts every call's order in one transaction, or nothing: with one call of
// the deduct_batch procedure on a random shard when sku's shard count is known, else (or
// when that shard lacks the sum) statement by statement, on a shard chosen by reading them.
func (m *merger) runMerged(sku string, calls []*mergeCall) ([]Order, error) {
	ctx, cancel := context.WithTimeout(context.Background(), mergeTxTimeout)
	defer cancel()
	now, err := m.s.now(ctx, m.s.db)
	if err != nil {
		return nil, fmt.Errorf("merged deduction of %d orders of %q: %w", len(calls), sku, err)
	}
	orders := make([]Order, len(calls))
	var total int64
	for i, c := range calls {
		orders[i] = Order{OrderNo: c.req.OrderNo, Status: StatusHeld, ExpiresAt: now.Add(c.req.HoldTTL)}
		total += c.req.Items[0].Qty
		if total > maxQty {
			// More than a SKU holds; checked at each order so that no MergeMaxBatch can
			// overflow the sum.
			return nil, fmt.Errorf("merged deduction of %d orders of %q: %w", len(calls), sku, errMergeDoesNotFit)
		}
	}
	done, err := m.callBatch(ctx, sku, total, calls, orders)
	if !done && err == nil {
		err = m.s.inTx(ctx, func(tx *sql.Tx) error { return m.batchInTx(ctx, tx, sku, total, calls, orders) })
	}
	if err != nil {
		return nil, fmt.Errorf("merged deduction of %d orders of %q: %w", len(calls), sku, err)
	}
	return orders, nil
}

// callBatch runs the batch with one call of deduct_batch (migrations 00002, 00003). done is false
// when the statement path must decide: no remembered shard count, the shard lacks the
// sum, or a deadlock or lock wait timeout (nothing was written).
func (m *merger) callBatch(ctx context.Context, sku string, total int64, calls []*mergeCall, orders []Order) (done bool, err error) {
	shards, ok := m.s.shardHints.get(sku)
	if !ok {
		return false, nil
	}
	type batchOrder struct {
		Order   string `json:"o"`
		Qty     int64  `json:"q"`
		Expires string `json:"e"`
	}
	list := make([]batchOrder, len(calls))
	for i, c := range calls {
		list[i] = batchOrder{c.req.OrderNo, c.req.Items[0].Qty, orders[i].ExpiresAt.UTC().Format("2006-01-02 15:04:05.999999")}
	}
	js, err := json.Marshal(list)
	if err != nil {
		return false, fmt.Errorf("encoding the batch: %w", err)
	}
	shard := rand.IntN(shards)
	var outcome string
	err = m.s.db.QueryRowContext(ctx, "CALL deduct_batch(?, ?, ?, ?)", sku, shard, total, js).Scan(&outcome)
	switch {
	case err != nil && isRetryable(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("calling deduct_batch: %w", err)
	case outcome == "exists":
		return false, errMergeDuplicate
	case outcome == "ok":
		fillBatchItems(sku, shard, calls, orders)
		return true, nil
	}
	return false, nil // "miss"
}

// batchInTx runs the batch in tx statement by statement.
func (m *merger) batchInTx(ctx context.Context, tx *sql.Tx, sku string, total int64, calls []*mergeCall, orders []Order) error {
	holdArgs := make([]any, 0, 3*len(calls))
	for i, c := range calls {
		holdArgs = append(holdArgs, c.req.OrderNo, StatusHeld, orders[i].ExpiresAt)
	}
	// An existing order leaves its row alone and counts 0 affected rows.
	res, err := tx.ExecContext(ctx, "INSERT INTO hold (order_no, status, expires_at) VALUES "+placeholders(len(calls), 3)+
		" ON DUPLICATE KEY UPDATE order_no = order_no", holdArgs...)
	if err != nil {
		return fmt.Errorf("recording holds: %w", err)
	}
	if affected(res) != int64(len(calls)) {
		return errMergeDuplicate
	}
	takes, _, err := m.s.takeSellable(ctx, tx, sku, total, false)
	if err != nil {
		return err
	}
	if takes == nil {
		return errMergeDoesNotFit
	}
	fillBatchItems(sku, takes[0].Shard, calls, orders)
	orderNos := make([]string, len(calls))
	items := make([][]OrderItem, len(calls))
	for i, o := range orders {
		orderNos[i], items[i] = o.OrderNo, o.Items
	}
	return insertLogRowsFor(ctx, tx, orderNos, items)
}

// fillBatchItems records in each order that its item came from shard.
func fillBatchItems(sku string, shard int, calls []*mergeCall, orders []Order) {
	for i, c := range calls {
		qty := c.req.Items[0].Qty
		orders[i].Items = []OrderItem{{SKU: sku, Qty: qty, Shards: []ShardTake{{Shard: shard, Qty: qty}}}}
	}
}

// MergeStats returns how many merged transactions committed and how many orders they
// served (both 0 when merging is disabled); orders/batches is the mean batch size.
func (s *Store) MergeStats() (batches, orders int64) {
	if s.merger == nil {
		return 0, 0
	}
	return s.merger.batches.Load(), s.merger.merged.Load()
}
