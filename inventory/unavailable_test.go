package inventory

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/stocksync/stocksync/internal/sqlconn"
	"github.com/stocksync/stocksync/internal/testutil"
)

// answered is one HTTP answer: status, Retry-After and error body.
type answered struct {
	status     int
	retryAfter string
	body       apiError
}

// call makes one request of srv and returns its answer.
func call(t *testing.T, srv *httptest.Server, method, path, body string) answered {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	a := answered{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
	if resp.StatusCode >= 400 {
		if err := json.NewDecoder(resp.Body).Decode(&a.body); err != nil {
			t.Fatalf("%s %s = %d with an error body that is not JSON: %v", method, path, resp.StatusCode, err)
		}
	}
	return a
}

// wantUnavailable fails the test unless a is a 503 unavailable with a Retry-After and a
// message naming the database at addr ("" for any address) and why.
func wantUnavailable(t *testing.T, what string, a answered, addr, why string) {
	t.Helper()
	if a.status != http.StatusServiceUnavailable || a.body.Code != "unavailable" || a.retryAfter == "" {
		t.Fatalf("%s = %d %+v, Retry-After %q; want 503 unavailable with a Retry-After", what, a.status, a.body, a.retryAfter)
	}
	wantMsg := "the inventory database at " + addr
	if addr == "" {
		wantMsg = "the inventory database"
	}
	if !strings.HasPrefix(a.body.Message, wantMsg) || !strings.Contains(a.body.Message, "is unavailable: "+why) {
		t.Fatalf("%s: message %q, want it to start %q and say it is unavailable: %s", what, a.body.Message, wantMsg, why)
	}
}

// A Store whose database does not listen answers a deduction, a GET and a confirm 503
// unavailable with Retry-After, naming the address, and counts them as unavailable.
func TestHTTPDatabaseDownIs503(t *testing.T) {
	addr := testutil.FreeAddr(t) // nothing listens there
	db, err := sqlconn.Open(sqlconn.Target{Addr: addr, User: "stocksync"})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	store := New(db, Options{})
	srv := httptest.NewServer(store.Handler())
	defer srv.Close()

	for _, c := range []struct{ method, route, path, body string }{
		{"POST", "/v1/deductions", "/v1/deductions", `{"order_no": "down-1", "items": [{"sku": "d1", "qty": 1}]}`},
		{"POST", "/v1/deductions", "/v1/deductions", `{"order_no": "down-2", "items": [{"sku": "d1", "qty": 1}, {"sku": "d2", "qty": 1}]}`},
		{"GET", "/v1/orders/{order_no}", "/v1/orders/down-1", ""},
		{"POST", "/v1/orders/{order_no}/confirm", "/v1/orders/down-1/confirm", ""},
	} {
		wantUnavailable(t, c.method+" "+c.path, call(t, srv, c.method, c.path, c.body), addr, "cannot connect")
		route := c.method + " " + c.route
		if got := promtest.ToFloat64(store.m.requests.WithLabelValues(route, "503", "unavailable")); got == 0 {
			t.Errorf("requests{route=%q, status=503, code=unavailable} not counted", route)
		}
		if got := promtest.ToFloat64(store.m.requests.WithLabelValues(route, "500", "internal")); got != 0 {
			t.Errorf("requests{route=%q, status=500, code=internal} = %v, want 0", route, got)
		}
	}
	// A refusal that needs no database is still the request's fault.
	if a := call(t, srv, "POST", "/v1/deductions", `{"order_no": "down-3", "items": []}`); a.status != http.StatusBadRequest {
		t.Errorf("an invalid deduction with the database down = %d %+v, want 400", a.status, a.body)
	}
}

// The database's clock, read through a pool whose server does not listen, fails with an
// error answered 503 (the clock's refresh is the first query of some calls).
func TestClockReadingOfADownDatabaseIsUnavailable(t *testing.T) {
	addr := testutil.FreeAddr(t)
	db, err := sqlconn.Open(sqlconn.Target{Addr: addr, User: "stocksync"})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, err = newServerClock(zap.NewNop()).now(t.Context(), db)
	if err == nil {
		t.Fatal("reading the clock of a database that does not listen succeeded")
	}
	if status, body := errorStatus(err, ""); status != http.StatusServiceUnavailable || !strings.Contains(body.Message, addr) {
		t.Fatalf("clock reading's error %v answers %d %+v, want 503 naming %s", err, status, body, addr)
	}
}

// awaitBlockedQuery waits until a connection of check's database, neither the one asking
// nor holder (the connection holding the lock it waits for) nor one of killed, runs a
// statement matching the regular expression like, and returns its id. A connection killed
// before stays listed, with its last statement, until its thread ends, which under load
// can outlast the next call: killing it again instead of the blocked call left that call
// waiting out innodb_lock_wait_timeout at each of its retries (a CI run: 550 s, then 500).
func awaitBlockedQuery(t *testing.T, check *sql.DB, holder int64, like string, killed ...int64) int64 {
	t.Helper()
	exclude := append([]any{holder}, toAny(killed)...)
	query := `SELECT id FROM information_schema.processlist
		WHERE db = DATABASE() AND command <> 'Killed' AND id NOT IN (CONNECTION_ID()` + strings.Repeat(", ?", len(exclude)) + `) AND info REGEXP ?`
	var id int64
	testutil.Eventually(t, 10*time.Second, "a statement "+like+" waiting for a lock", func() bool {
		return check.QueryRow(query, append(exclude, like)...).Scan(&id) == nil
	})
	return id
}

func toAny(ids []int64) []any {
	out := make([]any, len(ids))
	for i, id := range ids {
		out[i] = id
	}
	return out
}

// A connection killed by the server (KILL) under a confirm and under a deduction answers
// 503 unavailable; both were rolled back, and their retries, the same call again, do what
// the first would have, once.
func TestHTTPConnectionKilledIs503AndRetryIsRight(t *testing.T) {
	store, check := newTestStore(t, Options{DatabaseAddr: "db.example:3306"})
	seedStore(t, store, seed{stock: []SKUStock{{SKU: "k1", Sellable: 10, Shards: 1}}})
	srv := httptest.NewServer(store.Handler())
	defer srv.Close()
	if a := call(t, srv, "POST", "/v1/deductions", `{"order_no": "kill-1", "items": [{"sku": "k1", "qty": 2}]}`); a.status != http.StatusCreated {
		t.Fatalf("deduction = %d %+v", a.status, a.body)
	}

	// killed runs method path while tx (a second connection) holds the lock its statement
	// like waits for, kills the Store's connection (or its statement, with kill "QUERY")
	// and returns the answer.
	kill := "CONNECTION"
	var killedIDs []int64 // connections killed already, which may linger in the process list
	killed := func(method, path, body, lock, like string) answered {
		t.Helper()
		tx, err := check.BeginTx(t.Context(), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		if _, err := tx.Exec(lock); err != nil {
			t.Fatal(err)
		}
		var holder int64
		if err := tx.QueryRow("SELECT CONNECTION_ID()").Scan(&holder); err != nil {
			t.Fatal(err)
		}
		done := make(chan answered, 1)
		go func() { done <- call(t, srv, method, path, body) }()
		id := awaitBlockedQuery(t, check, holder, like, killedIDs...)
		if _, err := check.Exec(fmt.Sprintf("KILL %s %d", kill, id)); err != nil {
			t.Fatal(err)
		}
		if kill == "CONNECTION" {
			killedIDs = append(killedIDs, id)
		}
		return <-done
	}

	a := killed("POST", "/v1/orders/kill-1/confirm", "", "SELECT * FROM hold WHERE order_no = 'kill-1' FOR UPDATE", "^SELECT status.*FOR UPDATE")
	wantUnavailable(t, "confirm whose connection was killed", a, "db.example:3306", "the connection was lost during the call")
	if got := queryInt(t, check, "SELECT COUNT(*) FROM reserved WHERE qty > 0"); got != 0 {
		t.Fatalf("the killed confirm reserved stock")
	}
	var o Order
	if a := call(t, srv, "POST", "/v1/orders/kill-1/confirm", ""); a.status != http.StatusOK {
		t.Fatalf("confirm repeated = %d %+v, want 200", a.status, a.body)
	}
	if o, _ = store.GetOrder(t.Context(), "kill-1"); o.Status != StatusConfirmed || queryInt(t, check, "SELECT qty FROM reserved WHERE sku_id = 'k1'") != 2 {
		t.Fatalf("after the repeated confirm the order is %s, reserved %d; want confirmed, 2", o.Status, queryInt(t, check, "SELECT qty FROM reserved WHERE sku_id = 'k1'"))
	}

	// A two-item order (its own transaction, statement by statement) waits on the shard.
	a = killed("POST", "/v1/deductions", `{"order_no": "kill-2", "items": [{"sku": "k1", "qty": 3}, {"sku": "k1", "qty": 1, "activity": "none"}]}`,
		"SELECT * FROM sellable_shard WHERE sku_id = 'k1' FOR UPDATE", "^UPDATE sellable_shard")
	if a.status != http.StatusServiceUnavailable {
		// The activity line is unknown: the order would be refused 422 once it ran; it
		// must not have run, since its connection was killed under the shard's update.
		t.Fatalf("deduction whose connection was killed = %d %+v, want 503", a.status, a.body)
	}
	wantUnavailable(t, "deduction whose connection was killed", a, "db.example:3306", "the connection was lost during the call")
	if n := queryInt(t, check, "SELECT COUNT(*) FROM hold WHERE order_no = 'kill-2'"); n != 0 {
		t.Fatalf("the killed deduction left %d hold rows", n)
	}

	a = killed("POST", "/v1/deductions", `{"order_no": "kill-3", "items": [{"sku": "k1", "qty": 3}]}`,
		"SELECT * FROM sellable_shard WHERE sku_id = 'k1' FOR UPDATE", "sellable_shard|deduct_")
	wantUnavailable(t, "one-item deduction whose connection was killed", a, "db.example:3306", "the connection was lost during the call")
	for i, want := range []int{http.StatusCreated, http.StatusOK} { // the retry, then a duplicate of it
		if a := call(t, srv, "POST", "/v1/deductions", `{"order_no": "kill-3", "items": [{"sku": "k1", "qty": 3}]}`); a.status != want {
			t.Fatalf("deduction kill-3 repeated (%d) = %d %+v, want %d", i+1, a.status, a.body, want)
		}
	}
	if got := sellable(t, check, "k1"); got != 10-2-3 {
		t.Fatalf("sellable k1 = %d after kill-1 (2) and kill-3 (3, retried), want 5", got)
	}

	// A statement killed alone (KILL QUERY; max_statement_time alike) was rolled back, with
	// its transaction: the connection lives on, and the same call repeated runs again.
	kill = "QUERY"
	a = killed("POST", "/v1/deductions", `{"order_no": "kill-4", "items": [{"sku": "k1", "qty": 4}]}`,
		"SELECT * FROM sellable_shard WHERE sku_id = 'k1' FOR UPDATE", "sellable_shard|deduct_")
	wantUnavailable(t, "one-item deduction whose statement was killed", a, "db.example:3306", "the statement was interrupted on the server")
	if n := queryInt(t, check, "SELECT COUNT(*) FROM hold WHERE order_no = 'kill-4'"); n != 0 || sellable(t, check, "k1") != 5 {
		t.Fatalf("the killed deduction left %d hold rows, sellable %d; want none, 5", n, sellable(t, check, "k1"))
	}
	if a := call(t, srv, "POST", "/v1/deductions", `{"order_no": "kill-4", "items": [{"sku": "k1", "qty": 4}]}`); a.status != http.StatusCreated {
		t.Fatalf("deduction kill-4 repeated = %d %+v, want 201", a.status, a.body)
	}
	if got := sellable(t, check, "k1"); got != 1 {
		t.Fatalf("sellable k1 = %d after kill-4 (4, retried), want 1", got)
	}
}

// A physical sync whose read of the warehouses it names fails part way (KILL QUERY while
// it waits for the second warehouse's row lock: the first row has arrived, the error comes
// after it) answers the server's failure, a 5xx, not 422 unknown_warehouse as if the
// warehouses it could not read did not exist; nothing is written, and the same sync again
// is applied.
func TestPhysicalSyncWhoseWarehouseReadFailsIsNotUnknownWarehouse(t *testing.T) {
	store, check := newTestStore(t, Options{})
	seedStore(t, store, seed{
		stock:      []SKUStock{{SKU: "p1", Sellable: 1, Shards: 1}},
		warehouses: []Warehouse{{Code: "W1", Name: "Central", Type: "central"}, {Code: "W2", Name: "North", Type: "regional"}},
	})
	srv := httptest.NewServer(store.Handler())
	defer srv.Close()
	tx, err := check.BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec("SELECT * FROM warehouse WHERE code = 'W2' FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	var holder int64
	if err := tx.QueryRow("SELECT CONNECTION_ID()").Scan(&holder); err != nil {
		t.Fatal(err)
	}
	const sync = `[{"warehouse": "W1", "qty": 5}, {"warehouse": "W2", "qty": 3}]`
	done := make(chan answered, 1)
	go func() { done <- call(t, srv, "POST", "/v1/physical/p1", sync) }()
	id := awaitBlockedQuery(t, check, holder, "^SELECT code FROM warehouse")
	if _, err := check.Exec(fmt.Sprintf("KILL QUERY %d", id)); err != nil {
		t.Fatal(err)
	}
	if a := <-done; a.status < 500 {
		t.Fatalf("physical sync whose warehouse read was interrupted = %d %+v, want the server's failure, 5xx (not 422 unknown_warehouse)", a.status, a.body)
	}
	tx.Rollback()
	if n := queryInt(t, check, "SELECT COUNT(*) FROM physical_stock"); n != 0 {
		t.Fatalf("the interrupted sync wrote %d physical rows", n)
	}
	if a := call(t, srv, "POST", "/v1/physical/p1", sync); a.status != http.StatusOK {
		t.Fatalf("the sync again = %d %+v, want 200", a.status, a.body)
	}
}

// Errors of a working server — a constraint violated, a syntax error, a duplicate key, a
// deadlock — are not an outage: never 503. Those of an outage are, whatever wraps them.
func TestUnavailableIsOnlyAnOutage(t *testing.T) {
	store, check := newTestStore(t, Options{})
	seedStore(t, store, seed{stock: []SKUStock{{SKU: "c1", Sellable: 1, Shards: 1}}})
	for _, stmt := range []string{
		"UPDATE sellable_shard SET qty = -1 WHERE sku_id = 'c1'", // CHECK constraint (4025)
		"INSERT INTO sku (sku_id) VALUES ('c1')",                 // duplicate key (1062)
		"SELEKT 1",                                               // syntax (1064)
		"INSERT INTO deduction_log (order_no, sku_id, kind, qty) VALUES ('x', 'c1', 'sellable', 0)", // CHECK qty > 0
		"SELECT nothing FROM sku", // unknown column (1054)
	} {
		_, err := check.ExecContext(t.Context(), stmt)
		if err == nil {
			t.Fatalf("%s succeeded", stmt)
		}
		wrapped := fmt.Errorf("doing something: %w", err)
		if IsUnavailable(wrapped) {
			t.Errorf("%s: %v classified unavailable", stmt, err)
		}
		if status, body := errorStatus(wrapped, "db:3306"); status == http.StatusServiceUnavailable {
			t.Errorf("%s: %v answers %d %+v", stmt, err, status, body)
		}
	}
	srv := httptest.NewServer(store.Handler())
	defer srv.Close()
	if a := call(t, srv, "POST", "/v1/deductions", `{"order_no": "c-1", "items": [{"sku": "c1", "qty": 5}]}`); a.status != http.StatusConflict {
		t.Errorf("a shortage = %d %+v, want 409", a.status, a.body)
	}
	if a := call(t, srv, "POST", "/v1/orders/c%20/confirm", ""); a.status != http.StatusBadRequest {
		t.Errorf("an invalid order_no = %d %+v, want 400", a.status, a.body)
	}

	outages := []error{
		driver.ErrBadConn,
		mysql.ErrInvalidConn,
		&net.OpError{Op: "dial", Net: "tcp", Err: context.DeadlineExceeded},
		&net.OpError{Op: "read", Net: "tcp", Err: fmt.Errorf("connection reset by peer")},
	}
	for _, n := range []uint16{1040, 1053, 1927, 2002, 2003, 2006, 2013, 1317, 1969, 3024} {
		outages = append(outages, &mysql.MySQLError{Number: n, Message: "outage"})
	}
	// A write refused by a read-only server (a replica, a primary during a failover), in
	// MariaDB's and MySQL's words.
	outages = append(outages,
		&mysql.MySQLError{Number: 1290, Message: "The MariaDB server is running with the --read-only option so it cannot execute this statement"},
		&mysql.MySQLError{Number: 1290, Message: "The MySQL server is running with the --super-read-only option so it cannot execute this statement"})
	for _, err := range outages {
		wrapped := fmt.Errorf("confirming order o-1: %w", err)
		if status, body := errorStatus(wrapped, "db:3306"); status != http.StatusServiceUnavailable || body.Code != "unavailable" ||
			!strings.HasPrefix(body.Message, "the inventory database at db:3306 is unavailable") {
			t.Errorf("%v answers %d %+v, want 503 unavailable naming db:3306", wrapped, status, body)
		}
	}
	for _, n := range []uint16{1205, 1213, 1045, 1146} { // lock waits, access denied, no table
		if err := (&mysql.MySQLError{Number: n}); IsUnavailable(err) {
			t.Errorf("server error %d classified unavailable", n)
		}
	}
	// 1290 for an option other than read-only, and InnoDB's read-only mode (1836), which
	// no failover ends, are the server's answers, not outages.
	for _, err := range []error{
		&mysql.MySQLError{Number: 1290, Message: "The MariaDB server is running with the --secure-file-priv option so it cannot execute this statement"},
		&mysql.MySQLError{Number: 1836, Message: "Running in read-only mode"},
	} {
		if IsUnavailable(err) {
			t.Errorf("%v classified unavailable", err)
		}
	}
}
