package inventory

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"time"

	"go.uber.org/zap"

	"github.com/stocksync/stocksync/internal/sqlconn"
)

// Options tune a Store. Zero values take the documented defaults.
type Options struct {
	// HoldTTL is how long an unpaid deduction is held when the request names no hold_ttl
	// (default 15 minutes).
	HoldTTL time.Duration
	// SweepInterval is how often RunSweeper releases expired holds (default 5 seconds).
	SweepInterval time.Duration
	// Token, when set, is required as "Authorization: Bearer <token>" by Handler.
	Token string
	// DatabaseAddr is where the inventory database is (source.addr), named by Handler's
	// 503 answers when the database is unavailable. Empty: they name the address only of
	// a connect that failed.
	DatabaseAddr string
	// Logger may be nil (no logs).
	Logger *zap.Logger

	// DisableMerging turns off the merging of concurrent single-item deductions of one SKU
	// into one transaction; every deduction then runs its own transaction.
	DisableMerging bool
	// MergeMaxBatch bounds the deductions merged into one transaction (default 256).
	MergeMaxBatch int
	// MergeWorkers is how many merged transactions may run at once for one SKU, never more
	// than it has shards (default 2: on 2 cores more workers only make batches smaller).
	MergeWorkers int
	// MaxBodyBytes bounds HTTP request bodies (default 1 MiB), but those of the physical
	// syncs, which MaxSyncBodyBytes bounds (default 4 MiB: maxSyncRows levels of 64-byte
	// SKUs and 32-byte warehouse codes take about 1.7 MB of indented JSON, and fit also
	// with their non-ASCII characters escaped).
	MaxBodyBytes     int64
	MaxSyncBodyBytes int64
}

func (o Options) withDefaults() Options {
	if o.HoldTTL <= 0 {
		o.HoldTTL = 15 * time.Minute
	}
	if o.SweepInterval <= 0 {
		o.SweepInterval = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.MergeMaxBatch <= 0 {
		o.MergeMaxBatch = 256
	}
	if o.MergeWorkers <= 0 {
		o.MergeWorkers = 2
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 1 << 20
	}
	if o.MaxSyncBodyBytes <= 0 {
		o.MaxSyncBodyBytes = 4 << 20
	}
	return o
}

// Store runs every stock operation against the inventory database. It is safe for
// concurrent use, also by several processes on one database.
type Store struct {
	db   *sql.DB
	opts Options
	log  *zap.Logger
	// clock is the database server's (serverClock): hold expiries and activity windows
	// follow it, so that every daemon on the database agrees on them.
	clock clock
	// merger coalesces concurrent single-item deductions of one SKU; nil when disabled.
	merger *merger
	// shardHints remembers shard counts so a deduction can skip reading them.
	shardHints shardHints
	// gates spread one-shard calls of a SKU over its shards.
	gates shardGates
	m     *metrics
}

// New returns a Store on db, which should come from Open (its session settings matter:
// READ COMMITTED keeps failed conditional updates from holding locks).
func New(db *sql.DB, opts Options) *Store {
	opts = opts.withDefaults()
	s := &Store{db: db, opts: opts, log: opts.Logger, clock: newServerClock(opts.Logger), m: newMetrics()}
	if !opts.DisableMerging {
		s.merger = newMerger(s)
	}
	return s
}

// now is the database server's time (serverClock), to the microsecond. q is the
// connection or transaction the caller is using: s.db when it holds none.
func (s *Store) now(ctx context.Context, q querier) (time.Time, error) { return s.clock.now(ctx, q) }

// querier is what both *sql.DB and *sql.Tx offer.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// inTx runs fn in a transaction and commits it when fn returns nil. A deadlock or lock
// wait timeout reruns fn in a new transaction, so fn must only change state it returns.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	for attempt := 1; ; attempt++ {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("beginning transaction: %w", err)
		}
		err = fn(tx)
		if err == nil {
			err = tx.Commit()
		} else {
			tx.Rollback()
		}
		if err == nil || !isRetryable(err) || attempt >= 10 || ctx.Err() != nil {
			return err
		}
		s.log.Debug("retrying transaction", zap.Int("attempt", attempt), zap.Error(err))
		wait := time.Duration(attempt) * time.Duration(1+rand.IntN(5)) * time.Millisecond
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// isRetryable: deadlock (1213) and lock wait timeout (1205) abort the transaction and
// leave nothing written, so running it again is safe.
func isRetryable(err error) bool {
	n := sqlconn.ErrorNumber(err)
	return n == 1213 || n == 1205
}

func isDuplicateKey(err error) bool { return sqlconn.ErrorNumber(err) == 1062 }

func affected(res sql.Result) int64 {
	n, _ := res.RowsAffected()
	return n
}

// placeholders returns "(?,?,…),(…)" for rows rows of cols columns.
func placeholders(rows, cols int) string {
	one := make([]byte, 0, 2*cols+1)
	one = append(one, '(')
	for i := 0; i < cols; i++ {
		if i > 0 {
			one = append(one, ',')
		}
		one = append(one, '?')
	}
	one = append(one, ')')
	out := make([]byte, 0, rows*(len(one)+1))
	for r := 0; r < rows; r++ {
		if r > 0 {
			out = append(out, ',')
		}
		out = append(out, one...)
	}
	return string(out)
}
