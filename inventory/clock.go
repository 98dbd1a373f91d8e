package inventory

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// clock is where a Store reads the time it compares with hold expiries and activity
// windows, and from which it counts a hold's expiry. q is the connection or transaction
// the caller is using, through which a clock that must ask the database asks it. Tests
// stand in a fake one.
type clock interface {
	now(ctx context.Context, q querier) (time.Time, error)
}

// Reading the database server's clock (serverClock).
const (
	// clockRefresh is how long one reading of the server's clock serves before the next:
	// it bounds how far the two clocks' rates can take the estimate away from the server's,
	// and how long a step of the server's clock goes unnoticed.
	clockRefresh = 30 * time.Second
	// clockSamples is how many round trips one reading makes; the shortest one is kept,
	// since its half is the bound on the estimate's error.
	clockSamples = 3
	// clockSkewWarning is the offset between the daemon's clock and the server's from
	// which a reading is logged as a warning.
	clockSkewWarning = time.Second
)

// serverClock tells the time of the database server (UTC_TIMESTAMP(6)), not the daemon's,
// so that every daemon on one database agrees on when a hold expires and when a campaign
// runs, whatever their own clocks say. Asking the server at every call would cost a round
// trip on the hot path, so it reads the server's clock now and then (at the first call,
// then once clockRefresh has passed) and in between adds the time elapsed on the daemon's
// monotonic clock to the last reading. The estimate is off the server's clock by at most
// half the round trip of that reading (the server read its clock somewhere within it;
// the estimate takes the middle), plus what the two clocks' rates drift apart in at most
// clockRefresh: with clocks kept by NTP, microseconds.
type serverClock struct {
	log *zap.Logger
	// local is the daemon's clock, time.Now; a test skews it.
	local func() time.Time

	refreshing sync.Mutex // held by the caller re-reading a stale reading
	anchor     atomic.Pointer[clockReading]
}

// clockReading is one reading of the server's clock.
type clockReading struct {
	server time.Time     // the server's clock…
	local  time.Time     // …at this instant of the daemon's (with its monotonic reading)
	rtt    time.Duration // the round trip it took: the estimate is within rtt/2
}

func newServerClock(log *zap.Logger) *serverClock {
	return &serverClock{log: log, local: time.Now}
}

// now is the server's time, to the microsecond as DATETIME(6) keeps it. When the last
// reading is older than clockRefresh, or there is none, it reads the server's clock
// through q first, and returns an error only when that reading fails.
func (c *serverClock) now(ctx context.Context, q querier) (time.Time, error) {
	r := c.anchor.Load()
	if r == nil || c.local().Sub(r.local) >= clockRefresh {
		var err error
		if r, err = c.read(ctx, q, r); err != nil {
			return time.Time{}, err
		}
	}
	return r.at(c.local()), nil
}

// at is the server's time at the daemon's instant t.
func (r *clockReading) at(t time.Time) time.Time {
	return r.server.Add(t.Sub(r.local)).UTC().Truncate(time.Microsecond)
}

// read reads the server's clock through q and returns the reading to use in place of last
// (nil: there is none yet). It never waits for another caller: a caller may hold a
// transaction, and one waiting for a reading that waits for a free connection could wait
// for good. So one caller at a time re-reads a stale reading while the others go on with
// it, a few milliseconds more stale; only without any reading does every caller read.
func (c *serverClock) read(ctx context.Context, q querier, last *clockReading) (*clockReading, error) {
	if last != nil {
		if !c.refreshing.TryLock() {
			return last, nil
		}
		defer c.refreshing.Unlock()
		if r := c.anchor.Load(); r != last {
			return r, nil // re-read meanwhile
		}
	}
	var best *clockReading
	for range clockSamples {
		before := c.local()
		var server time.Time
		if err := q.QueryRowContext(ctx, "SELECT UTC_TIMESTAMP(6)").Scan(&server); err != nil {
			return nil, fmt.Errorf("reading the database's clock: %w", err)
		}
		after := c.local()
		rtt := after.Sub(before)
		if best == nil || rtt < best.rtt {
			best = &clockReading{server: server, local: before.Add(rtt / 2), rtt: rtt}
		}
	}
	c.anchor.Store(best)
	offset := best.server.Sub(best.local)
	if offset.Abs() >= clockSkewWarning {
		c.log.Warn("this host's clock is off the database server's; holds and activities follow the database's",
			zap.Duration("database_minus_host", offset), zap.Duration("uncertainty", best.rtt/2))
	} else {
		c.log.Debug("read the database's clock", zap.Duration("database_minus_host", offset), zap.Duration("uncertainty", best.rtt/2))
	}
	return best, nil
}

// offset is the server's clock minus the daemon's, and uncertainty its bound, at the last
// reading (both 0 before the first).
func (c *serverClock) offset() (offset, uncertainty time.Duration) {
	r := c.anchor.Load()
	if r == nil {
		return 0, 0
	}
	return r.server.Sub(r.local), r.rtt / 2
}
