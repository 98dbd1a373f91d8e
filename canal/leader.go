package canal

import (
	"context"
	"crypto/sha1"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// The leader's lease. A leader confirms its lock every LeaseCheckEvery; a confirmation
// lets it publish for LeaseLength from the moment it was asked, and no longer. A new
// holder of the lock waits TakeoverWait before it leads, so the previous holder's lease
// has run out by then, and its last produce requests have had a second to land. The lock
// connection's wait_timeout (LockIdleTimeout) makes the server drop the lock of a leader
// that stopped talking (its host gone, the process frozen) even while its connection
// stays open.
const (
	LeaseCheckEvery = 500 * time.Millisecond
	LeaseLength     = 2 * time.Second
	TakeoverWait    = LeaseLength + time.Second
	LockIdleTimeout = 5 * time.Second
)

// Leadership is a MySQL named lock held on a connection of its own, with a lease: while
// the connection lives, no other stocksync with the same lock name leads, and this one
// leads only while its last confirmation of the lock is younger than LeaseLength. A
// leader that dies (even by kill -9) drops the connection, and the server releases the
// lock at once.
type Leadership struct {
	conn *sql.Conn
	name string
	// heldUntil is when the lease runs out, in nanoseconds of the monotonic clock since
	// leaseEpoch; 0 until the takeover wait is over, and leaseGone for good once the lock
	// is lost or released (compare-and-swapped, so that a late store never revives it).
	heldUntil atomic.Int64
	lost      chan struct{}
	loseOnce  sync.Once
	stop      context.CancelFunc
	done      chan struct{}
}

// leaseEpoch anchors lease times to the monotonic clock.
var leaseEpoch = time.Now()

func leaseNow() int64 { return int64(time.Since(leaseEpoch)) }

// LockName is the server lock (GET_LOCK) for name: name itself, or, past MySQL's limit of
// 64 characters, "stocksync:" and its SHA-1.
func LockName(name string) string {
	if len(name) <= 64 {
		return name
	}
	sum := sha1.Sum([]byte(name))
	return "stocksync:" + hex.EncodeToString(sum[:])
}

// LockWait is what AcquireLeadership waits for, as it tells its caller each time it
// learns it: a caller that is asked why it does not lead (a /readyz) then says the
// server does not answer rather than that another process leads.
type LockWait struct {
	// Unreachable is why the last attempt to take the lock failed (the server did not
	// answer, or the connection broke); nil when the server answered.
	Unreachable error
	// Taken: this process holds the lock and waits out TakeoverWait before it leads.
	// Neither Taken nor Unreachable: another connection holds the lock.
	Taken bool
}

// AcquireLeadership blocks until this process holds the named lock on db's server and
// the takeover wait is over, or ctx is done. It then confirms the lock every
// LeaseCheckEvery; Held reports whether the lease is current, and Lost is closed when a
// confirmation fails (the connection broke or the lock was taken from it). waiting, when
// not nil, is called (on the calling goroutine, before each wait) with what it waits for.
func AcquireLeadership(ctx context.Context, db *sql.DB, name string, log *zap.Logger, waiting func(LockWait)) (*Leadership, error) {
	name = LockName(name)
	if waiting == nil {
		waiting = func(LockWait) {}
	}
	for {
		l, err := tryLock(ctx, db, name)
		if l != nil {
			waiting(LockWait{Taken: true})
			return l.takeOver(ctx, log)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		waiting(LockWait{Unreachable: err})
		if err != nil {
			log.Warn("trying the leader lock", zap.String("lock", name), zap.Error(err))
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Second):
			}
		}
	}
}

