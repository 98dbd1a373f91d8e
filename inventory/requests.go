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

// optionalString reads an optional string field of a body: "" when it is left out (or
// null), a *ValidationError naming it when it is given as "". An empty value would read
// as the field left out, which is not what the caller wrote: an empty request_id would
// make an adjust's retry apply again, an empty activity take an activity's line from
// sellable stock. leftOut says what leaving the field out means, for the message.
func optionalString(field string, v *string, leftOut string) (string, error) {
	if v == nil {
		return "", nil
	}
	if *v == "" {
		return "", invalid(field, "must not be empty (leave it out for %s)", leftOut)
	}
	return *v, nil
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
	requestID, err := optionalString("request_id", b.RequestID, "an adjustment without one")
	if err != nil {
		return AdjustRequest{}, err
	}
	return AdjustRequest{Delta: *b.Delta, Reason: b.Reason, RequestID: requestID}, nil
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

// readDeduction reads {"order_no": "…", "items": [{"sku": "…", "qty": N, "activity": "…"}, …],
// "hold_ttl": "15m"}; an item's activity (a line of sellable stock without it) and
// hold_ttl (0: the Store's default) are optional, but not empty when given.
func readDeduction(body io.Reader) (DeductRequest, error) {
	var b struct {
		OrderNo string `json:"order_no"`
		Items   []struct {
			SKU      string  `json:"sku"`
			Qty      int64   `json:"qty"`
			Activity *string `json:"activity"`
		} `json:"items"`
		HoldTTL *string `json:"hold_ttl"`
	}
	if err := decode(body, &b, false); err != nil {
		return DeductRequest{}, err
	}
	req := DeductRequest{OrderNo: b.OrderNo}
	if b.Items != nil {
		req.Items = make([]Item, len(b.Items))
	}
	for i, it := range b.Items {
		activity, err := optionalString(fmt.Sprintf("items[%d].activity", i), it.Activity, "a line of sellable stock")
		if err != nil {
			return DeductRequest{}, err
		}
		req.Items[i] = Item{SKU: it.SKU, Qty: it.Qty, Activity: activity}
	}
	holdTTL, err := optionalString("hold_ttl", b.HoldTTL, "the default hold")
	if err != nil {
		return DeductRequest{}, err
	}
	if holdTTL != "" {
		if req.HoldTTL, err = parseHoldTTL(holdTTL); err != nil {
			return DeductRequest{}, err
		}
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
// qty is required in each level: a missing one must not set the stock to 0. In a
// single-SKU sync (pathSKU) a level's sku is optional, but not empty when given; the
// full sync's validLevels requires it.
func readLevels(body io.Reader, pathSKU bool) ([]PhysicalLevel, error) {
	var b []struct {
		SKU       *string `json:"sku"`
		Warehouse string  `json:"warehouse"`
		Qty       *int64  `json:"qty"`
	}
	if err := decode(body, &b, false); err != nil {
		return nil, err
	}
	levels := make([]PhysicalLevel, len(b))
	for i, l := range b {
		if l.Qty == nil {
			return nil, invalid(fmt.Sprintf("[%d].qty", i), "is required")
		}
		levels[i] = PhysicalLevel{Warehouse: l.Warehouse, Qty: *l.Qty}
		switch {
		case pathSKU:
			sku, err := optionalString(fmt.Sprintf("[%d].sku", i), l.SKU, "the SKU of the path")
			if err != nil {
				return nil, err
			}
			levels[i].SKU = sku
		case l.SKU != nil:
			levels[i].SKU = *l.SKU
		}
	}
	return levels, nil
}
