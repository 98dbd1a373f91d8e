package inventory

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the inventory's Prometheus metrics (docs/operations.md, Metrics). A Store
// always keeps them; RegisterMetrics exposes them.
type metrics struct {
	requests       *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	mergeFallbacks *prometheus.CounterVec
	holdsExpired   prometheus.Counter
}

func newMetrics() *metrics {
	return &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stocksync_inventory_requests_total",
			Help: "Inventory API requests answered, by route, HTTP status and error code (\"\" on success; e.g. insufficient_stock)."},
			[]string{"route", "status", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "stocksync_inventory_request_duration_seconds",
			Help:    "Time to answer an inventory API request, by route.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}, // 0.5 ms to 4 s
			[]string{"route"}),
		mergeFallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stocksync_inventory_merge_fallbacks_total",
			Help: "Merged deductions rolled back for their orders to run one by one, by reason: duplicate (an order already existed), does_not_fit (no shard held the sum), unknown_sku (the SKU has no stock rows), error."},
			[]string{"reason"}),
		holdsExpired: prometheus.NewCounter(prometheus.CounterOpts{Name: "stocksync_inventory_holds_expired_total",
			Help: "Unpaid holds this daemon's sweeper released at their expiry."}),
	}
}

// RegisterMetrics registers s's metrics on reg: requests by route and outcome and their
// time, merge fallbacks, expired holds, the database's clock against this host's, the merged transactions and the orders they served
// (their ratio is orders per transaction), and the connection pool's (go_sql_*,
// db_name="inventory": in use, idle, waits for one of inventory.max_connections).
func (s *Store) RegisterMetrics(reg prometheus.Registerer) error {
	cs := []prometheus.Collector{s.m.requests, s.m.duration, s.m.mergeFallbacks, s.m.holdsExpired,
		collectors.NewDBStatsCollector(s.db, "inventory")}
	if sc, ok := s.clock.(*serverClock); ok {
		cs = append(cs,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "stocksync_inventory_clock_offset_seconds",
				Help: "The database server's clock minus this host's, at the last reading; holds and activities follow the database's."},
				func() float64 { offset, _ := sc.offset(); return offset.Seconds() }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "stocksync_inventory_clock_uncertainty_seconds",
				Help: "How far the daemon's estimate of the database's clock may be off: half the round trip of the last reading."},
				func() float64 { _, uncertainty := sc.offset(); return uncertainty.Seconds() }))
	}
	if s.merger != nil {
		cs = append(cs,
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "stocksync_inventory_merged_transactions_total",
				Help: "Transactions that deducted several orders of one SKU at once (merging)."},
				func() float64 { return float64(s.merger.batches.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "stocksync_inventory_merged_orders_total",
				Help: "Orders deducted in merged transactions."},
				func() float64 { return float64(s.merger.merged.Load()) }))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("registering the inventory's metrics: %w", err)
		}
	}
	return nil
}

// statusRecorder keeps what a handler answered, for the request metrics.
type statusRecorder struct {
	http.ResponseWriter
	status int
	code   string // the error body's code (fail)
}

func (r *statusRecorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
	r.ResponseWriter.WriteHeader(status)
}

// instrument counts and times route's requests.
func (s *Store) instrument(route string, handle http.HandlerFunc) http.HandlerFunc {
	observe := s.m.duration.WithLabelValues(route)
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		handle(rec, r)
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		observe.Observe(time.Since(start).Seconds())
		s.m.requests.WithLabelValues(route, strconv.Itoa(rec.status), rec.code).Inc()
	}
}
