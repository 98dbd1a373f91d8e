package inventory

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/stocksync/stocksync/config"
)

// Limits of one request.
const (
	maxIDLength = 64
	// maxWarehouseLength is the warehouse code's column width.
	maxWarehouseLength = 32
	maxOrderItems      = 100
	maxShards          = 256
	// maxQty bounds every quantity and a SKU's sellable stock: 2^53−1, the largest integer
	// every JSON reader (JavaScript's too) holds exactly. It keeps every sum of quantities —
	// over a SKU's shards, over a merged batch — far from int64 overflow.
	maxQty = 1<<53 - 1
)

// validQty checks a quantity that must be at least least and at most maxQty.
func validQty(field string, qty, least int64) error {
	if qty < least || qty > maxQty {
		return invalid(field, "must be between %d and %d, got %d", least, int64(maxQty), qty)
	}
	return nil
}

// Kinds of stock a deduction log row takes from.
const (
	kindSellable = "sellable"
	kindActivity = "activity"
)

// OrderStatus is where an order is in its life: held → confirmed → shipped, or
// held/confirmed → cancelled, or held → expired.
type OrderStatus string

// The order statuses.
const (
	StatusHeld      OrderStatus = "held"
	StatusConfirmed OrderStatus = "confirmed"
	StatusShipped   OrderStatus = "shipped"
	StatusCancelled OrderStatus = "cancelled"
	StatusExpired   OrderStatus = "expired"
)

// Item is one line of a deduction: qty units of sku, from an activity's stock when
// Activity is set, from sellable stock otherwise.
type Item struct {
	SKU      string `json:"sku"`
	Qty      int64  `json:"qty"`
	Activity string `json:"activity,omitempty"`
}

// DeductRequest is an order's deduction. HoldTTL 0 takes the Store's default.
type DeductRequest struct {
	OrderNo string
	Items   []Item
	HoldTTL time.Duration
}

// ShardTake is how much one deduction took from one sellable shard.
type ShardTake struct {
	Shard int   `json:"shard"`
	Qty   int64 `json:"qty"`
}

// OrderItem is a granted item of an order.
type OrderItem struct {
	SKU      string      `json:"sku"`
	Activity string      `json:"activity,omitempty"`
	Qty      int64       `json:"qty"`
	Shards   []ShardTake `json:"shards,omitempty"`
}

// Order is an order's deduction and state.
type Order struct {
	OrderNo   string      `json:"order_no"`
	Status    OrderStatus `json:"status"`
	ExpiresAt time.Time   `json:"expires_at"`
	Warehouse string      `json:"warehouse,omitempty"`
	Items     []OrderItem `json:"items"`
	// Replayed is true when this call changed nothing because the order was already in the
	// state asked for (a retried or duplicated request); the order is returned as stored.
	Replayed bool `json:"replayed"`
}

func validID(field, v string) error {
	if v == "" {
		return invalid(field, "must not be empty")
	}
	if len(v) > maxIDLength {
		return invalid(field, "must be at most %d bytes", maxIDLength)
	}
	if !utf8.ValidString(v) {
		// A path segment such as %FF: the database would refuse to store it.
		return invalid(field, "must be valid UTF-8")
	}
	for i, r := range v {
		// unicode.IsControl: C0, DEL and C1 (U+0080–U+009F, NEL and CSI among them), which
		// a terminal or a log line would act on instead of showing.
		if unicode.IsControl(r) {
			return invalid(field, "must not contain control characters, has %U at byte %d", r, i)
		}
	}
	if strings.HasSuffix(v, " ") {
		// The schema's collation pads with spaces: "a " would name the row of "a".
		return invalid(field, "must not end with a space")
	}
	return nil
}

// validWarehouse checks a warehouse code: an identifier of at most maxWarehouseLength
// bytes, wherever a request names one.
func validWarehouse(field, code string) error {
	if err := validID(field, code); err != nil {
		return err
	}
	if len(code) > maxWarehouseLength {
		return invalid(field, "must be at most %d bytes", maxWarehouseLength)
	}
	return nil
}

// validHoldTTL checks a hold's time to live, which a deduction or an extension asks for:
// positive and at most config.MaxHoldTTL. It returns it to the microsecond (at least one),
// as times are stored: an answer must name the expiry stored.
func validHoldTTL(ttl time.Duration) (time.Duration, error) {
	if ttl <= 0 || ttl > config.MaxHoldTTL {
		return 0, invalid("hold_ttl", "must be positive and at most %s, got %s", config.MaxHoldTTL, ttl)
	}
	return max(ttl.Truncate(time.Microsecond), time.Microsecond), nil
}

