package inventory

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/stocksync/stocksync/canal"
	"github.com/stocksync/stocksync/config"
	"github.com/stocksync/stocksync/internal/sqlconn"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// versionTable is goose's record of the applied migrations, kept in the inventory database.
const versionTable = "goose_db_version"

var (
	// ErrSchemaTooNew means the database was migrated by a newer stocksync: this binary
	// must not write to it.
	ErrSchemaTooNew = errors.New("inventory schema is newer than this binary knows")
	// ErrSchemaTooOld means migrations are pending: run `stocksync migrate up`.
	ErrSchemaTooOld = errors.New("inventory schema is older than this binary: run `stocksync migrate up`")
	// ErrNoDatabase means inventory.database does not exist on the server (Open):
	// `stocksync migrate up` creates it and applies every migration.
	ErrNoDatabase = errors.New("does not exist")
)

// SchemaVersionError is CheckSchema's answer when the database is not at this binary's
// version. It matches ErrSchemaTooNew or ErrSchemaTooOld with errors.Is.
type SchemaVersionError struct {
	Database string
	Have     int64 // the database's version (0 when never migrated)
	Want     int64 // the newest migration embedded in this binary
}

func (e *SchemaVersionError) Error() string {
	if e.Have > e.Want {
		return fmt.Sprintf("database %s is at schema version %d, newer than this binary knows (%d): upgrade stocksync", e.Database, e.Have, e.Want)
	}
	return fmt.Sprintf("database %s is at schema version %d, this binary needs %d: run `stocksync migrate up`", e.Database, e.Have, e.Want)
}

// Is lets errors.Is match the sentinel for the direction of the mismatch.
func (e *SchemaVersionError) Is(target error) bool {
	return (target == ErrSchemaTooNew && e.Have > e.Want) || (target == ErrSchemaTooOld && e.Have < e.Want)
}

var databaseName = regexp.MustCompile(`^[A-Za-z0-9_]{1,64}$`)

// sourceKeys are the config keys to check when the source cannot be reached.
const sourceKeys = "source.addr, source.user, source.password, source.tls"

// sessionSetup is run on every connection openDB's pool opens. READ COMMITTED, so that a
// conditional update that matches no row does not keep its lock until commit; UTC, so
// that NOW(6) and parsed times agree. Statements rather than variables: the isolation
// variable is tx_isolation on MariaDB before 11.1 and transaction_isolation on MySQL
// 8.0.3+, and each server refuses the other's name on every connection.
var sessionSetup = []string{
	"SET SESSION time_zone = '+00:00'",
	"SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
}

// openDB opens cfg.Source with database db ("" for none), with source.tls when set and
// sessionSetup on every connection.
func openDB(cfg config.Config, db string) (*sql.DB, error) {
	tlsConfig, err := cfg.Source.ClientTLS()
	if err != nil {
		return nil, err
	}
	return sqlconn.Open(sqlconn.Target{Addr: cfg.Source.Addr, User: cfg.Source.User, Password: cfg.Source.Password,
		Database: db, TLS: tlsConfig, Session: sessionSetup})
}

// connectError explains a failed first connection to cfg.Source. A session statement the
// server refused is said to be one: address and credentials were right, and naming the
// credential keys would send the operator the wrong way.
func connectError(cfg config.Config, err error) error {
	var sessionErr *sqlconn.SessionError
	if errors.As(err, &sessionErr) {
		return fmt.Errorf("the server at %s accepted user %s but refused a session setting stocksync needs on every connection: %w",
			cfg.Source.Addr, cfg.Source.User, err)
	}
	return fmt.Errorf("connecting to %s as %s (%s): %w", cfg.Source.Addr, cfg.Source.User, sourceKeys, err)
}

