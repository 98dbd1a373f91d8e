package inventory

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"go.uber.org/zap"
)

// SKUStock is everything known about one SKU's stock.
type SKUStock struct {
	SKU string `json:"sku"`
	// Sellable is the logical sellable stock, the sum of ShardQty.
	Sellable   int64           `json:"sellable"`
	Shards     int             `json:"shards"`
	ShardQty   []int64         `json:"shard_qty"`
	Reserved   int64           `json:"reserved"`
	Physical   []PhysicalLevel `json:"physical"`
	Activities []Activity      `json:"activities"`
}

// Activity is stock of a SKU set aside for a campaign between StartsAt and EndsAt.
type Activity struct {
	SKU      string    `json:"sku,omitempty"`
	Activity string    `json:"activity"`
	Qty      int64     `json:"qty"`
	StartsAt time.Time `json:"starts_at"`
	EndsAt   time.Time `json:"ends_at"`
}

// The range of MariaDB's DATETIME: activity windows must fit in it.
var (
	minDatetime = time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)
	maxDatetime = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
)

func validShards(m int) error {
	if m < 1 || m > maxShards {
		return invalid("shards", "must be between 1 and %d, got %d", maxShards, m)
	}
	return nil
}

// checkSetStock is what SetStock asks of its arguments before touching the database.
func checkSetStock(sku string, sellable int64, shards int) error {
	if err := validID("sku", sku); err != nil {
		return err
	}
	if err := validQty("sellable", sellable, 0); err != nil {
		return err
	}
	if shards != 0 {
		return validShards(shards)
	}
	return nil
}

// checkReshard is what Reshard asks of its arguments before touching the database.
func checkReshard(sku string, m int) error {
	if err := validID("sku", sku); err != nil {
		return err
	}
	return validShards(m)
}

// AdjustRequest adds (Delta > 0) or removes (Delta < 0) sellable stock of SKU, with the
// Reason recorded in adjustment_log. RequestID, when set, makes it idempotent: an
// adjustment with a RequestID already in adjustment_log is not applied again.
type AdjustRequest struct {
	SKU       string
	Delta     int64
	Reason    string
	RequestID string
}

// Adjustment answers an adjust: the SKU's stock after it.
type Adjustment struct {
	SKUStock
	// Replayed is true when the adjustment's RequestID was already applied: nothing was
	// added or removed by this call, and the stock is the SKU's stock now.
	Replayed bool `json:"replayed"`
}

// checkAdjust is what Adjust asks of its arguments before touching the database.
func checkAdjust(req AdjustRequest) error {
	if err := validID("sku", req.SKU); err != nil {
		return err
	}
	if req.Delta == 0 {
		return invalid("delta", "must not be zero")
	}
	if req.Delta < -maxQty || req.Delta > maxQty {
		return invalid("delta", "must be between %d and %d, got %d", -int64(maxQty), int64(maxQty), req.Delta)
	}
	if req.Reason == "" || len(req.Reason) > 255 {
		return invalid("reason", "must be 1 to 255 bytes")
	}
	if req.RequestID != "" {
		return validID("request_id", req.RequestID)
	}
	return nil
}

// SetStock sets sku's sellable stock to sellable, spread evenly over shards rows (0 keeps
// the SKU's current count, 1 for a new SKU). It creates the SKU when missing.
func (s *Store) SetStock(ctx context.Context, sku string, sellable int64, shards int) (SKUStock, error) {
	if err := checkSetStock(sku, sellable, shards); err != nil {
		return SKUStock{}, fmt.Errorf("setting stock of %q: %w", sku, err)
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "INSERT INTO sku (sku_id, shards) VALUES (?, 1) ON DUPLICATE KEY UPDATE sku_id = sku_id", sku); err != nil {
			return fmt.Errorf("creating sku: %w", err)
		}
		var current int
		if err := tx.QueryRowContext(ctx, "SELECT shards FROM sku WHERE sku_id = ? FOR UPDATE", sku).Scan(&current); err != nil {
			return fmt.Errorf("locking sku: %w", err)
		}
		m := shards
		if m == 0 {
			m = current
		}
		if _, err := tx.ExecContext(ctx, "SELECT shard FROM sellable_shard WHERE sku_id = ? ORDER BY shard FOR UPDATE", sku); err != nil {
			return fmt.Errorf("locking shards: %w", err)
		}
		return writeShards(ctx, tx, sku, sellable, m)
	})
	if err != nil {
		return SKUStock{}, fmt.Errorf("setting stock of %s: %w", sku, err)
	}
	s.log.Info("sellable stock set", zap.String("sku", sku), zap.Int64("sellable", sellable), zap.Int("shards", shards))
	return s.Get(ctx, sku)
}