// normalize validates req and returns it with defaults applied and items sorted by SKU
// (a fixed lock order across orders).
func (s *Store) normalize(req DeductRequest) (DeductRequest, error) {
	if err := validID("order_no", req.OrderNo); err != nil {
		return req, err
	}
	if len(req.Items) == 0 {
		return req, invalid("items", "must list at least one item")
	}
	if len(req.Items) > maxOrderItems {
		return req, invalid("items", "must list at most %d items", maxOrderItems)
	}
	if req.HoldTTL == 0 {
		req.HoldTTL = s.opts.HoldTTL
	}
	ttl, err := validHoldTTL(req.HoldTTL)
	if err != nil {
		return req, err
	}
	req.HoldTTL = ttl
	seen := map[[2]string]bool{}
	items := make([]Item, len(req.Items))
	for i, it := range req.Items {
		field := fmt.Sprintf("items[%d]", i)
		if err := validID(field+".sku", it.SKU); err != nil {
			return req, err
		}
		if err := validQty(field+".qty", it.Qty, 1); err != nil {
			return req, err
		}
		kind := kindSellable
		if it.Activity != "" {
			if err := validID(field+".activity", it.Activity); err != nil {
				return req, err
			}
			kind = kindActivity
		}
		key := [2]string{it.SKU, kind}
		if seen[key] {
			return req, invalid(field+".sku", "%s appears twice as %s stock; send one line per SKU", it.SKU, kind)
		}
		seen[key] = true
		items[i] = it
	}
	slices.SortFunc(items, func(a, b Item) int { return strings.Compare(a.SKU+"\x00"+a.Activity, b.SKU+"\x00"+b.Activity) })
	req.Items = items
	return req, nil
}

// Deduct takes every item of the order or none. It is idempotent on OrderNo: a retry or a
// concurrent duplicate deducts once and returns the stored order with Replayed set, with
// ErrOrderConflict when it asks for other items, ErrCancelled or ErrExpired when the
// order's stock was given back since (replayDeduction). A
// shortfall returns a *ShortageError listing every item short; an unknown SKU or activity
// returns ErrUnknownSKU / ErrUnknownActivity / ErrActivityInactive; an order cancelled
// before its deduction arrived returns ErrCancelled. The hold expires after HoldTTL.
func (s *Store) Deduct(ctx context.Context, req DeductRequest) (Order, error) {
	req, err := s.normalize(req)
	if err != nil {
		return Order{}, fmt.Errorf("deducting order %s: %w", req.OrderNo, err)
	}
	if s.merger != nil && len(req.Items) == 1 && req.Items[0].Activity == "" {
		return s.merger.deduct(ctx, req)
	}
	return s.deductAlone(ctx, req)
}

// errAlreadyDeducted aborts a deduction transaction whose order row already exists.
var errAlreadyDeducted = errors.New("order already deducted")

// deductAlone runs one order's deduction in its own transaction: through the deduct_one
// procedure when it can decide, else in Go (deductInTx).
func (s *Store) deductAlone(ctx context.Context, req DeductRequest) (Order, error) {
	if order, decided, err := s.deductOneCall(ctx, req); decided {
		return order, err
	}
	return s.deductInTx(ctx, req)
}