// Open connects to cfg.Source with database cfg.Inventory.Database, with the session
// settings the Store relies on (sessionSetup: UTC, READ COMMITTED). It pings the server.
func Open(ctx context.Context, cfg config.Config) (*sql.DB, error) {
	name := cfg.Inventory.Database
	if !databaseName.MatchString(name) {
		return nil, fmt.Errorf("opening inventory database: inventory.database %q must be letters, digits and _", name)
	}
	db, err := openDB(cfg, name)
	if err != nil {
		return nil, fmt.Errorf("opening inventory database %s: %w", name, err)
	}
	// Bounded (inventory.max_connections): callers beyond it wait here for a connection
	// rather than as server threads queued on a hot row's lock, which costs the server a
	// context switch each. Idle connections are kept: a burst must not reconnect.
	db.SetMaxOpenConns(cfg.Inventory.MaxConnections)
	db.SetMaxIdleConns(cfg.Inventory.MaxConnections)
	db.SetConnMaxLifetime(time.Hour)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		if sqlconn.ErrorNumber(err) == 1049 { // unknown database
			return nil, fmt.Errorf("inventory database %s %w on %s: `stocksync migrate up` creates it and applies every migration (%w)",
				name, ErrNoDatabase, cfg.Source.Addr, err)
		}
		return nil, fmt.Errorf("opening inventory database %s: %w", name, connectError(cfg, err))
	}
	return db, nil
}

// newestMigration is the highest version among the embedded migrations.
func newestMigration() (int64, error) {
	list, err := Migrations()
	if err != nil {
		return 0, err
	}
	var newest int64
	for _, m := range list {
		newest = max(newest, m.Version)
	}
	return newest, nil
}

// Migrations lists the migrations embedded in this binary, oldest first, none of them
// applied: what Status lists for a database that does not exist yet, without asking a
// server.
func Migrations() ([]MigrationStatus, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations") // sorted by name: by version
	if err != nil {
		return nil, fmt.Errorf("listing embedded migrations: %w", err)
	}
	var list []MigrationStatus
	for _, e := range entries {
		digits, _, ok := strings.Cut(e.Name(), "_")
		if !ok {
			continue
		}
		v, err := strconv.ParseInt(digits, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("embedded migration %s has no numeric version: %w", e.Name(), err)
		}
		list = append(list, MigrationStatus{Version: v, Name: e.Name()})
	}
	return list, nil
}

func newProvider(db *sql.DB) (*goose.Provider, error) {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("reading embedded migrations: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectMySQL, db, sub, goose.WithTableName(versionTable))
	if err != nil {
		return nil, fmt.Errorf("preparing migrations: %w", err)
	}
	return p, nil
}

// Migrate creates the database cfg.Inventory.Database if missing and applies every
// embedded migration not yet applied. Two processes migrating at once are serialised by a
// named lock on the server.
func Migrate(ctx context.Context, cfg config.Config) (applied []string, err error) {
	name := cfg.Inventory.Database
	if !databaseName.MatchString(name) {
		return nil, fmt.Errorf("migrating: inventory.database %q must be letters, digits and _", name)
	}
	admin, err := openDB(cfg, "")
	if err != nil {
		return nil, fmt.Errorf("migrating %s: %w", name, err)
	}
	defer admin.Close()
	// Connect first: a wrong password or port would otherwise read as CREATE DATABASE
	// failing, as if a grant were missing.
	if err := admin.PingContext(ctx); err != nil {
		return nil, fmt.Errorf("migrating %s: %w", name, connectError(cfg, err))
	}
	// The inventory's changes are what stocksync streams, and under STATEMENT its READ
	// COMMITTED inserts would fail half-way: say what to set before writing anything.
	if err := canal.CheckBinlogSettings(ctx, admin); err != nil {
		return nil, fmt.Errorf("migrating %s: %w", name, err)
	}
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS `"+name+"` DEFAULT CHARACTER SET utf8mb4"); err != nil {
		return nil, fmt.Errorf("creating database %s: %w", name, err)
	}
	db, err := Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	return MigrateDB(ctx, db)
}