// writeShards makes sku's shards 0..m-1 hold total between them (as evenly as possible)
// and removes any shard ≥ m. The caller holds the locks of the SKU and its shards.
func writeShards(ctx context.Context, tx *sql.Tx, sku string, total int64, m int) error {
	if _, err := tx.ExecContext(ctx, "DELETE FROM sellable_shard WHERE sku_id = ? AND shard >= ?", sku, m); err != nil {
		return fmt.Errorf("removing shards of %s: %w", sku, err)
	}
	args := make([]any, 0, 3*m)
	for i := 0; i < m; i++ {
		qty := total / int64(m)
		if int64(i) < total%int64(m) {
			qty++
		}
		args = append(args, sku, i, qty)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO sellable_shard (sku_id, shard, qty) VALUES "+placeholders(m, 3)+
		" ON DUPLICATE KEY UPDATE qty = VALUES(qty)", args...); err != nil {
		return fmt.Errorf("writing shards of %s: %w", sku, err)
	}
	if _, err := tx.ExecContext(ctx, "UPDATE sku SET shards = ? WHERE sku_id = ?", m, sku); err != nil {
		return fmt.Errorf("recording shard count of %s: %w", sku, err)
	}
	return nil
}

// skuWithoutStock is the error of a call that needs sku's sellable stock where the SKU has
// none set (no row in sku). When the WMS has reported it, the SKU exists (Get answers it,
// with no shards): ErrUnknownSKU, saying to set its stock first, as a deduction of it
// answers. When nobody has, ErrNotFound.
func skuWithoutStock(ctx context.Context, q querier, sku string) error {
	var reported bool
	if err := q.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM physical_stock WHERE sku_id = ?)", sku).Scan(&reported); err != nil {
		return fmt.Errorf("reading physical stock of %s: %w", sku, err)
	}
	if reported {
		return &noSellableStockError{sku: sku}
	}
	return fmt.Errorf("sku %s: %w", sku, ErrNotFound)
}

// Reshard spreads sku's sellable stock over m shards, keeping the total. It runs online:
// concurrent deductions wait for it or retry on the new shards; none is lost or doubled.
// A SKU with no sellable stock set returns ErrUnknownSKU when the WMS has reported it,
// ErrNotFound otherwise (skuWithoutStock).
func (s *Store) Reshard(ctx context.Context, sku string, m int) (SKUStock, error) {
	if err := checkReshard(sku, m); err != nil {
		return SKUStock{}, fmt.Errorf("resharding %q: %w", sku, err)
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var current int
		err := tx.QueryRowContext(ctx, "SELECT shards FROM sku WHERE sku_id = ? FOR UPDATE", sku).Scan(&current)
		if errors.Is(err, sql.ErrNoRows) {
			return skuWithoutStock(ctx, tx, sku)
		}
		if err != nil {
			return fmt.Errorf("locking sku: %w", err)
		}
		shards, err := readShards(ctx, tx, sku, true)
		if err != nil {
			return err
		}
		return writeShards(ctx, tx, sku, sumShards(shards), m)
	})
	if err != nil {
		return SKUStock{}, fmt.Errorf("resharding %s: %w", sku, err)
	}
	s.log.Info("resharded", zap.String("sku", sku), zap.Int("shards", m))
	return s.Get(ctx, sku)
}

