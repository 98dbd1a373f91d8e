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

// Shortage is one item that could not be served.
type Shortage struct {
	SKU       string `json:"sku"`
	Activity  string `json:"activity,omitempty"`
	Requested int64  `json:"requested"`
	Available int64  `json:"available"`
}

// ShortageError lists every item of a request that lacked stock; nothing was written.
type ShortageError struct {
	Items []Shortage
}

func (e *ShortageError) Error() string {
	skus := make([]string, len(e.Items))
	for i, it := range e.Items {
		skus[i] = fmt.Sprintf("%s (requested %d, available %d)", it.SKU, it.Requested, it.Available)
	}
	return "insufficient stock: " + strings.Join(skus, ", ")
}

// SKUs are the SKUs short, in request order.
func (e *ShortageError) SKUs() []string {
	out := make([]string, len(e.Items))
	for i, it := range e.Items {
		out[i] = it.SKU
	}
	return out
}
