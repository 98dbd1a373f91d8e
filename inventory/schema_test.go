package inventory

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stocksync/stocksync/internal/sqlconn"
	"github.com/stocksync/stocksync/internal/testutil"
)

func TestMigrateThenCheckSchema(t *testing.T) {
	cfg := testConfig(t)
	ctx := t.Context()
	db := openTestDB(t, cfg)

	if err := CheckSchema(ctx, db); !errors.Is(err, ErrSchemaTooOld) {
		t.Fatalf("CheckSchema on an empty database = %v, want ErrSchemaTooOld", err)
	}
	for run := range 2 { // the first applies every migration, the second finds nothing to do
		applied, err := Migrate(ctx, cfg)
		if err != nil {
			t.Fatalf("Migrate: %v", err)
		}
		want := embeddedMigrations(t)
		if run == 1 {
			want = nil
		}
		if !slices.Equal(applied, want) {
			t.Errorf("Migrate run %d applied %v, want %v", run+1, applied, want)
		}
	}
	if err := CheckSchema(ctx, db); err != nil {
		t.Fatalf("CheckSchema after Migrate: %v", err)
	}
	status, err := Status(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if len(status) == 0 || !status[len(status)-1].Applied {
		t.Fatalf("Status after Migrate = %+v, want every migration applied", status)
	}
	for _, table := range []string{"sku", "sellable_shard", "reserved", "physical_stock", "warehouse", "activity_stock", "deduction_log", "rollback_log", "hold"} {
		if n := queryInt(t, db, "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?", table); n != 1 {
			t.Errorf("table %s missing after Migrate", table)
		}
	}

	// A newer binary migrated this database: this one must refuse it.
	testutil.Exec(t, db, "INSERT INTO goose_db_version (version_id, is_applied) VALUES (99999, 1)")
	err = CheckSchema(ctx, db)
	var versionErr *SchemaVersionError
	if !errors.Is(err, ErrSchemaTooNew) || !errors.As(err, &versionErr) || versionErr.Have != 99999 {
		t.Fatalf("CheckSchema on a newer schema = %v, want ErrSchemaTooNew at 99999", err)
	}
	// and so must its migrate, rather than call the schema up to date
	if applied, err := Migrate(ctx, cfg); !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("Migrate on a newer schema = %v, %v; want ErrSchemaTooNew", applied, err)
	}
}

// TestMigrateAfterAFirstRunLeftAnEmptyVersionTable: a first migrate that failed right
// after goose created its version table (a server refusing the inserts) leaves it empty;
// the next migrate applies everything instead of stopping at "missing zero version
// migration" for good.
func TestMigrateAfterAFirstRunLeftAnEmptyVersionTable(t *testing.T) {
	cfg := testConfig(t)
	ctx := t.Context()
	db := openTestDB(t, cfg)
	if _, err := db.ExecContext(ctx, "CREATE TABLE "+versionTable+" (id SERIAL, version_id BIGINT NOT NULL, is_applied BOOLEAN NOT NULL, "+
		"tstamp TIMESTAMP NULL DEFAULT NOW(), PRIMARY KEY (id))"); err != nil {
		t.Fatal(err)
	}
	applied, err := Migrate(ctx, cfg)
	if err != nil || !slices.Equal(applied, embeddedMigrations(t)) {
		t.Fatalf("Migrate over an empty version table: %v, %v; want every migration applied", applied, err)
	}
}

