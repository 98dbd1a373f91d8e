package inventory

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// The calls whose JSON bodies are fuzzed, indexed by the fuzz input's endpoint byte.
const (
	fuzzDeduct uint8 = iota
	fuzzSetStock
	fuzzAdjust
	fuzzReshard
	fuzzShip
	fuzzSyncPhysical
	fuzzSyncPhysicalSKU
	fuzzEndpointCount
)

var fuzzPaths = [fuzzEndpointCount]string{
	fuzzDeduct:          "/v1/deductions",
	fuzzSetStock:        "/v1/skus/sku1/stock",
	fuzzAdjust:          "/v1/skus/sku1/adjust",
	fuzzReshard:         "/v1/skus/sku1/reshard",
	fuzzShip:            "/v1/orders/paid/ship",
	fuzzSyncPhysical:    "/v1/physical",
	fuzzSyncPhysicalSKU: "/v1/physical/sku1",
}

// fuzzMaxBody is the body limit of the fuzzed handler, small enough for the fuzzer to
// reach 413.
const fuzzMaxBody = 2048

// fuzzSeeds are valid and malformed bodies of each call, with the boundaries of their
// numbers.
var fuzzSeeds = []struct {
	endpoint uint8
	body     string
}{
	{fuzzDeduct, `{"order_no": "o1", "items": [{"sku": "sku1", "qty": 1}]}`},
	{fuzzDeduct, `{"order_no": "o2", "items": [{"sku": "sku1", "qty": 2}, {"sku": "sku2", "qty": 1}], "hold_ttl": "30m"}`},
	{fuzzDeduct, `{"order_no": "o3", "items": [{"sku": "sku1", "qty": 1, "activity": "sale"}, {"sku": "sku1", "qty": 1}]}`},
	{fuzzDeduct, `{"order_no": "o4", "items": [{"sku": "sku1", "qty": 9223372036854775807}]}`},
	{fuzzDeduct, `{"order_no": "o5", "items": [{"sku": "nope", "qty": 1}], "hold_ttl": "168h"}`},
	{fuzzDeduct, `{"order_no": "o6", "items": [{"sku": "sku1", "qty": 1, "activity": "nope"}]}`},
	{fuzzDeduct, `{"order_no": "o1", "items": [{"sku": "sku1", "qty": 1}], "hold_ttl": "-1s"}`},
	{fuzzDeduct, `{"order_no": "o1", "items": [{"sku": "sku1", "qty": 1}], "hold_ttl": "169h"}`},
	{fuzzDeduct, `{"order_no": "o1", "items": [{"sku": "sku1", "qty": 1}]} {}`},
	{fuzzDeduct, `{"order_no": "", "items": []}`},
	{fuzzDeduct, `{"order_no": "o7", "items": [{"sku": "sku1", "qty": 1, "activity": ""}]}`},
	{fuzzDeduct, `{"order_no": "o8", "items": [{"sku": "sku1", "qty": 1}], "hold_ttl": ""}`},
	{fuzzDeduct, `{"order_no": "o1", "items": [null]}`},
	{fuzzDeduct, `{"order_no": "o7", "items": [{"sku": "sku1", "qty": 1}, {"sku": "sku1", "qty": 1}]}`},
	{fuzzDeduct, `{"order_no": "o8", "items": [{"sku": "sku1", "qty": 1}, {"sku": "sku1 ", "qty": 1}]}`},
	{fuzzDeduct, `{"order_no": "o1"`},
	{fuzzDeduct, `null`},
	{fuzzDeduct, `{"order_no": "o\u0085", "items": [{"sku": "sku1", "qty": 1}]}`},
	{fuzzDeduct, ``},
	{fuzzSetStock, `{"sellable": 100, "shards": 4}`},
	{fuzzSetStock, `{"sellable": 0}`},
	{fuzzSetStock, `{"sellable": 9223372036854775807, "shards": 256}`},
	{fuzzSetStock, `{"sellable": -1}`},
	{fuzzSetStock, `{"shards": 2}`},
	{fuzzSetStock, `{"sellable": 1.5, "shards": 257}`},
	{fuzzAdjust, `{"delta": 5, "reason": "recount"}`},
	{fuzzAdjust, `{"delta": -3, "reason": "damaged"}`},
	{fuzzAdjust, `{"delta": 9223372036854775807, "reason": "x"}`},
	{fuzzAdjust, `{"delta": -9223372036854775808, "reason": "x"}`},
	{fuzzAdjust, `{"delta": 0, "reason": "x"}`},
	{fuzzAdjust, `{"delta": 1}`},
	{fuzzAdjust, `{"delta": 2, "reason": "recount", "request_id": "adj-1"}`},
	{fuzzAdjust, `{"delta": -2, "reason": "recount", "request_id": "adj-1"}`},
	{fuzzAdjust, `{"delta": 2, "reason": "recount", "request_id": ""}`},
	{fuzzAdjust, `{"delta": 2, "reason": "recount", "request_id": "adj "}`},
	{fuzzAdjust, `{"delta": 2, "reason": "recount", "request_id": 7}`},
	{fuzzReshard, `{"shards": 3}`},
	{fuzzReshard, `{"shards": 256}`},
	{fuzzReshard, `{"shards": 0}`},
	{fuzzReshard, `{"shards": -1}`},
	{fuzzReshard, `{}`},
	{fuzzShip, `{"warehouse": "W1"}`},
	{fuzzShip, `{"warehouse": "W9"}`},
	{fuzzShip, `{"warehouse": ""}`},
	{fuzzShip, `{"warehouse": 1}`},
	{fuzzSyncPhysical, `[{"sku": "sku1", "warehouse": "W1", "qty": 30}, {"sku": "sku2", "warehouse": "W1", "qty": 0}]`},
	{fuzzSyncPhysical, `[{"sku": "sku1", "warehouse": "W1", "qty": 9223372036854775807}]`},
	{fuzzSyncPhysical, `[{"sku": "sku1", "warehouse": "W1", "qty": -1}]`},
	{fuzzSyncPhysical, `[{"sku": "sku1", "warehouse": "W9", "qty": 1}]`},
	{fuzzSyncPhysical, `[{"sku": "sku1", "warehouse": "W1", "qty": 1}, {"sku": "sku1", "warehouse": "W1", "qty": 2}]`},
	{fuzzSyncPhysical, `[{"sku": "sku1", "warehouse": "W1", "qty": 1}, {"sku": "sku1", "warehouse": "W1 ", "qty": 2}]`},
	{fuzzSyncPhysical, `[]`},
	{fuzzSyncPhysical, `{"sku": "sku1", "warehouse": "W1", "qty": 1}`},
	{fuzzSyncPhysicalSKU, `[{"warehouse": "W1", "qty": 7}]`},
	{fuzzSyncPhysicalSKU, `[{"sku": "sku1", "warehouse": "W1", "qty": 7}]`},
	{fuzzSyncPhysicalSKU, `[{"sku": "sku2", "warehouse": "W1", "qty": 1}]`},
	{fuzzSyncPhysicalSKU, `[{"sku": "", "warehouse": "W1", "qty": 7}]`},
	{fuzzSyncPhysicalSKU, `[]`},
	{fuzzSyncPhysicalSKU, `null`},
}