// Adjust adds (Delta > 0) or removes (Delta < 0) sellable stock of req.SKU, with the
// reason recorded in adjustment_log. Removing more than the SKU holds returns a
// *ShortageError; adding more than would fit under maxQty a *ValidationError; a SKU with
// no sellable stock set ErrUnknownSKU when the WMS has reported it, ErrNotFound otherwise
// (skuWithoutStock). None of them writes anything, so neither does it record the RequestID.
//
// With a RequestID, a retry or a concurrent duplicate adjusts once: every call after the
// one that applied it returns the SKU's stock now with Replayed set (replayAdjustment), or
// ErrRequestConflict when it names another SKU or delta. The reason of a repeat is not
// compared; the first one's is kept.
func (s *Store) Adjust(ctx context.Context, req AdjustRequest) (Adjustment, error) {
	sku, delta := req.SKU, req.Delta
	if err := checkAdjust(req); err != nil {
		return Adjustment{}, fmt.Errorf("adjusting stock of %q: %w", sku, err)
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		// The log row first, claiming a request_id: a concurrent duplicate waits on the
		// unique key, touching no stock, until this transaction ends; then it finds the
		// row, or claims it itself if this one was rolled back.
		if err := insertAdjustment(ctx, tx, req); err != nil {
			return err
		}
		query := "SELECT shards FROM sku WHERE sku_id = ?"
		if delta > 0 {
			// Adjusts, sets and reshards of the SKU wait for this one, so the total read
			// next stays the total until the addition.
			query += " FOR UPDATE"
		}
		var m int
		err := tx.QueryRowContext(ctx, query, sku).Scan(&m)
		if errors.Is(err, sql.ErrNoRows) {
			return skuWithoutStock(ctx, tx, sku)
		}
		if err != nil {
			return fmt.Errorf("reading sku: %w", err)
		}
		if delta > 0 {
			var total int64
			if err := tx.QueryRowContext(ctx, "SELECT COALESCE(SUM(qty), 0) FROM sellable_shard WHERE sku_id = ?", sku).Scan(&total); err != nil {
				return fmt.Errorf("reading sellable stock: %w", err)
			}
			if total > maxQty-delta {
				return invalid("delta", "would take sellable stock from %d over the maximum %d", total, int64(maxQty))
			}
			// All of delta onto one shard, at random so that additions spread; shard 0 when a
			// concurrent reshard has just removed it.
			if err := restoreSellable(ctx, tx, sku, delta, []ShardTake{{Shard: rand.IntN(m), Qty: delta}}); err != nil {
				return err
			}
		} else {
			takes, available, err := s.takeSellable(ctx, tx, sku, -delta, true)
			if err != nil {
				return err
			}
			if takes == nil {
				return &ShortageError{Items: []Shortage{{SKU: sku, Requested: -delta, Available: available}}}
			}
		}
		return nil
	})
	if errors.Is(err, errAlreadyAdjusted) {
		return s.replayAdjustment(ctx, req)
	}
	if err != nil {
		return Adjustment{}, fmt.Errorf("adjusting stock of %s by %d: %w", sku, delta, err)
	}
	s.log.Info("sellable stock adjusted", zap.String("sku", sku), zap.Int64("delta", delta), zap.String("reason", req.Reason),
		zap.String("request_id", req.RequestID))
	stock, err := s.Get(ctx, sku)
	return Adjustment{SKUStock: stock}, err
}

// errAlreadyAdjusted aborts an adjustment transaction whose request_id is already logged.
var errAlreadyAdjusted = errors.New("request_id already adjusted")