// Every connection of the inventory's pool runs READ COMMITTED and in UTC, set by
// statements both MySQL 8 and MariaDB take (MySQL 8.0.3 removed the variable tx_isolation,
// MariaDB before 11.1 has no transaction_isolation): several connections held at once, so
// that each is a different one the pool opened.
func TestPooledConnectionsAreReadCommittedInUTC(t *testing.T) {
	cfg := testConfig(t)
	if _, err := Migrate(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	db := openTestDB(t, cfg)
	ids := map[int64]bool{}
	for i := range 4 {
		conn, err := db.Conn(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var id int64
		var isolation, zone string
		err = conn.QueryRowContext(t.Context(), "SELECT CONNECTION_ID(), @@SESSION.transaction_isolation, @@SESSION.time_zone").Scan(&id, &isolation, &zone)
		if sqlconn.ErrorNumber(err) == 1193 { // MariaDB before 11.1 knows only tx_isolation
			err = conn.QueryRowContext(t.Context(), "SELECT CONNECTION_ID(), @@SESSION.tx_isolation, @@SESSION.time_zone").Scan(&id, &isolation, &zone)
		}
		if err != nil {
			t.Fatal(err)
		}
		ids[id] = true
		if isolation != "READ-COMMITTED" || zone != "+00:00" {
			t.Errorf("connection %d of the pool: isolation %s, time zone %s; want READ-COMMITTED, +00:00", i, isolation, zone)
		}
	}
	if len(ids) != 4 {
		t.Fatalf("4 connections held at once have %d ids", len(ids))
	}
}

// A session setting the server refuses (here the MySQL 8 name of the isolation variable,
// which MariaDB 10.11 does not know, as MySQL 8 refuses tx_isolation) is reported as
// such, with the statement, and not as a failed login naming the credential keys.
func TestMigrateWithARefusedSessionSettingSaysSo(t *testing.T) {
	cfg := testConfig(t)
	refused := "SET SESSION transaction_isolation = 'READ-COMMITTED'"
	if err := testutil.MySQLServer(t).Open(t, "").QueryRow("SELECT @@transaction_isolation").Scan(new(string)); err == nil {
		t.Skip("this server knows transaction_isolation (MariaDB 11.1+, MySQL)")
	}
	saved := sessionSetup
	sessionSetup = append(slices.Clone(saved), refused)
	t.Cleanup(func() { sessionSetup = saved })

	_, err := Migrate(t.Context(), cfg)
	var sessionErr *sqlconn.SessionError
	if !errors.As(err, &sessionErr) || sessionErr.Statement != refused || sqlconn.ErrorNumber(err) != 1193 {
		t.Fatalf("Migrate with a refused session setting: %v; want a *sqlconn.SessionError of %q, server error 1193", err, refused)
	}
	for _, want := range []string{"migrating " + cfg.Inventory.Database, cfg.Source.Addr, "refused a session setting", refused} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Migrate's error lacks %q: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), "source.password") {
		t.Errorf("Migrate's error reads as a credentials problem: %v", err)
	}
	if _, err := Open(t.Context(), cfg); !errors.As(err, &sessionErr) || !strings.Contains(err.Error(), "refused a session setting") || strings.Contains(err.Error(), "source.password") {
		t.Errorf("Open with a refused session setting: %v; want it said so, without the credential keys", err)
	}
}

// TestMigrateWithAWrongPasswordNamesTheKeys: a wrong password is reported as a failed
// connection naming the config keys to check, not as CREATE DATABASE failing (which reads
// as a missing grant).
func TestMigrateWithAWrongPasswordNamesTheKeys(t *testing.T) {
	cfg := testConfig(t)
	cfg.Source.Password = "not-" + cfg.Source.Password
	_, err := Migrate(t.Context(), cfg)
	if err == nil {
		t.Fatal("Migrate with a wrong password succeeded")
	}
	for _, want := range []string{"connecting to " + cfg.Source.Addr + " as " + cfg.Source.User, "source.password", "Access denied"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Migrate's error lacks %q: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), "creating database") {
		t.Errorf("Migrate's error blames CREATE DATABASE: %v", err)
	}
}

func TestSellableShardTableShape(t *testing.T) {
	// Other engineers' rules match this table by name and columns.
	_, db := newTestStore(t, Options{})
	rows, err := db.QueryContext(context.Background(), `SELECT column_name, data_type FROM information_schema.columns
		WHERE table_schema = DATABASE() AND table_name = 'sellable_shard' ORDER BY ordinal_position`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var c, typ string
		rows.Scan(&c, &typ)
		got = append(got, c+" "+typ)
	}
	want := []string{"sku_id varchar", "shard int", "qty bigint"}
	if len(got) != len(want) {
		t.Fatalf("sellable_shard columns = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("sellable_shard columns = %v, want %v", got, want)
		}
	}
}

// embeddedMigrations names the embedded migrations, in order.
func embeddedMigrations(t *testing.T) []string {
	t.Helper()
	entries, err := migrationFiles.ReadDir("migrations")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestProceduresTakeUTF8MB4InALatin1Database: a database created latin1 before `migrate
// up` (MariaDB's built-in default) must still deduct orders and SKUs outside latin1 through
// deduct_one and deduct_batch, whose parameters would otherwise take the database's
// character set: refused with error 1366, or turned into '?' without strict mode.
func TestProceduresTakeUTF8MB4InALatin1Database(t *testing.T) {
	cfg := testConfig(t)
	ctx := t.Context()
	admin := testutil.MySQLServer(t).Open(t, "")
	testutil.Exec(t, admin, "ALTER DATABASE "+cfg.Inventory.Database+" CHARACTER SET latin1 COLLATE latin1_swedish_ci")
	if _, err := Migrate(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	db := openTestDB(t, cfg)
	store := New(db, Options{})
	const sku = "手机-1"
	if _, err := store.SetStock(ctx, sku, 100, 1); err != nil {
		t.Fatal(err)
	}
	store.shardHints.set(sku, 1)

	one, err := store.normalize(DeductRequest{OrderNo: "订单-1", Items: []Item{{SKU: sku, Qty: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if order, decided, err := store.deductOneCall(ctx, one); err != nil || !decided || order.Replayed {
		t.Fatalf("deduct_one of %s: decided %v, %+v, %v", one.OrderNo, decided, order, err)
	}
	var calls []*mergeCall
	var orders []Order
	for _, o := range []string{"订单-2", "订单-3"} {
		req, err := store.normalize(DeductRequest{OrderNo: o, Items: []Item{{SKU: sku, Qty: 2}}})
		if err != nil {
			t.Fatal(err)
		}
		calls = append(calls, &mergeCall{ctx: ctx, req: req})
		now, err := store.now(ctx, store.db)
		if err != nil {
			t.Fatal(err)
		}
		orders = append(orders, Order{OrderNo: o, Status: StatusHeld, ExpiresAt: now.Add(time.Hour)})
	}
	if done, err := store.merger.callBatch(ctx, sku, 4, calls, orders); err != nil || !done {
		t.Fatalf("deduct_batch: done %v, %v", done, err)
	}
	for _, o := range []string{"订单-1", "订单-2", "订单-3"} {
		if n := queryInt(t, db, "SELECT COUNT(*) FROM hold h JOIN deduction_log l USING (order_no) WHERE h.order_no = ? AND l.sku_id = ?", o, sku); n != 1 {
			t.Errorf("order %s: %d hold rows with a log row of %s, want 1", o, n, sku)
		}
	}
	if got := sellable(t, db, sku); got != 95 {
		t.Errorf("sellable %d after deducting 5 of 100, want 95", got)
	}
}
