package inventory

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/stocksync/stocksync/internal/testutil"
)

func TestMigrateThenCheckSchema(t *testing.T) {
	cfg := testConfig(t)
	ctx := t.Context()
	db, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

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