func addFuzzSeeds(f *testing.F) {
	for _, seed := range fuzzSeeds {
		f.Add(seed.endpoint, seed.body)
	}
}

// readRequest reads body as the handler of endpoint does and applies the operation's own
// checks, all that happens before the database is asked. It returns what the operation
// would be called with.
func readRequest(endpoint uint8, body string) (any, error) {
	r := http.MaxBytesReader(httptest.NewRecorder(), io.NopCloser(strings.NewReader(body)), fuzzMaxBody)
	switch endpoint {
	case fuzzDeduct:
		req, err := readDeduction(r)
		if err != nil {
			return nil, err
		}
		return (&Store{opts: Options{}.withDefaults()}).normalize(req)
	case fuzzSetStock:
		sellable, shards, err := readSetStock(r)
		if err == nil {
			err = checkSetStock("sku1", sellable, shards)
		}
		return [2]int64{sellable, int64(shards)}, err
	case fuzzAdjust:
		req, err := readAdjust(r)
		if err == nil {
			req.SKU = "sku1"
			err = checkAdjust(req)
		}
		return req, err
	case fuzzReshard:
		shards, err := readReshard(r)
		if err == nil {
			err = checkReshard("sku1", shards)
		}
		return shards, err
	case fuzzShip:
		warehouse, err := readShip(r)
		if err == nil {
			err = checkShip("paid", warehouse)
		}
		return warehouse, err
	case fuzzSyncPhysical:
		levels, err := readLevels(r, false)
		if err == nil {
			err = validLevels(levels, "")
		}
		return levels, err
	case fuzzSyncPhysicalSKU:
		levels, err := readLevels(r, true)
		if err != nil {
			return nil, err
		}
		return skuLevels("sku1", levels)
	}
	panic(fmt.Sprintf("no endpoint %d", endpoint))
}

