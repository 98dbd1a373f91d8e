package testutil

import (
	"database/sql"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// MySQL is how tests reach the private MariaDB started by scripts/mariadb.sh.
type MySQL struct {
	Addr     string
	User     string
	Password string
}

// MySQLServer returns the private MariaDB's address from the STOCKSYNC_TEST_MYSQL_*
// variables that `make test` sets. Without them the test is skipped locally and fails
// under CI, so a missing server never passes silently.
func MySQLServer(t testing.TB) MySQL {
	t.Helper()
	addr := os.Getenv("STOCKSYNC_TEST_MYSQL_ADDR")
	if addr == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("STOCKSYNC_TEST_MYSQL_ADDR is not set: run the suite with `make test`")
		}
		t.Skip("STOCKSYNC_TEST_MYSQL_ADDR is not set: run `make test` (starts the private MariaDB)")
	}
	return MySQL{Addr: addr, User: os.Getenv("STOCKSYNC_TEST_MYSQL_USER"), Password: os.Getenv("STOCKSYNC_TEST_MYSQL_PASSWORD")}
}

// DSN is a go-sql-driver DSN for database db ("" for none).
func (m MySQL) DSN(db string) string {
	c := mysql.NewConfig()
	c.User, c.Passwd, c.Net, c.Addr, c.DBName = m.User, m.Password, "tcp", m.Addr, db
	c.ParseTime = true
	c.MultiStatements = true
	c.InterpolateParams = true
	return c.FormatDSN()
}

// Open opens a connection pool to database db and closes it when the test ends.
func (m MySQL) Open(t testing.TB, db string) *sql.DB {
	t.Helper()
	conn, err := sql.Open("mysql", m.DSN(db))
	if err != nil {
		t.Fatalf("opening %s: %v", m.Addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.Ping(); err != nil {
		t.Fatalf("connecting to MariaDB at %s: %v", m.Addr, err)
	}
	return conn
}

var dbCounter atomic.Int64

// FreshDatabase creates an empty database with a name unique to this test run and
// drops it when the test ends. It returns the name and a pool connected to it.
func (m MySQL) FreshDatabase(t testing.TB, prefix string) (string, *sql.DB) {
	t.Helper()
	name := fmt.Sprintf("%s_%d_%d", sanitize(prefix), time.Now().UnixNano()%1e9, dbCounter.Add(1))
	admin := m.Open(t, "")
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("creating database %s: %v", name, err)
	}
	t.Cleanup(func() { admin.Exec("DROP DATABASE IF EXISTS " + name) })
	return name, m.Open(t, name)
}

// Exec runs statements on db, failing the test on the first error.
func Exec(t testing.TB, db *sql.DB, statements ...string) {
	t.Helper()
	for _, s := range statements {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("executing %q: %v", s, err)
		}
	}
}

func sanitize(s string) string {
	s = strings.ToLower(s)
	var b strings.Builder
	for _, r := range s {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	out := b.String()
	if len(out) > 30 {
		out = out[:30]
	}
	return out
}
