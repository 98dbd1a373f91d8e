package sqlconn

import (
	"errors"
	"testing"

	"github.com/stocksync/stocksync/internal/testutil"
)

// Session statements run, in order, on every connection the pool opens, not only the
// first: two connections held at once both have them.
func TestSessionStatementsRunOnEveryConnection(t *testing.T) {
	server := testutil.MySQLServer(t)
	db, err := Open(Target{Addr: server.Addr, User: server.User, Password: server.Password,
		Session: []string{"SET SESSION time_zone = '+00:00'", "SET SESSION time_zone = '+02:00'", "SET @stocksync_session = 'set'"}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i := range 2 {
		conn, err := db.Conn(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var zone, mark string
		if err := conn.QueryRowContext(t.Context(), "SELECT @@SESSION.time_zone, @stocksync_session").Scan(&zone, &mark); err != nil {
			t.Fatal(err)
		}
		if zone != "+02:00" || mark != "set" {
			t.Errorf("connection %d: time_zone %s, @stocksync_session %q; want +02:00 (the last statement) and set", i, zone, mark)
		}
	}
}

// A session statement the server refuses fails the connection with a *SessionError that
// names the statement and keeps the server's error, so that callers tell it from a wrong
// address or password.
func TestRefusedSessionStatementIsASessionError(t *testing.T) {
	server := testutil.MySQLServer(t)
	refused := "SET SESSION no_such_variable_stocksync = 1"
	db, err := Open(Target{Addr: server.Addr, User: server.User, Password: server.Password,
		Session: []string{"SET SESSION time_zone = '+00:00'", refused}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.PingContext(t.Context())
	var sessionErr *SessionError
	if !errors.As(err, &sessionErr) || sessionErr.Statement != refused || ErrorNumber(err) != 1193 {
		t.Fatalf("ping with a refused session statement: %v; want a *SessionError of %q with server error 1193", err, refused)
	}
}