// tryLock waits up to 2 s for the lock (so ctx is honoured promptly) on a new connection
// whose wait_timeout is LockIdleTimeout, which never goes back to the pool. It returns nil and no error when the lock is
// still taken.
func tryLock(ctx context.Context, db *sql.DB, name string) (*Leadership, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("connecting for the leader lock %q: %w", name, err)
	}
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("SET SESSION wait_timeout = %d", int(LockIdleTimeout/time.Second))); err != nil {
		discardConn(conn) // its wait_timeout must not go back to the pool
		return nil, fmt.Errorf("setting wait_timeout on the leader lock's connection: %w", err)
	}
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 2)", name).Scan(&got); err != nil {
		discardConn(conn)
		return nil, fmt.Errorf("taking the leader lock %q: %w", name, err)
	}
	if !got.Valid || got.Int64 != 1 {
		discardConn(conn)
		return nil, nil
	}
	return &Leadership{conn: conn, name: name, lost: make(chan struct{}), done: make(chan struct{})}, nil
}

// takeOver starts confirming the lock, waits TakeoverWait, and then lets the lease count.
func (l *Leadership) takeOver(ctx context.Context, log *zap.Logger) (*Leadership, error) {
	wctx, stop := context.WithCancel(context.Background())
	l.stop = stop
	confirmed := make(chan int64, 1)
	go l.watch(wctx, confirmed, log)
	log.Info("holding the leader lock; waiting out any previous leader's lease",
		zap.String("lock", l.name), zap.Duration("wait", TakeoverWait))
	wait := time.NewTimer(TakeoverWait)
	defer wait.Stop()
	var lastAsked int64
	for {
		select {
		case <-ctx.Done():
			l.Release()
			return nil, ctx.Err()
		case <-l.lost:
			l.Release()
			return nil, fmt.Errorf("lost the leader lock %q during the takeover wait", l.name)
		case lastAsked = <-confirmed:
		case <-wait.C:
			if lastAsked == 0 {
				l.Release()
				return nil, fmt.Errorf("the leader lock %q could not be confirmed within %s", l.name, TakeoverWait)
			}
			// From now on each confirmation extends the lease; the last one before now
			// starts it, unless the lock was lost meanwhile.
			if !l.heldUntil.CompareAndSwap(0, lastAsked+int64(LeaseLength)) {
				l.Release()
				return nil, fmt.Errorf("lost the leader lock %q during the takeover wait", l.name)
			}
			return l, nil
		}
	}
}

