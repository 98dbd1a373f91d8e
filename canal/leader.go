package canal

import (
	"context"
	"crypto/sha1"
	"database/sql"
	"encoding/hex"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// Leadership is a MySQL named lock held on a connection of its own: while the connection
// lives, no other stocksync with the same lock name leads. A leader that dies (even by
// kill -9) drops the connection, and the server releases the lock at once.
type Leadership struct {
	conn *sql.Conn
	name string
	lost chan struct{}
	stop context.CancelFunc
	done chan struct{}
}

// AcquireLeadership blocks until this process holds the named lock on db's server, or
// ctx is done. It then watches the lock every second; Lost is closed when it is gone
// (the connection broke or the lock was taken from it).
func AcquireLeadership(ctx context.Context, db *sql.DB, name string, log *zap.Logger) (*Leadership, error) {
	if len(name) > 64 { // MySQL's limit on lock names
		sum := sha1.Sum([]byte(name))
		name = "stocksync:" + hex.EncodeToString(sum[:])
	}
	for {
		conn, err := db.Conn(ctx)
		if err != nil {
			return nil, fmt.Errorf("connecting for the leader lock %q: %w", name, err)
		}
		var got sql.NullInt64
		// Wait up to 2 s per try, so ctx is honoured promptly.
		err = conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 2)", name).Scan(&got)
		if err == nil && got.Valid && got.Int64 == 1 {
			wctx, stop := context.WithCancel(context.Background())
			l := &Leadership{conn: conn, name: name, lost: make(chan struct{}), stop: stop, done: make(chan struct{})}
			go l.watch(wctx, log)
			return l, nil
		}
		conn.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
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

func (l *Leadership) watch(ctx context.Context, log *zap.Logger) {
	defer close(l.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var mine sql.NullInt64
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := l.conn.QueryRowContext(qctx, "SELECT IS_USED_LOCK(?) = CONNECTION_ID()", l.name).Scan(&mine)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil || !mine.Valid || mine.Int64 != 1 {
			log.Error("leader lock lost; stopping", zap.String("lock", l.name), zap.Error(err))
			close(l.lost)
			return
		}
	}
}

// Lost is closed when the lock is no longer held.
func (l *Leadership) Lost() <-chan struct{} { return l.lost }

// Release gives the lock up; safe to call twice.
func (l *Leadership) Release() {
	l.stop()
	<-l.done
	if l.conn != nil {
		l.conn.ExecContext(context.Background(), "DO RELEASE_LOCK(?)", l.name)
		l.conn.Close()
		l.conn = nil
	}
}