// deductOneCall deducts a one-item sellable order from one shard, which shardGates picks,
// with a single call of the deduct_one procedure (migrations 00002, 00003): a round trip instead
// of five, and the shard's row lock, taken last, is held for the update and the commit
// only, with no network wait inside. It applies when the SKU's shard count is remembered (shardHints).
// decided is false when the general path must run: not such an order, no hint, the shard
// lacks the quantity, or a deadlock or lock wait timeout (nothing was written).
func (s *Store) deductOneCall(ctx context.Context, req DeductRequest) (order Order, decided bool, err error) {
	if len(req.Items) != 1 || req.Items[0].Activity != "" {
		return Order{}, false, nil
	}
	it := req.Items[0]
	m, ok := s.shardHints.get(it.SKU)
	if !ok {
		return Order{}, false, nil
	}
	shard, release, err := s.gates.take(ctx, it.SKU, m)
	if err != nil {
		return Order{}, true, fmt.Errorf("deducting order %q: waiting for a shard: %w", req.OrderNo, err)
	}
	defer release()
	takes := []ShardTake{{Shard: shard, Qty: it.Qty}}
	now, err := s.now(ctx, s.db)
	if err != nil {
		return Order{}, true, fmt.Errorf("deducting order %q: %w", req.OrderNo, err)
	}
	expires := now.Add(req.HoldTTL)
	var outcome string
	err = s.db.QueryRowContext(ctx, "CALL deduct_one(?, ?, ?, ?, ?, ?)",
		req.OrderNo, it.SKU, it.Qty, takes[0].Shard, expires, formatTakes(takes)).Scan(&outcome)
	switch {
	case err != nil && isRetryable(err):
		return Order{}, false, nil
	case err != nil:
		return Order{}, true, fmt.Errorf("deducting order %q: %w", req.OrderNo, err)
	case outcome == "exists":
		order, err := s.replayDeduction(ctx, req)
		return order, true, err
	case outcome == "ok":
		return Order{OrderNo: req.OrderNo, Status: StatusHeld, ExpiresAt: expires,
			Items: []OrderItem{{SKU: it.SKU, Qty: it.Qty, Shards: takes}}}, true, nil
	}
	return Order{}, false, nil // "miss"
}

// deductInTx runs one order's deduction in its own transaction, statement by statement.
func (s *Store) deductInTx(ctx context.Context, req DeductRequest) (Order, error) {
	var order Order
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		now, err := s.now(ctx, tx)
		if err != nil {
			return err
		}
		expires := now.Add(req.HoldTTL)
		_, err = tx.ExecContext(ctx, "INSERT INTO hold (order_no, status, expires_at) VALUES (?, ?, ?)",
			req.OrderNo, StatusHeld, expires)
		if isDuplicateKey(err) {
			return errAlreadyDeducted
		}
		if err != nil {
			return fmt.Errorf("recording hold: %w", err)
		}
		order = Order{OrderNo: req.OrderNo, Status: StatusHeld, ExpiresAt: expires, Items: make([]OrderItem, 0, len(req.Items))}
		var short []Shortage
		for _, it := range req.Items {
			granted, available, err := s.takeItem(ctx, tx, it)
			if err != nil {
				return err
			}
			if granted == nil {
				short = append(short, Shortage{SKU: it.SKU, Activity: it.Activity, Requested: it.Qty, Available: available})
				continue
			}
			order.Items = append(order.Items, *granted)
		}
		if len(short) > 0 {
			return &ShortageError{Items: short}
		}
		return insertLogRows(ctx, tx, req.OrderNo, order.Items)
	})
	if errors.Is(err, errAlreadyDeducted) {
		return s.replayDeduction(ctx, req)
	}
	if err != nil {
		return Order{}, fmt.Errorf("deducting order %s: %w", req.OrderNo, err)
	}
	return order, nil
}

// replayDeduction answers a deduction (req, normalized) whose order already exists. The
// stored order, with Replayed set, when req asks for the same items and the order still
// holds its stock (held before its expiry, confirmed or shipped). Otherwise the stored
// order and an error: ErrOrderConflict when req asks for other items, ErrCancelled or
// ErrExpired when the order's stock was given back, since an answer of success would read
// as "held". A hold past its expiry is released here (expireIfLapsed), as Confirm does.
func (s *Store) replayDeduction(ctx context.Context, req DeductRequest) (Order, error) {
	order, err := s.loadOrder(ctx, s.db, req.OrderNo, false)
	if err != nil {
		return Order{}, fmt.Errorf("reading deducted order %s: %w", req.OrderNo, err)
	}
	lapsed, err := s.lapsed(ctx, s.db, order)
	if err != nil {
		return Order{}, fmt.Errorf("deducting order %s: %w", req.OrderNo, err)
	}
	if lapsed {
		err := s.inTx(ctx, func(tx *sql.Tx) error {
			o, err := s.loadOrder(ctx, tx, req.OrderNo, true)
			if err != nil {
				return err
			}
			_, err = s.expireIfLapsed(ctx, tx, &o)
			order = o
			return err
		})
		if err != nil {
			return Order{}, fmt.Errorf("deducting order %s: releasing its expired hold: %w", req.OrderNo, err)
		}
	}
	order.Replayed = true
	switch {
	case order.Status == StatusCancelled && len(order.Items) == 0:
		return order, fmt.Errorf("deducting order %s: cancelled before its deduction arrived: %w", req.OrderNo, ErrCancelled)
	case !sameItems(order.Items, req.Items):
		return order, fmt.Errorf("deducting order %s: it was deducted as %s, this request asks for %s; a retry must carry the same items: %w",
			req.OrderNo, describeItems(order.Items), describeRequest(req.Items), ErrOrderConflict)
	case order.Status == StatusCancelled:
		return order, fmt.Errorf("deducting order %s: it was deducted, then cancelled, and its stock given back: %w", req.OrderNo, ErrCancelled)
	case order.Status == StatusExpired:
		return order, fmt.Errorf("deducting order %s: it was deducted, then its hold expired unpaid and its stock was given back: %w", req.OrderNo, ErrExpired)
	}
	return order, nil
}