// FuzzReadRequest reads arbitrary bodies without a database: a body is either refused as
// the client's fault (400 or 413 with a JSON error) or accepted with arguments inside what
// docs/api.md promises the operations (and so the schema) receive.
func FuzzReadRequest(f *testing.F) {
	addFuzzSeeds(f)
	f.Fuzz(func(t *testing.T, endpoint uint8, body string) {
		endpoint %= fuzzEndpointCount
		got, err := readRequest(endpoint, body)
		if err != nil {
			status, answer := errorStatus(err, "")
			if status != http.StatusBadRequest && status != http.StatusRequestEntityTooLarge {
				t.Fatalf("%s %q: refused with %d %+v (%v), want 400 or 413", fuzzPaths[endpoint], body, status, answer, err)
			}
			if answer.Code == "" || answer.Message == "" {
				t.Fatalf("%s %q: error answer %+v lacks a code or message", fuzzPaths[endpoint], body, answer)
			}
			return
		}
		if problem := outsideContract(endpoint, got); problem != "" {
			t.Fatalf("%s %q accepted as %+v, but %s", fuzzPaths[endpoint], body, got, problem)
		}
	})
}

// outsideContract says what of an accepted request breaks the documented limits, "" when
// nothing does.
func outsideContract(endpoint uint8, got any) string {
	const most = 9007199254740991 // docs/api.md: every quantity is at most 2^53−1
	idOK := func(s string, maxLen int) bool {
		if s == "" || len(s) > maxLen || !utf8.ValidString(s) {
			return false
		}
		// docs/api.md: no control characters, no trailing space.
		return !strings.HasSuffix(s, " ") && !strings.ContainsFunc(s, unicode.IsControl)
	}
	switch endpoint {
	case fuzzDeduct:
		req := got.(DeductRequest)
		if !idOK(req.OrderNo, 64) || len(req.Items) < 1 || len(req.Items) > 100 || req.HoldTTL <= 0 || req.HoldTTL > 168*time.Hour {
			return "its order number, item count or hold is out of bounds"
		}
		for _, it := range req.Items {
			if !idOK(it.SKU, 64) || it.Qty < 1 || it.Qty > most || (it.Activity != "" && !idOK(it.Activity, 64)) {
				return fmt.Sprintf("item %+v is out of bounds", it)
			}
		}
	case fuzzSetStock:
		if args := got.([2]int64); args[0] < 0 || args[0] > most || args[1] < 0 || args[1] > 256 {
			return "sellable or shards is out of bounds"
		}
	case fuzzAdjust:
		req := got.(AdjustRequest)
		if req.Delta == 0 || req.Delta < -most || req.Delta > most || req.Reason == "" || len(req.Reason) > 255 {
			return "delta or reason is out of bounds"
		}
		if req.RequestID != "" && !idOK(req.RequestID, 64) {
			return "its request_id is out of bounds"
		}
	case fuzzReshard:
		if m := got.(int); m < 1 || m > 256 {
			return "shards is out of bounds"
		}
	case fuzzShip:
		if !idOK(got.(string), 64) {
			return "the warehouse is out of bounds"
		}
	case fuzzSyncPhysical, fuzzSyncPhysicalSKU:
		levels := got.([]PhysicalLevel)
		seen := map[PhysicalLevel]bool{}
		for _, l := range levels {
			if !idOK(l.SKU, 64) || !idOK(l.Warehouse, 64) || l.Qty < 0 || l.Qty > most {
				return fmt.Sprintf("level %+v is out of bounds", l)
			}
			key := PhysicalLevel{SKU: l.SKU, Warehouse: l.Warehouse}
			if seen[key] {
				return fmt.Sprintf("%s at %s is named twice", l.SKU, l.Warehouse)
			}
			seen[key] = true
		}
		if len(levels) > 10000 || (endpoint == fuzzSyncPhysical && len(levels) == 0) {
			return "the number of levels is out of bounds"
		}
	}
	return ""
}

