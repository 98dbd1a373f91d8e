package inventory

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// snapshot is a checksum of every row of every inventory table: what a refused request
// must leave alone.
func snapshot(t testing.TB, db *sql.DB) string {
	t.Helper()
	rows, err := db.Query(`CHECKSUM TABLE sku, sellable_shard, reserved, warehouse, physical_stock, activity_stock,
		hold, deduction_log, rollback_log, adjustment_log`)
	if err != nil {
		t.Fatalf("checksumming tables: %v", err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var table string
		var sum sql.NullInt64
		if err := rows.Scan(&table, &sum); err != nil {
			t.Fatalf("checksumming tables: %v", err)
		}
		if !sum.Valid {
			t.Fatalf("checksumming tables: no checksum for %s", table)
		}
		fmt.Fprintf(&b, "%s %d\n", table, sum.Int64)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("checksumming tables: %v", err)
	}
	return b.String()
}

func TestHTTPRefusesBadRequestsAndWritesNothing(t *testing.T) {
	store, db := newTestStore(t, Options{Token: "s3cret", MaxBodyBytes: 4096})
	ctx := t.Context()
	seedStore(t, store, seed{
		stock: []SKUStock{{SKU: "sku1", Sellable: 10, Shards: 2}, {SKU: "sku2", Sellable: 10, Shards: 1}},
		activities: []Activity{{SKU: "sku1", Activity: "sale", Qty: 5,
			StartsAt: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), EndsAt: time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC)}},
		warehouses: []Warehouse{{Code: "W1", Name: "Central", Type: "central"}},
		paid:       []DeductRequest{{OrderNo: "paid", Items: []Item{{SKU: "sku2", Qty: 1}}}},
	})
	if _, err := store.Adjust(ctx, AdjustRequest{SKU: "sku2", Delta: 1, Reason: "found", RequestID: "used"}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(store.Handler())
	defer srv.Close()

	deduction := func(extra string) string {
		return `{"order_no": "o1", "items": [{"sku": "sku1", "qty": 1}]` + extra + `}`
	}
	tests := []struct {
		name, method, path, body string
		token                    string // "" sends the right one
		wantStatus               int
		wantCode                 string
	}{
		{"no token", "POST", "/v1/deductions", deduction(""), "none", 401, "unauthorized"},
		{"wrong token", "POST", "/v1/deductions", deduction(""), "Bearer nope", 401, "unauthorized"},
		{"malformed JSON", "POST", "/v1/deductions", `{"order_no": `, "", 400, "invalid_request"},
		{"unknown field", "POST", "/v1/deductions", deduction(`, "priority": 1`), "", 400, "invalid_request"},
		{"unknown item field", "POST", "/v1/deductions", `{"order_no": "o1", "items": [{"sku": "sku1", "qty": 1, "colour": "red"}]}`, "", 400, "invalid_request"},
		{"two JSON values", "POST", "/v1/deductions", deduction("") + deduction(""), "", 400, "invalid_request"},
		{"string quantity", "POST", "/v1/deductions", `{"order_no": "o1", "items": [{"sku": "sku1", "qty": "1"}]}`, "", 400, "invalid_request"},
		{"zero quantity", "POST", "/v1/deductions", `{"order_no": "o1", "items": [{"sku": "sku1", "qty": 0}]}`, "", 400, "invalid_request"},
		{"negative quantity", "POST", "/v1/deductions", `{"order_no": "o1", "items": [{"sku": "sku1", "qty": -2}]}`, "", 400, "invalid_request"},
		{"missing order_no", "POST", "/v1/deductions", `{"items": [{"sku": "sku1", "qty": 1}]}`, "", 400, "invalid_request"},
		{"no items", "POST", "/v1/deductions", `{"order_no": "o1", "items": []}`, "", 400, "invalid_request"},
		{"same sku twice", "POST", "/v1/deductions", `{"order_no": "o1", "items": [{"sku": "sku1", "qty": 1}, {"sku": "sku1", "qty": 1}]}`, "", 400, "invalid_request"},
		{"same sku twice, once padded", "POST", "/v1/deductions", `{"order_no": "o1", "items": [{"sku": "sku1", "qty": 1}, {"sku": "sku1 ", "qty": 1}]}`, "", 400, "invalid_request"},
		{"order_no with a trailing space", "POST", "/v1/deductions", `{"order_no": "o1 ", "items": [{"sku": "sku1", "qty": 1}]}`, "", 400, "invalid_request"},
		{"quantity over 2^53-1", "POST", "/v1/deductions", `{"order_no": "o1", "items": [{"sku": "sku1", "qty": 9007199254740992}]}`, "", 400, "invalid_request"},
		{"bad hold_ttl", "POST", "/v1/deductions", deduction(`, "hold_ttl": "soon"`), "", 400, "invalid_request"},
		{"negative hold_ttl", "POST", "/v1/deductions", deduction(`, "hold_ttl": "-5m"`), "", 400, "invalid_request"},
		{"body over the limit", "POST", "/v1/deductions", `{"order_no": "o1", "items": [` + strings.Repeat(`{"sku": "sku1", "qty": 1},`, 400) + `]}`, "", 413, "body_too_large"},
		{"unknown sku", "POST", "/v1/deductions", `{"order_no": "o1", "items": [{"sku": "nope", "qty": 1}]}`, "", 422, "unknown_sku"},
		{"shortage", "POST", "/v1/deductions", `{"order_no": "o1", "items": [{"sku": "sku1", "qty": 11}]}`, "", 409, "insufficient_stock"},
		{"negative sellable", "POST", "/v1/skus/sku1/stock", `{"sellable": -1}`, "", 400, "invalid_request"},
		{"missing sellable", "POST", "/v1/skus/sku1/stock", `{"shards": 2}`, "", 400, "invalid_request"},
		{"too many shards", "POST", "/v1/skus/sku1/stock", `{"sellable": 5, "shards": 100000}`, "", 400, "invalid_request"},
		{"sellable over 2^53-1", "POST", "/v1/skus/sku1/stock", `{"sellable": 9223372036854775807}`, "", 400, "invalid_request"},
		{"zero delta", "POST", "/v1/skus/sku1/adjust", `{"delta": 0, "reason": "x"}`, "", 400, "invalid_request"},
		{"adjust without reason", "POST", "/v1/skus/sku1/adjust", `{"delta": 1}`, "", 400, "invalid_request"},
		{"adjust below zero", "POST", "/v1/skus/sku1/adjust", `{"delta": -11, "reason": "x"}`, "", 409, "insufficient_stock"},
		{"adjust by the least int64", "POST", "/v1/skus/sku1/adjust", `{"delta": -9223372036854775808, "reason": "x"}`, "", 400, "invalid_request"},
		{"adjust over 2^53-1 in all", "POST", "/v1/skus/sku1/adjust", `{"delta": 9007199254740982, "reason": "x"}`, "", 400, "invalid_request"},
		{"reshard to zero", "POST", "/v1/skus/sku1/reshard", `{"shards": 0}`, "", 400, "invalid_request"},
		{"reshard unknown sku", "POST", "/v1/skus/nope/reshard", `{"shards": 2}`, "", 404, "not_found"},
		{"get unknown sku", "GET", "/v1/skus/nope", "", "", 404, "not_found"},
		{"confirm unknown order", "POST", "/v1/orders/nope/confirm", "", "", 404, "not_found"},
		{"confirm with a body field", "POST", "/v1/orders/o1/confirm", `{"paid": true}`, "", 400, "invalid_request"},
		{"cancel with a body field", "POST", "/v1/orders/o1/cancel", `{"reason": "x"}`, "", 400, "invalid_request"},
		{"confirm with a body over the limit", "POST", "/v1/orders/o1/confirm", `{"x": "` + strings.Repeat("x", 5000) + `"}`, "", 413, "body_too_large"},
		{"cancel with a body over the limit", "POST", "/v1/orders/o1/cancel", `{"x": "` + strings.Repeat("x", 5000) + `"}`, "", 413, "body_too_large"},
		{"get order with an order_no over 64 bytes", "GET", "/v1/orders/" + strings.Repeat("o", 65), "", "", 400, "invalid_request"},
		{"cancel of an order_no ending in a space", "POST", "/v1/orders/o1%20/cancel", "", "", 400, "invalid_request"},
		{"ship without warehouse", "POST", "/v1/orders/o1/ship", `{}`, "", 400, "invalid_request"},
		{"warehouse without name", "PUT", "/v1/warehouses/W2", `{"type": "store"}`, "", 400, "invalid_request"},
		{"get unknown warehouse", "GET", "/v1/warehouses/W9", "", "", 404, "not_found"},
		{"get warehouse code over 32 bytes", "GET", "/v1/warehouses/" + strings.Repeat("W", 33), "", "", 400, "invalid_request"},
		{"extend without hold_ttl", "POST", "/v1/orders/paid/extend", `{}`, "", 400, "invalid_request"},
		{"extend with no body", "POST", "/v1/orders/paid/extend", "", "", 400, "invalid_request"},
		{"extend by a bad hold_ttl", "POST", "/v1/orders/paid/extend", `{"hold_ttl": "soon"}`, "", 400, "invalid_request"},
		{"extend by more than 168h", "POST", "/v1/orders/paid/extend", `{"hold_ttl": "169h"}`, "", 400, "invalid_request"},
		{"extend with an unknown field", "POST", "/v1/orders/paid/extend", `{"hold_ttl": "10m", "by": "10m"}`, "", 400, "invalid_request"},
		{"extend of an unknown order", "POST", "/v1/orders/nope/extend", `{"hold_ttl": "10m"}`, "", 404, "not_found"},
		{"extend of a confirmed order", "POST", "/v1/orders/paid/extend", `{"hold_ttl": "10m"}`, "", 409, "order_not_held"},
		{"negative physical", "POST", "/v1/physical", `[{"sku": "sku1", "warehouse": "W1", "qty": -1}]`, "", 400, "invalid_request"},
		{"physical not a list", "POST", "/v1/physical", `{"sku": "sku1", "warehouse": "W1", "qty": 1}`, "", 400, "invalid_request"},
		{"physical unknown warehouse", "POST", "/v1/physical", `[{"sku": "sku1", "warehouse": "W9", "qty": 1}]`, "", 422, "unknown_warehouse"},
		{"single-SKU sync naming another SKU", "POST", "/v1/physical/sku1", `[{"sku": "sku2", "warehouse": "W1", "qty": 1}]`, "", 400, "invalid_request"},
		{"activity ending before it starts", "PUT", "/v1/skus/sku1/activities/sale", `{"qty": 1, "starts_at": "2030-01-02T00:00:00Z", "ends_at": "2030-01-01T00:00:00Z"}`, "", 400, "invalid_request"},
		{"activity without qty", "PUT", "/v1/skus/sku1/activities/sale", `{"starts_at": "2030-01-01T00:00:00Z", "ends_at": "2030-01-03T00:00:00Z"}`, "", 400, "invalid_request"},
		{"activity without ends_at", "PUT", "/v1/skus/sku1/activities/sale", `{"qty": 1, "starts_at": "2030-01-01T00:00:00Z"}`, "", 400, "invalid_request"},
		{"activity before the year 1000", "PUT", "/v1/skus/sku1/activities/sale", `{"qty": 1, "starts_at": "0500-01-01T00:00:00Z", "ends_at": "2030-01-01T00:00:00Z"}`, "", 400, "invalid_request"},
		{"order_no not UTF-8", "POST", "/v1/deductions", "{\"order_no\": \"o-bad\xff\", \"items\": [{\"sku\": \"sku1\", \"qty\": 1}]}", "", 400, "invalid_request"},
		{"order_no with half a surrogate pair", "POST", "/v1/deductions", `{"order_no": "sur-\ud800", "items": [{"sku": "sku1", "qty": 1}]}`, "", 400, "invalid_request"},
		{"sku with half a surrogate pair", "POST", "/v1/deductions", `{"order_no": "o1", "items": [{"sku": "sku1\udbff", "qty": 1}]}`, "", 400, "invalid_request"},
		{"sku in the path not UTF-8", "POST", "/v1/skus/%FF/stock", `{"sellable": 1}`, "", 400, "invalid_request"},
		{"cancel of an order_no not UTF-8", "POST", "/v1/orders/%FE%FF/cancel", "", "", 400, "invalid_request"},
		{"field name in another case", "POST", "/v1/deductions", `{"ORDER_NO": "o1", "items": [{"sku": "sku1", "qty": 1}]}`, "", 400, "invalid_request"},
		{"item field name in another case", "POST", "/v1/deductions", `{"order_no": "o1", "items": [{"SKU": "sku1", "qty": 1}]}`, "", 400, "invalid_request"},
		{"order_no twice", "POST", "/v1/deductions", deduction(`, "order_no": "o2"`), "", 400, "invalid_request"},
		{"sellable twice", "POST", "/v1/skus/sku1/stock", `{"sellable": 1, "sellable": 2}`, "", 400, "invalid_request"},
		{"adjust without delta", "POST", "/v1/skus/sku1/adjust", `{"reason": "x"}`, "", 400, "invalid_request"},
		{"adjust with an empty request_id", "POST", "/v1/skus/sku1/adjust", `{"delta": 1, "reason": "x", "request_id": ""}`, "", 400, "invalid_request"},
		{"adjust with a request_id over 64 bytes", "POST", "/v1/skus/sku1/adjust", `{"delta": 1, "reason": "x", "request_id": "` + strings.Repeat("r", 65) + `"}`, "", 400, "invalid_request"},
		{"adjust with a request_id ending in a space", "POST", "/v1/skus/sku1/adjust", `{"delta": 1, "reason": "x", "request_id": "used "}`, "", 400, "invalid_request"},
		{"adjust with a numeric request_id", "POST", "/v1/skus/sku1/adjust", `{"delta": 1, "reason": "x", "request_id": 7}`, "", 400, "invalid_request"},
		{"adjust below zero with a request_id", "POST", "/v1/skus/sku1/adjust", `{"delta": -11, "reason": "x", "request_id": "new"}`, "", 409, "insufficient_stock"},
		{"adjust of another sku under a used request_id", "POST", "/v1/skus/sku1/adjust", `{"delta": 1, "reason": "found", "request_id": "used"}`, "", 409, "request_conflict"},
		{"adjust by another delta under a used request_id", "POST", "/v1/skus/sku2/adjust", `{"delta": 2, "reason": "found", "request_id": "used"}`, "", 409, "request_conflict"},
		{"reshard without shards", "POST", "/v1/skus/sku1/reshard", `{}`, "", 400, "invalid_request"},
		{"warehouse code over 32 bytes in a sync", "POST", "/v1/physical", `[{"sku": "sku1", "warehouse": "` + strings.Repeat("W", 33) + `", "qty": 1}]`, "", 400, "invalid_request"},
		{"lowercase scheme, wrong token", "GET", "/v1/skus/sku1", "", "bearer nope", 401, "unauthorized"},
		{"unknown route", "GET", "/v1/nothing", "", "", 404, "not_found"},
		{"wrong method", "DELETE", "/v1/skus/sku1", "", "", 405, "method_not_allowed"},
	}
	before := snapshot(t, db)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(ctx, tt.method, srv.URL+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			switch tt.token {
			case "":
				req.Header.Set("Authorization", "Bearer s3cret")
			case "none":
			default:
				req.Header.Set("Authorization", tt.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body apiError
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatalf("error body is not JSON: %v", err)
			}
			if resp.StatusCode != tt.wantStatus || body.Code != tt.wantCode || body.Message == "" {
				t.Fatalf("%s %s = %d %+v, want %d %s with a message", tt.method, tt.path, resp.StatusCode, body, tt.wantStatus, tt.wantCode)
			}
			if tt.wantCode == "insufficient_stock" && len(body.Short) == 0 {
				t.Fatalf("a 409 shortage lists no SKU: %+v", body)
			}
			if after := snapshot(t, db); after != before {
				t.Fatalf("a refused request wrote:\nbefore\n%s\nafter\n%s", before, after)
			}
		})
	}
}

