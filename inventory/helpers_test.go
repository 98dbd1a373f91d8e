package inventory

import (
	"context"
	"database/sql"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stocksync/stocksync/config"
	"github.com/stocksync/stocksync/internal/testutil"
)

// testConfig points a config at a fresh database on the private MariaDB.
func testConfig(t testing.TB) config.Config {
	t.Helper()
	server := testutil.MySQLServer(t)
	name, _ := server.FreshDatabase(t, "inv")
	cfg := config.Default()
	cfg.Source.Addr, cfg.Source.User, cfg.Source.Password = server.Addr, server.User, server.Password
	cfg.Inventory.Database = name
	return cfg
}

// newTestStore migrates a fresh database and returns a Store on it and an independent pool
// for checking what was written.
func newTestStore(t testing.TB, opts Options) (*Store, *sql.DB) {
	t.Helper()
	cfg := testConfig(t)
	ctx := context.Background()
	if _, err := Migrate(ctx, cfg); err != nil {
		t.Fatalf("migrating: %v", err)
	}
	db := openTestDB(t, cfg)
	check := testutil.MySQLServer(t).Open(t, cfg.Inventory.Database)
	return New(db, opts), check
}

// seed is the state a test's store starts from. seedStore writes it in this order: each
// SKU's sellable stock (SKU, Sellable and Shards of stock), activities, warehouses, one
// full physical sync, then orders deducted and confirmed.
type seed struct {
	stock      []SKUStock
	activities []Activity
	warehouses []Warehouse
	physical   []PhysicalLevel
	paid       []DeductRequest
}

// seedStore writes s through store's API, failing the test at the first step refused.
func seedStore(t testing.TB, store *Store, s seed) {
	t.Helper()
	ctx := context.Background()
	step := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("setting up: %s: %v", what, err)
		}
	}
	for _, st := range s.stock {
		_, err := store.SetStock(ctx, st.SKU, st.Sellable, st.Shards)
		step("stock of "+st.SKU, err)
	}
	for _, a := range s.activities {
		_, err := store.PutActivity(ctx, a)
		step("activity "+a.Activity, err)
	}
	for _, w := range s.warehouses {
		_, err := store.PutWarehouse(ctx, w)
		step("warehouse "+w.Code, err)
	}
	if len(s.physical) > 0 {
		_, err := store.SyncPhysical(ctx, s.physical)
		step("physical stock", err)
	}
	for _, o := range s.paid {
		_, err := store.Deduct(ctx, o)
		step("deducting order "+o.OrderNo, err)
		_, err = store.Confirm(ctx, o.OrderNo)
		step("confirming order "+o.OrderNo, err)
	}
}

// queryInt runs a query returning one integer.
func queryInt(t testing.TB, db *sql.DB, query string, args ...any) int64 {
	t.Helper()
	var n sql.NullInt64
	if err := db.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n.Int64
}

func sellable(t testing.TB, db *sql.DB, sku string) int64 {
	t.Helper()
	return queryInt(t, db, "SELECT SUM(qty) FROM sellable_shard WHERE sku_id = ?", sku)
}

// secondPool opens another pool on store's database, as a second daemon would.
func secondPool(t testing.TB, store *Store) *sql.DB {
	t.Helper()
	var name string
	if err := store.db.QueryRow("SELECT DATABASE()").Scan(&name); err != nil {
		t.Fatal(err)
	}
	server := testutil.MySQLServer(t)
	cfg := config.Default()
	cfg.Source.Addr, cfg.Source.User, cfg.Source.Password = server.Addr, server.User, server.Password
	cfg.Inventory.Database = name
	return openTestDB(t, cfg)
}

// openTestDB opens cfg's inventory database as the daemon does (Open), closed when the
// test ends.
func openTestDB(t testing.TB, cfg config.Config) *sql.DB {
	t.Helper()
	db, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("opening %s: %v", cfg.Inventory.Database, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// testingProcs is GOMAXPROCS, what b.SetParallelism multiplies.
func testingProcs() int { return runtime.GOMAXPROCS(0) }

// atOnce runs call(i) for i in [0, n) from n goroutines released together, as duplicate
// requests racing each other, and returns each one's result and error.
func atOnce[T any](n int, call func(i int) (T, error)) ([]T, []error) {
	results, errs := make([]T, n), make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i], errs[i] = call(i)
		}()
	}
	close(start)
	wg.Wait()
	return results, errs
}

// fakeClock is a Store's clock (Store.clock) that stands still until advanced.
type fakeClock struct{ micros atomic.Int64 }

// useFakeClock sets store's clock to one standing at start. Call it before the store runs
// anything.
func useFakeClock(store *Store, start time.Time) *fakeClock {
	c := &fakeClock{}
	c.micros.Store(start.UnixMicro())
	store.clock = c
	return c
}

func (c *fakeClock) now(context.Context, querier) (time.Time, error) {
	return time.UnixMicro(c.micros.Load()).UTC(), nil
}

func (c *fakeClock) advance(d time.Duration) { c.micros.Add(d.Microseconds()) }
