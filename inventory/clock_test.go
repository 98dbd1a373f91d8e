package inventory

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/stocksync/stocksync/internal/testutil"
)

// skewedStore is a second daemon's Store on base's database, on a host whose clock runs
// skew off the real one.
func skewedStore(t *testing.T, base *Store, skew time.Duration) *Store {
	t.Helper()
	s := New(secondPool(t, base), Options{})
	s.clock.(*serverClock).local = func() time.Time { return time.Now().Add(skew) }
	return s
}

// serverNow reads the database server's clock.
func serverNow(t *testing.T, db *sql.DB) time.Time {
	t.Helper()
	var now time.Time
	if err := db.QueryRow("SELECT UTC_TIMESTAMP(6)").Scan(&now); err != nil {
		t.Fatal(err)
	}
	return now
}

// TestHoldsAndActivitiesFollowTheDatabaseClock: two daemons whose hosts' clocks are an
// hour ahead and an hour behind agree with the database on when holds expire and when
// campaigns run.
func TestHoldsAndActivitiesFollowTheDatabaseClock(t *testing.T) {
	base, db := newTestStore(t, Options{})
	ctx := t.Context()
	daemons := []struct {
		name  string
		store *Store
	}{{"ahead", skewedStore(t, base, time.Hour)}, {"behind", skewedStore(t, base, -time.Hour)}}
	if _, err := base.SetStock(ctx, "clk", 100, 1); err != nil {
		t.Fatal(err)
	}
	now := serverNow(t, db)
	for _, a := range []Activity{
		{SKU: "clk", Activity: "running", Qty: 10, StartsAt: now.Add(-time.Minute), EndsAt: now.Add(time.Hour)},
		{SKU: "clk", Activity: "upcoming", Qty: 10, StartsAt: now.Add(30 * time.Minute), EndsAt: now.Add(2 * time.Hour)},
		{SKU: "clk", Activity: "ended", Qty: 10, StartsAt: now.Add(-2 * time.Hour), EndsAt: now.Add(-30 * time.Minute)},
	} {
		if _, err := base.PutActivity(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	const ttl = 10 * time.Minute
	for _, d := range daemons {
		before := serverNow(t, db)
		order, err := d.store.Deduct(ctx, DeductRequest{OrderNo: "hold-" + d.name, Items: []Item{{SKU: "clk", Qty: 1}}, HoldTTL: ttl})
		after := serverNow(t, db)
		if err != nil {
			t.Fatalf("%s: %v", d.name, err)
		}
		offset, uncertainty := d.store.clock.(*serverClock).offset()
		if offset.Round(time.Minute).Abs() != time.Hour {
			t.Errorf("%s: offset to the database %v, want an hour", d.name, offset)
		}
		slack := uncertainty + time.Millisecond
		if order.ExpiresAt.Before(before.Add(ttl-slack)) || order.ExpiresAt.After(after.Add(ttl+slack)) {
			t.Errorf("%s: hold of %v expires at %v; the database's clock read %v to %v (uncertainty %v)",
				d.name, ttl, order.ExpiresAt, before, after, uncertainty)
		}
		for activity, want := range map[string]error{"running": nil, "upcoming": ErrActivityInactive, "ended": ErrActivityInactive} {
			_, err := d.store.Deduct(ctx, DeductRequest{OrderNo: d.name + "-" + activity, Items: []Item{{SKU: "clk", Qty: 1, Activity: activity}}})
			if !errors.Is(err, want) || (want == nil && err != nil) {
				t.Errorf("%s: deducting from the %s campaign = %v, want %v", d.name, activity, err, want)
			}
		}
	}
	// Each daemon reads the other's hold as held, and the sweeper of the one ahead leaves both.
	for _, d := range daemons {
		for _, o := range []string{"hold-ahead", "hold-behind"} {
			if order, err := d.store.GetOrder(ctx, o); err != nil || order.Status != StatusHeld {
				t.Errorf("%s: order %s = %+v, %v; want held", d.name, o, order, err)
			}
		}
	}
	if n, err := daemons[0].store.SweepExpired(ctx); n != 0 || err != nil {
		t.Errorf("the sweeper of the daemon ahead released %d holds (%v), want none", n, err)
	}
	// A short hold taken by the daemon ahead expires when the database's clock says, for
	// the daemon behind too: it reads it expired and its sweeper releases it.
	behind := daemons[1].store
	if _, err := daemons[0].store.Deduct(ctx, DeductRequest{OrderNo: "short", Items: []Item{{SKU: "clk", Qty: 1}}, HoldTTL: 300 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the daemon behind to read the hold of 300ms as expired", func() bool {
		order, err := behind.GetOrder(ctx, "short")
		if err != nil {
			t.Fatal(err)
		}
		return order.Status == StatusExpired
	})
	if n, err := behind.SweepExpired(ctx); n != 1 || err != nil {
		t.Fatalf("the sweeper of the daemon behind released %d holds (%v), want the short one", n, err)
	}
}

// TestServerClockRereadsTheDatabase: one reading of the database's clock serves for
// clockRefresh of the host's time; after that the database is read again.
func TestServerClockRereadsTheDatabase(t *testing.T) {
	store, db := newTestStore(t, Options{})
	ctx := t.Context()
	sc := store.clock.(*serverClock)
	host := &fakeClock{} // the host's clock, standing still until advanced
	host.micros.Store(time.Now().Add(-5 * time.Minute).UnixMicro())
	sc.local = func() time.Time { now, _ := host.now(ctx, nil); return now }
	first, err := sc.now(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	host.advance(clockRefresh - time.Microsecond)
	if got, err := sc.now(ctx, db); err != nil || got.Sub(first) != clockRefresh-time.Microsecond {
		t.Fatalf("within clockRefresh of the reading: %v, %v; want the reading moved on by the host's clock, %v", got, err, first.Add(clockRefresh-time.Microsecond))
	}
	host.advance(time.Microsecond)
	got, err := sc.now(ctx, db)
	if server := serverNow(t, db); err != nil || got.After(server) || server.Sub(got) > 5*time.Second {
		t.Fatalf("clockRefresh after the reading: %v, %v; want the database's clock read again (%v)", got, err, server)
	}
}

// TestClockReadsThroughTheCallersTransaction: a daemon whose pool is one connection reads
// the database's clock for the first time inside its transactions (a sweep, a deduction
// statement by statement) through them, never waiting for a second connection.
func TestClockReadsThroughTheCallersTransaction(t *testing.T) {
	base, _ := newTestStore(t, Options{})
	if _, err := base.SetStock(t.Context(), "one", 10, 1); err != nil {
		t.Fatal(err)
	}
	pool := secondPool(t, base)
	pool.SetMaxOpenConns(1)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	sweeping := New(pool, Options{DisableMerging: true})
	if _, err := sweeping.SweepExpired(ctx); err != nil {
		t.Fatalf("sweeping on a pool of one connection: %v", err)
	}
	deducting := New(pool, Options{DisableMerging: true})
	if _, err := deducting.deductInTx(ctx, DeductRequest{OrderNo: "one-1", Items: []Item{{SKU: "one", Qty: 1}}, HoldTTL: time.Minute}); err != nil {
		t.Fatalf("deducting on a pool of one connection: %v", err)
	}
}