// watch confirms the lock every LeaseCheckEvery. During the takeover wait it reports
// each confirmation's asking time on confirmed (nobody reads it afterwards); then
// each confirmation extends the lease to LeaseLength after it was asked.
func (l *Leadership) watch(ctx context.Context, confirmed chan int64, log *zap.Logger) {
	defer close(l.done)
	t := time.NewTicker(LeaseCheckEvery)
	defer t.Stop()
	for {
		asked := leaseNow()
		qctx, cancel := context.WithTimeout(ctx, LeaseLength/2)
		err := l.Confirm(qctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			log.Error("leader lock lost; stopping", zap.String("lock", l.name), zap.Error(err))
			l.lose()
			return
		}
		if until := l.heldUntil.Load(); until > 0 {
			l.heldUntil.CompareAndSwap(until, asked+int64(LeaseLength)) // fails only once lost
		} else if until == 0 {
			select {
			case confirmed <- asked:
			default:
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Confirm returns nil when this process still holds the lock: its connection is open
// and the server names it as the lock's holder.
func (l *Leadership) Confirm(ctx context.Context) error {
	var mine sql.NullInt64
	if err := l.conn.QueryRowContext(ctx, "SELECT IS_USED_LOCK(?) = CONNECTION_ID()", l.name).Scan(&mine); err != nil {
		return fmt.Errorf("confirming the lock %q: %w", l.name, err)
	}
	if !mine.Valid || mine.Int64 != 1 {
		return fmt.Errorf("the lock %q is no longer held by this process", l.name)
	}
	return nil
}

// TryLock takes the named lock (LockName(name)) on a connection of its own, as
// AcquireLeadership does, but waits at most 2 s for it and without a lease or a takeover
// wait: for an operator's change that no daemon may start in the middle of. It returns
// nil and no error when another connection holds the lock. Confirm says whether it is
// still held (its connection's wait_timeout is LockIdleTimeout); Release gives it up.
func TryLock(ctx context.Context, db *sql.DB, name string) (*Leadership, error) {
	return tryLock(ctx, db, LockName(name))
}

// Tag takes a second named lock, LockName(tag), on the lock's own connection, held as long
// as the lock is: another process tells what holds the lock by whether one connection
// holds both (IS_USED_LOCK).
func (l *Leadership) Tag(ctx context.Context, tag string) error {
	var got sql.NullInt64
	if err := l.conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 0)", LockName(tag)).Scan(&got); err != nil {
		return fmt.Errorf("taking the lock %q beside %q: %w", LockName(tag), l.name, err)
	}
	if !got.Valid || got.Int64 != 1 {
		return fmt.Errorf("taking the lock %q beside %q: another connection holds it", LockName(tag), l.name)
	}
	return nil
}

// LockHolder is the connection that holds a named lock, as the server tells it.
type LockHolder struct {
	ID int64
	// User and Host (the client's address) are "" when the asking user may not see the
	// connection: it sees its own, and every one with the PROCESS privilege.
	User, Host string
}

func (h LockHolder) String() string {
	if h.User == "" && h.Host == "" {
		return fmt.Sprintf("connection %d", h.ID)
	}
	return fmt.Sprintf("connection %d of %s from %s", h.ID, h.User, h.Host)
}

// HolderOf returns the connection that holds lock (its name as the server knows it:
// LockName) on db's server; held is false when none does.
func HolderOf(ctx context.Context, db *sql.DB, lock string) (h LockHolder, held bool, err error) {
	if h.ID, held, err = lockOwner(ctx, db, lock); err != nil || !held {
		return LockHolder{}, false, err
	}
	err = db.QueryRowContext(ctx, "SELECT USER, HOST FROM information_schema.PROCESSLIST WHERE ID = ?", h.ID).Scan(&h.User, &h.Host)
	if err != nil && !errors.Is(err, sql.ErrNoRows) { // no rows: another user's, or closed meanwhile
		return h, true, fmt.Errorf("reading the connection that holds the lock %q: %w", lock, err)
	}
	return h, true, nil
}

// HoldsToo reports whether h's connection also holds the lock tag (taken with Tag).
func (h LockHolder) HoldsToo(ctx context.Context, db *sql.DB, tag string) (bool, error) {
	id, held, err := lockOwner(ctx, db, LockName(tag))
	return held && id == h.ID, err
}

// lockOwner is the id of the connection that holds lock (its name as the server knows
// it) on db's server; held is false when none does.
func lockOwner(ctx context.Context, db *sql.DB, lock string) (id int64, held bool, err error) {
	var owner sql.NullInt64
	if err := db.QueryRowContext(ctx, "SELECT IS_USED_LOCK(?)", lock).Scan(&owner); err != nil {
		return 0, false, fmt.Errorf("asking who holds the lock %q: %w", lock, err)
	}
	return owner.Int64, owner.Valid, nil
}

func (l *Leadership) lose() {
	l.loseOnce.Do(func() {
		l.heldUntil.Store(leaseGone)
		close(l.lost)
	})
}

// Held reports whether this process may publish: the lock's last confirmation is younger
// than LeaseLength. It turns false by itself when confirmations stop coming, even before
// Lost is closed, and stays false once the lock is lost.
func (l *Leadership) Held() bool {
	until := l.heldUntil.Load()
	return until > 0 && leaseNow() < until
}

// leaseGone is heldUntil once the lock is lost or released.
const leaseGone = -1

// Lost is closed when the lock is no longer held.
func (l *Leadership) Lost() <-chan struct{} { return l.lost }

// Release gives the lock up; safe to call twice.
func (l *Leadership) Release() {
	if l.stop != nil {
		l.stop()
		<-l.done
		l.stop = nil
	}
	l.heldUntil.Store(leaseGone)
	if l.conn != nil {
		l.conn.ExecContext(context.Background(), "DO RELEASE_LOCK(?)", l.name)
		discardConn(l.conn) // its wait_timeout must not go back to the pool
		l.conn = nil
	}
}