// MigrateDB applies every pending embedded migration to the database db is connected to,
// and names those it applied (none: the schema was up to date).
func MigrateDB(ctx context.Context, db *sql.DB) (applied []string, err error) {
	var name sql.NullString
	if err := db.QueryRowContext(ctx, "SELECT DATABASE()").Scan(&name); err != nil || !name.Valid {
		return nil, fmt.Errorf("migrating: connection has no database selected (%v)", err)
	}
	release, err := namedLock(ctx, db, "stocksync.migrate."+name.String)
	if err != nil {
		return nil, err
	}
	defer release()
	if err := CheckSchema(ctx, db); errors.Is(err, ErrSchemaTooNew) {
		return nil, fmt.Errorf("migrating: %w", err) // not "up to date": this binary is older than the schema
	}
	if err := dropEmptyVersionTable(ctx, db); err != nil {
		return nil, err
	}
	p, err := newProvider(db)
	if err != nil {
		return nil, err
	}
	results, err := p.Up(ctx)
	if err != nil {
		return nil, fmt.Errorf("applying inventory migrations: %w", err)
	}
	for _, r := range results {
		applied = append(applied, filepath.Base(r.Source.Path))
	}
	return applied, nil
}

// dropEmptyVersionTable drops goose's version table when it holds no row, not even the
// zero version goose writes with it: a first migrate that failed right after creating it
// (a server refusing the insert) leaves it so, and goose then stops at "missing zero
// version migration" on every later run. Empty, it records nothing.
func dropEmptyVersionTable(ctx context.Context, db *sql.DB) error {
	var rows int
	err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+versionTable).Scan(&rows)
	if err != nil || rows > 0 {
		return nil // no such table (goose creates it), or one that records migrations
	}
	if _, err := db.ExecContext(ctx, "DROP TABLE "+versionTable); err != nil {
		return fmt.Errorf("dropping the empty %s a failed first migrate left: %w", versionTable, err)
	}
	return nil
}

// MigrationStatus is one embedded migration and whether the database has it.
type MigrationStatus struct {
	Version   int64
	Name      string
	Applied   bool
	AppliedAt time.Time
}

// Status lists the embedded migrations and which of them the database has applied.
func Status(ctx context.Context, db *sql.DB) ([]MigrationStatus, error) {
	p, err := newProvider(db)
	if err != nil {
		return nil, err
	}
	list, err := p.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading migration status: %w", err)
	}
	out := make([]MigrationStatus, 0, len(list))
	for _, m := range list {
		out = append(out, MigrationStatus{Version: m.Source.Version, Name: m.Source.Path,
			Applied: m.State == goose.StateApplied, AppliedAt: m.AppliedAt})
	}
	return out, nil
}

// CheckSchema returns nil when the database is at exactly this binary's schema version and
// a *SchemaVersionError otherwise (ErrSchemaTooNew: refuse to run; ErrSchemaTooOld: run
// `stocksync migrate up`). It writes nothing.
func CheckSchema(ctx context.Context, db *sql.DB) error {
	want, err := newestMigration()
	if err != nil {
		return err
	}
	var dbName sql.NullString
	var hasTable bool
	err = db.QueryRowContext(ctx, `SELECT DATABASE(), EXISTS (SELECT 1 FROM information_schema.tables
		WHERE table_schema = DATABASE() AND table_name = ?)`, versionTable).Scan(&dbName, &hasTable)
	if err != nil {
		return fmt.Errorf("checking inventory schema: %w", err)
	}
	have := int64(0)
	if hasTable {
		var v sql.NullInt64
		if err := db.QueryRowContext(ctx, "SELECT MAX(version_id) FROM "+versionTable).Scan(&v); err != nil {
			return fmt.Errorf("reading inventory schema version: %w", err)
		}
		have = v.Int64
	}
	if have != want {
		return &SchemaVersionError{Database: dbName.String, Have: have, Want: want}
	}
	return nil
}

// namedLock takes a server-wide named lock on its own connection and returns its release.
func namedLock(ctx context.Context, db *sql.DB, name string) (func(), error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("taking lock %s: %w", name, err)
	}
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 60)", name).Scan(&got); err != nil {
		conn.Close()
		return nil, fmt.Errorf("taking lock %s: %w", name, err)
	}
	if got.Int64 != 1 {
		conn.Close()
		return nil, fmt.Errorf("taking lock %s: still held by another process after 60s", name)
	}
	return func() {
		conn.ExecContext(context.WithoutCancel(ctx), "SELECT RELEASE_LOCK(?)", name)
		conn.Close()
	}, nil
}