// send makes one request of srv and returns its status and error body (zero on success).
func send(t *testing.T, srv *httptest.Server, method, path, body string) (int, apiError) {
	t.Helper()
	a := call(t, srv, method, path, body)
	return a.status, a.body
}

// A refusal names what is wrong where it is, down to the element of a list, and writes
// nothing.
func TestHTTPRefusalNamesTheElement(t *testing.T) {
	store, db := newTestStore(t, Options{})
	ctx := t.Context()
	if _, err := store.PutWarehouse(ctx, Warehouse{Code: "SH", Name: "Shanghai", Type: "central"}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.SyncPhysical(ctx, []PhysicalLevel{{SKU: "s1", Warehouse: "SH", Qty: 7}}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.SetStock(ctx, "s1", 10, 1); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(store.Handler())
	defer srv.Close()
	before := snapshot(t, db)
	for _, tt := range []struct {
		name, method, path, body string
		wantMessage              string
	}{
		// An optional string given as "" is refused, never read as the field left out: an
		// empty activity is not a sellable line, an empty hold_ttl not the default hold.
		{"an item's empty activity", "POST", "/v1/deductions", `{"order_no": "o1", "items": [{"sku": "s1", "qty": 1}, {"sku": "s1", "qty": 1, "activity": ""}]}`,
			`items[1].activity: must not be empty (leave it out for a line of sellable stock)`},
		{"an empty hold_ttl", "POST", "/v1/deductions", `{"order_no": "o1", "items": [{"sku": "s1", "qty": 1}], "hold_ttl": ""}`,
			`hold_ttl: must not be empty (leave it out for the default hold)`},
		{"single-SKU sync, a level with an empty sku", "POST", "/v1/physical/s1", `[{"sku": "", "warehouse": "SH", "qty": 1}]`,
			`[0].sku: must not be empty (leave it out for the SKU of the path)`},
		{"full sync, a level without qty", "POST", "/v1/physical", `[{"sku": "s2", "warehouse": "SH"}]`, `[0].qty: is required`},
		{"single-SKU sync, a level without qty", "POST", "/v1/physical/s1", `[{"warehouse": "SH"}]`, `[0].qty: is required`},
		{"single-SKU sync, its second level without qty", "POST", "/v1/physical/s1", `[{"warehouse": "BJ", "qty": 1}, {"warehouse": "SH"}]`, `[1].qty: is required`},
		{"a null level", "POST", "/v1/physical/s1", `[null]`, `[0].qty: is required`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, answer := send(t, srv, tt.method, tt.path, tt.body)
			if status != http.StatusBadRequest || answer.Code != "invalid_request" || !strings.Contains(answer.Message, tt.wantMessage) {
				t.Fatalf("%s %s %s = %d %+v, want 400 invalid_request saying %q", tt.method, tt.path, tt.body, status, answer, tt.wantMessage)
			}
			if after := snapshot(t, db); after != before {
				t.Fatalf("a refused request wrote:\nbefore\n%s\nafter\n%s", before, after)
			}
		})
	}
}

// A body of null is refused 400 on every call that takes a body, and writes nothing:
// decoded as it is, it would be a request nobody sent (a single-SKU physical sync of no
// warehouse, which sets the SKU's physical stock to 0 everywhere). An empty array is that
// sync said on purpose, and does so.
func TestHTTPNullBodyIsRefusedAndAnEmptySyncZeroesTheSKU(t *testing.T) {
	store, db := newTestStore(t, Options{})
	seedStore(t, store, seed{
		stock:      []SKUStock{{SKU: "s1", Sellable: 10, Shards: 1}},
		warehouses: []Warehouse{{Code: "SH", Name: "Shanghai", Type: "central"}, {Code: "BJ", Name: "Beijing", Type: "central"}},
		physical:   []PhysicalLevel{{SKU: "s1", Warehouse: "SH", Qty: 7}, {SKU: "s1", Warehouse: "BJ", Qty: 3}},
		paid:       []DeductRequest{{OrderNo: "paid", Items: []Item{{SKU: "s1", Qty: 1}}}},
	})
	if _, err := store.Deduct(t.Context(), DeductRequest{OrderNo: "held", Items: []Item{{SKU: "s1", Qty: 1}}}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(store.Handler())
	defer srv.Close()
	before := snapshot(t, db)
	for _, c := range []struct{ method, path string }{
		{"POST", "/v1/physical/s1"},
		{"POST", "/v1/physical"},
		{"POST", "/v1/skus/s1/stock"},
		{"POST", "/v1/skus/s1/adjust"},
		{"POST", "/v1/skus/s1/reshard"},
		{"PUT", "/v1/skus/s1/activities/sale"},
		{"POST", "/v1/deductions"},
		{"POST", "/v1/orders/held/confirm"},
		{"POST", "/v1/orders/held/cancel"},
		{"POST", "/v1/orders/held/extend"},
		{"POST", "/v1/orders/paid/ship"},
		{"PUT", "/v1/warehouses/SH"},
	} {
		status, answer := send(t, srv, c.method, c.path, "null")
		if status != http.StatusBadRequest || answer.Code != "invalid_request" || !strings.Contains(answer.Message, "not null") {
			t.Errorf("%s %s with the body null = %d %+v, want 400 invalid_request saying it must not be null", c.method, c.path, status, answer)
		}
	}
	if after := snapshot(t, db); after != before {
		t.Fatalf("a null body wrote:\nbefore\n%s\nafter\n%s", before, after)
	}
	if status, answer := send(t, srv, "POST", "/v1/physical/s1", "[]"); status != http.StatusOK {
		t.Fatalf("POST /v1/physical/s1 [] = %d %+v, want 200", status, answer)
	}
	if n := queryInt(t, db, "SELECT SUM(qty) FROM physical_stock WHERE sku_id = 's1'"); n != 0 {
		t.Errorf("after a single-SKU sync of [], s1 has %d units of physical stock, want 0 in every warehouse", n)
	}
}

// A shortage says which stock is short: sellable, an activity's (named), or a warehouse's
// physical stock (a shipment, named, for the SKU's lines together).
func TestHTTPShortageSaysWhichStock(t *testing.T) {
	store, db := newTestStore(t, Options{})
	now := time.Now().UTC()
	seedStore(t, store, seed{
		stock:      []SKUStock{{SKU: "a1", Sellable: 10, Shards: 1}},
		activities: []Activity{{SKU: "a1", Activity: "sale", Qty: 5, StartsAt: now.Add(-time.Hour), EndsAt: now.Add(time.Hour)}},
		warehouses: []Warehouse{{Code: "SH", Name: "Shanghai", Type: "central"}},
		physical:   []PhysicalLevel{{SKU: "a1", Warehouse: "SH", Qty: 4}},
		paid:       []DeductRequest{{OrderNo: "paid", Items: []Item{{SKU: "a1", Qty: 2}, {SKU: "a1", Qty: 3, Activity: "sale"}}}},
	})
	srv := httptest.NewServer(store.Handler())
	defer srv.Close()
	before := snapshot(t, db)
	for _, tt := range []struct {
		name, path, body string
		wantMessage      string
		wantShort        []Shortage
	}{
		{"sellable and activity lines of one SKU", "/v1/deductions",
			`{"order_no": "both", "items": [{"sku": "a1", "qty": 20, "activity": "sale"}, {"sku": "a1", "qty": 20}]}`,
			"insufficient stock: a1 (requested 20, available 8), a1 of activity sale (requested 20, available 2)",
			[]Shortage{{SKU: "a1", Requested: 20, Available: 8}, {SKU: "a1", Activity: "sale", Requested: 20, Available: 2}}},
		{"shipment", "/v1/orders/paid/ship", `{"warehouse": "SH"}`,
			"insufficient stock: a1 physical stock at warehouse SH (requested 5, available 4)",
			[]Shortage{{SKU: "a1", Warehouse: "SH", Requested: 5, Available: 4}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, answer := send(t, srv, "POST", tt.path, tt.body)
			if status != http.StatusConflict || answer.Code != "insufficient_stock" || !strings.Contains(answer.Message, tt.wantMessage) ||
				!slices.Equal(answer.Short, tt.wantShort) {
				t.Fatalf("POST %s %s = %d %+v, want 409 insufficient_stock saying %q, short %+v", tt.path, tt.body, status, answer, tt.wantMessage, tt.wantShort)
			}
			if after := snapshot(t, db); after != before {
				t.Fatalf("a refused request wrote:\nbefore\n%s\nafter\n%s", before, after)
			}
		})
	}
}

// A SKU the WMS has reported but whose sellable stock was never set exists (GET answers
// it, "shards": 0): adjust, reshard and an activity PUT of it answer 422 unknown_sku,
// saying to set its stock first, as a deduction of it does, and write nothing. A SKU
// nobody knows stays 404; once its stock is set, the same adjust goes through.
func TestHTTPSKUOnlyTheWMSReportedNeedsItsStockSetFirst(t *testing.T) {
	store, db := newTestStore(t, Options{})
	seedStore(t, store, seed{
		warehouses: []Warehouse{{Code: "W1", Name: "Central", Type: "central"}},
		physical:   []PhysicalLevel{{SKU: "wms-only", Warehouse: "W1", Qty: 5}},
	})
	srv := httptest.NewServer(store.Handler())
	defer srv.Close()
	if got := call(t, srv, "GET", "/v1/skus/wms-only", ""); got.status != http.StatusOK {
		t.Fatalf("GET /v1/skus/wms-only = %d %+v, want 200", got.status, got.body)
	}
	const activity = `{"qty": 1, "starts_at": "2030-01-01T00:00:00Z", "ends_at": "2030-01-02T00:00:00Z"}`
	before := snapshot(t, db)
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/skus/%s/adjust", `{"delta": 5, "reason": "recount"}`},
		{"POST", "/v1/skus/%s/adjust", `{"delta": -1, "reason": "damaged", "request_id": "r1"}`},
		{"POST", "/v1/skus/%s/reshard", `{"shards": 2}`},
		{"PUT", "/v1/skus/%s/activities/sale", activity},
		{"POST", "/v1/deductions", `{"order_no": "o1", "items": [{"sku": "wms-only", "qty": 1}]}`},
	} {
		path := strings.ReplaceAll(c.path, "%s", "wms-only")
		got := call(t, srv, c.method, path, c.body)
		want := "sku wms-only has no sellable stock set: set it with POST /v1/skus/wms-only/stock first"
		if got.status != http.StatusUnprocessableEntity || got.body.Code != "unknown_sku" || !strings.Contains(got.body.Message, want) {
			t.Errorf("%s %s %s = %d %+v, want 422 unknown_sku saying %q", c.method, path, c.body, got.status, got.body, want)
		}
		if strings.Contains(c.path, "%s") {
			path = strings.ReplaceAll(c.path, "%s", "nobody-knows")
			if got := call(t, srv, c.method, path, c.body); got.status != http.StatusNotFound || got.body.Code != "not_found" {
				t.Errorf("%s %s = %d %+v, want 404 not_found", c.method, path, got.status, got.body)
			}
		}
		if after := snapshot(t, db); after != before {
			t.Fatalf("%s %s wrote:\nbefore\n%s\nafter\n%s", c.method, path, before, after)
		}
	}
	if _, err := store.Reshard(t.Context(), "wms-only", 2); !errors.Is(err, ErrUnknownSKU) {
		t.Errorf("Reshard of a SKU only the WMS reported: %v, want ErrUnknownSKU", err)
	}
	if _, err := store.Adjust(t.Context(), AdjustRequest{SKU: "nobody-knows", Delta: 1, Reason: "x"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Adjust of a SKU nobody knows: %v, want ErrNotFound", err)
	}
	if got := call(t, srv, "POST", "/v1/skus/wms-only/stock", `{"sellable": 0}`); got.status != http.StatusOK {
		t.Fatalf("setting the stock: %d %+v", got.status, got.body)
	}
	if got := call(t, srv, "POST", "/v1/skus/wms-only/adjust", `{"delta": 5, "reason": "recount"}`); got.status != http.StatusOK {
		t.Fatalf("adjust once the stock is set = %d %+v, want 200", got.status, got.body)
	}
}

// A physical sync of the most levels a call may carry, 10,000, fits the body limit with
// the longest identifiers, indented; other calls keep the smaller limit.
func TestHTTPPhysicalSyncOfTheMostLevelsFits(t *testing.T) {
	store, db := newTestStore(t, Options{})
	warehouse := strings.Repeat("W", maxWarehouseLength)
	if _, err := store.PutWarehouse(t.Context(), Warehouse{Code: warehouse, Name: "Central", Type: "central"}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(store.Handler())
	defer srv.Close()
	levels := make([]PhysicalLevel, maxSyncRows)
	for i := range levels {
		levels[i] = PhysicalLevel{SKU: fmt.Sprintf("%0*d", maxIDLength, i), Warehouse: warehouse, Qty: maxQty}
	}
	body, err := json.MarshalIndent(levels, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if status, answer := send(t, srv, "POST", "/v1/physical", string(body)); status != http.StatusOK {
		t.Fatalf("a sync of %d levels (%d bytes) = %d %+v, want 200", len(levels), len(body), status, answer)
	}
	if n := queryInt(t, db, "SELECT COUNT(*) FROM physical_stock WHERE qty = ?", int64(maxQty)); n != maxSyncRows {
		t.Fatalf("%d levels written, want %d", n, maxSyncRows)
	}
	// The same bytes are over the limit of any other call.
	if status, answer := send(t, srv, "POST", "/v1/deductions", string(body)); status != http.StatusRequestEntityTooLarge || answer.Code != "body_too_large" {
		t.Fatalf("a deduction of %d bytes = %d %+v, want 413 body_too_large", len(body), status, answer)
	}
}

func TestHTTPWrongMethodIs405AndUnknownPathIs404(t *testing.T) {
	store, db := newTestStore(t, Options{})
	ctx := t.Context()
	if _, err := store.SetStock(ctx, "sku1", 10, 2); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(store.Handler())
	defer srv.Close()
	tests := []struct {
		method, path, body string
		wantStatus         int
		wantCode           string
		wantAllow          string // "" for no Allow header
	}{
		{"DELETE", "/v1/skus/sku1", "", 405, "method_not_allowed", "GET, HEAD"},
		{"POST", "/v1/skus/sku1", `{"sellable": 1}`, 405, "method_not_allowed", "GET, HEAD"},
		{"PUT", "/v1/skus/sku1/stock", `{"sellable": 1}`, 405, "method_not_allowed", "POST"},
		{"GET", "/v1/skus/sku1/adjust", "", 405, "method_not_allowed", "POST"},
		{"GET", "/v1/deductions", `{"order_no": "o1", "items": [{"sku": "sku1", "qty": 1}]}`, 405, "method_not_allowed", "POST"},
		{"PUT", "/v1/orders/o1/cancel", "", 405, "method_not_allowed", "POST"},
		{"DELETE", "/v1/orders/o1", "", 405, "method_not_allowed", "GET, HEAD"},
		{"POST", "/v1/warehouses/W1", `{"name": "n", "type": "t"}`, 405, "method_not_allowed", "GET, HEAD, PUT"},
		{"POST", "/v1/warehouses", `{"name": "n", "type": "t"}`, 405, "method_not_allowed", "GET, HEAD"},
		{"GET", "/v1/orders/o1/extend", "", 405, "method_not_allowed", "POST"},
		{"PATCH", "/v1/skus/sku1/activities/sale", "", 405, "method_not_allowed", "PUT"},
		{"GET", "/v1/physical", "", 405, "method_not_allowed", "POST"},
		{"DELETE", "/v1/physical/sku1", "", 405, "method_not_allowed", "POST"},
		{"GET", "/v1/nothing", "", 404, "not_found", ""},
		{"DELETE", "/v1/nothing", "", 404, "not_found", ""},
		{"POST", "/v1/skus/sku1/stock/extra", `{"sellable": 1}`, 404, "not_found", ""},
		{"GET", "/v1/skus/sku1/", "", 404, "not_found", ""},
		{"DELETE", "/v1/orders", "", 405, "method_not_allowed", "GET, HEAD"},
		{"POST", "/v1/", "", 404, "not_found", ""},
		// Paths a ServeMux would redirect, answered where they are.
		{"GET", "/v1", "", 404, "not_found", ""},
		{"POST", "/v1/skus//stock", `{"sellable": 1}`, 404, "not_found", ""},
		{"POST", "/v1/orders//cancel", "", 404, "not_found", ""},
		{"GET", "/v1/skus/./sku1", "", 404, "not_found", ""},
		{"GET", "/v1/orders/x/../o1", "", 404, "not_found", ""},
	}
	// A redirect is an answer of its own, not followed.
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	before := snapshot(t, db)
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req, err := http.NewRequestWithContext(ctx, tt.method, srv.URL+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if got := resp.Header.Get("Allow"); got != tt.wantAllow {
				t.Fatalf("Allow = %q, want %q", got, tt.wantAllow)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type = %q, want application/json", ct)
			}
			var body apiError
			dec := json.NewDecoder(resp.Body)
			dec.DisallowUnknownFields()
			if err := dec.Decode(&body); err != nil {
				t.Fatalf("error body is not an apiError: %v", err)
			}
			if body.Code != tt.wantCode || body.Message == "" {
				t.Fatalf("body %+v, want code %s with a message", body, tt.wantCode)
			}
			if after := snapshot(t, db); after != before {
				t.Fatalf("a refused request wrote:\nbefore\n%s\nafter\n%s", before, after)
			}
		})
	}
}

func TestHTTPOrderFlow(t *testing.T) {
	store, db := newTestStore(t, Options{})
	srv := httptest.NewServer(store.Handler())
	defer srv.Close()
	call := func(method, path, body string, wantStatus int, out any) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), method, srv.URL+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != wantStatus {
			var e apiError
			json.NewDecoder(resp.Body).Decode(&e)
			t.Fatalf("%s %s = %d %+v, want %d", method, path, resp.StatusCode, e, wantStatus)
		}
		if out != nil {
			if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
				t.Fatalf("%s %s: decoding answer: %v", method, path, err)
			}
		}
	}
	var stock SKUStock
	call("POST", "/v1/skus/p1/stock", `{"sellable": 20, "shards": 4}`, 200, &stock)
	if stock.Sellable != 20 || stock.Shards != 4 || len(stock.ShardQty) != 4 {
		t.Fatalf("set stock answered %+v", stock)
	}
	call("PUT", "/v1/warehouses/W1", `{"name": "Central", "address": "1 Dock Rd", "type": "central"}`, 200, nil)
	call("POST", "/v1/physical/p1", `[{"warehouse": "W1", "qty": 30}]`, 200, nil)
	call("PUT", "/v1/warehouses/BJ", `{"name": "Beijing", "type": "regional"}`, 200, nil)
	var warehouse Warehouse
	var warehouses Warehouses
	call("GET", "/v1/warehouses/W1", "", 200, &warehouse)
	call("GET", "/v1/warehouses", "", 200, &warehouses)
	if want := (Warehouse{Code: "W1", Name: "Central", Address: "1 Dock Rd", Type: "central"}); warehouse != want ||
		!slices.Equal(warehouses.Warehouses, []Warehouse{{Code: "BJ", Name: "Beijing", Type: "regional"}, want}) {
		t.Fatalf("GET of warehouse W1 answered %+v and the list %+v", warehouse, warehouses)
	}

	var order, replay Order
	deduction := `{"order_no": "web-1", "items": [{"sku": "p1", "qty": 2}], "hold_ttl": "30m"}`
	call("POST", "/v1/deductions", deduction, 201, &order)
	if order.Status != StatusHeld || order.Replayed || len(order.Items) != 1 {
		t.Fatalf("deduction answered %+v", order)
	}
	call("POST", "/v1/deductions", deduction, 200, &replay)
	if !replay.Replayed || !replay.ExpiresAt.Equal(order.ExpiresAt) {
		t.Fatalf("retried deduction answered %+v, want replayed, expiring at %s as the first answer said", replay, order.ExpiresAt)
	}
	// The payment takes longer: the hold is extended, and a retry of the extension does not
	// stack another on it.
	var extended, extendedAgain Order
	call("POST", "/v1/orders/web-1/extend", `{"hold_ttl": "2h"}`, 200, &extended)
	call("POST", "/v1/orders/web-1/extend", `{"hold_ttl": "2h"}`, 200, &extendedAgain)
	if extended.Status != StatusHeld || extended.Replayed || extended.ExpiresAt.Sub(order.ExpiresAt) < 89*time.Minute ||
		extendedAgain.ExpiresAt.Sub(extended.ExpiresAt) > time.Minute {
		t.Fatalf("held for 30m, extended by 2h: %+v, then again %+v; want about 1h30 more, once", extended, extendedAgain)
	}
	call("GET", "/v1/orders/web-1", "", 200, &replay)
	if !replay.ExpiresAt.Equal(extendedAgain.ExpiresAt) {
		t.Fatalf("GET reads the hold expiring at %s, the extension answered %s", replay.ExpiresAt, extendedAgain.ExpiresAt)
	}
	// The same order number with another quantity is another order: refused, nothing taken.
	var conflict apiError
	call("POST", "/v1/deductions", `{"order_no": "web-1", "items": [{"sku": "p1", "qty": 3}]}`, 409, &conflict)
	if conflict.Code != "order_conflict" || !strings.Contains(conflict.Message, "deducted as p1 x2, this request asks for p1 x3") {
		t.Fatalf("deduction of order web-1 with other items answered %+v, want order_conflict naming both", conflict)
	}
	call("GET", "/v1/skus/p1", "", 200, &stock)
	if stock.Sellable != 18 {
		t.Fatalf("sellable %d after a conflicting deduction, want 18", stock.Sellable)
	}
	// Only the WMS knows p2 yet: GET shows its physical stock.
	call("POST", "/v1/physical/p2", `[{"warehouse": "W1", "qty": 4}]`, 200, nil)
	call("GET", "/v1/skus/p2", "", 200, &stock)
	if stock.Shards != 0 || stock.Sellable != 0 || len(stock.Physical) != 1 || stock.Physical[0].Qty != 4 {
		t.Fatalf("GET of a SKU only the WMS reported answered %+v", stock)
	}
	var activity Activity
	call("PUT", "/v1/skus/p1/activities/sale", `{"qty": 3, "starts_at": "2030-01-01T00:00:00.123456789Z", "ends_at": "2030-01-02T00:00:00Z"}`, 200, &activity)
	call("GET", "/v1/skus/p1", "", 200, &stock)
	if len(stock.Activities) != 1 || !stock.Activities[0].StartsAt.Equal(activity.StartsAt) {
		t.Fatalf("the activity PUT answered %+v, GET reads %+v: they must name the same start", activity, stock.Activities)
	}
	call("POST", "/v1/orders/web-1/confirm", "", 200, &order)
	call("POST", "/v1/orders/web-1/ship", `{"warehouse": "W1"}`, 200, &order)
	if order.Status != StatusShipped {
		t.Fatalf("ship answered %+v", order)
	}
	var e apiError
	call("POST", "/v1/orders/web-1/cancel", "", 409, &e)
	if e.Code != "already_shipped" {
		t.Fatalf("cancel after ship answered %+v", e)
	}
	call("POST", "/v1/skus/p1/reshard", `{"shards": 2}`, 200, &stock)
	var adjusted, replayed Adjustment
	adjust := `{"delta": 5, "reason": "recount", "request_id": "recount-1"}`
	call("POST", "/v1/skus/p1/adjust", adjust, 200, &adjusted)
	call("POST", "/v1/skus/p1/adjust", adjust, 200, &replayed)
	if adjusted.Replayed || adjusted.Sellable != 23 || !replayed.Replayed || replayed.Sellable != 23 || replayed.SKU != "p1" {
		t.Fatalf("adjust answered %+v, its retry %+v; want sellable 23 both times, the retry replayed", adjusted, replayed)
	}
	call("POST", "/v1/skus/p1/adjust", `{"delta": -5, "reason": "recount", "request_id": "recount-1"}`, 409, &conflict)
	if conflict.Code != "request_conflict" || !strings.Contains(conflict.Message, "request_id recount-1 adjusted p1 by 5") ||
		!strings.Contains(conflict.Message, "adjusting stock of p1 by -5") {
		t.Fatalf("adjust under a used request_id with another delta answered %+v, want request_conflict naming both", conflict)
	}
	call("GET", "/v1/skus/p1", "", 200, &stock)
	if stock.Sellable != 23 || stock.Shards != 2 || stock.Reserved != 0 || len(stock.Physical) != 1 || stock.Physical[0].Qty != 28 {
		t.Fatalf("GET answered %+v", stock)
	}
	call("GET", "/v1/orders/web-1", "", 200, &order)
	if order.Status != StatusShipped || order.Warehouse != "W1" {
		t.Fatalf("GET order answered %+v", order)
	}
	if n := queryInt(t, db, "SELECT COUNT(*) FROM deduction_log"); n != 1 {
		t.Fatalf("%d log rows, want 1", n)
	}
}