// sameItems reports whether the stored items are the ones asked for: the same SKU, activity
// and quantity, in any order.
func sameItems(stored []OrderItem, asked []Item) bool {
	if len(stored) != len(asked) {
		return false
	}
	qty := make(map[[2]string]int64, len(stored))
	for _, it := range stored {
		qty[[2]string{it.SKU, it.Activity}] = it.Qty
	}
	for _, it := range asked {
		if q, ok := qty[[2]string{it.SKU, it.Activity}]; !ok || q != it.Qty {
			return false
		}
	}
	return true
}

// describeItems names an order's items for a message: "sku-1 x2, sku-2 (activity 1111) x1".
func describeItems(items []OrderItem) string {
	asked := make([]Item, len(items))
	for i, it := range items {
		asked[i] = Item{SKU: it.SKU, Activity: it.Activity, Qty: it.Qty}
	}
	return describeRequest(asked)
}

func describeRequest(items []Item) string {
	parts := make([]string, len(items))
	for i, it := range items {
		parts[i] = fmt.Sprintf("%s x%d", it.SKU, it.Qty)
		if it.Activity != "" {
			parts[i] = fmt.Sprintf("%s (activity %s) x%d", it.SKU, it.Activity, it.Qty)
		}
	}
	return strings.Join(parts, ", ")
}

// takeItem takes one item's stock in tx. A nil item with no error is a shortfall, with the
// quantity that was available.
func (s *Store) takeItem(ctx context.Context, tx *sql.Tx, it Item) (*OrderItem, int64, error) {
	if it.Activity != "" {
		available, err := s.takeActivity(ctx, tx, it)
		if err != nil || available >= 0 {
			return nil, available, err
		}
		return &OrderItem{SKU: it.SKU, Activity: it.Activity, Qty: it.Qty}, 0, nil
	}
	takes, available, err := s.takeSellable(ctx, tx, it.SKU, it.Qty, true)
	if err != nil || takes == nil {
		return nil, available, err
	}
	return &OrderItem{SKU: it.SKU, Qty: it.Qty, Shards: takes}, 0, nil
}

// fastTakeAttempts is how often takeSellable retries a single-shard take that lost a race
// before locking every shard of the SKU.
const fastTakeAttempts = 3

// takeSellable takes qty of sku's sellable stock in tx: from one shard that holds it when
// there is one (a conditional update, so a concurrent taker can never drive it negative),
// else, when split, from several shards locked together. It returns nil takes and the
// stock available when the SKU's total is short (or, without split, when no single shard
// holds qty), ErrUnknownSKU when it has no shards.
//
// A remembered shard count (shardHints) lets the common case skip reading the shards: one
// conditional update on a random shard. The hint only picks the row to try; the update's
// condition is what guarantees the stock, so a stale hint costs a read, never an oversell.
// It corrects itself: after a reshard to fewer shards (by any process) a hinted shard that
// no longer exists updates no row, and the read that follows stores the new count. After a
// reshard to more shards the hint keeps deductions on the old, lower shards until one of
// them runs short (which also reads) or the hint's TTL passes: at most shardHintTTL of
// uneven spreading, no wrong answer.
func (s *Store) takeSellable(ctx context.Context, tx *sql.Tx, sku string, qty int64, split bool) ([]ShardTake, int64, error) {
	if m, ok := s.shardHints.get(sku); ok {
		shard := rand.IntN(m)
		taken, err := takeFromShard(ctx, tx, sku, shard, qty)
		if err != nil {
			return nil, 0, err
		}
		if taken {
			return []ShardTake{{Shard: shard, Qty: qty}}, 0, nil
		}
	}
	for range fastTakeAttempts {
		shards, err := readShards(ctx, tx, sku, false)
		if err != nil {
			return nil, 0, err
		}
		s.shardHints.set(sku, len(shards))
		total := sumShards(shards)
		if total < qty {
			return nil, total, nil
		}
		shard, ok := pickShard(shards, qty)
		if !ok {
			if !split {
				return nil, total, nil
			}
			break // only several shards together hold qty
		}
		taken, err := takeFromShard(ctx, tx, sku, shard, qty)
		if err != nil {
			return nil, 0, err
		}
		if taken {
			return []ShardTake{{Shard: shard, Qty: qty}}, 0, nil
		}
	}
	if !split {
		return nil, 0, nil
	}
	// Slow path: lock every shard of the SKU (in key order, like Reshard) and take from the
	// fullest first.
	shards, err := readShards(ctx, tx, sku, true)
	if err != nil {
		return nil, 0, err
	}
	total := sumShards(shards)
	if total < qty {
		return nil, total, nil
	}
	slices.SortStableFunc(shards, func(a, b ShardTake) int { return cmp.Compare(b.Qty, a.Qty) })
	var takes []ShardTake
	left := qty
	for _, sh := range shards {
		if left == 0 {
			break
		}
		take := min(left, sh.Qty)
		if take == 0 {
			continue
		}
		taken, err := takeFromShard(ctx, tx, sku, sh.Shard, take)
		if err != nil {
			return nil, 0, err
		}
		if !taken {
			return nil, 0, fmt.Errorf("taking %d of %s from locked shard %d: row changed under its lock", take, sku, sh.Shard)
		}
		takes = append(takes, ShardTake{Shard: sh.Shard, Qty: take})
		left -= take
	}
	return takes, 0, nil
}

