package inventory

import (
	"errors"
	"fmt"
	"strings"
)

// Errors the operations return, checked with errors.Is / errors.As. The HTTP handler maps
// them to status codes in one place (errorStatus).
var (
	// ErrNotFound: the SKU, order or warehouse named by the call does not exist.
	ErrNotFound = errors.New("not found")
	// ErrUnknownSKU: a deduction or sync names a SKU that has no sellable stock rows.
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