// The token's scheme is case-insensitive, as HTTP authentication schemes are.
func TestHTTPBearerSchemeInAnyCase(t *testing.T) {
	store, _ := newTestStore(t, Options{Token: "s3cret"})
	if _, err := store.SetStock(t.Context(), "sku1", 1, 1); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(store.Handler())
	defer srv.Close()
	for _, auth := range []string{"Bearer s3cret", "bearer s3cret", "BEARER s3cret"} {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", srv.URL+"/v1/skus/sku1", nil)
		req.Header.Set("Authorization", auth)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("Authorization %q: status %d, want 200", auth, resp.StatusCode)
		}
	}
}

// TestHTTPCallerGoneIsNoServerError: a request whose caller hung up answers 503
// unavailable and is no error in the log (a daemon's error log is what operators alert on).
func TestHTTPCallerGoneIsNoServerError(t *testing.T) {
	core, logs := observer.New(zapcore.WarnLevel)
	store, _ := newTestStore(t, Options{Logger: zap.New(core)})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for _, path := range []string{"/v1/orders/gone-1/cancel", "/v1/orders/gone-1/confirm"} {
		req := httptest.NewRequestWithContext(ctx, "POST", path, nil)
		rec := httptest.NewRecorder()
		store.Handler().ServeHTTP(rec, req)
		var e apiError
		json.NewDecoder(rec.Body).Decode(&e)
		if rec.Code != http.StatusServiceUnavailable || e.Code != "unavailable" {
			t.Errorf("POST %s with the caller gone = %d %+v, want 503 unavailable", path, rec.Code, e)
		}
	}
	for _, l := range logs.All() {
		t.Errorf("logged at %s: %s %v", l.Level, l.Message, l.ContextMap())
	}
}
