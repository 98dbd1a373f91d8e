package inventory

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Limits of one page of ListOrders.
const (
	defaultListLimit = 100
	maxListLimit     = 1000
)

// OrderQuery selects the orders ListOrders lists. Zero values select every order.
type OrderQuery struct {
	// Status keeps the orders in this status (a held order past its expiry is expired, and
	// listed under expired once the sweeper has released it).
	Status OrderStatus
	// SKU keeps the orders with an item of this SKU.
	SKU string
	// Limit is the most orders on the page: 1 to 1000, 0 for 100.
	Limit int
	// After is the Next of the page before, "" for the first page.
	After string
}

// OrderPage is one page of orders. Next, when not empty, is the After of the next page.
type OrderPage struct {
	Orders []Order `json:"orders"`
	Next   string  `json:"next,omitempty"`
}

// listOrder is the order in which a listing runs.
type listOrder string

const (
	// newestFirst: by creation, newest first (hold.created_at, then order_no, descending).
	newestFirst listOrder = "created"
	// soonestExpiry: held orders by expiry, soonest first (hold.expires_at, then
	// order_no, ascending).
	soonestExpiry listOrder = "expiry"
)

// listCursor is where a page ended: the last order's position in the listing's order.
// Its text form (Next, After) is opaque to callers: base64url of this JSON.
type listCursor struct {
	Order   listOrder `json:"k"`
	At      time.Time `json:"t"`
	OrderNo string    `json:"o"`
}

func (c listCursor) String() string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

// parseCursor reads an After for a listing in order.
func parseCursor(after string, order listOrder) (*listCursor, error) {
	if after == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(after)
	var c listCursor
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil || c.At.IsZero() || c.OrderNo == "" || (c.Order != newestFirst && c.Order != soonestExpiry) {
		return nil, invalid("after", "is not a cursor this API returned (pass the next of the page before, as it was)")
	}
	if c.Order != order {
		return nil, invalid("after", "is the cursor of a listing in another order (status=held lists by expiry, the others newest first): pass it with the status it came with")
	}
	return &c, nil
}

// validStatus checks a status to list by.
func validStatus(st OrderStatus) error {
	switch st {
	case "", StatusHeld, StatusConfirmed, StatusShipped, StatusCancelled, StatusExpired:
		return nil
	}
	return invalid("status", "must be held, confirmed, shipped, cancelled or expired, got %q", string(st))
}

// ListOrders lists the orders q selects, one page at a time, each as GetOrder answers
// it. Held orders (Status held) come by expiry, the soonest to lapse first, and only those
// whose hold has not lapsed; every other listing comes newest first, by when the order
// was recorded. A page's Next lists the orders after it; none is left when it is empty.
// Pages are read by keyset from where the last one ended, never by offset, so an order
// recorded after the first page was read is not listed by the later pages of a newest-first
// listing (start again for it), nor by those of a held listing unless it expires after
// the page's last order, and no order is listed twice or skipped for it. An order
// that changes status, or whose hold is extended, between two pages may be listed on both
// or on neither. It writes nothing.
func (s *Store) ListOrders(ctx context.Context, q OrderQuery) (OrderPage, error) {
	order, after, err := checkOrderQuery(q)
	if err != nil {
		return OrderPage{}, fmt.Errorf("listing orders: %w", err)
	}
	limit := cmp.Or(q.Limit, defaultListLimit)
	sqlText, args, err := s.listQuery(ctx, q, order, after, limit)
	if err != nil {
		return OrderPage{}, fmt.Errorf("listing orders: %w", err)
	}
	page, err := s.readPage(ctx, sqlText, args, limit, order)
	if err != nil {
		return OrderPage{}, fmt.Errorf("listing orders: %w", err)
	}
	return page, nil
}

// checkOrderQuery checks q before anything is read, and returns the listing's order and
// the cursor to go on from.
func checkOrderQuery(q OrderQuery) (listOrder, *listCursor, error) {
	if err := validStatus(q.Status); err != nil {
		return "", nil, err
	}
	if q.SKU != "" {
		if err := validID("sku", q.SKU); err != nil {
			return "", nil, err
		}
	}
	if q.Limit < 0 || q.Limit > maxListLimit {
		return "", nil, invalid("limit", "must be between 1 and %d, got %d", maxListLimit, q.Limit)
	}
	order := newestFirst
	if q.Status == StatusHeld {
		order = soonestExpiry
	}
	after, err := parseCursor(q.After, order)
	return order, after, err
}

