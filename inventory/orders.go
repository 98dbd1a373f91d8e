package inventory

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
)

// GetOrder returns an order's state and its items (also those rolled back); ErrNotFound
// when no deduction or cancel ever named it. A hold past its expiry reads as expired, even
// before the sweeper has given its stock back.
func (s *Store) GetOrder(ctx context.Context, orderNo string) (Order, error) {
	if err := validID("order_no", orderNo); err != nil {
		return Order{}, err
	}
	o, err := s.loadOrder(ctx, s.db, orderNo, false)
	if err != nil {
		return Order{}, fmt.Errorf("reading order %s: %w", orderNo, err)
	}
	lapsed, err := s.lapsed(ctx, s.db, o)
	if err != nil {
		return Order{}, fmt.Errorf("reading order %s: %w", orderNo, err)
	}
	if lapsed {
		o.Status = StatusExpired // its stock comes back at the sweeper's next run
	}
	return o, nil
}

// lapsed reports whether o is a hold past its expiry on the database's clock: expired,
// though its stock is only given back by the sweeper's next run, or earlier by
// expireIfLapsed.
func (s *Store) lapsed(ctx context.Context, q querier, o Order) (bool, error) {
	if o.Status != StatusHeld {
		return false, nil
	}
	now, err := s.now(ctx, q)
	if err != nil {
		return false, err
	}
	return !now.Before(o.ExpiresAt), nil
}

// expireIfLapsed gives back the stock of o, whose hold row tx has locked, when its hold
// has lapsed, as the sweeper would, and reports whether it did (o is then expired). A call
// that finds a lapsed hold does this rather than wait for the sweeper, so that it answers
// what GetOrder shows.
func (s *Store) expireIfLapsed(ctx context.Context, tx *sql.Tx, o *Order) (bool, error) {
	if lapsed, err := s.lapsed(ctx, tx, *o); err != nil || !lapsed {
		return false, err
	}
	if err := s.release(ctx, tx, *o, StatusExpired); err != nil {
		return false, err
	}
	o.Status = StatusExpired
	return true, nil
}

// loadOrder reads an order; lock takes its hold row's lock (inside a transaction).
func (s *Store) loadOrder(ctx context.Context, q querier, orderNo string, lock bool) (Order, error) {
	query := "SELECT status, expires_at, COALESCE(warehouse, '') FROM hold WHERE order_no = ?"
	if lock {
		query += " FOR UPDATE"
	}
	o := Order{OrderNo: orderNo, Items: []OrderItem{}}
	err := q.QueryRowContext(ctx, query, orderNo).Scan(&o.Status, &o.ExpiresAt, &o.Warehouse)
	if errors.Is(err, sql.ErrNoRows) {
		return Order{}, fmt.Errorf("order %s: %w", orderNo, ErrNotFound)
	}
	if err != nil {
		return Order{}, fmt.Errorf("reading hold: %w", err)
	}
	items, err := loadItems(ctx, q, []string{orderNo})
	if err != nil {
		return Order{}, err
	}
	if its := items[orderNo]; its != nil {
		o.Items = its
	}
	return o, nil
}