// takeFromShard takes qty from one shard of sku with the conditional update that never
// lets a shard go negative; taken is false when the shard holds less than qty.
func takeFromShard(ctx context.Context, tx *sql.Tx, sku string, shard int, qty int64) (taken bool, err error) {
	res, err := tx.ExecContext(ctx, "UPDATE sellable_shard SET qty = qty - ? WHERE sku_id = ? AND shard = ? AND qty >= ?",
		qty, sku, shard, qty)
	if err != nil {
		return false, fmt.Errorf("taking %d of %s from shard %d: %w", qty, sku, shard, err)
	}
	return affected(res) == 1, nil
}

// readShards reads sku's shards; lock takes their row locks. ErrUnknownSKU when none.
func readShards(ctx context.Context, q querier, sku string, lock bool) ([]ShardTake, error) {
	query := "SELECT shard, qty FROM sellable_shard WHERE sku_id = ? ORDER BY shard"
	if lock {
		query += " FOR UPDATE"
	}
	rows, err := q.QueryContext(ctx, query, sku)
	if err != nil {
		return nil, fmt.Errorf("reading shards of %s: %w", sku, err)
	}
	defer rows.Close()
	var out []ShardTake
	for rows.Next() {
		var sh ShardTake
		if err := rows.Scan(&sh.Shard, &sh.Qty); err != nil {
			return nil, fmt.Errorf("reading shards of %s: %w", sku, err)
		}
		out = append(out, sh)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading shards of %s: %w", sku, err)
	}
	if len(out) == 0 {
		return nil, &noSellableStockError{sku: sku}
	}
	return out, nil
}

func sumShards(shards []ShardTake) int64 {
	var total int64
	for _, sh := range shards {
		total += sh.Qty
	}
	return total
}

// pickShard chooses at random among the shards holding at least qty, so that concurrent
// takers spread over the shards instead of queueing on one row.
func pickShard(shards []ShardTake, qty int64) (int, bool) {
	n := 0
	for _, sh := range shards {
		if sh.Qty >= qty {
			n++
		}
	}
	if n == 0 {
		return 0, false
	}
	k := rand.IntN(n)
	for _, sh := range shards {
		if sh.Qty >= qty {
			if k == 0 {
				return sh.Shard, true
			}
			k--
		}
	}
	return 0, false
}

