package testutil

import (
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// PrivateMariaDB is a MariaDB of a test's own, started with scripts/mariadb.sh (a run dir
// in t.TempDir(), a free port, extra server options), for tests that purge binlogs or stop
// the server, which would break the tests that share the suite's server. It has the
// suite's server's user and password.
type PrivateMariaDB struct {
	MySQL
	env []string
	dir string // the module root, where scripts/mariadb.sh is
}

// StartPrivateMariaDB starts a PrivateMariaDB with args added to the server's options and
// stops it when the test ends. It skips as MySQLServer does without the suite's server.
func StartPrivateMariaDB(t testing.TB, args string) *PrivateMariaDB {
	t.Helper()
	shared := MySQLServer(t)
	port := strconv.Itoa(FreePort(t))
	m := &PrivateMariaDB{
		MySQL: MySQL{Addr: "127.0.0.1:" + port, User: shared.User, Password: shared.Password},
		env:   append(os.Environ(), "STOCKSYNC_RUN_DIR="+t.TempDir(), "STOCKSYNC_MARIADB_PORT="+port, "STOCKSYNC_MARIADB_ARGS="+args),
		dir:   moduleRoot(t),
	}
	t.Cleanup(func() {
		if out, err := m.run("stop"); err != nil {
			t.Errorf("stopping the private MariaDB on %s: %v\n%s", m.Addr, err, out)
		}
	})
	m.Start(t)
	return m
}

// Start starts the server again after Stop (its data kept).
func (m *PrivateMariaDB) Start(t testing.TB) {
	t.Helper()
	if out, err := m.run("start"); err != nil {
		t.Fatalf("starting a private MariaDB on %s: %v\n%s", m.Addr, err, out)
	}
}

// Stop stops the server by its pid, as a DBA's restart would begin.
func (m *PrivateMariaDB) Stop(t testing.TB) {
	t.Helper()
	if out, err := m.run("stop"); err != nil {
		t.Fatalf("stopping the private MariaDB on %s: %v\n%s", m.Addr, err, out)
	}
}

func (m *PrivateMariaDB) run(what string) ([]byte, error) {
	c := exec.Command(filepath.Join(m.dir, "scripts", "mariadb.sh"), what)
	c.Env = m.env
	return c.CombinedOutput()
}

// moduleRoot is the directory of go.mod above the test's working directory.
func moduleRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's working directory")
		}
		dir = parent
	}
}

// PurgeBinlogs starts a new binlog file on db's server and purges every older one, as a
// server whose binlogs expired would have; it returns the one file left. It waits until
// they have gone: the server keeps a binlog until InnoDB has checkpointed its transactions.
// Only on a PrivateMariaDB: the suite's server has other tests' positions in its binlogs.
func PurgeBinlogs(t testing.TB, db *sql.DB) string {
	t.Helper()
	Exec(t, db, "FLUSH BINARY LOGS")
	files := func() []string {
		rows, err := db.Query("SHOW BINARY LOGS")
		if err != nil {
			t.Fatalf("listing binlogs: %v", err)
		}
		defer rows.Close()
		var names []string
		for rows.Next() {
			var name string
			var size int64
			if err := rows.Scan(&name, &size); err != nil { // MariaDB's two columns
				t.Fatalf("listing binlogs: %v", err)
			}
			names = append(names, name)
		}
		return names
	}
	newest := files()
	last := newest[len(newest)-1]
	Eventually(t, 30*time.Second, "PURGE BINARY LOGS TO "+last+" to leave it alone", func() bool {
		Exec(t, db, "PURGE BINARY LOGS TO '"+last+"'")
		return len(files()) == 1
	})
	return last
}
