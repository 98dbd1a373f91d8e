package inventory

import (
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/stocksync/stocksync/internal/sqlconn"
)

// Errors the operations return, checked with errors.Is / errors.As. The HTTP handler maps
// them to status codes in one place (errorStatus).
var (
	// ErrNotFound: the SKU, order or warehouse named by the call does not exist.
	ErrNotFound = errors.New("not found")
	// ErrUnknownSKU: a call needs the sellable stock of a SKU that has none set: a
	// deduction of it, or an adjust, reshard or activity of a SKU only the WMS has
	// reported (one nobody knows is ErrNotFound there).
	ErrUnknownSKU = errors.New("unknown sku")
	// ErrUnknownWarehouse: a sync or shipment names a warehouse with no master data.
	ErrUnknownWarehouse = errors.New("unknown warehouse")
	// ErrUnknownActivity: a deduction names an activity the SKU has no stock for.
	ErrUnknownActivity = errors.New("unknown activity")
	// ErrActivityInactive: the activity exists but now is outside its start and end.
	ErrActivityInactive = errors.New("activity is not running")
	// ErrShipped: the order has shipped; nothing can be rolled back any more.
	ErrShipped = errors.New("order already shipped")
	// ErrCancelled: the order was cancelled; it can be neither confirmed nor deducted again.
	ErrCancelled = errors.New("order cancelled")
	// ErrExpired: the order's hold expired before payment and its stock was released.
	ErrExpired = errors.New("order hold expired")
	// ErrNotHeld: only a held (unpaid) order's hold can be extended; a confirmed or shipped
	// one no longer expires.
	ErrNotHeld = errors.New("order is not held")
	// ErrNotConfirmed: shipping needs a confirmed (paid) order.
	ErrNotConfirmed = errors.New("order not confirmed")
	// ErrOrderConflict: a deduction names an order already deducted with other items.
	ErrOrderConflict = errors.New("order already deducted with other items")
	// ErrRequestConflict: an adjustment names a request_id already used by an adjustment
	// of another SKU or delta.
	ErrRequestConflict = errors.New("request_id already used by another adjustment")
)

// noSellableStockError is ErrUnknownSKU for one SKU. Its message says what to do, since
// the SKU may well exist (the WMS reported it, GET answers it with "shards": 0): set its
// sellable stock first.
type noSellableStockError struct{ sku string }

func (e *noSellableStockError) Error() string {
	return fmt.Sprintf("sku %s has no sellable stock set: set it with POST /v1/skus/%s/stock first (from the CLI: stocksync stock set)",
		e.sku, url.PathEscape(e.sku))
}

func (e *noSellableStockError) Is(target error) bool { return target == ErrUnknownSKU }

// ValidationError is a request that can never succeed as sent (HTTP 400).
type ValidationError struct {
	Field   string
	Problem string
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Problem }

func invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// Shortage is one item that could not be served: of sellable stock, of an activity's
// stock (Activity), or of a warehouse's physical stock (Warehouse, a shipment).
type Shortage struct {
	SKU       string `json:"sku"`
	Activity  string `json:"activity,omitempty"`
	Warehouse string `json:"warehouse,omitempty"`
	Requested int64  `json:"requested"`
	Available int64  `json:"available"`
}

// String names the stock short and by how much: "sku-1 (requested 5, available 2)",
// "sku-1 of activity 1111 (…)", "sku-1 physical stock at warehouse SH-01 (…)".
func (s Shortage) String() string {
	what := s.SKU
	switch {
	case s.Warehouse != "":
		what = fmt.Sprintf("%s physical stock at warehouse %s", s.SKU, s.Warehouse)
	case s.Activity != "":
		what = fmt.Sprintf("%s of activity %s", s.SKU, s.Activity)
	}
	return fmt.Sprintf("%s (requested %d, available %d)", what, s.Requested, s.Available)
}

// ShortageError lists every item of a request that lacked stock, sorted by SKU and then
// activity; nothing was written.
type ShortageError struct {
	Items []Shortage
}

func (e *ShortageError) Error() string {
	items := make([]string, len(e.Items))
	for i, it := range e.Items {
		items[i] = it.String()
	}
	return "insufficient stock: " + strings.Join(items, ", ")
}

// SKUs are the SKUs short, in the order of Items.
func (e *ShortageError) SKUs() []string {
	out := make([]string, len(e.Items))
	for i, it := range e.Items {
		out[i] = it.SKU
	}
	return out
}

// IsUnavailable reports whether err means that the inventory database could not be reached,
// that the connection to it was lost during the call, or that the server interrupted the
// call's statement: an outage, not a fault of the request, so the same call may succeed when repeated (HTTP 503 unavailable). A call that
// lost its connection may or may not have been written; every call is safe to repeat
// (docs/api.md, Retrying).
func IsUnavailable(err error) bool { return unavailableReason(err) != "" }

// unavailableReason says why err means the inventory database is unavailable, "" when it
// does not. It is the only place errors are classified so: a constraint violation, a
// syntax error, a deadlock or any other answer of a working server is not an outage.
func unavailableReason(err error) string {
	if err == nil {
		return ""
	}
	var opErr *net.OpError
	switch {
	case errors.Is(err, driver.ErrBadConn):
		return "its connection broke"
	case sqlconn.ConnectionLost(err):
		return "the connection was lost during the call"
	case errors.As(err, &opErr) && opErr.Op == "dial":
		// Connection refused, no route, or the connect timeout (also a context's
		// deadline reached while connecting).
		return "cannot connect"
	case errors.As(err, &opErr):
		return "the connection broke"
	}
	switch sqlconn.ErrorNumber(err) {
	case 1040:
		return "too many connections"
	case 1053:
		return "the server is shutting down"
	case 1927:
		return "the connection was killed"
	case 1317, 1969, 3024:
		// ER_QUERY_INTERRUPTED (KILL QUERY), MariaDB's max_statement_time and MySQL's
		// max_execution_time: the statement was stopped and rolled back, its transaction
		// with it; the same call, repeated, runs again.
		return "the statement was interrupted on the server (KILL QUERY, or a statement time limit)"
	case 2002, 2003:
		// The C client's codes, as a proxy or another client library may answer them.
		return "cannot connect"
	case 2006:
		return "the server has gone away"
	case 2013:
		return "the connection was lost during the call"
	case 1290:
		// ER_OPTION_PREVENTS_STATEMENT names the option; only --read-only (and MySQL's
		// --super-read-only) is an outage, one a failover ends.
		if msg := sqlconn.ErrorMessage(err); strings.Contains(msg, "--read-only") || strings.Contains(msg, "--super-read-only") {
			return readOnly
		}
	}
	return ""
}

// readOnly is the reason of a write refused by a read-only server: a replica the address
// still leads to, or a primary being failed over.
const readOnly = "the server is read-only (a replica, or a primary during a failover)"

// unavailableMessage is the message of a 503 for err, whose reason is reason: it names
// the database (at addr when known: the address of a failed connect, else database) and
// what failed.
func unavailableMessage(err error, reason, database string) string {
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" && opErr.Addr != nil {
		database = opErr.Addr.String()
	}
	at := ""
	if database != "" {
		at = " at " + database
	}
	return fmt.Sprintf("the inventory database%s is unavailable: %s (%v); the call may or may not have been written: repeat it unchanged "+
		"(the same order_no or request_id) after Retry-After", at, reason, err)
}