// FuzzHTTPRequestBodies sends arbitrary bodies to the real handler on the real database:
// each answer is a 2xx with a JSON body or a 4xx with a JSON error, never a 5xx or a panic,
// and a 4xx leaves every table as it was. The database carries over from one input to the
// next, so the fuzzer also explores the states earlier inputs left. Plain `go test` runs
// the seeds; to fuzz (each worker gets a database of its own on the private MariaDB):
//
//	go test -run '^$' -fuzz '^FuzzHTTPRequestBodies$' -fuzztime 60s -parallel 1 ./inventory/
func FuzzHTTPRequestBodies(f *testing.F) {
	store, db := newTestStore(f, Options{MaxBodyBytes: fuzzMaxBody, MaxSyncBodyBytes: fuzzMaxBody})
	now := time.Now().UTC()
	seedStore(f, store, seed{
		stock:      []SKUStock{{SKU: "sku1", Sellable: 100, Shards: 4}, {SKU: "sku2", Sellable: 10, Shards: 1}},
		activities: []Activity{{SKU: "sku1", Activity: "sale", Qty: 5, StartsAt: now.Add(-time.Hour), EndsAt: now.Add(24 * time.Hour)}},
		warehouses: []Warehouse{{Code: "W1", Name: "Central", Type: "central"}},
		physical:   []PhysicalLevel{{SKU: "sku1", Warehouse: "W1", Qty: 50}},
		paid:       []DeductRequest{{OrderNo: "paid", Items: []Item{{SKU: "sku1", Qty: 2}}}},
	})
	handler := store.Handler()
	addFuzzSeeds(f)
	f.Fuzz(func(t *testing.T, endpoint uint8, body string) {
		endpoint %= fuzzEndpointCount
		path := fuzzPaths[endpoint]
		before := snapshot(t, db)
		req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, path, strings.NewReader(body))
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		switch {
		case rec.Code >= 200 && rec.Code < 300:
			if !json.Valid(rec.Body.Bytes()) {
				t.Fatalf("POST %s %q = %d with a body that is not JSON: %q", path, body, rec.Code, rec.Body)
			}
		case rec.Code >= 400 && rec.Code < 500:
			var answer apiError
			dec := json.NewDecoder(rec.Body)
			dec.DisallowUnknownFields()
			if err := dec.Decode(&answer); err != nil || answer.Code == "" || answer.Message == "" {
				t.Fatalf("POST %s %q = %d with %q, want a JSON error (%v)", path, body, rec.Code, rec.Body, err)
			}
			if after := snapshot(t, db); after != before {
				t.Fatalf("POST %s %q = %d %+v but wrote:\nbefore\n%s\nafter\n%s", path, body, rec.Code, answer, before, after)
			}
		default:
			t.Fatalf("POST %s %q = %d %q, want a 2xx or a 4xx", path, body, rec.Code, rec.Body)
		}
	})
}