// listQuery is the statement reading q's page (checked: checkOrderQuery), limit + 1 rows (the one more tells whether
// a next page is there), and its arguments. Its rows are order_no, status, expires_at,
// warehouse and the listing's time for the cursor. It reads hold along one of its indexes:
// hold_status_expiry for held orders, hold_status_created with another status,
// hold_created without one. A SKU's orders come from the log's SKU index instead
// (skuListQuery), but held and confirmed ones: there the SKU is a semi-join on
// deduction_log, which the server reads by its unique key per hold (or materializes for a
// SKU with fewer log rows than there are such holds), since holds in those statuses do not
// accumulate as the log does.
func (s *Store) listQuery(ctx context.Context, q OrderQuery, order listOrder, after *listCursor, limit int) (string, []any, error) {
	if q.SKU != "" && order == newestFirst && q.Status != StatusConfirmed {
		text, args := skuListQuery(q, after, limit)
		return text, args, nil
	}
	var where []string
	var args []any
	if q.Status != "" {
		where = append(where, "h.status = ?")
		args = append(args, q.Status)
	}
	if q.SKU != "" {
		where = append(where, "h.order_no IN (SELECT d.order_no FROM deduction_log d WHERE d.sku_id = ?)")
		args = append(args, q.SKU)
	}
	orderBy := "h.created_at DESC, h.order_no DESC"
	if order == soonestExpiry {
		now, err := s.now(ctx, s.db)
		if err != nil {
			return "", nil, err
		}
		where = append(where, "h.expires_at > ?") // a lapsed hold reads as expired
		args = append(args, now)
		orderBy = "h.expires_at, h.order_no"
	}
	if after != nil {
		if order == soonestExpiry {
			where = append(where, "(h.expires_at > ? OR (h.expires_at = ? AND h.order_no > ?))")
		} else {
			where = append(where, "(h.created_at < ? OR (h.created_at = ? AND h.order_no < ?))")
		}
		args = append(args, after.At, after.At, after.OrderNo)
	}
	text := "SELECT h.order_no, h.status, h.expires_at, COALESCE(h.warehouse, ''), h.created_at FROM hold h"
	if len(where) > 0 {
		text += " WHERE " + strings.Join(where, " AND ")
	}
	text += fmt.Sprintf(" ORDER BY %s LIMIT %d", orderBy, limit+1)
	return text, args, nil
}

// skuListQuery is listQuery for the newest-first listing of a SKU's orders, with any
// status but held and confirmed. A page costs its own orders, however many the SKU has
// had: it reads deduction_log_sku_created (sku_id, created_at, order_no) from the cursor
// on, in the listing's order since a log row's created_at is its order's (insertLogRowsFor,
// migration 00006), and reads hold by primary key for those rows only, stopping at
// limit + 1 orders of the status. GROUP BY lists once an order with two rows of the SKU
// (sellable and activity); they are adjacent in the index, so it sorts nothing. A status
// the SKU's recent orders rarely have reads back through its history until the page fills.
func skuListQuery(q OrderQuery, after *listCursor, limit int) (string, []any) {
	where := []string{"d.sku_id = ?"}
	args := []any{q.SKU}
	if q.Status != "" {
		where = append(where, "h.status = ?")
		args = append(args, q.Status)
	}
	if after != nil {
		where = append(where, "(d.created_at < ? OR (d.created_at = ? AND d.order_no < ?))")
		args = append(args, after.At, after.At, after.OrderNo)
	}
	return "SELECT STRAIGHT_JOIN h.order_no, h.status, h.expires_at, COALESCE(h.warehouse, ''), d.created_at" +
		" FROM deduction_log d JOIN hold h ON h.order_no = d.order_no WHERE " + strings.Join(where, " AND ") +
		fmt.Sprintf(" GROUP BY d.created_at, d.order_no ORDER BY d.created_at DESC, d.order_no DESC LIMIT %d", limit+1), args
}

// readPage reads a page of at most limit orders with query, and their items; the next
// cursor is in the listing's order.
func (s *Store) readPage(ctx context.Context, query string, args []any, limit int, order listOrder) (OrderPage, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return OrderPage{}, fmt.Errorf("reading holds: %w", err)
	}
	defer rows.Close()
	page := OrderPage{Orders: []Order{}}
	var created []time.Time
	more := false
	for rows.Next() {
		if len(page.Orders) == limit {
			more = true
			break
		}
		o := Order{Items: []OrderItem{}}
		var at time.Time
		if err := rows.Scan(&o.OrderNo, &o.Status, &o.ExpiresAt, &o.Warehouse, &at); err != nil {
			return OrderPage{}, fmt.Errorf("reading holds: %w", err)
		}
		page.Orders = append(page.Orders, o)
		created = append(created, at)
	}
	if err := rows.Err(); err != nil {
		return OrderPage{}, fmt.Errorf("reading holds: %w", err)
	}
	rows.Close()
	orderNos := make([]string, len(page.Orders))
	for i, o := range page.Orders {
		orderNos[i] = o.OrderNo
	}
	items, err := loadItems(ctx, s.db, orderNos)
	if err != nil {
		return OrderPage{}, err
	}
	for i := range page.Orders {
		o := &page.Orders[i]
		if its := items[o.OrderNo]; its != nil {
			o.Items = its
		}
		lapsed, err := s.lapsed(ctx, s.db, *o)
		if err != nil {
			return OrderPage{}, err
		}
		if lapsed {
			o.Status = StatusExpired // as GetOrder answers it
		}
	}
	if more {
		last := len(page.Orders) - 1
		c := listCursor{Order: order, At: created[last], OrderNo: page.Orders[last].OrderNo}
		if order == soonestExpiry {
			c.At = page.Orders[last].ExpiresAt
		}
		page.Next = c.String()
	}
	return page, nil
}
