package inventory

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/stocksync/stocksync/internal/httpapi"
)

// The JSON bodies of the HTTP API and how they are read, apart from the handlers and the
// operations so that reading and checking a request can be tested and fuzzed without a
// database. Each read function returns a *ValidationError (400) for a body that can never
// succeed, or the *http.MaxBytesError (413) of a body over the limit.

// decode reads exactly one JSON value with no unknown fields into v (httpapi.DecodeJSON),
// a malformed one as a *ValidationError of the body. An empty body is allowed when
// optional.
func decode(body io.Reader, v any, optional bool) error {
	err := httpapi.DecodeJSON(body, v, optional)
	var malformed *httpapi.MalformedError
	if errors.As(err, &malformed) {
		return &ValidationError{Field: "body", Problem: malformed.Problem}
	}
	return err
}

// readSetStock reads {"sellable": N, "shards": M}; sellable is required.
func readSetStock(body io.Reader) (sellable int64, shards int, err error) {
	var b struct {
		Sellable *int64 `json:"sellable"`
		Shards   int    `json:"shards"`
	}
	if err := decode(body, &b, false); err != nil {
		return 0, 0, err
	}
	if b.Sellable == nil {
		return 0, 0, invalid("sellable", "is required")
	}
	return *b.Sellable, b.Shards, nil
}

// readAdjust reads {"delta": ±N, "reason": "…", "request_id": "…"}; delta is required,
// request_id optional but not empty when present. The SKU is the caller's to set.
func readAdjust(body io.Reader) (AdjustRequest, error) {
	var b struct {
		Delta     *int64  `json:"delta"`
		Reason    string  `json:"reason"`
		RequestID *string `json:"request_id"`
	}
	if err := decode(body, &b, false); err != nil {
		return AdjustRequest{}, err
	}
	if b.Delta == nil {
		return AdjustRequest{}, invalid("delta", "is required")
	}
	req := AdjustRequest{Delta: *b.Delta, Reason: b.Reason}
	if b.RequestID != nil {
		if *b.RequestID == "" {
			// "" would read as no request_id: a retry of it would apply again.
			return AdjustRequest{}, invalid("request_id", "must not be empty (leave it out for an adjustment without one)")
		}
		req.RequestID = *b.RequestID
	}
	return req, nil
}

// readReshard reads {"shards": M}; shards is required.
func readReshard(body io.Reader) (int, error) {
	var b struct {
		Shards *int `json:"shards"`
	}
	if err := decode(body, &b, false); err != nil {
		return 0, err
	}
	if b.Shards == nil {
		return 0, invalid("shards", "is required")
	}
	return *b.Shards, nil
}

// readActivity reads {"qty": N, "starts_at": "…", "ends_at": "…"}, all required: a
// missing qty must not set the campaign's stock to 0.
func readActivity(body io.Reader) (qty int64, startsAt, endsAt time.Time, err error) {
	var b struct {
		Qty      *int64     `json:"qty"`
		StartsAt *time.Time `json:"starts_at"`
		EndsAt   *time.Time `json:"ends_at"`
	}
	if err := decode(body, &b, false); err != nil {
		return 0, startsAt, endsAt, err
	}
	switch {
	case b.Qty == nil:
		return 0, startsAt, endsAt, invalid("qty", "is required")
	case b.StartsAt == nil:
		return 0, startsAt, endsAt, invalid("starts_at", "is required")
	case b.EndsAt == nil:
		return 0, startsAt, endsAt, invalid("ends_at", "is required")
	}
	return *b.Qty, *b.StartsAt, *b.EndsAt, nil
}

// readDeduction reads {"order_no": "…", "items": […], "hold_ttl": "15m"}; hold_ttl is
// optional (0: the Store's default).
func readDeduction(body io.Reader) (DeductRequest, error) {
	var b struct {
		OrderNo string `json:"order_no"`
		Items   []Item `json:"items"`
		HoldTTL string `json:"hold_ttl"`
	}
	if err := decode(body, &b, false); err != nil {
		return DeductRequest{}, err
	}
	req := DeductRequest{OrderNo: b.OrderNo, Items: b.Items}
	if b.HoldTTL != "" {
		ttl, err := parseHoldTTL(b.HoldTTL)
		if err != nil {
			return DeductRequest{}, err
		}
		req.HoldTTL = ttl
	}
	return req, nil
}

// parseHoldTTL reads a hold_ttl such as "15m": a positive Go duration.
func parseHoldTTL(v string) (time.Duration, error) {
	ttl, err := time.ParseDuration(v)
	if err != nil || ttl <= 0 {
		return 0, invalid("hold_ttl", "%q is not a positive duration such as 15m", v)
	}
	return ttl, nil
}

// readExtend reads {"hold_ttl": "10m"}; hold_ttl is required.
func readExtend(body io.Reader) (time.Duration, error) {
	var b struct {
		HoldTTL *string `json:"hold_ttl"`
	}
	if err := decode(body, &b, false); err != nil {
		return 0, err
	}
	if b.HoldTTL == nil {
		return 0, invalid("hold_ttl", "is required")
	}
	return parseHoldTTL(*b.HoldTTL)
}

// readShip reads {"warehouse": "…"}.
func readShip(body io.Reader) (string, error) {
	var b struct {
		Warehouse string `json:"warehouse"`
	}
	if err := decode(body, &b, false); err != nil {
		return "", err
	}
	return b.Warehouse, nil
}

// readLevels reads a physical-stock sync: [{"sku": "…", "warehouse": "…", "qty": N}, …];
// qty is required in each level: a missing one must not set the stock to 0.
func readLevels(body io.Reader) ([]PhysicalLevel, error) {
	var b []struct {
		SKU       string `json:"sku"`
		Warehouse string `json:"warehouse"`
		Qty       *int64 `json:"qty"`
	}
	if err := decode(body, &b, false); err != nil {
		return nil, err
	}
	levels := make([]PhysicalLevel, len(b))
	for i, l := range b {
		if l.Qty == nil {
			return nil, invalid(fmt.Sprintf("[%d].qty", i), "is required")
		}
		levels[i] = PhysicalLevel{SKU: l.SKU, Warehouse: l.Warehouse, Qty: *l.Qty}
	}
	return levels, nil
}