// insertAdjustment writes req's adjustment_log row; errAlreadyAdjusted when its
// request_id is already there.
func insertAdjustment(ctx context.Context, tx *sql.Tx, req AdjustRequest) error {
	var requestID sql.NullString
	if req.RequestID != "" {
		requestID = sql.NullString{String: req.RequestID, Valid: true}
	}
	_, err := tx.ExecContext(ctx, "INSERT INTO adjustment_log (sku_id, delta, reason, request_id) VALUES (?, ?, ?, ?)",
		req.SKU, req.Delta, req.Reason, requestID)
	if isDuplicateKey(err) {
		return errAlreadyAdjusted
	}
	if err != nil {
		return fmt.Errorf("writing adjustment log: %w", err)
	}
	return nil
}

// replayAdjustment answers an adjustment (req, checked) whose request_id is already in
// adjustment_log: the SKU's stock now with Replayed set when the logged adjustment is of
// the same SKU and delta, ErrRequestConflict naming both otherwise.
func (s *Store) replayAdjustment(ctx context.Context, req AdjustRequest) (Adjustment, error) {
	var sku string
	var delta int64
	err := s.db.QueryRowContext(ctx, "SELECT sku_id, delta FROM adjustment_log WHERE request_id = ?", req.RequestID).Scan(&sku, &delta)
	if err != nil {
		return Adjustment{}, fmt.Errorf("adjusting stock of %s by %d: reading the adjustment of request_id %s: %w", req.SKU, req.Delta, req.RequestID, err)
	}
	if sku != req.SKU || delta != req.Delta {
		return Adjustment{}, fmt.Errorf("adjusting stock of %s by %d: request_id %s adjusted %s by %d; a retry must carry the same sku and delta: %w",
			req.SKU, req.Delta, req.RequestID, sku, delta, ErrRequestConflict)
	}
	stock, err := s.Get(ctx, sku)
	if err != nil {
		return Adjustment{}, fmt.Errorf("adjusting stock of %s by %d (request_id %s, already applied): %w", sku, delta, req.RequestID, err)
	}
	return Adjustment{SKUStock: stock, Replayed: true}, nil
}

// Get returns every stock figure of sku, read from one consistent snapshot; ErrNotFound
// when the SKU has never been set and the WMS never reported it. A SKU the WMS reported
// before its sellable stock was set shows its physical stock, with no shards.
func (s *Store) Get(ctx context.Context, sku string) (SKUStock, error) {
	if err := validID("sku", sku); err != nil {
		return SKUStock{}, fmt.Errorf("reading stock: %w", err)
	}
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return SKUStock{}, fmt.Errorf("reading stock of %s: %w", sku, err)
	}
	defer tx.Rollback()
	out, err := readStock(ctx, tx, sku)
	if err != nil {
		return SKUStock{}, fmt.Errorf("reading stock of %s: %w", sku, err)
	}
	return out, nil
}

func readStock(ctx context.Context, tx *sql.Tx, sku string) (SKUStock, error) {
	out := SKUStock{SKU: sku, ShardQty: []int64{}, Physical: []PhysicalLevel{}, Activities: []Activity{}}
	err := tx.QueryRowContext(ctx, "SELECT shards FROM sku WHERE sku_id = ?", sku).Scan(&out.Shards)
	set := err == nil
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return out, fmt.Errorf("reading sku: %w", err)
	}
	shards, err := readShards(ctx, tx, sku, false)
	if err != nil && !errors.Is(err, ErrUnknownSKU) {
		return out, err
	}
	for _, sh := range shards {
		out.ShardQty = append(out.ShardQty, sh.Qty)
		out.Sellable += sh.Qty
	}
	err = tx.QueryRowContext(ctx, "SELECT qty FROM reserved WHERE sku_id = ?", sku).Scan(&out.Reserved)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return out, fmt.Errorf("reading reserved: %w", err)
	}
	rows, err := tx.QueryContext(ctx, "SELECT warehouse_code, qty FROM physical_stock WHERE sku_id = ? ORDER BY warehouse_code", sku)
	if err != nil {
		return out, fmt.Errorf("reading physical stock: %w", err)
	}
	for rows.Next() {
		var p PhysicalLevel
		if err := rows.Scan(&p.Warehouse, &p.Qty); err != nil {
			rows.Close()
			return out, fmt.Errorf("reading physical stock: %w", err)
		}
		out.Physical = append(out.Physical, p)
	}
	if err := rows.Err(); err != nil {
		// Not "no physical stock": a read cut short must not answer 404 not_found.
		rows.Close()
		return out, fmt.Errorf("reading physical stock: %w", err)
	}
	rows.Close()
	if !set && len(out.Physical) == 0 {
		return out, fmt.Errorf("sku %s: %w", sku, ErrNotFound)
	}
	rows, err = tx.QueryContext(ctx, "SELECT activity_id, qty, starts_at, ends_at FROM activity_stock WHERE sku_id = ? ORDER BY activity_id", sku)
	if err != nil {
		return out, fmt.Errorf("reading activity stock: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var a Activity
		if err := rows.Scan(&a.Activity, &a.Qty, &a.StartsAt, &a.EndsAt); err != nil {
			return out, fmt.Errorf("reading activity stock: %w", err)
		}
		out.Activities = append(out.Activities, a)
	}
	if err := rows.Err(); err != nil {
		return out, fmt.Errorf("reading activity stock: %w", err)
	}
	return out, nil
}