// takeActivity takes it.Qty of the activity's stock while the activity runs. It returns -1
// when taken, else the quantity available (a shortfall) or an error naming why not.
func (s *Store) takeActivity(ctx context.Context, tx *sql.Tx, it Item) (int64, error) {
	now, err := s.now(ctx, tx)
	if err != nil {
		return 0, err
	}
	res, err := tx.ExecContext(ctx, `UPDATE activity_stock SET qty = qty - ?
		WHERE sku_id = ? AND activity_id = ? AND qty >= ? AND starts_at <= ? AND ends_at > ?`,
		it.Qty, it.SKU, it.Activity, it.Qty, now, now)
	if err != nil {
		return 0, fmt.Errorf("taking %d of %s from activity %s: %w", it.Qty, it.SKU, it.Activity, err)
	}
	if affected(res) == 1 {
		return -1, nil
	}
	var qty int64
	var starts, ends time.Time
	err = tx.QueryRowContext(ctx, "SELECT qty, starts_at, ends_at FROM activity_stock WHERE sku_id = ? AND activity_id = ?",
		it.SKU, it.Activity).Scan(&qty, &starts, &ends)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("sku %s activity %s: %w", it.SKU, it.Activity, ErrUnknownActivity)
	}
	if err != nil {
		return 0, fmt.Errorf("reading activity %s of %s: %w", it.Activity, it.SKU, err)
	}
	if now.Before(starts) || !now.Before(ends) {
		return 0, fmt.Errorf("sku %s activity %s runs from %s to %s: %w", it.SKU, it.Activity,
			starts.Format(time.RFC3339Nano), ends.Format(time.RFC3339Nano), ErrActivityInactive)
	}
	return qty, nil
}

// insertLogRows writes one deduction log row per granted item of one order.
func insertLogRows(ctx context.Context, tx *sql.Tx, orderNo string, items []OrderItem) error {
	return insertLogRowsFor(ctx, tx, []string{orderNo}, [][]OrderItem{items})
}

// logRow is one deduction_log row's values in insertLogRowsFor's statement: its created_at
// is its order's hold.created_at (the hold row is written first, in the same transaction),
// so that the log's SKU index (deduction_log_sku_created) is in the order listing's order
// (ListOrders by SKU).
const logRow = "(?,?,?,?,?,?,?,(SELECT created_at FROM hold WHERE order_no = ?))"

// insertLogRowsFor writes the deduction log rows of several orders in one statement.
func insertLogRowsFor(ctx context.Context, tx *sql.Tx, orderNos []string, items [][]OrderItem) error {
	n := 0
	for _, its := range items {
		n += len(its)
	}
	args := make([]any, 0, 8*n)
	for i, its := range items {
		for _, it := range its {
			kind, shard := kindSellable, 0
			if it.Activity != "" {
				kind = kindActivity
			}
			if len(it.Shards) > 0 {
				shard = it.Shards[0].Shard
			}
			args = append(args, orderNos[i], it.SKU, kind, it.Activity, it.Qty, shard, formatTakes(it.Shards), orderNos[i])
		}
	}
	_, err := tx.ExecContext(ctx, "INSERT INTO deduction_log (order_no, sku_id, kind, activity_id, qty, shard, shard_takes, created_at) VALUES "+
		strings.TrimSuffix(strings.Repeat(logRow+",", n), ","), args...)
	if err != nil {
		return fmt.Errorf("writing deduction log: %w", err)
	}
	return nil
}

// formatTakes renders shard takes as "shard:qty,…" for the log's shard_takes column.
func formatTakes(takes []ShardTake) string {
	var b strings.Builder
	for i, t := range takes {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(t.Shard))
		b.WriteByte(':')
		b.WriteString(strconv.FormatInt(t.Qty, 10))
	}
	return b.String()
}

func parseTakes(s string) []ShardTake {
	if s == "" {
		return nil
	}
	var out []ShardTake
	for _, part := range strings.Split(s, ",") {
		a, b, _ := strings.Cut(part, ":")
		shard, err1 := strconv.Atoi(a)
		qty, err2 := strconv.ParseInt(b, 10, 64)
		if err1 == nil && err2 == nil {
			out = append(out, ShardTake{Shard: shard, Qty: qty})
		}
	}
	return out
}

// shardHints remembers each SKU's shard count for a short while (see takeSellable).
type shardHints struct {
	mu    sync.Mutex
	count map[string]shardHint
}

type shardHint struct {
	shards int
	seen   time.Time
}

// shardHintTTL bounds how long a reshard to more shards by another process goes unnoticed
// (one to fewer shards is noticed at the first miss; see takeSellable).
const shardHintTTL = time.Second

func (h *shardHints) get(sku string) (int, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	hint, ok := h.count[sku]
	if !ok || hint.shards < 1 || time.Since(hint.seen) > shardHintTTL {
		return 0, false
	}
	return hint.shards, true
}

func (h *shardHints) set(sku string, shards int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.count == nil || len(h.count) > 100000 {
		h.count = map[string]shardHint{}
	}
	h.count[sku] = shardHint{shards: shards, seen: time.Now()}
}
