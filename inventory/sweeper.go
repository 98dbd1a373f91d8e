package inventory

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// sweepBatch is how many expired holds one sweep transaction releases.
const sweepBatch = 100

// RunSweeper releases expired holds every SweepInterval until ctx is done, then returns
// nil. Several sweepers on one database (two daemons) release each hold exactly once.
func (s *Store) RunSweeper(ctx context.Context) error {
	ticker := time.NewTicker(s.opts.SweepInterval)
	defer ticker.Stop()
	for {
		if n, err := s.SweepExpired(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.log.Warn("releasing expired holds", zap.Error(err))
		} else if n > 0 {
			s.log.Info("released expired holds", zap.Int("orders", n))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// SweepExpired releases every hold that expired unpaid and returns how many. Each batch of
// holds is locked with FOR UPDATE SKIP LOCKED and released in that same transaction, so a
// concurrent sweeper (or a confirm or cancel of the same order) never releases it twice.
func (s *Store) SweepExpired(ctx context.Context) (int, error) {
	total := 0
	for {
		n := 0
		err := s.inTx(ctx, func(tx *sql.Tx) error {
			n = 0
			now, err := s.now(ctx, tx)
			if err != nil {
				return err
			}
			rows, err := tx.QueryContext(ctx, `SELECT order_no FROM hold WHERE status = ? AND expires_at <= ?
				ORDER BY expires_at LIMIT ? FOR UPDATE SKIP LOCKED`, StatusHeld, now, sweepBatch)
			if err != nil {
				return fmt.Errorf("finding expired holds: %w", err)
			}
			var orders []string
			for rows.Next() {
				var o string
				if err := rows.Scan(&o); err != nil {
					rows.Close()
					return fmt.Errorf("finding expired holds: %w", err)
				}
				orders = append(orders, o)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return fmt.Errorf("finding expired holds: %w", err)
			}
			for _, orderNo := range orders {
				o, err := s.loadOrder(ctx, tx, orderNo, false)
				if err != nil {
					return err
				}
				if err := s.release(ctx, tx, o, StatusExpired); err != nil {
					return fmt.Errorf("releasing order %s: %w", orderNo, err)
				}
			}
			n = len(orders)
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("sweeping expired holds: %w", err)
		}
		s.m.holdsExpired.Add(float64(n))
		total += n
		if n < sweepBatch {
			return total, nil
		}
	}
}