// loadItems reads the items of orders (also those rolled back), sorted by SKU, then
// activity, by order number; an order without items has none in the map.
func loadItems(ctx context.Context, q querier, orderNos []string) (map[string][]OrderItem, error) {
	items := make(map[string][]OrderItem, len(orderNos))
	if len(orderNos) == 0 {
		return items, nil
	}
	args := make([]any, len(orderNos))
	for i, n := range orderNos {
		args[i] = n
	}
	rows, err := q.QueryContext(ctx, `SELECT order_no, sku_id, activity_id, qty, shard_takes FROM deduction_log
		WHERE order_no IN (`+strings.TrimSuffix(strings.Repeat("?,", len(orderNos)), ",")+`) ORDER BY order_no, sku_id, activity_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("reading deduction log: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var orderNo, takes string
		var it OrderItem
		if err := rows.Scan(&orderNo, &it.SKU, &it.Activity, &it.Qty, &takes); err != nil {
			return nil, fmt.Errorf("reading deduction log: %w", err)
		}
		it.Shards = parseTakes(takes)
		items[orderNo] = append(items[orderNo], it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading deduction log: %w", err)
	}
	return items, nil
}

// Confirm records payment: the hold becomes final and reserved stock grows by the order's
// items. Confirming a confirmed or shipped order changes nothing (Replayed). A cancelled
// order returns ErrCancelled; a hold past its expiry is released here (expireIfLapsed) and
// returns ErrExpired.
func (s *Store) Confirm(ctx context.Context, orderNo string) (Order, error) {
	if err := validID("order_no", orderNo); err != nil {
		return Order{}, fmt.Errorf("confirming order: %w", err)
	}
	order, err := s.changeHeld(ctx, orderNo, nil, func(tx *sql.Tx, order *Order) error {
		for _, it := range order.Items {
			if _, err := tx.ExecContext(ctx, `INSERT INTO reserved (sku_id, qty) VALUES (?, ?)
				ON DUPLICATE KEY UPDATE qty = qty + VALUES(qty)`, it.SKU, it.Qty); err != nil {
				return fmt.Errorf("reserving %d of %s: %w", it.Qty, it.SKU, err)
			}
		}
		if err := setStatus(ctx, tx, orderNo, StatusConfirmed, ""); err != nil {
			return err
		}
		order.Status = StatusConfirmed
		return nil
	})
	if err != nil {
		return order, fmt.Errorf("confirming order %s: %w", orderNo, err)
	}
	return order, nil
}

// changeHeld runs change in a transaction on orderNo's order, its hold row locked, when
// the order is held and its hold has not lapsed, and returns the order as change left it.
// Otherwise it changes nothing and returns the order and: for a confirmed or shipped
// order paid (nil: none, with Replayed set), ErrCancelled, or ErrExpired, once it has
// released a lapsed hold (expireIfLapsed).
func (s *Store) changeHeld(ctx context.Context, orderNo string, paid error, change func(tx *sql.Tx, order *Order) error) (Order, error) {
	var order Order
	var outcome error
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		outcome = nil
		o, err := s.loadOrder(ctx, tx, orderNo, true)
		if err != nil {
			return err
		}
		order = o
		switch o.Status {
		case StatusConfirmed, StatusShipped:
			if paid != nil {
				return fmt.Errorf("it is %s: %w", o.Status, paid)
			}
			order.Replayed = true
			return nil
		case StatusCancelled:
			return ErrCancelled
		case StatusExpired:
			return ErrExpired
		}
		lapsed, err := s.expireIfLapsed(ctx, tx, &order)
		if err != nil {
			return err
		}
		if lapsed {
			outcome = ErrExpired // committed: the hold is released
			return nil
		}
		return change(tx, &order)
	})
	if err == nil {
		err = outcome
	}
	return order, err
}

// Extend makes a held order's hold last ttl from now on the database's clock, for a
// payment that takes longer: expires_at becomes now + ttl. It never shortens a hold: when
// the hold already lasts that long it changes nothing and returns the order with Replayed
// set, so that a retry never stacks extensions. ttl is positive and at most
// config.MaxHoldTTL, as for a deduction. A confirmed or shipped order returns ErrNotHeld,
// a cancelled one ErrCancelled; a hold past its expiry is released here (expireIfLapsed)
// and returns ErrExpired: an extension cannot bring a lapsed hold back.
func (s *Store) Extend(ctx context.Context, orderNo string, ttl time.Duration) (Order, error) {
	if err := validID("order_no", orderNo); err != nil {
		return Order{}, fmt.Errorf("extending the hold of order: %w", err)
	}
	ttl, err := validHoldTTL(ttl)
	if err != nil {
		return Order{}, fmt.Errorf("extending the hold of order %s: %w", orderNo, err)
	}
	order, err := s.changeHeld(ctx, orderNo, ErrNotHeld, func(tx *sql.Tx, order *Order) error {
		now, err := s.now(ctx, tx)
		if err != nil {
			return err
		}
		expires := now.Add(ttl)
		if !expires.After(order.ExpiresAt) {
			order.Replayed = true
			return nil
		}
		if _, err := tx.ExecContext(ctx, "UPDATE hold SET expires_at = ? WHERE order_no = ?", expires, orderNo); err != nil {
			return fmt.Errorf("setting the expiry: %w", err)
		}
		order.ExpiresAt = expires
		return nil
	})
	if err != nil {
		return order, fmt.Errorf("extending the hold of order %s: %w", orderNo, err)
	}
	return order, nil
}

// cancelTimeout bounds a cancel, which runs detached from its caller's cancellation.
const cancelTimeout = 30 * time.Second

// Cancel refunds an order before shipment: its sellable (or activity) stock is restored,
// reserved stock too when it was confirmed, its deduction log rows are soft-deleted and
// rollback rows written. Cancelling a cancelled or expired order changes nothing
// (Replayed); nor does one of a hold past its expiry, which is released as expired
// (expireIfLapsed). A shipped order returns ErrShipped.
//
// An order not there yet is recorded as cancelled at once, with no items, and Cancel
// returns ErrNotFound: its deduction, still in flight or sent later, then finds the order
// cancelled and is refused (ErrCancelled) instead of holding stock. The order's hold row
// decides between the two: a deduction that wrote it first, even uncommitted, is waited
// for and cancelled.
//
// Cancel runs detached from ctx's cancellation (bounded by cancelTimeout): a caller that
// hangs up does not stop a cancel it asked for, so a late deduction is refused whatever
// the caller does.
func (s *Store) Cancel(ctx context.Context, orderNo string) (Order, error) {
	if err := validID("order_no", orderNo); err != nil {
		return Order{}, fmt.Errorf("cancelling order: %w", err)
	}
	ctx, stop := context.WithTimeout(context.WithoutCancel(ctx), cancelTimeout)
	defer stop()
	o, err := s.cancelOnce(ctx, orderNo)
	if errors.Is(err, ErrNotFound) {
		recorded, recordErr := s.recordCancelled(ctx, orderNo)
		if recordErr != nil {
			return Order{}, fmt.Errorf("cancelling order %s: recording the cancel: %w", orderNo, recordErr)
		}
		if recorded {
			s.log.Info("cancel of an order not deducted: recorded as cancelled", zap.String("order_no", orderNo))
			return Order{}, fmt.Errorf("cancelling order %s: not deducted; recorded as cancelled, so that its deduction is refused: %w",
				orderNo, ErrNotFound)
		}
		// Its deduction wrote the order between the look and the record: cancel that.
		o, err = s.cancelOnce(ctx, orderNo)
	}
	if err != nil {
		return o, fmt.Errorf("cancelling order %s: %w", orderNo, err)
	}
	return o, nil
}

// recordCancelled writes orderNo's hold row as cancelled, with no items; recorded is false
// when the order already has one (its deduction came first).
func (s *Store) recordCancelled(ctx context.Context, orderNo string) (recorded bool, err error) {
	now, err := s.now(ctx, s.db)
	if err != nil {
		return false, err
	}
	_, err = s.db.ExecContext(ctx, "INSERT INTO hold (order_no, status, expires_at) VALUES (?, ?, ?)",
		orderNo, StatusCancelled, now)
	if isDuplicateKey(err) {
		return false, nil
	}
	return err == nil, err
}

func (s *Store) cancelOnce(ctx context.Context, orderNo string) (Order, error) {
	var order Order
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		o, err := s.loadOrder(ctx, tx, orderNo, true)
		if err != nil {
			return err
		}
		order = o
		switch o.Status {
		case StatusCancelled, StatusExpired:
			order.Replayed = true
			return nil
		case StatusShipped:
			return ErrShipped
		}
		lapsed, err := s.expireIfLapsed(ctx, tx, &order)
		if err != nil {
			return err
		}
		if lapsed {
			order.Replayed = true // as for an expired order: it was, since its expiry
			return nil
		}
		if err := s.release(ctx, tx, o, StatusCancelled); err != nil {
			return err
		}
		order.Status = StatusCancelled
		return nil
	})
	return order, err
}

// release gives an order's stock back in tx and moves it to status (cancelled or
// expired). The caller holds the hold row's lock and has checked the order is held or
// confirmed, which is what makes each release happen once.
func (s *Store) release(ctx context.Context, tx *sql.Tx, o Order, status OrderStatus) error {
	reason := "cancel"
	if status == StatusExpired {
		reason = "expired"
	}
	for _, it := range o.Items {
		if it.Activity != "" {
			res, err := tx.ExecContext(ctx, "UPDATE activity_stock SET qty = qty + ? WHERE sku_id = ? AND activity_id = ?",
				it.Qty, it.SKU, it.Activity)
			if err != nil {
				return fmt.Errorf("restoring %d of %s to activity %s: %w", it.Qty, it.SKU, it.Activity, err)
			}
			if affected(res) != 1 {
				s.log.Warn("activity stock gone; units not restored", zap.String("order_no", o.OrderNo),
					zap.String("sku", it.SKU), zap.String("activity", it.Activity), zap.Int64("qty", it.Qty))
			}
		} else if err := restoreSellable(ctx, tx, it.SKU, it.Qty, it.Shards); err != nil {
			return err
		}
		if o.Status == StatusConfirmed {
			res, err := tx.ExecContext(ctx, "UPDATE reserved SET qty = qty - ? WHERE sku_id = ? AND qty >= ?", it.Qty, it.SKU, it.Qty)
			if err != nil {
				return fmt.Errorf("releasing %d reserved of %s: %w", it.Qty, it.SKU, err)
			}
			if affected(res) != 1 {
				return fmt.Errorf("releasing %d reserved of %s: fewer reserved than the order holds", it.Qty, it.SKU)
			}
		}
	}
	now, err := s.now(ctx, tx)
	if err != nil {
		return err
	}
	if len(o.Items) > 0 {
		if _, err := tx.ExecContext(ctx, "UPDATE deduction_log SET deleted_at = ? WHERE order_no = ? AND deleted_at IS NULL",
			now, o.OrderNo); err != nil {
			return fmt.Errorf("soft-deleting deduction log: %w", err)
		}
		args := make([]any, 0, 6*len(o.Items))
		for _, it := range o.Items {
			kind := kindSellable
			if it.Activity != "" {
				kind = kindActivity
			}
			args = append(args, o.OrderNo, it.SKU, kind, it.Activity, it.Qty, reason)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO rollback_log (order_no, sku_id, kind, activity_id, qty, reason) VALUES "+
			placeholders(len(o.Items), 6), args...); err != nil {
			return fmt.Errorf("writing rollback log: %w", err)
		}
	}
	return setStatus(ctx, tx, o.OrderNo, status, "")
}

// restoreSellable gives qty units of sku back to sellable stock: each take's quantity onto
// the shard it names (for an order item, every shard its deduction took from). A take whose
// shard no longer exists — a reshard lowered the shard count since — goes to shard 0, which
// every SKU has, so the whole of qty is always restored. Takes that are not a split of qty
// (a log row without them) are ignored and qty goes to shard 0.
func restoreSellable(ctx context.Context, tx *sql.Tx, sku string, qty int64, takes []ShardTake) error {
	if !splitsQty(takes, qty) {
		takes = []ShardTake{{Shard: 0, Qty: qty}}
	}
	// Shard key order, the order in which takers and reshards lock a SKU's shards.
	takes = slices.SortedFunc(slices.Values(takes), func(a, b ShardTake) int { return cmp.Compare(a.Shard, b.Shard) })
	var homeless int64
	for _, t := range takes {
		res, err := tx.ExecContext(ctx, "UPDATE sellable_shard SET qty = qty + ? WHERE sku_id = ? AND shard = ?", t.Qty, sku, t.Shard)
		if err != nil {
			return fmt.Errorf("restoring %d of %s to shard %d: %w", t.Qty, sku, t.Shard, err)
		}
		if affected(res) != 1 {
			homeless += t.Qty
		}
	}
	if homeless == 0 {
		return nil
	}
	res, err := tx.ExecContext(ctx, "UPDATE sellable_shard SET qty = qty + ? WHERE sku_id = ? AND shard = 0", homeless, sku)
	if err != nil {
		return fmt.Errorf("restoring %d of %s from removed shards to shard 0: %w", homeless, sku, err)
	}
	if affected(res) != 1 {
		return fmt.Errorf("restoring %d of %s: the SKU has no shard 0: %w", homeless, sku, ErrUnknownSKU)
	}
	return nil
}

// splitsQty reports whether takes are positive quantities on valid shards adding up to qty.
func splitsQty(takes []ShardTake, qty int64) bool {
	left := qty
	for _, t := range takes {
		if t.Shard < 0 || t.Qty <= 0 || t.Qty > left {
			return false
		}
		left -= t.Qty
	}
	return len(takes) > 0 && left == 0
}

// checkShip is what Ship asks of its arguments before touching the database.
func checkShip(orderNo, warehouse string) error {
	if err := validID("order_no", orderNo); err != nil {
		return err
	}
	return validWarehouse("warehouse", warehouse)
}

func setStatus(ctx context.Context, tx *sql.Tx, orderNo string, status OrderStatus, warehouse string) error {
	var err error
	if warehouse != "" {
		_, err = tx.ExecContext(ctx, "UPDATE hold SET status = ?, warehouse = ? WHERE order_no = ?", status, warehouse, orderNo)
	} else {
		_, err = tx.ExecContext(ctx, "UPDATE hold SET status = ? WHERE order_no = ?", status, orderNo)
	}
	if err != nil {
		return fmt.Errorf("setting order %s %s: %w", orderNo, status, err)
	}
	return nil
}

// shippedQty is how many units of each SKU an order's items ship, in SKU order: a sellable
// line and an activity line of one SKU leave the warehouse as one quantity.
func shippedQty(items []OrderItem) []Item {
	var out []Item
	for _, it := range items { // sorted by SKU
		if n := len(out); n > 0 && out[n-1].SKU == it.SKU {
			out[n-1].Qty += it.Qty
			continue
		}
		out = append(out, Item{SKU: it.SKU, Qty: it.Qty})
	}
	return out
}

// Ship records that warehouse shipped a confirmed order: reserved stock is released and
// the warehouse's physical stock lowered. Afterwards the order can no longer be cancelled
// (ErrShipped). A held order returns ErrNotConfirmed; an unknown warehouse
// ErrUnknownWarehouse; physical stock lower than the order a *ShortageError naming the
// warehouse, one Shortage per SKU short (its lines together).
func (s *Store) Ship(ctx context.Context, orderNo, warehouse string) (Order, error) {
	if err := checkShip(orderNo, warehouse); err != nil {
		return Order{}, fmt.Errorf("shipping order %q: %w", orderNo, err)
	}
	var order Order
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		o, err := s.loadOrder(ctx, tx, orderNo, true)
		if err != nil {
			return err
		}
		order = o
		switch o.Status {
		case StatusShipped:
			if o.Warehouse != warehouse {
				return fmt.Errorf("shipped from %s, not %s: %w", o.Warehouse, warehouse, ErrShipped)
			}
			order.Replayed = true
			return nil
		case StatusHeld:
			return ErrNotConfirmed
		case StatusCancelled:
			return ErrCancelled
		case StatusExpired:
			return ErrExpired
		}
		var exists bool
		if err := tx.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM warehouse WHERE code = ?)", warehouse).Scan(&exists); err != nil {
			return fmt.Errorf("reading warehouse %s: %w", warehouse, err)
		}
		if !exists {
			return fmt.Errorf("warehouse %s: %w", warehouse, ErrUnknownWarehouse)
		}
		var short []Shortage
		for _, it := range shippedQty(o.Items) {
			res, err := tx.ExecContext(ctx, "UPDATE physical_stock SET qty = qty - ? WHERE sku_id = ? AND warehouse_code = ? AND qty >= ?",
				it.Qty, it.SKU, warehouse, it.Qty)
			if err != nil {
				return fmt.Errorf("lowering physical stock of %s at %s: %w", it.SKU, warehouse, err)
			}
			if affected(res) != 1 {
				var have int64 // 0 when the warehouse has no row of the SKU
				if err := tx.QueryRowContext(ctx, "SELECT qty FROM physical_stock WHERE sku_id = ? AND warehouse_code = ?",
					it.SKU, warehouse).Scan(&have); err != nil && !errors.Is(err, sql.ErrNoRows) {
					return fmt.Errorf("reading physical stock of %s at %s: %w", it.SKU, warehouse, err)
				}
				short = append(short, Shortage{SKU: it.SKU, Warehouse: warehouse, Requested: it.Qty, Available: have})
				continue
			}
			res, err = tx.ExecContext(ctx, "UPDATE reserved SET qty = qty - ? WHERE sku_id = ? AND qty >= ?", it.Qty, it.SKU, it.Qty)
			if err != nil {
				return fmt.Errorf("releasing reserved %s: %w", it.SKU, err)
			}
			if affected(res) != 1 {
				return fmt.Errorf("releasing %d reserved of %s: fewer reserved than the order holds", it.Qty, it.SKU)
			}
		}
		if len(short) > 0 {
			return &ShortageError{Items: short}
		}
		if err := setStatus(ctx, tx, orderNo, StatusShipped, warehouse); err != nil {
			return err
		}
		order.Status, order.Warehouse = StatusShipped, warehouse
		return nil
	})
	if err != nil {
		return order, fmt.Errorf("shipping order %s: %w", orderNo, err)
	}
	return order, nil
}
