package inventory

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// TestMetricsCountRequestsByOutcome: the API's requests are counted by route, status and
// error code, and timed by route; the pool's and the merger's metrics are registered.
func TestMetricsCountRequestsByOutcome(t *testing.T) {
	store, _ := newTestStore(t, Options{})
	reg := prometheus.NewRegistry()
	if err := store.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if err := store.RegisterMetrics(reg); err == nil || !strings.Contains(err.Error(), "registering the inventory's metrics") {
		t.Errorf("registering twice: %v, want the error named", err)
	}
	srv := httptest.NewServer(store.Handler())
	defer srv.Close()
	post := func(path, body string, want int) {
		t.Helper()
		resp, err := http.Post(srv.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("POST %s = %d, want %d", path, resp.StatusCode, want)
		}
	}
	post("/v1/skus/m1/stock", `{"sellable": 10, "shards": 2}`, 200)
	post("/v1/deductions", `{"order_no": "m-1", "items": [{"sku": "m1", "qty": 2}]}`, 201)
	post("/v1/deductions", `{"order_no": "m-2", "items": [{"sku": "m1", "qty": 2}]}`, 201)
	post("/v1/deductions", `{"order_no": "m-3", "items": [{"sku": "m1", "qty": 100}]}`, 409)
	post("/v1/deductions", `{"order_no": "m-4", "items": [{"sku": "m1", "qty": 0}]}`, 400)

	const deductions = "POST /v1/deductions"
	for _, c := range []struct {
		status, code string
		want         float64
	}{{"201", "", 2}, {"409", "insufficient_stock", 1}, {"400", "invalid_request", 1}} {
		if got := promtest.ToFloat64(store.m.requests.WithLabelValues(deductions, c.status, c.code)); got != c.want {
			t.Errorf("requests{route=%q, status=%s, code=%q} = %v, want %v", deductions, c.status, c.code, got, c.want)
		}
	}
	if got := promtest.ToFloat64(store.m.requests.WithLabelValues("POST /v1/skus/{sku}/stock", "200", "")); got != 1 {
		t.Errorf("set stock requests = %v, want 1", got)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range families {
		seen[f.GetName()] = true
		if f.GetName() != "stocksync_inventory_request_duration_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			if m.GetLabel()[0].GetValue() == deductions && m.GetHistogram().GetSampleCount() != 4 {
				t.Errorf("deduction requests timed: %d, want 4", m.GetHistogram().GetSampleCount())
			}
		}
	}
	for _, name := range []string{"stocksync_inventory_requests_total", "stocksync_inventory_request_duration_seconds",
		"stocksync_inventory_merged_transactions_total", "stocksync_inventory_merged_orders_total", "go_sql_in_use_connections", "go_sql_wait_count_total",
		"stocksync_inventory_clock_offset_seconds", "stocksync_inventory_clock_uncertainty_seconds"} {
		if !seen[name] {
			t.Errorf("metric %s not registered", name)
		}
	}
}

// TestMetricsMergeFallbacksAndExpiredHolds: a merged batch that cannot run whole counts
// a fallback by its reason, and the sweeper counts the holds it releases.
func TestMetricsMergeFallbacksAndExpiredHolds(t *testing.T) {
	store, _ := newTestStore(t, Options{})
	// Holds of 1µs that lapse only when the clock is moved: the repeat of f-1 below is a
	// replay of a held order, not of an expired one.
	clock := useFakeClock(store, time.Now())
	ctx := t.Context()
	if _, err := store.SetStock(ctx, "f1", 10, 2); err != nil { // two shards of 5
		t.Fatal(err)
	}
	call := func(order string, qty int64) *mergeCall {
		return &mergeCall{ctx: ctx, req: DeductRequest{OrderNo: order, Items: []Item{{SKU: "f1", Qty: qty}}, HoldTTL: time.Microsecond},
			done: make(chan mergeResult, 1)}
	}
	run := func(calls ...*mergeCall) {
		t.Helper()
		store.merger.run("f1", calls)
		for _, c := range calls {
			if r := <-c.done; r.err != nil {
				t.Fatalf("order %s: %v", c.req.OrderNo, r.err)
			}
		}
	}
	run(call("f-1", 4), call("f-2", 4)) // 8: no shard of 5 holds it
	run(call("f-1", 4), call("f-3", 1)) // f-1 exists
	for reason, want := range map[string]float64{"does_not_fit": 1, "duplicate": 1, "unknown_sku": 0, "error": 0} {
		if got := promtest.ToFloat64(store.m.mergeFallbacks.WithLabelValues(reason)); got != want {
			t.Errorf("merge fallbacks{reason=%s} = %v, want %v", reason, got, want)
		}
	}

	clock.advance(time.Microsecond)
	expireCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	n, err := store.SweepExpired(expireCtx)
	if err != nil || n != 3 {
		t.Fatalf("SweepExpired = %d, %v; want the 3 orders' holds released", n, err)
	}
	if got := promtest.ToFloat64(store.m.holdsExpired); got != 3 {
		t.Errorf("holds expired = %v, want 3", got)
	}
}

// A merged batch of a SKU that has no stock rows (a client's typo, a SKU not set yet)
// falls back with reason unknown_sku, without a warning: each order is answered
// ErrUnknownSKU (422), and reason error with its warning stays for failures to look into.
func TestMergedBatchOfAnUnknownSKUFallsBackQuietly(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	store, _ := newTestStore(t, Options{Logger: zap.New(core)})
	ctx := t.Context()
	calls := make([]*mergeCall, 4)
	for i := range calls {
		calls[i] = &mergeCall{ctx: ctx, req: DeductRequest{OrderNo: fmt.Sprintf("u-%d", i), Items: []Item{{SKU: "no-such-sku", Qty: 1}},
			HoldTTL: time.Minute}, done: make(chan mergeResult, 1)}
	}
	store.merger.run("no-such-sku", calls)
	for _, c := range calls {
		if r := <-c.done; !errors.Is(r.err, ErrUnknownSKU) {
			t.Errorf("order %s: %v, want ErrUnknownSKU", c.req.OrderNo, r.err)
		}
	}
	for reason, want := range map[string]float64{"unknown_sku": 1, "error": 0} {
		if got := promtest.ToFloat64(store.m.mergeFallbacks.WithLabelValues(reason)); got != want {
			t.Errorf("merge fallbacks{reason=%s} = %v, want %v", reason, got, want)
		}
	}
	for _, e := range logs.All() {
		t.Errorf("logged %s %v: an unknown SKU is the client's answer, not a warning", e.Message, e.ContextMap())
	}
}