// PutActivity sets the stock a campaign sets aside for a SKU and its running window. The
// SKU's sellable stock must be set: ErrUnknownSKU when only the WMS has reported it,
// ErrNotFound when nobody has (skuWithoutStock).
func (s *Store) PutActivity(ctx context.Context, a Activity) (Activity, error) {
	if err := validID("sku", a.SKU); err != nil {
		return a, fmt.Errorf("setting activity stock: %w", err)
	}
	if err := validID("activity", a.Activity); err != nil {
		return a, fmt.Errorf("setting activity stock of %s: %w", a.SKU, err)
	}
	if err := validQty("qty", a.Qty, 0); err != nil {
		return a, fmt.Errorf("setting activity stock of %s: %w", a.SKU, err)
	}
	for _, f := range []struct {
		field string
		at    time.Time
	}{{"starts_at", a.StartsAt}, {"ends_at", a.EndsAt}} {
		if field, at := f.field, f.at; at.Before(minDatetime) || !at.Before(maxDatetime) {
			return a, fmt.Errorf("setting activity stock of %s: %w", a.SKU, invalid(field, "must be from %s to before %s, got %s",
				minDatetime.Format(time.DateOnly), maxDatetime.Format(time.DateOnly), at.Format(time.RFC3339Nano)))
		}
	}
	// Stored to the microsecond, as DATETIME(6) keeps them: the answer names what is stored.
	a.StartsAt, a.EndsAt = a.StartsAt.UTC().Truncate(time.Microsecond), a.EndsAt.UTC().Truncate(time.Microsecond)
	if !a.EndsAt.After(a.StartsAt) {
		return a, fmt.Errorf("setting activity stock of %s: %w", a.SKU, invalid("ends_at", "must be after starts_at (%s), got %s",
			a.StartsAt.Format(time.RFC3339Nano), a.EndsAt.Format(time.RFC3339Nano)))
	}
	var exists bool
	if err := s.db.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM sku WHERE sku_id = ?)", a.SKU).Scan(&exists); err != nil {
		return a, fmt.Errorf("setting activity stock of %s: %w", a.SKU, err)
	}
	if !exists {
		return a, fmt.Errorf("setting activity %s stock of %s: %w", a.Activity, a.SKU, skuWithoutStock(ctx, s.db, a.SKU))
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO activity_stock (sku_id, activity_id, qty, starts_at, ends_at) VALUES (?, ?, ?, ?, ?)
		ON DUPLICATE KEY UPDATE qty = VALUES(qty), starts_at = VALUES(starts_at), ends_at = VALUES(ends_at)`,
		a.SKU, a.Activity, a.Qty, a.StartsAt, a.EndsAt)
	if err != nil {
		return a, fmt.Errorf("setting activity %s stock of %s: %w", a.Activity, a.SKU, err)
	}
	return a, nil
}
